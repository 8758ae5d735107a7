//! `stw.go_*`: a real Go runtime in the loop. The Go workload (`suite/go`, `goworkload.rs`) maps
//! memory, registers it with a userfaultfd and hands the descriptor to the probe, which serves it
//! from its own process, as the seed's page server does; a goroutine of the workload then reads a
//! missing page through one of the access paths a Go program uses while another stops the world
//! with `runtime.GC()`.
//!
//! What decides each behaviour is the runtime and the kernel together, at the Go release the
//! workload was built with (`images/go.lock`; the expectations cite its source): the kernel lets
//! a signal interrupt a user-mode fault (the thread returns to user mode, runs the handler and
//! faults again), and the runtime preempts a goroutine there only where
//! `isAsyncSafePoint` allows, which excludes assembly such as `memequal` and `memmove`.

use crate::kit::behaviour::Behaviour;
use crate::kit::goworkload::{errno_word, Go};
use crate::kit::memory::page_size;
use crate::kit::outcome::{Context, Ctx, Fail, Observation, ProbeResult};
use crate::kit::uffd::{describe_kind, Event};
use crate::kit::variant::{Access, Variant};
use crate::kit::{poll, rows, threads};
use crate::probes::sources;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

// The citations' parts, as macros so that each citation is one literal: the Go release the
// expectations were read from, then its source, then the kernel's.
macro_rules! go_source {
    () => {
        "Go go1.27.3 (Debian golang-1.27-src 1.27.3-1): "
    };
}
macro_rules! stw {
    () => {
        "runtime/proc.go:1641 stopTheWorldWithSema waits for every P whose goroutine is running, with \
         no time limit, re-preempting every 100us (:1705) through preemptone (:6917) and preemptM \
         (signal_unix.go:369: a SIGURG, one outstanding per thread); "
    };
}
macro_rules! load {
    () => {
        "runtime/preempt.go:390 isAsyncSafePoint accepts an instruction of an ordinary Go function, \
         so doSigPreempt (signal_unix.go:342) injects asyncPreempt at the faulting load and the \
         goroutine leaves its P; "
    };
}
macro_rules! asm {
    () => {
        "runtime/preempt.go:390 isAsyncSafePoint refuses assembly (:450) and runtime.* functions \
         (:463), so doSigPreempt (signal_unix.go:342) only acknowledges the SIGURG and the goroutine \
         keeps its P; "
    };
}
macro_rules! equal {
    () => {
        "bytes.Equal is string(a) == string(b) (bytes/bytes.go:20), compiled to a call of \
         runtime.memequal, assembly (internal/bytealg/equal_amd64.s:10, NOSPLIT); "
    };
}
macro_rules! copy {
    () => {
        "copy is runtime.memmove, assembly (runtime/memmove_amd64.s:35, NOSPLIT); "
    };
}
macro_rules! populate {
    () => {
        "syscall.Madvise goes through syscall.Syscall (syscall/syscall_linux.go:73, \
         zsyscall_linux_amd64.go:1005), whose entersyscall (runtime/proc.go:4776, reentersyscall \
         :4642) makes the goroutine _Gsyscall; stopTheWorldWithSema takes such a P at once \
         (setBlockOnExitSyscall, proc.go:1680, :6801) and preemptone skips it (:6927). Kernel: \
         mm/gup.c, the fault inside MADV_POPULATE_READ sleeps killable, in the kernel; "
    };
}
macro_rules! kernel_signal {
    () => {
        "kernel: fs/userfaultfd.c handle_userfault (v5.10, v6.12): a user-mode fault sleeps \
         interruptibly; on a signal it returns VM_FAULT_RETRY, the handler runs and the load faults \
         again (arch/x86/mm/fault.c fault_signal_pending)"
    };
}

const GC_OBSERVES: &str = "The workload hands its uffd to the probe; a goroutine reads a missing \
     page; once its fault message has arrived and its thread sleeps, another goroutine calls \
     runtime.GC(), and the probe watches the uffd and the workload: `completes` when the GC's \
     first stop-the-world stops every P with the page unserved (the workload reports it from the \
     runtime's own count, the /sched/pauses/stopping metrics); `waits until served` when \
     instead the runtime keeps interrupting the reader without preempting it (32 retries of its \
     load from its own thread, each a SIGURG whose handler returned to the fault: a reader the \
     runtime can preempt leaves its thread at the first; then no stop within the quiet window, \
     `--window-ms`) and runtime.GC() returns once the probe \
     served the page; `deadlocks` when not even then. Details: when the world stopped and the GC \
     returned (us from the gc command, the workload's clock), the retries seen, the SIGURGs the \
     runtime passed on to the program, the reader's thread state, the Go release, the workload's \
     start and CPU time.";
