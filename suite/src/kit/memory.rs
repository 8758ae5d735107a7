//! Memory the probes fault on: mappings of whole pages (anonymous, shmem, hugetlb), madvise and
//! its advice numbers newer than the build machine's headers, plain user-mode loads and stores,
//! residency, and the huge pages the kernel has free.

use crate::kit::rows;
use nix::errno::Errno;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;

/// `MADV_POPULATE_READ` / `MADV_POPULATE_WRITE` (include/uapi/asm-generic/mman-common.h,
/// since Linux 5.14). Kept here so the suite does not depend on the build machine's headers.
pub const MADV_POPULATE_READ: i32 = 22;
pub const MADV_POPULATE_WRITE: i32 = 23;

/// The size of a hugetlb variant's huge pages. The default is whatever the running kernel's
/// default is (`Hugepagesize:` in /proc/meminfo), never assumed; every other size is one an
/// architecture offers beside it, named with the kernel source that offers it and the expectation
/// rows of the kernels that do not ([`HugeSize::rows`]), so a kernel without it is `unsupported`
/// where that is expected and `unexpected` elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugeSize {
    /// The kernel's default huge page size (2 MiB on x86-64 and on arm64 with 4 KiB pages).
    Default,
    /// 64 KiB: arm64 with 4 KiB base pages maps it with 16 contiguous PTEs (CONT_PTE_SIZE):
    /// arch/arm64/mm/hugetlbpage.c `hugetlbpage_init` registers it on every base page size
    /// (`hugetlb_add_hstate(CONT_PTE_SHIFT - PAGE_SHIFT)`, v5.10 and v6.12, beside PUD, CONT_PMD
    /// and PMD) and `arch_hugetlb_valid_size` accepts it for `hugepagesz=64K`; it is 64 KiB only
    /// with 4 KiB pages (2 MiB with 16 KiB or 64 KiB pages). Its faults, copies and removals go
    /// through the same mm/hugetlb.c paths as 2 MiB pages, with `set_huge_pte_at` /
    /// `huge_ptep_get_and_clear` writing or clearing the 16 entries.
    Cont64K,
    /// 32 MiB: arm64 with 4 KiB base pages maps it with 16 contiguous PMDs of 2 MiB (CONT_PMD_SIZE,
    /// `hugetlb_add_hstate(CONT_PMD_SHIFT - PAGE_SHIFT)` in `hugetlbpage_init`); with 16 KiB pages
    /// it is one PMD (PMD_SIZE), with 64 KiB pages there is none (PMD 512 MiB, CONT_PMD 16 GiB,
    /// CONT_PTE 2 MiB; arch/arm64/Kconfig ARM64_CONT_PMD_SHIFT). `arch_hugetlb_valid_size`
    /// (v5.10; `__hugetlb_valid_size` in v6.1, v6.12, v7.2) accepts it for `hugepagesz=32M`. It is
    /// gigantic (above the buddy allocator's largest order): its pages exist only when reserved at
    /// boot (or from CMA), never by raising nr_hugepages.
    Cont32M,
}

