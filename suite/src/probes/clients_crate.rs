//! `clients`, the `userfaultfd` crate (0.9.0, bytecodealliance/userfaultfd-rs), the Rust client
//! Firecracker's UFFD examples are written against: for each operation the suite observes raw,
//! what the crate's API returns on this kernel, next to what the kernel did, observed through the
//! kit on the same descriptor (residency with mincore, the message's own bytes, whether a waiter
//! woke). Each cell reads `agrees: ...` when the crate reports what the kernel did, `disagrees:
//! crate X, kernel Y` when it does not.
//!
//! The expectations follow the crate's source and the kernel's, so a cell is `expected` when the
//! crate does what its source says it does on that kernel, disagreement included. Where the sources
//! foresee a disagreement, the crate's doc comment, which promises agreement, is the `documented`
//! claim; so every disagreement is a finding, quoting the crate where it was foreseen, as an
//! `unexpected` cell where not (docs/findings/userfaultfd-crate.md has each one's reproduction).
//! The reconciliations are pure functions, tested on disagreeing pairs below.

use crate::kit::behaviour::Behaviour;
use crate::kit::memory::{self, Region};
use crate::kit::outcome::{errno_name, error_name, Context, Ctx, Fail, Observation, ProbeResult};
use crate::kit::rows;
use crate::kit::uapi::{
    self, FEATURE_EVENT_FORK, FEATURE_EVENT_REMAP, FEATURE_EVENT_REMOVE, FEATURE_EVENT_UNMAP,
    FEATURE_PAGEFAULT_FLAG_WP, UFFD_MSG_SIZE,
};
use crate::kit::uffd::{self, registered, Event, FaultKind, Next, ReadWrite, RegisterMode, Uffd};
use crate::kit::variant::Variant;
use crate::kit::worker::{self, Worker};
use crate::probes::remove::{four_served_pages, pending_remove, reap};
use nix::errno::Errno;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};

/// The crate's doc comment on `Uffd::copy` and `Error::PartiallyCopied`.
const COPY_DOC: &str = "userfaultfd 0.9.0 src/lib.rs Uffd::copy: \"Atomically copy a continuous memory chunk into the userfaultfd-registered range, and return the number of bytes that were successfully copied.\"; src/error.rs Error::PartiallyCopied: \"Copy ioctl failure with copied length.\"";

/// The crate's doc comment on `Uffd::zeropage`.
const ZEROPAGE_DOC: &str = "userfaultfd 0.9.0 src/lib.rs Uffd::zeropage: \"Zero out a memory address range registered with userfaultfd, and return the number of bytes that were successfully zeroed.\"";

const EVENTS_CITATION: &str = "userfaultfd 0.9.0 src/event.rs Event::from_uffd_msg (lines 85-156), reached \
     through src/lib.rs Uffd::read_event -> Uffd::read (one read(2) of a uffd_msg); the message layout \
     of include/uapi/linux/userfaultfd.h struct uffd_msg (v5.10, v6.12), decoded independently here";

