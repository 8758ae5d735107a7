//! Plumbing shared by the tasks: the project root, file locks, atomic writes, and running a
//! process under a hard timeout (killed with xtask, whatever ends xtask).

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// An exclusive lock on a file, held until dropped (flock(2): between processes and threads).
pub fn lock(path: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("cannot lock {}: {e}", path.display()))
}

/// Writes a file so that no reader ever sees it half-written.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// How a supervised process ended.
#[derive(Debug)]
pub enum Ended {
    Exited(ExitStatus),
    /// The hard timeout fired and the process was killed.
    TimedOut,
}

/// Runs a command to its end or until `timeout`, killing it then. `on_start` gets the pid (tests
/// use it to kill the process from outside). The process is killed if this thread unwinds.
pub fn run_with_timeout(
    mut command: Command,
    timeout: Duration,
    on_start: &mut dyn FnMut(u32),
) -> Result<(Ended, Duration)> {
    let start = Instant::now();
    die_with_this_process(&mut command);
    let child = command.spawn()?;
    let guard = KillOnDrop(child.id());
    on_start(child.id());
    let (tx, rx) = channel();
    let waiter = std::thread::spawn(move || {
        let mut child: Child = child;
        let _ = tx.send(child.wait());
    });
    let ended = match rx.recv_timeout(timeout) {
        Ok(status) => Ended::Exited(status?),
        Err(_) => {
            guard.kill();
            let _ = rx.recv();
            Ended::TimedOut
        }
    };
    let _ = waiter.join();
    std::mem::forget(guard);
    Ok((ended, start.elapsed()))
}

/// Makes the child get SIGKILL when this process dies, however it dies: SIGTERM from `timeout`, a
/// container stop or a cancelled CI job, SIGKILL, a panic. Without it a guest outlives xtask,
/// reparented to init, and a hung one runs forever. (The kernel sends it when the thread that
/// spawned the child ends; `run_with_timeout`'s caller waits for the child, so only the death of
/// the whole process does.)
fn die_with_this_process(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe calls.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // This process died before the prctl: nothing would kill the child any more.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("xtask exited while starting the process"));
            }
            Ok(())
        })
    };
}

struct KillOnDrop(u32);

impl KillOnDrop {
    fn kill(&self) {
        // SAFETY: the pid is our unreaped child (its waiter has not returned).
        unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGKILL) };
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `Signal N` spelled as its name.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string())
}

/// A path as shown in files and messages: relative to the project root when inside it.
pub fn display_path(path: &Path) -> String {
    let root = project_root();
    path.strip_prefix(&root).unwrap_or(path).display().to_string()
}
