//! `api`: what the userfaultfd interface itself offers.

use crate::catalogue::Behaviour;
use crate::probe::{Context, Ctx, Fail, Observation, ProbeResult};
use crate::sys::errno_name;
use crate::uffd::{self, feature_names, ioctl_names, open_failure, DevError, UFFD_USER_MODE_ONLY};
use nix::errno::Errno;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// The features of 4.11 (events, hugetlbfs and shmem), which every later row repeats.
macro_rules! since_4_11 {
    () => {
        "EVENT_FORK EVENT_REMAP EVENT_REMOVE MISSING_HUGETLBFS MISSING_SHMEM EVENT_UNMAP"
    };
}

pub const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        id: "api.features",
        summary: "The features UFFDIO_API advertises when asked for none",
        observes: "The names of the bits set in uffdio_api.features after a UFFDIO_API with \
                   features = 0 on a fresh userfaultfd(2) descriptor, in bit order; bits without \
                   a known name read `bitN`; `none` when no bit is set.",
        expect: &[
            ("<4.11", "none"),
            (">=4.11, <4.14", concat!("includes: ", since_4_11!())),
            (">=4.14, <5.10", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID")),
            (">=5.10, <5.13", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID PAGEFAULT_FLAG_WP")),
            (">=5.13, <5.14", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID PAGEFAULT_FLAG_WP MINOR_HUGETLBFS")),
            (">=5.14, <5.18", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID PAGEFAULT_FLAG_WP MINOR_HUGETLBFS MINOR_SHMEM")),
            (">=5.18, <5.19", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID PAGEFAULT_FLAG_WP MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS")),
            (">=5.19, <6.4", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID PAGEFAULT_FLAG_WP MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS WP_HUGETLBFS_SHMEM")),
            (">=6.4, <6.6", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID PAGEFAULT_FLAG_WP MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS WP_HUGETLBFS_SHMEM WP_UNPOPULATED")),
            (">=6.6, <6.7", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID PAGEFAULT_FLAG_WP MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS WP_HUGETLBFS_SHMEM WP_UNPOPULATED POISON")),
            (">=6.7, <6.8", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID PAGEFAULT_FLAG_WP MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS WP_HUGETLBFS_SHMEM WP_UNPOPULATED POISON WP_ASYNC")),
            (">=6.8, <7.2", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID PAGEFAULT_FLAG_WP MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS WP_HUGETLBFS_SHMEM WP_UNPOPULATED POISON WP_ASYNC MOVE")),
            (">=7.2", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID PAGEFAULT_FLAG_WP MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS WP_HUGETLBFS_SHMEM WP_UNPOPULATED POISON WP_ASYNC MOVE RWP RWP_ASYNC")),
        ],
        citation: "UFFDIO_API(2const), man-pages 6.20: the \"(since Linux X)\" of each UFFD_FEATURE_* bit; \
                   include/uapi/linux/userfaultfd.h (UFFD_API_FEATURES)",
        notes: "The table is cumulative: a kernel passes when it advertises at least the features the \
                man page dates to its version; extra (backported) features are recorded, not failed. \
                Some bits also depend on configuration (hugetlbfs, shmem, CONFIG_PTE_MARKER_UFFD_WP) and \
                on the architecture. The man page dates UFFD_FEATURE_PAGEFAULT_FLAG_WP to 5.10 (anonymous \
                write-protect was merged in 5.7) and RWP/RWP_ASYNC to 7.2, while the 7.2 uapi header \
                lacks them and 7.3-rc has them.",
        probe: features,
    },
    Behaviour {
        id: "api.user_mode_only",
        summary: "userfaultfd(2) accepts the UFFD_USER_MODE_ONLY flag",
        observes: "`accepted` when userfaultfd(UFFD_USER_MODE_ONLY) returns a descriptor that \
                   completes the UFFDIO_API handshake, else the errno name.",
        expect: &[("<5.11", "EINVAL"), (">=5.11", "accepted")],
        citation: "userfaultfd(2), man-pages 6.20: UFFD_USER_MODE_ONLY (since Linux 5.11); \
                   fs/userfaultfd.c (v5.11, SYSCALL_DEFINE1(userfaultfd): flags check)",
        notes: "",
        probe: user_mode_only,
    },
    Behaviour {
        id: "api.dev_userfaultfd",
        summary: "/dev/userfaultfd exists and USERFAULTFD_IOC_NEW yields a working userfaultfd",
        observes: "`absent` when /dev/userfaultfd does not exist (devtmpfs mounted); `works` when \
                   opening it and USERFAULTFD_IOC_NEW give a descriptor that completes UFFDIO_API; \
                   `open: ERRNO` or `ioctl: ERRNO` otherwise. Details: the node's mode and owner.",
        expect: &[("<6.1", "absent"), (">=6.1", "works")],
        citation: "userfaultfd(2), man-pages 6.20: \"/dev/userfaultfd\" (since Linux 6.1); \
                   Documentation/admin-guide/mm/userfaultfd.rst (v6.1): the device is root-only \
                   (0600) by default",
        notes: "Run as root, as the suite does; an unprivileged caller sees `open: EACCES` by default.",
        probe: dev_userfaultfd,
    },
];

fn features(_: &Ctx) -> ProbeResult {
    let fd = uffd::syscall(libc::O_CLOEXEC).map_err(open_failure)?;
    let api = uffd::handshake(&fd, 0).ctx("UFFDIO_API")?;
    let names = feature_names(api.features);
    Ok(Observation::new(if names.is_empty() {
        "none".to_string()
    } else {
        names
    })
    .with("features", format!("{:#x}", api.features))
    .with("ioctls", ioctl_names(api.ioctls)))
}

fn user_mode_only(_: &Ctx) -> ProbeResult {
    match uffd::syscall(libc::O_CLOEXEC | UFFD_USER_MODE_ONLY) {
        Ok(fd) => {
            let api = uffd::handshake(&fd, 0).ctx("UFFDIO_API on a user-mode-only descriptor")?;
            Ok(Observation::new("accepted").with("features", format!("{:#x}", api.features)))
        }
        Err(Errno::ENOSYS) => Err(open_failure(Errno::ENOSYS)),
        Err(e) => Ok(Observation::new(errno_name(e))),
    }
}

fn dev_userfaultfd(_: &Ctx) -> ProbeResult {
    // Without userfaultfd at all, the device is beside the point.
    if let Err(Errno::ENOSYS) = uffd::syscall(libc::O_CLOEXEC) {
        return Err(open_failure(Errno::ENOSYS));
    }
    let dev_is_devtmpfs = std::fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines().any(|l| {
                l.split_whitespace()
                    .take(3)
                    .eq(["devtmpfs", "/dev", "devtmpfs"])
                    || l.starts_with("udev /dev devtmpfs")
            })
        })
        .unwrap_or(false);
    let meta = match std::fs::metadata("/dev/userfaultfd") {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !dev_is_devtmpfs {
                return Err(Fail::error(
                    "/dev/userfaultfd is absent, but /dev is not a devtmpfs here, so its absence says nothing about the kernel",
                ));
            }
            return Ok(Observation::new("absent"));
        }
        Err(e) => return Err(Fail::error(format!("stat /dev/userfaultfd: {e}"))),
    };
    let mut obs = Observation::new("")
        .with("mode", format!("{:o}", meta.mode() & 0o7777))
        .with("owner", format!("{}:{}", meta.uid(), meta.gid()))
        .with("char_device", meta.file_type().is_char_device());
    obs.observed = match uffd::from_device(libc::O_CLOEXEC) {
        Ok(fd) => match uffd::handshake(&fd, 0) {
            Ok(_) => "works".to_string(),
            Err(e) => format!("UFFDIO_API: {}", errno_name(e)),
        },
        Err(DevError::Open(e)) => format!("open: {}", errno_name(e)),
        Err(DevError::Ioctl(e)) => format!("ioctl: {}", errno_name(e)),
    };
    Ok(obs)
}
