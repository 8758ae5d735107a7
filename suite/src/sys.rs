//! Small system helpers the probes share: errno names, anonymous mappings, thread ids and
//! states, madvise advice numbers newer than the build machine's headers, signal flags.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// `MADV_POPULATE_READ` / `MADV_POPULATE_WRITE` (include/uapi/asm-generic/mman-common.h,
/// since Linux 5.14). Kept here so the suite does not depend on the build machine's headers.
pub const MADV_POPULATE_READ: i32 = 22;
pub const MADV_POPULATE_WRITE: i32 = 23;

/// The name of an errno value, as the matrix shows it: `EINVAL`.
pub fn errno_name(e: Errno) -> String {
    format!("{e:?}")
}

pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
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

/// The scheduler state letter of a thread of this process (`R`, `S`, `D`, ...), from
/// `/proc/self/task/<tid>/stat`.
pub fn thread_state(tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain ") ".
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// User plus system CPU time a thread of this process has used, in clock ticks.
pub fn thread_cpu_ticks(tid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15 (proc(5)).
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Waits until a thread is off the CPU (its state is neither `R` running nor absent), up to
/// `limit`, and returns the state seen. This synchronises on the thread's `/proc` state, which is
/// the event being waited for.
pub fn wait_until_blocked(tid: i32, limit: Duration) -> Option<char> {
    let start = Instant::now();
    loop {
        let state = thread_state(tid);
        match state {
            Some(s) if s != 'R' => return Some(s),
            _ if start.elapsed() >= limit => return state,
            _ => std::thread::yield_now(),
        }
    }
}

/// Waits up to `limit` until a thread of this process sleeps in the kernel's wait for a
/// userfaultfd event to be read (a madvise, munmap or fork whose event is pending): its wchan
/// names a userfaultfd function, or, where wchan is not readable, its state is `D`. Synchronises
/// on the thread's `/proc` state.
pub fn wait_until_in_uffd_wait(tid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        let wchan = std::fs::read_to_string(format!("/proc/self/task/{tid}/wchan")).unwrap_or_default();
        let readable = !wchan.trim().is_empty() && wchan.trim() != "0";
        if (readable && wchan.contains("userfaultfd")) || (!readable && thread_state(tid) == Some('D')) {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::yield_now();
    }
}

/// Names a blocked state for the matrix: `S` (interruptible sleep: user-fault context) or `D`
/// (uninterruptible or killable sleep: blocked inside the kernel).
pub fn describe_state(state: Option<char>) -> String {
    match state {
        Some(c) => c.to_string(),
        None => "gone".to_string(),
    }
}

/// An eventfd that a signal handler can write to (async-signal-safe) and a prober can wait on.
pub struct SignalFlag {
    fd: std::os::fd::OwnedFd,
}

static FLAG_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn flag_handler(_: libc::c_int) {
    let fd = FLAG_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; the buffer is a local.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

impl SignalFlag {
    /// Installs a handler for `sig` (without SA_RESTART) that raises this flag. One per process.
    pub fn install(sig: nix::sys::signal::Signal) -> Result<SignalFlag, Errno> {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: eventfd returns a new descriptor that we own.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(Errno::result(raw)?) };
        FLAG_FD.store(fd.as_raw_fd(), Ordering::SeqCst);
        let action = SigAction::new(SigHandler::Handler(flag_handler), SaFlags::empty(), SigSet::empty());
        // SAFETY: the handler only calls write(2) on an eventfd.
        unsafe { sigaction(sig, &action) }?;
        Ok(SignalFlag { fd })
    }

    /// Waits up to `limit` for the handler to have run; returns how many times it ran.
    pub fn wait(&self, limit: Duration) -> Result<u64, Errno> {
        use std::os::fd::AsFd;
        wait_readable(self.fd.as_fd(), limit)?;
        let mut count: u64 = 0;
        use std::os::fd::AsRawFd;
        // SAFETY: reading 8 bytes into a u64 from an eventfd.
        let r = unsafe { libc::read(self.fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
        match Errno::result(r) {
            Ok(_) => Ok(count),
            Err(Errno::EAGAIN) => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// poll(2) on several descriptors for readability, retrying on EINTR, up to `limit`. Returns
/// which are readable (all false on timeout).
pub fn wait_any(fds: &[std::os::fd::BorrowedFd<'_>], limit: Duration) -> Result<Vec<bool>, Errno> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut pfds: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)).collect();
        match poll(&mut pfds, PollTimeout::from(ms)) {
            Ok(0) if Instant::now() >= deadline => return Ok(vec![false; fds.len()]),
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => return Ok(pfds.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect()),
            Err(e) => return Err(e),
        }
    }
}

/// poll(2) for readability of one descriptor; see [`wait_any`].
pub fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, limit: Duration) -> Result<bool, Errno> {
    Ok(wait_any(&[fd], limit)?[0])
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

/// Sends a signal to one thread of this process.
pub fn tgkill(tid: i32, sig: nix::sys::signal::Signal) -> Result<(), Errno> {
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, sig as libc::c_int) };
    Errno::result(r).map(drop)
}

pub struct Uname {
    pub release: String,
    pub version: String,
    pub machine: String,
}

pub fn uname() -> Uname {
    match nix::sys::utsname::uname() {
        Ok(u) => Uname {
            release: u.release().to_string_lossy().into_owned(),
            version: u.version().to_string_lossy().into_owned(),
            machine: u.machine().to_string_lossy().into_owned(),
        },
        Err(_) => Uname { release: "unknown".into(), version: String::new(), machine: String::new() },
    }
}

/// A forked helper process with a socket to it. Probes fork it before starting any thread of
/// their own, so the child starts single-threaded and may do anything.
pub struct SubProcess {
    pub pid: nix::unistd::Pid,
    pub sock: std::os::unix::net::UnixStream,
    pidfd: OwnedFd,
}

/// Forks; the child runs `f` with its end of the socket and exits with the code `f` returns.
pub fn fork_with(f: impl FnOnce(std::os::unix::net::UnixStream) -> i32) -> Result<SubProcess, Errno> {
    use std::os::fd::FromRawFd;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(|_| Errno::EMFILE)?;
    // SAFETY: the probe process is single-threaded when it forks (see above).
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            drop(ours);
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(theirs))).unwrap_or(101);
            // SAFETY: leave without running the parent's exit handlers twice.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(theirs);
            // SAFETY: pidfd_open returns a new descriptor that we own.
            let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, child.as_raw(), 0) };
            let pidfd = match Errno::result(raw) {
                Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd as i32) },
                Err(e) => {
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    return Err(e);
                }
            };
            Ok(SubProcess { pid: child, sock: ours, pidfd })
        }
    }
}

