//! The Go workload (`suite/go`, built by `cargo xtask` as `uffdc-go`): a real Go runtime in the
//! loop. Where it is, starting it as a helper process (its line protocol, with the socket on its
//! fd 3, is `helpers::SubProcess`'s), the userfaultfd it hands over, and the Go release it was
//! built with.
//!
//! It is found through `UFFDC_GO_WORKLOAD`, else beside the suite's own executable: `/uffdc-go`
//! beside `/init` in a guest's initramfs; `cargo xtask` puts it beside the suite binary it runs on
//! a host.

use crate::kit::helpers::{exec_with_socket, SubProcess};
use crate::kit::outcome::Fail;
use crate::kit::uffd::Uffd;
use std::path::PathBuf;
use std::time::Duration;

pub const ENV: &str = "UFFDC_GO_WORKLOAD";
pub const NAME: &str = "uffdc-go";

/// Where the workload should be.
pub fn path() -> Option<PathBuf> {
    match std::env::var_os(ENV) {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => Some(std::env::current_exe().ok()?.parent()?.join(NAME)),
    }
}

/// The workload, or `skipped`: without it nothing can be learnt about the kernel under a Go
/// runtime, and that is a gap of the machine (a suite run by hand without it), not of the kernel.
pub fn require() -> Result<PathBuf, Fail> {
    match path() {
        Some(p) if p.is_file() => Ok(p),
        p => Err(Fail::Skipped(format!(
            "this host has no Go workload ({}): `cargo xtask` builds it (target/uffdc/go/) and puts it beside the suite; or set {ENV}=PATH",
            p.map_or_else(|| NAME.to_string(), |p| p.display().to_string())
        ))),
    }
}

/// The Go release the workload was built with (`runtime.Version()`: `go1.27.3`), when it is there.
pub fn version() -> Option<String> {
    let out = std::process::Command::new(path().filter(|p| p.is_file())?).arg("version").output().ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && v.starts_with("go")).then_some(v)
}

/// A running workload and the userfaultfd it handed over.
pub struct Go {
    pub proc: SubProcess,
    pub uffd: Uffd,
    /// What its `ready` line named: the Go release of its runtime.
    pub version: String,
    /// How long the workload took from exec to its ready line.
    pub started: Duration,
}

impl Go {
    /// Starts `uffdc-go <args>` and takes its userfaultfd and `ready <go version>` line. A kernel
    /// without userfaultfd(2) is `unsupported` in the words every probe uses, before the
    /// workload would fail on it.
    pub fn start(args: &[&str], limit: Duration) -> Result<Go, Fail> {
        crate::kit::require::userfaultfd()?;
        let path = require()?;
        let exec = std::time::Instant::now();
        let proc = exec_with_socket(&path, args)?;
        let uffd = Uffd::from_fd(proc.fd("its userfaultfd", limit)?);
        let ready = proc.line("its ready line", limit)?;
        let version = match ready.split_whitespace().collect::<Vec<_>>()[..] {
            ["ready", v] => v.to_string(),
            _ => {
                return Err(Fail::error(format!(
                    "the Go workload said {ready:?} where `ready <version>` was due"
                )))
            }
        };
        Ok(Go { proc, uffd, version, started: exec.elapsed() })
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid.as_raw()
    }

    /// Ends the workload (a deadlocked one stays blocked until then) and reaps it; returns the
    /// CPU time it used, in ms.
    pub fn end(&self, limit: Duration) -> u64 {
        let cpu = cpu_ms(self.pid(), false);
        self.proc.kill();
        let _ = self.proc.wait(limit);
        cpu
    }
}

/// The name of an errno the workload reported as `errno=N`.
pub fn errno_word(word: &str) -> String {
    match word.strip_prefix("errno=").and_then(|n| n.parse::<i32>().ok()) {
        Some(0) => "0".to_string(),
        Some(n) => crate::kit::outcome::errno_name(nix::errno::Errno::from_raw(n)),
        None => word.to_string(),
    }
}

/// User plus system CPU time of process `pid` so far, in ms (/proc/<pid>/stat), and with
/// `children` that of the children it has waited for too (a zombie's is its whole life's).
pub(crate) fn cpu_ms(pid: i32, children: bool) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    let fields: Vec<&str> = stat[stat.rfind(')').map_or(0, |i| i + 1)..].split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let waited = if children { ticks(13) + ticks(14) } else { 0 };
    (ticks(11) + ticks(12) + waited) * 1000 / hz
}
