//! The test process CRIU dumps and restores: seeded pages in anonymous, shared and huge-page
//! memory, their checksums before the dump and after the restore, and what the probe reads of the
//! dump's images (its size, a page to corrupt for the self-test).

use super::*;

/// Page `i` of region `tag`, as the test process fills it.
pub(super) fn pattern(tag: char, i: usize) -> Vec<u8> {
    let mut x = (tag as u64) << 32 ^ i as u64 ^ 0x9e37_79b9_7f4a_7c15;
    (0..crate::kit::memory::page_size() / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

/// The checksum of a page: FNV-1a's step over its 64-bit words (a page is a whole number of
/// them): an eighth of the multiplications of a byte-wise FNV-1a. Every page is hashed three
/// times (before the dump, in the restored parent and in its child): 1728 pages took 8 to 16 ms
/// byte-wise and 1 ms word-wise natively here, many times that under TCG.
pub(super) fn checksum(data: &[u8]) -> u64 {
    data.chunks_exact(8).fold(0xcbf2_9ce4_8422_2325, |h, w| {
        (h ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Overwrites with zeros the copy of `page` in the dump's pages images (the self-test: the daemon
/// then serves a wrong page, which the checksums must catch). Says where.
pub(super) fn corrupt_in_images(images: &Path, page: &[u8]) -> Result<String, Fail> {
    for entry in std::fs::read_dir(images).ctx("read the images")?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("pages-") {
            continue;
        }
        let mut data = std::fs::read(entry.path()).ctx("read a pages image")?;
        if let Some(at) = data.chunks(page.len()).position(|c| c == page) {
            let off = at * page.len();
            data[off..off + page.len()].fill(0);
            std::fs::write(entry.path(), &data).ctx("write a pages image")?;
            return Ok(format!("page {CORRUPTED} zeroed in {name} at {off:#x}"));
        }
    }
    Err(Fail::error("self-test: the page to corrupt is in none of the dump's pages images"))
}

/// The size of the dump's pages images (the memory CRIU dumped), KiB.
pub(super) fn pages_kib(images: &Path) -> u64 {
    std::fs::read_dir(images)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>()
                / 1024
        })
        .unwrap_or(0)
}

/// The checksums files: `tag index checksum` lines.
pub(super) fn sums(path: &Path) -> std::collections::BTreeMap<(char, usize), u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let tag = w.next()?.chars().next()?;
            let i = w.next()?.parse().ok()?;
            let sum = u64::from_str_radix(w.next()?, 16).ok()?;
            Some(((tag, i), sum))
        })
        .collect()
}

/// The pages of parent and child that do not hold what they should.
pub(super) fn compare(work: &Path, obs: &mut Observation) -> Result<usize, Fail> {
    let before = sums(&work.join("before"));
    let (after, child) = (sums(&work.join("after")), sums(&work.join("after-child")));
    if before.len() != ANON + SHARED + HUGE {
        return Err(Fail::error(format!(
            "the test process recorded {} checksums before the dump",
            before.len()
        )));
    }
    let zero = checksum(&vec![0; crate::kit::memory::page_size()]);
    let mut wrong = Vec::new();
    for (&(tag, i), &sum) in &before {
        if child.get(&(tag, i)) != Some(&sum) {
            wrong.push(format!("child {tag}{i}"));
        }
        let unmapped = tag == 'A' && (UNMAP.0..UNMAP.1).contains(&i);
        let dropped = tag == 'A' && (DONTNEED.0..DONTNEED.1).contains(&i);
        let want = if dropped { zero } else { sum };
        if !unmapped && after.get(&(tag, i)) != Some(&want) {
            wrong.push(format!("parent {tag}{i}"));
        }
    }
    obs.detail("pages_checked", (before.len() * 2 - (UNMAP.1 - UNMAP.0)) as u64);
    if !wrong.is_empty() {
        obs.detail("wrong", wrong.iter().take(8).cloned().collect::<Vec<_>>().join(" "));
    }
    Ok(wrong.len())
}

/// The test process (a fork of the probe).
pub(super) struct Target {
    pub(super) pid: nix::unistd::Pid,
    /// Its threads' ids (its pid among them), which CRIU's messages name.
    pub(super) tids: Vec<i32>,
}