impl HugeSize {
    /// The suffix of a size variant's id (`remove.hugetlb_refault_64k`).
    pub const fn suffix(self) -> &'static str {
        match self {
            HugeSize::Default => "",
            HugeSize::Cont64K => "_64k",
            HugeSize::Cont32M => "_32m",
        }
    }

    /// The size in KiB, as /sys/kernel/mm/hugepages names it (`hugepages-64kB`); `None` for the
    /// default, which only the running kernel knows.
    pub const fn kib(self) -> Option<u64> {
        match self {
            HugeSize::Default => None,
            HugeSize::Cont64K => Some(64),
            HugeSize::Cont32M => Some(32 * 1024),
        }
    }

    /// The size in bytes on the running kernel (0 for the default where it has no hugetlb).
    pub fn bytes(self) -> usize {
        self.kib().map_or_else(|| huge_pages().1, |kib| kib as usize * 1024)
    }

    /// How a summary names it.
    pub const fn label(self) -> &'static str {
        match self {
            HugeSize::Default => "default-size",
            HugeSize::Cont64K => "64 KiB (arm64 contiguous-PTE)",
            HugeSize::Cont32M => "32 MiB (arm64 contiguous-PMD)",
        }
    }

    /// The expectation rows of the kernels that do not offer this size (the `unsupported` wording
    /// is `require::huge_pages`'), ahead of the base behaviour's own rows.
    pub const fn rows(self) -> &'static [(&'static str, &'static str)] {
        match self {
            HugeSize::Default => &[],
            HugeSize::Cont64K => &[rows::NO_CONT_PTE_64K_ARCH, rows::NO_CONT_PTE_64K_PAGES],
            HugeSize::Cont32M => &[rows::NO_CONT_PMD_32M_ARCH, rows::NO_CONT_PMD_32M_PAGES],
        }
    }

    /// The wording of a kernel that does not offer this size (`rows.rs`).
    pub fn missing(self) -> &'static str {
        match self {
            HugeSize::Default => rows::HUGETLBFS,
            HugeSize::Cont64K => rows::CONT_PTE_64K,
            HugeSize::Cont32M => rows::CONT_PMD_32M,
        }
    }

    /// What a declaration adds to its base's citation.
    pub const fn citation(self) -> &'static str {
        match self {
            HugeSize::Default => "",
            HugeSize::Cont64K => {
                "arch/arm64/mm/hugetlbpage.c hugetlbpage_init, arch_hugetlb_valid_size, set_huge_pte_at, \
                 huge_ptep_get_and_clear (v5.10, v6.12): 64 KiB huge pages as CONT_PTES contiguous PTEs with \
                 4 KiB pages; mm/hugetlb.c hugetlb_fault, hugetlb_mfill_atomic_pte (v6.12) take every hstate \
                 alike"
            }
            HugeSize::Cont32M => {
                "arch/arm64/mm/hugetlbpage.c hugetlbpage_init, arch_hugetlb_valid_size (v5.10) / \
                 __hugetlb_valid_size (v6.1, v6.12, v7.2), set_huge_pte_at, huge_ptep_get_and_clear: 32 MiB \
                 huge pages as CONT_PMDS contiguous PMDs with 4 KiB pages (CONT_PMD_SIZE); mm/hugetlb.c \
                 hugetlb_fault, hugetlb_mfill_atomic_pte (v6.12) take every hstate alike"
            }
        }
    }
}

pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// A mapping of whole pages: anonymous private, a shared memfd (shmem), or anonymous hugetlb.
///
/// It is never unmapped: probe processes are short-lived, and a thread that a failed probe leaves
/// blocked on one of its pages must never see the mapping vanish under it.
pub struct Region {
    base: NonNull<u8>,
    pages: usize,
    page: usize,
    /// The memfd behind a shared mapping.
    pub memfd: Option<OwnedFd>,
}

