//! The hugetlb variants of the `populate`, `remove` and `remote` families: the same scenarios on
//! memory backed by huge pages of the default size (anonymous MAP_HUGETLB, or a MAP_SHARED memfd
//! made with MFD_HUGETLB), as VMMs and snapshot-restore page servers run them, and (`SIZED`) some
//! of them again on the other sizes an architecture offers.
//!
//! Each probe declares the huge pages it faults in (`huge_pages`): guests reserve them on their
//! kernel command line; a host run has them only with `--reserve-hugepages N`, else the cells are
//! `skipped` (a gap of the machine, not of the kernel).

use super::remove::{first_event, result_name};
use crate::kit::behaviour::{sized, Behaviour};
use crate::kit::memory::{madvise, Region};
use crate::kit::outcome::{Context, Ctx, Observation, ProbeResult};
use crate::kit::rows;
use crate::kit::uapi::{FEATURE_EVENT_REMOVE, FEATURE_MISSING_HUGETLBFS};
use crate::kit::uffd;
use crate::kit::uffd::{describe_event, registered, Event, Next, RegisterMode};
use crate::kit::variant::{Access, HugeSize::Cont32M, HugeSize::Cont64K, Variant};
use crate::kit::{memory, worker};

const HUGETLB_CITATION: &str = "UFFDIO_API(2const): UFFD_FEATURE_MISSING_HUGETLBFS (since Linux 4.11); \
     mm/hugetlb.c hugetlb_no_page -> hugetlb_handle_userfault (v6.1, v6.12)";

const DONTNEED_CITATION: &str = "mm/madvise.c madvise_dontneed_free (v5.10): can_madv_lru_vma refuses \
     VM_HUGETLB with -EINVAL before userfaultfd_remove; madvise_dontneed_free_valid_vma (v6.1, v6.12, \
     v7.2): hugetlb allowed for MADV_DONTNEED, start must be huge-page aligned, end rounded down, \
     start == end returns 0 before userfaultfd_remove; commit 90e7e7f5ef3f \"mm: enable MADV_DONTNEED \
     for hugetlb mappings\" (v5.18)";

