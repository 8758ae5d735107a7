//! `remove`: UFFD_EVENT_REMOVE and the other non-cooperative events, and the UFFDIO_COPY races
//! they cause.

use crate::kit::behaviour::Behaviour;
use crate::kit::memory::{madvise, Region};
use crate::kit::outcome::errno_name;
use crate::kit::outcome::{Context, Ctx, Fail, Observation, ProbeResult, Sabotage};
use crate::kit::rows;
use crate::kit::uapi::{
    FEATURE_EVENT_FORK, FEATURE_EVENT_REMAP, FEATURE_EVENT_REMOVE, FEATURE_EVENT_UNMAP, FEATURE_MISSING_SHMEM,
};
use crate::kit::uffd;
use crate::kit::uffd::{describe_event, registered, Event, Next, Pump, RegisterMode, Uffd};
use crate::kit::variant::Variant;
use crate::kit::worker::{self, Worker};
use crate::kit::{memory, poll, threads};
use nix::errno::Errno;
use std::time::Duration;

const EVENTS_CITATION: &str = "ioctl_userfaultfd(2) and UFFDIO_API(2const), man-pages 6.20: \
     UFFD_FEATURE_EVENT_REMOVE / _UNMAP / _REMAP / _FORK (since Linux 4.11)";

pub const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        id: "remove.dontneed",
        summary: "MADV_DONTNEED on a registered range raises UFFD_EVENT_REMOVE for exactly that range",
        observes: "With UFFD_FEATURE_EVENT_REMOVE, pages 0-3 registered MISSING and served, a worker \
                   calls MADV_DONTNEED on pages [1,3): the first message as `REMOVE pages [a,b)` \
                   (page indices relative to the region), or `no event` when madvise returns without one.",
        expect: &[rows::BEFORE_4_11, (">=4.11", "REMOVE pages [1,3)")],
        citation: "ioctl_userfaultfd(2), man-pages 6.20: UFFD_FEATURE_EVENT_REMOVE (since Linux 4.11), \
                   \"when the faulting process calls madvise(2) with MADV_DONTNEED or MADV_REMOVE\"; \
                   mm/madvise.c madvise_dontneed_free -> userfaultfd_remove (v6.1)",
        selftests: &["selftests.unit_events_anon", "selftests.userfaultfd_anon_events"],
        probe: dontneed,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.blocks_until_read",
        summary: "The MADV_DONTNEED caller waits until the page server has read the REMOVE event",
        observes: "The event is left unread once it is pending: `madvise waited for the read` when the \
                   caller is still inside madvise after the quiet window and returns once the event is \
                   read, `madvise returned before the read` otherwise. Details: its state while waiting.",
        expect: &[rows::BEFORE_4_11, (">=4.11", "madvise waited for the read")],
        citation: "fs/userfaultfd.c userfaultfd_remove -> userfaultfd_event_wait_completion (v5.10, v6.12)",
        notes: "A page server that stops reading its uffd (paused, busy, deadlocked on the process) \
                stalls every MADV_DONTNEED in the process, balloon deflation included.",
        slow: 1,
        probe: blocks_until_read,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.copy_eagain",
        summary: "UFFDIO_COPY fails with EAGAIN while a REMOVE event is pending",
        observes: "While a worker's MADV_DONTNEED waits with its REMOVE event unread, UFFDIO_COPY into \
                   another, missing page of the range: `EAGAIN`, `copied`, or another errno name. \
                   Details: the same COPY once the event was read.",
        expect: &[rows::BEFORE_4_11, (">=4.11, <4.18", "copied"), (">=4.18", "EAGAIN")],
        citation: "fs/userfaultfd.c userfaultfd_copy (v5.10, v6.12): -EAGAIN while ctx->mmap_changing; \
                   commit df2cc96e7701 (v4.18) \"userfaultfd: prevent non-cooperative events vs \
                   mcopy_atomic races\"",
        notes: "The EAGAIN protocol: on EAGAIN, read the pending events, then retry. UFFDIO_COPY(2const) \
                documents EAGAIN only as a short copy.",
        probe: copy_eagain,
        documented: &[(">=4.18", "undocumented: UFFDIO_COPY(2const) documents EAGAIN only for a short copy, not for a copy refused because an event is pending", crate::probes::sources::COPY_ERRORS)],
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.copy_field",
        summary: "What uffdio_copy.copy holds after UFFDIO_COPY failed with EAGAIN for a pending event",
        observes: "The `copy` field after the EAGAIN of remove.copy_eagain, set beforehand to a sentinel: \
                   `untouched` (still the sentinel), `-EAGAIN`, or the number it holds.",
        expect: &[
            rows::BEFORE_4_11,
            (">=4.11, <4.18", "4096"),
            (">=4.18, <5.15", "untouched"),
            (">=5.15, <5.16", "undetermined: whether 5.15.y took the v6.15 fix is not verified"),
            (">=5.16, <6.6", "untouched"),
            (">=6.6, <6.7", "undetermined: the v6.15 fix failed to apply to 6.6.y (12 May 2025); a later backport is not verified"),
            (">=6.7, <6.12.29", "untouched"),
            (">=6.12.29, <6.13", "-EAGAIN"),
            (">=6.13, <6.14.7", "untouched"),
            (">=6.14.7, <6.15", "-EAGAIN"),
            (">=6.15", "-EAGAIN"),
        ],
        citation: "fs/userfaultfd.c userfaultfd_copy: 5.10.262 and 6.1.192 return -EAGAIN before writing \
                   `copy` (`if (atomic_read(&ctx->mmap_changing)) goto out;`); 6.12.118 and 7.2.13 \
                   put_user(-EAGAIN, &copy) first. Commit 95567729173e \"mm/userfaultfd: fix uninitialized \
                   output field for -EAGAIN race\" (Peter Xu, v6.15, Cc stable): in 6.14.7 and 6.12.29 \
                   (Debian's changelog for linux 6.12.29-1); it failed to apply to 6.6.y and 5.4.y (stable \
                   FAILED mails, 12 May 2025); not in 6.1.y up to 6.1.192 nor 5.10.y up to 5.10.262 (checked \
                   in Debian's sources)",
        notes: "A server that reads `copy` after EAGAIN without initialising it reads garbage on older \
                kernels; the userfaultfd crate 0.9 turns -EAGAIN into a huge PartiallyCopied count.",
        documented: &[(
            ">=4.18",
            "-EAGAIN",
            "UFFDIO_COPY(2const), man-pages 6.20: \"The copy field is used by the kernel to return the number of bytes that was actually copied, or an error (a negated errno-style value)\"",
        )],
        probe: copy_field,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.refault",
        summary: "After MADV_DONTNEED removed a served page, the next access faults again as MISSING",
        observes: "A served page is removed (its REMOVE event read), then loaded from a worker: `fault \
                   read, then served bytes` when a new MISSING fault arrives and the load returns what was \
                   served the second time.",
        expect: &[("*", "fault read, then served bytes")],
        citation: "ioctl_userfaultfd(2): MISSING faults are raised for pages not present; mm/madvise.c \
                   MADV_DONTNEED zaps the page table entries",
        probe: refault,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.copy_eexist",
        summary: "UFFDIO_COPY onto a page that is already present fails with EEXIST and sets copy to -EEXIST",
        observes: "UFFDIO_COPY onto a served page: the errno and the `copy` field (`untouched` if it kept \
                   its sentinel): `EEXIST, copy -EEXIST`.",
        expect: &[("*", "EEXIST, copy -EEXIST")],
        citation: "mm/userfaultfd.c mfill_atomic_pte / mcopy_atomic_pte (v5.10, v6.12): -EEXIST when the \
                   PTE is not none; fs/userfaultfd.c userfaultfd_copy writes the result into `copy`",
        notes: "UFFDIO_COPY(2const) does not list EEXIST among its errors, though servers racing each \
                other (or a REMOVE) meet it routinely.",
        probe: copy_eexist,
        documented: &[("*", "undocumented: UFFDIO_COPY(2const) does not list EEXIST", crate::probes::sources::COPY_ERRORS)],
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.zeropage",
        summary: "UFFDIO_ZEROPAGE resolves a missing-page fault with a zero-filled page",
        observes: "A worker's load raises a MISSING fault, served with UFFDIO_ZEROPAGE: `fault read, \
                   zero-filled` when the load returns 0.",
        expect: &[("*", "fault read, zero-filled")],
        citation: "UFFDIO_ZEROPAGE(2const), man-pages 6.20",
        selftests: &["selftests.unit_zeropage_anon", "selftests.userfaultfd_anon_uffdio_zeropage"],
        probe: zeropage,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.madv_remove_shmem",
        summary: "MADV_REMOVE on a registered shared memfd raises UFFD_EVENT_REMOVE for that range",
        observes: "Pages 0-3 of a MAP_SHARED memfd registered MISSING; a worker calls MADV_REMOVE on pages \
                   [1,3): the first message (`REMOVE pages [1,3)`), or `no event`.",
        expect: &[rows::BEFORE_4_11, (">=4.11", "REMOVE pages [1,3)")],
        citation: "ioctl_userfaultfd(2): UFFD_FEATURE_EVENT_REMOVE \"MADV_DONTNEED or MADV_REMOVE\"; \
                   mm/madvise.c madvise_remove -> userfaultfd_remove (v6.1)",
        probe: madv_remove_shmem,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.madv_free",
        summary: "MADV_FREE on a registered anonymous range raises UFFD_EVENT_REMOVE, like MADV_DONTNEED",
        observes: "As remove.dontneed, with MADV_FREE: `REMOVE pages [1,3)` or `no event`.",
        expect: &[rows::BEFORE_4_11, (">=4.11", "REMOVE pages [1,3)")],
        citation: "mm/madvise.c madvise_dontneed_free (v5.10, v6.12): one path for MADV_DONTNEED and \
                   MADV_FREE, which calls userfaultfd_remove",
        notes: "The man pages name only MADV_DONTNEED and MADV_REMOVE as raising the event (read here as \
                the documented claim `no event` for MADV_FREE); the kernel raises it for MADV_FREE too.",
        documented: &[(
            ">=4.11",
            "no event",
            "UFFDIO_API(2const), man-pages 6.20: \"UFFD_FEATURE_EVENT_REMOVE (since Linux 4.11) If this feature is enabled, when the faulting process calls madvise(2) with the MADV_DONTNEED or MADV_REMOVE advice value to free a virtual memory area the userfaultfd monitor will receive an event of type UFFD_EVENT_REMOVE.\" (MADV_FREE is not named)",
        )],
        probe: madv_free,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.punch_hole",
        summary: "fallocate(PUNCH_HOLE) on a registered memfd raises no event",
        observes: "Pages 0-3 of a MAP_SHARED memfd registered MISSING with EVENT_REMOVE, mapped and \
                   present; a worker punches a hole over pages [1,3) with fallocate: `no event` when it \
                   returns and no message arrives in the quiet window. Details: whether a later load of \
                   page 1 faults.",
        expect: &[("*", "no event")],
        citation: "mm/shmem.c shmem_fallocate (v6.1): FALLOC_FL_PUNCH_HOLE unmaps and truncates the range \
                   without calling userfaultfd_remove",
        notes: "A page server that tracks which pages it served learns nothing when the file behind them \
                loses them: the next access faults as MISSING.",
        slow: 1,
        probe: punch_hole,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.shared_memfd",
        summary: "After MADV_DONTNEED on a MAP_SHARED memfd page, the old content comes back without a fault",
        observes: "A MISSING-registered MAP_SHARED memfd page whose content is in the page cache; after a \
                   worker's MADV_DONTNEED: the event (`REMOVE` or `no event`), then what a load returns: \
                   `old content back without a fault`, `fault`, or `zero`.",
        expect: &[rows::BEFORE_4_11, (">=4.11", "REMOVE; old content back without a fault")],
        citation: "madvise(2): MADV_DONTNEED on shared mappings \"the pages will be refetched from the \
                   underlying file\"; mm/madvise.c madvise_dontneed_free -> userfaultfd_remove (v6.1)",
        notes: "A server that treats REMOVE as \"the page is gone, serve it again on the next fault\" \
                will never see that fault for shmem: the page cache still has it.",
        probe: shared_memfd,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.unmap",
        summary: "munmap of part of a registered range raises UFFD_EVENT_UNMAP for exactly that part",
        observes: "With UFFD_FEATURE_EVENT_UNMAP, a worker unmaps pages [1,3) of a 4-page registered \
                   range: `UNMAP pages [1,3)` or `no event`.",
        expect: &[rows::BEFORE_4_11, (">=4.11", "UNMAP pages [1,3)")],
        citation: EVENTS_CITATION,
        probe: unmap,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.remap",
        summary: "mremap of a registered range raises UFFD_EVENT_REMAP with the old and new address",
        observes: "With UFFD_FEATURE_EVENT_REMAP, a worker moves two registered pages to a fixed new \
                   address: `REMAP 2 pages to the new address`, or what arrived.",
        expect: &[rows::BEFORE_4_11, (">=4.11", "REMAP 2 pages to the new address")],
        citation: EVENTS_CITATION,
        selftests: &["selftests.unit_events_anon", "selftests.userfaultfd_anon_events"],
        probe: remap,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.fork",
        summary: "fork raises UFFD_EVENT_FORK with a new uffd, on which the child's faults arrive",
        observes: "With UFFD_FEATURE_EVENT_FORK (as root), a worker forks; the child loads a registered \
                   missing page: `FORK, child faults on the new uffd` when the event carries a new uffd \
                   and the child's fault arrives there (and the child then reads the served byte).",
        expect: &[rows::BEFORE_4_11, (">=4.11", "FORK, child faults on the new uffd")],
        citation: EVENTS_CITATION,
        notes: "fork(2) itself waits until the FORK event is read. With glibc, fork() holds every malloc \
                arena lock across that wait, so a page server thread in the same process that allocates \
                before reading the event deadlocks with it; this probe forks with the raw syscall.",
        selftests: &["selftests.unit_events_anon", "selftests.userfaultfd_anon_events"],
        probe: fork,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.close_with_waiter",
        summary: "Closing the uffd wakes a thread blocked on a missing page; its load then sees a zero page",
        observes: "A worker is blocked by a load on a missing page (message read); the uffd is closed: \
                   `waiter woke, read 0x00` (or the value) when the load finishes, `waiter still blocked` \
                   otherwise.",
        expect: &[("*", "waiter woke, read 0x00")],
        citation: "fs/userfaultfd.c userfaultfd_release (v6.1): clears the VMAs' uffd context and wakes \
                   all waiters, whose faults then complete as if never registered",
        notes: "A page server that dies lets its process run on with zero pages where data was expected.",
        probe: close_with_waiter,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.stale_copy_race",
        summary: "A server following the EAGAIN protocol never installs stale bytes while MADV_DONTNEED races its copies",
        observes: "64 rounds, each a race made to happen: a loader faults on a missing page; while the \
                   server holds that fault, a racer removes the page with MADV_DONTNEED (it blocks with \
                   its REMOVE pending), and the server copies the bytes it built before the removal, \
                   following the EAGAIN protocol (on EAGAIN it reads the events, a REMOVE bumping the \
                   version, and retries with fresh bytes). `no stale page` when every such copy met \
                   EAGAIN and every load returned the version current after the removal; `stale page \
                   installed (N copies ...)` when a copy went through with the REMOVE pending; `stale page \
                   seen (N loads)`. Below 64 raced copies or 64 removals the run is an `error`.",
        expect: &[rows::BEFORE_4_11, (">=4.11, <4.18", "stale page installed (64 copies went through while a REMOVE was pending)"), (">=4.18", "no stale page")],
        citation: "fs/userfaultfd.c userfaultfd_remove (6.1.192, 6.12.118): mmap_changing is raised before the \
                   REMOVE is queued and dropped only when the madvise thread runs again after the event was \
                   read; userfaultfd_copy returns -EAGAIN while it is raised (commit df2cc96e7701, v4.18)",
        notes: "The race is made deterministic: the removal is issued while the fault is being served and \
                the copy is attempted only once the remover sleeps in the kernel's event wait (its wchan \
                names userfaultfd), so every round races. Self-tests: serve-stale (the server keeps the \
                bytes it built before the removal: `stale page seen`) and no-race (no removal: an \
                `error`).",
        slow: 2,
        probe: stale_copy_race,
        ..Behaviour::DEFAULT
    },
];

