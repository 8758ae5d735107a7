//! Running the suite on one kernel (a guest under QEMU, or the host directly) and turning what
//! came back into that kernel's results. Both paths read the same line stream; whatever arrived
//! before a failure is kept, and what did not arrive is `missing` with the reason.

use crate::fleet::Image;
use crate::qemu::{Accel, Boot};
use crate::util::{display_path, run_with_timeout, signal_name, Ended};
use anyhow::Result;
use matrix::stream::{decode, Decoded};
use matrix::{Cell, Results, RunInfo, RunStatus};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How guests are run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The QEMU binary.
    pub qemu: PathBuf,
    pub accel: Accel,
    pub cpus: u32,
    pub mem_mb: u32,
    /// Hard limit for a whole guest (or host) run.
    pub timeout: Duration,
    /// Extra arguments for the suite (`--window-ms=500`, filters, self-test faults).
    pub suite_args: Vec<String>,
    /// The suite build, as recorded in results.
    pub suite_version: String,
}

/// Boots `image` with the suite as init. `logs` receives console.log, results.log and
/// qemu.stderr. `on_start` gets QEMU's pid.
pub fn run_guest(
    image: &Image,
    initrd: &Path,
    settings: &Settings,
    logs: &Path,
    on_start: &mut dyn FnMut(u32),
) -> Result<Results> {
    std::fs::create_dir_all(logs)?;
    let boot = Boot {
        qemu: settings.qemu.clone(),
        kernel: image.vmlinuz.clone(),
        initrd: initrd.to_path_buf(),
        init_args: settings.suite_args.clone(),
        accel: settings.accel,
        cpus: settings.cpus,
        mem_mb: settings.mem_mb,
        console: logs.join("console.log"),
        results: logs.join("results.log"),
        stderr: logs.join("qemu.stderr"),
        timeout: settings.timeout,
    };
    let (ended, elapsed) = boot.run(on_start)?;
    let run = Finished {
        decoded: decode(&read_lossy(&boot.results)),
        console: read_lossy(&boot.console),
        stderr: read_lossy(&boot.stderr),
        ended,
        elapsed,
        log: boot.console.clone(),
        what: "QEMU",
    };
    Ok(run.into_results(&image.release, image.source.clone(), settings.accel.name(), settings))
}

/// Runs the suite binary directly on the host. `logs` receives suite.log (its console) and
/// results.log.
pub fn run_host(suite: &Path, settings: &Settings, logs: &Path) -> Result<Results> {
    std::fs::create_dir_all(logs)?;
    let (stream, console) = (logs.join("results.log"), logs.join("suite.log"));
    let _ = std::fs::remove_file(&stream);
    let out = std::fs::File::create(&console)?;
    let mut command = std::process::Command::new(suite);
    command.arg("--stream").arg(&stream).args(&settings.suite_args).stdout(out.try_clone()?).stderr(out);
    let (ended, elapsed) = run_with_timeout(command, settings.timeout, &mut |_| {})?;
    let run = Finished {
        decoded: decode(&read_lossy(&stream)),
        console: read_lossy(&console),
        stderr: String::new(),
        ended,
        elapsed,
        log: console,
        what: "the suite",
    };
    let hostname = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let release =
        nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    Ok(run.into_results(&release, format!("host {hostname}"), "none", settings))
}

/// What a finished (or killed) run left behind.
struct Finished {
    decoded: Decoded,
    console: String,
    stderr: String,
    ended: Ended,
    elapsed: Duration,
    log: PathBuf,
    /// What process ran: "QEMU" or "the suite".
    what: &'static str,
}