// SAFETY: the region is plain memory; probes coordinate access to it through the uffd protocol.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    pub fn anonymous(pages: usize) -> Result<Region, Errno> {
        Region::map(pages, page_size(), libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, None)
    }

    /// A MAP_SHARED mapping of a new memfd of `pages` pages (shmem).
    pub fn memfd(pages: usize) -> Result<Region, Errno> {
        let fd = nix::sys::memfd::memfd_create(c"uffdc", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
        nix::unistd::ftruncate(&fd, (pages * page_size()) as libc::off_t)?;
        Region::map(pages, page_size(), libc::MAP_SHARED, Some(fd))
    }

    /// A MAP_SHARED mapping of a new hugetlbfs memfd (MFD_HUGETLB) of `pages` huge pages of
    /// `huge` bytes (MFD_HUGE_64KB-style size bits).
    pub fn memfd_hugetlb(pages: usize, huge: usize) -> Result<Region, Errno> {
        use nix::sys::memfd::MFdFlags;
        let flags =
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_HUGETLB | MFdFlags::from_bits_retain(huge_size_bits(huge));
        let fd = nix::sys::memfd::memfd_create(c"uffdc-huge", flags)?;
        nix::unistd::ftruncate(&fd, (pages * huge) as libc::off_t)?;
        Region::map(pages, huge, libc::MAP_SHARED, Some(fd))
    }

    /// Another MAP_SHARED mapping of the same memfd, not registered anywhere: a way to reach the
    /// page cache behind a registered one (hugetlbfs has no write(2)).
    pub fn alias(&self) -> Result<Region, Errno> {
        let fd = self.memfd.as_ref().ok_or(Errno::EINVAL)?.try_clone().map_err(|_| Errno::EMFILE)?;
        Region::map(self.pages, self.page, libc::MAP_SHARED, Some(fd))
    }

    /// Anonymous memory backed by huge pages of `huge` bytes (MAP_HUGETLB with MAP_HUGE_64KB-style
    /// size bits).
    pub fn hugetlb(pages: usize, huge: usize) -> Result<Region, Errno> {
        Region::map(pages, huge, hugetlb_flags(huge), None)
    }

    fn map(pages: usize, page: usize, flags: i32, memfd: Option<OwnedFd>) -> Result<Region, Errno> {
        let fd = memfd.as_ref().map_or(-1, |f| f.as_raw_fd());
        // SAFETY: a fresh mapping aliases nothing the program holds references to.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), pages * page, libc::PROT_READ | libc::PROT_WRITE, flags, fd, 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let base = NonNull::new(ptr.cast()).expect("mmap never returns NULL");
        Ok(Region { base, pages, page, memfd })
    }

    pub fn base(&self) -> usize {
        self.base.as_ptr() as usize
    }
    pub fn len(&self) -> usize {
        self.pages * self.page
    }
    pub fn page_size(&self) -> usize {
        self.page
    }
    /// Whether the pages are huge pages (hugetlb), not base pages.
    pub fn is_hugetlb(&self) -> bool {
        self.page != page_size()
    }
    /// Whether the mapping is MAP_SHARED of a memfd (shmem, or hugetlbfs when huge).
    pub fn is_shared(&self) -> bool {
        self.memfd.is_some()
    }
    /// Address of page `i`.
    pub fn page(&self, i: usize) -> usize {
        assert!(i < self.pages);
        self.base() + i * self.page
    }
    /// Which page an address falls in, relative to the region (may be out of range).
    pub fn page_index(&self, addr: u64) -> i64 {
        (addr as i64 - self.base() as i64).div_euclid(self.page as i64)
    }
    /// Writes `byte` over page `i` of the memfd behind the region, through the file (pwrite).
    pub fn fill_file_page(&self, i: usize, byte: u8) -> Result<(), Errno> {
        let fd = self.memfd.as_ref().ok_or(Errno::EINVAL)?;
        let data = vec![byte; self.page];
        let n = nix::sys::uio::pwrite(fd, &data, (i * self.page) as libc::off_t)?;
        if n == data.len() {
            Ok(())
        } else {
            Err(Errno::EIO)
        }
    }
}

/// madvise(2) on a raw range.
pub fn madvise(addr: usize, len: usize, advice: i32) -> Result<(), Errno> {
    // SAFETY: advice on a range the caller mapped; the kernel validates the range.
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, len, advice) };
    Errno::result(r).map(drop)
}

/// mremap(2) of `len` bytes at `from` to exactly `to` (MREMAP_MAYMOVE | MREMAP_FIXED, over whatever
/// was mapped there): the new address.
pub fn mremap_fixed(from: usize, len: usize, to: usize) -> Result<usize, Errno> {
    let flags = libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED;
    // SAFETY: moves a range the caller mapped over another range the caller mapped.
    let r = unsafe { libc::mremap(from as *mut libc::c_void, len, len, flags, to as *mut libc::c_void) };
    if r == libc::MAP_FAILED {
        Err(Errno::last())
    } else {
        Ok(r as usize)
    }
}

