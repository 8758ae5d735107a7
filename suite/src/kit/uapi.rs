//! The kernel's userfaultfd interface, as raw as the suite needs it: userfaultfd(2) and
//! `/dev/userfaultfd`, the UFFDIO_API handshake with its raw answer (feature and ioctl bits), the
//! bit tables by name, and what a failed open says about the kernel. `uffd.rs` builds the ready
//! descriptor on this.

use crate::kit::outcome::{errno_name, Context, Fail};
use nix::errno::Errno;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use userfaultfd_sys as sys;

/// `UFFD_USER_MODE_ONLY` (include/uapi/linux/userfaultfd.h, since 5.11): the flag to
/// userfaultfd(2) that limits the descriptor to faults taken in user mode.
pub const UFFD_USER_MODE_ONLY: i32 = 1;

/// Feature bits of `uffdio_api.features` by name, from include/uapi/linux/userfaultfd.h
/// (kept here rather than taken from the build machine's headers, which may be older).
pub const FEATURES: &[(u32, &str)] = &[
    (0, "PAGEFAULT_FLAG_WP"),
    (1, "EVENT_FORK"),
    (2, "EVENT_REMAP"),
    (3, "EVENT_REMOVE"),
    (4, "MISSING_HUGETLBFS"),
    (5, "MISSING_SHMEM"),
    (6, "EVENT_UNMAP"),
    (7, "SIGBUS"),
    (8, "THREAD_ID"),
    (9, "MINOR_HUGETLBFS"),
    (10, "MINOR_SHMEM"),
    (11, "EXACT_ADDRESS"),
    (12, "WP_HUGETLBFS_SHMEM"),
    (13, "WP_UNPOPULATED"),
    (14, "POISON"),
    (15, "WP_ASYNC"),
    (16, "MOVE"),
    (17, "RWP"),
    (18, "RWP_ASYNC"),
];

pub const FEATURE_PAGEFAULT_FLAG_WP: u64 = 1 << 0;
pub const FEATURE_EVENT_FORK: u64 = 1 << 1;
pub const FEATURE_EVENT_REMAP: u64 = 1 << 2;
pub const FEATURE_EVENT_REMOVE: u64 = 1 << 3;
pub const FEATURE_MISSING_HUGETLBFS: u64 = 1 << 4;
pub const FEATURE_MISSING_SHMEM: u64 = 1 << 5;
pub const FEATURE_EVENT_UNMAP: u64 = 1 << 6;
pub const FEATURE_SIGBUS: u64 = 1 << 7;
pub const FEATURE_THREAD_ID: u64 = 1 << 8;
pub const FEATURE_MINOR_HUGETLBFS: u64 = 1 << 9;
pub const FEATURE_MINOR_SHMEM: u64 = 1 << 10;
pub const FEATURE_EXACT_ADDRESS: u64 = 1 << 11;
pub const FEATURE_WP_HUGETLBFS_SHMEM: u64 = 1 << 12;
pub const FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
pub const FEATURE_POISON: u64 = 1 << 14;
pub const FEATURE_WP_ASYNC: u64 = 1 << 15;
pub const FEATURE_MOVE: u64 = 1 << 16;

/// `sizeof(struct uffd_msg)`: the kernel's messages are read whole, one or more per read(2).
pub const UFFD_MSG_SIZE: usize = 32;

/// `UFFDIO_COPY_MODE_WP`: the copied page is mapped write-protected.
pub const COPY_MODE_WP: u64 = 1 << 1;

/// `struct uffdio_move` (include/uapi/linux/userfaultfd.h, since 6.8): kept here, the build
/// machine's headers may be older.
#[repr(C)]
pub struct UffdioMove {
    pub dst: u64,
    pub src: u64,
    pub len: u64,
    pub mode: u64,
    /// Bytes moved, or a negated errno.
    pub moved: i64,
}

/// `struct uffdio_poison` (since 6.6).
#[repr(C)]
pub struct UffdioPoison {
    pub start: u64,
    pub len: u64,
    pub mode: u64,
    pub updated: i64,
}

/// Names the set bits of a feature mask in bit order; bits without a name read `bitN`.
pub fn feature_names(bits: u64) -> String {
    bit_names(bits, FEATURES)
}

/// The ioctl bits of `uffdio_api.ioctls` / `uffdio_register.ioctls`, by `_UFFDIO_*` number.
pub const IOCTLS: &[(u32, &str)] = &[
    (0x00, "REGISTER"),
    (0x01, "UNREGISTER"),
    (0x02, "WAKE"),
    (0x03, "COPY"),
    (0x04, "ZEROPAGE"),
    (0x05, "MOVE"),
    (0x06, "WRITEPROTECT"),
    (0x07, "CONTINUE"),
    (0x08, "POISON"),
    (0x09, "RWPROTECT"),
    (0x0A, "SET_MODE"),
    (0x3F, "API"),
];

