//! Prerequisites, in the spirit of the `nix` crate's `require_*` test helpers, but recorded: each
//! helper either returns, or fails the probe as `unsupported` (the kernel lacks it) or `skipped`
//! (the machine lacks it), with one wording. The expectation rows that say a kernel lacks a
//! prerequisite use the same words (`rows.rs`), so the reason in a cell reads like its rule.

use crate::kit::memory::{self, madvise, HugeSize, Region};
use crate::kit::outcome::{errno_name, Context, Fail};
use crate::kit::rows;
use crate::kit::uapi;
use nix::errno::Errno;

/// The kernel has userfaultfd(2): without CONFIG_USERFAULTFD it returns ENOSYS.
pub fn userfaultfd() -> Result<(), Fail> {
    match uapi::syscall(libc::O_CLOEXEC) {
        Err(Errno::ENOSYS) => Err(uapi::open_failure(Errno::ENOSYS)),
        _ => Ok(()),
    }
}

/// The kernel offers every feature bit of `features` (a handshake on a throwaway descriptor).
/// The `unsupported` reason names the missing bits and says since when the kernel has them, in
/// the words of the expectation rows (`rows.rs`).
pub fn features(features: u64) -> Result<(), Fail> {
    let missing = features & !uapi::available_features()?;
    if missing == 0 {
        return Ok(());
    }
    let events = uapi::FEATURE_EVENT_FORK
        | uapi::FEATURE_EVENT_REMAP
        | uapi::FEATURE_EVENT_REMOVE
        | uapi::FEATURE_EVENT_UNMAP;
    let markers = uapi::FEATURE_WP_HUGETLBFS_SHMEM | uapi::FEATURE_WP_UNPOPULATED | uapi::FEATURE_WP_ASYNC;
    let since: &[(u64, &str)] = &[
        (events, rows::EVENTS),
        (uapi::FEATURE_PAGEFAULT_FLAG_WP, rows::WRITE_PROTECT),
        // arm64's own reason (a build for another architecture never names it).
        (
            if cfg!(target_arch = "aarch64") { uapi::FEATURE_PAGEFAULT_FLAG_WP } else { 0 },
            rows::ARCH_WRITE_PROTECT,
        ),
        (uapi::FEATURE_MISSING_HUGETLBFS, rows::MISSING_HUGETLBFS),
        (uapi::FEATURE_MISSING_SHMEM, rows::MISSING_SHMEM),
        (uapi::FEATURE_MINOR_HUGETLBFS, rows::MINOR_HUGETLBFS),
        (uapi::FEATURE_MINOR_SHMEM, rows::MINOR_SHMEM),
        (uapi::FEATURE_EXACT_ADDRESS, rows::EXACT_ADDRESS),
        (uapi::FEATURE_WP_HUGETLBFS_SHMEM, rows::WP_HUGETLBFS_SHMEM),
        (uapi::FEATURE_WP_UNPOPULATED, rows::WP_UNPOPULATED),
        (uapi::FEATURE_POISON, rows::POISON),
        (uapi::FEATURE_WP_ASYNC, rows::WP_ASYNC),
        (uapi::FEATURE_MOVE, rows::MOVE),
        (markers, rows::PTE_MARKERS),
    ];
    let why: Vec<&str> = since.iter().filter(|(bits, _)| missing & bits != 0).map(|(_, why)| *why).collect();
    let lacks = format!("the kernel does not offer UFFD_FEATURE_{}", uapi::feature_names(missing));
    Err(Fail::unsupported(
        "no feature",
        if why.is_empty() { lacks } else { format!("{} ({lacks})", why.join("; or ")) },
    ))
}

/// Runs `f` when the kernel offers `feature` (an optional one the behaviour compares against),
/// else `not offered`.
pub fn if_offered(feature: u64, f: impl FnOnce() -> Result<String, Fail>) -> Result<String, Fail> {
    if uapi::available_features()? & feature == 0 {
        Ok("not offered".to_string())
    } else {
        f()
    }
}

/// The kernel knows the madvise advice `MADV_POPULATE_*`: it succeeds on a plain, unregistered
/// page (unknown advice is EINVAL).
pub fn populate(advice: i32) -> Result<(), Fail> {
    let name =
        if advice == memory::MADV_POPULATE_WRITE { "MADV_POPULATE_WRITE" } else { "MADV_POPULATE_READ" };
    userfaultfd()?;
    let plain = Region::anonymous(1).ctx("mmap")?;
    match madvise(plain.base(), plain.len(), advice) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => Err(Fail::unsupported(
            "EINVAL",
            format!("{} (madvise({name}) on a plain anonymous page fails with EINVAL)", rows::POPULATE),
        )),
        Err(e) => Err(Fail::error(format!("madvise({name}) on a plain page: {}", errno_name(e)))),
    }
}

/// userfaultfd(2) accepts `UFFD_USER_MODE_ONLY` (it rejects an unknown flag with EINVAL).
pub fn user_mode_only() -> Result<(), Fail> {
    match uapi::user_mode_only()? {
        true => Ok(()),
        false => Err(Fail::unsupported(
            "EINVAL",
            format!("{} (userfaultfd(2) rejects the flag with EINVAL)", rows::USER_MODE_ONLY),
        )),
    }
}

