//! Helper processes: a probe forks one (before it starts any thread, so the child may do
//! anything) and talks to it over a socket, lines of text and descriptors (SCM_RIGHTS).

use crate::kit::outcome::{Context, Fail};
use crate::kit::poll::wait_readable;
use nix::errno::Errno;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// A forked helper process with a socket to it. Probes fork it before starting any thread of
/// their own, so the child starts single-threaded and may do anything. The protocol: the child
/// sends lines and descriptors; if its work fails, it sends `error: <why>` and exits, and the
/// parent's next read turns that into the probe's error.
pub struct SubProcess {
    pub pid: nix::unistd::Pid,
    pub sock: std::os::unix::net::UnixStream,
    pidfd: OwnedFd,
}

/// The line a failing helper sends.
const ERROR: &str = "error: ";

/// Forks; the child runs `f` with its end of the socket, then exits: 0 when `f` succeeded, after
/// sending `error: <why>` when it failed (or panicked).
pub fn fork_with(f: impl FnOnce(&UnixStream) -> Result<(), String>) -> Result<SubProcess, Fail> {
    use std::os::fd::FromRawFd;
    let (ours, theirs) = UnixStream::pair().ctx("socketpair")?;
    // SAFETY: the probe process is single-threaded when it forks (see above).
    match unsafe { nix::unistd::fork() }.ctx("fork")? {
        nix::unistd::ForkResult::Child => {
            drop(ours);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&theirs)))
                .unwrap_or_else(|_| Err("the helper panicked".to_string()));
            let code = match result {
                Ok(()) => 0,
                Err(why) => {
                    send_line(&theirs, &format!("{ERROR}{why}"));
                    1
                }
            };
            // SAFETY: leave without running the parent's exit handlers twice.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(theirs);
            // SAFETY: pidfd_open returns a new descriptor that we own.
            let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, child.as_raw(), 0) };
            let pidfd = match Errno::result(raw) {
                Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd as i32) },
                Err(e) => {
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    return Err(e).ctx("pidfd_open");
                }
            };
            Ok(SubProcess { pid: child, sock: ours, pidfd })
        }
    }
}

/// Starts `program` with `args` as a helper: the same protocol as [`fork_with`]'s children, over a
/// socket the program finds as its fd 3 (the Go workload, `goworkload.rs`).
pub fn exec_with_socket(program: &std::path::Path, args: &[&str]) -> Result<SubProcess, Fail> {
    use std::os::unix::process::CommandExt;
    let (ours, theirs) = UnixStream::pair().ctx("socketpair")?;
    let fd = theirs.as_raw_fd();
    let mut command = std::process::Command::new(program);
    command.args(args).stdin(std::process::Stdio::null());
    // SAFETY: dup2 is async-signal-safe; it gives the child the socket as fd 3 (without
    // close-on-exec, which dup2 clears).
    unsafe {
        command.pre_exec(move || match libc::dup2(fd, 3) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
    let child = command.spawn().ctx(&format!("starting {}", program.display()))?;
    drop(theirs);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // The child is reaped through its pidfd (SubProcess::wait), not through `child`.
    drop(child);
    // SAFETY: pidfd_open returns a new descriptor that we own.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let pidfd = match Errno::result(raw) {
        Ok(fd) => unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) },
        Err(e) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            return Err(e).ctx("pidfd_open");
        }
    };
    Ok(SubProcess { pid, sock: ours, pidfd })
}

impl SubProcess {
    /// Sends one line to the child.
    pub fn send(&self, line: &str) {
        send_line(&self.sock, line);
    }

    /// Waits up to `limit` for the child to end (its pidfd becomes readable) and reaps it.
    pub fn wait(&self, limit: Duration) -> Result<Option<nix::sys::wait::WaitStatus>, Errno> {
        use std::os::fd::AsFd;
        if !wait_readable(self.pidfd.as_fd(), limit)? {
            return Ok(None);
        }
        nix::sys::wait::waitpid(self.pid, None).map(Some)
    }

    pub fn kill(&self) {
        let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
    }