pub(super) fn four_served_pages(features: u64) -> Result<(Uffd, Region), Fail> {
    let (uffd, region) = registered(features, Region::anonymous(4).ctx("mmap")?, RegisterMode::MISSING)?;
    for i in 0..4 {
        uffd.serve(region.page(i), region.page_size(), 0x10 + i as u8)?;
    }
    Ok((uffd, region))
}

/// Runs `op` on pages [1,3) from a worker and reports the first event: `REMOVE pages [1,3)`, or
/// `no event` (after the quiet window) when `op` returns without one.
pub(super) fn first_event(
    ctx: &Ctx,
    uffd: &Uffd,
    region: &Region,
    op: impl FnOnce(usize, usize) -> Result<(), Errno> + Send + 'static,
) -> ProbeResult {
    let (addr, len) = (region.page(1), 2 * region.page_size());
    let worker = worker::spawn("op", move || op(addr, len));
    Ok(match uffd.next_or_done(&worker, ctx.timeout)? {
        Next::Event(event) => {
            let ret = worker.wait(ctx.timeout);
            Observation::new(describe_event(&event, region)).with("result", result_name(ret))
        }
        Next::Done(ret) => uffd
            .watch_quiet(ctx, Some(region), "no event".to_string(), "no event before it returned, then")?
            .with("result", result_name(Some(ret))),
        Next::Timeout => Observation::new("blocked without an event"),
    })
}