pub fn ioctl_names(bits: u64) -> String {
    bit_names(bits, IOCTLS)
}

fn bit_names(bits: u64, table: &[(u32, &str)]) -> String {
    (0..64)
        .filter(|b| bits & (1u64 << b) != 0)
        .map(|b| match table.iter().find(|(bit, _)| *bit == b) {
            Some((_, name)) => name.to_string(),
            None => format!("bit{b}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

nix::ioctl_readwrite!(ioctl_api, sys::UFFDIO, sys::_UFFDIO_API, sys::uffdio_api);
nix::ioctl_readwrite!(ioctl_copy, sys::UFFDIO, sys::_UFFDIO_COPY, sys::uffdio_copy);
nix::ioctl_write_int_bad!(ioctl_new_uffd, nix::request_code_none!(0xAA, 0x00));
nix::ioctl_readwrite!(ioctl_move, 0xAA, 0x05, UffdioMove);
nix::ioctl_readwrite!(ioctl_poison, 0xAA, 0x08, UffdioPoison);

/// The kernel's answer to UFFDIO_API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Api {
    pub features: u64,
    pub ioctls: u64,
}

/// userfaultfd(2).
pub fn syscall(flags: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: plain syscall; on success it returns a new descriptor that we own.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags as libc::c_long) };
    let fd = Errno::result(fd)?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Why `/dev/userfaultfd` gave no descriptor.
#[derive(Debug)]
pub enum DevError {
    Open(Errno),
    Ioctl(Errno),
}

/// `/dev/userfaultfd` + USERFAULTFD_IOC_NEW (since 6.1).
pub fn from_device(flags: i32) -> Result<OwnedFd, DevError> {
    let dev = nix::fcntl::open(
        "/dev/userfaultfd",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(DevError::Open)?;
    // SAFETY: USERFAULTFD_IOC_NEW takes the userfaultfd(2) flags as its integer argument and
    // returns a new descriptor.
    let fd = unsafe { ioctl_new_uffd(dev.as_raw_fd(), flags) }.map_err(DevError::Ioctl)?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// UFFDIO_API with the given feature request.
pub fn handshake(fd: &OwnedFd, features: u64) -> Result<Api, Errno> {
    let mut api = sys::uffdio_api { api: sys::UFFD_API, features, ioctls: 0 };
    // SAFETY: the argument is a properly initialised uffdio_api.
    unsafe { ioctl_api(fd.as_raw_fd(), &mut api) }?;
    Ok(Api { features: api.features, ioctls: api.ioctls })
}

/// Whether userfaultfd(2) accepts UFFD_USER_MODE_ONLY (5.11 and later): `false` when it rejects
/// the flag with EINVAL; the kernel lacking userfaultfd altogether is `unsupported`.
pub fn user_mode_only() -> Result<bool, Fail> {
    match syscall(libc::O_CLOEXEC | UFFD_USER_MODE_ONLY) {
        Ok(_) => Ok(true),
        Err(Errno::EINVAL) => Ok(false),
        Err(e) => Err(open_failure(e)),
    }
}

/// Maps a failed userfaultfd(2) to what it tells about the kernel.
pub fn open_failure(e: Errno) -> Fail {
    match e {
        Errno::ENOSYS => Fail::unsupported(
            "ENOSYS",
            format!("{} (userfaultfd(2) returns ENOSYS)", crate::kit::rows::BUILT_WITHOUT),
        ),
        Errno::EPERM => {
            Fail::error("userfaultfd(2): EPERM: run the suite as root (or set vm.unprivileged_userfaultfd=1)")
        }
        e => Fail::error(format!("userfaultfd(2): {}", errno_name(e))),
    }
}

/// The features this kernel offers (a handshake on a throwaway descriptor).
pub fn available_features() -> Result<u64, Fail> {
    let fd = syscall(libc::O_CLOEXEC).map_err(open_failure)?;
    handshake(&fd, 0).ctx("UFFDIO_API").map(|api| api.features)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_bits_and_keeps_unknown_ones() {
        assert_eq!(super::feature_names(0b1001 | 1 << 40), "PAGEFAULT_FLAG_WP EVENT_REMOVE bit40");
        assert_eq!(super::ioctl_names(1 << 0x3F | 1 << 3), "COPY API");
        assert_eq!(super::feature_names(0), "");
    }
}
