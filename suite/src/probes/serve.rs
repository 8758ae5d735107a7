//! `serve`: resolving faults other than with UFFDIO_COPY: UFFDIO_MOVE (6.8) and its errors,
//! UFFDIO_ZEROPAGE on shmem and hugetlb, UFFDIO_POISON (6.6), UFFDIO_CONTINUE for shmem and hugetlb
//! minor faults (also after a REMOVE), and where a fault message points on a huge page.

use crate::kit::behaviour::Behaviour;
use crate::kit::memory::{self, madvise, Region};
use crate::kit::outcome::{errno_name, Context, Ctx, Fail, Observation, ProbeResult};
use crate::kit::require;
use crate::kit::rows;
use crate::kit::uapi::{
    self, FEATURE_EVENT_REMOVE, FEATURE_EXACT_ADDRESS, FEATURE_MINOR_HUGETLBFS, FEATURE_MINOR_SHMEM,
    FEATURE_MISSING_HUGETLBFS, FEATURE_MISSING_SHMEM, FEATURE_MOVE, FEATURE_POISON,
};
use crate::kit::uffd::{self, describe_event, describe_fault, registered, Event, Next, RegisterMode, Uffd};
use crate::kit::variant::Variant;
use crate::kit::{helpers, worker};

const MOVE_CITATION: &str = "UFFDIO_MOVE(2const), man-pages 6.20; mm/userfaultfd.c move_pages, \
     move_pages_pte (v6.12); fs/userfaultfd.c userfaultfd_move (v6.12); commit adef440691ba \
     \"userfaultfd: UFFDIO_MOVE uABI\" (v6.8)";