/// `n` huge pages of `size` (the kernel's default, or one an architecture adds) that this probe
/// can fault in. Too few is a gap of the machine (`skipped`), not of the kernel: a guest reserves
/// them on its kernel command line; a host only with `--reserve-hugepages` (default size), the
/// suite does not change its vm.nr_hugepages otherwise. (Probes that declare `huge_pages` get
/// them handed out by the harness, so probes running at once never take each other's.)
/// A kernel without hugetlb at all (no huge page size in /proc/meminfo) lacks it: `unsupported`;
/// so does one whose /sys/kernel/mm/hugepages does not list `size`, in the words of the size's
/// expectation rows (`HugeSize::rows`).
pub fn huge_pages(n: u64, size: HugeSize) -> Result<HugePages, Fail> {
    let (default_available, default) = memory::huge_pages();
    if default == 0 {
        return Err(Fail::unsupported(
            "no hugetlb",
            format!("{} (/proc/meminfo has no Hugepagesize)", rows::HUGETLBFS),
        ));
    }
    let (size, available) = match size.kib() {
        None => (default, default_available),
        Some(kib) => {
            let bytes = kib as usize * 1024;
            match memory::huge_pages_of(bytes) {
                Some(available) => (bytes, available),
                None => {
                    let offered: Vec<String> =
                        memory::huge_page_sizes().iter().map(|(s, _)| format!("{} KiB", s / 1024)).collect();
                    return Err(Fail::unsupported(
                        "no such huge page size",
                        format!(
                            "{} (/sys/kernel/mm/hugepages offers {})",
                            size.missing(),
                            if offered.is_empty() { "no size".to_string() } else { offered.join(", ") }
                        ),
                    ));
                }
            }
        }
    };
    if available >= n {
        return Ok(HugePages { size });
    }
    let (kib, hint) =
        (size / 1024, if size == default { "hugepages=N" } else { "hugepagesz=SIZE hugepages=N" });
    Err(Fail::Skipped(format!(
        "the probe needs {n} free {kib} KiB huge pages and this machine has {available}: a host has none \
         unless reserved (vm.nr_hugepages or `--reserve-hugepages N` for the default size, \
         /sys/kernel/mm/hugepages/hugepages-{kib}kB/nr_hugepages for another); a guest reserves them with {hint}"
    )))
}

/// Free huge pages were there: map them. Another process (on a host) may still take them between
/// the check and the mapping; the mapping's ENOMEM then says so as `skipped`.
#[derive(Clone, Copy, Debug)]
pub struct HugePages {
    /// The huge page size, in bytes.
    pub size: usize,
}

impl HugePages {
    /// `n` anonymous huge pages (MAP_PRIVATE | MAP_HUGETLB).
    pub fn anonymous(self, n: usize) -> Result<Region, Fail> {
        Region::hugetlb(n, self.size).map_err(|e| taken("mmap(MAP_HUGETLB)", e))
    }

    /// `n` huge pages of a new MFD_HUGETLB memfd, mapped MAP_SHARED.
    pub fn shared(self, n: usize) -> Result<Region, Fail> {
        Region::memfd_hugetlb(n, self.size).map_err(|e| taken("memfd_create(MFD_HUGETLB) and mmap", e))
    }
}

fn taken(what: &str, e: Errno) -> Fail {
    match e {
        Errno::ENOMEM => Fail::Skipped(format!(
            "{what}: ENOMEM: the free huge pages were taken meanwhile by another process (a host shares them)"
        )),
        e => Fail::error(format!("{what}: {}", errno_name(e))),
    }
}

/// MADV_DONTNEED works on hugetlb mappings (5.18): on an older kernel it fails with EINVAL. Tried
/// on a throwaway MAP_NORESERVE mapping of one huge page, never faulted in (it takes nothing from
/// the pool) and unmapped again.
pub fn hugetlb_dontneed(huge: usize) -> Result<(), Fail> {
    let flags = memory::hugetlb_flags(huge) | libc::MAP_NORESERVE;
    // SAFETY: a fresh mapping that nothing else refers to, unmapped below.
    let ptr =
        unsafe { libc::mmap(std::ptr::null_mut(), huge, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
    if ptr == libc::MAP_FAILED {
        return Err(Fail::error(format!("mmap(MAP_HUGETLB|MAP_NORESERVE): {}", errno_name(Errno::last()))));
    }
    let result = madvise(ptr as usize, huge, libc::MADV_DONTNEED);
    // SAFETY: the mapping made above; nothing refers to it.
    unsafe { libc::munmap(ptr, huge) };
    match result {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => Err(Fail::unsupported(
            "EINVAL",
            format!(
                "{} (madvise(MADV_DONTNEED) on a hugetlb mapping fails with EINVAL)",
                rows::HUGETLB_DONTNEED
            ),
        )),
        Err(e) => {
            Err(Fail::error(format!("madvise(MADV_DONTNEED) on a plain hugetlb page: {}", errno_name(e))))
        }
    }
}
