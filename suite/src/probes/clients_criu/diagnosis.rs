//! What the probe reads when a CRIU step does not end well. Where the processes of a stalled
//! step are: each task's state, where it sleeps in the kernel, the system call it is in (or the
//! user-mode address it stopped at) and the mapping that address is in, its tracer and its
//! pending signals, read from `/proc` before the step is killed. And what the kernel logged
//! meanwhile (a fatal signal's `unhandled exception` line names the faulting address).

use std::fmt::Write;

/// Every process of the trees rooted at `roots` (each root and its descendants, found by their
/// parent ids), one `;`-separated entry per task.
pub(super) fn snapshot(roots: &[i32]) -> String {
    let mut pids: Vec<i32> = Vec::new();
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(|pid| Some((pid, stat_field(&format!("/proc/{pid}/stat"), 1)?.parse().ok()?)))
                .collect()
        })
        .unwrap_or_default();
    let mut queue: Vec<i32> = roots.to_vec();
    while let Some(pid) = queue.pop() {
        if pids.contains(&pid) || std::fs::metadata(format!("/proc/{pid}")).is_err() {
            continue;
        }
        pids.push(pid);
        queue.extend(parents.iter().filter(|(_, ppid)| *ppid == pid).map(|(p, _)| *p));
    }
    pids.sort_unstable();
    let mut out = Vec::new();
    for pid in pids {
        let tids = crate::kit::threads::task_ids(pid).unwrap_or_default();
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        for tid in tids {
            out.push(task(pid, tid, &maps));
        }
    }
    out.join("; ")
}

fn task(pid: i32, tid: i32, maps: &str) -> String {
    let dir = format!("/proc/{pid}/task/{tid}");
    let stat = std::fs::read_to_string(format!("{dir}/stat")).unwrap_or_default();
    let comm = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") ")).map_or("?", |(c, _)| c);
    let state = stat_field(&format!("{dir}/stat"), 0).unwrap_or_default();
    let mut s = format!("{pid}/{tid} {comm} {state}");
    let wchan = std::fs::read_to_string(format!("{dir}/wchan")).unwrap_or_default();
    if !wchan.trim().is_empty() && wchan.trim() != "0" {
        let _ = write!(s, " wchan={}", wchan.trim());
    }
    // `nr a1..a6 sp pc` in a system call, `-1 sp pc` stopped outside one, or `running`.
    let syscall = std::fs::read_to_string(format!("{dir}/syscall")).unwrap_or_default();
    let words: Vec<&str> = syscall.split_whitespace().collect();
    match words.as_slice() {
        [nr, .., pc] if words.len() >= 3 => {
            let _ = write!(s, " syscall={nr} pc={pc}");
            if let Some(m) = mapping(maps, pc) {
                let _ = write!(s, " in {m}");
            }
        }
        [word] => {
            let _ = write!(s, " syscall={word}");
        }
        _ => {}
    }
    let status = std::fs::read_to_string(format!("{dir}/status")).unwrap_or_default();
    for (key, name) in [("TracerPid:", "tracer"), ("SigPnd:", "sigpnd"), ("ShdPnd:", "shdpnd")] {
        let value = status.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).unwrap_or("0");
        if value.trim_start_matches('0').is_empty() {
            continue;
        }
        let _ = write!(s, " {name}={value}");
    }
    let stack = std::fs::read_to_string(format!("{dir}/stack")).unwrap_or_default();
    let frames: Vec<&str> = stack
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|f| f.split('+').next().unwrap_or(f))
        .take(4)
        .collect();
    if !frames.is_empty() {
        let _ = write!(s, " stack={}", frames.join("<"));
    }
    s
}

/// What stopped a thread of `pid` for its tracer outside any system call (a signal-delivery
/// stop: its `/proc/.../syscall` says `-1`), when that is a fault at a pointer authentication
/// instruction: a failed `AUT*` raises the fault itself on a CPU with FEAT_FPAC (arm64; QEMU's
/// `max` CPU has it), and the thread waits for its tracer (CRIU) to deal with the signal.
pub(super) fn stopped_at_fault(pid: i32) -> Option<String> {
    let (_, _, name) = fault_stop(pid)?;
    Some(format!("a restored thread stopped at a pointer authentication fault ({name})"))
}

/// The thread of `pid` so stopped ([`stopped_at_fault`]): its id, the address it stopped at and
/// the instruction's name.
pub(super) fn fault_stop(pid: i32) -> Option<(i32, u64, &'static str)> {
    crate::kit::threads::task_ids(pid).ok()?.into_iter().find_map(|tid| {
        let dir = format!("/proc/{pid}/task/{tid}");
        if stat_field(&format!("{dir}/stat"), 0)? != "t" {
            return None;
        }
        let syscall = std::fs::read_to_string(format!("{dir}/syscall")).ok()?;
        let words: Vec<&str> = syscall.split_whitespace().collect();
        if words.first() != Some(&"-1") {
            return None;
        }
        let pc = u64::from_str_radix(words.last()?.trim_start_matches("0x"), 16).ok()?;
        let mut word = [0u8; 4];
        read_at(pid, pc, &mut word)?;
        Some((tid, pc, pointer_authentication(u32::from_le_bytes(word))?))
    })
}