impl SubProcess {
    /// Waits up to `limit` for the child to end (its pidfd becomes readable) and reaps it.
    pub fn wait(&self, limit: Duration) -> Result<Option<nix::sys::wait::WaitStatus>, Errno> {
        use std::os::fd::AsFd;
        if !wait_readable(self.pidfd.as_fd(), limit)? {
            return Ok(None);
        }
        nix::sys::wait::waitpid(self.pid, None).map(Some)
    }

    pub fn kill(&self) {
        let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
    }

    /// One line of text from the child, waiting up to `limit`.
    pub fn recv_line(&self, limit: Duration) -> Result<Option<String>, Errno> {
        use std::io::Read;
        use std::os::fd::AsFd;
        let mut line = Vec::new();
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if !wait_readable(self.sock.as_fd(), left)? {
                return Ok(None);
            }
            let mut byte = [0u8; 1];
            match (&self.sock).read(&mut byte) {
                Ok(0) => return Ok(None),
                Ok(_) if byte[0] == b'\n' => return Ok(Some(String::from_utf8_lossy(&line).into_owned())),
                Ok(_) => line.push(byte[0]),
                Err(e) => return Err(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
            }
        }
    }

    /// A descriptor the child sent with [`send_fd`].
    pub fn recv_fd(&self, limit: Duration) -> Result<Option<OwnedFd>, Errno> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::{AsFd, FromRawFd};
        if !wait_readable(self.sock.as_fd(), limit)? {
            return Ok(None);
        }
        let mut byte = [0u8; 1];
        let mut iov = [std::io::IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg =
            recvmsg::<()>(self.sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                if let Some(fd) = fds.first() {
                    // SAFETY: SCM_RIGHTS installed a new descriptor for us.
                    return Ok(Some(unsafe { OwnedFd::from_raw_fd(*fd) }));
                }
            }
        }
        Ok(None)
    }
}

/// Sends a descriptor over a socket (SCM_RIGHTS) with one byte of payload.
pub fn send_fd(sock: &std::os::unix::net::UnixStream, fd: std::os::fd::RawFd) -> Result<(), Errno> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd];
    let iov = [std::io::IoSlice::new(b"F")];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None)
        .map(drop)
}

