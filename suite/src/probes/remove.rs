//! `remove`: UFFD_EVENT_REMOVE and the other non-fault events.

use crate::catalogue::Behaviour;
use crate::probe::{Context, Ctx, Observation, ProbeResult};
use crate::sys::{errno_name, madvise, Region};
use crate::uffd::{describe_event, Next, RegisterMode, Uffd, FEATURE_EVENT_REMOVE};

pub const BEHAVIOURS: &[Behaviour] = &[Behaviour {
    id: "remove.dontneed",
    summary: "MADV_DONTNEED on a registered range raises UFFD_EVENT_REMOVE for exactly that range",
    observes: "With UFFD_FEATURE_EVENT_REMOVE, pages 0-3 registered MISSING and served, a worker \
               calls MADV_DONTNEED on pages [1,3): the first message as `REMOVE pages [a,b)` \
               (page indices relative to the region), or `no event` when madvise returns without one.",
    expect: &[
        ("<4.11", "unsupported: UFFD_FEATURE_EVENT_REMOVE is new in Linux 4.11"),
        (">=4.11", "REMOVE pages [1,3)"),
    ],
    citation: "ioctl_userfaultfd(2), man-pages 6.20: UFFD_FEATURE_EVENT_REMOVE (since Linux 4.11), \
               \"when the faulting process calls madvise(2) with MADV_DONTNEED or MADV_REMOVE\"; \
               mm/madvise.c madvise_dontneed_free -> userfaultfd_remove (v6.1)",
    notes: "The madvise caller waits until the event is read (fs/userfaultfd.c \
            userfaultfd_event_wait_completion); see the `madvise_returned_before_read` detail.",
    probe: dontneed,
}];

fn dontneed(ctx: &Ctx) -> ProbeResult {
    let uffd = Uffd::open(FEATURE_EVENT_REMOVE)?;
    let region = Region::anonymous(4).ctx("mmap")?;
    let page = region.page_size();
    uffd.register(region.base(), region.len(), RegisterMode::MISSING)?;
    for i in 0..4 {
        uffd.serve(region.page(i), page, 0x10 + i as u8)?;
    }
    let addr = region.page(1);
    let worker = crate::worker::spawn("dontneed", move || {
        madvise(addr, 2 * page, libc::MADV_DONTNEED)
    });
    Ok(match uffd.next_or_done(&worker, ctx.timeout)? {
        Next::Event(event) => {
            let ret = worker.wait(ctx.timeout);
            Observation::new(describe_event(&event, &region)).with(
                "madvise",
                match ret {
                    Some(Ok(())) => "0".to_string(),
                    Some(Err(e)) => errno_name(e),
                    None => "still blocked".to_string(),
                },
            )
        }
        Next::Done(ret) => {
            let late = uffd.next(ctx.window)?;
            Observation::new(match late {
                None => "no event".to_string(),
                Some(e) => format!(
                    "no event before madvise returned, then {}",
                    describe_event(&e, &region)
                ),
            })
            .with("madvise", ret.map_or_else(errno_name, |()| "0".to_string()))
            .with("madvise_returned_before_read", true)
        }
        Next::Timeout => Observation::new("madvise blocked without an event"),
    })
}
