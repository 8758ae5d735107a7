//! `remove.*` (ordering): the window between a REMOVE event being queued and being read, and the
//! order `read()` hands out what is queued. Page servers that follow the EAGAIN protocol (the
//! seed's tests do) depend on these.

use crate::kit::behaviour::Behaviour;
use crate::kit::memory::{self, madvise, Region};
use crate::kit::outcome::{errno_name, Context, Ctx, Fail, Observation, ProbeResult};
use crate::kit::signals::SignalFlag;
use crate::kit::uapi::FEATURE_EVENT_REMOVE;
use crate::kit::uffd::{describe_event, registered, Event, RegisterMode, Uffd};
use crate::kit::variant::Variant;
use crate::kit::worker::{self, Worker};
use crate::kit::{rows, threads};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REMOVE_SOURCE: &str = "fs/userfaultfd.c userfaultfd_remove (v5.10, v6.12): the REMOVE event \
     is queued and its thread waits (userfaultfd_event_wait_completion, TASK_KILLABLE) before \
     mm/madvise.c madvise_dontneed_free zaps the range";
const READ_SOURCE: &str = "fs/userfaultfd.c userfaultfd_ctx_read (v5.10, v6.1, v6.12, v7.2): \
     find_userfault (the pending faults) is tried before find_userfault_evt (the events)";

pub const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        id: "remove.write_in_window",
        summary: "A write to a page between its REMOVE being queued and being read lands without a fault, and is then zapped: the content is lost",
        observes: "Page 0 is served; a worker's MADV_DONTNEED of it blocks with its REMOVE unread; \
                   another thread stores to the page: `lost, no fault` when the store returns without \
                   a fault message (the REMOVE is the first message read), and after the read the page \
                   is no longer resident and a load faults and sees the server's new content, not the \
                   store; `kept` when the stored byte survives; `the store faulted` when it blocked.",
        expect: &[rows::BEFORE_4_11, (">=4.11", "lost, no fault")],
        citation: REMOVE_SOURCE,
        notes: "A page server must not treat a page as safe from the moment it queued a REMOVE's \
                madvise: writes still land until the event is read, and are then thrown away without \
                the server hearing of them.",
        probe: write_in_window,
        slow: 1,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.faults_before_events",
        summary: "read() on the uffd hands out pending faults before events, whichever was queued first",
        observes: "Twice: a REMOVE is made pending (its madvise blocked) and a fault (its thread \
                   asleep), in either order; the first message read() returns: `faults first` when it \
                   is the fault both times, `queue order` when it is whichever came first, else what \
                   came first in each order.",
        expect: &[rows::BEFORE_4_11, (">=4.11", "faults first")],
        citation: READ_SOURCE,
        notes: "A server that reads one message at a time sees a fault on a page it may be about to \
                learn was removed: hence the EAGAIN protocol (UFFDIO_COPY refuses while the REMOVE is \
                pending).",
        probe: faults_before_events,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.pending_signal_stop",
        summary: "A signal-based stop-the-world cannot stop a thread blocked in MADV_DONTNEED until its REMOVE is read",
        observes: "A worker's MADV_DONTNEED blocks with its REMOVE unread; it and a running thread are \
                   sent the suspend signal (its handler acknowledges, then waits to be resumed): \
                   `completes` when both acknowledge within the quiet window with the event unread, \
                   `stalls until the event is read` when the worker acknowledges only once the probe \
                   read it, `deadlocks` when never. Details: the worker's state while pending.",
        expect: &[rows::BEFORE_4_11, (">=4.11", "stalls until the event is read")],
        citation: "fs/userfaultfd.c userfaultfd_event_wait_completion (v5.10, v6.12): the thread \
                   waits TASK_KILLABLE; only a fatal signal ends the wait",
        notes: "Models a signal-based stop-the-world (Boehm GC, Mono, .NET). Decided by the kernel: \
                whether the handler ran (its eventfd), with the event unread. A runtime whose page \
                server waits for its stop-the-world would deadlock here; Go's cooperative stop is \
                remove.pending_go_gc.",
        probe: pending_signal_stop,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.poll_nothing_to_read",
        summary: "poll() on the uffd wakes for a fault, and read() then finds nothing: the fault left with its thread for a signal handler",
        observes: "A thread blocks in poll() on the uffd; another loads from a missing page, which \
                   wakes the poll; before reading, the probe sends the loading thread a signal whose \
                   handler waits: `EAGAIN` when read() then finds no message, `the fault` when it \
                   returns the fault.",
        expect: &[("*", "EAGAIN")],
        citation: "fs/userfaultfd.c handle_userfault (v5.10, v6.12): a waiter woken by a signal takes \
                   its unread message off fault_pending_wqh before it returns VM_FAULT_RETRY",
        notes: "A page server must treat EAGAIN after poll as nothing to do, and the same fault may come \
                back (the load is retried after the handler).",
        probe: poll_nothing_to_read,
        ..Behaviour::DEFAULT
    },
];