pub const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        id: "populate.hugetlb_write",
        summary: "MADV_POPULATE_WRITE on a missing huge page of a MISSING-registered hugetlb mapping raises a uffd write fault",
        observes: "As populate.hugetlb_missing, with MADV_POPULATE_WRITE: `fault write` when the message carries \
                   UFFD_PAGEFAULT_FLAG_WRITE and madvise returns 0 once the huge page is served.",
        expect: &[rows::BEFORE_5_14, (">=5.14", "fault write")],
        citation: "madvise(2), man-pages 6.20: MADV_POPULATE_WRITE (since Linux 5.14); UFFDIO_API(2const): \
                   UFFD_FEATURE_MISSING_HUGETLBFS; mm/hugetlb.c hugetlb_no_page (v6.1)",
        huge_pages: 1,
        probe: super::populate::missing,
        variant: Variant::HUGETLB.through(Access::Write),
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "populate.hugetlb_shared_missing",
        summary: "MADV_POPULATE_READ on a hole of a MISSING-registered hugetlbfs memfd (MAP_SHARED) raises a uffd read fault",
        observes: "As populate.read_missing, on a MAP_SHARED mapping of a memfd made with MFD_HUGETLB whose one \
                   huge page is a hole: `fault read` once served with a huge-page-sized UFFDIO_COPY.",
        expect: &[rows::BEFORE_5_14, (">=5.14", "fault read")],
        citation: HUGETLB_CITATION,
        notes: "Shared hugetlb is how QEMU and Firecracker-style VMMs back guest memory that another process \
                (vhost-user, a snapshot server) maps too.",
        huge_pages: 1,
        probe: super::populate::missing,
        variant: Variant::HUGETLB_SHARED,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.hugetlb_dontneed",
        summary: "MADV_DONTNEED on a registered hugetlb range raises UFFD_EVENT_REMOVE for exactly that range (5.18+); before, it fails with EINVAL",
        observes: "As remove.dontneed, on four served huge pages of an anonymous MAP_HUGETLB mapping: `REMOVE \
                   pages [1,3)` (in huge pages), or `ERRNO, no event` when madvise fails without one.",
        expect: &[(">=4.11, <5.18", "EINVAL, no event"), (">=5.18", "REMOVE pages [1,3)"), rows::BEFORE_4_11],
        citation: DONTNEED_CITATION,
        notes: "Before 5.18 a balloon or a page server cannot drop huge pages of a private mapping with \
                MADV_DONTNEED at all.",
        huge_pages: 4,
        probe: dontneed,
        variant: Variant::HUGETLB,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.hugetlb_partial_dontneed",
        summary: "MADV_DONTNEED of less than a huge page removes nothing and raises no event; from a start inside the huge page it fails with EINVAL",
        observes: "One served huge page. `aligned 4 KiB: R, E, C`: MADV_DONTNEED of its first 4 KiB, where R \
                   is madvise's result (0 or an errno), E the event (`no event`, or the REMOVE's range) and C \
                   whether the huge page is still there (`page kept`: a load returns the served byte without \
                   a fault; `page gone`: it faults). `; unaligned: R`: MADV_DONTNEED of the 4 KiB at +4 KiB.",
        expect: &[
            rows::BEFORE_4_11,
            (">=4.11, <5.18", "aligned 4 KiB: EINVAL, no event, page kept; unaligned: EINVAL"),
            (
                ">=5.18, <6.1",
                "undetermined: 5.18 rounded the end up (90e7e7f5ef3f); whether 5.18.y to 6.0.y took the fix 8ebe0a5eaaeb is not verified",
            ),
            (">=6.1", "aligned 4 KiB: 0, no event, page kept; unaligned: EINVAL"),
        ],
        documented: &[(
            ">=5.18",
            "aligned 4 KiB: 0, REMOVE pages [0,1), page gone; unaligned: EINVAL",
            "madvise(2), man-pages 6.20, MADV_DONTNEED: \"Addresses within a mapping backed by Huge TLB pages must be aligned to the underlying Huge TLB page size, and the range size is rounded up to a multiple of the underlying Huge TLB page size.\"",
        )],
        citation: "mm/madvise.c madvise_dontneed_free_valid_vma (v6.1, v6.12, v7.2): `*end = ALIGN_DOWN(*end, \
                   huge_page_size(...))` and `if (start == end) return 0;` before userfaultfd_remove, from \
                   commit 8ebe0a5eaaeb \"mm,madvise,hugetlb: fix unexpected data loss with MADV_DONTNEED on \
                   hugetlbfs\" (v6.1); 90e7e7f5ef3f (v5.18) had rounded the end up; v5.10: EINVAL \
                   (can_madv_lru_vma)",
        notes: "madvise rounds the end down to a huge page (\"avoid unexpected data loss\"): a server \
                that drops 4 KiB ranges of hugetlb memory is told 0 and nothing was dropped.",
        huge_pages: 1,
        slow: 1,
        probe: partial_dontneed,
        variant: Variant::HUGETLB,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.hugetlb_madv_remove",
        summary: "MADV_REMOVE on a registered hugetlbfs memfd raises UFFD_EVENT_REMOVE for that range, and the removed huge pages fault again as MISSING",
        observes: "Four huge pages of a MFD_HUGETLB memfd, written through a second (unregistered) mapping, \
                   registered MISSING with EVENT_REMOVE: a worker calls MADV_REMOVE on pages [1,3): the \
                   first message (`REMOVE pages [1,3)`), then `, then fault read` when a load of page 1 \
                   faults again (a hole now), `, then content back` when it does not.",
        expect: &[rows::BEFORE_4_11, (">=4.11", "REMOVE pages [1,3), then fault read")],
        citation: "ioctl_userfaultfd(2): UFFD_FEATURE_EVENT_REMOVE \"MADV_DONTNEED or MADV_REMOVE\"; \
                   mm/madvise.c madvise_remove -> userfaultfd_remove, vfs_fallocate(PUNCH_HOLE) (v5.10, \
                   v7.2); fs/hugetlbfs/inode.c hugetlbfs_punch_hole",
        huge_pages: 4,
        probe: madv_remove,
        variant: Variant::HUGETLB_SHARED,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.hugetlb_partial_remove",
        summary: "MADV_REMOVE of the first 4 KiB of a hugetlbfs page raises REMOVE for those 4 KiB, keeps the huge page and zeroes them (6.1+) without a fault",
        observes: "One huge page of a MFD_HUGETLB memfd filled with 0x5A through a second mapping, registered \
                   MISSING with EVENT_REMOVE and mapped; a worker calls MADV_REMOVE on its first 4 KiB: the \
                   event (`REMOVE bytes [+0x0,+0x1000)`, or `no event`), then what loads through the registered \
                   mapping see: `first 4 KiB zeroed, rest kept` or `page kept` (both without a fault), or \
                   `fault` when the huge page is gone.",
        expect: &[
            rows::BEFORE_4_11,
            (">=4.11, <5.15", "REMOVE bytes [+0x0,+0x1000); page kept"),
            (">=5.15, <5.16", "undetermined: whether 68d32527d340 (v5.19) reached 5.15.y is not verified"),
            (">=5.16, <5.19", "REMOVE bytes [+0x0,+0x1000); page kept"),
            (">=5.19", "REMOVE bytes [+0x0,+0x1000); first 4 KiB zeroed, rest kept"),
        ],
        citation: "mm/madvise.c madvise_remove (v5.10, v7.2): userfaultfd_remove(vma, start, end) with the \
                   range as given, then vfs_fallocate(PUNCH_HOLE); fs/hugetlbfs/inode.c hugetlbfs_punch_hole: \
                   5.10.262 rounds the hole to whole huge pages and does nothing else, 6.1.192 and later zero \
                   the partial page (hugetlbfs_zero_partial_page), since commit 68d32527d340 \
                   \"hugetlbfs: zero partial pages during fallocate hole punch\" (v5.19)",
        notes: "The REMOVE names a range the kernel did not remove: a page server that marks those bytes \
                as \"to be served again\" waits for a fault that never comes, while the bytes changed under \
                it (zeroed) since 5.19.",
        huge_pages: 1,
        probe: partial_remove,
        variant: Variant::HUGETLB_SHARED,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.hugetlb_copy_eagain",
        summary: "UFFDIO_COPY of a huge page fails with EAGAIN while a REMOVE event is pending",
        observes: "As remove.copy_eagain, on anonymous hugetlb: a worker's MADV_DONTNEED of one served huge page \
                   waits with its REMOVE unread, and a huge-page UFFDIO_COPY into another, missing huge page: \
                   `EAGAIN`, `copied`, or another errno name.",
        expect: &[rows::BEFORE_5_18, (">=5.18", "EAGAIN")],
        citation: "fs/userfaultfd.c userfaultfd_copy (v6.1, v6.12): -EAGAIN while ctx->mmap_changing, before the \
                   hugetlb path (mfill_atomic_hugetlb) is reached",
        huge_pages: 2,
        probe: super::remove::copy_eagain,
        variant: Variant::HUGETLB,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.hugetlb_copy_field",
        summary: "What uffdio_copy.copy holds after a huge-page UFFDIO_COPY failed with EAGAIN for a pending event",
        observes: "As remove.copy_field, for the copy of remove.hugetlb_copy_eagain: `untouched`, `-EAGAIN`, or \
                   the number the field holds.",
        expect: &[
            rows::BEFORE_5_18,
            (">=5.18, <6.6", "untouched"),
            (">=6.6, <6.7", "undetermined: the v6.15 fix failed to apply to 6.6.y (12 May 2025); a later backport is not verified"),
            (">=6.7, <6.12.29", "untouched"),
            (">=6.12.29, <6.13", "-EAGAIN"),
            (">=6.13, <6.14.7", "untouched"),
            (">=6.14.7", "-EAGAIN"),
        ],
        citation: "As remove.copy_field: commit 95567729173e (v6.15; 6.14.7, 6.12.29) writes -EAGAIN into `copy` \
                   in userfaultfd_copy before any hugetlb-specific code; 6.1.192 returns before writing it",
        huge_pages: 2,
        probe: super::remove::copy_field,
        variant: Variant::HUGETLB,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.hugetlb_copy_eexist",
        summary: "UFFDIO_COPY onto a huge page that is already present fails with EEXIST and sets copy to -EEXIST",
        observes: "As remove.copy_eexist, on a served anonymous huge page: `EEXIST, copy -EEXIST`.",
        expect: &[rows::BEFORE_4_11_HUGETLBFS, (">=4.11", "EEXIST, copy -EEXIST")],
        citation: "mm/hugetlb.c hugetlb_mcopy_atomic_pte (v5.10, v6.1) / hugetlb_mfill_atomic_pte (v6.12): -EEXIST \
                   when the huge pte is not none; fs/userfaultfd.c userfaultfd_copy writes it into `copy`",
        huge_pages: 1,
        probe: super::remove::copy_eexist,
        variant: Variant::HUGETLB,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.hugetlb_refault",
        summary: "After MADV_DONTNEED removed a served huge page, the next access faults again as MISSING",
        observes: "As remove.refault, on anonymous hugetlb: `fault read, then served bytes`.",
        expect: &[rows::BEFORE_5_18, (">=5.18", "fault read, then served bytes")],
        citation: DONTNEED_CITATION,
        huge_pages: 1,
        probe: super::remove::refault,
        variant: Variant::HUGETLB,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.hugetlb_multi_page",
        summary: "MADV_DONTNEED over four huge pages of which two were never faulted raises one REMOVE for the whole range, and every page then faults",
        observes: "Four huge pages, 0 and 3 served, 1 and 2 never touched; a worker's MADV_DONTNEED of all four: \
                   the event (`REMOVE pages [0,4)`), then `; faults on pages I J ...`: the pages whose load \
                   then raised a MISSING fault (each served as it arrives).",
        expect: &[rows::BEFORE_5_18, (">=5.18", "REMOVE pages [0,4); faults on pages 0 1 2 3")],
        citation: "mm/madvise.c madvise_dontneed_free (v6.1, v6.12): one userfaultfd_remove for the whole range, \
                   whatever is mapped in it",
        notes: "A server that keeps per-page state learns of the whole range at once: pages it never served \
                are in it too.",
        huge_pages: 4,
        probe: multi_page,
        variant: Variant::HUGETLB,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remove.hugetlb_stale_copy_race",
        summary: "A server following the EAGAIN protocol never installs a stale huge page while MADV_DONTNEED races its copies",
        observes: "As remove.stale_copy_race, with 4 forced rounds on four anonymous huge pages: `no stale \
                   page`, `stale page installed (N copies ...)` or `stale page seen (N loads)`. Below 4 raced \
                   copies or 4 removals the run is an `error`.",
        expect: &[rows::BEFORE_5_18, (">=5.18", "no stale page")],
        citation: "fs/userfaultfd.c userfaultfd_remove and userfaultfd_copy (6.1.192, 6.12.118): mmap_changing \
                   covers hugetlb copies as it does base pages",
        notes: "Self-tests: as remove.stale_copy_race (serve-stale, no-race).",
        huge_pages: 4,
        slow: 2,
        probe: super::remove::stale_copy_race,
        variant: Variant::HUGETLB,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remote.hugetlb_proc_mem_read",
        summary: "Reading a missing huge page through /proc/self/mem fails with EIO and never reaches the uffd",
        observes: "As remote.proc_mem_read, on a missing anonymous huge page: `EIO, no message`.",
        expect: &[rows::BEFORE_4_11_HUGETLBFS, (">=4.11", "EIO, no message")],
        citation: "fs/proc/base.c mem_rw; mm/memory.c __access_remote_vm; mm/hugetlb.c hugetlb_handle_userfault \
                   (v6.1): a fault that may not retry gets VM_FAULT_SIGBUS from handle_userfault",
        huge_pages: 1,
        slow: 1,
        probe: super::remote::proc_mem_read,
        variant: Variant::HUGETLB,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remote.hugetlb_process_vm_readv",
        summary: "process_vm_readv(2) of a missing huge page blocks on a uffd fault until the page is served",
        observes: "As remote.process_vm_readv, on a missing anonymous huge page.",
        expect: &[rows::BEFORE_4_11_HUGETLBFS, (">=4.11", "fault read (waits in D), then 8 bytes")],
        citation: "mm/process_vm_access.c process_vm_rw_single_vec (v6.1): pin_user_pages_remote with `locked`; \
                   mm/hugetlb.c hugetlb_handle_userfault",
        huge_pages: 1,
        probe: super::remote::process_vm_readv,
        variant: Variant::HUGETLB,
        ..Behaviour::DEFAULT
    },
];

