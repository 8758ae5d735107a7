//! The runner: one libtest-mimic trial per behaviour; each trial runs its probe in a child
//! process, grades the report against the expectation for the running kernel, records the cell
//! and maps the verdict onto libtest's pass / fail / ignored.

use crate::kit::behaviour::Behaviour;
use crate::kit::outcome::Report;
use crate::run::catalogue;
use crate::run::cli::{Cli, Fault};
use crate::run::isolate::{self, Outcome};
use libtest_mimic::{Arguments, Completion, Conclusion, Failed, Trial};
use model::expect::{grade_on, Grade, Reported};
use model::stream::{Decoded, Record};
use model::version::KernelVersion;
use model::{Cell, Detail, Details, Verdict};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Where cells go as they are produced: always a map (for `--results`), and in a guest also the
/// results port, one record per cell as soon as it exists.
pub struct Sink {
    /// Every record sent, as the receiving end decodes them.
    sent: Mutex<Decoded>,
    stream: Option<Mutex<std::fs::File>>,
    faults: Vec<Fault>,
}

/// The suite build: the package version, and the git revision `cargo xtask` builds it from.
pub fn suite_version() -> String {
    match option_env!("UFFDC_SUITE_REV") {
        Some(rev) if !rev.is_empty() => format!("{}+{rev}", env!("CARGO_PKG_VERSION")),
        _ => env!("CARGO_PKG_VERSION").to_string(),
    }
}

impl Sink {
    pub fn new(stream: Option<std::fs::File>, faults: Vec<Fault>) -> Sink {
        Sink { sent: Mutex::new(Decoded::default()), stream: stream.map(Mutex::new), faults }
    }

    pub fn send(&self, record: &Record) {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).feed(&record.encode());
        if let Some(stream) = &self.stream {
            let mut port = stream.lock().unwrap_or_else(|e| e.into_inner());
            let _ = port.write_all(record.encode().as_bytes()).and_then(|()| port.flush());
        }
    }

    pub(crate) fn record(&self, id: &str, cell: &Cell) {
        self.send(&Record::Cell { id: id.to_string(), cell: cell.clone() });
        let count = self.count();
        for fault in &self.faults {
            match fault {
                // PID 1 exiting is a real kernel panic ("Attempted to kill init!"). The records
                // sent must have left the serial port first: a write returns once the tty holds the
                // bytes, and a panic does not wait for the port to send them.
                Fault::PanicAfter(n) if *n == count => {
                    self.drain();
                    std::process::exit(3)
                }
                Fault::TruncateAfter(n) if *n == count => {
                    let next = Record::Fatal { message: "this record is cut in half".into() }.encode();
                    if let Some(stream) = &self.stream {
                        let mut port = stream.lock().unwrap_or_else(|e| e.into_inner());
                        let _ =
                            port.write_all(&next.as_bytes()[..next.len() / 2]).and_then(|()| port.flush());
                    }
                    crate::kit::machine::power_off();
                }
                Fault::HangAfter(n) if *n == count => loop {
                    std::thread::park();
                },
                _ => {}
            }
        }
    }

    /// Waits until the stream's port has sent everything written to it (tcdrain(3); a stream that
    /// is not a terminal has nothing to wait for).
    fn drain(&self) {
        if let Some(stream) = &self.stream {
            let port = stream.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: tcdrain on a descriptor this file owns; an error (ENOTTY) is nothing to wait for.
            unsafe {
                libc::tcdrain(std::os::fd::AsRawFd::as_raw_fd(&*port));
            }
        }
    }

    /// How many cells were sent.
    pub fn count(&self) -> usize {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).cells.len()
    }

    /// Everything sent so far, decoded.
    pub fn sent(&self) -> Decoded {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// When this run's trials began.
static RUN_STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Runs the selected behaviours. Returns libtest-mimic's conclusion.
pub fn run(cli: &Cli, sink: &Arc<Sink>) -> Conclusion {
    let mut args = Arguments::from_iter(cli.test_args.clone());
    // Probes spend most of their time waiting (for a message, or through a quiet window), so
    // more of them run at once than there are CPUs; --test-threads still decides.
    if args.test_threads.is_none() {
        args.test_threads = Some(std::thread::available_parallelism().map_or(1, |n| n.get()).max(1) * 4);
    }
    let uname = crate::kit::machine::uname();
    let kernel = Arc::new(Kernel {
        version: KernelVersion::from_uname(&uname.release, &uname.version),
        config: crate::kit::machine::kernel_config(),
    });
    let cli = Arc::new(cli.clone());
    let pool = Arc::new(HugePagePool::default());
    let mut planned = Vec::new();
    let mut trials = Vec::new();
    // Slow probes first: their waits then overlap the others' work.
    let mut behaviours: Vec<&'static Behaviour> = catalogue::all().collect();
    behaviours.sort_by_key(|b| std::cmp::Reverse(b.slow));
    for b in behaviours {
        let (cli, sink, kernel, pool) = (cli.clone(), sink.clone(), kernel.clone(), pool.clone());
        let trial = Trial::ignorable_test(b.trial_name(), move || {
            let held = pool.take(b.variant.huge.bytes(), b.huge_pages);
            let cell = observe(b, &cli, &kernel, held.as_ref());
            drop(held);
            sink.record(b.id, &cell);
            completion(&cell)
        })
        .with_kind(b.family());
        if !args.is_filtered_out(&trial) && !args.is_ignored(&trial) {
            planned.push(b.id.to_string());
        }
        trials.push(trial);
    }
    if !args.list {
        sink.send(&Record::Start {
            release: uname.release,
            version: uname.version,
            machine: uname.machine,
            planned,
            uptime_ms: crate::kit::machine::uptime_ms(),
            suite: suite_version(),
            config: kernel.config.clone(),
            go: crate::kit::goworkload::version(),
            cpus: crate::kit::machine::online_cpus(),
        });
    }
    let reserved = match reserve_hugepages(cli.reserve_hugepages) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("suite: --reserve-hugepages: {e}");
            None
        }
    };
    pool.fill(&crate::kit::memory::huge_page_sizes());
    if !args.list {
        crate::run::isolate::start_zygote();
    }
    RUN_STARTED.get_or_init(std::time::Instant::now);
    let conclusion = libtest_mimic::run(&args, trials);
    drop(reserved);
    // Whatever a killed probe left changed is put back (its journal says what).
    if let Err(e) = crate::kit::settings::restore_settings() {
        eprintln!("suite: cannot restore system settings a probe changed: {e}");
    }
    conclusion
}

