//! Child isolation: every probe runs in a child process (this binary re-executed with
//! `--probe ID`) under a watchdog, so a probe that deadlocks, crashes or is killed becomes an
//! outcome, never a hung or crashed suite.

use crate::cli::{Cli, Fault};
use crate::outcome::{Report, REPORT_PREFIX};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

pub enum Outcome {
    /// The child reported. `note` says when it had to be killed after reporting.
    Report { report: Report, note: Option<String> },
    /// The watchdog fired before any report; what the probe wrote to stderr.
    Hung { stderr: String },
    /// The child died from a signal before reporting.
    Crashed { signal: String, stderr: String },
    /// The child exited without a report.
    Failed(String),
}

pub struct ProbeRun {
    pub outcome: Outcome,
    pub elapsed: Duration,
}

/// Runs one behaviour's probe in a child process.
///
/// The child gets a process group of its own, killed as a whole once the child is done, so a
/// helper process a probe forked cannot outlive it. Output is collected as it arrives: a stray
/// process holding the pipes open cannot make a finished probe look hung.
pub fn run(id: &str, cli: &Cli, run: u32) -> ProbeRun {
    use std::os::unix::process::CommandExt;
    let start = Instant::now();
    let child = Command::new("/proc/self/exe")
        .args(cli.child_args(id, run))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return ProbeRun {
                outcome: Outcome::Failed(format!("cannot start the probe process: {e}")),
                elapsed: start.elapsed(),
            }
        }
    };
    let pid = child.id() as libc::pid_t;
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let mut killed = false;
    let status = match rx.recv_timeout(cli.watchdog) {
        Ok(status) => status.ok(),
        Err(_) => {
            killed = true;
            // SAFETY: signals the probe's own process group.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            // A child stuck in uninterruptible sleep may not die at once; do not wait forever.
            rx.recv_timeout(Duration::from_secs(10)).ok().and_then(Result::ok)
        }
    };
    // Whatever the probe forked goes with it.
    // SAFETY: signals the probe's own process group (gone already, or strays of it).
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    if killed || !status.is_some_and(|s| s.success()) {
        // A probe that did not end normally may have left a system setting changed: put it back.
        if let Err(e) = crate::settings::restore_settings() {
            eprintln!("suite: cannot restore system settings {id} changed: {e}");
        }
    }
    let elapsed = start.elapsed();
    // The pipes are at EOF now unless something still holds them; take what arrived.
    let stdout = stdout.take(Duration::from_secs(2));
    let stderr = tail(&stderr.take(Duration::from_millis(200)));
    let report =
        stdout.lines().rev().find_map(|l| l.strip_prefix(REPORT_PREFIX)).map(serde_json::from_str::<Report>);
    let outcome = match (report, status) {
        (Some(Ok(report)), _) => Outcome::Report {
            report,
            note: killed
                .then(|| "the probe reported, then did not exit until the watchdog killed it".to_string()),
        },
        (Some(Err(e)), _) => Outcome::Failed(format!("unreadable probe report: {e}")),
        (None, _) if killed => Outcome::Hung { stderr },
        (None, None) => Outcome::Failed("waiting for the probe process failed".to_string()),
        (None, Some(status)) => match status.signal() {
            Some(sig) => Outcome::Crashed { signal: signal_name(sig), stderr },
            None => Outcome::Failed(format!(
                "the probe exited with {status} without a report{}",
                if stderr.is_empty() { String::new() } else { format!(": {stderr}") }
            )),
        },
    };
    ProbeRun { outcome, elapsed }
}

/// A pipe read on a thread of its own into a shared buffer.
struct Collected {
    buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    eof: std::sync::mpsc::Receiver<()>,
}

fn collect(pipe: Option<impl std::io::Read + Send + 'static>) -> Collected {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, eof) = channel();
    if let Some(mut pipe) = pipe {
        let buf = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&chunk[..n]);
            }
            let _ = tx.send(());
        });
    }
    Collected { buf, eof }
}

impl Collected {
    /// What arrived, after waiting up to `grace` for the end of the stream.
    fn take(self, grace: Duration) -> String {
        let _ = self.eof.recv_timeout(grace);
        String::from_utf8_lossy(&self.buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// The child side: run the probe, print one report line, exit.
pub fn child_main(id: &str, cli: &Cli) -> ! {
    let report = match crate::catalogue::find(id) {
        None => Report::Error { message: format!("unknown behaviour id {id:?}") },
        Some(b) => {
            for fault in &cli.faults {
                match fault {
                    Fault::ProbeHang(x) if x == id => loop {
                        std::thread::park();
                    },
                    // SAFETY: a deliberate crash, as the self-test asks (std's own SIGSEGV handler,
                    // which ignores a raised signal, is put back to the default first).
                    Fault::ProbeCrash(x) if x == id => unsafe {
                        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                        libc::raise(libc::SIGSEGV);
                    },
                    Fault::NoUserfaultfd => {
                        if let Err(e) = crate::privileges::deny_userfaultfd() {
                            eprintln!("cannot install the seccomp filter: {e}");
                            std::process::exit(4);
                        }
                    }
                    _ => {}
                }
            }
            let mut ctx = cli.ctx;
            for fault in &cli.faults {
                match fault {
                    Fault::ServeStale(x) if x == id => {
                        ctx.sabotage = Some(crate::outcome::Sabotage::StalePage)
                    }
                    Fault::ServeZero(x) if x == id => ctx.sabotage = Some(crate::outcome::Sabotage::ZeroPage),
                    Fault::NoRace(x) if x == id => ctx.sabotage = Some(crate::outcome::Sabotage::NoRace),
                    Fault::SettingHang(x) if x == id => {
                        crate::settings::HANG_AFTER_SETTING.store(true, std::sync::atomic::Ordering::SeqCst)
                    }
                    _ => {}
                }
            }
            let fake_unsupported = cli.faults.iter().any(|f| matches!(f, Fault::Unsupported(x) if x == id));
            if fake_unsupported {
                Report::Unsupported {
                    observed: "self-test".to_string(),
                    reason: format!(
                        "self-test: made to report a missing prerequisite (--inject-fault unsupported={id})"
                    ),
                    details: Default::default(),
                }
            } else {
                match std::panic::catch_unwind(|| (b.probe)(&ctx)) {
                    Ok(result) => Report::from(result),
                    Err(p) => Report::Error {
                        message: format!(
                            "the probe panicked: {}",
                            p.downcast_ref::<String>()
                                .map(String::as_str)
                                .or(p.downcast_ref::<&str>().copied())
                                .unwrap_or("?")
                        ),
                    },
                }
            }
        }
    };
    let report = if cli.corrupt.iter().any(|c| c == id) { corrupt(report) } else { report };
    let line = format!("{REPORT_PREFIX}{}\n", serde_json::to_string(&report).expect("reports serialise"));
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    // Threads may still be blocked in faults; exit_group ends them.
    std::process::exit(0)
}

/// Self-test: turn an observation into one no expectation accepts.
fn corrupt(report: Report) -> Report {
    match report {
        Report::Observed { observed, details } | Report::Unsupported { observed, details, .. } => {
            Report::Observed { observed: format!("corrupted({observed})"), details }
        }
        other => other,
    }
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string())
}

fn tail(s: &str) -> String {
    let s = s.trim();
    let start = s.char_indices().rev().nth(400).map_or(0, |(i, _)| i);
    s[start..].replace('\n', " | ")
}