pub const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        id: "clients.crate_copy_eagain",
        summary: "The userfaultfd crate's Uffd::copy under a pending REMOVE reports the bytes the kernel copied",
        observes: "As remove.copy_eagain (a worker's MADV_DONTNEED waits with its REMOVE unread), the crate's \
                   Uffd::copy into a missing page, then mincore on it: `agrees: OUTCOME, N bytes copied` when \
                   the count the crate reports (Ok(n), PartiallyCopied(n); 0 for CopyFailed) is what became \
                   resident, `disagrees: crate RESULT, kernel copied N bytes` otherwise. Details: the same \
                   copy issued raw (result, and the `copy` field, which the crate starts at 0).",
        expect: &[
            rows::BEFORE_4_11,
            (">=4.11, <4.18", "agrees: ok, 4096 bytes copied"),
            (">=4.18, <5.15", "agrees: EAGAIN, 0 bytes copied"),
            (">=5.15, <5.16", "undetermined: whether 5.15.y took the v6.15 fix that writes -EAGAIN into `copy` is not verified"),
            (">=5.16, <6.6", "agrees: EAGAIN, 0 bytes copied"),
            (">=6.6, <6.7", "undetermined: the v6.15 fix failed to apply to 6.6.y (12 May 2025); a later backport is not verified"),
            (">=6.7, <6.12.29", "agrees: EAGAIN, 0 bytes copied"),
            (">=6.12.29, <6.13", "disagrees: crate PartiallyCopied(18446744073709551605), kernel copied 0 bytes"),
            (">=6.13, <6.14.7", "agrees: EAGAIN, 0 bytes copied"),
            (">=6.14.7", "disagrees: crate PartiallyCopied(18446744073709551605), kernel copied 0 bytes"),
        ],
        documented: &[(">=4.18", "agrees: EAGAIN, 0 bytes copied", COPY_DOC)],
        citation: "userfaultfd 0.9.0 src/lib.rs Uffd::copy (lines 144-176): `Errno::EAGAIN => \
                   Error::PartiallyCopied(copy.copy as usize)`, the signed `copy` field cast to usize, so \
                   -EAGAIN reads 2^64-11; fs/userfaultfd.c userfaultfd_copy: 5.10.262 and 6.1.192 return \
                   -EAGAIN before writing `copy` (the crate's 0 stays), 6.12.118 and 7.2.13 put_user(-EAGAIN) \
                   first (commit 95567729173e, v6.15, in 6.14.7 and 6.12.29; see remove.copy_field)",
        notes: "Firecracker's example handler works around it: it accepts PartiallyCopied(0) and \
                PartiallyCopied((-EAGAIN) as usize) as \"retry\" (src/firecracker/examples/uffd/uffd_utils.rs \
                UffdHandler::populate_from_file). A client that trusts the count skips 2^64-11 bytes.",
        probe: copy_eagain,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "clients.crate_zeropage_partial",
        summary: "The userfaultfd crate's Uffd::zeropage over a range whose second page is present reports what the kernel zeroed",
        observes: "Two anonymous pages registered MISSING, the second served; the crate's Uffd::zeropage over \
                   both, then mincore: `agrees: OUTCOME, N bytes zeroed` when the count the crate reports (Ok(n); \
                   0 for ZeropageFailed) is what became resident, `disagrees: crate RESULT, kernel zeroed N \
                   bytes` otherwise.",
        expect: &[("*", "disagrees: crate ZeropageFailed(EAGAIN), kernel zeroed 4096 bytes")],
        documented: &[(
            "*",
            "one of: agrees: ok, 4096 bytes zeroed | agrees: EAGAIN, 4096 bytes zeroed",
            ZEROPAGE_DOC,
        )],
        citation: "userfaultfd 0.9.0 src/lib.rs Uffd::zeropage (lines 183-207): `.map_err(Error::ZeropageFailed)?` \
                   on the ioctl's errno, before `zeropage.zeropage` (the bytes zeroed) is read; fs/userfaultfd.c \
                   userfaultfd_zeropage (v5.10, v6.12): writes the bytes zeroed into `zeropage`, wakes, and \
                   returns -EAGAIN when they are fewer than asked; mm/userfaultfd.c (__)mcopy_atomic / \
                   mfill_atomic (v5.10, v6.12): stops at the present page with -EEXIST and returns what it did",
        notes: "Uffd::copy has PartiallyCopied for this; Uffd::zeropage has no partial result, so the caller \
                cannot tell that the first page was zeroed (and its waiters woken).",
        probe: zeropage_partial,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "clients.crate_wake",
        summary: "The userfaultfd crate's Uffd::wake wakes a thread whose page was placed without waking it",
        observes: "A worker's load faults; the page is placed raw with UFFDIO_COPY_MODE_DONTWAKE (the worker \
                   stays blocked); then the crate's Uffd::wake on the page: `agrees: waiter woke` when it \
                   returns Ok and the load returns, `disagrees: crate RESULT, kernel ...` otherwise.",
        expect: &[("*", "agrees: waiter woke")],
        citation: "userfaultfd 0.9.0 src/lib.rs Uffd::wake (lines 210-219); UFFDIO_WAKE(2const), man-pages \
                   6.20; fs/userfaultfd.c userfaultfd_wake (v5.10, v6.12)",
        probe: wake,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "clients.crate_write_protect",
        summary: "The userfaultfd crate's write_protect and remove_write_protection do what they return",
        observes: "A served anonymous page registered MISSING|WP; the crate's Uffd::write_protect, then a \
                   worker's store (does it fault?), then Uffd::remove_write_protection with wake (does the \
                   store complete?): `agrees: protected, the store faulted; unprotected, it completed`, or \
                   `disagrees: crate ..., kernel ...`.",
        expect: &[
            rows::ARM64_BEFORE_6_10,
            rows::BEFORE_5_7,
            (">=5.7", "agrees: protected, the store faulted; unprotected, it completed"),
        ],
        citation: "userfaultfd 0.9.0 src/lib.rs Uffd::write_protect (lines 223-240), \
                   Uffd::remove_write_protection (lines 247-273); fs/userfaultfd.c userfaultfd_writeprotect \
                   (v5.10, v6.12)",
        probe: write_protect,
        ..Behaviour::DEFAULT
    },
    decoding(
        "clients.crate_event_remove",
        "The userfaultfd crate decodes a REMOVE message as the kernel wrote it",
        "remove.dontneed's REMOVE (MADV_DONTNEED of pages [1,3)) read raw, and the same bytes read by \
         the crate's Uffd::read_event: `agrees: REMOVE pages [1,3)` when every field matches, \
         `disagrees: crate X, kernel Y` otherwise.",
        &[rows::BEFORE_4_11, (">=4.11", "agrees: REMOVE pages [1,3)")],
        event_remove,
    ),
    decoding(
        "clients.crate_event_unmap",
        "The userfaultfd crate decodes an UNMAP message as the kernel wrote it",
        "As clients.crate_event_remove, for remove.unmap's munmap of pages [1,3): `agrees: UNMAP \
         pages [1,3)`, or `disagrees: ...`.",
        &[rows::BEFORE_4_11, (">=4.11", "agrees: UNMAP pages [1,3)")],
        event_unmap,
    ),
    decoding(
        "clients.crate_event_remap",
        "The userfaultfd crate decodes a REMAP message (from, to, len) as the kernel wrote it",
        "As clients.crate_event_remove, for remove.remap's mremap of pages [1,3) to a new address: \
         `agrees: REMAP pages [1,3) to the new address`, or `disagrees: ...`.",
        &[rows::BEFORE_4_11, (">=4.11", "agrees: REMAP pages [1,3) to the new address")],
        event_remap,
    ),
    Behaviour {
        notes: "The crate wraps the descriptor in a Uffd that closes it when dropped, and its IntoRawFd does \
                not forget it (clients.crate_into_raw_fd): kit/uffd.rs Uffd::from_fork_event works around \
                that.",
        ..decoding(
            "clients.crate_event_fork",
            "The userfaultfd crate decodes a FORK message, whose descriptor it then owns",
            "As clients.crate_event_remove, for the FORK of a raw fork(2) (the child exits at once): \
             `agrees: FORK with a new uffd` when the crate's Uffd holds the descriptor the message \
             names, or `disagrees: ...`.",
            &[rows::BEFORE_4_11, (">=4.11", "agrees: FORK with a new uffd")],
            event_fork,
        )
    },
    Behaviour {
        id: "clients.crate_features",
        summary: "The userfaultfd crate negotiates every feature the kernel offers, including those it cannot name",
        observes: "The kernel's offer (UFFDIO_API with no feature) requested whole through the crate's \
                   UffdBuilder (`require_features(FeatureFlags::from_bits_retain(offer))`, built as \
                   Firecracker builds it) and through a raw UFFDIO_API: `agrees, unnamed: NAMES` when both \
                   accept it, NAMES being the offered features FeatureFlags has no name for (`none`), else \
                   `disagrees: crate ..., kernel ...`.",
        expect: &[
            (">=5.19, <6.6 when CONFIG_PTE_MARKER_UFFD_WP!=y", "includes: agrees, unnamed: MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS"),
            (">=6.6, <6.8 when CONFIG_PTE_MARKER_UFFD_WP!=y", "includes: agrees, unnamed: MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS POISON"),
            (">=6.8 when CONFIG_PTE_MARKER_UFFD_WP!=y", "includes: agrees, unnamed: MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS POISON MOVE"),
            ("<5.13", "agrees, unnamed: none"),
            (">=5.13, <5.14", "includes: agrees, unnamed: MINOR_HUGETLBFS"),
            (">=5.14, <5.18", "includes: agrees, unnamed: MINOR_HUGETLBFS MINOR_SHMEM"),
            (">=5.18, <5.19", "includes: agrees, unnamed: MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS"),
            (">=5.19, <6.4", "includes: agrees, unnamed: MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS WP_HUGETLBFS_SHMEM"),
            (">=6.4, <6.6", "includes: agrees, unnamed: MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS WP_HUGETLBFS_SHMEM WP_UNPOPULATED"),
            (">=6.6, <6.7", "includes: agrees, unnamed: MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS WP_HUGETLBFS_SHMEM WP_UNPOPULATED POISON"),
            (">=6.7, <6.8", "includes: agrees, unnamed: MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS WP_HUGETLBFS_SHMEM WP_UNPOPULATED POISON WP_ASYNC"),
            (">=6.8, <7.3", "includes: agrees, unnamed: MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS WP_HUGETLBFS_SHMEM WP_UNPOPULATED POISON WP_ASYNC MOVE"),
            (">=7.3", "includes: agrees, unnamed: MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS WP_HUGETLBFS_SHMEM WP_UNPOPULATED POISON WP_ASYNC MOVE RWP RWP_ASYNC"),
        ],
        citation: "userfaultfd 0.9.0 src/builder.rs FeatureFlags (lines 12-44: names up to THREAD_ID with the \
                   linux4_14 feature, none newer) and UffdBuilder::create (lines 165-196: the requested bits \
                   go to UFFDIO_API as they are; the kernel's answer in api.features is dropped); the offer \
                   by version as in api.features",
        notes: "The crate can request a feature it has no name for (from_bits_retain), but cannot say which \
                features the kernel offers: create() keeps only the descriptor. Firecracker requires \
                EVENT_REMOVE this way (src/vmm/src/persist.rs guest_memory_from_uffd).",
        probe: features,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "clients.crate_into_raw_fd",
        summary: "The userfaultfd crate's Uffd::into_raw_fd hands over an open descriptor",
        observes: "A uffd made by the crate's UffdBuilder, given up with IntoRawFd::into_raw_fd; then \
                   fcntl(F_GETFD) on the number it returned: `agrees: an open descriptor` when it is open, \
                   `disagrees: crate returned a descriptor, kernel: it is closed` (EBADF) otherwise.",
        expect: &[("*", "disagrees: crate returned a descriptor, kernel: it is closed")],
        documented: &[(
            "*",
            "agrees: an open descriptor",
            "Rust std::os::fd::IntoRawFd::into_raw_fd: \"Consumes this object, returning the raw underlying file descriptor. ... the caller is responsible for closing the file descriptor\"",
        )],
        citation: "userfaultfd 0.9.0 src/lib.rs impl IntoRawFd for Uffd (lines 69-73): `fn into_raw_fd(self) \
                   -> RawFd { self.fd }` drops `self` on return, and impl Drop for Uffd (lines 51-55) \
                   closes the descriptor",
        notes: "Kernel-independent: a client that passes its uffd on with into_raw_fd (to another process \
                over SCM_RIGHTS, as Firecracker's VMM passes its own as a borrowed fd instead) sends a closed \
                number, or one reused meanwhile. kit/uffd.rs Uffd::from_fork_event avoids it with mem::forget.",
        probe: into_raw_fd,
        ..Behaviour::DEFAULT
    },
];