/// The huge pages free when the probes start, of each size, handed out to the probes that declare
/// a need (`Behaviour::huge_pages`, of their variant's size): a probe waits until its pages are
/// free, so probes running at once never take each other's (one that found too few would be
/// `skipped`, and its cell flaky). A probe that needs more than the machine has runs at once, and
/// finds out for itself.
#[derive(Default)]
pub struct HugePagePool {
    /// Per size in bytes: (capacity, free now).
    state: std::sync::Mutex<std::collections::BTreeMap<usize, (u64, u64)>>,
    freed: std::sync::Condvar,
}

/// Huge pages taken from a [`HugePagePool`], given back when dropped.
pub struct HeldHugePages<'a> {
    pool: &'a HugePagePool,
    size: usize,
    n: u64,
}

impl HugePagePool {
    /// Sets the capacity of each size (before any probe takes from it).
    pub fn fill(&self, sizes: &[(usize, u64)]) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) =
            sizes.iter().map(|&(size, n)| (size, (n, n))).collect();
    }

    /// Waits until `n` pages of `size` are free and takes them; `None` (nothing to wait for) when
    /// `n` is 0 or more than the capacity.
    pub fn take(&self, size: usize, n: u64) -> Option<HeldHugePages<'_>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if n == 0 || n > state.get(&size).map_or(0, |s| s.0) {
            return None;
        }
        while state.get(&size).map_or(0, |s| s.1) < n {
            state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.entry(size).or_default().1 -= n;
        Some(HeldHugePages { pool: self, size, n })
    }
}

