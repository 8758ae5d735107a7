//! `wp`: write-protect as snapshot servers and live migration use it: registration with
//! MISSING|WP, UFFDIO_COPY_MODE_WP, UFFDIO_WRITEPROTECT toggling, shmem and hugetlb (and
//! unpopulated memory), and UFFD_FEATURE_WP_ASYNC dirty tracking read back through
//! `/proc/self/pagemap` and PAGEMAP_SCAN.

use crate::kit::behaviour::Behaviour;
use crate::kit::memory::{self, madvise, Region, PAGE_IS_WRITTEN, PM_UFFD_WP};
use crate::kit::outcome::{Context, Ctx, Fail, Observation, ProbeResult};
use crate::kit::require;
use crate::kit::rows;
use crate::kit::uapi::{
    self, COPY_MODE_WP, FEATURE_EVENT_REMOVE, FEATURE_MISSING_HUGETLBFS, FEATURE_MISSING_SHMEM,
    FEATURE_PAGEFAULT_FLAG_WP, FEATURE_WP_ASYNC, FEATURE_WP_HUGETLBFS_SHMEM, FEATURE_WP_UNPOPULATED,
};
use crate::kit::uffd::{self, describe_event, describe_fault, registered, Event, Next, RegisterMode, Uffd};
use crate::kit::variant::Variant;
use crate::kit::worker;

const WP_CITATION: &str = "UFFDIO_WRITEPROTECT(2const), man-pages 6.20; UFFDIO_REGISTER(2const): \
     UFFDIO_REGISTER_MODE_WP; fs/userfaultfd.c userfaultfd_writeprotect (v5.10, v6.12); commit \
     63b2d4174c4a \"userfaultfd: wp: add the writeprotect API to userfaultfd ioctl\" (v5.7)";

const ASYNC_CITATION: &str = "UFFDIO_API(2const), man-pages 6.20: UFFD_FEATURE_WP_ASYNC (since Linux 6.7); \
     Documentation/admin-guide/mm/pagemap.rst (v6.7) \"Pagemap Scan IOCTL\"; fs/proc/task_mmu.c \
     pagemap_page_category, do_pagemap_scan (v6.12.118, v7.2.13)";