const DEADLOCK_OBSERVES: &str = "The seed's deadlock: the page server (the probe, another process) \
     serves the page only after a go-ahead that a goroutine of the workload sends once its \
     runtime.GC() returned; the reader's fault is pending first. `finishes` when the GC stops the \
     world, the go-ahead comes and the workload then finishes; `deadlocks` when instead the runtime \
     fails 32 times in a row to preempt the reader (32 retries of its load from its own thread, \
     each a SIGURG whose handler returned to the fault, then no stop within the quiet window, \
     `--window-ms`; or fewer retries seen and no stop within the timeout, `--timeout-ms`): its \
     stop-the-world cannot complete, so neither can the GC nor the go-ahead, and the probe ends the workload.";
const STRESS_OBSERVES: &str = "The gated-server stress (plan::Plan, seeded): the workload's two \
     worker goroutines each own 4 pages and in each of 4 rounds read every page through the access \
     path and check it holds the version the schedule says; after each round the workload's \
     coordinator removes seeded ranges of that worker's pages with MADV_DONTNEED and runs seeded \
     stop-the-world cycles (runtime.ReadMemStats). The probe serves every fault with the page's \
     current version under the EAGAIN protocol (a REMOVE read bumps the version of its pages); \
     every 6th new fault it holds until the workload has run runtime.GC() (the barrier of Go's \
     test page servers: the server depends on the program stopping the world); the 3rd of every 6 it \
     copies while a REMOVE of a spare page is pending, so the copy must meet EAGAIN. `completes, \
     no lost or stale page`, `deadlocks` (a hold's GC does not stop the world while the runtime \
     fails 32 times in a row to preempt its reader and no stop comes within the quiet window; the \
     probe ends the workload), `N \
     lost/stale/wrong pages`, `MADV_POPULATE_READ \
     failed: ...`, `unexpected message: ...`. A run that completes is an `error` unless it served \
     at least the scheduled faults, refaults, REMOVE events, holds and forced races, ran \
     the scheduled stop-the-world cycles and checked every page; those counts are the same on \
     every run, timings and unforced EAGAINs are details.";