pub(super) fn result_name(r: Option<Result<(), Errno>>) -> String {
    match r {
        Some(Ok(())) => "0".to_string(),
        Some(Err(e)) => errno_name(e),
        None => "still blocked".to_string(),
    }
}

fn dontneed(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = four_served_pages(FEATURE_EVENT_REMOVE)?;
    first_event(ctx, &uffd, &region, |a, l| madvise(a, l, libc::MADV_DONTNEED))
}

fn madv_free(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = four_served_pages(FEATURE_EVENT_REMOVE)?;
    first_event(ctx, &uffd, &region, |a, l| madvise(a, l, libc::MADV_FREE))
}

fn unmap(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = four_served_pages(FEATURE_EVENT_UNMAP)?;
    // SAFETY: nothing else uses pages [1,3) of this probe's region.
    first_event(ctx, &uffd, &region, |a, l| {
        Errno::result(unsafe { libc::munmap(a as *mut libc::c_void, l) }).map(drop)
    })
}

/// Four pages of a MAP_SHARED memfd, written through the file (so they are in the page cache),
/// registered MISSING with EVENT_REMOVE: the shmem twin of [`four_served_pages`].
fn four_file_pages(first_byte: u8) -> Result<(Uffd, Region), Fail> {
    let region = Region::memfd(4).ctx("memfd")?;
    for i in 0..4 {
        region.fill_file_page(i, first_byte + i as u8).ctx("pwrite")?;
    }
    registered(FEATURE_EVENT_REMOVE | FEATURE_MISSING_SHMEM, region, RegisterMode::MISSING)
}

