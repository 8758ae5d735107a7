//! The one place that sets up and serves userfaultfds.
//!
//! Descriptors come from the userfaultfd(2) syscall or `/dev/userfaultfd` (USERFAULTFD_IOC_NEW);
//! the UFFDIO_API handshake is done here so its raw answer (feature and ioctl bits) is kept; the
//! `userfaultfd` crate then does registration, copies and message parsing.

use crate::probe::{Context, Fail, Observation};
use crate::sys::{errno_name, wait_readable, Region};
use crate::worker::Worker;
use nix::errno::Errno;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;
pub use userfaultfd::{Event, FaultKind, ReadWrite, RegisterMode};
use userfaultfd_sys as sys;

/// `UFFD_USER_MODE_ONLY` (include/uapi/linux/userfaultfd.h, since 5.11): the flag to
/// userfaultfd(2) that limits the descriptor to faults taken in user mode.
pub const UFFD_USER_MODE_ONLY: i32 = 1;

/// Feature bits of `uffdio_api.features` by name, from include/uapi/linux/userfaultfd.h
/// (kept here rather than taken from the build machine's headers, which may be older).
pub const FEATURES: &[(u32, &str)] = &[
    (0, "PAGEFAULT_FLAG_WP"),
    (1, "EVENT_FORK"),
    (2, "EVENT_REMAP"),
    (3, "EVENT_REMOVE"),
    (4, "MISSING_HUGETLBFS"),
    (5, "MISSING_SHMEM"),
    (6, "EVENT_UNMAP"),
    (7, "SIGBUS"),
    (8, "THREAD_ID"),
    (9, "MINOR_HUGETLBFS"),
    (10, "MINOR_SHMEM"),
    (11, "EXACT_ADDRESS"),
    (12, "WP_HUGETLBFS_SHMEM"),
    (13, "WP_UNPOPULATED"),
    (14, "POISON"),
    (15, "WP_ASYNC"),
    (16, "MOVE"),
    (17, "RWP"),
    (18, "RWP_ASYNC"),
];

pub const FEATURE_PAGEFAULT_FLAG_WP: u64 = 1 << 0;
pub const FEATURE_EVENT_FORK: u64 = 1 << 1;
pub const FEATURE_EVENT_REMAP: u64 = 1 << 2;
pub const FEATURE_EVENT_REMOVE: u64 = 1 << 3;
pub const FEATURE_MISSING_HUGETLBFS: u64 = 1 << 4;
pub const FEATURE_MISSING_SHMEM: u64 = 1 << 5;
pub const FEATURE_EVENT_UNMAP: u64 = 1 << 6;
pub const FEATURE_SIGBUS: u64 = 1 << 7;
pub const FEATURE_THREAD_ID: u64 = 1 << 8;
pub const FEATURE_MINOR_SHMEM: u64 = 1 << 10;
pub const FEATURE_WP_ASYNC: u64 = 1 << 15;

/// Names the set bits of a feature mask in bit order; bits without a name read `bitN`.
pub fn feature_names(bits: u64) -> String {
    bit_names(bits, FEATURES)
}

/// The ioctl bits of `uffdio_api.ioctls` / `uffdio_register.ioctls`, by `_UFFDIO_*` number.
pub const IOCTLS: &[(u32, &str)] = &[
    (0x00, "REGISTER"),
    (0x01, "UNREGISTER"),
    (0x02, "WAKE"),
    (0x03, "COPY"),
    (0x04, "ZEROPAGE"),
    (0x05, "MOVE"),
    (0x06, "WRITEPROTECT"),
    (0x07, "CONTINUE"),
    (0x08, "POISON"),
    (0x09, "RWPROTECT"),
    (0x0A, "SET_MODE"),
    (0x3F, "API"),
];

pub fn ioctl_names(bits: u64) -> String {
    bit_names(bits, IOCTLS)
}

