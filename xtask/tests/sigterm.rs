//! Every QEMU dies with `cargo xtask matrix`, whatever signal ends it (issue 16, defect 8):
//! `timeout`, a container stop and a cancelled CI job send SIGTERM to xtask alone, not to its
//! process group as Ctrl-C in a terminal does.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

/// The children of every thread of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    out
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

fn pidfd(pid: u32) -> OwnedFd {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    assert!(fd >= 0, "pidfd_open({pid}): {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Whether the process behind `fd` exits within `ms` milliseconds (a pidfd polls readable then).
fn exits_within(fd: &OwnedFd, ms: i32) -> bool {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) == 1 }
}

#[test]
#[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
fn sigterm_mid_run_leaves_no_qemu() {
    let kernel = "debian-6.1-cloud";
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sigterm");
    let _ = std::fs::remove_dir_all(&out);
    let mut xtask = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["matrix", "--kernel", kernel, "--accel", "tcg", "--jobs", "1", "--timeout", "600", "--out"])
        .arg(&out)
        // The guest hangs after its first result: its QEMU would run until the 600 s timeout.
        .args(["--", "--inject-fault=hang-after=1"])
        .env("CI", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(xtask.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    // The progress display says `running` once the guest's suite has sent its start record.
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                let running = line.starts_with(kernel) && line.contains(" running ");
                seen.push(line);
                if running {
                    break;
                }
            }
            _ => panic!("xtask ended before its guest ran:\n{}", seen.join("\n")),
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    let qemus: Vec<u32> =
        children(xtask.id()).into_iter().filter(|p| comm(*p).starts_with("qemu-system")).collect();
    assert_eq!(qemus.len(), 1, "one QEMU under xtask, found {qemus:?}");
    let fds: Vec<OwnedFd> = qemus.iter().map(|p| pidfd(*p)).collect();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(xtask.id() as libc::pid_t, libc::SIGTERM) };
    let status = xtask.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    let left: Vec<u32> =
        qemus.iter().zip(&fds).filter(|(_, fd)| !exits_within(fd, 20_000)).map(|(p, _)| *p).collect();
    for p in &left {
        // SAFETY: cleaning up the leaked guest this test found.
        unsafe { libc::kill(*p as libc::pid_t, libc::SIGKILL) };
    }
    assert!(left.is_empty(), "QEMU {left:?} still ran 20 s after xtask was killed by SIGTERM");
}