pub const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        id: "wp.register_missing_wp",
        summary: "The ioctls UFFDIO_REGISTER offers for an anonymous range registered MISSING|WP",
        observes: "The names of the bits set in uffdio_register.ioctls after registering one anonymous page \
                   with UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP, in bit order.",
        expect: &[
            rows::ARM64_BEFORE_6_10,
            rows::BEFORE_5_7,
            (">=5.7, <6.6", "WAKE COPY ZEROPAGE WRITEPROTECT"),
            (">=6.6, <6.8", "WAKE COPY ZEROPAGE WRITEPROTECT POISON"),
            (">=6.8", "WAKE COPY ZEROPAGE MOVE WRITEPROTECT POISON"),
        ],
        citation: "include/uapi/linux/userfaultfd.h UFFD_API_RANGE_IOCTLS (v5.10, v6.1, v6.12, v7.2); \
                   fs/userfaultfd.c userfaultfd_register masks CONTINUE without MODE_MINOR; UFFDIO_POISON \
                   since 6.6, UFFDIO_MOVE since 6.8",
        probe: register_missing_wp,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "wp.copy_mode_wp",
        summary: "UFFDIO_COPY with UFFDIO_COPY_MODE_WP serves a missing page write-protected: a later store raises a WP fault",
        observes: "An anonymous page registered MISSING|WP; a worker's load faults (`fault read`), served with \
                   UFFDIO_COPY_MODE_WP (`, served protected` once the load returns the bytes); then a store \
                   from a worker: `; store: fault wp write` when it raises a write-protect fault (resolved by \
                   unprotecting), `; store: no message` when it goes through.",
        expect: &[
            rows::ARM64_BEFORE_6_10,
            rows::BEFORE_5_7,
            (">=5.7", "fault read, served protected; store: fault wp write"),
        ],
        citation: "UFFDIO_COPY(2const), man-pages 6.20: UFFDIO_COPY_MODE_WP \"write-protect the page while \
                   copying\"; mm/userfaultfd.c mfill_atomic_install_pte (v6.12): pte_mkuffd_wp when \
                   MFILL_ATOMIC_WP",
        notes: "This is how a snapshot server restores a page and tracks it dirty in one step.",
        probe: copy_mode_wp,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "wp.toggle",
        summary: "UFFDIO_WRITEPROTECT protects and unprotects a present page: stores fault only while it is protected",
        observes: "A served anonymous page registered MISSING|WP, stored to from a worker after each step: \
                   `protected: X; unprotected: Y; protected again: Z`, each the store's message (`fault wp \
                   write`, resolved by unprotecting) or `no message`.",
        expect: &[
            rows::ARM64_BEFORE_6_10,
            rows::BEFORE_5_7,
            (">=5.7", "protected: fault wp write; unprotected: no message; protected again: fault wp write"),
        ],
        citation: WP_CITATION,
        probe: toggle,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "wp.shmem",
        summary: "Write-protect on a shared memfd (shmem) page: a store to a protected page raises a WP fault",
        observes: "A MAP_SHARED memfd page with content in the page cache, registered MISSING|WP with \
                   UFFD_FEATURE_WP_HUGETLBFS_SHMEM, mapped by a load and protected: a worker's store raises \
                   `fault wp write` (resolved by unprotecting), or `no message`.",
        expect: &[rows::NO_PTE_MARKERS, rows::BEFORE_5_19, (">=5.19", "fault wp write")],
        citation: "UFFDIO_API(2const), man-pages 6.20: UFFD_FEATURE_WP_HUGETLBFS_SHMEM (since Linux 5.19); \
                   mm/shmem.c, mm/mprotect.c change_pte_range (v6.1): uffd-wp on file-backed ptes, PTE \
                   markers (CONFIG_PTE_MARKER_UFFD_WP)",
        probe: shmem,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "wp.hugetlb",
        summary: "Write-protect on an anonymous hugetlb page: a store to a protected huge page raises a WP fault",
        observes: "As wp.shmem, on one served anonymous huge page registered MISSING|WP: `fault wp write` or \
                   `no message`. Details: the ioctls REGISTER offered.",
        expect: &[rows::NO_PTE_MARKERS, rows::BEFORE_5_19, (">=5.19", "fault wp write")],
        citation: "UFFDIO_API(2const): UFFD_FEATURE_WP_HUGETLBFS_SHMEM (since Linux 5.19); mm/hugetlb.c \
                   hugetlb_change_protection, hugetlb_wp (v6.1, v6.12)",
        huge_pages: 1,
        probe: hugetlb,
        variant: Variant::HUGETLB,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "wp.unpopulated",
        summary: "Write-protecting a never-touched anonymous page: a store goes through unnoticed, unless UFFD_FEATURE_WP_UNPOPULATED (6.4+)",
        observes: "An anonymous page registered WP only, never touched, protected with UFFDIO_WRITEPROTECT, \
                   then stored to from a worker: `without the feature: X; with it: Y`, each the store's \
                   message (`fault wp write`) or `no message`; Y is `not offered` when the kernel lacks \
                   UFFD_FEATURE_WP_UNPOPULATED.",
        expect: &[
            rows::ARM64_BEFORE_6_10,
            (">=6.4 when CONFIG_PTE_MARKER_UFFD_WP!=y", "without the feature: no message; with it: not offered"),
            rows::BEFORE_5_7,
            (">=5.7, <6.4", "without the feature: no message; with it: not offered"),
            (">=6.4", "without the feature: no message; with it: fault wp write"),
        ],
        citation: "UFFDIO_API(2const), man-pages 6.20: UFFD_FEATURE_WP_UNPOPULATED (since Linux 6.4) \"the \
                   kernel will apply the write protection on none ptes ... as if it was a populated zero \
                   page\"; mm/mprotect.c change_pte_range (v6.12)",
        notes: "A snapshot server that protects memory before the guest touched it misses the first write \
                to every never-touched page without this feature.",
        selftests: &["selftests.unit_wp_unpopulated"],
        probe: unpopulated,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "wp.async_pagemap",
        summary: "With UFFD_FEATURE_WP_ASYNC a store to a protected page raises no message and clears the page's uffd-wp bit in /proc/self/pagemap",
        observes: "A present anonymous page registered WP with WP_ASYNC, protected: `protected: wp bit B; \
                   store: M, wp bit B2`, where B is the page's pagemap uffd-wp bit (bit 57) `set` or \
                   `clear`, and M the store's message (`no message`, or the fault).",
        expect: &[
            rows::NO_PTE_MARKERS,
            rows::BEFORE_6_7,
            (">=6.7", "protected: wp bit set; store: no message, wp bit clear"),
        ],
        citation: ASYNC_CITATION,
        notes: "Dirty tracking without a page server: the kernel resolves the fault and the bit records the \
                write (CRIU, live migration).",
        probe: async_pagemap,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "wp.async_scan",
        summary: "PAGEMAP_SCAN with PM_SCAN_WP_MATCHING reports exactly the pages written since the last scan, and protects them again",
        observes: "Four present anonymous pages registered WP with WP_ASYNC. PAGEMAP_SCAN for PAGE_IS_WRITTEN with \
                   PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, three times: `first scan: R1; after stores to \
                   pages 1 and 3: R2; then: R3`, each the page ranges reported (`pages [a,b) ...`) or `none`.",
        expect: &[
            rows::NO_PTE_MARKERS,
            rows::BEFORE_6_7,
            (">=6.7", "first scan: pages [0,4); after stores to pages 1 and 3: pages [1,2) [3,4); then: none"),
        ],
        citation: ASYNC_CITATION,
        probe: async_scan,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "wp.async_remove",
        summary: "Under WP_ASYNC, a page removed with MADV_DONTNEED loses its write protection and reads back as written",
        observes: "Two present anonymous pages registered WP with WP_ASYNC and EVENT_REMOVE, both protected by a \
                   PAGEMAP_SCAN with PM_SCAN_WP_MATCHING; page 0 is removed with MADV_DONTNEED (its REMOVE \
                   read): `REMOVE; removed page: wp bit B`, B its pagemap uffd-wp bit (`set`: still protected, \
                   `clear`); then a store to it: `; store: M, scan: S`, M its message (`no message` when the \
                   kernel resolves it, the fault otherwise) and S what a PAGEMAP_SCAN for PAGE_IS_WRITTEN \
                   reports over both pages. Details: that scan before the store (an unpopulated pte counts as \
                   written from 6.12.103 and 7.2.13; earlier answers depended on the scan's masks).",
        expect: &[
            rows::NO_PTE_MARKERS,
            rows::BEFORE_6_7,
            (">=6.7", "REMOVE; removed page: wp bit clear; store: no message, scan: pages [0,1)"),
        ],
        citation: "mm/memory.c zap_install_uffd_wp_if_needed (v6.12, v7.2): \"Zap on anonymous always means \
                   dropping everything\", so no uffd-wp marker is left and the store is not trapped; \
                   fs/proc/task_mmu.c pagemap_page_category (v6.12.118): a present pte without the uffd-wp \
                   bit is PAGE_IS_WRITTEN",
        notes: "A dirty tracker loses the protection of a removed page: its next write is not seen as a \
                fault, only as a written page in the next scan. (Shmem keeps a marker instead.)",
        probe: async_remove,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "wp.populate_write_hugetlb",
        summary: "MADV_POPULATE_WRITE on a write-protected huge page: a WP fault with sync WP, none with WP_ASYNC",
        observes: "As populate.wp, on one anonymous huge page: `sync: X; async: Y`.",
        expect: &[
            rows::NO_PTE_MARKERS,
            rows::BEFORE_5_19,
            (">=5.19, <6.7", "sync: fault wp write; async: not offered"),
            (">=6.7", "sync: fault wp write; async: no message"),
        ],
        citation: "madvise(2): MADV_POPULATE_WRITE (since 5.14); UFFDIO_API(2const): WP_HUGETLBFS_SHMEM (5.19), \
                   WP_ASYNC (6.7); mm/hugetlb.c hugetlb_fault (v6.12): userfaultfd_wp_async -> hugetlb_wp",
        huge_pages: 2,
        probe: super::populate::wp,
        variant: Variant::HUGETLB,
        ..Behaviour::DEFAULT
    },
];