/// The hugetlb behaviours on huge page sizes beside the default, one line each (`sized`:
/// the id, the base and the size; the rest follows from the base and the size). Both sizes are
/// arm64's contiguous entries with 4 KiB pages: 64 KiB (16 contiguous PTEs) and 32 MiB (16
/// contiguous PMDs), where the contiguous-entry code of arch/arm64/mm/hugetlbpage.c is what a page
/// server's work goes through: a fault filled by UFFDIO_COPY (`set_huge_pte_at` writing 16
/// entries: populate, also for a write), a copy onto a present page (`huge_ptep_get` of the 16
/// entries: copy_eexist), MADV_DONTNEED and MADV_REMOVE zapping them (`huge_ptep_get_and_clear`:
/// remove, refault, a range with pages never faulted), a copy refused while a REMOVE is pending
/// (copy_eagain) and remote reads through GUP (`huge_pte_offset` of a contiguous entry:
/// proc_mem_read, which may not retry, and process_vm_readv, which waits for the fault). The same
/// bases on both sizes. Left out for now: remove.hugetlb_partial_dontneed (its documented claims
/// would be graded on kernels without the size: `sized` refuses it) and its sibling
/// hugetlb_partial_remove, the stale-copy race (a stress: its rounds, not the page size, are what
/// it tests) and serve.hugetlb_fault_address (its observations name 2 MiB offsets). Kernels
/// without the size are `unsupported` by the size's rows. 1 GiB pages (x86-64's and arm64's PUD
/// size) are not probed: docs/behaviours.md says why.
pub const SIZED: &[Behaviour] = &[
    sized(super::populate::BEHAVIOURS, "populate.hugetlb_missing", Cont64K, "populate.hugetlb_missing_64k"),
    sized(BEHAVIOURS, "populate.hugetlb_shared_missing", Cont64K, "populate.hugetlb_shared_missing_64k"),
    sized(BEHAVIOURS, "populate.hugetlb_write", Cont64K, "populate.hugetlb_write_64k"),
    sized(BEHAVIOURS, "remove.hugetlb_dontneed", Cont64K, "remove.hugetlb_dontneed_64k"),
    sized(BEHAVIOURS, "remove.hugetlb_refault", Cont64K, "remove.hugetlb_refault_64k"),
    sized(BEHAVIOURS, "remove.hugetlb_copy_eagain", Cont64K, "remove.hugetlb_copy_eagain_64k"),
    sized(BEHAVIOURS, "remove.hugetlb_copy_eexist", Cont64K, "remove.hugetlb_copy_eexist_64k"),
    sized(BEHAVIOURS, "remove.hugetlb_multi_page", Cont64K, "remove.hugetlb_multi_page_64k"),
    sized(BEHAVIOURS, "remove.hugetlb_madv_remove", Cont64K, "remove.hugetlb_madv_remove_64k"),
    sized(BEHAVIOURS, "remote.hugetlb_proc_mem_read", Cont64K, "remote.hugetlb_proc_mem_read_64k"),
    sized(BEHAVIOURS, "remote.hugetlb_process_vm_readv", Cont64K, "remote.hugetlb_process_vm_readv_64k"),
    sized(super::populate::BEHAVIOURS, "populate.hugetlb_missing", Cont32M, "populate.hugetlb_missing_32m"),
    sized(BEHAVIOURS, "populate.hugetlb_shared_missing", Cont32M, "populate.hugetlb_shared_missing_32m"),
    sized(BEHAVIOURS, "populate.hugetlb_write", Cont32M, "populate.hugetlb_write_32m"),
    sized(BEHAVIOURS, "remove.hugetlb_dontneed", Cont32M, "remove.hugetlb_dontneed_32m"),
    sized(BEHAVIOURS, "remove.hugetlb_refault", Cont32M, "remove.hugetlb_refault_32m"),
    sized(BEHAVIOURS, "remove.hugetlb_copy_eagain", Cont32M, "remove.hugetlb_copy_eagain_32m"),
    sized(BEHAVIOURS, "remove.hugetlb_copy_eexist", Cont32M, "remove.hugetlb_copy_eexist_32m"),
    sized(BEHAVIOURS, "remove.hugetlb_multi_page", Cont32M, "remove.hugetlb_multi_page_32m"),
    sized(BEHAVIOURS, "remove.hugetlb_madv_remove", Cont32M, "remove.hugetlb_madv_remove_32m"),
    sized(BEHAVIOURS, "remote.hugetlb_proc_mem_read", Cont32M, "remote.hugetlb_proc_mem_read_32m"),
    sized(BEHAVIOURS, "remote.hugetlb_process_vm_readv", Cont32M, "remote.hugetlb_process_vm_readv_32m"),
];