pub const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        id: "serve.move_missing",
        summary: "UFFDIO_MOVE serves a missing page by moving a page of another mapping into it: the faulting load sees it, the source loses it",
        observes: "A worker's load faults on a MISSING-registered anonymous page; the server moves a filled page \
                   of an unregistered anonymous mapping onto it: `fault read; moved, content arrived, source \
                   emptied` (the load returns the moved bytes; the source page is no longer resident), or the \
                   errno UFFDIO_MOVE failed with.",
        expect: &[rows::BEFORE_6_8, (">=6.8", "fault read; moved, content arrived, source emptied")],
        citation: MOVE_CITATION,
        notes: "Zero-copy serving: the page the server filled becomes the faulting process's page.",
        selftests: &["selftests.unit_move"],
        probe: move_missing,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "serve.move_eexist",
        summary: "UFFDIO_MOVE onto a page that is present fails with EEXIST and sets move to -EEXIST",
        observes: "UFFDIO_MOVE of a filled page onto a served page: `ERRNO, move FIELD` (`untouched` when the \
                   field kept its sentinel).",
        expect: &[rows::BEFORE_6_8, (">=6.8", "EEXIST, move -EEXIST")],
        citation: "mm/userfaultfd.c move_pages_pte (v6.12): -EEXIST when the destination pte is not none; \
                   fs/userfaultfd.c userfaultfd_move writes the result into `move`",
        probe: move_eexist,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "serve.move_ebusy",
        summary: "UFFDIO_MOVE of a page that is also mapped by a forked child fails with EBUSY",
        observes: "The source page is shared copy-on-write with a forked child that is still alive; moving it \
                   onto a missing registered page: `ERRNO, move FIELD`.",
        expect: &[rows::BEFORE_6_8, (">=6.8", "EBUSY, move -EBUSY")],
        citation: "mm/userfaultfd.c move_pages_pte (v6.12): -EBUSY when the source folio is not exclusive to \
                   this process (!PageAnonExclusive) or may be pinned; UFFDIO_MOVE(2const): EBUSY",
        notes: "A server that forks (or runs beside a forked child) cannot move pages the child still shares: \
                it must fall back to UFFDIO_COPY.",
        probe: move_ebusy,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "serve.move_pending_remove",
        summary: "UFFDIO_MOVE fails with EAGAIN, and sets move to -EAGAIN, while a REMOVE event is pending",
        observes: "As remove.copy_eagain, with UFFDIO_MOVE of a filled page into the missing page: `ERRNO, move \
                   FIELD`; details: the same move once the event was read.",
        expect: &[rows::BEFORE_6_8, (">=6.8", "EAGAIN, move -EAGAIN")],
        citation: "fs/userfaultfd.c userfaultfd_move (v6.12): `if (unlikely(atomic_read(&ctx->mmap_changing)))` \
                   puts -EAGAIN into `move` and returns -EAGAIN",
        notes: "Unlike UFFDIO_COPY before 6.12.29, UFFDIO_MOVE always reported -EAGAIN in its field.",
        probe: move_pending_remove,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "serve.poison",
        summary: "UFFDIO_POISON resolves a fault with a poisoned page: the faulting access gets SIGBUS",
        observes: "A helper process loads its own missing registered page; the probe, serving its uffd, resolves \
                   the fault with UFFDIO_POISON: `fault read; poisoned; the load got SIGBUS` when the helper is \
                   killed by SIGBUS, else how it ended.",
        expect: &[rows::BEFORE_6_6, (">=6.6", "fault read; poisoned; the load got SIGBUS")],
        citation: "UFFDIO_POISON(2const), man-pages 6.20; UFFDIO_API(2const): UFFD_FEATURE_POISON (since Linux \
                   6.6); mm/memory.c handle_pte_marker (v6.12): PTE_MARKER_POISONED -> VM_FAULT_HWPOISON",
        notes: "How a migration destination marks pages the source lost to memory errors.",
        selftests: &["selftests.unit_poison_anon"],
        probe: poison,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "serve.zeropage_shmem",
        summary: "UFFDIO_ZEROPAGE resolves a missing-page fault on a shared memfd with a zero-filled page",
        observes: "As remove.zeropage, on a hole of a MAP_SHARED memfd registered MISSING: `fault read, \
                   zero-filled`.",
        expect: &[rows::BEFORE_4_11_SHMEM, (">=4.11", "fault read, zero-filled")],
        citation: "UFFDIO_ZEROPAGE(2const), man-pages 6.20; mm/shmem.c shmem_mfill_atomic_pte (v6.12) and \
                   shmem_mfill_zeropage_pte (v5.10)",
        selftests: &["selftests.unit_zeropage_shmem", "selftests.userfaultfd_shmem_uffdio_zeropage"],
        probe: zeropage_shmem,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "serve.zeropage_hugetlb",
        summary: "UFFDIO_REGISTER on hugetlb does not offer UFFDIO_ZEROPAGE, and the ioctl fails with EINVAL",
        observes: "A missing anonymous huge page registered MISSING, a worker's load blocked on it: `ZEROPAGE \
                   offered` or `not offered` (uffdio_register.ioctls), then UFFDIO_ZEROPAGE's result on the \
                   faulting huge page (the load is then served with UFFDIO_COPY).",
        expect: &[rows::BEFORE_4_11_HUGETLBFS, (">=4.11", "not offered, EINVAL")],
        citation: "fs/userfaultfd.c userfaultfd_register: UFFD_API_RANGE_IOCTLS_BASIC for hugetlb; \
                   mm/userfaultfd.c __mcopy_atomic_hugetlb (v5.10) / mfill_atomic_hugetlb (v6.12): \
                   -EINVAL for ZEROPAGE",
        notes: "A page server for hugetlb memory must copy zero pages in full (2 MiB each).",
        huge_pages: 1,
        selftests: &["selftests.unit_zeropage_hugetlb", "selftests.userfaultfd_hugetlb_uffdio_zeropage"],
        probe: zeropage_hugetlb,
        variant: Variant::HUGETLB,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "serve.continue_after_remove",
        summary: "After MADV_DONTNEED of a MINOR-registered shmem page it minor-faults again; after MADV_REMOVE it reads zero without a message",
        observes: "A memfd page with content in the page cache, registered MINOR with EVENT_REMOVE and mapped \
                   (first minor fault resolved with UFFDIO_CONTINUE). `DONTNEED: E, then F`: MADV_DONTNEED's \
                   event, then what a load does (`fault minor read, content kept` once continued). `; \
                   MADV_REMOVE: E, then F`: the same after MADV_REMOVE punched the page out of the file \
                   (`no message, reads 0x00`: a MINOR-only range has no MISSING fault to raise).",
        expect: &[
            rows::BEFORE_5_14_MINOR,
            (
                ">=5.14",
                "DONTNEED: REMOVE, then fault minor read, content kept; MADV_REMOVE: REMOVE, then no message, reads 0x00",
            ),
        ],
        citation: "UFFDIO_CONTINUE(2const), man-pages 6.20; mm/shmem.c shmem_get_folio_gfp (v6.12): a folio \
                   in the page cache in a userfaultfd_minor() VMA -> handle_userfault(VM_UFFD_MINOR); a hole \
                   raises a fault only in a userfaultfd_missing() VMA",
        notes: "A MINOR-only server (QEMU post-copy, snapshot restore on shmem) is not told when a page \
                comes back as zeros after MADV_REMOVE: only the REMOVE says so.",
        selftests: &["selftests.unit_minor_shmem", "selftests.userfaultfd_shmem_minor"],
        probe: continue_after_remove,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "serve.continue_hugetlb",
        summary: "A hugetlbfs page in the page cache, registered MINOR, raises a minor fault resolved with UFFDIO_CONTINUE",
        observes: "A MFD_HUGETLB memfd page written through a second, unregistered mapping; a load through the \
                   MINOR-registered mapping: `fault minor read`, then `, content from the page cache` when, \
                   after UFFDIO_CONTINUE, it returns the bytes written.",
        expect: &[rows::BEFORE_5_13, (">=5.13", "fault minor read, content from the page cache")],
        citation: "UFFDIO_API(2const): UFFD_FEATURE_MINOR_HUGETLBFS (since Linux 5.13); mm/hugetlb.c \
                   hugetlb_no_page (v6.1): userfaultfd_minor() with the folio in the page cache",
        huge_pages: 1,
        selftests: &["selftests.unit_minor_hugetlb"],
        probe: continue_hugetlb,
        variant: Variant::HUGETLB_SHARED,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "serve.hugetlb_fault_address",
        summary: "A fault message on a huge page names the huge page's start, or the exact address with UFFD_FEATURE_EXACT_ADDRESS",
        observes: "A worker loads at +0x100123 inside a missing anonymous huge page: `huge page start` when the \
                   message's address is the huge page's first byte, `4 KiB page start` (+0x100000), `exact`, \
                   or the offset; then `; with EXACT_ADDRESS: ...` the same with the feature (`not offered` \
                   when the kernel lacks it).",
        expect: &[
            rows::BEFORE_4_11_HUGETLBFS,
            (">=4.11, <5.18", "huge page start; with EXACT_ADDRESS: not offered"),
            (
                ">=5.18, <5.19",
                "undetermined: 5.18 reported hugetlb faults at their 4 KiB page (824ddc601adc); which 5.18.y took the fix d172b1a3bd06 is not verified",
            ),
            (">=5.19", "huge page start; with EXACT_ADDRESS: exact"),
        ],
        citation: "mm/hugetlb.c hugetlb_no_page (v5.10: vmf.address = haddr; v6.12 and v7.2: `.address = address \
                   & huge_page_mask(h), .real_address = address`); fs/userfaultfd.c userfault_msg (v6.1): the \
                   real address only with UFFD_FEATURE_EXACT_ADDRESS; commit 824ddc601adc (v5.18), and d172b1a3bd06 \
                   (v5.19) which put the huge page's start back for hugetlb",
        notes: "A server that rounds the address down to 4 KiB to find \"the page\" is fine on base pages and \
                off by up to 2 MiB on huge ones: round by the mapping's page size.",
        huge_pages: 2,
        probe: hugetlb_fault_address,
        variant: Variant::HUGETLB,
        ..Behaviour::DEFAULT
    },
];