/// A store of `byte` to `addr` from a worker: `fault KIND` when it raised a fault (a WP fault is
/// resolved by unprotecting the page, a missing one by serving it), `no message` when it went
/// through without one.
fn store_outcome(ctx: &Ctx, uffd: &Uffd, region: &Region, addr: usize, byte: u8) -> Result<String, Fail> {
    let storer = worker::spawn("store", move || memory::store(addr, byte));
    let page = addr & !(region.page_size() - 1);
    Ok(match uffd.next_or_done(&storer, ctx.timeout)? {
        Next::Done(()) => match uffd.next(std::time::Duration::ZERO)? {
            None => "no message".to_string(),
            Some(e) => format!("no fault, then {}", describe_event(&e, region)),
        },
        Next::Event(Event::Pagefault { kind, rw, .. }) => {
            match kind {
                uffd::FaultKind::WriteProtected => uffd.write_protect(page, region.page_size(), false)?,
                _ => uffd.serve(page, region.page_size(), byte)?,
            }
            match storer.wait(ctx.timeout) {
                Some(()) => format!("fault {}", describe_fault(kind, rw)),
                None => format!("fault {}, still blocked", describe_fault(kind, rw)),
            }
        }
        Next::Event(e) => describe_event(&e, region),
        Next::Timeout => "store blocked without a message".to_string(),
    })
}