/// Fills `buf` from process `pid`'s memory at `addr` (`/proc/<pid>/mem`).
pub(super) fn read_at(pid: i32, addr: u64, buf: &mut [u8]) -> Option<()> {
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    std::os::unix::fs::FileExt::read_exact_at(&mem, buf, addr).ok()
}

/// The name of an arm64 instruction that authenticates a return address (the ones GCC's
/// `-mbranch-protection` emits, Arm ARM C6.2 AUTIA/AUTIB, RETAA/RETAB), or `None`.
fn pointer_authentication(insn: u32) -> Option<&'static str> {
    Some(match insn {
        0xd503_23bf => "AUTIASP",
        0xd503_23ff => "AUTIBSP",
        0xd503_219f => "AUTIA1716",
        0xd503_21df => "AUTIB1716",
        0xd65f_0bff => "RETAA",
        0xd65f_0fff => "RETAB",
        _ => return None,
    })
}

/// The `n`th field after the command of a `/proc/.../stat` file (0: the state, 1: the parent).
fn stat_field(path: &str, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(path).ok()?;
    Some(stat.rsplit_once(") ")?.1.split_whitespace().nth(n)?.to_string())
}

/// The mapping of `/proc/PID/maps` that holds the address `pc` (hex): its range, protection,
/// offset of `pc` into it and its name.
fn mapping(maps: &str, pc: &str) -> Option<String> {
    let pc = u64::from_str_radix(pc.trim_start_matches("0x"), 16).ok()?;
    maps.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        let (start, end) = w.next()?.split_once('-')?;
        let (start, end) = (u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?);
        if !(start..end).contains(&pc) {
            return None;
        }
        let perms = w.next()?;
        let name = w.nth(3).unwrap_or("[anon]");
        Some(format!("{name}+{:#x} ({perms}, {:#x} bytes)", pc - start, end - start))
    })
}

/// The kernel's log from the moment [`KernelLog::mark`] was called: `/dev/kmsg` opened and
/// positioned at its end, read back without waiting.
pub(super) struct KernelLog(Option<std::fs::File>);

impl KernelLog {
    pub(super) fn mark() -> KernelLog {
        use std::os::unix::fs::OpenOptionsExt;
        let file =
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open("/dev/kmsg").ok();
        let file =
            file.and_then(|mut f| std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).ok().map(|_| f));
        KernelLog(file)
    }

    /// The messages logged since the mark (each record's text, without its sequence and time),
    /// at most `n`, the last ones.
    pub(super) fn since(&mut self, n: usize) -> String {
        let Some(file) = self.0.as_mut() else { return String::new() };
        let mut lines = Vec::new();
        let mut buf = vec![0u8; 8192];
        // One record per read; EAGAIN at the end, EPIPE for records overwritten meanwhile.
        loop {
            match std::io::Read::read(file, &mut buf) {
                Ok(0) => break,
                Ok(len) => {
                    let record = String::from_utf8_lossy(&buf[..len]);
                    let text = record.split_once(';').map_or(&*record, |(_, t)| t);
                    lines.push(text.lines().next().unwrap_or("").trim().to_string());
                }
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
        lines[lines.len().saturating_sub(n)..].join(" | ")
    }

    /// The detail `kernel_log`: what the kernel logged since the mark, when it logged anything.
    pub(super) fn note(&mut self, obs: &mut crate::kit::outcome::Observation) {
        let text = self.since(8);
        if !text.is_empty() {
            obs.detail("kernel_log", text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_names_this_process_and_its_threads() {
        let me = std::process::id() as i32;
        let s = snapshot(&[me]);
        assert!(s.contains(&format!("{me}/{me} ")), "{s}");
        assert_eq!(
            mapping("1000-3000 r-xp 00000000 00:00 0 /x\n4000-5000 rw-p 0 00:00 0\n", "0x4010"),
            Some("[anon]+0x10 (rw-p, 0x1000 bytes)".to_string())
        );
        assert_eq!(
            mapping("1000-3000 r-xp 0 00:00 0 /x\n", "2000").unwrap(),
            "/x+0x1000 (r-xp, 0x2000 bytes)"
        );
        // Not stopped for a tracer: nothing to name.
        assert_eq!(stopped_at_fault(me), None);
        assert_eq!(pointer_authentication(0xd503_23bf), Some("AUTIASP"));
        assert_eq!(pointer_authentication(0xd503_233f), None, "PACIASP signs, it does not authenticate");
    }
}