impl Target {
    /// Forks it and waits until it has written its pages and their checksums and closed every
    /// descriptor but /dev/null (CRIU dumps descriptors, and a pipe to the probe is not its to
    /// restore).
    pub(super) fn start(work: &Path, step: Duration) -> Result<Target, Fail> {
        let (r, w) = nix::unistd::pipe().ctx("pipe")?;
        // Blocked before the fork, so that a SIGUSR1 never finds the process unready.
        let mut usr1 = nix::sys::signal::SigSet::empty();
        usr1.add(nix::sys::signal::Signal::SIGUSR1);
        usr1.thread_block().ctx("block SIGUSR1")?;
        // SAFETY: the probe process is single-threaded when it forks.
        match unsafe { nix::unistd::fork() }.ctx("fork")? {
            nix::unistd::ForkResult::Child => {
                drop(r);
                // A session of its own: CRIU dumps a tree whose session leader it holds (a
                // guest's init never called setsid, and session 0 is outside every tree).
                let _ = nix::unistd::setsid();
                let code = match target_main(work, w) {
                    Ok(()) => 0,
                    Err(why) => {
                        let _ = std::fs::write(work.join("error"), why);
                        1
                    }
                };
                // SAFETY: leave without the parent's exit handlers.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(w);
                let guard = KillPid(child);
                let mut line = String::new();
                let mut file = std::fs::File::from(r);
                let fd = file.as_fd().try_clone_to_owned().ctx("dup")?;
                let deadline = Instant::now() + step;
                let mut buf = [0u8; 64];
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if !crate::kit::poll::wait_readable(fd.as_fd(), left).ctx("poll")? {
                        return Err(Fail::error("the test process was not ready in time"));
                    }
                    let n = std::io::Read::read(&mut file, &mut buf).ctx("read")?;
                    if n == 0 {
                        break;
                    }
                    line.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
                if line.trim() != "ready" {
                    let why = std::fs::read_to_string(work.join("error")).unwrap_or_default();
                    return Err(Fail::error(format!(
                        "the test process failed before the dump: {}",
                        why.trim()
                    )));
                }
                std::mem::forget(guard);
                let tids =
                    crate::kit::threads::task_ids(child.as_raw()).ctx("read the test process's threads")?;
                Ok(Target { pid: child, tids })
            }
        }
    }
}

/// A mapping, never unmapped by this process but where the restored process says so.
pub(super) fn map(pages: usize, flags: i32, align: usize) -> Result<usize, String> {
    let page = crate::kit::memory::page_size();
    let len = pages * page + align;
    // SAFETY: a fresh anonymous mapping.
    let p =
        unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap: {}", std::io::Error::last_os_error()));
    }
    let base = p as usize;
    Ok(if align > 0 { base.next_multiple_of(align) } else { base })
}

pub(super) fn fill(addr: usize, tag: char, i: usize) {
    let data = pattern(tag, i);
    // SAFETY: the page is mapped writable by this process.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) }
}

pub(super) fn page_sum(addr: usize) -> u64 {
    // SAFETY: the page is mapped readable by this process.
    checksum(unsafe { std::slice::from_raw_parts(addr as *const u8, crate::kit::memory::page_size()) })
}

/// The stack of each of the test process's threads.
const STACK: usize = 128 << 10;