/// A decoding behaviour: the message its probe raises, read raw and by the crate. The sources
/// foresee no disagreement, so one would be `unexpected` (and a finding as such).
const fn decoding(
    id: &'static str,
    summary: &'static str,
    observes: &'static str,
    expect: &'static [(&'static str, &'static str)],
    probe: fn(&Ctx, Variant) -> ProbeResult,
) -> Behaviour {
    Behaviour { id, summary, observes, expect, citation: EVENTS_CITATION, probe, ..Behaviour::DEFAULT }
}

/// What a crate call that places pages (Uffd::copy, Uffd::zeropage) returned, as the crate spells
/// it, and the bytes it reports placed.
#[derive(Debug)]
struct Claim {
    said: String,
    bytes: u64,
    /// The outcome in the kernel's words: `ok` or the errno the crate carries.
    outcome: String,
}

fn claim(r: &userfaultfd::Result<usize>) -> Claim {
    use userfaultfd::Error::*;
    match r {
        Ok(n) => Claim { said: format!("Ok({n})"), bytes: *n as u64, outcome: "ok".to_string() },
        Err(e @ PartiallyCopied(n)) => {
            Claim { said: format!("{e:?}"), bytes: *n as u64, outcome: "EAGAIN".into() }
        }
        Err(e) => Claim { said: format!("{e:?}"), bytes: 0, outcome: error_name(e) },
    }
}