pub const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        id: "stw.go_gc_load",
        summary: "Go: runtime.GC() completes while a goroutine is parked on a missing page by a plain load in Go code",
        observes: GC_OBSERVES,
        expect: &[("*", "completes")],
        documented: &[("*", "waits until served", sources::SEED_STW_FOREVER)],
        citation: concat!(go_source!(), stw!(), load!(), kernel_signal!()),
        notes: "The seed's explanation says any plain load parks the goroutine beyond the runtime's \
                reach. A load in Go code is preempted asynchronously: SIGURG interrupts the fault, \
                the handler injects asyncPreempt, the world stops, and the load faults again when the \
                goroutine runs next.",
        probe: gc,
        variant: Variant::access(Access::Load),
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "stw.go_gc_equal",
        summary: "Go: runtime.GC() waits until the page is served while a goroutine is parked on it in bytes.Equal (runtime.memequal, assembly)",
        observes: GC_OBSERVES,
        expect: &[("*", "waits until served")],
        documented: &[("*", "waits until served", sources::SEED_STW_FOREVER)],
        citation: concat!(go_source!(), stw!(), equal!(), asm!(), kernel_signal!()),
        notes: "The mechanism behind the seed's deadlock: not TASK_KILLABLE (the thread sleeps \
                interruptibly, and SIGURG reaches it: stw.go_sigurg), but the runtime's refusal to \
                preempt assembly. The SIGURGs repeat every ~100us while the world waits.",
        probe: gc,
        variant: Variant::access(Access::Equal),
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "stw.go_gc_copy",
        summary: "Go: runtime.GC() waits until the page is served while a goroutine is parked on it in copy (runtime.memmove, assembly)",
        observes: GC_OBSERVES,
        expect: &[("*", "waits until served")],
        documented: &[("*", "waits until served", sources::SEED_STW_FOREVER)],
        citation: concat!(go_source!(), stw!(), copy!(), asm!(), kernel_signal!()),
        probe: gc,
        variant: Variant::access(Access::Copy),
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "stw.go_gc_populate",
        summary: "Go: runtime.GC() completes while a goroutine is blocked in MADV_POPULATE_READ (syscall.Madvise) on a missing page",
        observes: GC_OBSERVES,
        expect: &[rows::BEFORE_5_14, (">=5.14", "completes")],
        documented: &[(">=5.14", "completes", sources::SEED_SYSCALL_FIX)],
        citation: concat!(go_source!(), stw!(), populate!(), kernel_signal!()),
        notes: "The seed's fix. It holds because the runtime marks the goroutine as in a system call \
                before the kernel blocks it, whatever state the kernel sleeps in.",
        probe: gc,
        variant: Variant::access(Access::Populate),
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "stw.go_deadlock_load",
        summary: "Go, the seed's deadlock with a plain load: a server waiting for a go-ahead sent after runtime.GC() gets it, and the program finishes",
        observes: DEADLOCK_OBSERVES,
        expect: &[("*", "finishes")],
        documented: &[("*", "deadlocks", sources::SEED_STW_FOREVER)],
        citation: concat!(go_source!(), stw!(), load!(), kernel_signal!()),
        probe: deadlock,
        variant: Variant::access(Access::Load),
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "stw.go_deadlock_equal",
        summary: "Go, the seed's deadlock with bytes.Equal: a server waiting for a go-ahead sent after runtime.GC() never gets it",
        observes: DEADLOCK_OBSERVES,
        expect: &[("*", "deadlocks")],
        documented: &[("*", "deadlocks", sources::SEED_STW_FOREVER)],
        citation: concat!(go_source!(), stw!(), equal!(), asm!(), kernel_signal!()),
        notes: "The deadlock the seed met (its tests read with bytes.Equal), on every kernel: it needs \
                no TASK_KILLABLE, only a fault inside assembly and a server that waits on the program.",
        probe: deadlock,
        variant: Variant::access(Access::Equal),
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "stw.go_deadlock_copy",
        summary: "Go, the seed's deadlock with copy: a server waiting for a go-ahead sent after runtime.GC() never gets it",
        observes: DEADLOCK_OBSERVES,
        expect: &[("*", "deadlocks")],
        documented: &[("*", "deadlocks", sources::SEED_STW_FOREVER)],
        citation: concat!(go_source!(), stw!(), copy!(), asm!(), kernel_signal!()),
        probe: deadlock,
        variant: Variant::access(Access::Copy),
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "stw.go_deadlock_populate",
        summary: "Go, the seed's deadlock with MADV_POPULATE_READ first: the go-ahead comes, the program finishes",
        observes: DEADLOCK_OBSERVES,
        expect: &[rows::BEFORE_5_14, (">=5.14", "finishes")],
        documented: &[(">=5.14", "finishes", sources::SEED_SYSCALL_FIX)],
        citation: concat!(go_source!(), stw!(), populate!(), kernel_signal!()),
        probe: deadlock,
        variant: Variant::access(Access::Populate),
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "stw.go_sigurg",
        summary: "Go: the runtime's preemption signal (SIGURG) reaches a thread parked on a missing page in bytes.Equal, its handler returns and the load is retried",
        observes: "As stw.go_gc_equal; while runtime.GC() waits, the fault messages from the parked \
                   thread (UFFD_FEATURE_THREAD_ID) are counted: each after the first is the thread back \
                   from a signal handler, retrying its load. `reaches and returns` once three have \
                   arrived (then the page is served), `does not reach` when none arrives. Details: \
                   the retries counted, the SIGURGs the runtime passed on to the program (signal.Notify, \
                   coalesced), the time to the first retry.",
        expect: &[("*", "reaches and returns")],
        documented: &[("*", "does not reach", sources::SEED_NO_SIGNAL)],
        citation: concat!(go_source!(), stw!(), equal!(), asm!(), kernel_signal!()),
        notes: "The program's own count of SIGURGs is low while the world is stopping: the goroutine \
                that receives them needs a P. The kernel's count (the retries) is not.",
        probe: sigurg,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.pending_go_gc",
        summary: "Go: runtime.GC() completes while a goroutine is blocked in MADV_DONTNEED (syscall.Madvise) with its REMOVE unread",
        observes: "A goroutine of the workload removes a page of its uffd's range with MADV_DONTNEED; \
                   once the REMOVE is pending and its thread waits for it to be read, another goroutine \
                   calls runtime.GC(): `completes` when the GC's first stop-the-world stops every P \
                   (within the timeout) and runtime.GC() returns, with the event unread; `waits until \
                   the event is read` when it stops the world only after the probe read it; \
                   `deadlocks` when never. Details: the remover's state while pending.",
        expect: &[rows::BEFORE_4_11, (">=4.11", "completes")],
        documented: &[(">=4.11", "completes", sources::SEED_DONTNEED)],
        citation: concat!(
            go_source!(),
            stw!(),
            "syscall.Madvise makes the goroutine _Gsyscall (entersyscall, runtime/proc.go:4776), \
             and stopTheWorldWithSema takes its P (setBlockOnExitSyscall, :1680, :6801); kernel: \
             fs/userfaultfd.c userfaultfd_event_wait_completion (v5.10, v6.12), the thread waits \
             TASK_KILLABLE in the kernel until the event is read"
        ),
        notes: "A cooperative stop-the-world, the runtime's own: the kernel's part is that the thread \
                stays in the kernel (in the system call) while the event is unread. Contrast \
                remove.pending_signal_stop (signal-based: it stalls).",
        probe: pending_go_gc,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "stw.go_stress_load",
        summary: "Go, the gated-server stress with plain loads in Go code: holds, removals, EAGAIN races and GC cycles complete with no lost or stale page",
        observes: STRESS_OBSERVES,
        expect: &[("*", "completes, no lost or stale page")],
        documented: &[("*", "deadlocks", sources::SEED_PLAIN_LOAD)],
        citation: concat!(go_source!(), stw!(), load!(), kernel_signal!()),
        notes: "The self-tests make the server serve one stale page and one zero page \
                (`--inject-fault serve-stale=stw.go_stress_load`, `serve-zero=...`) and require the \
                workload's checker to say so, and leave out the forced races (`no-race=...`) and \
                require an `error`. A forced race's copy meets EAGAIN unless another REMOVE's \
                thread clears the flag first: on 5.10 mmap_changing is a bool that the first \
                event's thread to resume resets (fs/userfaultfd.c userfaultfd_event_wait_completion, \
                v5.10), a counter from 5.11 on; how many met it is a detail.",
        probe: super::gostress::stress,
        variant: Variant::access(Access::Load),
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "stw.go_stress_equal",
        summary: "Go, the gated-server stress with bytes.Equal: the first held fault deadlocks the program and its server",
        observes: STRESS_OBSERVES,
        expect: &[("*", "deadlocks")],
        documented: &[("*", "deadlocks", sources::SEED_STW_FOREVER)],
        citation: concat!(go_source!(), stw!(), equal!(), asm!(), kernel_signal!()),
        notes: "What the seed met in its tests, at the first hold (the 6th new fault); the forced \
                race before it (the 3rd) needs only the world running.",
        probe: super::gostress::stress,
        variant: Variant::access(Access::Equal),
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "stw.go_stress_populate",
        summary: "Go, the gated-server stress with MADV_POPULATE_READ first (the seed's fix): it completes with no lost or stale page",
        observes: STRESS_OBSERVES,
        expect: &[rows::BEFORE_5_14, (">=5.14", "completes, no lost or stale page")],
        documented: &[(">=5.14", "completes, no lost or stale page", sources::SEED_SYSCALL_FIX)],
        citation: concat!(go_source!(), stw!(), populate!(), kernel_signal!()),
        probe: super::gostress::stress,
        variant: Variant::access(Access::Populate),
        ..Behaviour::DEFAULT
    },
];

