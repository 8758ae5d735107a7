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

use crate::behaviour::Behaviour;
use crate::goworkload::{errno_word, Go};
use crate::memory::{page_size, MADV_POPULATE_READ};
use crate::outcome::{Context, Ctx, Fail, Observation, ProbeResult};
use crate::uffd::{describe_kind, Event};
use crate::{poll, require, rows, sources, threads};
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
     runtime.GC(): `completes` when it returns within the quiet window while the page is still \
     unserved, `waits until served` when it returns only after the probe served the page, \
     `deadlocks` when not even then. Details: the GC's time, the reader's fault retries (a retry is \
     the thread back from a signal handler), the SIGURGs the runtime passed on, the Go release.";
const DEADLOCK_OBSERVES: &str = "The seed's deadlock: the page server (the probe, another process) \
     serves the page only after a go-ahead that a goroutine of the workload sends once its \
     runtime.GC() returned; a goroutine reads the missing page first: `finishes` when the go-ahead \
     comes within the quiet window and the workload then finishes, `deadlocks` when it does not \
     (the probe ends the workload).";

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
        probe: gc_load,
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
        probe: gc_equal,
    },
    Behaviour {
        id: "stw.go_gc_copy",
        summary: "Go: runtime.GC() waits until the page is served while a goroutine is parked on it in copy (runtime.memmove, assembly)",
        observes: GC_OBSERVES,
        expect: &[("*", "waits until served")],
        documented: &[("*", "waits until served", sources::SEED_STW_FOREVER)],
        citation: concat!(go_source!(), stw!(), copy!(), asm!(), kernel_signal!()),
        probe: gc_copy,
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
        probe: gc_populate,
    },
    Behaviour {
        id: "stw.go_deadlock_load",
        summary: "Go, the seed's deadlock with a plain load: a server waiting for a go-ahead sent after runtime.GC() gets it, and the program finishes",
        observes: DEADLOCK_OBSERVES,
        expect: &[("*", "finishes")],
        documented: &[("*", "deadlocks", sources::SEED_STW_FOREVER)],
        citation: concat!(go_source!(), stw!(), load!(), kernel_signal!()),
        probe: deadlock_load,
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
        probe: deadlock_equal,
    },
    Behaviour {
        id: "stw.go_deadlock_copy",
        summary: "Go, the seed's deadlock with copy: a server waiting for a go-ahead sent after runtime.GC() never gets it",
        observes: DEADLOCK_OBSERVES,
        expect: &[("*", "deadlocks")],
        documented: &[("*", "deadlocks", sources::SEED_STW_FOREVER)],
        citation: concat!(go_source!(), stw!(), copy!(), asm!(), kernel_signal!()),
        probe: deadlock_copy,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "stw.go_deadlock_populate",
        summary: "Go, the seed's deadlock with MADV_POPULATE_READ first: the go-ahead comes, the program finishes",
        observes: DEADLOCK_OBSERVES,
        expect: &[rows::BEFORE_5_14, (">=5.14", "finishes")],
        documented: &[(">=5.14", "finishes", sources::SEED_SYSCALL_FIX)],
        citation: concat!(go_source!(), stw!(), populate!(), kernel_signal!()),
        probe: deadlock_populate,
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
    },
];

/// A park run: the workload's reader is parked on its missing page (`go.uffd`'s first fault).
struct Park {
    go: Go,
    page: usize,
    tid: i32,
    state: Option<char>,
    seen: Seen,
}

impl Seen {
    /// A GC stop-the-world stopped every P (a GC that returned did).
    fn stopped(&self) -> bool {
        self.stopped_us.is_some() || self.gc_us.is_some()
    }
}

/// What a park run has seen so far.
#[derive(Default)]
struct Seen {
    /// When the GC's first stop-the-world had stopped every P (the workload's `stopped`).
    stopped_us: Option<u64>,
    gc_us: Option<u64>,
    /// The read's result (`ok`, `mismatch`, an errno name).
    access: Option<String>,
    done: bool,
    sigurg_notified: Option<u64>,
    /// Fault messages from the parked thread after its first.
    retries: u64,
    first_retry: Option<Duration>,
    /// Other messages, named.
    other: Vec<String>,
}

impl Park {
    /// Starts `uffdc-go park <path>` and waits until its reader is parked on the page: its fault
    /// message arrived and its thread is off the CPU.
    fn start(ctx: &Ctx, path: &str) -> Result<Result<Park, Observation>, Fail> {
        let go = Go::start(&["park", path], ctx.timeout)?;
        let (page, tid) = match next_message(&go, ctx.timeout)? {
            Some(Event::Pagefault { addr, thread_id, .. }) => {
                ((addr as usize) & !(page_size() - 1), thread_id.as_raw())
            }
            Some(e) => return Ok(Err(Observation::new(format!("unexpected event: {}", describe_kind(&e))))),
            None => return Ok(Err(Observation::new("the reader did not fault"))),
        };
        let state = threads::wait_until_task_blocked(go.pid(), tid, ctx.timeout);
        Ok(Ok(Park { go, page, tid, state, seen: Seen::default() }))
    }

    /// Reads the workload's lines until `until` holds or `limit` passes; when `count`, also the
    /// uffd, counting the parked thread's retries. (Left unread, a fault message goes when its
    /// thread leaves the fault: a probe that does not count keeps the page server out of the
    /// signal storm an unstoppable goroutine causes.)
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

    /// Serves the page (0xA5 bytes, what the reader compares with).
    fn serve(&self) -> Result<(), Fail> {
        match self.go.uffd.copy(self.page, &vec![0xA5; page_size()]) {
            Ok(_) => Ok(()),
            Err(userfaultfd::Error::CopyFailed(e)) if e as i32 == libc::EEXIST => Ok(()),
            Err(e) => Err(Fail::error(format!("UFFDIO_COPY: {}", crate::outcome::error_name(&e)))),
        }
    }