/// An unregistered anonymous page filled with `byte`: a source for UFFDIO_MOVE.
fn source_page(byte: u8) -> Result<Region, Fail> {
    let src = Region::anonymous(1).ctx("mmap (source)")?;
    // SAFETY: a page of this probe's own, fresh mapping.
    unsafe { std::ptr::write_bytes(src.base() as *mut u8, byte, src.len()) };
    Ok(src)
}

/// `ERRNO, move FIELD` for a UFFDIO_MOVE that failed (`moved` when it did not).
fn move_result((result, field): (Result<(), nix::errno::Errno>, i64)) -> String {
    format!(
        "{}, move {}",
        result.map_or_else(errno_name, |()| "moved".to_string()),
        super::remove::copy_field_name(field)
    )
}

fn move_missing(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = registered(FEATURE_MOVE, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    let src = source_page(0x7A)?;
    let addr = region.base();
    let loader = worker::spawn("load", move || memory::load(addr));
    let fault = uffd::describe_kind(&uffd.await_fault(&loader, &region, ctx.timeout)?);
    let (result, moved) = uffd.move_raw(addr, src.base(), region.page_size(), 0);
    if let Err(e) = result {
        uffd.serve(addr, region.page_size(), 0)?;
        return Ok(Observation::new(format!("{fault}; {}", errno_name(e))).with("move", moved));
    }
    let content = match loader.wait(ctx.timeout) {
        Some(0x7A) => "content arrived",
        Some(_) => "wrong content",
        None => "load still blocked",
    };
    let source = if memory::resident(src.base(), src.len()).ctx("mincore")? {
        "source kept"
    } else {
        "source emptied"
    };
    Ok(Observation::new(format!("{fault}; moved, {content}, {source}")).with("move", moved))
}

fn move_eexist(_: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = registered(FEATURE_MOVE, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    uffd.serve(region.base(), region.page_size(), 0x21)?;
    let src = source_page(0x22)?;
    Ok(Observation::new(move_result(uffd.move_raw(region.base(), src.base(), region.page_size(), 0))))
}

fn move_ebusy(ctx: &Ctx, _: Variant) -> ProbeResult {
    require::features(FEATURE_MOVE)?;
    let src = source_page(0x23)?;
    // A child that shares the source page copy-on-write, and lives until killed.
    let child = helpers::fork_with(|sock| {
        helpers::send_line(sock, "ready");
        loop {
            std::thread::park();
        }
    })?;
    let run = || -> ProbeResult {
        child.line("its readiness", ctx.timeout)?;
        let (uffd, region) =
            registered(FEATURE_MOVE, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
        Ok(Observation::new(move_result(uffd.move_raw(region.base(), src.base(), region.page_size(), 0))))
    };
    let result = run();
    child.kill();
    let _ = child.wait(ctx.timeout);
    result
}

fn move_pending_remove(ctx: &Ctx, _: Variant) -> ProbeResult {
    require::features(FEATURE_MOVE)?;
    let (uffd, region, remover) = super::remove::pending_remove(ctx, Region::anonymous(4).ctx("mmap")?)?;
    let src = source_page(0x24)?;
    let last = region.page(3);
    let first = uffd.move_raw(last, src.base(), region.page_size(), 0);
    let _ = uffd.next(ctx.timeout)?;
    let _ = remover.wait(ctx.timeout);
    let again = uffd.move_raw(last, src.base(), region.page_size(), 0);
    Ok(Observation::new(move_result(first)).with("after_the_read", move_result(again)))
}

fn poison(ctx: &Ctx, _: Variant) -> ProbeResult {
    require::features(FEATURE_POISON)?;
    // The helper registers its own page, hands over its uffd and the page's address, and loads it.
    let helper = helpers::fork_with(|sock| {
        let region = Region::anonymous(1).map_err(|e| format!("mmap: {e}"))?;
        let (uffd, region) =
            registered(FEATURE_POISON, region, RegisterMode::MISSING).map_err(|f| f.to_string())?;
        helpers::send_fd(sock, uffd.raw_fd()).map_err(|e| format!("sending its uffd: {e}"))?;
        helpers::send_line(sock, &region.base().to_string());
        let byte = memory::load(region.base());
        helpers::send_line(sock, &format!("loaded {byte:#04x}"));
        Ok(())
    })?;
    let run = || -> ProbeResult {
        let uffd = Uffd::from_fd(helper.fd("its uffd", ctx.timeout)?);
        let line = helper.line("its page's address", ctx.timeout)?;
        let addr: usize =
            line.parse().map_err(|_| Fail::error(format!("the helper sent {line:?} as its address")))?;
        let fault = match uffd.next(ctx.timeout)? {
            Some(Event::Pagefault { kind, rw, .. }) => format!("fault {}", describe_fault(kind, rw)),
            Some(e) => return Ok(Observation::new(format!("unexpected event: {}", uffd::describe_kind(&e)))),
            None => return Ok(Observation::new("no fault message from the helper")),
        };
        let (result, updated) = uffd.poison_raw(addr, memory::page_size());
        if let Err(e) = result {
            return Ok(Observation::new(format!("{fault}; UFFDIO_POISON {}", errno_name(e))));
        }
        use nix::sys::wait::WaitStatus;
        let ended = match helper.wait(ctx.timeout).ctx("waitpid")? {
            Some(WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGBUS, _)) => {
                "the load got SIGBUS".to_string()
            }
            Some(WaitStatus::Signaled(_, sig, _)) => format!("the helper died of {sig:?}"),
            Some(WaitStatus::Exited(..)) => "the load returned".to_string(),
            Some(other) => format!("the helper ended: {other:?}"),
            None => "the load still blocked".to_string(),
        };
        Ok(Observation::new(format!("{fault}; poisoned; {ended}")).with("updated", updated))
    };
    let result = run();
    helper.kill();
    let _ = helper.wait(ctx.timeout);
    result
}

fn zeropage_shmem(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) =
        registered(FEATURE_MISSING_SHMEM, Region::memfd(1).ctx("memfd")?, RegisterMode::MISSING)?;
    let addr = region.base();
    let loader = worker::spawn("load", move || memory::load(addr));
    let fault = uffd::describe_kind(&uffd.await_fault(&loader, &region, ctx.timeout)?);
    if let Err(e) = uffd.zeropage(addr, region.page_size()) {
        uffd.serve(addr, region.page_size(), 0)?;
        return Ok(Observation::new(format!(
            "{fault}, UFFDIO_ZEROPAGE {}",
            crate::kit::outcome::error_name(&e)
        )));
    }
    Ok(Observation::new(match loader.wait(ctx.timeout) {
        Some(0) => format!("{fault}, zero-filled"),
        Some(v) => format!("{fault}, read {v:#04x}"),
        None => format!("{fault}, still blocked"),
    }))
}

fn zeropage_hugetlb(ctx: &Ctx, v: Variant) -> ProbeResult {
    let huge = v.huge_pages(1)?;
    let uffd = Uffd::open(FEATURE_MISSING_HUGETLBFS)?;
    let region = huge.anonymous(1)?;
    let ioctls = uffd.register(region.base(), region.len(), RegisterMode::MISSING)?;
    let offered =
        if ioctls & (1 << userfaultfd_sys::_UFFDIO_ZEROPAGE) != 0 { "offered" } else { "not offered" };
    let addr = region.base();
    let loader = worker::spawn("load", move || memory::load(addr));
    uffd.await_fault(&loader, &region, ctx.timeout)?;
    let zero = match uffd.zeropage(addr, region.page_size()) {
        Ok(_) => "zeroed".to_string(),
        Err(e) => crate::kit::outcome::error_name(&e),
    };
    if zero != "zeroed" {
        uffd.serve(addr, region.page_size(), 0)?;
    }
    loader.wait(ctx.timeout);
    Ok(Observation::new(format!("{offered}, {zero}")).with("ioctls", uapi::ioctl_names(ioctls)))
}

/// A load of page 0 of `region` from a worker, resolving a minor fault with UFFDIO_CONTINUE:
/// `fault minor read, content kept` when it returns `byte` after the continue, `no message, reads
/// 0xNN` when it returns without a fault.
fn load_continuing(ctx: &Ctx, uffd: &Uffd, region: &Region, byte: u8) -> Result<String, Fail> {
    let addr = region.base();
    let loader = worker::spawn("load", move || memory::load(addr));
    Ok(match uffd.next_or_done(&loader, ctx.timeout)? {
        Next::Event(Event::Pagefault { kind, rw, .. }) => {
            let fault = format!("fault {}", describe_fault(kind, rw));
            match kind {
                uffd::FaultKind::Minor => uffd.continue_(addr, region.page_size())?,
                _ => uffd.serve(addr, region.page_size(), 0)?,
            }
            match loader.wait(ctx.timeout) {
                Some(v) if v == byte => format!("{fault}, content kept"),
                Some(v) => format!("{fault}, reads {v:#04x}"),
                None => format!("{fault}, still blocked"),
            }
        }
        Next::Event(e) => describe_event(&e, region),
        Next::Done(v) => format!("no message, reads {v:#04x}"),
        Next::Timeout => "load blocked without a message".to_string(),
    })
}

/// Runs madvise(`advice`) over page 0 from a worker: `REMOVE` once its event was read, else what
/// happened.
fn remove_with(ctx: &Ctx, uffd: &Uffd, region: &Region, advice: i32) -> Result<String, Fail> {
    let (addr, len) = (region.base(), region.page_size());
    Ok(match uffd.raised_by(ctx.timeout, move || madvise(addr, len, advice))? {
        uffd::Raised::Event(Event::Remove { .. }) => "REMOVE".to_string(),
        other => other.describe(region),
    })
}

fn continue_after_remove(ctx: &Ctx, _: Variant) -> ProbeResult {
    let region = Region::memfd(1).ctx("memfd")?;
    region.fill_file_page(0, 0x77).ctx("pwrite to the memfd")?;
    let (uffd, region) = registered(FEATURE_MINOR_SHMEM | FEATURE_EVENT_REMOVE, region, RegisterMode::MINOR)?;
    let first = load_continuing(ctx, &uffd, &region, 0x77)?;
    if first != "fault minor read, content kept" {
        return Ok(Observation::new(format!("first load: {first}")));
    }
    let dontneed = remove_with(ctx, &uffd, &region, libc::MADV_DONTNEED)?;
    let after_dontneed = load_continuing(ctx, &uffd, &region, 0x77)?;
    let remove = remove_with(ctx, &uffd, &region, libc::MADV_REMOVE)?;
    let after_remove = load_continuing(ctx, &uffd, &region, 0x77)?;
    Ok(Observation::new(format!(
        "DONTNEED: {dontneed}, then {after_dontneed}; MADV_REMOVE: {remove}, then {after_remove}"
    )))
}

fn continue_hugetlb(ctx: &Ctx, v: Variant) -> ProbeResult {
    require::features(FEATURE_MINOR_HUGETLBFS)?;
    let region = v.region(1)?;
    let alias = region.alias().ctx("mmap (second mapping)")?;
    // SAFETY: the alias maps this probe's own memfd; nothing else uses it.
    unsafe { std::ptr::write_bytes(alias.base() as *mut u8, 0x7C, alias.len()) };
    let (uffd, region) = registered(FEATURE_MINOR_HUGETLBFS, region, RegisterMode::MINOR)?;
    let observed = load_continuing(ctx, &uffd, &region, 0x7C)?;
    Ok(Observation::new(observed.replace("content kept", "content from the page cache")))
}

fn hugetlb_fault_address(ctx: &Ctx, v: Variant) -> ProbeResult {
    let huge = v.huge_pages(2)?;
    // Past the middle of the huge page, off any base page boundary (0x100123 in a 2 MiB page).
    let offset = huge.size / 2 + 0x123;
    let one = |features: u64| -> Result<String, Fail> {
        let region = huge.anonymous(1)?;
        let (uffd, region) = registered(FEATURE_MISSING_HUGETLBFS | features, region, RegisterMode::MISSING)?;
        let addr = region.base() + offset;
        let loader = worker::spawn("load", move || memory::load(addr));
        let at = match uffd.await_fault(&loader, &region, ctx.timeout) {
            Ok(Event::Pagefault { addr, .. }) => addr,
            Ok(_) => unreachable!("await_fault returns faults"),
            Err(Fail::Observed(other)) => return Ok(other.observed),
            Err(e) => return Err(e),
        };
        uffd.serve(region.base(), region.page_size(), 0x12)?;
        loader.wait(ctx.timeout);
        let got = at as usize - region.base();
        Ok(match got {
            0 => "huge page start".to_string(),
            g if g == offset & !(memory::page_size() - 1) => "4 KiB page start".to_string(),
            g if g == offset => "exact".to_string(),
            g => format!("offset {g:#x}"),
        })
    };
    let plain = one(0)?;
    let exact = require::if_offered(FEATURE_EXACT_ADDRESS, || one(FEATURE_EXACT_ADDRESS))?;
    Ok(Observation::new(format!("{plain}; with EXACT_ADDRESS: {exact}")))
}