/// Where the Go behaviours go in the run order (the harness starts trials in order): spread
/// evenly through `rest`, the longest first, so that few Go runtimes start and run at once.
pub fn run_order(rest: Vec<&'static Behaviour>) -> Vec<&'static Behaviour> {
    let mut go: Vec<&Behaviour> = BEHAVIOURS.iter().collect();
    go.sort_by_key(|b| !b.id.contains("stress"));
    let every = (rest.len() + go.len()) / go.len().max(1);
    let mut order = Vec::new();
    let (mut r, mut g) = (rest.into_iter(), go.into_iter());
    loop {
        match g.next() {
            Some(b) => order.push(b),
            None => {
                order.extend(r);
                return order;
            }
        }
        order.extend(r.by_ref().take(every.saturating_sub(1)));
    }
}

/// A park run: the workload's reader is parked on its missing page (`go.uffd`'s first fault).
struct Park {
    go: Go,
    page: usize,
    tid: i32,
    state: Option<char>,
    seen: Seen,
    /// The workload's CPU time, once it ended.
    cpu_ms: u64,
    /// Whether the workload counts the SIGURGs its runtime passes on.
    sigurg: bool,
    /// The quiet window (`--window-ms`): how long a stop may still come after the retries reached
    /// [`STUCK_RETRIES`].
    window: Duration,
    /// A read that did not return once served: its thread's state and wchan then, and the fault
    /// messages it raised after serving (`after_serving`).
    reader_at_end: Option<(String, String, u64)>,
    /// Stuck at the timeout with fewer than [`STUCK_RETRIES`] retries seen (see [`Seen::stop`]).
    stuck_at_timeout: bool,
}

/// What a park run has seen so far.
#[derive(Default)]
struct Seen {
    /// When a stop-the-world (the GC's first) had stopped every P (the workload's `stopped`).
    stopped_us: Option<u64>,
    gc_us: Option<u64>,
    /// The read's result (`ok`, `mismatch`, an errno name).
    access: Option<String>,
    done: bool,
    sigurg_notified: Option<u64>,
    /// Fault messages from the parked thread after its first.
    retries: u64,
    first_retry: Option<Duration>,
    /// When the retries reached [`STUCK_RETRIES`], and when the quiet window after that ends.
    stuck_window: Option<Instant>,
    /// Other messages, named.
    other: Vec<String>,
}

impl Seen {
    /// A stop-the-world stopped every P (a GC that returned did).
    fn stopped(&self) -> bool {
        self.stopped_us.is_some() || self.gc_us.is_some()
    }

    /// The runtime failed [`STUCK_RETRIES`] times to preempt the reader, and no stop came in the
    /// quiet window after that.
    fn stuck(&self) -> bool {
        !self.stopped() && self.stuck_window.is_some_and(|end| Instant::now() >= end)
    }

    /// What the first stop-the-world came to, once the watch of it ended: it stopped every P, the
    /// read returned, or the reader was seen retried and no stop came (within the quiet window
    /// after [`STUCK_RETRIES`], else within the whole timeout), or neither.
    ///
    /// Fewer retries than [`STUCK_RETRIES`] are seen on a loaded machine: a retry's fault message
    /// goes with its thread when the next SIGURG (the runtime re-preempts every 100us) takes the
    /// thread out of the fault before the probe has read it, and under TCG a vCPU can wait its turn
    /// far longer than that. Seen on build-6.12-preempt beside another guest and two busy loops
    /// (host load about 20 on 2 cores): 8 to 14 retries seen in the 10 s timeout, the world still
    /// waiting; `neither stops the world nor retries the reader` in 14 of 20 runs of
    /// stw.go_gc_equal and 17 of 20 of stw.go_deadlock_equal.
    fn stop(&self) -> Stop {
        if self.access.is_some() {
            Stop::Read
        } else if self.stopped() {
            Stop::Stopped
        } else if self.stuck() || self.retries > 0 {
            Stop::Stuck
        } else {
            Stop::Neither
        }
    }
}

impl Park {
    /// Starts `uffdc-go park <path>` and waits until its reader is parked on the page: its fault
    /// message arrived and its thread is off the CPU.
    fn start(ctx: &Ctx, path: &str, sigurg: bool) -> Result<Park, Fail> {
        let args = if sigurg { vec!["park", path, "sigurg"] } else { vec!["park", path] };
        let go = Go::start(&args, ctx.timeout)?;
        let (page, tid) = match next_message(&go, ctx.timeout)? {
            Some(Event::Pagefault { addr, thread_id, .. }) => {
                ((addr as usize) & !(page_size() - 1), thread_id.as_raw())
            }
            Some(e) => {
                return Err(Observation::new(format!("unexpected event: {}", describe_kind(&e))).into())
            }
            None => return Err(Observation::new("the reader did not fault").into()),
        };
        let state = threads::wait_until_task_blocked(go.pid(), tid, ctx.timeout);
        Ok(Park {
            go,
            page,
            tid,
            state,
            seen: Seen::default(),
            cpu_ms: 0,
            sigurg,
            window: ctx.window,
            reader_at_end: None,
            stuck_at_timeout: false,
        })
    }

    /// Reads the workload's lines until `until` holds or `limit` passes; when `count`, also the
    /// uffd, counting the parked thread's retries (once the page is served, messages left unread
    /// go with their threads).
    fn watch(
        &mut self,
        limit: Duration,
        since: Instant,
        count: bool,
        until: impl Fn(&Seen) -> bool,
    ) -> Result<(), Fail> {
        let deadline = Instant::now() + limit;
        while !until(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Wake when the quiet window after the stuck count ends, if nothing comes before.
            let left = match self.seen.stuck_window {
                Some(end) if end > Instant::now() => left.min(end - Instant::now()),
                _ => left,
            };
            let fds = [self.go.proc.sock.as_fd(), self.go.uffd.as_fd()];
            let ready = poll::wait_any(&fds[..if count { 2 } else { 1 }], left).ctx("poll")?;
            if ready.get(1) == Some(&true) {
                while let Some(e) = self.go.uffd.next(Duration::ZERO)? {
                    match e {
                        Event::Pagefault { thread_id, addr, .. }
                            if thread_id.as_raw() == self.tid
                                && (addr as usize) & !(page_size() - 1) == self.page =>
                        {
                            self.seen.retries += 1;
                            if self.seen.retries == STUCK_RETRIES {
                                self.seen.stuck_window = Some(Instant::now() + self.window);
                            }
                            self.seen.first_retry.get_or_insert_with(|| since.elapsed());
                        }
                        other => self.seen.other.push(describe_kind(&other)),
                    }
                }
            }
            if ready[0] {
                let line = self.go.proc.line("a line", limit)?;
                let words: Vec<&str> = line.split_whitespace().collect();
                match words[..] {
                    ["gc-done", us] => self.seen.gc_us = us.parse().ok(),
                    ["stopped", us] => self.seen.stopped_us = us.parse().ok(),
                    ["access-done", r] => self.seen.access = Some(errno_word(r)),
                    ["done", n] => {
                        self.seen.sigurg_notified = n.strip_prefix("sigurg=").and_then(|n| n.parse().ok());
                        self.seen.done = true;
                    }
                    _ => return Err(Fail::error(format!("the Go workload said {line:?}"))),
                }
            }
        }
        Ok(())
    }

    /// Watches, after `serve`, until `until` (the uffd too: a reader that keeps faulting on the
    /// served page, or faults on another, is counted); a read that did not return by then leaves
    /// where its thread is (state and wchan) for the details.
    fn after_serving(
        &mut self,
        limit: Duration,
        since: Instant,
        until: impl Fn(&Seen) -> bool,
    ) -> Result<(), Fail> {
        let at_serve = self.seen.retries;
        self.watch(limit, since, true, until)?;
        if self.seen.access.is_none() {
            let (pid, tid) = (self.go.pid(), self.tid);
            self.reader_at_end = Some((
                threads::describe_state(threads::task_state(pid, tid)),
                threads::task_wchan(pid, tid).unwrap_or_else(|| "?".into()),
                self.seen.retries - at_serve,
            ));
        }
        Ok(())
    }

    /// Serves the page (0xA5 bytes, what the reader compares with).
    fn serve(&self) -> Result<(), Fail> {
        match self.go.uffd.copy(self.page, &vec![0xA5; page_size()]) {
            Ok(_) => Ok(()),
            Err(userfaultfd::Error::CopyFailed(e)) if e as i32 == libc::EEXIST => Ok(()),
            Err(e) => Err(Fail::error(format!("UFFDIO_COPY: {}", crate::kit::outcome::error_name(&e)))),
        }
    }

    fn details(&self, mut o: Observation) -> Observation {
        let s = &self.seen;
        if let Some((state, wchan, retries)) = &self.reader_at_end {
            o.detail("reader_state_at_end", state.as_str());
            o.detail("reader_wchan_at_end", wchan.as_str());
            o.detail("retries_after_serving", *retries);
        }
        o.detail("go", self.go.version.as_str());
        o.detail("start_ms", self.go.started.as_millis() as u64);
        if self.cpu_ms > 0 {
            o.detail("workload_cpu_ms", self.cpu_ms);
        }
        o.detail("state", threads::describe_state(self.state));
        if s.retries > 0 {
            o.detail("retries", s.retries);
        }
        if self.stuck_at_timeout {
            o.detail("stuck_at", "timeout");
        }
        if let Some(us) = s.gc_us {
            o.detail("gc_us", us);
        }
        if let Some(us) = s.stopped_us {
            o.detail("stopped_us", us);
        }
        if let Some(n) = s.sigurg_notified.filter(|_| self.sigurg) {
            o.detail("sigurg_notified", n);
        }
        if let Some(a) = &s.access {
            o.detail("read", a.as_str());
        }
        if !s.other.is_empty() {
            o.detail("other_messages", s.other.join(", "));
        }
        o
    }
}

/// The next uffd message within `limit`. (A pending fault message goes when its thread leaves the
/// fault for a signal, so the uffd can be readable and then have nothing to read.)
fn next_message(go: &Go, limit: Duration) -> Result<Option<Event>, Fail> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match go.uffd.next(left)? {
            Some(e) => return Ok(Some(e)),
            None if left.is_zero() => return Ok(None),
            None => {}
        }
    }
}

