//! Reading CRIU's logs (`-o FILE -v4`): error lines, the daemon's counts, the restore's, each
//! line without the time stamp CRIU puts before it.

/// The lines CRIU logs on every failure, after the one that says what failed.
const WRAPPERS: &[&str] = &[
    "Could not initialize kernel features detection",
    "Dumping FAILED",
    "Restoring FAILED",
    "Can't wait or bad status",
    "Can't infect",
    "Can't obtain regs for thread",
];

/// Every `Error (file:line): message` line of a CRIU log, as its message (the time stamp and the
/// source line change between runs and versions; the message names what failed).
pub fn errors(log: &str) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let at = l.find("Error (")?;
            let rest = &l[at..];
            let msg = rest.split_once("): ").map_or(rest, |(_, m)| m);
            Some(msg.trim().trim_end_matches(['.', ':']).to_string())
        })
        .filter(|m| !m.is_empty())
        .collect()
}

/// The last `n` lines of a CRIU log, without their time stamps.
pub fn tail(log: &str, n: usize) -> String {
    last(unstamped_lines(log), n)
}

/// A CRIU log line without its time stamp (`(00.013) `).
pub fn unstamped(l: &str) -> &str {
    l.split_once(") ").filter(|_| l.starts_with('(')).map_or(l, |(_, m)| m)
}

/// The last 12 lines of a CRIU log about lazy pages and userfaultfd, without time stamps (the
/// options it echoes come first).
pub fn lines_about_lazy(log: &str) -> String {
    let mut lines = unstamped_lines(log);
    lines.retain(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("lazy") || l.contains("uffd")
    });
    last(lines, 12)
}

/// The restore's page counts (criu/mem.c restore_priv_vma_content's `nr_restored_pages:` ... `nr_lazy:`
/// lines, one per restored process), without their time stamps.
pub fn page_counts(log: &str) -> String {
    let lines: Vec<String> = unstamped_lines(log)
        .into_iter()
        .filter(|l| l.starts_with("nr_"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    lines.join(" | ")
}

/// Every line of a CRIU log (none when it cannot be read), without its time stamp.
fn unstamped_lines(log: &str) -> Vec<String> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(|l| unstamped(l).to_string()).collect()
}

/// The last `n` of `lines`, joined as one detail.
fn last(lines: Vec<String>, n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

pub fn first_error(log: &str) -> Option<String> {
    errors(log).into_iter().find(|e| !wrapper(e))
}

/// Whether an error line is one CRIU adds above the one that says what failed: the fixed ones, and
/// a step's `... (pid: N) failed with -1`.
pub fn wrapper(e: &str) -> bool {
    WRAPPERS.iter().any(|w| e.starts_with(w)) || e.contains(") failed with -")
}

/// The test process's thread ids in a CRIU message, as `TID` (they change from run to run), also
/// before punctuation (`for 95: Invalid argument`).
pub fn name_threads(message: &str, tids: &[i32]) -> String {
    message
        .split(' ')
        .map(|w| {
            let digits = w.len() - w.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let (number, rest) = w.split_at(digits);
            match number.parse::<i32>() {
                Ok(n) if tids.contains(&n) && rest.chars().all(|c| c.is_ascii_punctuation()) => {
                    format!("TID{rest}")
                }
                _ => w.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// From the lazy-pages daemon's log: the pages it reported transferred (the sum of its
/// `UFFD transferred pages: (copied/total)` lines, one per process) and the faults it served.
pub fn lazy_counts(log: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut copied = 0;
    let mut faults = 0;
    for l in text.lines() {
        if let Some(rest) = l.split("UFFD transferred pages: (").nth(1) {
            copied += rest.split('/').next().and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0);
        }
        if l.contains("#PF at") {
            faults += 1;
        }
    }
    (copied, faults)
}
