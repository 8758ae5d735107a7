//! `stw`: what a stop-the-world runtime meets when threads are parked on missing pages.
//!
//! Two kinds of stop-the-world are modelled. Signal-based (Boehm GC, Mono, .NET): the collector
//! sends every thread a signal whose handler acknowledges and waits to be resumed; the world is
//! stopped once every thread acknowledged. Cooperative (Go, HotSpot): threads poll at safepoints
//! and a thread inside a syscall counts as stopped; it must not run managed code until resumed.

use crate::catalogue::Behaviour;
use crate::probe::{Context, Ctx, Fail, Observation, ProbeResult};
use crate::sys::{self, errno_name, madvise, Region, SignalFlag, MADV_POPULATE_READ};
use crate::uffd::{describe_event, registered, Event, RegisterMode, FEATURE_EVENT_REMOVE};
use crate::worker::{self, Worker};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

macro_rules! before_5_14 {
    () => {
        ("<5.14", "unsupported: MADV_POPULATE_* is new in Linux 5.14")
    };
}

const SIGNAL_CITATION: &str = "fs/userfaultfd.c handle_userfault (v5.10, v6.12): user-mode faults wait \
     in TASK_INTERRUPTIBLE (userfaultfd_get_blocking_state) and return VM_FAULT_RETRY on a pending \
     signal; arch/x86/mm/fault.c do_user_addr_fault (fault_signal_pending)";

pub const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        id: "stw.user_fault_state",
        summary: "A thread blocked by a plain load on a missing page sleeps in S state (interruptible)",
        observes: "The faulting thread's scheduler state letter once its fault message has arrived: `S` \
                   (interruptible sleep) or `D`.",
        expect: &[("*", "S")],
        citation: SIGNAL_CITATION,
        notes: "Contrast populate.thread_state: the same wait inside MADV_POPULATE_* is D.",
        documented: &[],
        probe: user_fault_state,
    },
    Behaviour {
        id: "stw.user_fault_signal",
        summary: "A signal handler runs on a thread blocked by a plain load on a missing page, before the page is served",
        observes: "A worker loads from a missing, MISSING-registered page; once its fault message has \
                   arrived and the thread is asleep, SIGUSR1 is sent to it: `handler ran while blocked` \
                   when the handler runs within the quiet window with the page still unserved, else \
                   `handler did not run while blocked`.",
        expect: &[("*", "handler ran while blocked")],
        citation: SIGNAL_CITATION,
        notes: "This is what lets signal-based stop-the-world (Boehm GC, Mono, .NET) suspend a thread \
                parked on a missing page.",
        documented: &[],
        probe: user_fault_signal,
    },
    Behaviour {
        id: "stw.user_fault_duplicate",
        summary: "After the signal handler returns, the interrupted load faults again: the page server sees a second message",
        observes: "As stw.user_fault_signal; then whether a second fault message for the same page arrives \
                   within the quiet window after the handler ran: `fault delivered again` or `no second \
                   message`.",
        expect: &[("*", "fault delivered again")],
        citation: "fs/userfaultfd.c handle_userfault (v6.1): a woken waiter is dequeued; the retried \
                   access is a new fault with a new message",
        notes: "Page servers must tolerate duplicate faults for a page they are already serving \
                (UFFDIO_COPY then fails with EEXIST for one of them).",
        documented: &[],
        probe: user_fault_duplicate,
    },
    Behaviour {
        id: "stw.signal_suspend_load",
        summary: "A signal-based stop-the-world completes while threads are parked on missing pages by plain loads",
        observes: "Two threads block by plain loads on missing pages, a third runs; every thread is sent \
                   the suspend signal, whose handler acknowledges and waits to be resumed: `completes` \
                   when all three acknowledge within the quiet window while the pages are still unserved, \
                   `stalls until the pages are served` when the missing acknowledgements come only after \
                   serving, `deadlocks` when they never come.",
        expect: &[("*", "completes")],
        citation: SIGNAL_CITATION,
        notes: "",
        documented: &[],
        probe: signal_suspend_load,
    },
    Behaviour {
        id: "stw.signal_suspend_populate",
        summary: "A signal-based stop-the-world cannot stop threads blocked in MADV_POPULATE_* until their pages are served",
        observes: "As stw.signal_suspend_load, with the two threads blocked in MADV_POPULATE_READ.",
        expect: &[before_5_14!(), (">=5.14", "stalls until the pages are served")],
        citation: "mm/gup.c faultin_page (v6.1): GUP faults are killable, not interruptible; see \
                   populate.signal",
        notes: "A runtime that pre-faults memory with MADV_POPULATE_* under a uffd while using \
                signal-based suspension can stall its collector for as long as the page server takes; \
                if the page server waits for the collector, that is a deadlock.",
        documented: &[],
        probe: signal_suspend_populate,
    },
    Behaviour {
        id: "stw.cooperative_populate",
        summary: "A cooperative stop-the-world (threads in syscalls count as stopped) completes while threads are blocked in MADV_POPULATE_*",
        observes: "Two threads pre-fault missing pages with MADV_POPULATE_READ, marked as in a syscall; a \
                   safepoint is requested: `completes` when it is reached within the quiet window while \
                   the pages are unserved and a thread whose populate returns during the stop parks \
                   before running again.",
        expect: &[before_5_14!(), (">=5.14", "completes")],
        citation: "madvise(2): MADV_POPULATE_* is a system call like any other; Go's runtime \
                   (entersyscall/exitsyscall) and HotSpot's thread states treat threads in native \
                   code as safepoint-safe",
        notes: "",
        documented: &[],
        probe: cooperative_populate,
    },
    Behaviour {
        id: "stw.parallel_stress",
        summary: "Parallel MADV_POPULATE pre-faulting, COPY serving, repeated stop-the-world and MADV_DONTNEED: no deadlock, no lost or stale page",
        observes: "Four threads each pre-fault eight pages with MADV_POPULATE_READ, round after round, and \
                   check every page holds its current version; a server thread serves with UFFDIO_COPY \
                   following the EAGAIN protocol; a coordinator runs cooperative stop-the-world cycles and \
                   MADV_DONTNEED on pseudo-random pages between them. `no deadlock, no lost or stale \
                   page` when every cycle finishes and every check holds. Details: cycles per second.",
        expect: &[before_5_14!(), (">=5.14", "no deadlock, no lost or stale page")],
        citation: "fs/userfaultfd.c (v6.1): UFFDIO_COPY, UFFD_EVENT_REMOVE and mmap_changing; \
                   mm/madvise.c madvise_populate",
        notes: "Counts and rates vary run to run and are details; the observation does not.",
        documented: &[],
        probe: parallel_stress,
    },
];