/// Whether the page at `addr` has its pagemap uffd-wp bit: `set` or `clear`.
fn wp_bit(addr: usize) -> Result<&'static str, Fail> {
    let entry = memory::pagemap(addr).ctx("reading /proc/self/pagemap")?;
    Ok(if entry & PM_UFFD_WP != 0 { "set" } else { "clear" })
}

/// A PAGEMAP_SCAN for PAGE_IS_WRITTEN over `region` (protecting what matched when `protect`):
/// `pages [a,b) ...` or `none`.
fn scan_written(region: &Region, protect: bool) -> Result<String, Fail> {
    let flags = memory::PM_SCAN_CHECK_WPASYNC | if protect { memory::PM_SCAN_WP_MATCHING } else { 0 };
    let found = memory::pagemap_scan(region.base(), region.base() + region.len(), flags, PAGE_IS_WRITTEN)
        .ctx("ioctl(PAGEMAP_SCAN)")?;
    if found.is_empty() {
        return Ok("none".to_string());
    }
    Ok(format!(
        "pages {}",
        found
            .iter()
            .map(|(s, e, _)| format!("[{},{})", region.page_index(*s), region.page_index(*e)))
            .collect::<Vec<_>>()
            .join(" ")
    ))
}

fn register_missing_wp(_: &Ctx, _: Variant) -> ProbeResult {
    let uffd = Uffd::open(FEATURE_PAGEFAULT_FLAG_WP)?;
    let region = Region::anonymous(1).ctx("mmap")?;
    let bits =
        uffd.register(region.base(), region.len(), RegisterMode::MISSING | RegisterMode::WRITE_PROTECT)?;
    Ok(Observation::new(uapi::ioctl_names(bits)).with("ioctls", format!("{bits:#x}")))
}

/// One anonymous page registered MISSING|WP.
fn missing_wp() -> Result<(Uffd, Region), Fail> {
    registered(
        FEATURE_PAGEFAULT_FLAG_WP,
        Region::anonymous(1).ctx("mmap")?,
        RegisterMode::MISSING | RegisterMode::WRITE_PROTECT,
    )
}

fn copy_mode_wp(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = missing_wp()?;
    let addr = region.base();
    let loader = worker::spawn("load", move || memory::load(addr));
    let fault = uffd::describe_kind(&uffd.await_fault(&loader, &region, ctx.timeout)?);
    let (copied, _) = uffd.copy_mode(addr, &vec![0x6B; region.page_size()], COPY_MODE_WP, 0);
    copied.ctx("UFFDIO_COPY(UFFDIO_COPY_MODE_WP)")?;
    let served = match loader.wait(ctx.timeout) {
        Some(0x6B) => "served protected".to_string(),
        Some(v) => format!("served, read {v:#04x}"),
        None => "served, load still blocked".to_string(),
    };
    let bit = wp_bit(addr)?;
    let store = store_outcome(ctx, &uffd, &region, addr, 0x6C)?;
    Ok(Observation::new(format!("{fault}, {served}; store: {store}")).with("wp_bit_after_copy", bit))
}

fn toggle(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = missing_wp()?;
    let (addr, len) = (region.base(), region.page_size());
    uffd.serve(addr, len, 0x31)?;
    uffd.write_protect(addr, len, true)?;
    let protected = store_outcome(ctx, &uffd, &region, addr, 0x32)?;
    uffd.write_protect(addr, len, true)?;
    uffd.write_protect(addr, len, false)?;
    let unprotected = store_outcome(ctx, &uffd, &region, addr, 0x33)?;
    uffd.write_protect(addr, len, true)?;
    let again = store_outcome(ctx, &uffd, &region, addr, 0x34)?;
    Ok(Observation::new(format!(
        "protected: {protected}; unprotected: {unprotected}; protected again: {again}"
    )))
}

/// Protects page 0 of a registered `region` whose page is present, then reports a store's outcome
/// (with the ioctls registration offered).
fn protected_store(ctx: &Ctx, uffd: &Uffd, region: &Region, ioctls: u64) -> ProbeResult {
    uffd.write_protect(region.base(), region.page_size(), true)?;
    let bit = wp_bit(region.base())?;
    Ok(Observation::new(store_outcome(ctx, uffd, region, region.base(), 0x4D)?)
        .with("ioctls", uapi::ioctl_names(ioctls))
        .with("wp_bit_when_protected", bit))
}