/// `Some(observation)` when the read went wrong: it must return once served, with the page's bytes.
fn read_failed(seen: &Seen) -> Option<Observation> {
    match seen.access.as_deref() {
        Some("ok") => None,
        Some(other) => Some(Observation::new(format!("the read returned {other}"))),
        None => Some(Observation::new("the read did not return after the page was served")),
    }
}

/// How many retries of its load, from its own thread, show that the runtime keeps interrupting a
/// reader without preempting it (each one is a SIGURG whose handler returned to the faulting
/// instruction), when no stop follows within the quiet window (`--window-ms`) after the last:
/// a stop-the-world that cannot complete. (Without the window, a loaded machine made a stop that
/// completed after 32 retries read as stuck: stw.go_gc_load 1 of 10 on build-6.12-preempt, its
/// stop reported at 172ms; stw.go_deadlock_load 1 of 50 on this host under two busy loops.) A reader the runtime can preempt leaves
/// its thread at the first SIGURG of a stop-the-world and does not come back before the world
/// does (and the stop is reported); only the sysmon's preemptions, at most one per 10ms, retry it
/// before the stop begins or after it ended.
pub(super) const STUCK_RETRIES: u64 = 32;

/// What became of the GC's first stop-the-world with the reader parked.
#[derive(PartialEq, Eq, Debug)]
enum Stop {
    /// It stopped every P.
    Stopped,
    /// The reader is retried, unpreempted, and the world does not stop: it cannot stop every P.
    Stuck,
    /// The read returned (the page was there after all).
    Read,
    /// Neither a stop nor a retry within the timeout.
    Neither,
}