/// A worker's MADV_DONTNEED of `page`, blocked with its REMOVE unread: returns once the event is
/// pending and the worker waits in the kernel for it to be read.
fn pending_dontneed(
    uffd: &Uffd,
    addr: usize,
    len: usize,
    ctx: &Ctx,
) -> Result<Worker<Result<(), Errno>>, Fail> {
    let w = worker::spawn("dontneed", move || madvise(addr, len, libc::MADV_DONTNEED));
    if !uffd.readable(ctx.timeout)? || !threads::wait_until_in_uffd_wait(w.tid(), ctx.timeout) {
        return Err(Fail::error("the MADV_DONTNEED did not block on a pending REMOVE"));
    }
    Ok(w)
}

fn write_in_window(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) =
        registered(FEATURE_EVENT_REMOVE, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    let (addr, page) = (region.base(), region.page_size());
    uffd.serve(addr, page, 0x11)?;
    let remover = pending_dontneed(&uffd, addr, page, ctx)?;
    let writer = worker::spawn("store", move || memory::store(addr, 0x22));
    if writer.wait(ctx.window).is_none() {
        return Ok(Observation::new("the store faulted").with("window_ms", ctx.window.as_millis() as u64));
    }
    // The first message: a fault would come before the pending REMOVE.
    let first = uffd.next(ctx.timeout)?;
    let removed = remover.wait(ctx.timeout);
    let resident = memory::resident(addr, page).ctx("mincore")?;
    let loader = worker::spawn("load", move || memory::load(addr));
    let refault = match uffd.next_or_done(&loader, ctx.timeout)? {
        crate::kit::uffd::Next::Event(Event::Pagefault { .. }) => {
            uffd.serve(addr, page, 0x33)?;
            true
        }
        _ => false,
    };
    let seen = loader.wait(ctx.timeout);
    let observed = match (&first, seen) {
        (Some(Event::Remove { .. }), Some(0x33)) if refault && !resident => "lost, no fault".to_string(),
        (Some(Event::Remove { .. }), Some(0x22)) => "kept".to_string(),
        (Some(e), Some(b)) => format!("{} first; then the page held {b:#x}", describe_event(e, &region)),
        (_, _) => "the page could not be read back".to_string(),
    };
    Ok(Observation::new(observed).with("resident_after_read", resident).with(
        "madvise",
        removed.map_or("blocked".to_string(), |r| r.map_or_else(errno_name, |()| "0".into())),
    ))
}

/// The first message read once a REMOVE and a fault are both pending, the REMOVE made first when
/// `remove_first`. Uses pages `2*i` (faulted) and `2*i+1` (removed) of `region`.
fn first_of_two(
    uffd: &Uffd,
    region: &Region,
    i: usize,
    remove_first: bool,
    ctx: &Ctx,
) -> Result<String, Fail> {
    let (fault_at, remove_at, page) = (region.page(2 * i), region.page(2 * i + 1), region.page_size());
    let fault = || {
        let w = worker::spawn("load", move || memory::load(fault_at));
        threads::wait_until_blocked(w.tid(), ctx.timeout);
        w
    };
    let (loader, remover) = if remove_first {
        let r = pending_dontneed(uffd, remove_at, page, ctx)?;
        (fault(), r)
    } else {
        let l = fault();
        if !uffd.readable(ctx.timeout)? {
            return Err(Fail::error("the fault did not become pending"));
        }
        (l, pending_dontneed(uffd, remove_at, page, ctx)?)
    };
    // The first message, then the other; the madvise returns (a copy meets EAGAIN until it
    // has), then the fault is served.
    let first = uffd.next(ctx.timeout)?;
    uffd.next(ctx.timeout)?;
    remover.wait(ctx.timeout);
    uffd.serve(fault_at, page, 0x44)?;
    loader.wait(ctx.timeout);
    Ok(match first {
        Some(Event::Pagefault { .. }) => "fault".to_string(),
        Some(Event::Remove { .. }) => "REMOVE".to_string(),
        Some(e) => describe_event(&e, region),
        None => "nothing".to_string(),
    })
}