fn shmem(ctx: &Ctx, _: Variant) -> ProbeResult {
    let features = FEATURE_PAGEFAULT_FLAG_WP | FEATURE_WP_HUGETLBFS_SHMEM | FEATURE_MISSING_SHMEM;
    let uffd = Uffd::open(features)?;
    let region = Region::memfd(1).ctx("memfd")?;
    region.fill_file_page(0, 0x4C).ctx("pwrite to the memfd")?;
    let ioctls =
        uffd.register(region.base(), region.len(), RegisterMode::MISSING | RegisterMode::WRITE_PROTECT)?;
    memory::load(region.base()); // in the page cache: mapped without a fault
    protected_store(ctx, &uffd, &region, ioctls)
}

fn hugetlb(ctx: &Ctx, v: Variant) -> ProbeResult {
    let features = FEATURE_PAGEFAULT_FLAG_WP | FEATURE_WP_HUGETLBFS_SHMEM | FEATURE_MISSING_HUGETLBFS;
    let uffd = Uffd::open(features)?;
    let region = v.region(1)?;
    let ioctls =
        uffd.register(region.base(), region.len(), RegisterMode::MISSING | RegisterMode::WRITE_PROTECT)?;
    uffd.serve(region.base(), region.page_size(), 0x4B)?;
    protected_store(ctx, &uffd, &region, ioctls)
}

fn unpopulated(ctx: &Ctx, _: Variant) -> ProbeResult {
    require::features(FEATURE_PAGEFAULT_FLAG_WP)?;
    let run = |features: u64| -> Result<String, Fail> {
        let (uffd, region) = registered(
            FEATURE_PAGEFAULT_FLAG_WP | features,
            Region::anonymous(1).ctx("mmap")?,
            RegisterMode::WRITE_PROTECT,
        )?;
        uffd.write_protect(region.base(), region.page_size(), true)?;
        store_outcome(ctx, &uffd, &region, region.base(), 0x5E)
    };
    let without = run(0)?;
    let with = require::if_offered(FEATURE_WP_UNPOPULATED, || run(FEATURE_WP_UNPOPULATED))?;
    Ok(Observation::new(format!("without the feature: {without}; with it: {with}")))
}

/// `pages` present anonymous pages registered WP with WP_ASYNC (and `features`).
fn async_pages(pages: usize, features: u64) -> Result<(Uffd, Region), Fail> {
    let (uffd, region) = registered(
        FEATURE_PAGEFAULT_FLAG_WP | FEATURE_WP_ASYNC | features,
        Region::anonymous(pages).ctx("mmap")?,
        RegisterMode::WRITE_PROTECT,
    )?;
    for i in 0..pages {
        memory::store(region.page(i), 0x60 + i as u8);
    }
    Ok((uffd, region))
}

fn async_pagemap(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = async_pages(1, 0)?;
    uffd.write_protect(region.base(), region.page_size(), true)?;
    let before = wp_bit(region.base())?;
    let store = store_outcome(ctx, &uffd, &region, region.base(), 0x61)?;
    let after = wp_bit(region.base())?;
    Ok(Observation::new(format!("protected: wp bit {before}; store: {store}, wp bit {after}")))
}

fn async_scan(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = async_pages(4, 0)?;
    let first = scan_written(&region, true)?;
    for i in [1, 3] {
        let store = store_outcome(ctx, &uffd, &region, region.page(i), 0x70)?;
        if store != "no message" {
            return Ok(Observation::new(format!("first scan: {first}; store to page {i}: {store}")));
        }
    }
    let second = scan_written(&region, true)?;
    let third = scan_written(&region, true)?;
    Ok(Observation::new(format!(
        "first scan: {first}; after stores to pages 1 and 3: {second}; then: {third}"
    )))
}

fn async_remove(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = async_pages(2, FEATURE_EVENT_REMOVE)?;
    let protected = scan_written(&region, true)?;
    let still = scan_written(&region, false)?;
    if still != "none" {
        return Ok(Observation::new(format!("after protecting: {still} still written")));
    }
    let (addr, len) = (region.base(), region.page_size());
    let event = match uffd.raised_by(ctx.timeout, move || madvise(addr, len, libc::MADV_DONTNEED))? {
        uffd::Raised::Event(Event::Remove { .. }) => "REMOVE".to_string(),
        other => other.describe(&region),
    };
    let bit = wp_bit(addr)?;
    let before = scan_written(&region, false)?;
    let store = store_outcome(ctx, &uffd, &region, addr, 0x62)?;
    let after = scan_written(&region, false)?;
    Ok(Observation::new(format!("{event}; removed page: wp bit {bit}; store: {store}, scan: {after}"))
        .with("first_scan", protected)
        .with("scan_before_store", before))
}