/// Writes a byte with a plain user-mode store.
pub fn store(addr: usize, byte: u8) {
    // SAFETY: callers pass addresses inside a live Region.
    unsafe { std::ptr::write_volatile(addr as *mut u8, byte) }
}

/// Reads a byte with a plain user-mode load.
pub fn load(addr: usize) -> u8 {
    // SAFETY: callers pass addresses inside a live Region.
    unsafe { std::ptr::read_volatile(addr as *const u8) }
}

/// Whether all of `[addr, addr+len)` is resident (mincore(2)), without touching it. mincore
/// reports per base page, so a huge page needs one status byte per base page it spans.
pub fn resident(addr: usize, len: usize) -> Result<bool, Errno> {
    let mut vec = vec![0u8; len.div_ceil(page_size())];
    // SAFETY: `vec` has one status byte for every base page of the range.
    let r = unsafe { libc::mincore(addr as *mut libc::c_void, len, vec.as_mut_ptr()) };
    Errno::result(r)?;
    Ok(vec.iter().all(|b| b & 1 != 0))
}

/// Huge pages of the default size that a new mapping can still fault in (free and not reserved
/// by another mapping), and that size in bytes (from /proc/meminfo).
pub fn huge_pages() -> (u64, usize) {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let available = field("HugePages_Free:").saturating_sub(field("HugePages_Rsvd:"));
    (available, field("Hugepagesize:") as usize * 1024)
}

/// Where the kernel lists the huge page sizes it offers, one `hugepages-<KiB>kB` folder each
/// (mm/hugetlb.c hugetlb_sysfs_init: one per hstate).
const HUGEPAGES_SYSFS: &str = "/sys/kernel/mm/hugepages";

/// Every huge page size the kernel offers, in bytes, smallest first, with the pages of that size
/// a new mapping can still fault in (free, not reserved by another mapping).
pub fn huge_page_sizes() -> Vec<(usize, u64)> {
    let mut sizes: Vec<(usize, u64)> = std::fs::read_dir(HUGEPAGES_SYSFS)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kib: usize = name.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse().ok()?;
            Some((kib * 1024, huge_pages_of(kib * 1024)?))
        })
        .collect();
    sizes.sort();
    sizes
}

/// Huge pages of `size` bytes a new mapping can still fault in; `None` when the kernel offers no
/// such size.
pub fn huge_pages_of(size: usize) -> Option<u64> {
    let dir = format!("{HUGEPAGES_SYSFS}/hugepages-{}kB", size / 1024);
    let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).ok()?.trim().parse::<u64>().ok();
    Some(read("free_hugepages")?.saturating_sub(read("resv_hugepages").unwrap_or(0)))
}

/// The size bits of mmap's MAP_HUGETLB and memfd_create's MFD_HUGETLB: log2 of the size at bit 26
/// (include/uapi/asm-generic/hugetlb_encode.h, HUGETLB_FLAG_ENCODE_SHIFT; MAP_HUGE_64KB is
/// 16 << 26). Naming the default size this way picks the same pool as naming none.
fn huge_size_bits(huge: usize) -> u32 {
    assert!(huge.is_power_of_two(), "a huge page size is a power of two");
    huge.trailing_zeros() << 26
}

/// mmap flags of anonymous private memory on huge pages of `huge` bytes.
pub fn hugetlb_flags(huge: usize) -> i32 {
    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | huge_size_bits(huge) as i32
}

/// Runs `f` on `len` bytes of `byte`: a source to copy pages from, kept per thread and refilled,
/// so that a huge page's worth of source is faulted in once per thread, not for every copy.
pub fn with_filled<T>(byte: u8, len: usize, f: impl FnOnce(&[u8]) -> T) -> T {
    thread_local!(static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) });
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        buf[..len].fill(byte);
        f(&buf[..len])
    })
}