impl HeldHugePages<'_> {
    /// Waits, up to `limit` (`--timeout-ms`), until the kernel has these pages free. The pool
    /// hands a probe its pages for all its runs, but a run's pages go back to the kernel only once
    /// its processes are gone, which can come after its result, and the next holder may start
    /// before: on 6.12-arm64 under TCG, run 3 of 5 of a 32 MiB probe found none free (the other
    /// three were other probes') and was `skipped`, a flaky cell; in a whole matrix run,
    /// `remove.hugetlb_copy_eagain_32m` found 1 of its 2 free as the probe before it ended, and
    /// was `skipped`.
    pub fn wait_back(&self, limit: std::time::Duration) {
        let end = std::time::Instant::now() + limit;
        while crate::kit::memory::huge_pages_of(self.size).unwrap_or(0) < self.n
            && std::time::Instant::now() < end
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

impl Drop for HeldHugePages<'_> {
    fn drop(&mut self) {
        self.pool.state.lock().unwrap_or_else(|e| e.into_inner()).entry(self.size).or_default().1 += self.n;
        self.pool.freed.notify_all();
    }
}

/// Raises vm.nr_hugepages by `n` for the run (put back when the hold is dropped, or by the next
/// run if this one is killed).
fn reserve_hugepages(n: u32) -> std::io::Result<Option<crate::kit::settings::Reserved>> {
    if n == 0 {
        return Ok(None);
    }
    crate::kit::settings::Reserved::set("vm/nr_hugepages", |now| {
        (now.parse::<u64>().unwrap_or(0) + u64::from(n)).to_string()
    })
    .map(Some)
}

/// Runs one behaviour's probe `--repeat` times and grades it: one cell, `flaky` when the runs
/// did not agree on the observation and verdict. With the huge pages the pool handed it (`held`),
/// each run starts once they are free ([`HeldHugePages::wait_back`]): the previous holder's, or
/// its own previous run's, processes may still be ending.
pub fn observe(b: &Behaviour, cli: &Cli, kernel: &Kernel, held: Option<&HeldHugePages>) -> Cell {
    let cells: Vec<Cell> = (0..cli.repeat.max(1))
        .map(|run| {
            if let Some(held) = held {
                held.wait_back(cli.ctx.timeout);
            }
            observe_once(b, cli, kernel, run)
        })
        .collect();
    merge_repeats(cells)
}

/// One cell from the cells of repeated runs: the first, when all agree; else `flaky`, observing
/// the most frequent value, with every distinct (verdict, observation) and its count in details.
fn merge_repeats(cells: Vec<Cell>) -> Cell {
    merge_runs(cells.into_iter().enumerate().map(|(i, c)| (i as u32 + 1, c)).collect())
}

/// [`merge_repeats`] for cells that name their run (1 is the first): the runs of a selftest
/// program that observed a case, which need not be every run (`suite/src/run/selftests.rs`).
pub(crate) fn merge_runs(runs: Vec<(u32, Cell)>) -> Cell {
    let (numbers, mut cells): (Vec<u32>, Vec<Cell>) = runs.into_iter().unzip();
    let n = cells.len();
    let mut counts: Vec<((Verdict, String), usize)> = Vec::new();
    for c in &cells {
        let key = (c.verdict, c.observed.clone());
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, count)) => *count += 1,
            None => counts.push((key, 1)),
        }
    }
    // The cell shown is the first run of the most frequent observation. Each run that saw
    // something else, the first of each such observation, is listed with its reason and details:
    // a flaky cell says how it went wrong.
    let key = |c: &Cell| (c.verdict, c.observed.clone());
    let count = |c: &Cell| counts.iter().find(|(k, _)| *k == key(c)).map_or(0, |(_, n)| *n);
    let shown = (0..n).max_by_key(|&i| (count(&cells[i]), std::cmp::Reverse(i))).unwrap_or(0);
    let mut others = Vec::new();
    for (i, c) in cells.iter().enumerate() {
        let seen_before = cells[..i].iter().any(|p| key(p) == key(c));
        if key(c) != key(&cells[shown]) && !seen_before {
            let details: Vec<String> = c.details.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let reason = c.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
            others.push(format!("run {}: {:?}{reason}: {}", numbers[i], c.observed, details.join(" ")));
        }
    }
    let mut first = cells.swap_remove(shown);
    if !others.is_empty() {
        first.details.insert("other_runs".into(), Detail::from(others.join("; ")));
    }
    if n > 1 {
        first.details.insert("repeats".into(), Detail::from(n));
    }
    if counts.len() == 1 {
        return first;
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    let listed: Vec<String> = counts.iter().map(|((v, o), count)| format!("{count}x {v} {o:?}")).collect();
    first.details.insert("observations".into(), Detail::from(listed.join("; ")));
    Cell {
        observed: counts[0].0 .1.clone(),
        verdict: Verdict::Flaky,
        reason: Some(format!("{n} runs observed {} different results (see `observations`)", counts.len())),
        expected: first.expected.clone(),
        details: first.details,
    }
}