fn bit_names(bits: u64, table: &[(u32, &str)]) -> String {
    (0..64)
        .filter(|b| bits & (1u64 << b) != 0)
        .map(|b| match table.iter().find(|(bit, _)| *bit == b) {
            Some((_, name)) => name.to_string(),
            None => format!("bit{b}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

nix::ioctl_readwrite!(ioctl_api, sys::UFFDIO, sys::_UFFDIO_API, sys::uffdio_api);
nix::ioctl_readwrite!(ioctl_copy, sys::UFFDIO, sys::_UFFDIO_COPY, sys::uffdio_copy);
nix::ioctl_write_int_bad!(ioctl_new_uffd, nix::request_code_none!(0xAA, 0x00));

/// The kernel's answer to UFFDIO_API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Api {
    pub features: u64,
    pub ioctls: u64,
}

/// userfaultfd(2).
pub fn syscall(flags: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: plain syscall; on success it returns a new descriptor that we own.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags as libc::c_long) };
    let fd = Errno::result(fd)?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Why `/dev/userfaultfd` gave no descriptor.
#[derive(Debug)]
pub enum DevError {
    Open(Errno),
    Ioctl(Errno),
}

/// `/dev/userfaultfd` + USERFAULTFD_IOC_NEW (since 6.1).
pub fn from_device(flags: i32) -> Result<OwnedFd, DevError> {
    let dev = nix::fcntl::open(
        "/dev/userfaultfd",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(DevError::Open)?;
    // SAFETY: USERFAULTFD_IOC_NEW takes the userfaultfd(2) flags as its integer argument and
    // returns a new descriptor.
    let fd = unsafe { ioctl_new_uffd(dev.as_raw_fd(), flags) }.map_err(DevError::Ioctl)?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// UFFDIO_API with the given feature request.
pub fn handshake(fd: &OwnedFd, features: u64) -> Result<Api, Errno> {
    let mut api = sys::uffdio_api { api: sys::UFFD_API, features, ioctls: 0 };
    // SAFETY: the argument is a properly initialised uffdio_api.
    unsafe { ioctl_api(fd.as_raw_fd(), &mut api) }?;
    Ok(Api { features: api.features, ioctls: api.ioctls })
}

/// Whether userfaultfd(2) accepts UFFD_USER_MODE_ONLY (5.11 and later): `false` when it rejects
/// the flag with EINVAL; the kernel lacking userfaultfd altogether is `unsupported`.
pub fn user_mode_only() -> Result<bool, Fail> {
    match syscall(libc::O_CLOEXEC | UFFD_USER_MODE_ONLY) {
        Ok(_) => Ok(true),
        Err(Errno::EINVAL) => Ok(false),
        Err(e) => Err(open_failure(e)),
    }
}

/// `unsupported` unless userfaultfd(2) accepts UFFD_USER_MODE_ONLY.
pub fn require_user_mode_only() -> Result<(), Fail> {
    match user_mode_only()? {
        true => Ok(()),
        false => Err(Fail::unsupported("EINVAL", "userfaultfd(2) rejects UFFD_USER_MODE_ONLY (new in 5.11)")),
    }
}

/// Maps a failed userfaultfd(2) to what it tells about the kernel.
pub fn open_failure(e: Errno) -> Fail {
    match e {
        Errno::ENOSYS => Fail::unsupported(
            "ENOSYS",
            "userfaultfd(2) returns ENOSYS: the kernel was built without CONFIG_USERFAULTFD",
        ),
        Errno::EPERM => {
            Fail::error("userfaultfd(2): EPERM: run the suite as root (or set vm.unprivileged_userfaultfd=1)")
        }
        e => Fail::error(format!("userfaultfd(2): {}", errno_name(e))),
    }
}

/// The features this kernel offers (a handshake on a throwaway descriptor).
pub fn available_features() -> Result<u64, Fail> {
    let fd = syscall(libc::O_CLOEXEC).map_err(open_failure)?;
    handshake(&fd, 0).ctx("UFFDIO_API").map(|api| api.features)
}

/// A ready userfaultfd: non-blocking, close-on-exec, handshake done.
pub struct Uffd {
    inner: userfaultfd::Uffd,
}

impl Uffd {
    /// userfaultfd(2) + UFFDIO_API requesting `features`. A requested feature the kernel lacks
    /// makes the behaviour `unsupported`, naming the feature.
    pub fn open(features: u64) -> Result<Uffd, Fail> {
        Uffd::open_with(0, features)
    }

    /// As [`Uffd::open`], with extra userfaultfd(2) flags (`UFFD_USER_MODE_ONLY`).
    pub fn open_with(flags: i32, features: u64) -> Result<Uffd, Fail> {
        if features != 0 {
            let missing = features & !available_features()?;
            if missing != 0 {
                return Err(Fail::unsupported(
                    "no feature",
                    format!("the kernel does not offer UFFD_FEATURE_{}", feature_names(missing)),
                ));
            }
        }
        let fd = syscall(libc::O_CLOEXEC | libc::O_NONBLOCK | flags).map_err(open_failure)?;
        handshake(&fd, features).ctx("UFFDIO_API")?;
        Ok(Uffd::from_fd(fd))
    }

    /// Takes a descriptor whose handshake is done (one passed from a helper process, or a fork
    /// event's). Makes it non-blocking, as [`Uffd::next`] expects.
    pub fn from_fd(fd: OwnedFd) -> Uffd {
        let _ = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
        // SAFETY: the crate takes ownership of the descriptor.
        Uffd { inner: unsafe { userfaultfd::Uffd::from_raw_fd(fd.into_raw_fd()) } }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }

    /// Closes the descriptor.
    pub fn close(self) {
        drop(self.inner);
    }

    /// UFFDIO_REGISTER; returns the ioctl bits the kernel offers for the range.
    pub fn register(&self, addr: usize, len: usize, mode: RegisterMode) -> Result<u64, Fail> {
        self.inner
            .register_with_mode(addr as *mut libc::c_void, len, mode)
            .map(|ioctls| ioctls.bits())
            .ctx("UFFDIO_REGISTER")
    }

    /// Whether a message is waiting (without reading it), waiting up to `limit`.
    pub fn readable(&self, limit: Duration) -> Result<bool, Fail> {
        wait_readable(self.inner.as_fd(), limit).ctx("poll(uffd)")
    }

    /// The next message, waiting up to `limit`; `None` when none arrived in time.
    pub fn next(&self, limit: Duration) -> Result<Option<Event>, Fail> {
        if !wait_readable(self.inner.as_fd(), limit).ctx("poll(uffd)")? {
            return Ok(None);
        }
        match self.inner.read_event() {
            Ok(event) => Ok(event),
            Err(userfaultfd::Error::SystemError(e)) if e as i32 == libc::EAGAIN => Ok(None),
            Err(e) => Err(Fail::error(format!("read(uffd): {}", error_name(&e)))),
        }
    }

    /// UFFDIO_COPY of `src` to `dst`, waking the faulting thread.
    pub fn copy(&self, dst: usize, src: &[u8]) -> Result<usize, userfaultfd::Error> {
        // SAFETY: `dst` lies in a range registered on this uffd; the kernel validates it.
        unsafe { self.inner.copy(src.as_ptr().cast(), dst as *mut libc::c_void, src.len(), true) }
    }

    /// UFFDIO_COPY issued directly, so the `copy` field is seen whatever the outcome: it starts as
    /// `sentinel`, and is returned beside the ioctl's result.
    pub fn copy_raw(&self, dst: usize, src: &[u8], sentinel: i64) -> (Result<(), Errno>, i64) {
        let mut arg = sys::uffdio_copy {
            dst: dst as u64,
            src: src.as_ptr() as u64,
            len: src.len() as u64,
            mode: 0,
            copy: sentinel,
        };
        // SAFETY: a properly initialised uffdio_copy; `src` outlives the call.
        let r = unsafe { ioctl_copy(self.raw_fd(), &mut arg) };
        (r.map(drop), arg.copy)
    }

    /// UFFDIO_COPY of `data()` to `dst`, following the EAGAIN protocol that keeps a server from
    /// installing stale bytes: EAGAIN means a non-cooperative event (REMOVE, UNMAP, REMAP, FORK)
    /// is pending, so the pending messages are read and handed to `on_message` (which updates what
    /// the page must hold) and the copy is retried with fresh `data()`. EEXIST (the page is there
    /// already) ends it. Gives up with an error after `limit` of refusals.
    pub fn copy_following_eagain(
        &self,
        dst: usize,
        limit: Duration,
        mut data: impl FnMut() -> Vec<u8>,
        mut on_message: impl FnMut(Event),
    ) -> Result<Copied, Fail> {
        let mut copied = Copied::default();
        let start = std::time::Instant::now();
        loop {
            match self.copy_raw(dst, &data(), 0).0 {
                Ok(()) => return Ok(copied),
                Err(Errno::EEXIST) => {
                    copied.eexist = true;
                    return Ok(copied);
                }
                Err(Errno::EAGAIN) => {
                    copied.eagains += 1;
                    let mut read = 0;
                    while let Some(event) = self.next(Duration::ZERO)? {
                        on_message(event);
                        read += 1;
                    }
                    if start.elapsed() > limit {
                        return Err(Fail::error(format!(
                            "UFFDIO_COPY kept failing with EAGAIN for {}ms ({} tries)",
                            limit.as_millis(),
                            copied.eagains
                        )));
                    }
                    if read == 0 {
                        // The event was read, but its thread has not yet left the kernel's wait
                        // (mmap_changing drops as it does): let it run.
                        std::thread::yield_now();
                    }
                }
                Err(e) => return Err(Fail::error(format!("UFFDIO_COPY: {}", errno_name(e)))),
            }
        }
    }

    /// UFFDIO_ZEROPAGE over `len` bytes, waking the faulting thread.
    pub fn zeropage(&self, addr: usize, len: usize) -> Result<usize, userfaultfd::Error> {
        // SAFETY: the range lies in a registered range; the kernel validates it.
        unsafe { self.inner.zeropage(addr as *mut libc::c_void, len, true) }
    }

    /// UFFDIO_WRITEPROTECT: protect (`protect`) or unprotect and wake.
    pub fn write_protect(&self, addr: usize, len: usize, protect: bool) -> Result<(), Fail> {
        let p = addr as *mut libc::c_void;
        if protect {
            self.inner.write_protect(p, len).ctx("UFFDIO_WRITEPROTECT")
        } else {
            self.inner.remove_write_protection(p, len, true).ctx("UFFDIO_WRITEPROTECT (unprotect)")
        }
    }

    /// UFFDIO_CONTINUE: map the page-cache pages of a minor fault, waking the faulting thread.
    pub fn continue_(&self, addr: usize, len: usize) -> Result<(), Fail> {
        self.inner.r#continue(addr as *mut libc::c_void, len, true).map(drop).ctx("UFFDIO_CONTINUE")
    }

    /// UFFDIO_COPY of one page filled with `byte`: the usual way to serve a fault.
    pub fn serve(&self, page_addr: usize, page: usize, byte: u8) -> Result<(), Fail> {
        let src = vec![byte; page];
        self.copy(page_addr, &src).ctx("UFFDIO_COPY").map(drop)
    }
}

impl Uffd {
    /// Waits up to `limit` for `worker`'s fault message. Anything else that happens instead (another
    /// event, the worker finishing, nothing) comes back as the observation to report.
    pub fn await_fault<T: std::fmt::Debug>(
        &self,
        worker: &Worker<T>,
        region: &Region,
        limit: Duration,
    ) -> Result<Result<Event, Observation>, Fail> {
        Ok(match self.next_or_done(worker, limit)? {
            Next::Event(e @ Event::Pagefault { .. }) => Ok(e),
            Next::Event(e) => {
                Err(Observation::new(format!("unexpected event: {}", describe_event(&e, region))))
            }
            Next::Done(v) => Err(Observation::new(format!("returned without a fault message: {v:?}"))),
            Next::Timeout => Err(Observation::new("blocked without a fault message")),
        })
    }
}

/// What one [`Uffd::copy_following_eagain`] went through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    /// How many times UFFDIO_COPY was refused with EAGAIN before it went through.
    pub eagains: u64,
    /// The page was already there (EEXIST): nothing was copied.
    pub eexist: bool,
}

/// `let event = fault_or_report!(uffd.await_fault(...));` returns the observation from the probe
/// when something other than the fault happened.
#[macro_export]
macro_rules! fault_or_report {
    ($e:expr) => {
        match $e? {
            Ok(event) => event,
            Err(observation) => return Ok(observation),
        }
    };
}

/// A new uffd with `features` and `region` registered on it in `mode`: the start of most probes.
pub fn registered(features: u64, region: Region, mode: RegisterMode) -> Result<(Uffd, Region), Fail> {
    let uffd = Uffd::open(features)?;
    uffd.register(region.base(), region.len(), mode)?;
    Ok((uffd, region))
}

/// What [`Uffd::serve_until_done`] saw.
pub struct Served<T> {
    /// Every message, in arrival order.
    pub events: Vec<Event>,
    /// The worker's result, or `None` when it did not finish in time.
    pub result: Option<T>,
}

impl Uffd {
    /// Serves every fault on `region` (UFFDIO_COPY of a page of `byte`) until `worker`
    /// finishes, recording every message. Gives up after `limit` without progress.
    pub fn serve_until_done<T>(
        &self,
        worker: &Worker<T>,
        region: &Region,
        byte: u8,
        limit: Duration,
    ) -> Result<Served<T>, Fail> {
        let mut events = Vec::new();
        loop {
            match self.next_or_done(worker, limit)? {
                Next::Event(event) => {
                    if let Event::Pagefault { addr, .. } = &event {
                        let page = region.page_size();
                        let at = (*addr as usize) & !(page - 1);
                        match self.copy(at, &vec![byte; page]) {
                            Ok(_) => {}
                            // Another message for a page already served.
                            Err(userfaultfd::Error::CopyFailed(e)) if e as i32 == libc::EEXIST => {}
                            Err(e) => return Err(Fail::error(format!("UFFDIO_COPY: {}", error_name(&e)))),
                        }
                    }
                    events.push(event);
                }
                Next::Done(v) => return Ok(Served { events, result: Some(v) }),
                Next::Timeout => return Ok(Served { events, result: None }),
            }
        }
    }
}

/// Names a crate error by its errno where it has one.
pub fn error_name(e: &userfaultfd::Error) -> String {
    match e {
        userfaultfd::Error::SystemError(errno)
        | userfaultfd::Error::CopyFailed(errno)
        | userfaultfd::Error::ZeropageFailed(errno) => errno_name(Errno::from_raw(*errno as i32)),
        userfaultfd::Error::PartiallyCopied(n) => format!("EAGAIN (partial copy {n})"),
        other => other.to_string(),
    }
}

/// A fault message's kind as the matrix spells it: `read`, `write`, `wp write`, `minor read`.
pub fn describe_fault(kind: FaultKind, rw: ReadWrite) -> String {
    let access = match rw {
        ReadWrite::Read => "read",
        ReadWrite::Write => "write",
    };
    match kind {
        FaultKind::Missing => access.to_string(),
        FaultKind::WriteProtected => format!("wp {access}"),
        FaultKind::Minor => format!("minor {access}"),
    }
}

/// One line naming an event, for details: `fault read @page 0`, `REMOVE pages [1,3)`.
pub fn describe_event(event: &Event, region: &Region) -> String {
    match event {
        Event::Pagefault { kind, rw, addr, .. } => {
            format!("fault {} @page {}", describe_fault(*kind, *rw), region.page_index(*addr as u64))
        }
        Event::Remove { start, end } => {
            format!("REMOVE pages [{},{})", region.page_index(*start as u64), region.page_index(*end as u64))
        }
        Event::Unmap { start, end } => {
            format!("UNMAP pages [{},{})", region.page_index(*start as u64), region.page_index(*end as u64))
        }
        Event::Remap { .. } => "REMAP".to_string(),
        Event::Fork { .. } => "FORK".to_string(),
    }
}

/// What came first while serving a worker: a uffd message, the worker finishing, or neither.
pub enum Next<T> {
    Event(Event),
    Done(T),
    Timeout,
}

impl Uffd {
    /// Waits up to `limit` for a message on this uffd or for `worker` to finish, whichever comes
    /// first (a message wins a tie).
    pub fn next_or_done<T>(
        &self,
        worker: &crate::worker::Worker<T>,
        limit: Duration,
    ) -> Result<Next<T>, Fail> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let ready = crate::sys::wait_any(&[self.inner.as_fd(), worker.done_fd()], left).ctx("poll")?;
            if ready[0] {
                if let Some(event) = self.next(Duration::ZERO)? {
                    return Ok(Next::Event(event));
                }
            }
            if let Some(v) = worker.try_done() {
                return Ok(Next::Done(v));
            }
            if !ready.contains(&true) {
                return Ok(Next::Timeout);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_bits_and_keeps_unknown_ones() {
        assert_eq!(super::feature_names(0b1001 | 1 << 40), "PAGEFAULT_FLAG_WP EVENT_REMOVE bit40");
        assert_eq!(super::ioctl_names(1 << 0x3F | 1 << 3), "COPY API");
        assert_eq!(super::feature_names(0), "");
    }
}
