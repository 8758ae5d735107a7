//! Running the suite on one kernel (a guest under QEMU, or the host directly) and turning what
//! came back into that kernel's results. Both read the same line stream as it arrives, from a
//! pipe, and report it as [`Event`]s; whatever arrived before a failure is kept, and what did not
//! arrive is `missing` with the reason (`model::run` words it).
//!
//! A guest is supervised by three deadlines: the boot deadline (no start record: the boot failed
//! or hung before the suite started, and the guest is booted again, up to `boot_attempts`), the
//! hard timeout (no end record), and a grace period after the end record (a guest that does not
//! power off is stopped, and its run is complete).

use crate::boot::qemu::{Boot, Settings};
use crate::inputs::fleet::Image;
use crate::util::{display_path, signal_name};
use anyhow::{Context, Result};
use model::run::{Ending, Outcome};
use model::stream::{Decoded, Record};
use model::{Results, RunInfo};
use std::io::{BufRead, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Something that happened during one run, as it happened.
#[derive(Debug)]
pub enum Event<'a> {
    /// An attempt's process started (QEMU, or the suite on the host).
    Spawned { attempt: u32, pid: u32 },
    /// A whole record arrived on the results stream.
    Record(&'a Record),
    /// A boot failed before the suite started (`reason` names the attempt and where its logs
    /// are kept); another attempt follows.
    Retrying { reason: &'a str },
}

/// Boots `image` with the suite as init. `logs` receives console.log, results.log and
/// qemu.stderr of the last attempt; a boot that failed before the suite started is kept in
/// `logs/failed/<date>-attempt-<n>/` and booted again, up to `settings.boot_attempts`.
pub fn run_guest(
    image: &Image,
    initrd: &Path,
    settings: &Settings,
    logs: &Path,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<Results> {
    std::fs::create_dir_all(logs)?;
    let boot = Boot {
        settings,
        arch: image.arch,
        kernel: &image.vmlinuz,
        initrd,
        console: logs.join("console.log"),
        stderr: logs.join("qemu.stderr"),
    };
    let mut failed_boots = Vec::new();
    for attempt in 1.. {
        let mut command = boot.command()?;
        command.stdout(Stdio::piped());
        let run = supervise(
            command,
            None,
            &logs.join("results.log"),
            Some(&boot.stderr),
            settings,
            attempt,
            observe,
        )
        .map_err(|e| boot.explain(e))?;
        let (console, stderr) = (read_lossy(&boot.console), read_lossy(&boot.stderr));
        let log = display_path(&boot.console);
        let outcome = Outcome {
            decoded: &run.decoded,
            ending: &run.ending,
            what: "QEMU",
            console: &console,
            stderr: &stderr,
            log: &log,
        };
        let reason = outcome.reason();
        if outcome.failed_before_start() && attempt < settings.boot_attempts {
            let kept = keep_failed_attempt(logs, attempt)?;
            let why = reason.as_deref().unwrap_or("the boot failed").split(" (after").next().unwrap_or("");
            let line = format!("attempt {attempt}: {why} (logs: {}/)", display_path(&kept));
            observe(Event::Retrying { reason: &line });
            failed_boots.push(line);
            continue;
        }
        let info = RunInfo {
            release: image.release.clone(),
            source: image.source.clone(),
            accel: boot.accel().name().to_string(),
            date: now(),
            console_log: Some(log.clone()),
            duration_ms: Some(run.elapsed.as_millis() as u64),
            init_ms: run.decoded.start_uptime_ms(),
            suite_args: settings.suite_args.clone(),
            repeat: repeat(settings),
            qemu: crate::boot::qemu::version(&settings.qemu_for(image.arch)),
            arch: Some(image.arch),
            boot_attempts: Some(attempt),
            failed_boots,
            build: image.build.clone(),
            ..RunInfo::default()
        };
        return Ok(model::run::results(info, &run.decoded, reason));
    }
    unreachable!("the attempts loop returns")
}

/// Runs the suite binary directly on the host. `logs` receives suite.log (its console) and
/// results.log (its stream, which it writes to a pipe).
pub fn run_host(
    suite: &Path,
    settings: &Settings,
    logs: &Path,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<Results> {
    std::fs::create_dir_all(logs)?;
    let console = logs.join("suite.log");
    let out = std::fs::File::create(&console)?;
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut command = Command::new(suite);
    command.args(["--stream", "/dev/fd/3"]).args(&settings.suite_args).stdout(out.try_clone()?).stderr(out);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&write);
    // SAFETY: dup2 is async-signal-safe; it gives the child the pipe's write end as fd 3.
    unsafe {
        command.pre_exec(move || match libc::dup2(fd, 3) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
    let run = supervise(command, Some((read, write)), &logs.join("results.log"), None, settings, 1, observe)?;
    let log = display_path(&console);
    let outcome = Outcome {
        decoded: &run.decoded,
        ending: &run.ending,
        what: "the suite",
        console: "",
        stderr: &read_lossy(&console),
        log: &log,
    };
    let hostname = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let release =
        nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let info = RunInfo {
        release,
        source: format!("host {hostname}"),
        accel: "none".to_string(),
        date: now(),
        console_log: Some(log.clone()),
        duration_ms: Some(run.elapsed.as_millis() as u64),
        suite_args: settings.suite_args.clone(),
        repeat: repeat(settings),
        ..RunInfo::default()
    };
    Ok(model::run::results(info, &run.decoded, outcome.reason()))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `--repeat N` among the suite arguments, when N > 1.
fn repeat(settings: &Settings) -> Option<u32> {
    let mut args = settings.suite_args.iter();
    while let Some(a) = args.next() {
        let value = match a.strip_prefix("--repeat") {
            Some("") => args.next().map(String::as_str),
            Some(v) => v.strip_prefix('='),
            None => None,
        };
        if let Some(n) = value.and_then(|v| v.parse().ok()).filter(|n| *n > 1) {
            return Some(n);
        }
    }
    None
}

/// One supervised process and what its stream carried.
struct Run {
    decoded: Decoded,
    ending: Ending,
    elapsed: Duration,
}

enum Msg {
    Line(Vec<u8>),
    Eof,
    Exited(std::io::Result<ExitStatus>),
}

/// Runs `command` to its end under the three deadlines, reading its results stream (its stdout,
/// or the read end of `pipe` when one is given) line by line as it comes: each line is appended
/// to `log`, each whole record reported to `observe`. The process is killed on every path out.
fn supervise(
    mut command: Command,
    pipe: Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>,
    log: &Path,
    watch: Option<&Path>,
    settings: &Settings,
    attempt: u32,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<Run> {
    // The process dies with xtask, however xtask ends (SIGTERM from `timeout`, a container stop, a
    // cancelled CI job, SIGKILL, a panic): a parent-death signal. The kernel sends it when the
    // thread that spawned the child ends; this thread waits for the child, so only xtask's death
    // does.
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)?;
            // xtask died before the prctl: nothing would kill the child any more.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("xtask exited while starting the process"));
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let mut child = command.spawn()?;
    let pid = child.id();
    let guard = KillOnDrop(pid);
    let stream: Box<dyn std::io::Read + Send> = match pipe {
        Some((read, write)) => {
            drop(write);
            Box::new(std::fs::File::from(read))
        }
        None => Box::new(child.stdout.take().context("the stream is the process's stdout")?),
    };
    observe(Event::Spawned { attempt, pid });
    let (tx, rx) = channel();
    let reader = {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut stream = std::io::BufReader::new(stream);
            loop {
                let mut line = Vec::new();
                match stream.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx.send(Msg::Line(line)).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = tx.send(Msg::Eof);
        })
    };
    std::thread::spawn(move || {
        let _ = tx.send(Msg::Exited(child.wait()));
    });
    let mut file = std::fs::File::create(log).with_context(|| format!("cannot write {}", log.display()))?;
    let mut decoded = Decoded::default();
    let (mut ended_at, mut status, mut eof) = (None::<Instant>, None, false);
    let mut killed: Option<Ending> = None;
    let mut take = |line: &[u8], decoded: &mut Decoded, observe: &mut dyn FnMut(Event<'_>)| {
        let _ = file.write_all(line);
        if let Some(record) = decoded.feed(&String::from_utf8_lossy(line)) {
            observe(Event::Record(&record));
        }
    };
    // Until the process has exited and its stream is drained (bounded once it was killed, or
    // once it exited: a stray holder of the pipe must not keep us here).
    while status.is_none() || !eof {
        let now = Instant::now();
        let deadline = match (status.is_some(), killed.is_some(), ended_at) {
            (true, _, _) | (_, true, _) => now + Duration::from_secs(5),
            (_, _, Some(at)) => at + settings.grace,
            _ if decoded.start.is_none() => start + settings.boot_timeout.min(settings.timeout),
            _ => start + settings.timeout,
        };
        // QEMU's stderr is looked at every WATCH_EVERY while the guest runs: a guest it stopped
        // for good (see `stopped_for_good`) is killed then, not at a deadline minutes away.
        let watching = watch.filter(|_| status.is_none() && killed.is_none());
        let wake = if watching.is_some() { deadline.min(now + WATCH_EVERY) } else { deadline };
        match rx.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(Msg::Line(line)) => {
                take(&line, &mut decoded, observe);
                if decoded.end.is_some() && ended_at.is_none() {
                    ended_at = Some(Instant::now());
                }
            }
            Ok(Msg::Eof) => eof = true,
            Ok(Msg::Exited(s)) => status = Some(s?),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) if status.is_some() || killed.is_some() => break,
            Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                if let Some(line) = watching.map(read_lossy).as_deref().and_then(stopped_for_good) {
                    killed = Some(Ending::GuestStopped { line });
                    guard.kill();
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                killed = Some(if ended_at.is_some() {
                    Ending::StoppedAfterEnd
                } else if decoded.start.is_none() && settings.boot_timeout < settings.timeout {
                    Ending::NoStart { secs: settings.boot_timeout.as_secs() }
                } else {
                    Ending::TimedOut { secs: settings.timeout.as_secs() }
                });
                guard.kill();
            }
        }
    }
    drop(guard);
    let _ = reader.join();
    let ending = killed.unwrap_or_else(|| match status {
        Some(s) => Ending::Exited { code: s.code(), signal: s.signal().map(signal_name) },
        None => Ending::Exited { code: None, signal: None },
    });
    Ok(Run { decoded, ending, elapsed: start.elapsed() })
}

/// How often a running guest's QEMU stderr is looked at.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// The line of QEMU's stderr saying the guest stopped for good, if it said so: on a KVM internal
/// error (an instruction KVM cannot emulate, as on a host whose nested virtualisation is broken)
/// or a failed VM entry QEMU pauses the guest and waits; nothing more will come.
fn stopped_for_good(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("KVM internal error") || l.starts_with("KVM: entry failed"))
        .map(str::to_string)
}

/// Kills a process unless it was reaped already.
struct KillOnDrop(u32);

impl KillOnDrop {
    fn kill(&self) {
        // SAFETY: the pid is our child; until its waiter reports the exit it is not reaped.
        unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGKILL) };
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Moves a failed attempt's logs to `logs/failed/<date>-attempt-<n>/`, where later runs leave
/// them (the oldest beyond the newest 20 are pruned), and returns that directory.
fn keep_failed_attempt(logs: &Path, attempt: u32) -> Result<PathBuf> {
    let failed = logs.join("failed");
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let dir = failed.join(format!("{stamp}-attempt-{attempt}"));
    std::fs::create_dir_all(&dir)?;
    for name in ["console.log", "results.log", "qemu.stderr"] {
        let _ = std::fs::rename(logs.join(name), dir.join(name));
    }
    let mut kept: Vec<PathBuf> =
        std::fs::read_dir(&failed)?.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    kept.sort();
    for old in kept.iter().rev().skip(20) {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(dir)
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
    if r.kernel.boot_attempts.is_some_and(|n| n > 1) {
        line += &format!("; booted {} times", r.kernel.boot_attempts.unwrap_or(1));
    }
    if let Some(reason) = &r.kernel.reason {
        line += &format!("; INCOMPLETE: {reason}");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_repeat_from_the_suite_arguments() {
        let with = |args: &[&str]| Settings {
            suite_args: args.iter().map(|a| a.to_string()).collect(),
            ..Settings::default()
        };
        assert_eq!(repeat(&with(&["--repeat=10"])), Some(10));
        assert_eq!(repeat(&with(&["x", "--repeat", "3"])), Some(3));
        assert_eq!(repeat(&with(&["--repeat=1"])), None);
        assert_eq!(repeat(&with(&[])), None);
    }

    /// A guest that QEMU stopped for good (as on the lent device machine, where /dev/kvm opens and
    /// creates VMs but a guest hits "KVM internal error. Suberror: 1" and QEMU waits forever) is
    /// killed as soon as QEMU says so, with its words as the reason, and is not booted again.
    #[test]
    fn a_guest_that_qemu_stopped_for_good_is_killed_at_once_and_not_retried() {
        let dir = crate::util::project_root().join("target/uffdc/tests/guest-stopped");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let qemu = dir.join("qemu");
        // Answers xtask's questions (-L help, --version); a boot prints the error and hangs.
        let script = "#!/bin/sh\ncase \" $* \" in *\" -kernel \"*) ;; *) exit 0;; esac\n\
                      echo 'KVM internal error. Suberror: 1' >&2; echo 'extra data[0]: 0x0' >&2\nexec sleep 60\n";
        std::fs::write(&qemu, script).unwrap();
        std::fs::set_permissions(&qemu, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let (kernel, initrd) = (dir.join("vmlinuz"), dir.join("initrd"));
        std::fs::write(&kernel, "").unwrap();
        std::fs::write(&initrd, "").unwrap();
        let image = Image {
            id: "stand-in".into(),
            arch: model::arch::Arch::X86_64,
            vmlinuz: kernel,
            release: "6.1.0".into(),
            userfaultfd: None,
            config: None,
            source: "a stand-in".into(),
            build: None,
        };
        let settings = Settings { qemu, accel: crate::boot::qemu::Accel::Kvm, ..Settings::default() };
        let (mut spawned, t) = (0, Instant::now());
        let r = run_guest(&image, &initrd, &settings, &dir.join("logs"), &mut |e| {
            if let Event::Spawned { .. } = e {
                spawned += 1
            }
        })
        .unwrap();
        assert!(t.elapsed() < Duration::from_secs(10), "waited {:?} (boot deadline 30s)", t.elapsed());
        assert_eq!(spawned, 1, "booted again");
        assert_eq!(r.kernel.status, model::RunStatus::Incomplete);
        let reason = r.kernel.reason.unwrap();
        assert!(reason.starts_with("QEMU stopped the guest (KVM internal error. Suberror: 1)"), "{reason}");
        // Which lines mean the guest is stopped for good, and that a warning is not one.
        assert_eq!(
            stopped_for_good("qemu: warning: x\nKVM: entry failed, hardware error 0x7\n").as_deref(),
            Some("KVM: entry failed, hardware error 0x7")
        );
        assert_eq!(
            stopped_for_good("qemu-system-x86_64: warning: host doesn't support requested feature\n"),
            None
        );
    }
}