/// The crate's claim against the bytes the kernel placed: `agrees: OUTCOME, N bytes VERB`, or
/// `disagrees: crate RESULT, kernel VERB N bytes`.
fn reconcile_placed(claim: &Claim, placed: u64, verb: &str) -> String {
    if claim.bytes == placed {
        format!("agrees: {}, {placed} bytes {verb}", claim.outcome)
    } else {
        format!("disagrees: crate {}, kernel {verb} {placed} bytes", claim.said)
    }
}

/// The bytes of `region` that are resident (mincore), page by page.
fn resident_bytes(region: &Region) -> Result<u64, Fail> {
    let mut bytes = 0;
    for i in 0..region.len() / region.page_size() {
        if memory::resident(region.page(i), region.page_size()).ctx("mincore")? {
            bytes += region.page_size() as u64;
        }
    }
    Ok(bytes)
}

fn copy_eagain(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region, remover) = pending_remove(ctx, Region::anonymous(2).ctx("mmap")?)?;
    let (dst, page) = (region.page(1), region.page_size());
    let before = resident_bytes(&region)?;
    // Uffd::copy of the kit is the crate's Uffd::copy (with wake).
    let said = memory::with_filled(0x99, page, |src| uffd.copy(dst, src));
    let placed = resident_bytes(&region)? - before;
    // The same copy raw, the REMOVE still pending, its `copy` field starting at 0 as the crate's does.
    let (raw, field) = memory::with_filled(0x99, page, |src| uffd.copy_raw(dst, src, 0));
    let _ = uffd.next(ctx.timeout)?;
    remover.wait(ctx.timeout);
    Ok(Observation::new(reconcile_placed(&claim(&said), placed, "copied"))
        .with("kernel_result", raw.map_or_else(errno_name, |()| "0".to_string()))
        .with("kernel_copy_field", field))
}

fn zeropage_partial(_: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = registered(0, Region::anonymous(2).ctx("mmap")?, RegisterMode::MISSING)?;
    uffd.serve(region.page(1), region.page_size(), 0x5C)?;
    let before = resident_bytes(&region)?;
    // Uffd::zeropage of the kit is the crate's (with wake).
    let said = uffd.zeropage(region.base(), region.len());
    let placed = resident_bytes(&region)? - before;
    Ok(Observation::new(reconcile_placed(&claim(&said), placed, "zeroed")))
}

/// The crate's answer to a call that should wake a waiter, against whether it woke.
fn reconcile_wake(said: &userfaultfd::Result<()>, woke: bool) -> String {
    match (said, woke) {
        (Ok(()), true) => "agrees: waiter woke".to_string(),
        (Err(e), false) => format!("agrees: {}, waiter still blocked", error_name(e)),
        (Ok(()), false) => "disagrees: crate Ok(()), kernel left the waiter blocked".to_string(),
        (Err(e), true) => format!("disagrees: crate {e:?}, kernel woke the waiter"),
    }
}