/// Sends `gc` and watches the first stop-the-world until it stops every P, or until the runtime
/// has failed `STUCK_RETRIES` times in a row to preempt the reader (then it cannot), or until the
/// timeout ([`Seen::stop`] says what that came to).
fn first_stop(p: &mut Park, ctx: &Ctx) -> Result<Stop, Fail> {
    let started = Instant::now();
    p.go.proc.send("gc");
    p.watch(ctx.timeout, started, true, |s| s.stopped() || s.access.is_some() || s.stuck())?;
    let stop = p.seen.stop();
    p.stuck_at_timeout = stop == Stop::Stuck && !p.seen.stuck();
    Ok(stop)
}

/// runtime.GC() against a reader parked on the page through `path`: does the GC's first
/// stop-the-world stop every P with the page unserved?
fn gc(ctx: &Ctx, v: Variant) -> ProbeResult {
    v.access.require()?;
    let path = v.access.name();
    let mut p = Park::start(ctx, path, false)?;
    let stop = first_stop(&mut p, ctx)?;
    if stop == Stop::Read {
        return Ok(p.details(Observation::new("the read returned before the page was served")));
    }
    p.serve()?;
    // Once the world stopped, the read is all that is left to see; else the GC, once served.
    let stopped = stop == Stop::Stopped;
    p.after_serving(ctx.timeout, Instant::now(), |s| s.access.is_some() && (stopped || s.gc_us.is_some()))?;
    let observed = match (&stop, p.seen.gc_us.is_some()) {
        (Stop::Stopped, _) => "completes",
        (Stop::Stuck, true) => "waits until served",
        (Stop::Stuck, false) => "deadlocks",
        (_, _) => "neither stops the world nor retries the reader",
    };
    let o = read_failed(&p.seen).unwrap_or_else(|| Observation::new(observed));
    p.cpu_ms = p.go.end(ctx.timeout);
    Ok(p.details(o))
}

