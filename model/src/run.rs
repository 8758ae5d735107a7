//! One kernel's run turned into its results. This is the one place that decides whether a run is
//! complete and, when it is not, says why: xtask uses it for guests and for the host, the suite
//! for its own `--results`.

use crate::data::{Cell, Results, RunInfo, RunStatus, SCHEMA};
use crate::stream::{Decoded, Record};

/// How the process that carried a run (QEMU, or the suite on the host) ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It exited by itself, with this exit code or from this signal (named).
    Exited { code: Option<i32>, signal: Option<String> },
    /// No start record arrived within the boot deadline of `secs`; it was killed.
    NoStart { secs: u64 },
    /// No end record arrived within the hard timeout of `secs`; it was killed.
    TimedOut { secs: u64 },
    /// The end record arrived, but it did not exit within the grace period; it was stopped.
    StoppedAfterEnd,
    /// It said on stderr that the guest stopped for good (`line`: a KVM internal error, a failed
    /// VM entry: QEMU pauses the guest and waits forever); it was killed at once.
    GuestStopped { line: String },
}

/// Everything known about a finished run.
#[derive(Clone, Debug)]
pub struct Outcome<'a> {
    pub decoded: &'a Decoded,
    pub ending: &'a Ending,
    /// What carried the run, as messages name it: `QEMU` or `the suite`.
    pub what: &'a str,
    /// The guest's console (empty on the host).
    pub console: &'a str,
    /// What the process wrote to stderr.
    pub stderr: &'a str,
    /// Where the run's log is, as messages show it.
    pub log: &'a str,
}

impl Outcome<'_> {
    /// Why the run is incomplete, or `None` when it is complete: a complete run has an end record
    /// that accounts for every cell and no fatal record.
    pub fn reason(&self) -> Option<String> {
        let d = self.decoded;
        if d.is_complete() {
            return None;
        }
        let cause = if let Some(fatal) = &d.fatal {
            format!("the suite failed: {fatal}")
        } else if let Some(line) = self.console.lines().find(|l| l.contains("Kernel panic - not syncing")) {
            let what = line.split("not syncing:").nth(1).unwrap_or("").trim();
            format!("kernel panic: {what}")
        } else {
            match self.ending {
                Ending::NoStart { secs } => format!(
                    "no start record within {secs}s: the guest died or hung before the suite started; {} was killed{}",
                    self.what,
                    self.stderr_tail()
                ),
                Ending::TimedOut { secs } => format!(
                    "hard timeout: no end-of-results record within {secs}s; {} was killed{}",
                    self.what,
                    self.stderr_tail()
                ),
                Ending::GuestStopped { line } => {
                    format!("{} stopped the guest ({line}); it was killed at once", self.what)
                }
                Ending::Exited { signal: Some(sig), .. } => {
                    format!("{} was killed by {sig}{}", self.what, self.stderr_tail())
                }
                // A suite with failed trials exits 101 after its end record: not a failure of the run.
                Ending::Exited { code: Some(code), .. } if *code != 0 && d.end.is_none() => {
                    format!("{} failed (exit status {code}){}", self.what, self.stderr_tail())
                }
                _ if d.start.is_none() => {
                    if self.console.trim().is_empty() && self.what == "QEMU" {
                        "the guest printed nothing: the kernel did not boot".to_string()
                    } else {
                        "the suite never started (the boot failed before init, or init could not run)".to_string()
                    }
                }
                _ if d.damaged > 0 => "the results stream was cut off mid-record".to_string(),
                _ => "the run ended without an end-of-results record".to_string(),
            }
        };
        Some(format!(
            "{cause} (after {} of {} results; log: {})",
            d.cells.len(),
            if d.start.is_some() { d.planned().len().to_string() } else { "?".to_string() },
            self.log
        ))
    }

    /// Whether this was a boot that failed before the suite started, by the kernel's doing (it
    /// died, or stayed silent past the boot deadline): such a boot is worth another attempt.
    /// A process killed from outside or failing to start is not.
    pub fn failed_before_start(&self) -> bool {
        // A suite that started and said why it cannot go on (a fatal record) is not a failed boot.
        self.decoded.start.is_none()
            && self.decoded.fatal.is_none()
            && matches!(self.ending, Ending::NoStart { .. } | Ending::Exited { code: Some(0), .. })
    }

    /// `: <last line of stderr>`, or nothing.
    fn stderr_tail(&self) -> String {
        match self.stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()) {
            Some(last) => format!(": {last}"),
            None => String::new(),
        }
    }
}