fn wake(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = registered(0, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    let (addr, page) = (region.base(), region.page_size());
    let loader = worker::spawn("load", move || memory::load(addr));
    uffd.await_fault(&loader, &region, ctx.timeout)?;
    let dontwake = userfaultfd_sys::UFFDIO_COPY_MODE_DONTWAKE;
    let (placed, _) = memory::with_filled(0x3C, page, |src| uffd.copy_mode(addr, src, dontwake, 0));
    placed.ctx("UFFDIO_COPY(UFFDIO_COPY_MODE_DONTWAKE)")?;
    // Nothing wakes the waiter but a wake: it cannot have returned yet.
    if let Some(v) = loader.try_done() {
        return Ok(Observation::new("the waiter returned before the wake").with("read", format!("{v:#04x}")));
    }
    let said = uffd.client().wake(addr as *mut libc::c_void, page);
    let read = loader.wait(ctx.timeout);
    let mut o = Observation::new(reconcile_wake(&said, read.is_some()));
    if let Some(v) = read {
        o.detail("read", format!("{v:#04x}"));
    }
    Ok(o)
}

/// The crate's two write-protect calls against what a store did after each: whether it faulted
/// after the protection, whether it completed after the unprotection (with wake).
fn reconcile_wp(
    protect: &userfaultfd::Result<()>,
    faulted: bool,
    unprotect: &userfaultfd::Result<()>,
    completed: bool,
) -> String {
    let name =
        |r: &userfaultfd::Result<()>| r.as_ref().map_or_else(|e| format!("{e:?}"), |()| "Ok(())".into());
    if protect.is_ok() == faulted && unprotect.is_ok() == completed {
        return match (faulted, completed) {
            (true, true) => "agrees: protected, the store faulted; unprotected, it completed".to_string(),
            _ => format!(
                "agrees: write_protect {}, remove_write_protection {}",
                name(protect),
                name(unprotect)
            ),
        };
    }
    format!(
        "disagrees: crate write_protect {}, remove_write_protection {}; kernel: the store {}, then {}",
        name(protect),
        name(unprotect),
        if faulted { "faulted" } else { "went through" },
        if completed { "completed" } else { "stayed blocked" }
    )
}

fn write_protect(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = registered(
        FEATURE_PAGEFAULT_FLAG_WP,
        Region::anonymous(1).ctx("mmap")?,
        RegisterMode::MISSING | RegisterMode::WRITE_PROTECT,
    )?;
    let (addr, len) = (region.base(), region.page_size());
    uffd.serve(addr, len, 0x41)?;
    let protect = uffd.client().write_protect(addr as *mut libc::c_void, len);
    let storer = worker::spawn("store", move || memory::store(addr, 0x42));
    let faulted = match uffd.next_or_done(&storer, ctx.timeout)? {
        Next::Event(Event::Pagefault { kind: FaultKind::WriteProtected, rw: ReadWrite::Write, .. }) => true,
        Next::Done(()) => false,
        Next::Event(e) => return Ok(uffd::unexpected(&e, &region)),
        Next::Timeout => return Ok(Observation::new("store blocked without a message")),
    };
    let unprotect = uffd.client().remove_write_protection(addr as *mut libc::c_void, len, true);
    let completed = !faulted || storer.wait(ctx.timeout).is_some();
    Ok(Observation::new(reconcile_wp(&protect, faulted, &unprotect, completed)))
}

/// A uffd message as include/uapi/linux/userfaultfd.h lays it out (`struct uffd_msg`: the event
/// in byte 0, its argument from byte 8), or as the crate's `Event` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Msg {
    Fault { flags: u64, address: u64, ptid: u32 },
    Fork { ufd: u32 },
    Remap { from: u64, to: u64, len: u64 },
    Remove { start: u64, end: u64 },
    Unmap { start: u64, end: u64 },
    Other(u8),
}

/// `UFFD_PAGEFAULT_FLAG_WRITE`, `_WP`, `_MINOR`.
const FLAG_WRITE: u64 = 1 << 0;
const FLAG_WP: u64 = 1 << 1;
const FLAG_MINOR: u64 = 1 << 2;

impl Msg {
    /// The kernel's bytes, decoded by the header's layout.
    fn decode(msg: &[u8; UFFD_MSG_SIZE]) -> Msg {
        let u64_at = |o: usize| u64::from_ne_bytes(msg[o..o + 8].try_into().expect("8 bytes"));
        let u32_at = |o: usize| u32::from_ne_bytes(msg[o..o + 4].try_into().expect("4 bytes"));
        match msg[0] {
            0x12 => Msg::Fault { flags: u64_at(8), address: u64_at(16), ptid: u32_at(24) },
            0x13 => Msg::Fork { ufd: u32_at(8) },
            0x14 => Msg::Remap { from: u64_at(8), to: u64_at(16), len: u64_at(24) },
            0x15 => Msg::Remove { start: u64_at(8), end: u64_at(16) },
            0x16 => Msg::Unmap { start: u64_at(8), end: u64_at(16) },
            other => Msg::Other(other),
        }
    }

    /// The crate's event in the same terms.
    fn of_event(event: &Event) -> Msg {
        match event {
            Event::Pagefault { kind, rw, addr, thread_id } => {
                let kind = match kind {
                    FaultKind::Missing => 0,
                    FaultKind::WriteProtected => FLAG_WP,
                    FaultKind::Minor => FLAG_MINOR,
                };
                let write = if *rw == ReadWrite::Write { FLAG_WRITE } else { 0 };
                Msg::Fault { flags: kind | write, address: *addr as u64, ptid: thread_id.as_raw() as u32 }
            }
            Event::Fork { uffd } => Msg::Fork { ufd: uffd.as_raw_fd() as u32 },
            Event::Remap { from, to, len } => {
                Msg::Remap { from: *from as u64, to: *to as u64, len: *len as u64 }
            }
            Event::Remove { start, end } => Msg::Remove { start: *start as u64, end: *end as u64 },
            Event::Unmap { start, end } => Msg::Unmap { start: *start as u64, end: *end as u64 },
        }
    }

