//! Prerequisites, in the spirit of the `nix` crate's `require_*` test helpers, but recorded: each
//! helper either returns, or fails the probe as `unsupported` (the kernel lacks it) or `skipped`
//! (the machine lacks it), with one wording. The expectation rows that say a kernel lacks a
//! prerequisite use the same words (`rows.rs`), so the reason in a cell reads like its rule.

use crate::memory::{self, madvise, Region};
use crate::outcome::{errno_name, Context, Fail};
use crate::rows;
use crate::uapi;
use nix::errno::Errno;

/// The kernel has userfaultfd(2): without CONFIG_USERFAULTFD it returns ENOSYS.
pub fn userfaultfd() -> Result<(), Fail> {
    match uapi::syscall(libc::O_CLOEXEC) {
        Err(Errno::ENOSYS) => Err(uapi::open_failure(Errno::ENOSYS)),
        _ => Ok(()),
    }
}

/// The kernel offers every feature bit of `features` (a handshake on a throwaway descriptor).
pub fn features(features: u64) -> Result<(), Fail> {
    let missing = features & !uapi::available_features()?;
    let events = uapi::FEATURE_EVENT_FORK
        | uapi::FEATURE_EVENT_REMAP
        | uapi::FEATURE_EVENT_REMOVE
        | uapi::FEATURE_EVENT_UNMAP;
    let lacks = format!("the kernel does not offer UFFD_FEATURE_{}", uapi::feature_names(missing));
    match missing {
        0 => Ok(()),
        m if m & !events == 0 => Err(Fail::unsupported("no feature", format!("{} ({lacks})", rows::EVENTS))),
        _ => Err(Fail::unsupported("no feature", lacks)),
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

/// A free huge page of the default size, whose size in bytes is returned. None free is a gap of
/// the machine (`skipped`), not of the kernel: a guest reserves them on its kernel command line;
/// the suite does not change a host's vm.nr_hugepages.
pub fn huge_page() -> Result<usize, Fail> {
    let (free, size) = memory::huge_pages();
    if free > 0 && size > 0 {
        return Ok(size);
    }
    Err(Fail::Skipped(
        "no free huge page on this host: reserve some (vm.nr_hugepages, or hugepages=N on the kernel command line)"
            .to_string(),
    ))
}
