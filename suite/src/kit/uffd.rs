//! The one place that sets up and serves userfaultfds (on `uapi.rs`'s raw interface).
//!
//! Descriptors come from the userfaultfd(2) syscall or `/dev/userfaultfd` (USERFAULTFD_IOC_NEW);
//! the UFFDIO_API handshake is done here so its raw answer (feature and ioctl bits) is kept; the
//! `userfaultfd` crate then does registration, copies and message parsing.

use crate::kit::memory::Region;
use crate::kit::outcome::errno_name;
use crate::kit::outcome::{error_name, Context, Ctx, Fail, Observation, ProbeResult};
use crate::kit::poll::wait_readable;
use crate::kit::uapi::{handshake, ioctl_copy, open_failure, syscall, UFFD_MSG_SIZE};
use crate::kit::worker::Worker;
use nix::errno::Errno;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;
pub use userfaultfd::{Event, FaultKind, ReadWrite, RegisterMode};
use userfaultfd_sys as sys;

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
            crate::kit::require::features(features)?;
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

    /// The descriptor, to wait on it together with others (`poll::wait_any`).
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.as_fd()
    }

    /// The `userfaultfd` crate's own handle on this descriptor, to call the crate's API directly
    /// (the `clients.crate_*` behaviours compare what it returns with what the kernel did).
    pub fn client(&self) -> &userfaultfd::Uffd {
        &self.inner
    }

    /// One read(2) of a `struct uffd_msg` as the kernel wrote it, undecoded (the crate decodes the
    /// messages of [`Uffd::next`]): `None` when none is waiting.
    pub fn read_raw(&self) -> Result<Option<[u8; UFFD_MSG_SIZE]>, Fail> {
        let mut msg = [0u8; UFFD_MSG_SIZE];
        match nix::unistd::read(self.inner.as_fd(), &mut msg) {
            Ok(UFFD_MSG_SIZE) => Ok(Some(msg)),
            Ok(n) => Err(Fail::error(format!("read(uffd): {n} bytes, not one uffd_msg"))),
            Err(Errno::EAGAIN) => Ok(None),
            Err(e) => Err(Fail::error(format!("read(uffd): {}", errno_name(e)))),
        }
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

    /// One read(2) of a message, without polling first: `None` when there is none (EAGAIN).
    pub fn read_now(&self) -> Result<Option<Event>, Fail> {
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
        self.copy_mode(dst, src, 0, sentinel)
    }

    /// [`Uffd::copy_raw`] with a mode (`uapi::COPY_MODE_WP`).
    pub fn copy_mode(&self, dst: usize, src: &[u8], mode: u64, sentinel: i64) -> (Result<(), Errno>, i64) {
        let mut arg = sys::uffdio_copy {
            dst: dst as u64,
            src: src.as_ptr() as u64,
            len: src.len() as u64,
            mode,
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
                        // (mmap_changing drops as it does): let it run, backing off.
                        std::thread::sleep(std::time::Duration::from_micros(10 << copied.eagains.min(7)));
                    }
                }
                Err(e) => return Err(Fail::error(format!("UFFDIO_COPY: {}", errno_name(e)))),
            }
        }
    }

    /// UFFDIO_MOVE of `len` bytes from `src` to `dst` (6.8), waking the faulting thread: the result
    /// and the `move` field.
    pub fn move_raw(&self, dst: usize, src: usize, len: usize, mode: u64) -> (Result<(), Errno>, i64) {
        let mut arg = crate::kit::uapi::UffdioMove {
            dst: dst as u64,
            src: src as u64,
            len: len as u64,
            mode,
            moved: 0,
        };
        // SAFETY: a properly initialised uffdio_move.
        let r = unsafe { crate::kit::uapi::ioctl_move(self.raw_fd(), &mut arg) };
        (r.map(drop), arg.moved)
    }

    /// UFFDIO_POISON over `len` bytes (6.6), waking the faulting thread: the result and `updated`.
    pub fn poison_raw(&self, start: usize, len: usize) -> (Result<(), Errno>, i64) {
        let mut arg =
            crate::kit::uapi::UffdioPoison { start: start as u64, len: len as u64, mode: 0, updated: 0 };
        // SAFETY: a properly initialised uffdio_poison.
        let r = unsafe { crate::kit::uapi::ioctl_poison(self.raw_fd(), &mut arg) };
        (r.map(drop), arg.updated)
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
        crate::kit::memory::with_filled(byte, page, |src| self.copy(page_addr, src))
            .ctx("UFFDIO_COPY")
            .map(drop)
    }
}