/// A kernel's results from what its run sent: the start record names the kernel (`info` says
/// the rest: source, accelerator, timings), the cells are the ones that arrived, and when the
/// run is incomplete (`reason`) every planned behaviour without a cell is `missing` with it.
pub fn results(mut info: RunInfo, decoded: &Decoded, reason: Option<String>) -> Results {
    if let Some(Record::Start { release, version, machine, suite, config, go, cpus, .. }) = &decoded.start {
        info.cpus = *cpus;
        info.release = release.clone();
        info.version = version.clone();
        info.machine = machine.clone();
        if let Some(arch) = crate::arch::Arch::from_machine(machine) {
            info.arch = Some(arch);
        }
        if !suite.is_empty() {
            info.suite = suite.clone();
        }
        if config.is_some() {
            info.config = config.clone();
        }
        if go.is_some() {
            info.go = go.clone();
        }
    }
    let mut cells = decoded.cells.clone();
    if let Some(reason) = &reason {
        for id in decoded.planned() {
            cells.entry(id.clone()).or_insert_with(|| Cell::missing(reason.clone()));
        }
    }
    info.status = if reason.is_none() { RunStatus::Complete } else { RunStatus::Incomplete };
    info.reason = reason;
    info.suite_ms = decoded.start_uptime_ms().zip(decoded.end_uptime_ms).map(|(a, b)| b.saturating_sub(a));
    Results { schema: SCHEMA, kernel: info, cells }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Verdict;

    fn stream(records: &[Record]) -> Decoded {
        let mut d = Decoded::default();
        for r in records {
            d.feed(&r.encode());
        }
        d
    }

    fn start() -> Record {
        Record::Start {
            release: "6.1.0-56-cloud-amd64".into(),
            version: "#1".into(),
            machine: "x86_64".into(),
            planned: vec!["a.x".into(), "a.y".into()],
            uptime_ms: Some(1500),
            suite: "0.1.0+abc".into(),
            config: None,
            go: Some("go1.27.3".into()),
            cpus: Some(2),
        }
    }

    fn cell() -> Record {
        let mut c = Cell::missing("");
        (c.observed, c.verdict, c.reason) = ("ok".into(), Verdict::Expected, None);
        Record::Cell { id: "a.x".into(), cell: c }
    }

    fn reason(decoded: &Decoded, ending: Ending, console: &str, stderr: &str) -> Option<String> {
        Outcome { decoded, ending: &ending, what: "QEMU", console, stderr, log: "logs/console.log" }.reason()
    }

    const EXITED: Ending = Ending::Exited { code: Some(0), signal: None };

    #[test]
    fn says_why_a_run_is_incomplete() {
        let whole = stream(&[start(), cell(), Record::End { count: 1, uptime_ms: Some(2500) }]);
        assert_eq!(reason(&whole, EXITED, "", ""), None);
        assert_eq!(reason(&whole, Ending::StoppedAfterEnd, "", ""), None, "stopped after its end: complete");
        let cut = stream(&[start(), cell()]);
        let panic = "[ 1.0] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000300\n";
        let cases = [
            (reason(&cut, EXITED, panic, ""), "kernel panic: Attempted to kill init! exitcode=0x00000300 (after 1 of 2 results; log: logs/console.log)"),
            (reason(&cut, Ending::TimedOut { secs: 30 }, "", ""), "hard timeout: no end-of-results record within 30s; QEMU was killed (after 1 of 2"),
            (reason(&cut, Ending::Exited { code: None, signal: Some("SIGKILL".into()) }, "", "x\nqemu: terminating\n"), "QEMU was killed by SIGKILL: qemu: terminating (after 1 of 2"),
            (reason(&cut, Ending::Exited { code: Some(1), signal: None }, "", "bad option\n"), "QEMU failed (exit status 1): bad option"),
            (reason(&Decoded::default(), EXITED, "", ""), "the guest printed nothing: the kernel did not boot (after 0 of ? results"),
            (reason(&Decoded::default(), EXITED, "Linux version 6.1\n", ""), "the suite never started"),
            (reason(&Decoded::default(), Ending::NoStart { secs: 20 }, "Linux version 6.1\n", ""), "no start record within 20s: the guest died or hung before the suite started; QEMU was killed"),
            (reason(&cut, EXITED, "", ""), "the run ended without an end-of-results record (after 1 of 2"),
            (reason(&cut, Ending::TimedOut { secs: 30 }, "", "warning: x\n\n"), "hard timeout: no end-of-results record within 30s; QEMU was killed: warning: x (after 1 of 2"),
            (reason(&Decoded::default(), Ending::GuestStopped { line: "KVM internal error. Suberror: 1".into() }, "", ""), "QEMU stopped the guest (KVM internal error. Suberror: 1); it was killed at once (after 0 of ?"),
            (reason(&stream(&[start(), Record::Fatal { message: "no port".into() }]), EXITED, "", ""), "the suite failed: no port"),
        ];
        for (got, want) in cases {
            let got = got.expect("incomplete");
            assert!(got.starts_with(want), "{got:?} does not start with {want:?}");
        }
        let mut damaged = cut.clone();
        damaged.feed(&cell().encode()[..20]);
        assert!(reason(&damaged, EXITED, "", "")
            .unwrap()
            .starts_with("the results stream was cut off mid-record"));
        let lying = stream(&[start(), cell(), Record::End { count: 2, uptime_ms: None }]);
        assert!(reason(&lying, EXITED, "", "").is_some(), "an end record that disagrees is not complete");
    }

    #[test]
    fn only_boots_that_died_or_stayed_silent_are_retried() {
        let nothing = Decoded::default();
        let outcome = |ending: &Ending| {
            Outcome { decoded: &nothing, ending, what: "QEMU", console: "", stderr: "", log: "" }
                .failed_before_start()
        };
        assert!(outcome(&EXITED), "a panic before init exits QEMU with 0");
        assert!(outcome(&Ending::NoStart { secs: 20 }));
        assert!(
            !outcome(&Ending::Exited { code: None, signal: Some("SIGTERM".into()) }),
            "killed from outside"
        );
        assert!(!outcome(&Ending::Exited { code: Some(1), signal: None }), "QEMU could not start");
        let stopped = Ending::GuestStopped { line: "KVM internal error. Suberror: 1".into() };
        assert!(!outcome(&stopped), "a guest that the accelerator cannot run fails the same way again");
        let started = stream(&[start()]);
        assert!(!Outcome {
            decoded: &started,
            ending: &EXITED,
            what: "QEMU",
            console: "",
            stderr: "",
            log: ""
        }
        .failed_before_start());
        let fatal = stream(&[Record::Fatal { message: "the kernel brought up 1 of the 2 CPUs".into() }]);
        let said =
            Outcome { decoded: &fatal, ending: &EXITED, what: "QEMU", console: "", stderr: "", log: "" };
        assert!(!said.failed_before_start(), "a suite that said why it stopped is not a failed boot");
    }

    #[test]
    fn results_keep_what_arrived_and_name_what_did_not() {
        let cut = stream(&[start(), cell()]);
        let r = results(RunInfo { source: "debian".into(), ..RunInfo::default() }, &cut, Some("boom".into()));
        assert_eq!(r.kernel.release, "6.1.0-56-cloud-amd64");
        assert_eq!(r.kernel.suite, "0.1.0+abc");
        assert_eq!(r.kernel.go.as_deref(), Some("go1.27.3"), "the Go release comes from the start record");
        assert_eq!(r.kernel.status, RunStatus::Incomplete);
        assert_eq!(r.cells["a.x"].verdict, Verdict::Expected);
        assert_eq!(
            (r.cells["a.y"].verdict, r.cells["a.y"].reason.as_deref()),
            (Verdict::Missing, Some("boom"))
        );
        let whole = stream(&[start(), cell(), Record::End { count: 1, uptime_ms: Some(2500) }]);
        let r = results(RunInfo::default(), &whole, None);
        assert_eq!((r.kernel.status, r.kernel.suite_ms, r.cells.len()), (RunStatus::Complete, Some(1000), 1));
    }
}