fn faults_before_events(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) =
        registered(FEATURE_EVENT_REMOVE, Region::anonymous(4).ctx("mmap")?, RegisterMode::MISSING)?;
    let after_remove = first_of_two(&uffd, &region, 0, true, ctx)?;
    let after_fault = first_of_two(&uffd, &region, 1, false, ctx)?;
    let observed = match (after_remove.as_str(), after_fault.as_str()) {
        ("fault", "fault") => "faults first".to_string(),
        ("REMOVE", "fault") => "queue order".to_string(),
        (a, b) => format!("REMOVE queued first: {a}; fault queued first: {b}"),
    };
    Ok(Observation::new(observed)
        .with("remove_queued_first", after_remove)
        .with("fault_queued_first", after_fault))
}

fn pending_signal_stop(ctx: &Ctx, _: Variant) -> ProbeResult {
    let acks = SignalFlag::install_suspending(Signal::SIGUSR1).ctx("sigaction")?;
    let (uffd, region) =
        registered(FEATURE_EVENT_REMOVE, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    let remover = pending_dontneed(&uffd, region.base(), region.page_size(), ctx)?;
    let state = threads::thread_state(remover.tid());
    let stop = Arc::new(AtomicBool::new(false));
    let running = {
        let stop = stop.clone();
        worker::spawn("running", move || {
            while !stop.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
        })
    };
    let started = Instant::now();
    for tid in [remover.tid(), running.tid()] {
        threads::tgkill(tid, Signal::SIGUSR1).ctx("tgkill")?;
    }
    let mut acked = 0;
    acks.wait_for(2, &mut acked, ctx.window).ctx("waiting for acknowledgements")?;
    let before_read = acked;
    let stop_ms = started.elapsed().as_millis() as u64;
    let event = uffd.next(ctx.timeout)?;
    acks.wait_for(2, &mut acked, ctx.timeout).ctx("waiting for acknowledgements")?;
    acks.resume();
    stop.store(true, Ordering::SeqCst);
    remover.wait(ctx.timeout);
    running.wait(ctx.timeout);
    if !matches!(event, Some(Event::Remove { .. })) {
        return Ok(Observation::new("no REMOVE event to read"));
    }
    let observed = match (before_read, acked) {
        (2, _) => "completes",
        (_, 2) => "stalls until the event is read",
        _ => "deadlocks",
    };
    Ok(Observation::new(observed)
        .with("acks_before_read", before_read)
        .with("state_while_pending", threads::describe_state(state))
        .with("stop_ms", stop_ms)
        .with("window_ms", ctx.window.as_millis() as u64))
}

fn poll_nothing_to_read(ctx: &Ctx, _: Variant) -> ProbeResult {
    let flag = SignalFlag::install_suspending(Signal::SIGUSR1).ctx("sigaction")?;
    let (uffd, region) = registered(0, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    let uffd = Arc::new(uffd);
    let poller = {
        let (uffd, limit) = (uffd.clone(), ctx.timeout);
        worker::spawn("poll", move || uffd.readable(limit))
    };
    threads::wait_until_blocked(poller.tid(), ctx.timeout);
    let addr = region.base();
    let loader = worker::spawn("load", move || memory::load(addr));
    let woke = poller.wait(ctx.timeout);
    if !matches!(woke, Some(Ok(true))) {
        flag.resume();
        return Ok(Observation::new("poll did not wake for the fault"));
    }
    threads::wait_until_blocked(loader.tid(), ctx.timeout);
    threads::tgkill(loader.tid(), Signal::SIGUSR1).ctx("tgkill")?;
    let ran = flag.wait(ctx.timeout).ctx("waiting for the handler")?;
    // The loader is in its handler (waiting); its fault is no longer pending.
    let read = match uffd.read_now()? {
        None => "EAGAIN".to_string(),
        Some(Event::Pagefault { .. }) => "the fault".to_string(),
        Some(e) => describe_event(&e, &region),
    };
    let readable_after = uffd.readable(Duration::ZERO)?;
    flag.resume();
    // The handler returns, the load is retried: serve it.
    let served = uffd.serve_until_done(&loader, &region, 0x55, ctx.timeout)?;
    Ok(Observation::new(if ran > 0 { read } else { "the handler did not run".to_string() })
        .with("readable_after", readable_after)
        .with("retried", served.events.len() as u64))
}