fn madv_remove_shmem(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = four_file_pages(0x20)?;
    first_event(ctx, &uffd, &region, |a, l| madvise(a, l, libc::MADV_REMOVE))
}

/// A uffd, its region, and the worker whose MADV_DONTNEED waits on its unread REMOVE event.
pub(super) type PendingRemove = (Uffd, Region, Worker<Result<(), Errno>>);

/// A worker removes page 0 of `region` (all but its last page served) with MADV_DONTNEED and
/// blocks until its REMOVE event is read; returns once the event is pending (not read).
pub(super) fn pending_remove(ctx: &Ctx, region: Region) -> Result<PendingRemove, Fail> {
    let features = FEATURE_EVENT_REMOVE | uffd::backing_features(&region);
    let (uffd, region) = registered(features, region, RegisterMode::MISSING)?;
    let last = region.len() / region.page_size() - 1;
    for i in 0..last {
        uffd.serve(region.page(i), region.page_size(), 0x30 + i as u8)?;
    }
    let (addr, len) = (region.page(0), region.page_size());
    let worker = worker::spawn("dontneed", move || madvise(addr, len, libc::MADV_DONTNEED));
    if !uffd.readable(ctx.timeout)? {
        return Err(Fail::error("no REMOVE event became pending"));
    }
    Ok((uffd, region, worker))
}

