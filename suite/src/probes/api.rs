//! `api`: what the userfaultfd interface itself offers.

use crate::kit::behaviour::Behaviour;
use crate::kit::memory::Region;
use crate::kit::outcome::errno_name;
use crate::kit::outcome::{Context, Ctx, Fail, Observation, ProbeResult};
use crate::kit::require;
use crate::kit::rows;
use crate::kit::settings::Setting;
use crate::kit::uapi;
use crate::kit::uapi::{
    feature_names, ioctl_names, open_failure, DevError, FEATURE_EVENT_FORK, UFFD_USER_MODE_ONLY,
};
use crate::kit::uffd::{self, RegisterMode};
use crate::kit::variant::Variant;
use crate::kit::{helpers, privileges};
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
            // arm64 before 6.10 has no write-protect (rows::ARCH_WRITE_PROTECT): the kernel masks
            // PAGEFAULT_FLAG_WP, and the PTE-marker features with it.
            (">=5.10, <5.13 when arch=arm64", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID")),
            (">=5.13, <5.14 when arch=arm64", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID MINOR_HUGETLBFS")),
            (">=5.14, <5.18 when arch=arm64", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID MINOR_HUGETLBFS MINOR_SHMEM")),
            (">=5.18, <6.6 when arch=arm64", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS")),
            (">=6.6, <6.8 when arch=arm64", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS POISON")),
            (">=6.8, <6.10 when arch=arm64", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS POISON MOVE")),
            // Without the PTE markers the kernel masks the write-protect features that need them.
            (
                ">=5.19, <6.6 when CONFIG_PTE_MARKER_UFFD_WP!=y",
                concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID PAGEFAULT_FLAG_WP MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS"),
            ),
            (
                ">=6.6, <6.8 when CONFIG_PTE_MARKER_UFFD_WP!=y",
                concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID PAGEFAULT_FLAG_WP MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS POISON"),
            ),
            (
                ">=6.8 when CONFIG_PTE_MARKER_UFFD_WP!=y",
                concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID PAGEFAULT_FLAG_WP MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS POISON MOVE"),
            ),
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
            (">=6.8, <7.3", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID PAGEFAULT_FLAG_WP MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS WP_HUGETLBFS_SHMEM WP_UNPOPULATED POISON WP_ASYNC MOVE")),
            (">=7.3", concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID PAGEFAULT_FLAG_WP MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS WP_HUGETLBFS_SHMEM WP_UNPOPULATED POISON WP_ASYNC MOVE RWP RWP_ASYNC")),
        ],
        citation: "UFFDIO_API(2const), man-pages 6.20: the \"(since Linux X)\" of each UFFD_FEATURE_* bit; \
                   include/uapi/linux/userfaultfd.h UFFD_API_FEATURES (Debian linux-libc-dev 7.2.13 lacks \
                   RWP/RWP_ASYNC, 7.3-rc7 has them, though the man page dates them to 7.2); without \
                   CONFIG_PTE_MARKER_UFFD_WP: fs/userfaultfd.c userfaultfd_api (v6.1: #ifndef \
                   CONFIG_PTE_MARKER_UFFD_WP masks WP_HUGETLBFS_SHMEM; v6.12: also WP_UNPOPULATED and WP_ASYNC), \
                   mm/userfaultfd.c uffd_api_available_features (v7.3-rc7: !uffd_supports_wp_marker()); \
                   arm64 before 6.10: arch/arm64/Kconfig has no HAVE_ARCH_USERFAULTFD_WP, and \
                   fs/userfaultfd.c userfaultfd_api (v6.1) masks PAGEFAULT_FLAG_WP without it",
        notes: "The table is cumulative: a kernel passes when it advertises at least the features the \
                man page dates to its version; extra (backported) features are recorded, not failed. \
                Some bits also depend on configuration (hugetlbfs, shmem, CONFIG_PTE_MARKER_UFFD_WP) and \
                on the architecture. The man page dates UFFD_FEATURE_PAGEFAULT_FLAG_WP to 5.10 (anonymous \
                write-protect was merged in 5.7) and RWP/RWP_ASYNC to 7.2, while the 7.2 uapi header \
                lacks them and 7.3-rc has them.",
        documented: &[(
            ">=7.2, <7.3",
            concat!("includes: ", since_4_11!(), " SIGBUS THREAD_ID PAGEFAULT_FLAG_WP MINOR_HUGETLBFS MINOR_SHMEM EXACT_ADDRESS WP_HUGETLBFS_SHMEM WP_UNPOPULATED POISON WP_ASYNC MOVE RWP RWP_ASYNC"),
            "UFFDIO_API(2const), man-pages 6.20: \"UFFD_FEATURE_RWP (since Linux 7.2)\", \"UFFD_FEATURE_RWP_ASYNC (since Linux 7.2)\"",
        )],
        selftests: &["selftests.unit_uffdio_api"],
        probe: features,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "api.user_mode_only",
        summary: "userfaultfd(2) accepts the UFFD_USER_MODE_ONLY flag",
        observes: "`accepted` when userfaultfd(UFFD_USER_MODE_ONLY) returns a descriptor that \
                   completes the UFFDIO_API handshake, else the errno name.",
        expect: &[("<5.11", "EINVAL"), (">=5.11", "accepted")],
        citation: "userfaultfd(2), man-pages 6.20: UFFD_USER_MODE_ONLY (since Linux 5.11); \
                   fs/userfaultfd.c (v5.11, SYSCALL_DEFINE1(userfaultfd): flags check)",
        probe: user_mode_only,
        ..Behaviour::DEFAULT
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
        selftests: &["selftests.unit_uffdio_api_dev_userfaultfd"],
        probe: dev_userfaultfd,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "api.ioctls",
        summary: "The ioctls UFFDIO_REGISTER offers for an anonymous range registered MISSING",
        observes: "The names of the bits set in uffdio_register.ioctls after registering one anonymous \
                   page in MISSING mode, in bit order.",
        expect: &[
            ("<6.6", "WAKE COPY ZEROPAGE"),
            (">=6.6, <6.8", "WAKE COPY ZEROPAGE POISON"),
            (">=6.8", "WAKE COPY ZEROPAGE MOVE POISON"),
        ],
        citation: "UFFDIO_REGISTER(2const), man-pages 6.20; include/uapi/linux/userfaultfd.h \
                   UFFD_API_RANGE_IOCTLS (v5.10, v6.12) and fs/userfaultfd.c userfaultfd_register, which \
                   masks WRITEPROTECT without MODE_WP and CONTINUE without MODE_MINOR; UFFDIO_POISON \
                   since 6.6, UFFDIO_MOVE since 6.8 (UFFDIO_API(2const))",
        selftests: &["selftests.unit_register_ioctls_anon"],
        probe: ioctls,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "api.unknown_feature",
        summary: "UFFDIO_API asking for an unknown feature bit fails with EINVAL and zeroes the structure",
        observes: "UFFDIO_API with features = bit 63: the errno name (or `accepted`), then `, zeroed` when \
                   the kernel cleared api/features/ioctls or `, not zeroed`.",
        expect: &[("*", "EINVAL, zeroed")],
        citation: "UFFDIO_API(2const), man-pages 6.20: \"If the application sets unsupported feature bits, \
                   the kernel will zero out the returned uffdio_api structure and return EINVAL\"; \
                   fs/userfaultfd.c userfaultfd_api (v5.10, v6.12)",
        notes: "Unknown bits are an error, not silently masked: probe with features = 0 first.",
        selftests: &["selftests.unit_uffdio_api"],
        probe: unknown_feature,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "api.handshake_twice",
        summary: "A second UFFDIO_API on a descriptor whose first handshake asked for no feature",
        observes: "Two UFFDIO_API calls with features = 0 on one fresh descriptor: `ok` when the second \
                   succeeds, else its errno name.",
        expect: &[("*", "EINVAL")],
        documented: &[(
            "*",
            "ok",
            "UFFDIO_API(2const), man-pages 6.20, ERRORS: \"Calling UFFDIO_API twice, the first time with no features set, is explicitly allowed as per the two-step feature detection handshake\"",
        )],
        citation: "fs/userfaultfd.c userfaultfd_api (v5.10, v6.12, v7.2): the first call stores the features \
                   with UFFD_FEATURE_INITIALIZED, so the cmpxchg(&ctx->features, 0, ...) of any second call \
                   fails with -EINVAL; documented otherwise in UFFDIO_API(2const), man-pages 6.20, ERRORS: \
                   \"Calling UFFDIO_API twice, the first time with no features set, is explicitly allowed as \
                   per the two-step feature detection handshake\"",
        notes: "The man page contradicts itself: its DESCRIPTION says a temporary userfaultfd is needed to \
                probe features, which is what the kernel requires.",
        selftests: &["selftests.unit_uffdio_api"],
        probe: handshake_twice,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "api.unprivileged",
        summary: "What an unprivileged process gets from userfaultfd(2), per vm.unprivileged_userfaultfd and UFFD_USER_MODE_ONLY",
        observes: "A helper process that has become `nobody` (no capabilities) calls userfaultfd(2) plain and \
                   with UFFD_USER_MODE_ONLY, with vm.unprivileged_userfaultfd set to 0 and then 1: `sysctl 0: \
                   plain R, user-mode-only R | sysctl 1: plain R, user-mode-only R` (R: `ok` or an errno \
                   name). Details: the sysctl's value before the probe (the kernel's default in a guest).",
        expect: &[
            rows::BEFORE_5_2,
            (">=5.2, <5.11", "sysctl 0: plain EPERM, user-mode-only EPERM | sysctl 1: plain ok, user-mode-only EINVAL"),
            (">=5.11", "sysctl 0: plain EPERM, user-mode-only ok | sysctl 1: plain ok, user-mode-only ok"),
        ],
        citation: "userfaultfd(2), man-pages 6.20: \"Before Linux 5.11 ... unprivileged users could use it only \
                   if the vm.unprivileged_userfaultfd sysctl is set to 1\", UFFD_USER_MODE_ONLY; \
                   Documentation/admin-guide/sysctl/vm.rst unprivileged_userfaultfd; fs/userfaultfd.c \
                   (v5.10 SYSCALL_DEFINE1, v6.12 userfaultfd_syscall_allowed)",
        notes: "Since 5.11 the default of vm.unprivileged_userfaultfd is 0: unprivileged users get only \
                user-mode faults, and kernel-mode accesses to their registered memory fail with EFAULT \
                (remote.user_mode_only).",
        probe: unprivileged,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "api.fork_needs_ptrace",
        summary: "UFFDIO_API asking for UFFD_FEATURE_EVENT_FORK fails with EPERM without CAP_SYS_PTRACE",
        observes: "A root helper process that dropped CAP_SYS_PTRACE opens a uffd (with UFFD_USER_MODE_ONLY \
                   from 5.11, else with vm.unprivileged_userfaultfd set to 1) and requests EVENT_FORK: \
                   `EPERM`, `ok`, or another errno name.",
        expect: &[
            rows::BEFORE_4_11,
            (">=4.11, <4.14.162", "ok"),
            (">=4.14.162, <4.15", "EPERM"),
            (">=4.15, <4.19.93", "ok"),
            (">=4.19.93, <4.20", "EPERM"),
            (">=4.20, <5.4.8", "ok"),
            (">=5.4.8", "EPERM"),
        ],
        citation: "UFFDIO_API(2const), man-pages 6.20, ERRORS: \"EPERM The UFFD_FEATURE_EVENT_FORK feature \
                   was enabled, but the calling process doesn't have the CAP_SYS_PTRACE capability\"; commit \
                   3c1c24d91ffd \"userfaultfd: require CAP_SYS_PTRACE for UFFD_FEATURE_EVENT_FORK\" (mainline \
                   v5.5; stable 5.4.8, 4.19.93 and 4.14.162: Debian's linux changelog, stable review mails of \
                   January 2020); fs/userfaultfd.c userfaultfd_api (5.10.262, 6.1.192, 6.12.118)",
        notes: "Older kernels without the backport let any uffd owner receive uffds of its children.",
        probe: fork_needs_ptrace,
        ..Behaviour::DEFAULT
    },
];

fn features(_: &Ctx, _: Variant) -> ProbeResult {
    let fd = uapi::syscall(libc::O_CLOEXEC).map_err(open_failure)?;
    let api = uapi::handshake(&fd, 0).ctx("UFFDIO_API")?;
    let names = feature_names(api.features);
    Ok(Observation::new(if names.is_empty() { "none".to_string() } else { names })
        .with("features", format!("{:#x}", api.features))
        .with("ioctls", ioctl_names(api.ioctls)))
}

fn user_mode_only(_: &Ctx, _: Variant) -> ProbeResult {
    match uapi::syscall(libc::O_CLOEXEC | UFFD_USER_MODE_ONLY) {
        Ok(fd) => {
            let api = uapi::handshake(&fd, 0).ctx("UFFDIO_API on a user-mode-only descriptor")?;
            Ok(Observation::new("accepted").with("features", format!("{:#x}", api.features)))
        }
        Err(Errno::ENOSYS) => Err(open_failure(Errno::ENOSYS)),
        Err(e) => Ok(Observation::new(errno_name(e))),
    }
}

fn dev_userfaultfd(_: &Ctx, _: Variant) -> ProbeResult {
    // Without userfaultfd at all, the device is beside the point.
    require::userfaultfd()?;
    let dev_is_devtmpfs = std::fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines().any(|l| {
                l.split_whitespace().take(3).eq(["devtmpfs", "/dev", "devtmpfs"])
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
    obs.observed = match uapi::from_device(libc::O_CLOEXEC) {
        Ok(fd) => match uapi::handshake(&fd, 0) {
            Ok(_) => "works".to_string(),
            Err(e) => format!("UFFDIO_API: {}", errno_name(e)),
        },
        Err(DevError::Open(e)) => format!("open: {}", errno_name(e)),
        Err(DevError::Ioctl(e)) => format!("ioctl: {}", errno_name(e)),
    };
    Ok(obs)
}

fn ioctls(_: &Ctx, _: Variant) -> ProbeResult {
    let uffd = uffd::Uffd::open(0)?;
    let region = Region::anonymous(1).ctx("mmap")?;
    let bits = uffd.register(region.base(), region.len(), RegisterMode::MISSING)?;
    Ok(Observation::new(ioctl_names(bits)).with("ioctls", format!("{bits:#x}")))
}

fn unknown_feature(_: &Ctx, _: Variant) -> ProbeResult {
    use std::os::fd::AsRawFd;
    let fd = uapi::syscall(libc::O_CLOEXEC).map_err(open_failure)?;
    let mut api =
        userfaultfd_sys::uffdio_api { api: userfaultfd_sys::UFFD_API, features: 1 << 63, ioctls: 0x1234 };
    // SAFETY: a properly initialised uffdio_api.
    let r = unsafe { uapi::ioctl_api(fd.as_raw_fd(), &mut api) };
    let zeroed = api.api == 0 && api.features == 0 && api.ioctls == 0;
    let result = r.map_or_else(errno_name, |_| "accepted".to_string());
    Ok(Observation::new(format!("{result}, {}", if zeroed { "zeroed" } else { "not zeroed" }))
        .with("features_after", format!("{:#x}", api.features)))
}

fn handshake_twice(_: &Ctx, _: Variant) -> ProbeResult {
    let fd = uapi::syscall(libc::O_CLOEXEC).map_err(open_failure)?;
    uapi::handshake(&fd, 0).ctx("first UFFDIO_API")?;
    Ok(Observation::new(uapi::handshake(&fd, 0).map_or_else(errno_name, |_| "ok".to_string())))
}

/// Runs `f` in a forked helper and returns the line it sends back.
fn in_helper(ctx: &Ctx, f: impl FnOnce() -> String) -> Result<String, Fail> {
    let helper = helpers::fork_with(|sock| {
        helpers::send_line(sock, &f());
        Ok(())
    })?;
    let line = helper.line("its answer", ctx.timeout);
    let _ = helper.wait(ctx.timeout);
    line
}

fn open_result(flags: i32) -> String {
    uapi::syscall(libc::O_CLOEXEC | flags).map_or_else(errno_name, |_| "ok".to_string())
}

fn unprivileged(ctx: &Ctx, _: Variant) -> ProbeResult {
    const KNOB: &str = "vm/unprivileged_userfaultfd";
    require::userfaultfd()?;
    // The settings lock is held from reading the default to putting it back.
    let Some(knob) = Setting::hold(KNOB).ctx("taking the settings lock")? else {
        return Err(Fail::unsupported(
            "no sysctl",
            format!("{} (/proc/sys/vm/unprivileged_userfaultfd does not exist)", rows::UNPRIVILEGED_SYSCTL),
        ));
    };
    let default = knob.value().to_string();
    ctx.may_change("vm.unprivileged_userfaultfd")?;
    let as_nobody = || match privileges::become_nobody() {
        Ok(()) => format!("plain {}, user-mode-only {}", open_result(0), open_result(UFFD_USER_MODE_ONLY)),
        Err(e) => format!("cannot become nobody: {}", errno_name(e)),
    };
    knob.set("0").ctx("setting vm.unprivileged_userfaultfd")?;
    let zero = in_helper(ctx, as_nobody)?;
    knob.set("1").ctx("setting vm.unprivileged_userfaultfd")?;
    let one = in_helper(ctx, as_nobody)?;
    drop(knob);
    Ok(Observation::new(format!("sysctl 0: {zero} | sysctl 1: {one}")).with("default", default))
}

fn fork_needs_ptrace(ctx: &Ctx, _: Variant) -> ProbeResult {
    const KNOB: &str = "vm/unprivileged_userfaultfd";
    require::features(FEATURE_EVENT_FORK)?;
    let with_cap = uapi::syscall(libc::O_CLOEXEC)
        .map_err(open_failure)
        .map(|fd| uapi::handshake(&fd, FEATURE_EVENT_FORK).map_or_else(errno_name, |_| "ok".to_string()))?;
    // Without CAP_SYS_PTRACE the helper may open a uffd only user-mode-only (5.11 and later) or
    // with vm.unprivileged_userfaultfd set to 1 (before 5.11, a setting this probe then changes).
    let user_mode_only = uapi::user_mode_only()?;
    let knob = if user_mode_only {
        None
    } else {
        let knob = Setting::hold(KNOB).ctx("taking the settings lock")?;
        if knob.is_some() {
            ctx.may_change("vm.unprivileged_userfaultfd")?;
        }
        knob
    };
    if let Some(knob) = &knob {
        knob.set("1").ctx("setting vm.unprivileged_userfaultfd")?;
    }
    let flags = if user_mode_only { UFFD_USER_MODE_ONLY } else { 0 };
    let without = in_helper(ctx, || match privileges::drop_capability(privileges::CAP_SYS_PTRACE) {
        Err(e) => format!("capset: {}", errno_name(e)),
        Ok(()) => match uapi::syscall(libc::O_CLOEXEC | flags) {
            Err(e) => format!("userfaultfd: {}", errno_name(e)),
            Ok(fd) => uapi::handshake(&fd, FEATURE_EVENT_FORK).map_or_else(errno_name, |_| "ok".to_string()),
        },
    })?;
    drop(knob);
    Ok(Observation::new(without)
        .with("with_cap_sys_ptrace", with_cap)
        .with("opened", if user_mode_only { "UFFD_USER_MODE_ONLY" } else { "vm.unprivileged_userfaultfd=1" }))
}