/// The seed's deadlock: the page is served only after the go-ahead (`gc-done`). It is one once the
/// GC's first stop-the-world cannot complete: then the GC, and so the go-ahead, cannot come.
fn deadlock(ctx: &Ctx, v: Variant) -> ProbeResult {
    v.access.require()?;
    let path = v.access.name();
    let mut p = Park::start(ctx, path, false)?;
    let o = first_stop(&mut p, ctx)?;
    let o = match o {
        Stop::Read => Observation::new("the read returned before the page was served"),
        // The world cannot stop: the probe ends the deadlock.
        Stop::Stuck => Observation::new("deadlocks"),
        Stop::Neither => Observation::new("neither stops the world nor retries the reader"),
        Stop::Stopped => {
            p.watch(ctx.timeout, Instant::now(), false, |s| s.gc_us.is_some() || s.access.is_some())?;
            if p.seen.gc_us.is_none() {
                Observation::new("stops the world, but sends no go-ahead")
            } else {
                p.serve()?;
                p.after_serving(ctx.timeout, Instant::now(), |s| s.done)?;
                read_failed(&p.seen).unwrap_or_else(|| {
                    Observation::new(if p.seen.done {
                        "finishes"
                    } else {
                        "does not finish after the go-ahead"
                    })
                })
            }
        }
    };
    p.cpu_ms = p.go.end(ctx.timeout);
    Ok(p.details(o))
}

fn sigurg(ctx: &Ctx, _: Variant) -> ProbeResult {
    const RETRIES: u64 = 3;
    let mut p = Park::start(ctx, "equal", true)?;
    let started = Instant::now();
    p.go.proc.send("gc");
    p.watch(ctx.timeout, started, true, |s| s.retries >= RETRIES || s.access.is_some())?;
    let reached = p.seen.retries >= RETRIES;
    let retries = p.seen.retries;
    p.serve()?;
    p.after_serving(ctx.timeout, started, |s| s.done)?;
    let mut o = read_failed(&p.seen)
        .unwrap_or_else(|| Observation::new(if reached { "reaches and returns" } else { "does not reach" }));
    if let Some(t) = p.seen.first_retry {
        o.detail("first_retry_us", t.as_micros() as u64);
    }
    o.detail("retries_before_serving", retries);
    p.cpu_ms = p.go.end(ctx.timeout);
    Ok(p.details(o))
}