/// A worker blocked by a plain load on a missing page, with SIGUSR1 sent once it sleeps.
struct Signalled {
    ran: u64,
    refault: Option<bool>,
    state: Option<char>,
}

fn load_and_signal(ctx: &Ctx) -> Result<Result<Signalled, Observation>, Fail> {
    let flag = SignalFlag::install(Signal::SIGUSR1).ctx("sigaction(SIGUSR1)")?;
    let (uffd, region) = registered(0, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    let addr = region.base();
    let worker = worker::spawn("load", move || sys::load(addr));
    if let Err(obs) = uffd.await_fault(&worker, &region, ctx.timeout)? {
        return Ok(Err(obs));
    }
    let state = sys::wait_until_blocked(worker.tid(), ctx.timeout);
    sys::tgkill(worker.tid(), Signal::SIGUSR1).ctx("tgkill")?;
    let ran = flag.wait(ctx.window).ctx("waiting for the handler")?;
    let refault =
        if ran > 0 { Some(matches!(uffd.next(ctx.window)?, Some(Event::Pagefault { .. }))) } else { None };
    uffd.serve(region.base(), region.page_size(), 0xA5)?;
    match worker.wait(ctx.timeout) {
        Some(0xA5) => Ok(Ok(Signalled { ran, refault, state })),
        Some(other) => Err(Fail::error(format!("the load returned {other:#x}, not the served 0xa5"))),
        None => Err(Fail::error("the load did not finish after the page was served")),
    }
}

fn user_fault_state(ctx: &Ctx) -> ProbeResult {
    let (uffd, region) = registered(0, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    let addr = region.base();
    let worker = worker::spawn("load", move || sys::load(addr));
    if let Some(Event::Pagefault { .. }) = uffd.next(ctx.timeout)? {
        let state = sys::wait_until_blocked(worker.tid(), ctx.timeout);
        uffd.serve(region.base(), region.page_size(), 1)?;
        worker.wait(ctx.timeout);
        Ok(Observation::new(sys::describe_state(state)))
    } else {
        Ok(Observation::new("no fault message"))
    }
}

fn user_fault_signal(ctx: &Ctx) -> ProbeResult {
    Ok(match load_and_signal(ctx)? {
        Err(obs) => obs,
        Ok(s) => Observation::new(if s.ran > 0 {
            "handler ran while blocked"
        } else {
            "handler did not run while blocked"
        })
        .with("state", sys::describe_state(s.state))
        .with("window_ms", ctx.window.as_millis() as u64),
    })
}

fn user_fault_duplicate(ctx: &Ctx) -> ProbeResult {
    Ok(match load_and_signal(ctx)? {
        Err(obs) => obs,
        Ok(Signalled { refault: None, .. }) => Observation::new("handler did not run while blocked"),
        Ok(Signalled { refault: Some(again), .. }) => {
            Observation::new(if again { "fault delivered again" } else { "no second message" })
                .with("window_ms", ctx.window.as_millis() as u64)
        }
    })
}

// Signal-based suspension: the handler acknowledges on an eventfd, then waits on a futex until
// the collector resumes the world (with a bounded wait, so a lost wake-up cannot hang a probe).
static ACK_FD: AtomicI32 = AtomicI32::new(-1);
static RESUME: AtomicU32 = AtomicU32::new(0);

extern "C" fn suspend_handler(_: libc::c_int) {
    let one: u64 = 1;
    // SAFETY: write(2) and futex(2) are async-signal-safe; the buffers are locals and statics.
    unsafe { libc::write(ACK_FD.load(Ordering::SeqCst), (&one as *const u64).cast(), 8) };
    while RESUME.load(Ordering::SeqCst) == 0 {
        let ts = libc::timespec { tv_sec: 0, tv_nsec: 50_000_000 };
        unsafe { libc::syscall(libc::SYS_futex, RESUME.as_ptr(), libc::FUTEX_WAIT, 0, &ts) };
    }
}

fn resume_world() {
    RESUME.store(1, Ordering::SeqCst);
    // SAFETY: wakes every waiter on the futex word.
    unsafe { libc::syscall(libc::SYS_futex, RESUME.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
}

/// Reads acknowledgements from the eventfd until `want` arrived or `limit` passed.
fn collect_acks(fd: &OwnedFd, want: u64, have: &mut u64, limit: Duration) -> Result<(), Fail> {
    let deadline = Instant::now() + limit;
    while *have < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if !sys::wait_readable(std::os::fd::AsFd::as_fd(fd), left).ctx("poll")? {
            break;
        }
        let mut n: u64 = 0;
        // SAFETY: reading 8 bytes from an eventfd into a u64.
        if unsafe { libc::read(fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8) } == 8 {
            *have += n;
        }
    }
    Ok(())
}

/// Two threads blocked on missing pages by `block` (a load, or a populate), one running; all
/// are sent the suspend signal.
fn signal_suspend(ctx: &Ctx, populate: bool) -> ProbeResult {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    // SAFETY: eventfd returns a new descriptor that we own.
    let ack = unsafe {
        OwnedFd::from_raw_fd(
            Errno::result(libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK)).ctx("eventfd")?,
        )
    };
    ACK_FD.store(ack.as_raw_fd(), Ordering::SeqCst);
    let action = SigAction::new(SigHandler::Handler(suspend_handler), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handler only uses async-signal-safe calls.
    unsafe { sigaction(Signal::SIGUSR1, &action) }.ctx("sigaction")?;

    let (uffd, region) = registered(0, Region::anonymous(2).ctx("mmap")?, RegisterMode::MISSING)?;
    let page = region.page_size();
    let blocked: Vec<Worker<()>> = (0..2)
        .map(|i| {
            let addr = region.page(i);
            worker::spawn("blocked", move || {
                if populate {
                    let _ = madvise(addr, page, MADV_POPULATE_READ);
                } else {
                    sys::load(addr);
                }
            })
        })
        .collect();
    let stop_running = Arc::new(AtomicBool::new(false));
    let running = {
        let stop = stop_running.clone();
        worker::spawn("running", move || {
            while !stop.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
        })
    };
    // Wait until both blocked threads' faults are pending.
    let mut faults = 0;
    while faults < 2 {
        match uffd.next(ctx.timeout)? {
            Some(Event::Pagefault { .. }) => faults += 1,
            Some(e) => {
                return Ok(Observation::new(format!("unexpected event: {}", describe_event(&e, &region))))
            }
            None => return Ok(Observation::new("the threads did not block on their pages")),
        }
    }
    for w in &blocked {
        sys::wait_until_blocked(w.tid(), ctx.timeout);
    }
    let started = Instant::now();
    for tid in blocked.iter().map(Worker::tid).chain([running.tid()]) {
        sys::tgkill(tid, Signal::SIGUSR1).ctx("tgkill")?;
    }
    let mut acks = 0;
    collect_acks(&ack, 3, &mut acks, ctx.window)?;
    let acked_before_serving = acks;
    let stop_ms = started.elapsed().as_millis() as u64;
    for i in 0..2 {
        uffd.serve(region.page(i), page, 0x5C)?;
    }
    collect_acks(&ack, 3, &mut acks, ctx.timeout)?;
    resume_world();
    stop_running.store(true, Ordering::SeqCst);
    for w in blocked.iter() {
        w.wait(ctx.timeout);
    }
    running.wait(ctx.timeout);
    let observed = match (acked_before_serving, acks) {
        (3, _) => "completes",
        (_, 3) => "stalls until the pages are served",
        _ => "deadlocks",
    };
    Ok(Observation::new(observed)
        .with("acks_before_serving", acked_before_serving)
        .with("stop_ms", stop_ms)
        .with("window_ms", ctx.window.as_millis() as u64))
}

fn signal_suspend_load(ctx: &Ctx) -> ProbeResult {
    signal_suspend(ctx, false)
}

fn signal_suspend_populate(ctx: &Ctx) -> ProbeResult {
    super::populate::require_advice(MADV_POPULATE_READ, "MADV_POPULATE_READ")?;
    signal_suspend(ctx, true)
}

/// A cooperative safepoint: thread states under a mutex, changes signalled on a condvar.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ThreadState {
    Running,
    InSyscall,
    Parked,
}

struct Safepoint {
    states: Mutex<(bool, Vec<ThreadState>)>,
    changed: Condvar,
}

impl Safepoint {
    fn new(threads: usize) -> Arc<Safepoint> {
        Arc::new(Safepoint {
            states: Mutex::new((false, vec![ThreadState::Running; threads])),
            changed: Condvar::new(),
        })
    }

    fn set(&self, me: usize, state: ThreadState) {
        self.states.lock().unwrap().1[me] = state;
        self.changed.notify_all();
    }

    /// Leaving a syscall or polling: park while a stop is requested.
    fn poll(&self, me: usize) {
        let mut g = self.states.lock().unwrap();
        if g.0 {
            g.1[me] = ThreadState::Parked;
            self.changed.notify_all();
            while g.0 {
                g = self.changed.wait(g).unwrap();
            }
        }
        g.1[me] = ThreadState::Running;
        self.changed.notify_all();
    }

    /// Requests a stop and waits up to `limit` for every thread to be parked or in a syscall.
    fn stop(&self, limit: Duration) -> bool {
        let mut g = self.states.lock().unwrap();
        g.0 = true;
        let (g, res) =
            self.changed.wait_timeout_while(g, limit, |(_, s)| s.contains(&ThreadState::Running)).unwrap();
        drop(g);
        !res.timed_out()
    }

    fn resume(&self) {
        self.states.lock().unwrap().0 = false;
        self.changed.notify_all();
    }

    fn state(&self, me: usize) -> ThreadState {
        self.states.lock().unwrap().1[me]
    }

    /// Waits up to `limit` for thread `me` to reach `want`.
    fn wait_for(&self, me: usize, want: ThreadState, limit: Duration) -> bool {
        let g = self.states.lock().unwrap();
        let (g, res) = self.changed.wait_timeout_while(g, limit, |(_, s)| s[me] != want).unwrap();
        drop(g);
        !res.timed_out()
    }
}

fn cooperative_populate(ctx: &Ctx) -> ProbeResult {
    super::populate::require_advice(MADV_POPULATE_READ, "MADV_POPULATE_READ")?;
    let (uffd, region) = registered(0, Region::anonymous(2).ctx("mmap")?, RegisterMode::MISSING)?;
    let page = region.page_size();
    let sp = Safepoint::new(2);
    let workers: Vec<Worker<Result<(), Errno>>> = (0..2)
        .map(|i| {
            let (addr, sp) = (region.page(i), sp.clone());
            worker::spawn("mutator", move || {
                sp.set(i, ThreadState::InSyscall);
                let r = madvise(addr, page, MADV_POPULATE_READ);
                sp.poll(i);
                r
            })
        })
        .collect();
    for _ in 0..2 {
        match uffd.next(ctx.timeout)? {
            Some(Event::Pagefault { .. }) => {}
            _ => return Ok(Observation::new("the threads did not block in populate")),
        }
    }
    let started = Instant::now();
    let stopped = sp.stop(ctx.window);
    let stop_ms = started.elapsed().as_millis() as u64;
    // While stopped, serve thread 0's page: it must park on its way out of the syscall.
    uffd.serve(region.page(0), page, 0x61)?;
    let parked = sp.wait_for(0, ThreadState::Parked, ctx.timeout);
    sp.resume();
    uffd.serve(region.page(1), page, 0x62)?;
    let results: Vec<_> = workers.iter().map(|w| w.wait(ctx.timeout)).collect();
    let all_ok = results.iter().all(|r| matches!(r, Some(Ok(()))));
    let observed = match (stopped, parked, all_ok) {
        (true, true, true) => "completes".to_string(),
        (false, _, _) => "does not complete while pages are missing".to_string(),
        (true, false, _) => {
            format!("completes, but a thread leaving populate did not park ({:?})", sp.state(0))
        }
        (true, true, false) => format!("completes, but populate failed: {results:?}"),
    };
    Ok(Observation::new(observed).with("stop_ms", stop_ms))
}

fn parallel_stress(ctx: &Ctx) -> ProbeResult {
    const THREADS: usize = 4;
    const PAGES: usize = 8;
    const ROUNDS: usize = 20;
    super::populate::require_advice(MADV_POPULATE_READ, "MADV_POPULATE_READ")?;
    let (uffd, region) = registered(
        FEATURE_EVENT_REMOVE,
        Region::anonymous(THREADS * PAGES).ctx("mmap")?,
        RegisterMode::MISSING,
    )?;
    let (uffd, region) = (Arc::new(uffd), Arc::new(region));
    let page = region.page_size();
    // Version of each page's content; bumped by the server when it reads a REMOVE.
    let versions: Arc<Vec<AtomicU8>> = Arc::new((0..THREADS * PAGES).map(|_| AtomicU8::new(1)).collect());
    // The version that became current with each page's last *completed* removal: the page is
    // zapped only after its REMOVE event is read, so until madvise returns the old content is
    // still legitimately there.
    let completed: Arc<Vec<AtomicU8>> = Arc::new((0..THREADS * PAGES).map(|_| AtomicU8::new(1)).collect());
    let bad = Arc::new(AtomicU64::new(0));
    let populate_errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let (faults, eagains, removals) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));

    let server = {
        let (uffd, region, versions, done, faults, eagains) =
            (uffd.clone(), region.clone(), versions.clone(), done.clone(), faults.clone(), eagains.clone());
        std::thread::spawn(move || -> Result<(), String> {
            let on_event = |e: Event| {
                if let Event::Remove { start, end } = e {
                    for p in region.page_index(start as u64)..region.page_index(end as u64) {
                        versions[p as usize].fetch_add(1, Ordering::SeqCst);
                    }
                }
            };
            // Faults read while draining events after an EAGAIN wait here for their turn.
            let mut pending: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
            while !done.load(Ordering::SeqCst) {
                let p = match pending.pop_front() {
                    Some(p) => p,
                    None => match uffd.next(Duration::from_millis(50)) {
                        Ok(Some(Event::Pagefault { addr, .. })) => region.page_index(addr as u64) as usize,
                        Ok(Some(e)) => {
                            on_event(e);
                            continue;
                        }
                        Ok(None) => continue,
                        Err(e) => return Err(format!("{e:?}")),
                    },
                };
                faults.fetch_add(1, Ordering::SeqCst);
                loop {
                    let data = vec![versions[p].load(Ordering::SeqCst); page];
                    match uffd.copy_raw(region.page(p), &data, 0).0 {
                        Ok(()) | Err(Errno::EEXIST) => break,
                        Err(Errno::EAGAIN) => {
                            eagains.fetch_add(1, Ordering::SeqCst);
                            while let Ok(Some(e)) = uffd.next(Duration::ZERO) {
                                match e {
                                    Event::Pagefault { addr, .. } => {
                                        pending.push_back(region.page_index(addr as u64) as usize)
                                    }
                                    e => on_event(e),
                                }
                            }
                        }
                        Err(e) => return Err(errno_name(e)),
                    }
                }
            }
            Ok(())
        })
    };

    let sp = Safepoint::new(THREADS);
    let mutators: Vec<_> = (0..THREADS)
        .map(|t| {
            let (region, versions, completed, bad, sp, errors) = (
                region.clone(),
                versions.clone(),
                completed.clone(),
                bad.clone(),
                sp.clone(),
                populate_errors.clone(),
            );
            std::thread::spawn(move || {
                for _ in 0..ROUNDS {
                    sp.set(t, ThreadState::InSyscall);
                    let r = madvise(region.page(t * PAGES), PAGES * region.page_size(), MADV_POPULATE_READ);
                    sp.poll(t);
                    if let Err(e) = r {
                        errors.lock().unwrap().push(errno_name(e));
                    }
                    for i in 0..PAGES {
                        let p = t * PAGES + i;
                        let before = completed[p].load(Ordering::SeqCst);
                        let v = sys::load(region.page(p));
                        let after = versions[p].load(Ordering::SeqCst);
                        // Lost: a zero page; stale: older than what the last removal completed
                        // before the load made current.
                        if v == 0 || v.wrapping_sub(before) > after.wrapping_sub(before) {
                            bad.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    sp.poll(t);
                }
                sp.set(t, ThreadState::Parked);
            })
        })
        .collect();

    let started = Instant::now();
    let (mut cycles, mut stuck) = (0u64, false);
    let mut seed: u32 = 0x2545_F491;
    while mutators.iter().any(|m| !m.is_finished()) {
        if !sp.stop(ctx.timeout) {
            stuck = true;
            sp.resume();
            break;
        }
        cycles += 1;
        sp.resume();
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let p = (seed >> 8) as usize % (THREADS * PAGES);
        if madvise(region.page(p), page, libc::MADV_DONTNEED).is_ok() {
            completed[p].store(versions[p].load(Ordering::SeqCst), Ordering::SeqCst);
            removals.fetch_add(1, Ordering::SeqCst);
        }
    }
    let elapsed = started.elapsed();
    if stuck {
        // Threads are still blocked; the probe process ends with them.
        return Ok(Observation::new("deadlock: a stop-the-world cycle did not finish").with("cycles", cycles));
    }
    let mutators_done = mutators.into_iter().all(|m| m.join().is_ok());
    done.store(true, Ordering::SeqCst);
    let server = server.join().map_err(|_| Fail::error("the server thread panicked"))?;
    if let Err(e) = server {
        return Err(Fail::error(format!("server: {e}")));
    }
    let bad = bad.load(Ordering::SeqCst);
    let mut errors = populate_errors.lock().unwrap().clone();
    let failed_populates = errors.len();
    errors.sort();
    errors.dedup();
    let observed = match (mutators_done, bad) {
        (true, 0) => "no deadlock, no lost or stale page".to_string(),
        (false, _) => "a mutator thread panicked".to_string(),
        (_, n) => format!("{n} lost or stale pages"),
    };
    Ok(Observation::new(observed)
        .with("cycles", cycles)
        .with("cycles_per_s", (cycles as f64 / elapsed.as_secs_f64().max(1e-6)) as u64)
        .with("faults_served", faults.load(Ordering::SeqCst))
        .with("removals", removals.load(Ordering::SeqCst))
        .with("eagain", eagains.load(Ordering::SeqCst))
        .with("elapsed_ms", elapsed.as_millis() as u64)
        .with("failed_populates", failed_populates)
        .with("populate_errors", errors.join(" ")))
}
