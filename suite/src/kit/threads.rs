//! The threads of a probe process as the kernel sees them: ids, scheduler states and CPU time
//! from `/proc`, waiting on a thread's state (the event a probe synchronises on), tgkill.

use nix::errno::Errno;
use std::time::{Duration, Instant};

pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// The scheduler state letter of a thread of this process (`R`, `S`, `D`, ...), from
/// `/proc/self/task/<tid>/stat`.
pub fn thread_state(tid: i32) -> Option<char> {
    task_state(std::process::id() as i32, tid)
}

/// The scheduler state letter of thread `tid` of process `pid` (a helper's: the Go workload's).
pub fn task_state(pid: i32, tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
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

/// Polls `check` until it returns `Some`, up to `limit` (then one last try). Between tries the
/// caller sleeps, 10 us at first, doubling to 1 ms: waiting on a state the kernel shows in `/proc`
/// without spinning, which on a guest's few (emulated) CPUs would take the CPU from the very
/// thread being waited for.
pub fn poll_until<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(10);
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if start.elapsed() >= limit {
            return check();
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

/// Waits until a thread is off the CPU (its state is neither `R` running nor absent), up to
/// `limit`, and returns the state seen. This synchronises on the thread's `/proc` state, which is
/// the event being waited for.
pub fn wait_until_blocked(tid: i32, limit: Duration) -> Option<char> {
    wait_until_task_blocked(std::process::id() as i32, tid, limit)
}

/// [`wait_until_blocked`] for thread `tid` of process `pid`.
pub fn wait_until_task_blocked(pid: i32, tid: i32, limit: Duration) -> Option<char> {
    poll_until(limit, || task_state(pid, tid).filter(|s| *s != 'R')).or_else(|| task_state(pid, tid))
}

/// Waits up to `limit` until a thread of this process sleeps in the kernel's wait for a
/// userfaultfd event to be read (a madvise, munmap or fork whose event is pending): its wchan
/// names a userfaultfd function, or, where wchan names nothing, its kernel stack does, or, where
/// neither can be read, its state is `D`. Synchronises on the thread's `/proc` state. The `D`
/// fallback is weaker: with more than one CPU a thread waiting for mmap_lock on its way to the
/// event sleeps in `D` too, so a probe that can also wait for the event itself (the uffd becoming
/// readable) does. (Taking a running thread's `0` for "cannot be read" made the stress's forced
/// race copy before its REMOVE was pending, once in about a hundred columns: `forced EAGAIN races
/// 33 of 34`.)
pub fn wait_until_in_uffd_wait(tid: i32, limit: Duration) -> bool {
    wait_until_task_in_uffd_wait(std::process::id() as i32, tid, limit)
}

/// [`wait_until_in_uffd_wait`] for thread `tid` of process `pid`.
pub fn wait_until_task_in_uffd_wait(pid: i32, tid: i32, limit: Duration) -> bool {
    // Whether this kernel names where threads sleep, learnt before the first look from any
    // thread of the process that sleeps now (one waiting on a lock or a condition variable).
    if !WCHAN_NAMED.load(std::sync::atomic::Ordering::Relaxed) {
        for t in task_ids(pid).unwrap_or_default() {
            if task_wchan(pid, t).is_some() {
                break;
            }
        }
    }
    poll_until(limit, || {
        match task_wchan(pid, tid) {
            Some(wchan) => wchan.contains("userfaultfd"),
            // `0`: the thread runs, or this kernel names nothing there (one without kallsyms, or
            // x86 before 5.16 with the ORC unwinder, whose get_wchan walked frame pointers only).
            // A thread in `D` may be on its way (waiting for mmap_lock): its kernel stack, where
            // it can be read (root, CONFIG_STACKTRACE), says which; else, where wchan has named a
            // function before (it runs now), it is not waiting yet; only else does `D` count.
            None => {
                task_state(pid, tid) == Some('D')
                    && match task_stack(pid, tid) {
                        Some(stack) => stack.contains("userfaultfd"),
                        None => !WCHAN_NAMED.load(std::sync::atomic::Ordering::Relaxed),
                    }
            }
        }
        .then_some(())
    })
    .is_some()
}

/// Set once this process has read a function's name from a thread's `wchan`: this kernel names
/// where threads sleep, so a `0` there means a thread that runs.
static WCHAN_NAMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Where thread `tid` of process `pid` sleeps in the kernel (`/proc/<pid>/task/<tid>/wchan`),
/// `None` where that is not readable (empty, or `0`: a thread that runs, or a kernel that names
/// nothing there).
pub fn task_wchan(pid: i32, tid: i32) -> Option<String> {
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/wchan")).ok()?;
    let wchan = wchan.trim();
    let named = (!wchan.is_empty() && wchan != "0").then(|| wchan.to_string());
    if named.is_some() {
        WCHAN_NAMED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    named
}

/// Thread `tid` of process `pid`'s kernel stack (`/proc/<pid>/task/<tid>/stack`: root only, and
/// only with CONFIG_STACKTRACE), `None` where it cannot be read or is empty.
fn task_stack(pid: i32, tid: i32) -> Option<String> {
    let stack = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stack")).ok()?;
    (!stack.trim().is_empty()).then_some(stack)
}

/// The ids of process `pid`'s threads (`/proc/<pid>/task`).
pub fn task_ids(pid: i32) -> std::io::Result<Vec<i32>> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/task"))?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect())
}

/// The system call thread `tid` of process `pid` is blocked in (its number, from
/// `/proc/<pid>/task/<tid>/syscall`), `None` when it runs in user mode or that is not readable.
pub fn task_syscall(pid: i32, tid: i32) -> Option<i64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Names a blocked state for the matrix: `S` (interruptible sleep: user-fault context) or `D`
/// (uninterruptible or killable sleep: blocked inside the kernel).
pub fn describe_state(state: Option<char>) -> String {
    match state {
        Some(c) => c.to_string(),
        None => "gone".to_string(),
    }
}

/// Sends a signal to one thread of this process.
pub fn tgkill(tid: i32, sig: nix::sys::signal::Signal) -> Result<(), Errno> {
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, sig as libc::c_int) };
    Errno::result(r).map(drop)
}