    /// One canonical line, places relative to `region` (and `target`, a remap's destination).
    fn describe(&self, region: &Region, target: usize) -> String {
        let pages = |s: u64, e: u64| format!("pages [{},{})", region.page_index(s), region.page_index(e));
        match *self {
            Msg::Fault { flags, address, .. } => {
                format!("PAGEFAULT flags {flags:#x} @page {}", region.page_index(address))
            }
            Msg::Fork { .. } => "FORK with a new uffd".to_string(),
            Msg::Remap { from, to, len } => format!(
                "REMAP {} {}",
                pages(from, from + len),
                if to as usize == target { "to the new address" } else { "elsewhere" }
            ),
            Msg::Remove { start, end } => format!("REMOVE {}", pages(start, end)),
            Msg::Unmap { start, end } => format!("UNMAP {}", pages(start, end)),
            Msg::Other(e) => format!("event {e:#x}"),
        }
    }
}

/// The crate's reading of a message against the kernel's bytes: `agrees: MESSAGE` when every
/// field matches, else `disagrees: crate X, kernel Y`.
fn reconcile_event(
    kernel: Msg,
    crate_read: &userfaultfd::Result<Option<Event>>,
    region: &Region,
    target: usize,
) -> String {
    let theirs = match crate_read {
        Ok(Some(event)) => Msg::of_event(event),
        Ok(None) => return format!("disagrees: crate no event, kernel {}", kernel.describe(region, target)),
        Err(e) => return format!("disagrees: crate {e}, kernel {}", kernel.describe(region, target)),
    };
    let (k, c) = (kernel.describe(region, target), theirs.describe(region, target));
    match (theirs == kernel, c == k) {
        (true, _) => format!("agrees: {k}"),
        (false, false) => format!("disagrees: crate {c}, kernel {k}"),
        (false, true) => format!("disagrees: crate {c} (other fields differ), kernel {k}"),
    }
}

/// The crate's Uffd::read_event on exactly the bytes `msg`: they go through a pipe, which the crate
/// reads as it reads a uffd (one read(2) of a uffd_msg, src/lib.rs Uffd::read).
fn read_by_crate(msg: &[u8; UFFD_MSG_SIZE]) -> Result<userfaultfd::Result<Option<Event>>, Fail> {
    let (rd, wr) = nix::unistd::pipe().ctx("pipe")?;
    nix::unistd::write(&wr, msg).ctx("write(pipe)")?;
    // SAFETY: the crate's Uffd owns the pipe's read end from here and closes it when dropped.
    let pipe = unsafe { userfaultfd::Uffd::from_raw_fd(rd.into_raw_fd()) };
    Ok(pipe.read_event())
}

/// Waits for the message `worker`'s call raises, reads it raw and has the crate read the same
/// bytes: the observation and the raw message, or what happened instead (a FORK's descriptor is
/// the crate's once it has read it, and closed when its event is dropped here).
fn both_readings<T>(
    ctx: &Ctx,
    uffd: &Uffd,
    worker: &Worker<T>,
    region: &Region,
    target: usize,
) -> Result<(String, [u8; UFFD_MSG_SIZE]), Fail> {
    let ready = crate::kit::poll::wait_any(&[uffd.as_fd(), worker.done_fd()], ctx.timeout).ctx("poll")?;
    if !ready[0] {
        let what = if ready[1] { "returned without an event" } else { "blocked without an event" };
        return Err(Observation::new(what).into());
    }
    let raw =
        uffd.read_raw()?.ok_or_else(|| Fail::error("read(uffd): no message though poll said readable"))?;
    let crate_read = read_by_crate(&raw)?;
    Ok((reconcile_event(Msg::decode(&raw), &crate_read, region, target), raw))
}

/// Runs `op` on pages [1,3) of four served pages from a worker; the message both ways.
fn event_on_pages(
    ctx: &Ctx,
    feature: u64,
    op: impl FnOnce(usize, usize) -> Result<(), Errno> + Send + 'static,
) -> ProbeResult {
    let (uffd, region) = four_served_pages(feature)?;
    let (addr, len) = (region.page(1), 2 * region.page_size());
    let worker = worker::spawn("op", move || op(addr, len));
    let (observed, _) = both_readings(ctx, &uffd, &worker, &region, 0)?;
    worker.wait(ctx.timeout);
    Ok(Observation::new(observed))
}

fn event_remove(ctx: &Ctx, _: Variant) -> ProbeResult {
    event_on_pages(ctx, FEATURE_EVENT_REMOVE, |a, l| memory::madvise(a, l, libc::MADV_DONTNEED))
}

fn event_unmap(ctx: &Ctx, _: Variant) -> ProbeResult {
    // SAFETY: nothing else uses pages [1,3) of this probe's region.
    event_on_pages(ctx, FEATURE_EVENT_UNMAP, |a, l| {
        Errno::result(unsafe { libc::munmap(a as *mut libc::c_void, l) }).map(drop)
    })
}

fn event_remap(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) = four_served_pages(FEATURE_EVENT_REMAP)?;
    let target = Region::anonymous(2).ctx("mmap (target)")?;
    let (from, to, len) = (region.page(1), target.base(), 2 * region.page_size());
    let worker = worker::spawn("mremap", move || memory::mremap_fixed(from, len, to));
    let (observed, _) = both_readings(ctx, &uffd, &worker, &region, to)?;
    worker.wait(ctx.timeout);
    Ok(Observation::new(observed))
}