/// The test process: its memory, its threads, its checksums, then, once restored, its work.
pub(super) fn target_main(work: &Path, ready: OwnedFd) -> Result<(), String> {
    let page = crate::kit::memory::page_size();
    let anon = map(ANON, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, 0)?;
    let shared = map(SHARED, libc::MAP_SHARED | libc::MAP_ANONYMOUS, 0)?;
    let huge_size = 2 << 20;
    let huge = map(HUGE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, huge_size)?;
    // THP where the kernel has it; a kernel without it keeps small pages, which is as good here.
    let thp = crate::kit::memory::madvise(huge, HUGE * page, libc::MADV_HUGEPAGE).is_ok();
    // Three threads write the anonymous pages, a third each, and stay (CRIU dumps and restores
    // them); the main thread writes the rest.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
    for t in 0..3 {
        let barrier = barrier.clone();
        // A small stack: a 2 MiB one (Rust's default) can be backed by a transparent huge page
        // once touched, and CRIU then dumps, and the daemon serves, 512 pages of it.
        let spawned = std::thread::Builder::new().stack_size(STACK).spawn(move || {
            for i in t * ANON / 3..(t + 1) * ANON / 3 {
                fill(anon + i * page, 'A', i);
            }
            barrier.wait();
            loop {
                // SAFETY: waits for a signal (SIGUSR1 is blocked here: it is the main thread's).
                unsafe { libc::pause() };
            }
        });
        spawned.map_err(|e| format!("spawn a thread: {e}"))?;
    }
    for i in 0..SHARED {
        fill(shared + i * page, 'S', i);
    }
    for i in 0..HUGE {
        fill(huge + i * page, 'H', i);
    }
    barrier.wait();
    let regions = [('A', anon, ANON), ('S', shared, SHARED), ('H', huge, HUGE)];
    let mut text = String::new();
    for (tag, base, pages) in regions {
        for i in 0..pages {
            text.push_str(&format!("{tag} {i} {:x}\n", page_sum(base + i * page)));
        }
    }
    std::fs::write(work.join("before"), text).map_err(|e| format!("write before: {e}"))?;
    std::fs::write(work.join("thp"), if thp { "yes" } else { "no" }).map_err(|e| e.to_string())?;
    // Only /dev/null stays open: the descriptors the probe process had are not the test's.
    let null =
        std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").map_err(|e| e.to_string())?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
    drop(null);
    let mut ready = std::fs::File::from(ready);
    ready.write_all(b"ready\n").map_err(|e| e.to_string())?;
    // SAFETY: closes every descriptor above stderr, the ready pipe's last one among them (EOF for
    // the probe).
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    std::mem::forget(ready);
    let mut usr1 = nix::sys::signal::SigSet::empty();
    usr1.add(nix::sys::signal::Signal::SIGUSR1);
    // Waits for SIGUSR1, which the probe sends once the process is restored.
    usr1.wait().map_err(|e| format!("sigwait: {e}"))?;
    // Restored: a child checksums every page, while this process changes its memory.
    // SAFETY: the child only reads memory and writes a file before _exit.
    let child = match unsafe { libc::fork() } {
        -1 => return Err(format!("fork after the restore: {}", std::io::Error::last_os_error())),
        0 => {
            let mut text = String::new();
            for (tag, base, pages) in regions {
                for i in 0..pages {
                    text.push_str(&format!("{tag} {i} {:x}\n", page_sum(base + i * page)));
                }
            }
            let code = if std::fs::write(work.join("after-child"), text).is_ok() { 0 } else { 3 };
            // SAFETY: leave without exit handlers.
            unsafe { libc::_exit(code) }
        }
        pid => pid,
    };
    let at = |i: usize| anon + i * page;
    // SAFETY: ranges of this process's own anonymous mapping.
    unsafe {
        if libc::munmap(at(UNMAP.0) as *mut _, (UNMAP.1 - UNMAP.0) * page) != 0 {
            return Err(format!("munmap: {}", std::io::Error::last_os_error()));
        }
    }
    let len = (REMAP.1 - REMAP.0) * page;
    let dest = map(REMAP.1 - REMAP.0, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, 0)?;
    // SAFETY: moves part of this process's mapping onto another of its own.
    let moved = unsafe {
        libc::mremap(
            at(REMAP.0) as *mut _,
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            dest as *mut libc::c_void,
        )
    };
    if moved == libc::MAP_FAILED {
        return Err(format!("mremap: {}", std::io::Error::last_os_error()));
    }
    crate::kit::memory::madvise(at(DONTNEED.0), (DONTNEED.1 - DONTNEED.0) * page, libc::MADV_DONTNEED)
        .map_err(|e| format!("MADV_DONTNEED: {e}"))?;
    let mut text = String::new();
    for (tag, base, pages) in regions {
        for i in 0..pages {
            let addr = match tag {
                'A' if (UNMAP.0..UNMAP.1).contains(&i) => continue,
                'A' if (REMAP.0..REMAP.1).contains(&i) => dest + (i - REMAP.0) * page,
                _ => base + i * page,
            };
            text.push_str(&format!("{tag} {i} {:x}\n", page_sum(addr)));
        }
    }
    std::fs::write(work.join("after"), text).map_err(|e| format!("write after: {e}"))?;
    let mut status = 0;
    // SAFETY: waits for this process's own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!("the restored process's child ended with status {status:#x}"));
    }
    Ok(())
}
