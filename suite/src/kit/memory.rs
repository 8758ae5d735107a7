//! Memory the probes fault on: mappings of whole pages (anonymous, shmem, hugetlb), madvise and
//! its advice numbers newer than the build machine's headers, plain user-mode loads and stores,
//! residency, and the huge pages the kernel has free.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;

/// `MADV_POPULATE_READ` / `MADV_POPULATE_WRITE` (include/uapi/asm-generic/mman-common.h,
/// since Linux 5.14). Kept here so the suite does not depend on the build machine's headers.
pub const MADV_POPULATE_READ: i32 = 22;
pub const MADV_POPULATE_WRITE: i32 = 23;

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

    /// A MAP_SHARED mapping of a new hugetlbfs memfd (MFD_HUGETLB) of `pages` huge pages of the
    /// default size `huge`.
    pub fn memfd_hugetlb(pages: usize, huge: usize) -> Result<Region, Errno> {
        let fd = nix::sys::memfd::memfd_create(
            c"uffdc-huge",
            nix::sys::memfd::MFdFlags::MFD_CLOEXEC | nix::sys::memfd::MFdFlags::MFD_HUGETLB,
        )?;
        nix::unistd::ftruncate(&fd, (pages * huge) as libc::off_t)?;
        Region::map(pages, huge, libc::MAP_SHARED, Some(fd))
    }

    /// Another MAP_SHARED mapping of the same memfd, not registered anywhere: a way to reach the
    /// page cache behind a registered one (hugetlbfs has no write(2)).
    pub fn alias(&self) -> Result<Region, Errno> {
        let fd = self.memfd.as_ref().ok_or(Errno::EINVAL)?.try_clone().map_err(|_| Errno::EMFILE)?;
        Region::map(self.pages, self.page, libc::MAP_SHARED, Some(fd))
    }

    /// Anonymous memory backed by huge pages of `huge` bytes (MAP_HUGETLB).
    pub fn hugetlb(pages: usize, huge: usize) -> Result<Region, Errno> {
        Region::map(pages, huge, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB, None)
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
    fn a_versioned_page_holds_its_version_in_every_word() {
        let page = super::versioned_page(0x0102_0304_0506_0708, 4096);
        assert_eq!(page.len(), 4096);
        assert!(page
            .chunks_exact(8)
            .all(|w| u64::from_le_bytes(w.try_into().unwrap()) == 0x0102_0304_0506_0708));
    }
}