fn event_fork(ctx: &Ctx, _: Variant) -> ProbeResult {
    let (uffd, region) =
        registered(FEATURE_EVENT_FORK, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    // The raw fork(2) of remove.fork (glibc's fork() holds malloc's locks while the FORK waits to be
    // read); the child touches nothing and exits.
    let forker = worker::spawn("fork", || {
        // SAFETY: the child only calls _exit.
        let pid = unsafe { crate::kit::helpers::raw_fork() };
        if pid == 0 {
            unsafe { libc::_exit(0) };
        }
        pid
    });
    let read = both_readings(ctx, &uffd, &forker, &region, 0);
    let pid = forker.wait(ctx.timeout).unwrap_or(-1);
    reap(pid, ctx.timeout);
    let (observed, raw) = read?;
    // The crate's reading owned (and closed) the descriptor; the raw reading only names it.
    let closed = match Msg::decode(&raw) {
        // SAFETY: F_GETFD only asks whether the number is an open descriptor.
        Msg::Fork { ufd } => {
            Errno::result(unsafe { libc::fcntl(ufd as i32, libc::F_GETFD) }) == Err(Errno::EBADF)
        }
        _ => false,
    };
    Ok(Observation::new(observed).with("crate_closed_the_descriptor", closed))
}

/// The crate's UffdBuilder and the raw handshake on the same request.
fn reconcile_features(said: &Result<(), String>, kernel: &Result<(), String>, unnamed: u64) -> String {
    let unnamed = match uapi::feature_names(unnamed) {
        n if n.is_empty() => "none".to_string(),
        n => n,
    };
    match (said, kernel) {
        (Ok(()), Ok(())) => format!("agrees, unnamed: {unnamed}"),
        (Err(c), Err(k)) => format!("agrees: both refuse (crate {c}, kernel {k}), unnamed: {unnamed}"),
        (Ok(()), Err(k)) => format!("disagrees: crate created it, kernel UFFDIO_API {k}"),
        (Err(c), Ok(())) => format!("disagrees: crate {c}, kernel UFFDIO_API accepted"),
    }
}

fn features(_: &Ctx, _: Variant) -> ProbeResult {
    let offered = uapi::available_features()?;
    let named = userfaultfd::FeatureFlags::all().bits();
    // As Firecracker builds it (src/vmm/src/persist.rs guest_memory_from_uffd), asking for the offer.
    let built = userfaultfd::UffdBuilder::new()
        .close_on_exec(true)
        .non_blocking(true)
        .user_mode_only(false)
        .require_features(userfaultfd::FeatureFlags::from_bits_retain(offered))
        .create();
    let fd = uapi::syscall(libc::O_CLOEXEC).map_err(uapi::open_failure)?;
    let kernel = uapi::handshake(&fd, offered).map(drop).map_err(errno_name);
    let said = built.as_ref().map(drop).map_err(error_name);
    Ok(Observation::new(reconcile_features(&said, &kernel, offered & !named))
        .with("offered", uapi::feature_names(offered))
        .with("crate_names", uapi::feature_names(named)))
}

/// What the crate's into_raw_fd returned against whether the kernel still has it open.
fn reconcile_into_raw_fd(open: Result<(), Errno>) -> String {
    match open {
        Ok(()) => "agrees: an open descriptor".to_string(),
        Err(Errno::EBADF) => "disagrees: crate returned a descriptor, kernel: it is closed".to_string(),
        Err(e) => format!("fcntl(F_GETFD): {}", errno_name(e)),
    }
}

fn into_raw_fd(_: &Ctx, _: Variant) -> ProbeResult {
    uapi::syscall(libc::O_CLOEXEC).map_err(uapi::open_failure)?;
    let made = userfaultfd::UffdBuilder::new().close_on_exec(true).user_mode_only(false).create();
    let fd = made.map_err(|e| Fail::error(format!("UffdBuilder::create: {}", error_name(&e))))?.into_raw_fd();
    // SAFETY: F_GETFD only asks whether the number is an open descriptor; a probe's child opens
    // nothing meanwhile. An open one is closed again.
    let open = Errno::result(unsafe { libc::fcntl(fd, libc::F_GETFD) }).map(drop);
    if open.is_ok() {
        unsafe { libc::close(fd) };
    }
    Ok(Observation::new(reconcile_into_raw_fd(open)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::expect::Rule;

    fn graded(id: &str, observed: &str) -> (bool, bool) {
        let b = BEHAVIOURS.iter().find(|b| b.id == id).expect(id);
        let v = model::version::KernelVersion::new(6, 12, 57);
        let matches = |rules: &[Rule]| {
            rules
                .iter()
                .filter(|r| r.condition().unwrap().is_none() && r.range().unwrap().contains(v))
                .all(|r| r.parsed().unwrap().matches(observed))
        };
        (matches(&b.rules()), matches(&b.documented_rules()))
    }

    #[test]
    fn a_count_the_kernel_did_not_copy_is_a_disagreement_and_a_finding() {
        let huge = Err(userfaultfd::Error::PartiallyCopied((-libc::EAGAIN) as usize));
        let observed = reconcile_placed(&claim(&huge), 0, "copied");
        assert_eq!(observed, "disagrees: crate PartiallyCopied(18446744073709551605), kernel copied 0 bytes");
        // A kernel that leaves `copy` at the crate's 0 agrees.
        let zero = Err(userfaultfd::Error::PartiallyCopied(0));
        assert_eq!(reconcile_placed(&claim(&zero), 0, "copied"), "agrees: EAGAIN, 0 bytes copied");
        // On 6.12.57 the disagreement is what the sources predict, and the crate's doc is contradicted.
        assert_eq!(graded("clients.crate_copy_eagain", &observed), (true, false));
        assert_eq!(graded("clients.crate_copy_eagain", "agrees: EAGAIN, 0 bytes copied"), (false, true));
        // A count the kernel did place, reported as a failure.
        let failed = Err(userfaultfd::Error::ZeropageFailed(nix_crate::errno::Errno::EAGAIN));
        let z = reconcile_placed(&claim(&failed), 4096, "zeroed");
        assert_eq!(z, "disagrees: crate ZeropageFailed(EAGAIN), kernel zeroed 4096 bytes");
        assert_eq!(graded("clients.crate_zeropage_partial", &z), (true, false));
        assert_eq!(reconcile_placed(&claim(&Ok(4096)), 4096, "zeroed"), "agrees: ok, 4096 bytes zeroed");
    }

    #[test]
    fn a_wake_or_protection_the_kernel_did_not_do_is_unexpected() {
        let observed = reconcile_wake(&Ok(()), false);
        assert!(observed.starts_with("disagrees:"), "{observed}");
        assert_eq!(graded("clients.crate_wake", &observed), (false, true));
        assert_eq!(graded("clients.crate_wake", &reconcile_wake(&Ok(()), true)), (true, true));
        let e = Err(userfaultfd::Error::SystemError(nix_crate::errno::Errno::EINVAL));
        assert!(reconcile_wake(&e, true).starts_with("disagrees: crate SystemError(EINVAL)"));
        let wp = reconcile_wp(&Ok(()), false, &Ok(()), true);
        assert_eq!(wp, "disagrees: crate write_protect Ok(()), remove_write_protection Ok(()); kernel: the store went through, then completed");
        assert_eq!(graded("clients.crate_write_protect", &wp), (false, true));
        let ok = reconcile_wp(&Ok(()), true, &Ok(()), true);
        assert_eq!(graded("clients.crate_write_protect", &ok), (true, true));
    }

    #[test]
    fn a_message_the_crate_reads_otherwise_is_unexpected_and_a_finding() {
        let region = Region::anonymous(4).unwrap();
        let (start, end) = (region.page(1) as u64, region.page(3) as u64);
        let mut raw = [0u8; UFFD_MSG_SIZE];
        raw[0] = 0x15;
        raw[8..16].copy_from_slice(&start.to_ne_bytes());
        raw[16..24].copy_from_slice(&end.to_ne_bytes());
        let kernel = Msg::decode(&raw);
        // The crate's own reading of those bytes agrees.
        let read = read_by_crate(&raw).unwrap();
        let agrees = reconcile_event(kernel, &read, &region, 0);
        assert_eq!(agrees, "agrees: REMOVE pages [1,3)");
        // A reading that swaps REMOVE for UNMAP, or one field off, is a disagreement.
        let unmap = Ok(Some(Event::Unmap { start: start as *mut _, end: end as *mut _ }));
        let swapped = reconcile_event(kernel, &unmap, &region, 0);
        assert_eq!(swapped, "disagrees: crate UNMAP pages [1,3), kernel REMOVE pages [1,3)");
        assert!(!graded("clients.crate_event_remove", &swapped).0);
        let off = Ok(Some(Event::Remove { start: start as *mut _, end: (end + 1) as *mut _ }));
        assert!(reconcile_event(kernel, &off, &region, 0).contains("other fields differ"));
        // An event the crate does not know is its error, and a disagreement.
        raw[0] = 0x17;
        let unknown = reconcile_event(Msg::decode(&raw), &read_by_crate(&raw).unwrap(), &region, 0);
        assert_eq!(unknown, "disagrees: crate Unrecognized event in uffd_msg: 23, kernel event 0x17");
    }

    #[test]
    fn a_closed_descriptor_is_a_disagreement_and_a_finding() {
        let closed = reconcile_into_raw_fd(Err(Errno::EBADF));
        assert_eq!(graded("clients.crate_into_raw_fd", &closed), (true, false));
        assert_eq!(graded("clients.crate_into_raw_fd", &reconcile_into_raw_fd(Ok(()))), (false, true));
    }

    #[test]
    fn a_negotiation_the_two_answer_differently_is_unexpected() {
        let all = uapi::FEATURE_MOVE | uapi::FEATURE_POISON;
        assert_eq!(reconcile_features(&Ok(()), &Ok(()), all), "agrees, unnamed: POISON MOVE");
        let d = reconcile_features(&Err("EINVAL".into()), &Ok(()), all);
        assert_eq!(d, "disagrees: crate EINVAL, kernel UFFDIO_API accepted");
        assert!(!graded("clients.crate_features", &d).0);
        assert!(
            !graded("clients.crate_features", &reconcile_features(&Err("E".into()), &Err("E".into()), 0)).0
        );
    }
}