    /// The next line from the child (`what` names it in errors), waiting up to `limit`; the
    /// child's `error:` line is the probe's error.
    pub fn line(&self, what: &str, limit: Duration) -> Result<String, Fail> {
        match self.read_line(Vec::new(), limit).ctx(&format!("reading {what} from the helper"))? {
            Some(line) => match line.strip_prefix(ERROR) {
                Some(why) => Err(Fail::error(format!("the helper failed: {why}"))),
                None => Ok(line),
            },
            None => {
                Err(Fail::error(format!("the helper did not send {what} within {}ms", limit.as_millis())))
            }
        }
    }

    /// A descriptor the child sent with [`send_fd`] (`what` names it in errors), waiting up to
    /// `limit`; the child's `error:` line is the probe's error.
    pub fn fd(&self, what: &str, limit: Duration) -> Result<OwnedFd, Fail> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::{AsFd, FromRawFd};
        let none = || Fail::error(format!("the helper did not send {what} within {}ms", limit.as_millis()));
        if !wait_readable(self.sock.as_fd(), limit).ctx("poll")? {
            return Err(none());
        }
        let mut byte = [0u8; 1];
        let mut iov = [std::io::IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg =
            recvmsg::<()>(self.sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
                .ctx("recvmsg")?;
        let received = msg.bytes;
        for cmsg in msg.cmsgs().ctx("recvmsg")? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                if let Some(fd) = fds.first() {
                    // SAFETY: SCM_RIGHTS installed a new descriptor for us.
                    return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
                }
            }
        }
        // No descriptor: the first byte of a line, most likely the child's error.
        if received == 0 {
            return Err(Fail::error(format!("the helper exited without sending {what}")));
        }
        match self.read_line(vec![byte[0]], limit).ctx("reading the helper")? {
            Some(line) => Err(Fail::error(match line.strip_prefix(ERROR) {
                Some(why) => format!("the helper failed: {why}"),
                None => format!("the helper sent {line:?} where {what} was due"),
            })),
            None => Err(none()),
        }
    }

    /// The rest of a line that starts with `line`, waiting up to `limit`.
    fn read_line(&self, mut line: Vec<u8>, limit: Duration) -> Result<Option<String>, Errno> {
        use std::io::Read;
        use std::os::fd::AsFd;
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if !wait_readable(self.sock.as_fd(), left)? {
                return Ok(None);
            }
            let mut byte = [0u8; 1];
            match (&self.sock).read(&mut byte) {
                Ok(0) => return Ok(None),
                Ok(_) if byte[0] == b'\n' => return Ok(Some(String::from_utf8_lossy(&line).into_owned())),
                Ok(_) => line.push(byte[0]),
                Err(e) => return Err(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
            }
        }
    }
}

/// Sends a descriptor over a socket (SCM_RIGHTS) with one byte of payload.
pub fn send_fd(sock: &UnixStream, fd: std::os::fd::RawFd) -> Result<(), Errno> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd];
    let iov = [std::io::IoSlice::new(b"F")];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None)
        .map(drop)
}

/// Sends one line of text over a socket.
pub fn send_line(sock: &UnixStream, line: &str) {
    use std::io::Write;
    let _ = (&*sock).write_all(format!("{line}\n").as_bytes());
}

/// fork(2) as the raw system call, not glibc's fork(), which takes every malloc lock before the
/// system call and releases them after it returns: a thread that allocates while the fork waits
/// (for its FORK event to be read) deadlocks. arm64 has no fork system call
/// (include/uapi/asm-generic/unistd.h): there it is clone(SIGCHLD), which is what the kernel's
/// own fork does (kernel/fork.c). The child must keep to raw system calls.
///
/// # Safety
/// The child runs on a copy of one thread of a multi-threaded process: only async-signal-safe
/// calls, then `_exit`.
pub unsafe fn raw_fork() -> i32 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as the caller's.
    let pid = unsafe { libc::syscall(libc::SYS_fork) };
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as the caller's.
    let pid = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) };
    pid as i32
}
