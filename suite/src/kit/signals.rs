//! Signal handlers a probe can wait on. The handler raises an eventfd (async-signal-safe), so a
//! probe learns that (and how often) it ran by waiting on a descriptor; a suspending handler then
//! also waits until the probe resumes the world, as a signal-based stop-the-world does.

use crate::kit::poll::wait_readable;
use nix::errno::Errno;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// An eventfd that a signal handler writes to, and a prober waits on.
pub struct SignalFlag {
    fd: OwnedFd,
}

static FLAG_FD: AtomicI32 = AtomicI32::new(-1);
/// Whether the handler, after raising the flag, waits for [`SignalFlag::resume`].
static SUSPEND: AtomicBool = AtomicBool::new(false);
/// The futex word a suspended handler waits on: 0 while the world is stopped.
static RESUMED: AtomicU32 = AtomicU32::new(0);

extern "C" fn flag_handler(_: libc::c_int) {
    let fd = FLAG_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; the buffer is a local.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
    while SUSPEND.load(Ordering::SeqCst) && RESUMED.load(Ordering::SeqCst) == 0 {
        // A bounded wait, so that a lost wake-up cannot hang a probe.
        let ts = libc::timespec { tv_sec: 0, tv_nsec: 50_000_000 };
        // SAFETY: futex(2) is async-signal-safe; the word is a static.
        unsafe { libc::syscall(libc::SYS_futex, RESUMED.as_ptr(), libc::FUTEX_WAIT, 0, &ts) };
    }
}

impl SignalFlag {
    /// Installs a handler for `sig` (without SA_RESTART) that raises this flag. One per process.
    pub fn install(sig: nix::sys::signal::Signal) -> Result<SignalFlag, Errno> {
        SignalFlag::install_with(sig, false)
    }

    /// Installs a handler for `sig` (with SA_RESTART) that raises this flag and then waits until
    /// [`SignalFlag::resume`]: the handler of a signal-based stop-the-world, whose raised flag
    /// counts the threads that stopped. One per process.
    pub fn install_suspending(sig: nix::sys::signal::Signal) -> Result<SignalFlag, Errno> {
        SignalFlag::install_with(sig, true)
    }

    fn install_with(sig: nix::sys::signal::Signal, suspend: bool) -> Result<SignalFlag, Errno> {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
        // SAFETY: eventfd returns a new descriptor that we own.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        let fd = unsafe { OwnedFd::from_raw_fd(Errno::result(raw)?) };
        FLAG_FD.store(fd.as_raw_fd(), Ordering::SeqCst);
        SUSPEND.store(suspend, Ordering::SeqCst);
        RESUMED.store(0, Ordering::SeqCst);
        let flags = if suspend { SaFlags::SA_RESTART } else { SaFlags::empty() };
        let action = SigAction::new(SigHandler::Handler(flag_handler), flags, SigSet::empty());
        // SAFETY: the handler only calls write(2) on an eventfd and futex(2).
        unsafe { sigaction(sig, &action) }?;
        Ok(SignalFlag { fd })
    }

    /// Waits up to `limit` for the handler to have run; returns how many times it ran.
    pub fn wait(&self, limit: Duration) -> Result<u64, Errno> {
        wait_readable(self.fd.as_fd(), limit)?;
        let mut count: u64 = 0;
        // SAFETY: reading 8 bytes into a u64 from an eventfd.
        let r = unsafe { libc::read(self.fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
        match Errno::result(r) {
            Ok(_) => Ok(count),
            Err(Errno::EAGAIN) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Adds up the handler's runs until `*have` reaches `want` or `limit` passes.
    pub fn wait_for(&self, want: u64, have: &mut u64, limit: Duration) -> Result<(), Errno> {
        let deadline = Instant::now() + limit;
        while *have < want {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            *have += self.wait(left)?;
        }
        Ok(())
    }

    /// Lets every suspended handler return (the world resumes).
    pub fn resume(&self) {
        RESUMED.store(1, Ordering::SeqCst);
        // SAFETY: wakes every waiter on the futex word.
        unsafe { libc::syscall(libc::SYS_futex, RESUMED.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
    }
}