fn pending_go_gc(ctx: &Ctx, _: Variant) -> ProbeResult {
    let go = Go::start(&["dontneed"], ctx.timeout)?;
    go.proc.send("dontneed");
    let tid: i32 =
        match go.proc.line("the remover's tid", ctx.timeout)?.split_whitespace().collect::<Vec<_>>()[..] {
            ["tid", n] => n.parse().map_err(|_| Fail::error("a bad tid"))?,
            _ => return Err(Fail::error("the Go workload sent no tid line")),
        };
    if !go.uffd.readable(ctx.timeout)? || !threads::wait_until_task_in_uffd_wait(go.pid(), tid, ctx.timeout) {
        return Err(Fail::error("the workload's MADV_DONTNEED did not block on a pending REMOVE"));
    }
    let state = threads::task_state(go.pid(), tid);
    go.proc.send("gc");
    let started = Instant::now();
    let (mut stopped_us, mut gc_us, mut removed, mut done) = (None, None, None, false);
    let read_line = |limit: Duration,
                     stopped_us: &mut Option<u64>,
                     gc_us: &mut Option<u64>,
                     removed: &mut Option<String>,
                     done: &mut bool|
     -> Result<bool, Fail> {
        if !poll::wait_any(&[go.proc.sock.as_fd()], limit).ctx("poll")?[0] {
            return Ok(false);
        }
        let line = go.proc.line("a line", ctx.timeout)?;
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["stopped", us] => *stopped_us = us.parse().ok(),
            ["gc-done", us] => *gc_us = us.parse().ok(),
            ["dontneed-done", r] => *removed = Some(errno_word(r)),
            ["done"] => *done = true,
            _ => return Err(Fail::error(format!("the Go workload said {line:?}"))),
        }
        Ok(true)
    };
    // Does the GC stop the world with the event unread? The remover is in a system call, so
    // nothing but a slow machine delays it: the probe waits up to the timeout.
    while stopped_us.is_none() && gc_us.is_none() {
        let left = ctx.timeout.saturating_sub(started.elapsed());
        if left.is_zero() || !read_line(left, &mut stopped_us, &mut gc_us, &mut removed, &mut done)? {
            break;
        }
    }
    let stopped = stopped_us.is_some() || gc_us.is_some();
    if stopped {
        while gc_us.is_none() && read_line(ctx.timeout, &mut stopped_us, &mut gc_us, &mut removed, &mut done)?
        {
        }
    }
    let completed_unread = stopped && gc_us.is_some() && removed.is_none();
    let event = go.uffd.next(ctx.timeout)?;
    while !done && read_line(ctx.timeout, &mut stopped_us, &mut gc_us, &mut removed, &mut done)? {}
    let cpu = go.end(ctx.timeout);
    let observed = match (&event, completed_unread, stopped, gc_us.is_some()) {
        (Some(Event::Remove { .. }), true, _, _) => "completes",
        (Some(Event::Remove { .. }), false, false, true) => "waits until the event is read",
        (Some(Event::Remove { .. }), _, _, false) => "deadlocks",
        (Some(Event::Remove { .. }), false, true, true) => {
            "stops the world, but returns only after the event is read"
        }
        (Some(e), ..) => return Ok(Observation::new(format!("unexpected event: {}", describe_kind(e)))),
        (None, ..) => return Ok(Observation::new("no REMOVE event to read")),
    };
    let mut o = Observation::new(observed)
        .with("go", go.version.as_str())
        .with("state_while_pending", threads::describe_state(state))
        .with("workload_cpu_ms", cpu);
    if let Some(us) = stopped_us {
        o.detail("stopped_us", us);
    }
    if let Some(us) = gc_us {
        o.detail("gc_us", us);
    }
    if let Some(r) = removed {
        o.detail("madvise", r);
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first stop-the-world's outcome from what the watch saw, the loaded machine's included:
    /// a few retries seen and no stop for the whole timeout is a world that cannot stop, not
    /// `neither`; a stop wins over any number of retries; no retry at all stays `neither`.
    #[test]
    fn a_stop_that_never_comes_is_stuck_however_few_retries_were_seen() {
        let seen = |retries: u64, stopped_us: Option<u64>, access: Option<&str>| Seen {
            retries,
            stopped_us,
            access: access.map(String::from),
            ..Seen::default()
        };
        assert_eq!(seen(14, None, None).stop(), Stop::Stuck);
        assert_eq!(seen(1, None, None).stop(), Stop::Stuck);
        assert_eq!(seen(0, None, None).stop(), Stop::Neither);
        assert_eq!(seen(40, Some(172_000), None).stop(), Stop::Stopped);
        assert_eq!(Seen { gc_us: Some(9), ..Seen::default() }.stop(), Stop::Stopped);
        assert_eq!(seen(3, None, Some("ok")).stop(), Stop::Read);
        // STUCK_RETRIES retries: stuck once the quiet window after them ended, not before.
        let mut s = seen(STUCK_RETRIES, None, None);
        s.stuck_window = Some(Instant::now() + Duration::from_secs(60));
        assert!(!s.stuck());
        s.stuck_window = Some(Instant::now() - Duration::from_millis(1));
        assert!(s.stuck());
        assert_eq!(s.stop(), Stop::Stuck);
    }
}