/// Sends one line of text over a socket.
pub fn send_line(sock: &std::os::unix::net::UnixStream, line: &str) {
    use std::io::Write;
    let _ = (&*sock).write_all(format!("{line}\n").as_bytes());
}

/// A system-wide setting (`/proc/sys/<name>`) held by a probe under the settings lock, which every
/// probe that reads or changes a global setting takes for the whole time it does (trials run in
/// parallel). Before a change, the old value is written to a journal (the lock file itself), so
/// whoever takes the lock next (another probe, or the suite after the watchdog killed this one)
/// puts it back; dropping the hold restores it and clears the journal.
pub struct Setting {
    path: String,
    value: String,
    changed: std::cell::Cell<bool>,
    lock: nix::fcntl::Flock<std::fs::File>,
}

impl Setting {
    /// Takes the settings lock (first restoring whatever a killed holder left changed) and reads
    /// `/proc/sys/<name>`; `None` when the setting does not exist on this kernel.
    pub fn hold(name: &str) -> std::io::Result<Option<Setting>> {
        let lock = settings_lock()?;
        let path = format!("/proc/sys/{name}");
        let Ok(value) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        Ok(Some(Setting { path, value: value.trim().to_string(), changed: false.into(), lock }))
    }

    /// The value when the hold was taken.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Changes the setting (journalled first, so that it is put back whatever happens to us).
    pub fn set(&self, value: &str) -> std::io::Result<()> {
        use std::io::{Seek, Write};
        if !self.changed.get() {
            let mut journal: &std::fs::File = &self.lock;
            journal.set_len(0)?;
            journal.seek(std::io::SeekFrom::Start(0))?;
            journal.write_all(format!("{}\t{}\n", self.path, self.value).as_bytes())?;
            journal.sync_data()?;
            self.changed.set(true);
        }
        std::fs::write(&self.path, value)?;
        if HANG_AFTER_SETTING.load(Ordering::SeqCst) && value != self.value {
            // Self-test: the watchdog kills us now, with the setting changed.
            loop {
                std::thread::park();
            }
        }
        Ok(())
    }
}

/// Self-test (`--inject-fault setting-hang=ID`): a probe blocks forever right after changing a
/// system setting, so the tests can prove the suite puts it back after the watchdog's kill.
pub static HANG_AFTER_SETTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Drop for Setting {
    fn drop(&mut self) {
        if self.changed.get() && std::fs::write(&self.path, &self.value).is_ok() {
            let _ = self.lock.set_len(0);
        }
    }
}

/// Takes the lock every probe that reads or changes a system-wide setting holds while it does,
/// after putting back any setting its journal says a previous holder changed and could not
/// restore (it was killed).
pub fn settings_lock() -> std::io::Result<nix::fcntl::Flock<std::fs::File>> {
    use std::io::Read;
    let dir = std::env::temp_dir();
    std::fs::create_dir_all(&dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join("uffd-conformance-settings.lock"))?;
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e)?;
    let mut journal = String::new();
    (&*lock).read_to_string(&mut journal)?;
    for line in journal.lines() {
        if let Some((path, value)) = line.split_once('\t') {
            std::fs::write(path, value)?;
            eprintln!("suite: put {path} back to {value} (the probe that changed it did not)");
        }
    }
    if !journal.is_empty() {
        lock.set_len(0)?;
    }
    Ok(lock)
}

/// Puts back any setting a killed probe left changed (see [`Setting`]).
pub fn restore_settings() -> std::io::Result<()> {
    settings_lock().map(drop)
}

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

/// Free huge pages of the default size, and that size in bytes (from /proc/meminfo).
pub fn huge_pages() -> (u64, usize) {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("HugePages_Free:"), field("Hugepagesize:") as usize * 1024)
}

/// The kernel's uptime (CLOCK_BOOTTIME) in milliseconds.
pub fn uptime_ms() -> Option<u64> {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .ok()
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
}

/// Makes userfaultfd(2) fail with ENOSYS in this process from now on (a seccomp filter), as on a
/// kernel built without CONFIG_USERFAULTFD. For the `no-userfaultfd` self-test.
pub fn deny_userfaultfd() -> Result<(), Errno> {
    // struct seccomp_data: nr at offset 0, arch at offset 4.
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
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
        jeq(AUDIT_ARCH_X86_64, 1, 0),
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
