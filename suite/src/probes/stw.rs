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
use crate::kit::stress::{check_page, found, shortfall, Counts, PageCheck, Pages, Plan, Serve};
use crate::kit::uapi::FEATURE_EVENT_REMOVE;
use crate::kit::uffd;
use crate::kit::uffd::{registered, Event, Pump, RegisterMode};
use crate::kit::variant::{Access, Variant};
use crate::kit::worker::{self, Worker};
use crate::kit::{memory, threads};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
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
                   when the handler runs with the page still unserved, waited for up to `--timeout-ms` \
                   (what should happen: a loaded machine can take longer than the quiet window to run \
                   the thread), else `handler did not run while blocked`.",
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
                   after the handler ran, waited for up to `--timeout-ms`: `fault delivered again` or `no \
                   second message`.",
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
                   blocked` or `; handler did not run while blocked`; then `, fault delivered again` when the \
                   retried store raises a second message (else `, no second message`), each waited for up to \
                   `--timeout-ms`; once the page is served: `; store landed` when the page holds the stored \
                   byte.",
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
                   resumed: `completes` when all three handlers ran while both pages are still missing \
                   (mincore: not resident), waited for up to `--timeout-ms`, `stalls until the pages are served` \
                   when the missing acknowledgements come only after serving, `deadlocks` when they never \
                   come. Details: the blocked threads' states when signalled.",
        expect: &[("*", "completes")],
        citation: SIGNAL_CITATION,
        notes: SIGNAL_MODEL,
        probe: signal_suspend,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "stw.signal_suspend_populate",
        summary: "A signal-based stop-the-world cannot stop threads blocked in MADV_POPULATE_* until their pages are served",
        observes: "As stw.signal_suspend_load, with the two threads blocked in MADV_POPULATE_READ; the \
                   acknowledgements before serving are waited for over the quiet window.",
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
        probe: signal_suspend,
        variant: Variant::access(Access::Populate),
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
                   (318), stop-the-world cycles (244) and forced EAGAIN races (34); those counts are identical \
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
        selftests: &["selftests.stress_anon", "selftests.userfaultfd_anon_stress"],
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

fn load_and_signal(ctx: &Ctx) -> Result<Signalled, Fail> {
    let flag = SignalFlag::install(Signal::SIGUSR1).ctx("sigaction(SIGUSR1)")?;
    let (uffd, region) = registered(0, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    let addr = region.base();
    let worker = worker::spawn("load", move || memory::load(addr));
    uffd.await_fault(&worker, &region, ctx.timeout)?;
    let state = threads::wait_until_blocked(worker.tid(), ctx.timeout);
    threads::tgkill(worker.tid(), Signal::SIGUSR1).ctx("tgkill")?;
    // The handler and the retried fault should come: waited for up to the timeout, not the quiet
    // window (a thread on a loaded machine once took longer than 300 ms to run its handler).
    let ran = flag.wait(ctx.timeout).ctx("waiting for the handler")?;
    let refault =
        if ran > 0 { Some(matches!(uffd.next(ctx.timeout)?, Some(Event::Pagefault { .. }))) } else { None };
    uffd.serve(region.base(), region.page_size(), 0xA5)?;
    match worker.wait(ctx.timeout) {
        Some(0xA5) => Ok(Signalled { ran, refault, state }),
        Some(other) => Err(Fail::error(format!("the load returned {other:#x}, not the served 0xa5"))),
        None => Err(Fail::error("the load did not finish after the page was served")),
    }
}

fn user_fault_state(ctx: &Ctx, _: Variant) -> ProbeResult {
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

fn user_fault_signal(ctx: &Ctx, _: Variant) -> ProbeResult {
    let s = load_and_signal(ctx)?;
    Ok(Observation::new(if s.ran > 0 {
        "handler ran while blocked"
    } else {
        "handler did not run while blocked"
    })
    .with("state", threads::describe_state(s.state))
    .with("timeout_ms", ctx.timeout.as_millis() as u64))
}

fn user_fault_duplicate(ctx: &Ctx, _: Variant) -> ProbeResult {
    Ok(match load_and_signal(ctx)? {
        Signalled { refault: None, .. } => Observation::new("handler did not run while blocked"),
        Signalled { refault: Some(again), .. } => {
            Observation::new(if again { "fault delivered again" } else { "no second message" })
                .with("timeout_ms", ctx.timeout.as_millis() as u64)
        }
    })
}

fn user_store_fault(ctx: &Ctx, _: Variant) -> ProbeResult {
    let flag = SignalFlag::install(Signal::SIGUSR1).ctx("sigaction(SIGUSR1)")?;
    let (uffd, region) = registered(0, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    let addr = region.base();
    let worker = worker::spawn("store", move || memory::store(addr, 0x5B));
    let fault = uffd::describe_kind(&uffd.await_fault(&worker, &region, ctx.timeout)?);
    let state = threads::wait_until_blocked(worker.tid(), ctx.timeout);
    let mut observed = format!("{fault} (waits in {})", threads::describe_state(state));
    threads::tgkill(worker.tid(), Signal::SIGUSR1).ctx("tgkill")?;
    // As load_and_signal: what should come is waited for up to the timeout.
    let ran = flag.wait(ctx.timeout).ctx("waiting for the handler")?;
    if ran > 0 {
        observed += "; handler ran while blocked";
        observed += match uffd.next(ctx.timeout)? {
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
    Ok(Observation::new(observed).with("timeout_ms", ctx.timeout.as_millis() as u64))
}

/// Two threads blocked on missing pages (by a plain load, or by MADV_POPULATE_READ in the
/// `Populate` variant), one running; all are sent the suspend signal.
fn signal_suspend(ctx: &Ctx, v: Variant) -> ProbeResult {
    v.access.require()?;
    let populate = v.access == Access::Populate;
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
    // A thread blocked by a plain load runs its handler (stw.user_fault_signal): those
    // acknowledgements should come, and are waited for up to the timeout (a loaded machine can
    // take longer than the quiet window to run the threads). One blocked inside MADV_POPULATE_*
    // sleeps uninterruptibly: that none comes is checked over the quiet window.
    let wait = if populate { ctx.window } else { ctx.timeout };
    acks.wait_for(3, &mut acked, wait).ctx("waiting for acknowledgements")?;
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
        .with("wait_ms", wait.as_millis() as u64))
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

fn cooperative_populate(ctx: &Ctx, _: Variant) -> ProbeResult {
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
    use crate::kit::stress::{Plan, Shape};

    /// Mutator threads, each owning a block of pages it pre-faults and checks.
    pub const THREADS: usize = 4;
    pub const PAGES_PER_THREAD: usize = 64;
    /// Rounds of pre-fault and check per thread; removals follow every round but the last.
    pub const ROUNDS: usize = 32;
    pub const SEED: u64 = 0x2542_0001_5EED_0001;
    /// Every this-many-th fault served is raced on purpose: the server holds it until a REMOVE
    /// of a spare page is pending, so its UFFDIO_COPY must meet EAGAIN.
    pub const RACE_EVERY: u64 = 64;

    /// The stress's plan: after each round, each thread removes 2 to 4 ranges of 1 to 12 of its
    /// pages, then the coordinator runs 1 to 3 stop-the-world cycles.
    pub fn plan(seed: u64) -> Plan {
        let shape = Shape {
            rounds: ROUNDS,
            workers: THREADS,
            pages: PAGES_PER_THREAD,
            removals: (2, 4),
            span: (1, 12),
            cycles: (1, 3),
        };
        Plan::draw(seed, &shape)
    }

    /// Faults whose copy is raced against a pending REMOVE on purpose.
    pub fn forced_races(plan: &Plan) -> u64 {
        plan.faults() / RACE_EVERY
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_work_is_fixed_by_the_seed_and_large_enough() {
            let (a, b) = (plan(SEED), plan(SEED));
            assert_eq!(a.removals, b.removals);
            assert_eq!(a.cycles, b.cycles);
            assert!(a.faults() >= 2000, "thousands of faults: {}", a.faults());
            // The declaration's `observes` states these counts.
            assert_eq!((a.faults(), a.refaults()), (2181, 1925));
            assert_eq!((a.remove_calls(), a.cycles(), forced_races(&a)), (318, 244, 34));
            assert!(a.refaults() >= 500, "hundreds of refaults: {}", a.refaults());
            assert!(a.remove_calls() >= 100 && a.cycles() >= 100 && forced_races(&a) >= 15);
            assert_ne!(plan(SEED + 1).removals, a.removals);
            for ranges in a.removals.iter().flatten() {
                for (i, (x, y)) in ranges.iter().enumerate() {
                    assert!(x < y && *y <= PAGES_PER_THREAD);
                    assert!(ranges[i + 1..].iter().all(|(p, q)| q <= x || p >= y), "disjoint: {ranges:?}");
                }
            }
        }
    }
}

const STRESS_PAGES: usize = schedule::THREADS * schedule::PAGES_PER_THREAD;

/// Per mutator of the stress, the rounds it finished checking and may start, and their signal.
type Turns = (Mutex<(Vec<usize>, Vec<usize>)>, Condvar);

/// The racer of the stress: removes the spare page when asked, and says when madvise returned.
struct Racer {
    ask: Sender<()>,
    returned: Receiver<Result<(), Errno>>,
    worker: Worker<()>,
    /// A race was asked for whose madvise may not have returned yet.
    outstanding: bool,
}

impl Racer {
    fn start(spare: &Region) -> Racer {
        let (ask, asked) = channel::<()>();
        let (tell, returned) = channel::<Result<(), Errno>>();
        let (addr, len) = (spare.base(), spare.len());
        let worker = worker::spawn("racer", move || {
            while asked.recv().is_ok() {
                if tell.send(madvise(addr, len, libc::MADV_DONTNEED)).is_err() {
                    break;
                }
            }
        });
        Racer { ask, returned, worker, outstanding: false }
    }

    /// Makes a REMOVE of the spare page pending (the racer blocks in madvise until the event is
    /// read), after putting the page back.
    fn race(&mut self, uffd: &uffd::Uffd, spare: &Region, timeout: Duration) -> Result<(), Fail> {
        if self.outstanding {
            let _ = self.returned.recv_timeout(timeout);
        }
        let _ = uffd.copy_raw(spare.base(), &vec![0x5Au8; spare.page_size()], 0);
        self.ask.send(()).map_err(|_| Fail::error("the racer thread is gone"))?;
        self.outstanding = true;
        if !threads::wait_until_in_uffd_wait(self.worker.tid(), timeout) {
            return Err(Fail::error("the racer's MADV_DONTNEED never blocked on its REMOVE event"));
        }
        Ok(())
    }
}

/// The stress's server: serves every fault with the page's current version under the EAGAIN
/// protocol (a REMOVE read bumps the versions of its pages), racing every `RACE_EVERY`th copy
/// against a pending REMOVE of the spare page, until `stop`.
fn serve_stress(
    uffd: &uffd::Uffd,
    region: &Region,
    spare: &Region,
    ctx: &Ctx,
    stop: &AtomicBool,
) -> Result<Counts, Fail> {
    let pages = Pages::new(region.base(), STRESS_PAGES, region.page_size(), spare.base(), ctx.sabotage);
    let mut racer = Racer::start(spare);
    let mut pump = Pump::new(uffd);
    while !stop.load(Ordering::SeqCst) {
        let p = match pump.next(Duration::from_millis(20))? {
            None => continue,
            Some(Event::Pagefault { addr, .. }) => match pages.index(addr as usize) {
                Some(p) => p,
                None => continue,
            },
            Some(e) => {
                pages.on_event(e);
                continue;
            }
        };
        let forced = pages.fault(p) % schedule::RACE_EVERY == 0;
        if forced && ctx.sabotage != Some(Sabotage::NoRace) {
            racer.race(uffd, spare, ctx.timeout)?;
            pages.counts().forced_races += 1;
        }
        pages.serve(&mut pump, p, ctx.timeout, Serve { raced: forced, may_sabotage: true })?;
    }
    Ok(pages.into_counts())
}

/// What the stress's mutators share: the versions their pages must hold, the worst each check
/// found per page, failed populates, and the safepoint.
#[derive(Clone)]
struct Mutators {
    region: Arc<Region>,
    turns: Arc<Turns>,
    expected: Arc<Vec<AtomicU64>>,
    /// Per page, the worst thing any check found (index into PageCheck order).
    findings: Arc<Vec<AtomicU8>>,
    populate_errors: Arc<Mutex<Vec<String>>>,
    sp: Arc<Safepoint>,
}

impl Mutators {
    /// Mutator `t`: in each round, pre-fault its block with MADV_POPULATE_READ (in a syscall:
    /// stopped), check every page at safepoints, then hand the block to the coordinator.
    fn run(&self, t: usize) {
        use schedule::{PAGES_PER_THREAD, ROUNDS};
        let (region, sp) = (&self.region, &self.sp);
        let page = region.page_size();
        for round in 0..ROUNDS {
            sp.set(t, ThreadState::InSyscall);
            let r = madvise(region.page(t * PAGES_PER_THREAD), PAGES_PER_THREAD * page, MADV_POPULATE_READ);
            sp.poll(t);
            if let Err(e) = r {
                self.populate_errors.lock().unwrap().push(errno_name(e));
            }
            for i in 0..PAGES_PER_THREAD {
                let p = t * PAGES_PER_THREAD + i;
                let found = check_page(region.page(p), page, self.expected[p].load(Ordering::SeqCst));
                self.findings[p].fetch_max(found as u8, Ordering::SeqCst);
                if i % 8 == 7 {
                    sp.poll(t);
                }
            }
            // Hand the block to the coordinator for this round's removals; waiting for it counts
            // as stopped.
            sp.set(t, ThreadState::Parked);
            let (lock, changed) = &*self.turns;
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
    }

    /// The coordinator: in each round, for each thread in turn, once it has checked its pages:
    /// remove the planned ranges, let it go on, run the planned stop-the-worlds. Returns the
    /// MADV_DONTNEED calls and cycles made, and what got stuck.
    fn coordinate(&self, plan: &Plan, timeout: Duration) -> Result<(u64, u64, Option<String>), Fail> {
        use schedule::{PAGES_PER_THREAD, ROUNDS, THREADS};
        let page = self.region.page_size();
        let (mut cycles, mut remove_calls) = (0u64, 0u64);
        for round in 0..ROUNDS {
            for t in 0..THREADS {
                let (lock, changed) = &*self.turns;
                let g = lock.lock().unwrap();
                let (mut g, waited) = changed.wait_timeout_while(g, timeout, |g| g.0[t] <= round).unwrap();
                if waited.timed_out() {
                    return Ok((
                        remove_calls,
                        cycles,
                        Some(format!("mutator {t} did not finish round {round}")),
                    ));
                }
                for &(a, b) in &plan.removals[round][t] {
                    let first = t * PAGES_PER_THREAD + a;
                    madvise(self.region.page(first), (b - a) * page, libc::MADV_DONTNEED)
                        .ctx("MADV_DONTNEED")?;
                    remove_calls += 1;
                    for p in first..t * PAGES_PER_THREAD + b {
                        self.expected[p].fetch_add(1, Ordering::SeqCst);
                    }
                }
                g.1[t] = round + 1;
                changed.notify_all();
                drop(g);
                for _ in 0..plan.cycles[round][t] {
                    if !self.sp.stop(timeout) {
                        self.sp.resume();
                        return Ok((
                            remove_calls,
                            cycles,
                            Some(format!("stop-the-world cycle {cycles} did not finish")),
                        ));
                    }
                    cycles += 1;
                    self.sp.resume();
                }
            }
        }
        Ok((remove_calls, cycles, None))
    }

    fn count(&self, kind: PageCheck) -> u64 {
        self.findings.iter().filter(|f| f.load(Ordering::SeqCst) == kind as u8).count() as u64
    }
}

fn parallel_stress(ctx: &Ctx, _: Variant) -> ProbeResult {
    use schedule::{SEED, THREADS};
    require::populate(MADV_POPULATE_READ)?;
    let plan = schedule::plan(SEED);
    let (uffd, region) = registered(
        FEATURE_EVENT_REMOVE,
        Region::anonymous(STRESS_PAGES).ctx("mmap")?,
        RegisterMode::MISSING,
    )?;
    // A spare page on the same uffd, removed by the racer to make a REMOVE pending on purpose.
    let spare = Region::anonymous(1).ctx("mmap (spare)")?;
    uffd.register(spare.base(), spare.len(), RegisterMode::MISSING)?;
    let (uffd, region, spare) = (Arc::new(uffd), Arc::new(region), Arc::new(spare));
    let stop_server = Arc::new(AtomicBool::new(false));
    let server = {
        let (uffd, region, spare, stop, ctx) =
            (uffd.clone(), region.clone(), spare.clone(), stop_server.clone(), *ctx);
        worker::spawn("server", move || serve_stress(&uffd, &region, &spare, &ctx, &stop))
    };
    let m = Mutators {
        region: region.clone(),
        turns: Arc::new((Mutex::new((vec![0; THREADS], vec![0; THREADS])), Condvar::new())),
        expected: Arc::new((0..STRESS_PAGES).map(|_| AtomicU64::new(1)).collect()),
        findings: Arc::new((0..STRESS_PAGES).map(|_| AtomicU8::new(0)).collect()),
        populate_errors: Arc::new(Mutex::new(Vec::new())),
        sp: Safepoint::new(THREADS),
    };
    let mutators: Vec<_> = (0..THREADS)
        .map(|t| {
            let m = m.clone();
            worker::spawn("mutator", move || m.run(t))
        })
        .collect();
    let started = Instant::now();
    let (remove_calls, cycles, stuck) = m.coordinate(&plan, ctx.timeout)?;
    let elapsed = started.elapsed();
    if let Some(what) = stuck {
        // Threads are still blocked; the probe process ends with them.
        return Ok(Observation::new(format!("deadlock: {what}")).with("stw_cycles", cycles));
    }
    for w in &mutators {
        if w.wait(ctx.timeout).is_none() {
            return Ok(Observation::new("deadlock: a mutator did not finish its last round"));
        }
    }
    stop_server.store(true, Ordering::SeqCst);
    let counts = server.wait(ctx.timeout).ok_or_else(|| Fail::error("the server thread did not stop"))??;
    let mut errors = m.populate_errors.lock().unwrap().clone();
    let failed_populates = errors.len();
    errors.sort();
    errors.dedup();
    if failed_populates == 0 {
        shortfall(&[
            ("faults served", counts.faults, plan.faults()),
            ("refaults after removal", counts.refaults, plan.refaults()),
            ("REMOVE events", counts.removes, plan.remove_calls()),
            ("stop-the-world cycles", cycles, plan.cycles()),
            ("forced EAGAIN races", counts.forced_eagains, schedule::forced_races(&plan)),
        ])?;
    }
    let observed = if failed_populates > 0 {
        format!("MADV_POPULATE_READ failed: {}", errors.join(" "))
    } else if !counts.odd.is_empty() {
        format!("unexpected message: {}", counts.odd[0])
    } else {
        let (lost, stale, wrong) =
            (m.count(PageCheck::Lost), m.count(PageCheck::Stale), m.count(PageCheck::Wrong));
        found(lost, stale, wrong, "no deadlock, no lost or stale page")
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