/// The running kernel, as grading needs it.
pub struct Kernel {
    pub version: Option<KernelVersion>,
    /// Its configuration, where it could be read.
    pub config: Option<model::config::Config>,
}

impl Kernel {
    /// Grades a report; a note the grading leaves (a configuration not known) goes into `details`.
    fn grade(&self, rules: &[model::expect::Rule], reported: Reported<'_>, details: &mut Details) -> Grade {
        let arch = Some(model::arch::Arch::native());
        let g = grade_on(rules, self.version, self.config.as_ref(), arch, reported);
        if let Some(note) = &g.note {
            details.insert("config".into(), Detail::from(note.as_str()));
        }
        g
    }
}

/// Runs one behaviour's probe once and grades it.
fn observe_once(b: &Behaviour, cli: &Cli, kernel: &Kernel, run: u32) -> Cell {
    let run = isolate::run(b.id, cli, run);
    let rules = b.rules();
    let mut details = Details::new();
    let cell = match run.outcome {
        Outcome::Report { report, note } => {
            if let Some(note) = note {
                details.insert("harness".into(), Detail::from(note));
            }
            match report {
                Report::Observed { observed, details: d } => {
                    details.extend(d);
                    let g = kernel.grade(&rules, Reported::Observed(&observed), &mut details);
                    Cell { observed, verdict: g.verdict, reason: g.reason, expected: g.rule, details }
                }
                Report::Unsupported { observed, reason, details: d } => {
                    details.extend(d);
                    let g = kernel.grade(&rules, Reported::Unsupported, &mut details);
                    // The probe says what is missing; when that contradicts the expectation, the
                    // grade says so too.
                    let reason = match g.reason {
                        Some(why) => format!("{reason}; {why}"),
                        None => reason,
                    };
                    Cell { observed, verdict: g.verdict, reason: Some(reason), expected: g.rule, details }
                }
                Report::Skipped { reason } => failure("skipped", Verdict::Skipped, reason, details),
                Report::Error { message } => failure("error", Verdict::Error, message, details),
            }
        }
        Outcome::Hung { stderr } => failure(
            "hung",
            Verdict::Hung,
            format!(
                "no result within the {}s watchdog; the probe process was killed{}",
                cli.watchdog.as_secs(),
                if stderr.is_empty() { String::new() } else { format!(" (stderr: {stderr})") }
            ),
            details,
        ),
        Outcome::Crashed { signal, stderr } => failure(
            &format!("crashed: {signal}"),
            Verdict::Crashed,
            format!("the probe process died from {signal}: {stderr}"),
            details,
        ),
        Outcome::Failed(message) => failure("error", Verdict::Error, message, details),
    };
    let mut cell = cell;
    cell.details.insert("probe_ms".into(), Detail::from(run.elapsed.as_millis() as u64));
    if let Some(cpu) = run.cpu {
        cell.details.insert("cpu_ms".into(), Detail::from(cpu.as_millis() as u64));
    }
    // When it ran, from the start of the run: where a run's time goes (`cargo xtask bench`).
    let began = run.started.saturating_duration_since(*RUN_STARTED.get_or_init(std::time::Instant::now));
    cell.details.insert("started_ms".into(), Detail::from(began.as_millis() as u64));
    cell
}

fn failure(observed: &str, verdict: Verdict, reason: String, details: Details) -> Cell {
    Cell { observed: observed.to_string(), verdict, reason: Some(reason), expected: None, details }
}