/// A page filled with `version` as little-endian u64 words: what the race and stress probes serve,
/// so that a page's content says which version of it was installed.
pub fn versioned_page(version: u64, page: usize) -> Vec<u8> {
    // Word by word: a byte-at-a-time iterator costs tens of thousands of emulated instructions a
    // page under TCG (millions for a huge page).
    let mut bytes = vec![0u8; page];
    for word in bytes.chunks_exact_mut(8) {
        word.copy_from_slice(&version.to_le_bytes());
    }
    bytes
}

/// Reads the first u64 word of a page with a plain user-mode load.
pub fn load_u64(addr: usize) -> u64 {
    // SAFETY: callers pass addresses inside a live Region.
    unsafe { std::ptr::read_volatile(addr as *const u64) }
}

/// This process's `/proc/self/pagemap` entry for the page at `addr` (a u64: present bit 63,
/// uffd-wp bit 57, ...).
pub fn pagemap(addr: usize) -> Result<u64, Errno> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open("/proc/self/pagemap")
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let mut entry = [0u8; 8];
    file.read_exact_at(&mut entry, (addr / page_size() * 8) as u64)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    Ok(u64::from_le_bytes(entry))
}

/// `pagemap` entry bits (fs/proc/task_mmu.c).
pub const PM_UFFD_WP: u64 = 1 << 57;

/// PAGEMAP_SCAN categories (include/uapi/linux/fs.h, since 6.7).
pub const PAGE_IS_WRITTEN: u64 = 1 << 1;
/// PAGEMAP_SCAN flag: write-protect the pages that matched.
pub const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
/// PAGEMAP_SCAN flag: fail (EPERM) on a page not registered for async write-protect.
pub const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;

#[repr(C)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

nix::ioctl_readwrite!(ioctl_pagemap_scan, b'f', 16, PmScanArg);

/// PAGEMAP_SCAN (6.7) over `[start, end)` of this process: the regions whose pages have every
/// category of `mask`, as `(start, end, categories)`.
pub fn pagemap_scan(start: usize, end: usize, flags: u64, mask: u64) -> Result<Vec<(u64, u64, u64)>, Errno> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open("/proc/self/pagemap")
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let mut regions = vec![[0u64; 3]; 64];
    let mut arg = PmScanArg {
        size: std::mem::size_of::<PmScanArg>() as u64,
        flags,
        start: start as u64,
        end: end as u64,
        walk_end: 0,
        vec: regions.as_mut_ptr() as u64,
        vec_len: regions.len() as u64,
        max_pages: 0,
        category_inverted: 0,
        category_mask: mask,
        category_anyof_mask: 0,
        return_mask: mask,
    };
    // SAFETY: a properly initialised pm_scan_arg whose vec points at `regions`, which outlives the call.
    let n = unsafe { ioctl_pagemap_scan(file.as_raw_fd(), &mut arg) }?;
    Ok(regions[..n as usize].iter().map(|r| (r[0], r[1], r[2])).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_page_sizes_are_encoded_as_the_kernel_headers_do() {
        // include/uapi/linux/mman.h: MAP_HUGE_64KB = 16 << 26, MAP_HUGE_2MB = 21 << 26.
        assert_eq!(super::huge_size_bits(64 << 10), 16 << 26);
        assert_eq!(super::huge_size_bits(2 << 20), 21 << 26);
        assert_eq!(super::huge_size_bits(1 << 30), 30 << 26);
    }

    #[test]
    fn a_versioned_page_holds_its_version_in_every_word() {
        let page = super::versioned_page(0x0102_0304_0506_0708, 4096);
        assert_eq!(page.len(), 4096);
        assert!(page
            .chunks_exact(8)
            .all(|w| u64::from_le_bytes(w.try_into().unwrap()) == 0x0102_0304_0506_0708));
    }
}