/// Four huge pages of the variant registered MISSING with EVENT_REMOVE, pages 1 and 2 served (the
/// ones the probes remove: a huge page costs tens of milliseconds to copy under TCG).
fn four_served(v: Variant) -> Result<(uffd::Uffd, Region), crate::kit::outcome::Fail> {
    let region = v.region(4)?;
    let (uffd, region) =
        registered(FEATURE_EVENT_REMOVE | FEATURE_MISSING_HUGETLBFS, region, RegisterMode::MISSING)?;
    for i in 1..3 {
        uffd.serve(region.page(i), region.page_size(), 0x10 + i as u8)?;
    }
    Ok((uffd, region))
}

fn dontneed(ctx: &Ctx, v: Variant) -> ProbeResult {
    let (uffd, region) = four_served(v)?;
    let mut obs = first_event(ctx, &uffd, &region, |a, l| madvise(a, l, libc::MADV_DONTNEED))?;
    if obs.observed == "no event" {
        let result = obs.details.get("result").map_or("-".to_string(), |r| r.to_string());
        obs.observed = format!("{}, no event", result.trim_matches('"'));
    }
    Ok(obs)
}

fn partial_dontneed(ctx: &Ctx, v: Variant) -> ProbeResult {
    let region = v.region(1)?;
    let (uffd, region) =
        registered(FEATURE_EVENT_REMOVE | FEATURE_MISSING_HUGETLBFS, region, RegisterMode::MISSING)?;
    uffd.serve(region.base(), region.page_size(), 0x3C)?;
    let small = memory::page_size();
    // Aligned start, one base page.
    let addr = region.base();
    let remover = worker::spawn("dontneed", move || madvise(addr, small, libc::MADV_DONTNEED));
    let aligned = match uffd.next_or_done(&remover, ctx.timeout)? {
        Next::Event(e) => {
            let result = result_name(remover.wait(ctx.timeout));
            format!("{result}, {}", describe_event(&e, &region))
        }
        Next::Done(r) => {
            let quiet = uffd.watch_quiet(ctx, Some(&region), "no event".into(), "then")?;
            format!("{}, {}", result_name(Some(r)), quiet.observed)
        }
        Next::Timeout => return Ok(Observation::new("madvise blocked without an event")),
    };
    let kept = page_state(ctx, &uffd, &region, 0x3C)?;
    // Start inside the huge page.
    let unaligned = result_name(Some(madvise(region.base() + small, small, libc::MADV_DONTNEED)));
    Ok(Observation::new(format!("aligned 4 KiB: {aligned}, {kept}; unaligned: {unaligned}"))
        .with("window_ms", ctx.window.as_millis() as u64))
}