fn completion(cell: &Cell) -> Result<Completion, Failed> {
    let why = cell.reason.as_deref().unwrap_or("");
    match cell.verdict {
        Verdict::Expected => Ok(Completion::Completed),
        Verdict::Unsupported => Ok(Completion::ignored_with(format!("unsupported: {why}"))),
        Verdict::Skipped => Ok(Completion::ignored_with(format!("skipped: {why}"))),
        Verdict::Unexpected => Err(format!(
            "unexpected: observed {:?}; expected {}",
            cell.observed,
            cell.expected.as_deref().unwrap_or("(no rule)")
        )
        .into()),
        v => Err(format!("{v}: {why}").into()),
    }
}

/// The host entry point: run (streaming to `--stream`), write `--results`, exit with libtest's
/// status.
pub fn host(cli: Cli) -> std::process::ExitCode {
    let stream = match &cli.stream {
        None => None,
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("suite: cannot write {}: {e}", path.display());
                return std::process::ExitCode::from(2);
            }
        },
    };
    let sink = Arc::new(Sink::new(stream, cli.faults.clone()));
    let started = std::time::Instant::now();
    let conclusion = run(&cli, &sink);
    if !cli.test_args.iter().any(|a| a == "--list") {
        sink.send(&Record::End { count: sink.count(), uptime_ms: crate::kit::machine::uptime_ms() });
    }
    if let Some(path) = &cli.results {
        let info = model::RunInfo {
            source: "host".to_string(),
            accel: "none".to_string(),
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            suite: suite_version(),
            duration_ms: Some(started.elapsed().as_millis() as u64),
            repeat: (cli.repeat > 1).then_some(cli.repeat),
            ..model::RunInfo::default()
        };
        let sent = sink.sent();
        // The same builder xtask uses; this run ended normally, so it is complete when its end
        // record accounts for every cell.
        let reason = model::run::Outcome {
            decoded: &sent,
            ending: &model::run::Ending::Exited { code: Some(0), signal: None },
            what: "the suite",
            console: "",
            stderr: "",
            log: "-",
        }
        .reason();
        let results = model::run::results(info, &sent, reason);
        if let Err(e) = model::data::save(path, &results) {
            eprintln!("suite: cannot write {}: {e}", path.display());
            return std::process::ExitCode::from(2);
        }
    }
    conclusion.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(observed: &str, verdict: Verdict, detail: i64) -> Cell {
        let mut details = Details::new();
        details.insert("retries".into(), Detail::from(detail));
        Cell { observed: observed.into(), verdict, reason: None, expected: Some("x".into()), details }
    }

    #[test]
    fn a_flaky_cell_counts_each_observation_and_keeps_how_the_odd_runs_went() {
        let same = merge_repeats(vec![cell("a", Verdict::Expected, 1), cell("a", Verdict::Expected, 2)]);
        assert_eq!((same.verdict, same.details.get("other_runs")), (Verdict::Expected, None));
        let odd = cell("b", Verdict::Unexpected, 7);
        let merged = merge_repeats(vec![
            cell("a", Verdict::Expected, 1),
            cell("a", Verdict::Expected, 2),
            odd.clone(),
            odd,
        ]);
        assert_eq!((merged.verdict, merged.observed.as_str()), (Verdict::Flaky, "a"));
        assert_eq!(merged.details["observations"].to_string(), "2x expected \"a\"; 2x unexpected \"b\"");
        assert_eq!(merged.details["other_runs"].to_string(), "run 3: \"b\": retries=7");
        // An odd first run is listed too, with its reason; the cell shown is a majority run.
        let mut failed = cell("error", Verdict::Error, 0);
        failed.reason = Some("the stress fell short".into());
        let merged =
            merge_repeats(vec![failed, cell("a", Verdict::Expected, 1), cell("a", Verdict::Expected, 2)]);
        assert_eq!((merged.verdict, merged.observed.as_str()), (Verdict::Flaky, "a"));
        assert_eq!(merged.details["retries"].to_string(), "1");
        assert_eq!(
            merged.details["other_runs"].to_string(),
            "run 1: \"error\" (the stress fell short): retries=0"
        );
    }
}
