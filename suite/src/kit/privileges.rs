//! Giving up privileges in a forked helper (becoming nobody, dropping a capability) and the
//! seccomp filter that makes userfaultfd(2) look absent (the `no-userfaultfd` self-test).

use nix::errno::Errno;

/// Becomes an unprivileged user (nobody: uid/gid 65534, no groups, no capabilities). For a
/// forked helper only: it cannot be undone.
pub fn become_nobody() -> Result<(), Errno> {
    let nobody_g = nix::unistd::Gid::from_raw(65534);
    let nobody_u = nix::unistd::Uid::from_raw(65534);
    nix::unistd::setgroups(&[])?;
    nix::unistd::setresgid(nobody_g, nobody_g, nobody_g)?;
    nix::unistd::setresuid(nobody_u, nobody_u, nobody_u)
}

/// Drops one capability from this process's effective and permitted sets (capset(2)). For a
/// forked helper only.
pub fn drop_capability(cap: u32) -> Result<(), Errno> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header { version: VERSION_3, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a version-3 header and two data words.
    Errno::result(unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) })?;
    let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
    data[word].effective &= !bit;
    data[word].permitted &= !bit;
    Errno::result(unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) }).map(drop)
}

pub const CAP_SYS_PTRACE: u32 = 19;

/// Makes userfaultfd(2) fail with ENOSYS in this process from now on (a seccomp filter), as on a
/// kernel built without CONFIG_USERFAULTFD. For the `no-userfaultfd` self-test.
pub fn deny_userfaultfd() -> Result<(), Errno> {
    // struct seccomp_data: nr at offset 0, arch at offset 4; the filter acts on this build's own
    // architecture (include/uapi/linux/audit.h AUDIT_ARCH_X86_64, AUDIT_ARCH_AARCH64).
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7;
    let stmt = |code: u16, k: u32| libc::sock_filter { code, jt: 0, jf: 0, k };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let ld = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let filter = [
        stmt(ld, 4),
        jeq(AUDIT_ARCH, 1, 0),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        stmt(ld, 0),
        jeq(libc::SYS_userfaultfd as u32, 0, 1),
        stmt(ret, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
    // SAFETY: a valid BPF program that outlives the prctl call (the kernel copies it).
    unsafe {
        Errno::result(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        Errno::result(libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const _))?;
    }
    Ok(())
}