fn blocks_until_read(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region, worker) = pending_remove(ctx, Region::anonymous(4).ctx("mmap")?)?;
    let early = worker.wait(ctx.window);
    let state = threads::thread_state(worker.tid());
    let event = uffd.next(ctx.timeout)?;
    let after = if early.is_some() { early } else { worker.wait(ctx.timeout) };
    let observed = match (&early, &event) {
        (Some(_), _) => "madvise returned before the read".to_string(),
        (None, Some(Event::Remove { .. })) if after.is_some() => "madvise waited for the read".to_string(),
        (None, Some(e)) => format!("madvise blocked, then {}", describe_event(e, &region)),
        (None, None) => "madvise blocked without an event".to_string(),
    };
    Ok(Observation::new(observed)
        .with("state_while_pending", threads::describe_state(state))
        .with("madvise", result_name(after))
        .with("window_ms", ctx.window.as_millis() as u64))
}

const SENTINEL: i64 = 0x5A5A;

/// UFFDIO_COPY into the last (missing) page of `region` while a REMOVE of its page 0 is pending:
/// the result, the `copy` field (set to [`SENTINEL`] beforehand), and the same copy's result once
/// the event was read.
pub(super) fn copy_while_pending(
    ctx: &Ctx,
    region: Region,
) -> Result<(Result<(), Errno>, i64, String), Fail> {
    let (uffd, region, worker) = pending_remove(ctx, region)?;
    let page = vec![0x99u8; region.page_size()];
    let last = region.page(region.len() / region.page_size() - 1);
    let (result, field) = uffd.copy_raw(last, &page, SENTINEL);
    let _ = uffd.next(ctx.timeout)?;
    let _ = worker.wait(ctx.timeout);
    let (again, _) = uffd.copy_raw(last, &page, SENTINEL);
    Ok((result, field, again.map_or_else(errno_name, |()| "copied".to_string())))
}

/// The region of the copy probes: two pages (a huge page costs tens of milliseconds to copy under
/// TCG), the second missing.
fn copy_region(v: Variant) -> Result<Region, Fail> {
    v.removable(2)
}

pub(super) fn copy_eagain(ctx: &Ctx, v: Variant) -> ProbeResult {
    let (result, _, again) = copy_while_pending(ctx, copy_region(v)?)?;
    Ok(Observation::new(result.map_or_else(errno_name, |()| "copied".to_string()))
        .with("after_the_read", again))
}

pub(super) fn copy_field_name(field: i64) -> String {
    match field {
        SENTINEL => "untouched".to_string(),
        n if n < 0 => format!("-{}", errno_name(Errno::from_raw(-n as i32))),
        n => n.to_string(),
    }
}

pub(super) fn copy_field(ctx: &Ctx, v: Variant) -> ProbeResult {
    let (result, field, _) = copy_while_pending(ctx, copy_region(v)?)?;
    Ok(Observation::new(copy_field_name(field))
        .with("copy_result", result.map_or_else(errno_name, |()| "0".to_string()))
        .with("raw", field))
}

/// UFFDIO_COPY onto a served page: `ERRNO, copy FIELD`.
pub(super) fn copy_eexist(_: &Ctx, v: Variant) -> ProbeResult {
    let (uffd, region) = v.registered(0, v.region(1)?)?;
    uffd.serve(region.base(), region.page_size(), 0x21)?;
    let (result, field) = uffd.copy_raw(region.page(0), &vec![1u8; region.page_size()], SENTINEL);
    Ok(Observation::new(format!(
        "{}, copy {}",
        result.map_or_else(errno_name, |()| "copied".to_string()),
        copy_field_name(field)
    )))
}

/// Serves a page, removes it with MADV_DONTNEED (its REMOVE read), then loads it: `fault read,
/// then served bytes`, or what happened instead.
pub(super) fn refault(ctx: &Ctx, v: Variant) -> ProbeResult {
    let region = v.removable(1)?;
    let features = FEATURE_EVENT_REMOVE | uffd::backing_features(&region);
    let (uffd, region) = registered(features, region, RegisterMode::MISSING)?;
    uffd.serve(region.base(), region.page_size(), 0x11)?;
    let (addr, len) = (region.base(), region.page_size());
    let remover = worker::spawn("dontneed", move || madvise(addr, len, libc::MADV_DONTNEED));
    match uffd.next_or_done(&remover, ctx.timeout)? {
        Next::Event(Event::Remove { .. }) => {
            remover.wait(ctx.timeout);
        }
        Next::Event(e) => return Ok(uffd::unexpected(&e, &region)),
        Next::Done(_) => return Ok(Observation::new("no REMOVE event")),
        Next::Timeout => return Ok(Observation::new("madvise blocked without an event")),
    }
    let loader = worker::spawn("load", move || memory::load(addr));
    Ok(match uffd.next_or_done(&loader, ctx.timeout)? {
        Next::Event(Event::Pagefault { .. }) => {
            uffd.serve(region.base(), region.page_size(), 0x22)?;
            match loader.wait(ctx.timeout) {
                Some(0x22) => Observation::new("fault read, then served bytes"),
                Some(v) => Observation::new(format!("fault read, then {v:#04x}")),
                None => Observation::new("fault read, still blocked"),
            }
        }
        Next::Event(e) => uffd::unexpected(&e, &region),
        Next::Done(v) => Observation::new(format!("no fault, read {v:#04x}")),
        Next::Timeout => Observation::new("load blocked without a message"),
    })
}

