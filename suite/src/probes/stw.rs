//! `stw`: what a stop-the-world runtime meets when a thread is parked on a missing page.

use crate::catalogue::Behaviour;
use crate::probe::{Context, Ctx, Fail, Observation, ProbeResult};
use crate::sys::{self, Region, SignalFlag};
use crate::uffd::{describe_event, Event, RegisterMode, Uffd, FEATURE_THREAD_ID};
use nix::sys::signal::Signal;

pub const BEHAVIOURS: &[Behaviour] = &[Behaviour {
    id: "stw.user_fault_signal",
    summary: "A signal handler runs on a thread blocked by a plain load on a missing page, before the page is served",
    observes: "A worker loads from a missing, MISSING-registered page; once its fault message has \
               arrived and the thread is asleep, SIGUSR1 is sent to it: `handler ran while blocked` \
               when the handler runs within the quiet window with the page still unserved, else \
               `handler did not run while blocked`. Details: the thread's state while blocked, \
               whether the fault was delivered again after the handler returned.",
    expect: &[("*", "handler ran while blocked")],
    citation: "fs/userfaultfd.c handle_userfault (v5.10, v6.1): faults from user mode wait in \
               TASK_INTERRUPTIBLE (userfaultfd_get_blocking_state) and return VM_FAULT_RETRY on a \
               pending signal; arch/x86/mm/fault.c do_user_addr_fault (fault_signal_pending)",
    notes: "This is what lets signal-based stop-the-world (Boehm GC, Mono, .NET) suspend a thread \
            parked on a missing page. After the handler returns the load is retried, which raises \
            the fault again (`refault` detail).",
    probe: user_fault_signal,
}];

fn user_fault_signal(ctx: &Ctx) -> ProbeResult {
    let flag = SignalFlag::install(Signal::SIGUSR1).ctx("sigaction(SIGUSR1)")?;
    let uffd = Uffd::open(FEATURE_THREAD_ID)?;
    let region = Region::anonymous(1).ctx("mmap")?;
    uffd.register(region.base(), region.len(), RegisterMode::MISSING)?;
    let addr = region.base();
    let worker = crate::worker::spawn("load", move || sys::load(addr));
    let first = uffd.next(ctx.timeout)?;
    let Some(Event::Pagefault { .. }) = first else {
        return Ok(Observation::new(match first {
            None => "no fault message".to_string(),
            Some(e) => format!("unexpected event: {}", describe_event(&e, &region)),
        }));
    };
    let state = sys::wait_until_blocked(worker.tid(), ctx.timeout);
    sys::tgkill(worker.tid(), Signal::SIGUSR1).ctx("tgkill")?;
    let ran = flag.wait(ctx.window).ctx("waiting for the handler")?;
    let mut obs = Observation::new(if ran > 0 {
        "handler ran while blocked"
    } else {
        "handler did not run while blocked"
    })
    .with("state", sys::describe_state(state))
    .with("window_ms", ctx.window.as_millis() as u64);
    if ran > 0 {
        // After the handler the load is retried: is the fault delivered again?
        let again = uffd.next(ctx.window)?;
        obs.detail("refault", matches!(again, Some(Event::Pagefault { .. })));
    }
    uffd.serve(region.base(), region.page_size(), 0xA5)?;
    match worker.wait(ctx.timeout) {
        Some(0xA5) => Ok(obs),
        Some(other) => Err(Fail::error(format!(
            "the load returned {other:#x}, not the served 0xa5"
        ))),
        None => Err(Fail::error(
            "the load did not finish after the page was served",
        )),
    }
}
