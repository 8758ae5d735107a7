//! `stw`: what a stop-the-world runtime meets when threads are parked on missing pages.
//!
//! Two kinds of stop-the-world are modelled. Signal-based (Boehm GC, Mono, .NET): the collector
//! sends every thread a signal whose handler acknowledges and waits to be resumed; the world is
//! stopped once every thread acknowledged. Cooperative (Go, HotSpot): threads poll at safepoints
//! and a thread inside a syscall counts as stopped; it must not run managed code until resumed.

use crate::kit::behaviour::Behaviour;
use crate::kit::memory::{madvise, Region, MADV_POPULATE_READ};
use crate::kit::outcome::errno_name;
use crate::kit::outcome::{Context, Ctx, Fail, Observation, ProbeResult, Sabotage};
use crate::kit::require;
use crate::kit::rows;
use crate::kit::signals::SignalFlag;
use crate::kit::uapi::FEATURE_EVENT_REMOVE;
use crate::kit::uffd;
use crate::kit::uffd::{describe_event, registered, Event, Pump, RegisterMode};
use crate::kit::worker::{self, Worker};
use crate::kit::{memory, threads};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

macro_rules! signal_model {
    () => {
        "Models a signal-based stop-the-world (Boehm GC's suspend signal, Mono, .NET): every thread \
         is signalled and its handler acknowledges and waits to be resumed. Decided by the kernel: \
         whether each handler ran (it writes an eventfd) while the pages stayed missing (mincore). A \
         real runtime's handler also saves registers for its stack scan; Go does not stop the world \
         this way (stw.go_*)."
    };
}
const SIGNAL_MODEL: &str = signal_model!();

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
        probe: user_fault_state,
        documented: &[("*", "D", crate::probes::sources::SEED_TASK_KILLABLE)],
        ..Behaviour::DEFAULT
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
        probe: user_fault_signal,
        documented: &[("*", "handler did not run while blocked", crate::probes::sources::SEED_NO_SIGNAL)],
        ..Behaviour::DEFAULT
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
        probe: user_fault_duplicate,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "stw.user_store_fault",
        summary: "A plain store to a missing page raises a write fault, sleeps in S, and is interruptible like a load",
        observes: "A worker stores a byte to a missing, MISSING-registered page: `fault KIND (waits in STATE)` \
                   once its message arrived and the thread sleeps; SIGUSR1 is then sent: `; handler ran while \
                   blocked` (within the quiet window) or `; handler did not run while blocked`; then `, fault \
                   delivered again` when the retried store raises a second message (else `, no second \
                   message`); once the page is served: `; store landed` when the page holds the stored byte.",
        expect: &[("*", "fault write (waits in S); handler ran while blocked, fault delivered again; store landed")],
        citation: SIGNAL_CITATION,
        notes: "A store is retried from the start after the handler: the served page must not be the final \
                word, the thread's store lands on it.",
        probe: user_store_fault,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "stw.signal_suspend_load",
        summary: "A signal-based stop-the-world completes while threads are parked on missing pages by plain loads",
        observes: "Two threads block by plain loads on missing pages, a third runs; every thread is sent \
                   the suspend signal, whose handler acknowledges (writes an eventfd) and waits to be \
                   resumed: `completes` when all three handlers ran within the quiet window while both \
                   pages are still missing (mincore: not resident), `stalls until the pages are served` \
                   when the missing acknowledgements come only after serving, `deadlocks` when they never \
                   come. Details: the blocked threads' states when signalled.",
        expect: &[("*", "completes")],
        citation: SIGNAL_CITATION,
        notes: SIGNAL_MODEL,
        probe: signal_suspend_load,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "stw.signal_suspend_populate",
        summary: "A signal-based stop-the-world cannot stop threads blocked in MADV_POPULATE_* until their pages are served",
        observes: "As stw.signal_suspend_load, with the two threads blocked in MADV_POPULATE_READ.",
        expect: &[rows::BEFORE_5_14, (">=5.14", "stalls until the pages are served")],
        citation: "mm/gup.c faultin_page (v6.1): GUP faults are killable, not interruptible; see \
                   populate.signal",
        notes: concat!(
            "A runtime that pre-faults memory with MADV_POPULATE_* under a uffd while using \
             signal-based suspension can stall its collector for as long as the page server takes; \
             if the page server waits for the collector, that is a deadlock. ",
            signal_model!()
        ),
        slow: 1,
        probe: signal_suspend_populate,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "stw.cooperative_populate",
        summary: "A cooperative stop-the-world (threads in syscalls count as stopped) completes while threads are blocked in MADV_POPULATE_*",
        observes: "Two threads pre-fault missing pages with MADV_POPULATE_READ; a stop is requested, and \
                a thread counts as stopped while the kernel shows it inside a system call \
                (/proc/<tid>/syscall names madvise, its state is D): `completes` when both do when the \
                stop is requested and still do at the end of the quiet window with both pages missing \
                (mincore), and each madvise returns 0 once its page is served; otherwise what broke the \
                rule (`a thread left madvise while its page was missing: ...`, `populate failed: ...`). \
                Details: the states and system calls seen.",
        expect: &[rows::BEFORE_5_14, (">=5.14", "completes")],
        citation: "mm/gup.c faultin_page and mm/madvise.c madvise_populate (v6.1, v6.12): the fault \
                   inside MADV_POPULATE_* is handled in the kernel, killable, and the system call \
                   returns only once the range is populated; madvise(2)",
        notes: "Models a cooperative stop-the-world (Go, HotSpot): a thread inside a system call counts \
                as stopped and must park on its way out. A real runtime knows that from its own \
                bookkeeping (Go marks the goroutine before the system call: entersyscall, which \
                stw.go_gc_populate runs for real); here the kernel's view decides (the thread's system \
                call and state, the page's residency), so what is tested is the kernel's part of the \
                bargain: the thread does not come back to user mode while its page is missing. Parking \
                on the way out is the runtime's part and is not modelled.",
        probe: cooperative_populate,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "stw.parallel_stress",
        summary: "Parallel MADV_POPULATE pre-faulting, COPY serving under the EAGAIN protocol, repeated stop-the-world and MADV_DONTNEED: no deadlock, no lost or stale page",
        observes: "A fixed, seeded schedule (stw::schedule): four threads each own 64 pages; in each of 32 rounds \
                   a thread pre-faults its pages with MADV_POPULATE_READ (in a syscall: stopped, for the \
                   stop-the-world) and checks that every page holds the version the schedule says, as u64 \
                   words; after each round the coordinator removes seeded ranges of that thread's pages with \
                   MADV_DONTNEED and runs seeded cooperative stop-the-world cycles while the other threads \
                   fault. A server thread serves each fault with the page's current version under the EAGAIN \
                   protocol (a REMOVE read bumps the version of its pages); every 64th fault is raced on \
                   purpose: it is copied while a REMOVE of a spare page is pending, so that copy must meet \
                   EAGAIN. `no deadlock, no lost or stale page`, or `N lost/stale/wrong pages`, \
                   `deadlock: ...`, `MADV_POPULATE_READ failed: ...`, `unexpected message: ...`. The run is an \
                   `error` unless it served at least the scheduled faults (2181), refaults (1925), REMOVE events \
                   (150), stop-the-world cycles (123) and forced EAGAIN races (18); those counts are identical \
                   on every run, timings and unforced EAGAINs are details.",
        expect: &[rows::BEFORE_5_14, (">=5.14", "no deadlock, no lost or stale page")],
        citation: "fs/userfaultfd.c userfaultfd_copy and userfaultfd_remove (v6.1, v6.12): UFFDIO_COPY fails \
                   with EAGAIN while a REMOVE is pending (mmap_changing), and MADV_DONTNEED waits until its event \
                   is read; mm/madvise.c madvise_populate (v5.14): MADV_POPULATE_READ faults in every missing \
                   page of the range",
        notes: "What would fail it: a REMOVE event missing or with the wrong range (the page keeps an old \
                version: stale), a page zapped but populated as zero (lost), a stop-the-world that cannot \
                complete while threads are blocked in populate (deadlock). The self-tests make the server \
                serve one stale page and one zero page (`--inject-fault serve-stale=stw.parallel_stress`, \
                `serve-zero=...`) and require the cell to say so, and skip the forced races \
                (`no-race=...`) and require an `error`. The server never waits on the mutators here; a \
                runtime whose server does is stw.go_stress_*. What it models: a cooperative runtime \
                whose threads poll a safepoint and count as stopped in a system call, by the probe's \
                own bookkeeping (a real runtime's, with a real server, is stw.go_stress_populate); \
                what the kernel decides is every page's content.",
        slow: 2,
        probe: parallel_stress,
        ..Behaviour::DEFAULT
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
    let worker = worker::spawn("load", move || memory::load(addr));
    if let Err(obs) = uffd.await_fault(&worker, &region, ctx.timeout)? {
        return Ok(Err(obs));
    }
    let state = threads::wait_until_blocked(worker.tid(), ctx.timeout);
    threads::tgkill(worker.tid(), Signal::SIGUSR1).ctx("tgkill")?;
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
    let worker = worker::spawn("load", move || memory::load(addr));
    if let Some(Event::Pagefault { .. }) = uffd.next(ctx.timeout)? {
        let state = threads::wait_until_blocked(worker.tid(), ctx.timeout);
        uffd.serve(region.base(), region.page_size(), 1)?;
        worker.wait(ctx.timeout);
        Ok(Observation::new(threads::describe_state(state)))
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
        .with("state", threads::describe_state(s.state))
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

fn user_store_fault(ctx: &Ctx) -> ProbeResult {
    let flag = SignalFlag::install(Signal::SIGUSR1).ctx("sigaction(SIGUSR1)")?;
    let (uffd, region) = registered(0, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    let addr = region.base();
    let worker = worker::spawn("store", move || memory::store(addr, 0x5B));
    let fault =
        uffd::describe_kind(&crate::fault_or_report!(uffd.await_fault(&worker, &region, ctx.timeout)));
    let state = threads::wait_until_blocked(worker.tid(), ctx.timeout);
    let mut observed = format!("{fault} (waits in {})", threads::describe_state(state));
    threads::tgkill(worker.tid(), Signal::SIGUSR1).ctx("tgkill")?;
    let ran = flag.wait(ctx.window).ctx("waiting for the handler")?;
    if ran > 0 {
        observed += "; handler ran while blocked";
        observed += match uffd.next(ctx.window)? {
            Some(Event::Pagefault { .. }) => ", fault delivered again",
            Some(_) => ", another message",
            None => ", no second message",
        };
    } else {
        observed += "; handler did not run while blocked";
    }
    uffd.serve(region.base(), region.page_size(), 0xA5)?;
    observed += match worker.wait(ctx.timeout) {
        Some(()) if memory::load(addr) == 0x5B => "; store landed",
        Some(()) => "; store lost",
        None => "; store still blocked",
    };
    Ok(Observation::new(observed).with("window_ms", ctx.window.as_millis() as u64))
}

/// Two threads blocked on missing pages (by a plain load, or by MADV_POPULATE_READ when `populate`), one running; all
/// are sent the suspend signal.
fn signal_suspend(ctx: &Ctx, populate: bool) -> ProbeResult {
    // The suspend handler acknowledges (raises the flag), then waits until the world resumes.
    let acks = SignalFlag::install_suspending(Signal::SIGUSR1).ctx("sigaction")?;

    let (uffd, region) = registered(0, Region::anonymous(2).ctx("mmap")?, RegisterMode::MISSING)?;
    let page = region.page_size();
    let blocked: Vec<Worker<()>> = (0..2)
        .map(|i| {
            let addr = region.page(i);
            worker::spawn("blocked", move || {
                if populate {
                    let _ = madvise(addr, page, MADV_POPULATE_READ);
                } else {
                    memory::load(addr);
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
            Some(e) => return Ok(uffd::unexpected(&e, &region)),
            None => return Ok(Observation::new("the threads did not block on their pages")),
        }
    }
    let states: Vec<String> = blocked
        .iter()
        .map(|w| threads::describe_state(threads::wait_until_blocked(w.tid(), ctx.timeout)))
        .collect();
    let started = Instant::now();
    for tid in blocked.iter().map(Worker::tid).chain([running.tid()]) {
        threads::tgkill(tid, Signal::SIGUSR1).ctx("tgkill")?;
    }
    let mut acked = 0;
    acks.wait_for(3, &mut acked, ctx.window).ctx("waiting for acknowledgements")?;
    // The stop completes only if every handler ran while the pages were still missing.
    let missing = !memory::resident(region.page(0), page).ctx("mincore")?
        && !memory::resident(region.page(1), page).ctx("mincore")?;
    let acked_before_serving = if missing { acked } else { 0 };
    let stop_ms = started.elapsed().as_millis() as u64;
    for i in 0..2 {
        uffd.serve(region.page(i), page, 0x5C)?;
    }
    acks.wait_for(3, &mut acked, ctx.timeout).ctx("waiting for acknowledgements")?;
    acks.resume();
    stop_running.store(true, Ordering::SeqCst);
    for w in blocked.iter() {
        w.wait(ctx.timeout);
    }
    running.wait(ctx.timeout);
    let observed = match (acked_before_serving, acked) {
        (3, _) => "completes",
        (_, 3) => "stalls until the pages are served",
        _ => "deadlocks",
    };
    Ok(Observation::new(observed)
        .with("acks_before_serving", acked_before_serving)
        .with("pages_missing_at_stop", missing)
        .with("blocked_states", states.join(" "))
        .with("stop_ms", stop_ms)
        .with("window_ms", ctx.window.as_millis() as u64))
}

fn signal_suspend_load(ctx: &Ctx) -> ProbeResult {
    signal_suspend(ctx, false)
}

fn signal_suspend_populate(ctx: &Ctx) -> ProbeResult {
    require::populate(MADV_POPULATE_READ)?;
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
}

fn cooperative_populate(ctx: &Ctx) -> ProbeResult {
    require::populate(MADV_POPULATE_READ)?;
    let (uffd, region) = registered(0, Region::anonymous(2).ctx("mmap")?, RegisterMode::MISSING)?;
    let page = region.page_size();
    let workers: Vec<Worker<Result<(), Errno>>> = (0..2)
        .map(|i| {
            let addr = region.page(i);
            worker::spawn("populate", move || madvise(addr, page, MADV_POPULATE_READ))
        })
        .collect();
    for _ in 0..2 {
        match uffd.next(ctx.timeout)? {
            Some(Event::Pagefault { .. }) => {}
            _ => return Ok(Observation::new("the threads did not block in populate")),
        }
    }
    let me = std::process::id() as i32;
    // A thread counts as stopped while the kernel shows it blocked inside madvise.
    let in_madvise = |w: &Worker<Result<(), Errno>>| {
        let state = threads::wait_until_blocked(w.tid(), ctx.timeout);
        let call = threads::task_syscall(me, w.tid());
        (state, call, state == Some('D') && call == Some(libc::SYS_madvise))
    };
    let at_stop: Vec<_> = workers.iter().map(in_madvise).collect();
    // The stop lasts the quiet window; the threads must stay in the kernel throughout.
    let quiet = workers.iter().find_map(|w| w.wait(ctx.window / 2).map(|r| (w.tid(), r)));
    let at_end: Vec<_> = workers.iter().map(in_madvise).collect();
    let missing = (0..2).all(|i| memory::resident(region.page(i), page).is_ok_and(|r| !r));
    for i in 0..2 {
        uffd.serve(region.page(i), page, 0x61 + i as u8)?;
    }
    let results: Vec<_> = workers.iter().map(|w| w.wait(ctx.timeout)).collect();
    let describe = |v: &[(Option<char>, Option<i64>, bool)]| {
        v.iter()
            .map(|(s, c, _)| {
                format!("{}:{}", threads::describe_state(*s), c.map_or("-".to_string(), |c| c.to_string()))
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let stopped = at_stop.iter().chain(&at_end).all(|t| t.2) && quiet.is_none() && missing;
    let observed = if let Some((tid, r)) = quiet {
        format!("a thread left madvise while its page was missing: {r:?} (tid {tid})")
    } else if !stopped {
        format!("a thread left madvise while its page was missing: {}", describe(&at_end))
    } else if let Some(bad) = results.iter().find(|r| !matches!(r, Some(Ok(())))) {
        format!("populate failed: {}", bad.map_or("no return".to_string(), |r| format!("{r:?}")))
    } else {
        "completes".to_string()
    };
    Ok(Observation::new(observed)
        .with("at_stop", describe(&at_stop))
        .with("at_window_end", describe(&at_end))
        .with("window_ms", ctx.window.as_millis() as u64))
}

/// The fixed work of `stw.parallel_stress`, derived from a seed: the same on every run and every
/// kernel, so that its counts are too (only timings vary).
pub mod schedule {
    /// Mutator threads, each owning a block of pages it pre-faults and checks.
    pub const THREADS: usize = 4;
    pub const PAGES_PER_THREAD: usize = 64;
    /// Rounds of pre-fault and check per thread; removals follow every round but the last.
    pub const ROUNDS: usize = 32;
    pub const SEED: u64 = 0x2542_0001_5EED_0001;
    /// Every this-many-th fault served is raced on purpose: the server holds it until a REMOVE
    /// of a spare page is pending, so its UFFDIO_COPY must meet EAGAIN.
    pub const RACE_EVERY: u64 = 64;

    /// splitmix64: a small, well-mixed generator whose sequence is fixed by its seed.
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng(seed)
        }
        pub fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// A number in `lo..=hi`.
        pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
            lo + self.next() % (hi - lo + 1)
        }
    }

    pub struct Schedule {
        /// `removals[round][thread]`: page ranges `[a, b)` within the thread's block, removed
        /// with MADV_DONTNEED after that thread checked that round (disjoint within a round).
        pub removals: Vec<Vec<Vec<(usize, usize)>>>,
        /// `cycles[round][thread]`: stop-the-world cycles run after those removals.
        pub cycles: Vec<Vec<u64>>,
    }

    /// The shape of a seeded stress's work: `rounds` rounds of `workers` workers, each owning
    /// `pages` pages; after each round but the last, each worker removes `removals` (lo..=hi)
    /// disjoint ranges of `span` (lo..=hi) pages, then runs `cycles` (lo..=hi) stop-the-world
    /// cycles. `stw.parallel_stress` and the Go stress (`goruntime::plan`) draw theirs from it.
    pub struct Shape {
        pub rounds: usize,
        pub workers: usize,
        pub pages: usize,
        pub removals: (u64, u64),
        pub span: (u64, u64),
        pub cycles: (u64, u64),
    }

    /// `(removals[round][worker], cycles[round][worker])` drawn from `seed`: the same on every run.
    #[allow(clippy::type_complexity)]
    pub fn draw(seed: u64, shape: &Shape) -> (Vec<Vec<Vec<(usize, usize)>>>, Vec<Vec<u64>>) {
        let mut rng = Rng::new(seed);
        let (mut removals, mut cycles) = (Vec::new(), Vec::new());
        for round in 0..shape.rounds {
            let (mut r, mut c) = (Vec::new(), Vec::new());
            for _ in 0..shape.workers {
                let mut taken = vec![false; shape.pages];
                let mut ranges = Vec::new();
                // None after the last round: nothing would refault them.
                let wanted = if round + 1 < shape.rounds {
                    rng.between(shape.removals.0, shape.removals.1)
                } else {
                    0
                };
                for _ in 0..wanted {
                    let a = rng.between(0, shape.pages as u64 - 1) as usize;
                    let b = (a + rng.between(shape.span.0, shape.span.1) as usize).min(shape.pages);
                    if taken[a..b].iter().all(|t| !t) {
                        taken[a..b].iter_mut().for_each(|t| *t = true);
                        ranges.push((a, b));
                    }
                }
                r.push(ranges);
                c.push(rng.between(shape.cycles.0, shape.cycles.1));
            }
            removals.push(r);
            cycles.push(c);
        }
        (removals, cycles)
    }

    impl Schedule {
        pub fn new(seed: u64) -> Schedule {
            let shape = Shape {
                rounds: ROUNDS,
                workers: THREADS,
                pages: PAGES_PER_THREAD,
                removals: (2, 4),
                span: (1, 12),
                cycles: (1, 3),
            };
            let (removals, cycles) = draw(seed, &shape);
            Schedule { removals, cycles }
        }

        /// MADV_DONTNEED calls, each raising one REMOVE event.
        pub fn remove_calls(&self) -> u64 {
            self.removals.iter().flatten().map(|r| r.len() as u64).sum()
        }

        /// Pages removed; each is faulted in again by the next round's pre-fault.
        pub fn refaults(&self) -> u64 {
            self.removals.iter().flatten().flatten().map(|(a, b)| (b - a) as u64).sum()
        }

        /// Faults the server must see: every page once, then every removed page again.
        pub fn faults(&self) -> u64 {
            (THREADS * PAGES_PER_THREAD) as u64 + self.refaults()
        }

        pub fn stw_cycles(&self) -> u64 {
            self.cycles.iter().flatten().sum()
        }

        /// Faults whose copy is raced against a pending REMOVE on purpose.
        pub fn forced_races(&self) -> u64 {
            self.faults() / RACE_EVERY
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_work_is_fixed_by_the_seed_and_large_enough() {
            let (a, b) = (Schedule::new(SEED), Schedule::new(SEED));
            assert_eq!(a.removals, b.removals);
            assert_eq!(a.cycles, b.cycles);
            assert!(a.faults() >= 2000, "thousands of faults: {}", a.faults());
            // The declaration's `observes` states these counts.
            assert_eq!((a.faults(), a.refaults()), (2181, 1925));
            assert!(a.refaults() >= 500, "hundreds of refaults: {}", a.refaults());
            assert!(a.remove_calls() >= 100 && a.stw_cycles() >= 100 && a.forced_races() >= 15);
            assert_ne!(Schedule::new(SEED + 1).removals, a.removals);
            for ranges in a.removals.iter().flatten() {
                for (i, (x, y)) in ranges.iter().enumerate() {
                    assert!(x < y && *y <= PAGES_PER_THREAD);
                    assert!(ranges[i + 1..].iter().all(|(p, q)| q <= x || p >= y), "disjoint: {ranges:?}");
                }
            }
        }
    }
}

/// What a mutator found when it checked a page against what the schedule says it must hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PageCheck {
    Good,
    /// All zero: the content was lost.
    Lost,
    /// An older version than the last completed removal made current.
    Stale,
    /// Anything else (a newer version, or a torn page).
    Wrong,
}

fn check_page(addr: usize, page: usize, expected: u64) -> PageCheck {
    let words = page / 8;
    // SAFETY: `addr` is a present page of the probe's region (the populate returned).
    let word = |i: usize| unsafe { std::ptr::read_volatile((addr as *const u64).add(i)) };
    let (first, mid, last) = (word(0), word(words / 2), word(words - 1));
    if first == 0 && mid == 0 && last == 0 {
        PageCheck::Lost
    } else if first != mid || first != last {
        PageCheck::Wrong
    } else if first < expected {
        PageCheck::Stale
    } else if first > expected {
        PageCheck::Wrong
    } else {
        PageCheck::Good
    }
}

/// Per mutator of the stress, the rounds it finished checking and may start, and their signal.
type Turns = (Mutex<(Vec<usize>, Vec<usize>)>, Condvar);

/// Counts the stress's server keeps.
#[derive(Default, Debug)]
struct ServerCounts {
    faults: u64,
    refaults: u64,
    /// REMOVE events for the mutators' pages.
    removes: u64,
    eagains: u64,
    forced_races: u64,
    /// Forced races whose copy did meet EAGAIN.
    forced_eagains: u64,
    eexist: u64,
    /// Messages the schedule does not explain (a REMOVE of an odd range, another event).
    odd_messages: Vec<String>,
}

fn parallel_stress(ctx: &Ctx) -> ProbeResult {
    use schedule::{Schedule, PAGES_PER_THREAD, RACE_EVERY, ROUNDS, SEED, THREADS};
    use std::sync::mpsc::channel;
    const PAGES: usize = THREADS * PAGES_PER_THREAD;
    require::populate(MADV_POPULATE_READ)?;
    let plan = Schedule::new(SEED);
    let (uffd, region) =
        registered(FEATURE_EVENT_REMOVE, Region::anonymous(PAGES).ctx("mmap")?, RegisterMode::MISSING)?;
    // A spare page on the same uffd, removed by the racer to make a REMOVE pending on purpose.
    let spare = Region::anonymous(1).ctx("mmap (spare)")?;
    uffd.register(spare.base(), spare.len(), RegisterMode::MISSING)?;
    let (uffd, region, spare) = (Arc::new(uffd), Arc::new(region), Arc::new(spare));
    let page = region.page_size();
    let stop_server = Arc::new(AtomicBool::new(false));

    // The racer: removes the spare page when asked, and says when madvise returned.
    let (race_tx, race_rx) = channel::<()>();
    let (raced_tx, raced_rx) = channel::<Result<(), Errno>>();
    let racer = {
        let (addr, len) = (spare.base(), spare.len());
        worker::spawn("racer", move || {
            while race_rx.recv().is_ok() {
                if raced_tx.send(madvise(addr, len, libc::MADV_DONTNEED)).is_err() {
                    break;
                }
            }
        })
    };
    let racer_tid = racer.tid();

    // The server: serves every fault with the page's current version under the EAGAIN protocol;
    // a REMOVE read bumps the versions of its pages.
    let server = {
        let (uffd, region, spare, stop) = (uffd.clone(), region.clone(), spare.clone(), stop_server.clone());
        let (sabotage, timeout) = (ctx.sabotage, ctx.timeout);
        worker::spawn("server", move || -> Result<ServerCounts, Fail> {
            // Per page, the version it must hold; a REMOVE read bumps its pages'.
            let state = std::cell::RefCell::new((vec![1u64; PAGES], ServerCounts::default()));
            let on_event = |e: Event| {
                let (versions, counts) = &mut *state.borrow_mut();
                match e {
                    Event::Remove { start, .. } if start as usize == spare.base() => {}
                    Event::Remove { start, end } => {
                        let (a, b) = (region.page_index(start as u64), region.page_index(end as u64));
                        if a < 0 || b > PAGES as i64 || a >= b {
                            counts.odd_messages.push(format!("REMOVE pages [{a},{b})"));
                        } else {
                            counts.removes += 1;
                            versions[a as usize..b as usize].iter_mut().for_each(|v| *v += 1);
                        }
                    }
                    other => counts.odd_messages.push(describe_event(&other, &region)),
                }
            };
            let mut pump = Pump::new(&uffd);
            let (mut race_outstanding, mut sabotaged) = (false, false);
            while !stop.load(Ordering::SeqCst) {
                let p = match pump.next(Duration::from_millis(20))? {
                    None => continue,
                    Some(Event::Pagefault { addr, .. }) => match region.page_index(addr as u64) {
                        p if (0..PAGES as i64).contains(&p) => p as usize,
                        p => {
                            state
                                .borrow_mut()
                                .1
                                .odd_messages
                                .push(format!("a fault outside the region (page {p})"));
                            continue;
                        }
                    },
                    Some(e) => {
                        on_event(e);
                        continue;
                    }
                };
                let (forced, refault) = {
                    let (versions, counts) = &mut *state.borrow_mut();
                    counts.faults += 1;
                    counts.refaults += u64::from(versions[p] > 1);
                    (counts.faults % RACE_EVERY == 0, versions[p] > 1)
                };
                if forced && sabotage != Some(Sabotage::NoRace) {
                    // A forced race: make a REMOVE pending (the racer blocks in madvise until the
                    // event is read), then copy this fault's page while it is.
                    if race_outstanding {
                        let _ = raced_rx.recv_timeout(timeout);
                    }
                    let _ = uffd.copy_raw(spare.base(), &vec![0x5Au8; spare.page_size()], 0);
                    race_tx.send(()).map_err(|_| Fail::error("the racer thread is gone"))?;
                    race_outstanding = true;
                    if !threads::wait_until_in_uffd_wait(racer_tid, timeout) {
                        return Err(Fail::error(
                            "the racer's MADV_DONTNEED never blocked on its REMOVE event",
                        ));
                    }
                    state.borrow_mut().1.forced_races += 1;
                }
                // The self-tests' deliberate mistake, once, on the first refault.
                let sabotage = sabotage.filter(|s| *s != Sabotage::NoRace && refault && !sabotaged);
                sabotaged |= sabotage.is_some();
                let data = || match (sabotage, state.borrow().0[p]) {
                    (Some(Sabotage::ZeroPage), _) => vec![0u8; page],
                    (Some(Sabotage::StalePage), v) => memory::versioned_page(v - 1, page),
                    (_, v) => memory::versioned_page(v, page),
                };
                let copied = pump.copy(region.page(p), timeout, data, &on_event)?;
                let counts = &mut state.borrow_mut().1;
                counts.eagains += copied.eagains;
                counts.eexist += u64::from(copied.eexist);
                counts.forced_eagains += u64::from(forced && copied.eagains > 0);
            }
            Ok(state.into_inner().1)
        })
    };

    // Each mutator's turn: the round it finished checking, and the round it may start.
    let turns: Arc<Turns> = Arc::new((Mutex::new((vec![0; THREADS], vec![0; THREADS])), Condvar::new()));
    let expected: Arc<Vec<AtomicU64>> = Arc::new((0..PAGES).map(|_| AtomicU64::new(1)).collect());
    // Per page, the worst thing any check found (index into PageCheck order).
    let findings: Arc<Vec<AtomicU8>> = Arc::new((0..PAGES).map(|_| AtomicU8::new(0)).collect());
    let populate_errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let sp = Safepoint::new(THREADS);
    let mutators: Vec<_> = (0..THREADS)
        .map(|t| {
            let (region, expected, findings, sp, errors, turns) = (
                region.clone(),
                expected.clone(),
                findings.clone(),
                sp.clone(),
                populate_errors.clone(),
                turns.clone(),
            );
            worker::spawn("mutator", move || {
                let page = region.page_size();
                for round in 0..ROUNDS {
                    sp.set(t, ThreadState::InSyscall);
                    let r = madvise(
                        region.page(t * PAGES_PER_THREAD),
                        PAGES_PER_THREAD * page,
                        MADV_POPULATE_READ,
                    );
                    sp.poll(t);
                    if let Err(e) = r {
                        errors.lock().unwrap().push(errno_name(e));
                    }
                    for i in 0..PAGES_PER_THREAD {
                        let p = t * PAGES_PER_THREAD + i;
                        let found = check_page(region.page(p), page, expected[p].load(Ordering::SeqCst));
                        findings[p].fetch_max(found as u8, Ordering::SeqCst);
                        if i % 8 == 7 {
                            sp.poll(t);
                        }
                    }
                    // Hand the block to the coordinator for this round's removals; waiting for
                    // it counts as stopped.
                    sp.set(t, ThreadState::Parked);
                    let (lock, changed) = &*turns;
                    let mut g = lock.lock().unwrap();
                    g.0[t] = round + 1;
                    changed.notify_all();
                    while g.1[t] <= round {
                        g = changed.wait(g).unwrap();
                    }
                    drop(g);
                    sp.poll(t);
                }
                sp.set(t, ThreadState::Parked);
            })
        })
        .collect();

    // The coordinator (this thread): in each round, for each thread in turn, once it has checked
    // its pages: remove the scheduled ranges, let it go on, run the scheduled stop-the-worlds.
    let started = Instant::now();
    let (mut cycles, mut remove_calls, mut stuck) = (0u64, 0u64, None);
    'rounds: for round in 0..ROUNDS {
        for t in 0..THREADS {
            let (lock, changed) = &*turns;
            let g = lock.lock().unwrap();
            let (mut g, waited) = changed.wait_timeout_while(g, ctx.timeout, |g| g.0[t] <= round).unwrap();
            if waited.timed_out() {
                stuck = Some(format!("mutator {t} did not finish round {round}"));
                break 'rounds;
            }
            for &(a, b) in &plan.removals[round][t] {
                let first = t * PAGES_PER_THREAD + a;
                madvise(region.page(first), (b - a) * page, libc::MADV_DONTNEED).ctx("MADV_DONTNEED")?;
                remove_calls += 1;
                for p in first..t * PAGES_PER_THREAD + b {
                    expected[p].fetch_add(1, Ordering::SeqCst);
                }
            }
            g.1[t] = round + 1;
            changed.notify_all();
            drop(g);
            for _ in 0..plan.cycles[round][t] {
                if !sp.stop(ctx.timeout) {
                    sp.resume();
                    stuck = Some(format!("stop-the-world cycle {cycles} did not finish"));
                    break 'rounds;
                }
                cycles += 1;
                sp.resume();
            }
        }
    }
    let elapsed = started.elapsed();
    if let Some(what) = stuck {
        // Threads are still blocked; the probe process ends with them.
        return Ok(Observation::new(format!("deadlock: {what}")).with("stw_cycles", cycles));
    }
    for m in &mutators {
        if m.wait(ctx.timeout).is_none() {
            return Ok(Observation::new("deadlock: a mutator did not finish its last round"));
        }
    }
    stop_server.store(true, Ordering::SeqCst);
    let counts = server.wait(ctx.timeout).ok_or_else(|| Fail::error("the server thread did not stop"))??;
    let mut errors = populate_errors.lock().unwrap().clone();
    let failed_populates = errors.len();
    errors.sort();
    errors.dedup();
    // The scenario must have happened as scheduled before its outcome means anything.
    let short: Vec<String> = [
        ("faults served", counts.faults, plan.faults()),
        ("refaults after removal", counts.refaults, plan.refaults()),
        ("REMOVE events", counts.removes, plan.remove_calls()),
        ("stop-the-world cycles", cycles, plan.stw_cycles()),
        ("forced EAGAIN races", counts.forced_eagains, plan.forced_races()),
    ]
    .iter()
    .filter(|(_, got, want)| got < want)
    .map(|(what, got, want)| format!("{what} {got} of {want}"))
    .collect();
    if !short.is_empty() && failed_populates == 0 {
        return Err(Fail::error(format!("the stress fell short of its schedule: {}", short.join(", "))));
    }
    let count = |kind: PageCheck| findings.iter().filter(|f| f.load(Ordering::SeqCst) == kind as u8).count();
    let (lost, stale, wrong) = (count(PageCheck::Lost), count(PageCheck::Stale), count(PageCheck::Wrong));
    let plural = |n: usize, what: &str| format!("{n} {what} page{}", if n == 1 { "" } else { "s" });
    let observed = if failed_populates > 0 {
        format!("MADV_POPULATE_READ failed: {}", errors.join(" "))
    } else if !counts.odd_messages.is_empty() {
        format!("unexpected message: {}", counts.odd_messages[0])
    } else if lost + stale + wrong == 0 {
        "no deadlock, no lost or stale page".to_string()
    } else {
        [(lost, "lost"), (stale, "stale"), (wrong, "wrong")]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| plural(*n, what))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(Observation::new(observed)
        .with("seed", format!("{SEED:#x}"))
        .with("faults_served", counts.faults)
        .with("refaults", counts.refaults)
        .with("remove_events", counts.removes)
        .with("remove_calls", remove_calls)
        .with("stw_cycles", cycles)
        .with("eagain", counts.eagains)
        .with("forced_races", counts.forced_races)
        .with("eexist", counts.eexist)
        .with("elapsed_ms", elapsed.as_millis() as u64)
        .with("faults_per_s", (counts.faults as f64 / elapsed.as_secs_f64().max(1e-6)) as u64))
}
