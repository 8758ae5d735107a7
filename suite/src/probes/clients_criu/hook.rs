//! The suite as `criu restore`'s action script (`--action-script`, criu/action-scripts.c
//! run_shell_scripts: CRIU executes the path itself, with `CRTOOLS_SCRIPT_ACTION` and
//! `CRTOOLS_INIT_PID` in its environment, and waits for it).
//!
//! At `post-restore` CRIU has switched the restored threads to their last stages and, once the
//! script returns, attaches to them (criu/cr-restore.c restore_root_task: run_scripts
//! (ACT_POST_RESTORE), then attach_to_tasks). On real hardware CRIU's own work in between takes
//! far longer than the restorer's few instructions to its stage wait, so every restored thread
//! is parked in that futex wait when CRIU attaches. Under TCG one host thread runs the guest's
//! CPUs in turn, and a restored thread can still be on its way there: where CRIU then changes
//! the thread's state under it (arm64's pointer authentication keys, criu/arch/aarch64/crtools.c
//! arch_ptrace_restore), the outcome would depend on that scheduling. The hook waits, within a
//! limit, until every restored thread sleeps in the futex system call, which makes the order the
//! one real hardware has, and writes what it saw for the probe (detail `post_restore`).

use std::time::{Duration, Instant};

/// The environment variable that makes the suite this hook: `FILE:LIMIT_MS` (what it saw goes
/// to FILE; it waits at most LIMIT_MS).
pub const ENV: &str = "UFFDC_CRIU_HOOK";

/// Runs the hook when the suite was started as CRIU's action script; `None` otherwise.
pub fn main() -> Option<std::process::ExitCode> {
    let spec = std::env::var(ENV).ok()?;
    let action = std::env::var("CRTOOLS_SCRIPT_ACTION").ok()?;
    if action != "post-restore" {
        return Some(std::process::ExitCode::SUCCESS);
    }
    let (file, limit) = spec.rsplit_once(':')?;
    let limit = Duration::from_millis(limit.parse().unwrap_or(0));
    let seen = match std::env::var("CRTOOLS_INIT_PID").ok().and_then(|p| p.parse::<i32>().ok()) {
        Some(pid) => wait_parked(pid, limit),
        None => "no CRTOOLS_INIT_PID".to_string(),
    };
    let _ = std::fs::write(file, seen);
    // CRIU aborts the restore when a post-restore script fails: the hook never does.
    Some(std::process::ExitCode::SUCCESS)
}

/// Waits until every thread of `pid` sleeps (`S`) in the futex system call, up to `limit`; says
/// how it went.
fn wait_parked(pid: i32, limit: Duration) -> String {
    let start = Instant::now();
    let parked = |tid: i32| {
        crate::kit::threads::task_state(pid, tid) == Some('S')
            && crate::kit::threads::task_syscall(pid, tid) == Some(libc::SYS_futex)
    };
    let tids = || crate::kit::threads::task_ids(pid).unwrap_or_default();
    let all = crate::kit::threads::poll_until(limit, || {
        let t = tids();
        (!t.is_empty() && t.iter().all(|&tid| parked(tid))).then_some(t.len())
    });
    match all {
        Some(n) => format!(
            "{n} threads in their futex wait after {} ms ({})",
            start.elapsed().as_millis(),
            tids().into_iter().map(|t| frame(pid, t)).collect::<Vec<_>>().join("; ")
        ),
        None => {
            let not: Vec<String> =
                tids().into_iter().filter(|&t| !parked(t)).map(|t| t.to_string()).collect();
            format!("threads {} not in a futex wait after {} ms", not.join(" "), limit.as_millis())
        }
    }
}

/// Where a thread waits: its stop address and stack pointer (`/proc/.../syscall`'s last two
/// fields) and the two words at the stack pointer (on arm64, an out-of-line caller of a leaf
/// system call wrapper has its saved frame pointer and signed return address there): what tells
/// one futex wait from another when every thread is in the same wrapper.
fn frame(pid: i32, tid: i32) -> String {
    let Ok(syscall) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")) else {
        return format!("{tid} gone");
    };
    let words: Vec<&str> = syscall.split_whitespace().collect();
    let (Some(sp), Some(pc)) = (words.len().checked_sub(2).map(|i| words[i]), words.last()) else {
        return format!("{tid} {}", syscall.trim());
    };
    let at_sp = u64::from_str_radix(sp.trim_start_matches("0x"), 16).ok().and_then(|sp| {
        let mut buf = [0u8; 16];
        super::diagnosis::read_at(pid, sp, &mut buf)?;
        let word = |i: usize| u64::from_le_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
        Some(format!("{:#x} {:#x}", word(0), word(8)))
    });
    format!("{tid} pc={pc} sp={sp} [sp]={}", at_sp.unwrap_or_else(|| "?".to_string()))
}