impl Uffd {
    /// Waits up to `limit` for `worker`'s fault message. Anything else that happens instead (another
    /// event, the worker finishing, nothing) ends the probe with that observation
    /// ([`Fail::Observed`]).
    pub fn await_fault<T: std::fmt::Debug>(
        &self,
        worker: &Worker<T>,
        region: &Region,
        limit: Duration,
    ) -> Result<Event, Fail> {
        Err(Fail::Observed(match self.next_or_done(worker, limit)? {
            Next::Event(e @ Event::Pagefault { .. }) => return Ok(e),
            Next::Event(e) => unexpected(&e, region),
            Next::Done(v) => Observation::new(format!("returned without a fault message: {v:?}")),
            Next::Timeout => Observation::new("blocked without a fault message"),
        }))
    }
}

/// A page server's message pump: the EAGAIN protocol in one place. Faults read while draining
/// events after an EAGAIN are kept and come back from [`Pump::next`] in the order they were read;
/// every other message goes to the caller's `on_event`.
pub struct Pump<'a> {
    uffd: &'a Uffd,
    pending: std::collections::VecDeque<Event>,
}

impl<'a> Pump<'a> {
    pub fn new(uffd: &'a Uffd) -> Pump<'a> {
        Pump { uffd, pending: std::collections::VecDeque::new() }
    }

    /// The next message: a fault kept from a drain, else the next one read (waiting up to `limit`).
    pub fn next(&mut self, limit: Duration) -> Result<Option<Event>, Fail> {
        match self.pending.pop_front() {
            Some(e) => Ok(Some(e)),
            None => self.uffd.next(limit),
        }
    }

    /// [`Uffd::copy_following_eagain`], keeping the faults it reads for [`Pump::next`].
    pub fn copy(
        &mut self,
        dst: usize,
        limit: Duration,
        data: impl FnMut() -> Vec<u8>,
        mut on_event: impl FnMut(Event),
    ) -> Result<Copied, Fail> {
        let pending = &mut self.pending;
        self.uffd.copy_following_eagain(dst, limit, data, |e| match e {
            e @ Event::Pagefault { .. } => pending.push_back(e),
            e => on_event(e),
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

/// The observation for a message a probe did not expect at that point.
pub fn unexpected(event: &Event, region: &Region) -> Observation {
    Observation::new(format!("unexpected event: {}", describe_event(event, region)))
}

impl Uffd {
    /// After an access returned without a message, watches the quiet window for one that comes
    /// late: `quiet` when none does, else `{late} {event}`; the window goes into the details.
    /// A message about memory that is not a region of ours (a helper's) is named by its kind.
    pub fn watch_quiet(&self, ctx: &Ctx, region: Option<&Region>, quiet: String, late: &str) -> ProbeResult {
        Ok(match self.next(ctx.window)? {
            None => Observation::new(quiet),
            Some(e) => Observation::new(format!(
                "{late} {}",
                region.map_or_else(|| describe_kind(&e), |r| describe_event(&e, r))
            )),
        }
        .with("window_ms", ctx.window.as_millis() as u64))
    }

    /// The new uffd a FORK message carries. (The `userfaultfd` crate's `IntoRawFd` closes the
    /// descriptor it hands out, so the number is taken and the wrapper forgotten instead.)
    pub fn from_fork_event(uffd: userfaultfd::Uffd) -> Uffd {
        let raw = uffd.as_raw_fd();
        std::mem::forget(uffd);
        // SAFETY: the FORK message installed this descriptor for us; nothing else owns it.
        Uffd::from_fd(unsafe { OwnedFd::from_raw_fd(raw) })
    }
}

/// The feature bits that say a kernel can register `region`'s kind of memory for MISSING faults
/// (anonymous memory needs none): asking for them makes a kernel without them `unsupported`.
pub fn backing_features(region: &Region) -> u64 {
    use crate::kit::uapi::{FEATURE_MISSING_HUGETLBFS, FEATURE_MISSING_SHMEM};
    match (region.is_hugetlb(), region.is_shared()) {
        (true, _) => FEATURE_MISSING_HUGETLBFS,
        (false, true) => FEATURE_MISSING_SHMEM,
        (false, false) => 0,
    }
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
                        match crate::kit::memory::with_filled(byte, page, |src| self.copy(at, src)) {
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
        Event::Remove { start, end } => format!("REMOVE {}", span(region, *start as u64, *end as u64)),
        Event::Unmap { start, end } => format!("UNMAP {}", span(region, *start as u64, *end as u64)),
        Event::Remap { .. } => "REMAP".to_string(),
        Event::Fork { .. } => "FORK".to_string(),
    }
}

/// A range relative to `region`: `pages [1,3)` when it is whole pages, else its byte offsets
/// (`bytes [+0x0,+0x1000)`: a range that ends inside a huge page).
fn span(region: &Region, start: u64, end: u64) -> String {
    let page = region.page_size() as u64;
    if start % page == 0 && end % page == 0 {
        format!("pages [{},{})", region.page_index(start), region.page_index(end))
    } else {
        let base = region.base() as i64;
        let off = |a: u64| {
            let d = a as i64 - base;
            if d < 0 {
                format!("-{:#x}", -d)
            } else {
                format!("+{d:#x}")
            }
        };
        format!("bytes [{},{})", off(start), off(end))
    }
}

/// A message's kind without its place: `fault read`, `REMOVE`, `UNMAP`.
pub fn describe_kind(event: &Event) -> String {
    match event {
        Event::Pagefault { kind, rw, .. } => format!("fault {}", describe_fault(*kind, *rw)),
        Event::Remove { .. } => "REMOVE".to_string(),
        Event::Unmap { .. } => "UNMAP".to_string(),
        Event::Remap { .. } => "REMAP".to_string(),
        Event::Fork { .. } => "FORK".to_string(),
    }
}

/// What a call made on a worker (an madvise, munmap, fallocate) raised: see [`Uffd::raised_by`].
pub enum Raised {
    /// A message arrived while it ran (it has returned since, or the timeout passed).
    Event(Event),
    /// It returned without one.
    Returned(Result<(), nix::errno::Errno>),
    /// Neither, within the timeout.
    Blocked,
}

impl Raised {
    /// `REMOVE pages [1,3)`, `EINVAL, no event`, `blocked without an event`.
    pub fn describe(&self, region: &Region) -> String {
        match self {
            Raised::Event(e) => describe_event(e, region),
            Raised::Returned(r) => format!("{}, no event", r.map_or_else(errno_name, |()| "0".to_string())),
            Raised::Blocked => "blocked without an event".to_string(),
        }
    }
}

impl Uffd {
    /// Runs `op` on a worker and returns the first message it raised, once it has returned (a
    /// REMOVE's madvise waits for its event to be read, which this does), or that it returned
    /// without one. No quiet window: for "raises nothing" claims, watch one after.
    pub fn raised_by(
        &self,
        limit: Duration,
        op: impl FnOnce() -> Result<(), nix::errno::Errno> + Send + 'static,
    ) -> Result<Raised, Fail> {
        let worker = crate::kit::worker::spawn("op", op);
        Ok(match self.next_or_done(&worker, limit)? {
            Next::Event(e) => {
                worker.wait(limit);
                Raised::Event(e)
            }
            Next::Done(r) => Raised::Returned(r),
            Next::Timeout => Raised::Blocked,
        })
    }
}

/// The pages (indices in `region`) of the fault messages among `events`, in arrival order; any
/// other message in parentheses.
pub fn fault_pages(events: &[Event], region: &Region) -> String {
    events
        .iter()
        .map(|e| match e {
            Event::Pagefault { addr, .. } => region.page_index(*addr as u64).to_string(),
            other => format!("({})", describe_event(other, region)),
        })
        .collect::<Vec<_>>()
        .join(" ")
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
        worker: &crate::kit::worker::Worker<T>,
        limit: Duration,
    ) -> Result<Next<T>, Fail> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let ready =
                crate::kit::poll::wait_any(&[self.inner.as_fd(), worker.done_fd()], left).ctx("poll")?;
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