fn zeropage(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = registered(0, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    let addr = region.base();
    let loader = worker::spawn("load", move || memory::load(addr));
    Ok(match uffd.next_or_done(&loader, ctx.timeout)? {
        Next::Event(Event::Pagefault { .. }) => {
            let n = uffd.zeropage(region.base(), region.page_size()).ctx("UFFDIO_ZEROPAGE")?;
            match loader.wait(ctx.timeout) {
                Some(0) => Observation::new("fault read, zero-filled"),
                Some(v) => Observation::new(format!("fault read, read {v:#04x}")),
                None => Observation::new("fault read, still blocked"),
            }
            .with("zeropage_bytes", n)
        }
        Next::Event(e) => uffd::unexpected(&e, &region),
        Next::Done(v) => Observation::new(format!("no fault, read {v:#04x}")),
        Next::Timeout => Observation::new("load blocked without a message"),
    })
}

fn punch_hole(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = four_file_pages(0x40)?;
    for i in 0..4 {
        memory::load(region.page(i)); // present in the page cache: mapped without a fault
    }
    let fd = region.memfd.as_ref().expect("a memfd region").try_clone().ctx("dup")?;
    let page = region.page_size() as i64;
    let mut obs = first_event(ctx, &uffd, &region, move |_, _| {
        use nix::fcntl::{fallocate, FallocateFlags};
        fallocate(
            &fd,
            FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
            page,
            2 * page,
        )
    })?;
    // Does the punched page fault as MISSING now?
    let addr = region.page(1);
    let loader = worker::spawn("load", move || memory::load(addr));
    let refault = match uffd.next_or_done(&loader, ctx.timeout)? {
        Next::Event(Event::Pagefault { .. }) => {
            uffd.serve(region.page(1), region.page_size(), 0x55)?;
            loader.wait(ctx.timeout);
            "fault read"
        }
        Next::Done(_) => "no fault",
        _ => "other",
    };
    obs.detail("later_load_of_page_1", refault);
    Ok(obs)
}

fn shared_memfd(ctx: &Ctx, _: Variant) -> ProbeResult {
    let region = Region::memfd(1).ctx("memfd")?;
    region.fill_file_page(0, 0x99).ctx("pwrite")?;
    let (uffd, region) =
        registered(FEATURE_EVENT_REMOVE | FEATURE_MISSING_SHMEM, region, RegisterMode::MISSING)?;
    let first = memory::load(region.base());
    let (addr, len) = (region.base(), region.page_size());
    let remover = worker::spawn("dontneed", move || madvise(addr, len, libc::MADV_DONTNEED));
    let event = match uffd.next_or_done(&remover, ctx.timeout)? {
        Next::Event(Event::Remove { .. }) => {
            remover.wait(ctx.timeout);
            "REMOVE".to_string()
        }
        Next::Event(e) => describe_event(&e, &region),
        Next::Done(_) => "no event".to_string(),
        Next::Timeout => return Ok(Observation::new("madvise blocked without an event")),
    };
    let loader = worker::spawn("load", move || memory::load(addr));
    let after = match uffd.next_or_done(&loader, ctx.timeout)? {
        Next::Done(0x99) => "old content back without a fault".to_string(),
        Next::Done(0) => "zero".to_string(),
        Next::Done(v) => format!("{v:#04x} without a fault"),
        Next::Event(Event::Pagefault { .. }) => {
            uffd.serve(region.base(), region.page_size(), 0x11)?;
            loader.wait(ctx.timeout);
            "fault".to_string()
        }
        Next::Event(e) => describe_event(&e, &region),
        Next::Timeout => "load blocked".to_string(),
    };
    Ok(Observation::new(format!("{event}; {after}")).with("first_load", format!("{first:#04x}")))
}

fn remap(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = four_served_pages(FEATURE_EVENT_REMAP)?;
    let target = Region::anonymous(2).ctx("mmap (target)")?;
    let (from, to, len) = (region.page(1), target.base(), 2 * region.page_size());
    // Two pages of this probe's region, over its own target mapping.
    let worker = worker::spawn("mremap", move || memory::mremap_fixed(from, len, to));
    Ok(match uffd.next_or_done(&worker, ctx.timeout)? {
        Next::Event(Event::Remap { from: f, to: t, len: l }) => {
            let pages = l / region.page_size();
            let dest = if t as usize == to { "to the new address" } else { "elsewhere" };
            let src = if f as usize == from { "" } else { " (from another address)" };
            worker.wait(ctx.timeout);
            Observation::new(format!("REMAP {pages} pages {dest}{src}"))
        }
        Next::Event(e) => uffd::unexpected(&e, &region),
        Next::Done(r) => {
            Observation::new(format!("no event ({})", r.map_or_else(errno_name, |_| "moved".into())))
        }
        Next::Timeout => Observation::new("mremap blocked without an event"),
    })
}

fn fork(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) =
        registered(FEATURE_EVENT_FORK, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    let (rd, wr) = nix::unistd::pipe().ctx("pipe")?;
    let addr = region.base();
    // fork(2) waits for its FORK event to be read, so it runs on a worker while this thread
    // serves. It is the raw syscall, not glibc's fork(): that takes every malloc lock before the
    // syscall and releases them after it returns, so a server thread that allocates while the
    // fork waits for it deadlocks (seen on 5.10 and 6.1 guests). The child only loads, writes one
    // byte and exits, all raw syscalls.
    let forker = worker::spawn("fork", move || {
        use std::os::fd::AsRawFd;
        // SAFETY: see above.
        let pid = unsafe { crate::kit::helpers::raw_fork() };
        if pid == 0 {
            let byte = memory::load(addr);
            unsafe {
                libc::write(wr.as_raw_fd(), (&byte as *const u8).cast(), 1);
                libc::_exit(0);
            }
        }
        pid
    });
    let child_uffd = match uffd.next_or_done(&forker, ctx.timeout)? {
        Next::Event(Event::Fork { uffd }) => Uffd::from_fork_event(uffd),
        Next::Event(e) => return Ok(uffd::unexpected(&e, &region)),
        Next::Done(pid) => {
            reap(pid, ctx.timeout);
            return Ok(Observation::new("no FORK event"));
        }
        Next::Timeout => return Ok(Observation::new("fork blocked without an event")),
    };
    let pid = forker.wait(ctx.timeout).unwrap_or(-1);
    let observed = match child_uffd.next(ctx.timeout)? {
        Some(Event::Pagefault { .. }) => {
            child_uffd.serve(region.base(), region.page_size(), 0x7E)?;
            let mut byte = [0u8; 1];
            let got = poll::wait_readable(std::os::fd::AsFd::as_fd(&rd), ctx.timeout).ctx("poll")?
                && nix::unistd::read(&rd, &mut byte).ctx("read")? == 1;
            if got && byte[0] == 0x7E {
                "FORK, child faults on the new uffd".to_string()
            } else {
                "FORK, child faulted but did not read the served byte".to_string()
            }
        }
        Some(e) => format!("FORK, then on the new uffd: {}", describe_event(&e, &region)),
        None => match uffd.next(ctx.window)? {
            Some(e) => format!(
                "FORK, but the child's fault came on the parent's uffd: {}",
                describe_event(&e, &region)
            ),
            None => "FORK, no fault from the child".to_string(),
        },
    };
    reap(pid, ctx.timeout);
    Ok(Observation::new(observed))
}

pub(super) fn reap(pid: i32, limit: Duration) {
    if pid > 0 {
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        threads::poll_until(limit, || {
            match nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                Ok(nix::sys::wait::WaitStatus::StillAlive) => None,
                _ => Some(()),
            }
        });
    }
}

