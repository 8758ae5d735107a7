//! A command whose reader goes away (`cargo xtask diff ... | head`) ends as any Unix tool does:
//! killed by SIGPIPE, without a panic's message and backtrace.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    // Far more than a pipe holds (64 KiB): whether or not the command writes before the reader
    // is gone, a write meets the closed pipe.
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["check", "--json", "criu-lazy-pages", "firecracker-uffd-handler", "qemu-postcopy"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