/// Whether page 0 of `region` still holds `byte`: `page kept` when a load returns it without a
/// fault, `page gone` when it faults (served with zeros), else what the load returned.
fn page_state(
    ctx: &Ctx,
    uffd: &uffd::Uffd,
    region: &Region,
    byte: u8,
) -> Result<String, crate::kit::outcome::Fail> {
    let addr = region.base() + memory::page_size();
    let loader = worker::spawn("load", move || memory::load(addr));
    Ok(match uffd.next_or_done(&loader, ctx.timeout)? {
        Next::Done(v) if v == byte => "page kept".to_string(),
        Next::Done(v) => format!("page holds {v:#04x}"),
        Next::Event(Event::Pagefault { .. }) => {
            uffd.serve(region.base(), region.page_size(), 0)?;
            loader.wait(ctx.timeout);
            "page gone".to_string()
        }
        Next::Event(e) => describe_event(&e, region),
        Next::Timeout => "load blocked without a message".to_string(),
    })
}

/// `n` huge pages of the variant's hugetlbfs memfd, pages `filled` written (`byte + i`) through an
/// unregistered second mapping, the first mapping registered MISSING with EVENT_REMOVE: (uffd,
/// registered mapping, the alias).
fn shared_filled(
    v: Variant,
    n: usize,
    filled: std::ops::Range<usize>,
    byte: u8,
) -> Result<(uffd::Uffd, Region, Region), crate::kit::outcome::Fail> {
    let region = v.region(n)?;
    let alias = region.alias().ctx("mmap (second mapping)")?;
    for i in filled {
        // SAFETY: the alias maps this probe's own memfd; nothing else uses it.
        unsafe { std::ptr::write_bytes(alias.page(i) as *mut u8, byte + i as u8, alias.page_size()) };
    }
    let (uffd, region) =
        registered(FEATURE_EVENT_REMOVE | FEATURE_MISSING_HUGETLBFS, region, RegisterMode::MISSING)?;
    Ok((uffd, region, alias))
}