    fn details(&self, mut o: Observation, ctx: &Ctx) -> Observation {
        let s = &self.seen;
        o.detail("go", self.go.version.as_str());
        o.detail("state", threads::describe_state(self.state));
        if s.retries > 0 {
            o.detail("retries", s.retries);
        }
        o.detail("window_ms", ctx.window.as_millis() as u64);
        if let Some(us) = s.gc_us {
            o.detail("gc_us", us);
        }
        if let Some(us) = s.stopped_us {
            o.detail("stopped_us", us);
        }
        if let Some(n) = s.sigurg_notified {
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

/// runtime.GC() against a reader parked on the page through `path`: does the GC's first
/// stop-the-world stop every P within the window, with the page unserved?
fn gc(ctx: &Ctx, path: &str) -> ProbeResult {
    let mut p = match Park::start(ctx, path)? {
        Ok(p) => p,
        Err(o) => return Ok(o),
    };
    let started = Instant::now();
    p.go.proc.send("gc");
    p.watch(ctx.window, started, false, |s| s.stopped() || s.access.is_some())?;
    if p.seen.access.is_some() {
        return Ok(p.details(Observation::new("the read returned before the page was served"), ctx));
    }
    let stopped = p.seen.stopped();
    if stopped {
        // The world stopped with the page missing: the GC can finish without it.
        p.watch(ctx.timeout, started, false, |s| s.gc_us.is_some() || s.access.is_some())?;
    }
    let finished_unserved = p.seen.gc_us.is_some() && p.seen.access.is_none();
    p.serve()?;
    p.watch(ctx.timeout, started, false, |s| s.done)?;
    let observed = match (stopped, finished_unserved, p.seen.gc_us.is_some()) {
        (true, true, _) => "completes",
        (true, false, _) => "stops the world, but returns only after the page is served",
        (false, _, true) => "waits until served",
        (false, _, false) => "deadlocks",
    };
    let o = read_failed(&p.seen).unwrap_or_else(|| Observation::new(observed));
    p.go.end(ctx.timeout);
    Ok(p.details(o, ctx))
}

/// The seed's deadlock: the page is served only after the go-ahead (`gc-done`). The window is on
/// the GC's first stop-the-world: without it the GC, and so the go-ahead, cannot come.
fn deadlock(ctx: &Ctx, path: &str) -> ProbeResult {
    let mut p = match Park::start(ctx, path)? {
        Ok(p) => p,
        Err(o) => return Ok(o),
    };
    let started = Instant::now();
    p.go.proc.send("gc");
    p.watch(ctx.window, started, false, |s| s.stopped() || s.access.is_some())?;
    if p.seen.access.is_some() {
        return Ok(p.details(Observation::new("the read returned before the page was served"), ctx));
    }
    if !p.seen.stopped() {
        // The world did not stop within the window: the probe ends the deadlock.
        p.go.end(ctx.timeout);
        return Ok(p.details(Observation::new("deadlocks"), ctx));
    }
    p.watch(ctx.timeout, started, false, |s| s.gc_us.is_some() || s.access.is_some())?;
    if p.seen.gc_us.is_none() {
        p.go.end(ctx.timeout);
        return Ok(p.details(Observation::new("stops the world, but sends no go-ahead"), ctx));
    }
    p.serve()?;
    p.watch(ctx.timeout, started, false, |s| s.done)?;
    let o = read_failed(&p.seen).unwrap_or_else(|| {
        Observation::new(if p.seen.done { "finishes" } else { "does not finish after the go-ahead" })
    });
    p.go.end(ctx.timeout);
    Ok(p.details(o, ctx))
}

fn sigurg(ctx: &Ctx) -> ProbeResult {
    const RETRIES: u64 = 3;
    let mut p = match Park::start(ctx, "equal")? {
        Ok(p) => p,
        Err(o) => return Ok(o),
    };
    let started = Instant::now();
    p.go.proc.send("gc");
    p.watch(ctx.timeout, started, true, |s| s.retries >= RETRIES || s.access.is_some())?;
    let reached = p.seen.retries >= RETRIES;
    let retries = p.seen.retries;
    p.serve()?;
    p.watch(ctx.timeout, started, false, |s| s.done)?;
    let mut o = read_failed(&p.seen)
        .unwrap_or_else(|| Observation::new(if reached { "reaches and returns" } else { "does not reach" }));
    if let Some(t) = p.seen.first_retry {
        o.detail("first_retry_us", t.as_micros() as u64);
    }
    o.detail("retries_before_serving", retries);
    p.go.end(ctx.timeout);
    Ok(p.details(o, ctx))
}

fn gc_load(ctx: &Ctx) -> ProbeResult {
    gc(ctx, "load")
}
fn gc_equal(ctx: &Ctx) -> ProbeResult {
    gc(ctx, "equal")
}
fn gc_copy(ctx: &Ctx) -> ProbeResult {
    gc(ctx, "copy")
}
fn gc_populate(ctx: &Ctx) -> ProbeResult {
    require::populate(MADV_POPULATE_READ)?;
    gc(ctx, "populate")
}
fn deadlock_load(ctx: &Ctx) -> ProbeResult {
    deadlock(ctx, "load")
}
fn deadlock_equal(ctx: &Ctx) -> ProbeResult {
    deadlock(ctx, "equal")
}
fn deadlock_copy(ctx: &Ctx) -> ProbeResult {
    deadlock(ctx, "copy")
}
fn deadlock_populate(ctx: &Ctx) -> ProbeResult {
    require::populate(MADV_POPULATE_READ)?;
    deadlock(ctx, "populate")
}