fn close_with_waiter(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = registered(0, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    let addr = region.base();
    let loader = worker::spawn("load", move || memory::load(addr));
    uffd.await_fault(&loader, &region, ctx.timeout)?;
    let state = threads::wait_until_blocked(loader.tid(), ctx.timeout);
    uffd.close();
    Ok(match loader.wait(ctx.timeout) {
        Some(v) => Observation::new(format!("waiter woke, read {v:#04x}")),
        None => Observation::new("waiter still blocked"),
    }
    .with("state_before_close", threads::describe_state(state)))
}

/// Rounds of `remove.stale_copy_race`: each one a copy raced against a removal on purpose.
const STALE_RACE_ROUNDS: u64 = 64;

/// The race of `remove.stale_copy_race`, one round per page (each missing when its round starts):
/// [`STALE_RACE_ROUNDS`], or 4 of huge pages.
pub(super) fn stale_copy_race(ctx: &Ctx, v: Variant) -> ProbeResult {
    use std::sync::mpsc::channel;
    let rounds = if v.is_hugetlb() { 4 } else { STALE_RACE_ROUNDS as usize };
    let region = v.removable(rounds)?;
    let rounds = (region.len() / region.page_size()) as u64;
    let features = FEATURE_EVENT_REMOVE | uffd::backing_features(&region);
    let (uffd, region) = registered(features, region, RegisterMode::MISSING)?;
    let page = region.page_size();
    // The racer removes the page it is sent, and says when its madvise returned.
    let (go_tx, go_rx) = channel::<usize>();
    let (done_tx, done_rx) = channel::<Result<(), Errno>>();
    let racer = worker::spawn("racer", move || {
        while let Ok(addr) = go_rx.recv() {
            if done_tx.send(madvise(addr, page, libc::MADV_DONTNEED)).is_err() {
                break;
            }
        }
    });
    let version = std::cell::Cell::new(1u64);
    let bump = |e: Event| {
        if let Event::Remove { .. } = e {
            version.set(version.get() + 1);
        }
    };
    let mut pump = Pump::new(&uffd);
    let (mut faults, mut eagains, mut raced, mut stale_installed, mut stale_seen, mut removals) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for round in 0..rounds {
        // The round's page is missing: a loader faults on it.
        let addr = region.page(round as usize);
        let loader = worker::spawn("load", move || memory::load_u64(addr));
        let fault_version = match uffd.next_or_done(&loader, ctx.timeout)? {
            Next::Event(Event::Pagefault { .. }) => version.get(),
            Next::Event(e) => return Ok(uffd::unexpected(&e, &region)),
            Next::Done(v) => return Ok(Observation::new(format!("round {round}: no fault, read {v}"))),
            Next::Timeout => {
                return Ok(Observation::new(format!(
                    "round {round}: the load blocked without a fault message"
                )))
            }
        };
        faults += 1;
        // The race, made to happen: the page is removed while its fault is being served, and the
        // copy of the bytes built before the removal is attempted while the REMOVE is pending.
        if ctx.sabotage != Some(Sabotage::NoRace) {
            go_tx.send(addr).map_err(|_| Fail::error("the racer thread is gone"))?;
            // Pending means queued and unread: the uffd, whose fault was read, is readable again
            // only with the REMOVE (the event itself, not the racer's state: a racer blocked on
            // mmap_lock on the way to it also sleeps in D, and a kernel without kallsyms shows no
            // wchan to tell them apart).
            if !uffd.readable(ctx.timeout)? || !threads::wait_until_in_uffd_wait(racer.tid(), ctx.timeout) {
                return Err(Fail::error("the racer's MADV_DONTNEED never blocked on its REMOVE event"));
            }
        }
        let stale = ctx.sabotage == Some(Sabotage::StalePage);
        let copied = pump.copy(
            addr,
            ctx.timeout,
            // The EAGAIN protocol: the bytes are built from the current version at each try (the
            // self-test builds them from the version the fault was read at).
            || memory::versioned_page(if stale { fault_version } else { version.get() }, page),
            bump,
        )?;
        eagains += copied.eagains;
        let forced = ctx.sabotage != Some(Sabotage::NoRace);
        if forced && copied.eagains > 0 {
            raced += 1;
        } else if forced {
            stale_installed += 1;
        }
        // The loader finishes (if the removal zapped the page under it, it faults again, served
        // with the current version).
        let loaded = loop {
            match pump.next(Duration::ZERO)? {
                Some(Event::Pagefault { .. }) => {
                    faults += 1;
                    pump.copy(addr, ctx.timeout, || memory::versioned_page(version.get(), page), bump)?;
                    continue;
                }
                Some(e @ Event::Remove { .. }) => {
                    bump(e);
                    continue;
                }
                Some(e) => return Ok(uffd::unexpected(&e, &region)),
                None => {}
            }
            match uffd.next_or_done(&loader, ctx.timeout)? {
                Next::Done(v) => break v,
                Next::Event(Event::Pagefault { .. }) => {
                    faults += 1;
                    pump.copy(addr, ctx.timeout, || memory::versioned_page(version.get(), page), bump)?;
                }
                Next::Event(e @ Event::Remove { .. }) => bump(e),
                Next::Event(e) => return Ok(uffd::unexpected(&e, &region)),
                Next::Timeout => {
                    return Ok(Observation::new(format!("round {round}: the load did not finish")))
                }
            }
        };
        // Stale: older than the removal that was queued before the copy went through.
        if loaded < version.get() {
            stale_seen += 1;
        }
        if forced {
            match done_rx.recv_timeout(ctx.timeout) {
                Ok(Ok(())) => removals += 1,
                Ok(Err(e)) => return Err(Fail::error(format!("MADV_DONTNEED: {}", errno_name(e)))),
                Err(_) => return Err(Fail::error("the racer's MADV_DONTNEED did not return")),
            }
        }
    }
    drop(go_tx);
    // The race must have happened as often as made to: every round's copy met EAGAIN.
    let details = |o: Observation| {
        o.with("rounds", rounds)
            .with("faults_served", faults)
            .with("removals", removals)
            .with("raced_copies", raced)
            .with("eagain", eagains)
    };
    if stale_installed > 0 {
        return Ok(details(Observation::new(format!(
            "stale page installed ({stale_installed} copies went through while a REMOVE was pending)"
        ))));
    }
    if raced < rounds || removals < rounds {
        return Err(Fail::error(format!(
            "the race fell short of its rounds: {raced} of {rounds} copies raced against a pending REMOVE, {removals} of {rounds} removals"
        )));
    }
    Ok(details(Observation::new(if stale_seen == 0 {
        "no stale page".to_string()
    } else {
        format!("stale page seen ({stale_seen} loads)")
    })))
}