fn madv_remove(ctx: &Ctx, v: Variant) -> ProbeResult {
    let (uffd, region, _alias) = shared_filled(v, 4, 1..3, 0x40)?;
    for i in 1..3 {
        memory::load(region.page(i)); // in the page cache: mapped without a fault
    }
    let mut obs = first_event(ctx, &uffd, &region, |a, l| madvise(a, l, libc::MADV_REMOVE))?;
    let addr = region.page(1);
    let loader = worker::spawn("load", move || memory::load(addr));
    let after = match uffd.next_or_done(&loader, ctx.timeout)? {
        Next::Event(Event::Pagefault { kind, rw, .. }) => {
            uffd.serve(region.page(1), region.page_size(), 0x55)?;
            loader.wait(ctx.timeout);
            format!("fault {}", uffd::describe_fault(kind, rw))
        }
        Next::Event(e) => describe_event(&e, &region),
        Next::Done(0x41) => "content back".to_string(),
        Next::Done(v) => format!("no fault, read {v:#04x}"),
        Next::Timeout => "load blocked without a message".to_string(),
    };
    obs.observed = format!("{}, then {after}", obs.observed);
    Ok(obs)
}

fn partial_remove(ctx: &Ctx, v: Variant) -> ProbeResult {
    let (uffd, region, _alias) = shared_filled(v, 1, 0..1, 0x5A)?;
    memory::load(region.base());
    let small = memory::page_size();
    let addr = region.base();
    let event =
        uffd.raised_by(ctx.timeout, move || madvise(addr, small, libc::MADV_REMOVE))?.describe(&region);
    // Loads through the registered mapping: the first byte and one past the removed 4 KiB.
    let (first, rest) = (region.base(), region.base() + small);
    let loader = worker::spawn("load", move || (memory::load(first), memory::load(rest)));
    let content = match uffd.next_or_done(&loader, ctx.timeout)? {
        Next::Done((0, 0x5A)) => "first 4 KiB zeroed, rest kept".to_string(),
        Next::Done((0x5A, 0x5A)) => "page kept".to_string(),
        Next::Done((a, b)) => format!("reads {a:#04x} then {b:#04x}"),
        Next::Event(Event::Pagefault { .. }) => {
            uffd.serve(region.base(), region.page_size(), 0x11)?;
            loader.wait(ctx.timeout);
            "fault".to_string()
        }
        Next::Event(e) => describe_event(&e, &region),
        Next::Timeout => "load blocked without a message".to_string(),
    };
    Ok(Observation::new(format!("{event}; {content}")))
}

fn multi_page(ctx: &Ctx, v: Variant) -> ProbeResult {
    let region = v.removable(4)?;
    let (uffd, region) =
        registered(FEATURE_EVENT_REMOVE | FEATURE_MISSING_HUGETLBFS, region, RegisterMode::MISSING)?;
    for i in [0, 3] {
        uffd.serve(region.page(i), region.page_size(), 0x70 + i as u8)?;
    }
    let (addr, len) = (region.base(), region.len());
    let event =
        uffd.raised_by(ctx.timeout, move || madvise(addr, len, libc::MADV_DONTNEED))?.describe(&region);
    let loader =
        worker::spawn("load", move || (0..4).map(|i| memory::load(addr + i * len / 4)).collect::<Vec<u8>>());
    let served = uffd.serve_until_done(&loader, &region, 0x66, ctx.timeout)?;
    let mut obs =
        Observation::new(format!("{event}; faults on pages {}", uffd::fault_pages(&served.events, &region)));
    match served.result {
        Some(v) => obs.detail("loaded", format!("{v:02x?}")),
        None => obs.observed += ", loads still blocked",
    }
    Ok(obs)
}