impl Finished {
    fn into_results(
        self,
        fallback_release: &str,
        source: String,
        accel: &str,
        settings: &Settings,
    ) -> Results {
        let reason = self.reason(settings.timeout);
        let (release, version, machine) = match &self.decoded.start {
            Some(matrix::stream::Record::Start { release, version, machine, .. }) => {
                (release.clone(), version.clone(), machine.clone())
            }
            _ => (fallback_release.to_string(), String::new(), String::new()),
        };
        let mut cells = self.decoded.cells.clone();
        if let Some(reason) = &reason {
            for id in self.decoded.planned() {
                cells.entry(id.clone()).or_insert_with(|| Cell::missing(reason.clone()));
            }
        }
        Results {
            schema: matrix::model::SCHEMA,
            kernel: RunInfo {
                release,
                version,
                machine,
                source,
                accel: accel.to_string(),
                date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                suite: settings.suite_version.clone(),
                status: if reason.is_none() { RunStatus::Complete } else { RunStatus::Incomplete },
                reason,
                console_log: Some(display_path(&self.log)),
                duration_ms: Some(self.elapsed.as_millis() as u64),
                // On the host, uptime at the start says nothing about this run.
                init_ms: self.decoded.start_uptime_ms().filter(|_| accel != "none"),
                suite_ms: self
                    .decoded
                    .start_uptime_ms()
                    .zip(self.decoded.end_uptime_ms)
                    .map(|(a, b)| b.saturating_sub(a)),
            },
            cells,
        }
    }

    /// Why the run is incomplete, or `None` when it is complete.
    fn reason(&self, timeout: Duration) -> Option<String> {
        let d = &self.decoded;
        if d.is_complete() {
            return None;
        }
        let planned = d.planned().len();
        let cause = if let Some(fatal) = &d.fatal {
            format!("the suite failed: {fatal}")
        } else if let Some(line) = self.console.lines().find(|l| l.contains("Kernel panic - not syncing")) {
            let what = line.split("not syncing:").nth(1).unwrap_or("").trim();
            format!("kernel panic: {what}")
        } else if let Ended::TimedOut = self.ended {
            format!(
                "hard timeout: no end-of-results record within {}s; {} was killed",
                timeout.as_secs(),
                self.what
            )
        } else if let Some(sig) = self.exit_signal() {
            format!("{} was killed by {}{}", self.what, signal_name(sig), self.stderr_tail())
        } else if let Some(code) = self.exit_failure() {
            format!("{} failed (exit status {code}){}", self.what, self.stderr_tail())
        } else if d.start.is_none() {
            if self.console.trim().is_empty() {
                "the guest printed nothing: the kernel did not boot".to_string()
            } else {
                "the suite never started (the boot failed before init, or init could not run)".to_string()
            }
        } else if d.damaged > 0 {
            "the results stream was cut off mid-record".to_string()
        } else {
            "the run ended without an end-of-results record".to_string()
        };
        Some(format!(
            "{cause} (after {} of {} results; log: {})",
            d.cells.len(),
            if d.start.is_some() { planned.to_string() } else { "?".to_string() },
            display_path(&self.log)
        ))
    }

    /// `: <last line of stderr>`, or nothing.
    fn stderr_tail(&self) -> String {
        match self.stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()) {
            Some(last) => format!(": {last}"),
            None => String::new(),
        }
    }

    fn exit_signal(&self) -> Option<i32> {
        match &self.ended {
            Ended::Exited(s) => s.signal(),
            Ended::TimedOut => None,
        }
    }

    fn exit_failure(&self) -> Option<i32> {
        match &self.ended {
            // A suite with failed trials exits 101 after its end record; that is not a failure
            // of the run. QEMU exits 0 on power-off and on a panic with -no-reboot alike.
            Ended::Exited(s) => s.code().filter(|c| *c != 0 && self.decoded.end.is_none()),
            Ended::TimedOut => None,
        }
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// One line on a kernel's results for the progress display: release, accelerator, time, verdict
/// counts, where its logs are, and why it is incomplete if it is.
pub fn brief(r: &Results, logs: &Path) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for cell in r.cells.values() {
        *counts.entry(cell.verdict).or_insert(0) += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(v, n)| format!("{n} {v}")).collect();
    let secs = r.kernel.duration_ms.unwrap_or(0) as f64 / 1000.0;
    let mut line = format!(
        "{} {} {secs:.1}s: {}; logs in {}/",
        r.kernel.release,
        r.kernel.accel,
        if counts.is_empty() { "no cells".to_string() } else { counts.join(", ") },
        display_path(logs)
    );
    if let Some(reason) = &r.kernel.reason {
        line += &format!("; INCOMPLETE: {reason}");
    }
    line
}
