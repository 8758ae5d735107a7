//! What varies between behaviours that share one probe: the memory its region is made of (the
//! backing axis: anonymous, shmem, hugetlb private or shared), for hugetlb the huge page size
//! ([`HugeSize`]: the kernel's default, or one an architecture adds, such as arm64's 64 KiB
//! contiguous PTEs), and the access path that faults (a load, a compare, a copy,
//! MADV_POPULATE_READ). A declaration names its variant; the probe takes it (`fn(&Ctx, Variant)`),
//! so a hugetlb variant of an existing probe is one declaration:
//! `Behaviour { id: "...", huge_pages: 1, variant: Variant::HUGETLB, ..Behaviour::like(remove::BEHAVIOURS,
//! "remove.refault") }`, and a size variant of a hugetlb behaviour is one line:
//! `sized(BEHAVIOURS, "remove.hugetlb_refault", Cont64K, "remove.hugetlb_refault_64k")` (see
//! `behaviour::sized`). That holds for the probes that make their memory
//! with [`Variant::region`] (the remote family, `remove.refault`, the copy probes, the stale-copy
//! race, `populate`'s missing-page probe, the Go probes' access path, the hugetlb family's REMOVE
//! probes); a probe that takes `_: Variant` observes one fixed scenario and must be taught its
//! variant first.

pub use crate::kit::memory::HugeSize;
use crate::kit::memory::{Region, MADV_POPULATE_READ};
use crate::kit::outcome::{Context, Fail};
use crate::kit::require;
use crate::kit::uffd::{backing_features, registered, RegisterMode, Uffd};

/// The memory a probe's region is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// MAP_PRIVATE | MAP_ANONYMOUS.
    Anonymous,
    /// A memfd, mapped MAP_SHARED.
    Shmem,
    /// Huge pages of the variant's [`HugeSize`], MAP_PRIVATE | MAP_HUGETLB.
    HugetlbPrivate,
    /// Huge pages of the variant's [`HugeSize`] of a MFD_HUGETLB memfd, mapped MAP_SHARED.
    HugetlbShared,
}

/// How the faulting thread touches the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A plain load.
    Load,
    /// A store (in the `populate` family: MADV_POPULATE_WRITE).
    Write,
    /// A compare of the page's bytes (Go: `bytes.Equal`).
    Equal,
    /// A copy out of the page (Go: `copy`).
    Copy,
    /// MADV_POPULATE_READ before touching it (in a system call).
    Populate,
}

impl Access {
    /// The name the Go workload takes.
    pub fn name(self) -> &'static str {
        match self {
            Access::Load => "load",
            Access::Write => "write",
            Access::Equal => "equal",
            Access::Copy => "copy",
            Access::Populate => "populate",
        }
    }

    /// What the kernel must have for this access path: MADV_POPULATE_READ for `Populate`.
    pub fn require(self) -> Result<(), Fail> {
        match self {
            Access::Populate => require::populate(MADV_POPULATE_READ),
            _ => Ok(()),
        }
    }
}

/// A behaviour's variant of its probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    pub backing: Backing,
    pub access: Access,
    /// The huge page size of a hugetlb backing (unused by the others).
    pub huge: HugeSize,
}

impl Variant {
    /// Anonymous memory, loaded: what a declaration that names no variant gets.
    pub const PLAIN: Variant = Variant::on(Backing::Anonymous);
    pub const HUGETLB: Variant = Variant::on(Backing::HugetlbPrivate);
    pub const HUGETLB_SHARED: Variant = Variant::on(Backing::HugetlbShared);

    /// `backing`, loaded (huge pages of the default size).
    pub const fn on(backing: Backing) -> Variant {
        Variant { backing, access: Access::Load, huge: HugeSize::Default }
    }

    /// The plain variant through `access`.
    pub const fn access(access: Access) -> Variant {
        Variant { access, ..Variant::PLAIN }
    }

    /// This variant through `access`.
    pub const fn through(self, access: Access) -> Variant {
        Variant { access, ..self }
    }

    /// This variant on huge pages of `size`.
    pub const fn sized(self, huge: HugeSize) -> Variant {
        Variant { huge, ..self }
    }

    pub const fn is_hugetlb(self) -> bool {
        matches!(self.backing, Backing::HugetlbPrivate | Backing::HugetlbShared)
    }

    /// `n` free huge pages of this variant's size (see [`require::huge_pages`]). A kernel without
    /// userfaultfd says so first, whatever else it lacks (a size another architecture has): the
    /// first of its rows is that one.
    pub fn huge_pages(self, n: usize) -> Result<require::HugePages, Fail> {
        require::userfaultfd()?;
        require::huge_pages(n as u64, self.huge)
    }

    /// `pages` pages of the variant's backing (huge pages for hugetlb: `skipped` or
    /// `unsupported` without them).
    pub fn region(self, pages: usize) -> Result<Region, Fail> {
        match self.backing {
            Backing::Anonymous => Region::anonymous(pages).ctx("mmap"),
            Backing::Shmem => Region::memfd(pages).ctx("memfd"),
            Backing::HugetlbPrivate => self.huge_pages(pages)?.anonymous(pages),
            Backing::HugetlbShared => self.huge_pages(pages)?.shared(pages),
        }
    }

    /// As [`Variant::region`], for a probe that removes pages with MADV_DONTNEED: private hugetlb
    /// memory also needs a kernel that allows it there (5.18+, else `unsupported`).
    pub fn removable(self, pages: usize) -> Result<Region, Fail> {
        if self.backing != Backing::HugetlbPrivate {
            return self.region(pages);
        }
        let huge = self.huge_pages(pages)?;
        require::hugetlb_dontneed(huge.size)?;
        huge.anonymous(pages)
    }

    /// A new uffd with `features` and the ones the backing needs, and `region` registered on it
    /// for MISSING faults.
    pub fn registered(self, features: u64, region: Region) -> Result<(Uffd, Region), Fail> {
        let features = features | backing_features(&region);
        registered(features, region, RegisterMode::MISSING)
    }
}
