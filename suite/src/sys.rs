//! Small system helpers the probes share: errno names, anonymous mappings, thread ids and
//! states, madvise advice numbers newer than the build machine's headers, signal flags.

use nix::errno::Errno;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// `MADV_POPULATE_READ` / `MADV_POPULATE_WRITE` (include/uapi/asm-generic/mman-common.h,
/// since Linux 5.14). Kept here so the suite does not depend on the build machine's headers.
pub const MADV_POPULATE_READ: i32 = 22;
pub const MADV_POPULATE_WRITE: i32 = 23;

/// The name of an errno value, as the matrix shows it: `EINVAL`.
pub fn errno_name(e: Errno) -> String {
    format!("{e:?}")
}

pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// An anonymous private mapping of whole pages.
///
/// It is never unmapped: probe processes are short-lived, and a thread that a failed probe leaves
/// blocked on one of its pages must never see the mapping vanish under it.
pub struct Region {
    base: NonNull<u8>,
    pages: usize,
    page: usize,
}

// SAFETY: the region is plain memory; probes coordinate access to it through the uffd protocol.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    pub fn anonymous(pages: usize) -> Result<Region, Errno> {
        let page = page_size();
        // SAFETY: a fresh anonymous mapping aliases nothing.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                pages * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        Ok(Region {
            base: NonNull::new(ptr.cast()).expect("mmap never returns NULL"),
            pages,
            page,
        })
    }

    pub fn base(&self) -> usize {
        self.base.as_ptr() as usize
    }
    pub fn len(&self) -> usize {
        self.pages * self.page
    }
    pub fn page_size(&self) -> usize {
        self.page
    }
    /// Address of page `i`.
    pub fn page(&self, i: usize) -> usize {
        assert!(i < self.pages);
        self.base() + i * self.page
    }
    /// Which page an address falls in, relative to the region (may be out of range).
    pub fn page_index(&self, addr: u64) -> i64 {
        (addr as i64 - self.base() as i64).div_euclid(self.page as i64)
    }
}

/// madvise(2) on a raw range.
pub fn madvise(addr: usize, len: usize, advice: i32) -> Result<(), Errno> {
    // SAFETY: advice on a range the caller mapped; the kernel validates the range.
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, len, advice) };
    Errno::result(r).map(drop)
}

/// Reads a byte with a plain user-mode load.
pub fn load(addr: usize) -> u8 {
    // SAFETY: callers pass addresses inside a live Region.
    unsafe { std::ptr::read_volatile(addr as *const u8) }
}

/// The scheduler state letter of a thread of this process (`R`, `S`, `D`, ...), from
/// `/proc/self/task/<tid>/stat`.
pub fn thread_state(tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain ") ".
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Waits until a thread is off the CPU (its state is neither `R` running nor absent), up to
/// `limit`, and returns the state seen. This synchronises on the thread's `/proc` state, which is
/// the event being waited for.
pub fn wait_until_blocked(tid: i32, limit: Duration) -> Option<char> {
    let start = Instant::now();
    loop {
        let state = thread_state(tid);
        match state {
            Some(s) if s != 'R' => return Some(s),
            _ if start.elapsed() >= limit => return state,
            _ => std::thread::yield_now(),
        }
    }
}

/// Names a blocked state for the matrix: `S` (interruptible sleep: user-fault context) or `D`
/// (uninterruptible or killable sleep: blocked inside the kernel).
pub fn describe_state(state: Option<char>) -> String {
    match state {
        Some(c) => c.to_string(),
        None => "gone".to_string(),
    }
}

/// An eventfd that a signal handler can write to (async-signal-safe) and a prober can wait on.
pub struct SignalFlag {
    fd: std::os::fd::OwnedFd,
}

static FLAG_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn flag_handler(_: libc::c_int) {
    let fd = FLAG_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; the buffer is a local.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

impl SignalFlag {
    /// Installs a handler for `sig` (without SA_RESTART) that raises this flag. One per process.
    pub fn install(sig: nix::sys::signal::Signal) -> Result<SignalFlag, Errno> {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: eventfd returns a new descriptor that we own.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(Errno::result(raw)?) };
        FLAG_FD.store(fd.as_raw_fd(), Ordering::SeqCst);
        let action = SigAction::new(
            SigHandler::Handler(flag_handler),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the handler only calls write(2) on an eventfd.
        unsafe { sigaction(sig, &action) }?;
        Ok(SignalFlag { fd })
    }

    /// Waits up to `limit` for the handler to have run; returns how many times it ran.
    pub fn wait(&self, limit: Duration) -> Result<u64, Errno> {
        use std::os::fd::AsFd;
        wait_readable(self.fd.as_fd(), limit)?;
        let mut count: u64 = 0;
        use std::os::fd::AsRawFd;
        // SAFETY: reading 8 bytes into a u64 from an eventfd.
        let r = unsafe { libc::read(self.fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
        match Errno::result(r) {
            Ok(_) => Ok(count),
            Err(Errno::EAGAIN) => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// poll(2) on several descriptors for readability, retrying on EINTR, up to `limit`. Returns
/// which are readable (all false on timeout).
pub fn wait_any(fds: &[std::os::fd::BorrowedFd<'_>], limit: Duration) -> Result<Vec<bool>, Errno> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut pfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        match poll(&mut pfds, PollTimeout::from(ms)) {
            Ok(0) if Instant::now() >= deadline => return Ok(vec![false; fds.len()]),
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {
                return Ok(pfds
                    .iter()
                    .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
                    .collect())
            }
            Err(e) => return Err(e),
        }
    }
}

/// poll(2) for readability of one descriptor; see [`wait_any`].
pub fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, limit: Duration) -> Result<bool, Errno> {
    Ok(wait_any(&[fd], limit)?[0])
}

/// Whether the page at `addr` is resident (mincore(2)), without touching it.
pub fn resident(addr: usize, page: usize) -> Result<bool, Errno> {
    let mut vec = [0u8; 1];
    // SAFETY: one page, one status byte.
    let r = unsafe { libc::mincore(addr as *mut libc::c_void, page, vec.as_mut_ptr()) };
    Errno::result(r)?;
    Ok(vec[0] & 1 != 0)
}

/// Sends a signal to one thread of this process.
pub fn tgkill(tid: i32, sig: nix::sys::signal::Signal) -> Result<(), Errno> {
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, sig as libc::c_int) };
    Errno::result(r).map(drop)
}

pub struct Uname {
    pub release: String,
    pub version: String,
    pub machine: String,
}

pub fn uname() -> Uname {
    match nix::sys::utsname::uname() {
        Ok(u) => Uname {
            release: u.release().to_string_lossy().into_owned(),
            version: u.version().to_string_lossy().into_owned(),
            machine: u.machine().to_string_lossy().into_owned(),
        },
        Err(_) => Uname {
            release: "unknown".into(),
            version: String::new(),
            machine: String::new(),
        },
    }
}
