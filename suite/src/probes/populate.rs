//! `populate`: MADV_POPULATE_READ / MADV_POPULATE_WRITE on userfaultfd-registered memory.

use crate::catalogue::Behaviour;
use crate::probe::{Context, Ctx, Fail, Observation, ProbeResult};
use crate::sys::{self, errno_name, madvise, Region, MADV_POPULATE_READ, MADV_POPULATE_WRITE};
use crate::uffd::{
    describe_event, describe_fault, Event, Next, RegisterMode, Uffd, FEATURE_THREAD_ID,
};
use nix::errno::Errno;
use std::time::Instant;

pub const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        id: "populate.read_missing",
        summary: "MADV_POPULATE_READ on a missing page of a MISSING-registered anonymous range raises a uffd fault",
        observes: "`fault read` when a read-fault message arrives while madvise blocks and madvise \
                   returns 0 once the page is served; `fault read, then ERRNO` when it fails after \
                   serving; an errno name when madvise fails without a message. Unsupported when the \
                   advice itself is rejected (EINVAL on a plain mapping). Details: the faulting \
                   thread's state while blocked, whether the message names it, residency afterwards.",
        expect: &[
            ("<5.14", "unsupported: MADV_POPULATE_READ is new in Linux 5.14"),
            (">=5.14", "fault read"),
        ],
        citation: "madvise(2), man-pages 6.20: MADV_POPULATE_READ (since Linux 5.14), \"populate \
                   (prefault) page tables readable, faulting-in all pages ... as if manually reading \
                   from each page\"; mm/madvise.c madvise_populate (v5.14)",
        notes: "A plain load blocks in user-fault context (state S); the populate fault is taken by \
                GUP inside the madvise syscall, so the thread blocks in the kernel: compare the \
                `state` detail with stw.user_fault_signal.",
        probe: read_missing,
    },
    Behaviour {
        id: "populate.write_missing",
        summary: "MADV_POPULATE_WRITE on a missing page of a MISSING-registered anonymous range raises a uffd write fault",
        observes: "As populate.read_missing, for MADV_POPULATE_WRITE: `fault write` when the message \
                   carries UFFD_PAGEFAULT_FLAG_WRITE and madvise returns 0 once served.",
        expect: &[
            ("<5.14", "unsupported: MADV_POPULATE_WRITE is new in Linux 5.14"),
            (">=5.14", "fault write"),
        ],
        citation: "madvise(2), man-pages 6.20: MADV_POPULATE_WRITE (since Linux 5.14), \"as if \
                   manually writing to each page\"; ioctl_userfaultfd(2): UFFD_PAGEFAULT_FLAG_WRITE",
        notes: "",
        probe: write_missing,
    },
];

fn read_missing(ctx: &Ctx) -> ProbeResult {
    populate_missing(ctx, MADV_POPULATE_READ, "MADV_POPULATE_READ")
}

fn write_missing(ctx: &Ctx) -> ProbeResult {
    populate_missing(ctx, MADV_POPULATE_WRITE, "MADV_POPULATE_WRITE")
}

/// One missing page, registered MISSING; a worker populates it with `advice` while this thread
/// serves the uffd.
fn populate_missing(ctx: &Ctx, advice: i32, name: &str) -> ProbeResult {
    require_advice(advice, name)?;
    let uffd = Uffd::open(FEATURE_THREAD_ID)?;
    let region = Region::anonymous(1).ctx("mmap")?;
    uffd.register(region.base(), region.len(), RegisterMode::MISSING)?;
    let (addr, len) = (region.base(), region.len());
    let worker = crate::worker::spawn("populate", move || {
        let start = Instant::now();
        (madvise(addr, len, advice), start.elapsed())
    });
    let mut obs = match uffd.next_or_done(&worker, ctx.timeout)? {
        Next::Event(Event::Pagefault {
            kind,
            rw,
            addr: at,
            thread_id,
        }) => {
            let fault = describe_fault(kind, rw);
            let state = sys::wait_until_blocked(worker.tid(), ctx.timeout);
            let mut obs = Observation::new("")
                .with("state", sys::describe_state(state))
                .with("message_tid_is_worker", thread_id.as_raw() == worker.tid())
                .with("message_page", region.page_index(at as u64));
            uffd.serve(region.base(), region.page_size(), 0xA5)?;
            obs.observed = match worker.wait(ctx.timeout) {
                Some((Ok(()), took)) => {
                    obs.detail("madvise_us", took.as_micros() as u64);
                    format!("fault {fault}")
                }
                Some((Err(e), _)) => format!("fault {fault}, then {}", errno_name(e)),
                None => format!("fault {fault}, still blocked after the page was served"),
            };
            obs
        }
        Next::Event(other) => Observation::new(format!(
            "unexpected event: {}",
            describe_event(&other, &region)
        )),
        Next::Done((Ok(()), _)) => Observation::new("returned 0 without a message"),
        Next::Done((Err(e), _)) => Observation::new(errno_name(e)).with("message", false),
        Next::Timeout => Observation::new("blocked without a message").with(
            "state",
            sys::describe_state(sys::thread_state(worker.tid())),
        ),
    };
    if let Ok(resident) = sys::resident(region.base(), region.page_size()) {
        obs.detail("resident_after", resident);
    }
    Ok(obs)
}

/// The advice exists on this kernel: it succeeds on a plain, unregistered page.
fn require_advice(advice: i32, name: &str) -> Result<(), Fail> {
    let plain = Region::anonymous(1).ctx("mmap")?;
    match madvise(plain.base(), plain.len(), advice) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => Err(Fail::unsupported(
            "EINVAL",
            format!("madvise({name}) on a plain anonymous page fails with EINVAL: the kernel does not know the advice (new in 5.14)"),
        )),
        Err(e) => Err(Fail::error(format!("madvise({name}) on a plain page: {}", errno_name(e)))),
    }
}
