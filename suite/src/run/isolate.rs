//! Child isolation: every probe runs in a child process under a watchdog, so a probe that
//! deadlocks, crashes or is killed becomes an outcome, never a hung or crashed suite.
//!
//! Probe processes come from a fork server (the zygote): this binary, executed once with
//! `--zygote`, single-threaded, which clones itself for each probe. Under TCG a clone of a small
//! process costs a fraction of an exec of this binary, and a guest's suite time is mostly CPU.
//! It clones with CLONE_PARENT, so each probe process is the harness's own child: reaped, watched
//! and killed (its process group) exactly as a spawned one would be.

use crate::kit::outcome::{Report, REPORT_PREFIX};
use crate::run::cli::{Cli, Fault};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};
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
    /// When the probe process was asked for, and how long it took.
    pub started: Instant,
    pub elapsed: Duration,
    /// CPU time (user + system) the probe process and the children it waited for used: where a
    /// guest's emulated CPUs' time goes (`cargo xtask bench`). None when not reaped.
    pub cpu: Option<Duration>,
}

/// Runs one behaviour's probe in a child process.
///
/// The child gets a process group of its own, killed as a whole once the child is done, so a
/// helper process a probe forked cannot outlive it. Output is collected as it arrives: a stray
/// process holding the pipes open cannot make a finished probe look hung.
pub fn run(id: &str, cli: &Cli, run: u32) -> ProbeRun {
    let start = Instant::now();
    let started = pipes().and_then(|(out, err)| {
        let pid = zygote()?.start(&cli.child_args(id, run), out.1, err.1)?;
        Ok((pid, out.0, err.0))
    });
    let (pid, out, err) = match started {
        Ok(s) => s,
        Err(e) => {
            return ProbeRun {
                outcome: Outcome::Failed(format!("cannot start the probe process: {e}")),
                started: start,
                elapsed: start.elapsed(),
                cpu: None,
            }
        }
    };
    // The probe process is watched from this thread alone: its pipes and its pidfd in one poll
    // (three threads a probe cost more than a small probe itself on a guest's emulated CPUs).
    let pidfd = match pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            // SAFETY: signals the probe's own process group.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            return ProbeRun {
                outcome: Outcome::Failed(format!("pidfd_open: {e}")),
                started: start,
                elapsed: start.elapsed(),
                cpu: None,
            };
        }
    };
    let mut streams = [Stream::new(out), Stream::new(err)];
    let mut killed = false;
    let mut exited = watch(&pidfd, &mut streams, start + cli.watchdog);
    if !exited {
        killed = true;
        // SAFETY: signals the probe's own process group.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        // A child stuck in uninterruptible sleep may not die at once; do not wait forever.
        exited = watch(&pidfd, &mut streams, Instant::now() + Duration::from_secs(10));
    }
    let (status, cpu) = if exited { reap(pid) } else { (None, None) };
    // Whatever the probe forked goes with it.
    // SAFETY: signals the probe's own process group (gone already, or strays of it).
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let success = matches!(status, Some(nix::sys::wait::WaitStatus::Exited(_, 0)));
    if killed || !success {
        // A probe that did not end normally may have left a system setting changed: put it back.
        if let Err(e) = crate::kit::settings::restore_settings() {
            eprintln!("suite: cannot restore system settings {id} changed: {e}");
        }
    }
    let elapsed = start.elapsed();
    // The pipes are at EOF now unless something still holds them; take what arrived.
    finish(&mut streams);
    let [stdout, stderr] = streams.map(|s| String::from_utf8_lossy(&s.buf).into_owned());
    let stderr = tail(&stderr);
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
        (None, Some(nix::sys::wait::WaitStatus::Signaled(_, sig, _))) => {
            Outcome::Crashed { signal: sig.as_str().to_string(), stderr }
        }
        (None, Some(status)) => Outcome::Failed(format!(
            "the probe ended ({status:?}) without a report{}",
            if stderr.is_empty() { String::new() } else { format!(": {stderr}") }
        )),
    };
    ProbeRun { outcome, started: start, elapsed, cpu }
}

/// Waits for the probe process, with the CPU time it used (wait4's rusage).
fn reap(pid: i32) -> (Option<nix::sys::wait::WaitStatus>, Option<Duration>) {
    let mut raw = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both out-pointers are valid.
    let r = unsafe { libc::wait4(pid, &mut raw, 0, &mut usage) };
    if r != pid {
        return (None, None);
    }
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let status = nix::sys::wait::WaitStatus::from_raw(nix::unistd::Pid::from_raw(pid), raw).ok();
    (status, Some(time(usage.ru_utime) + time(usage.ru_stime)))
}

/// Two pipes for a probe's stdout and stderr: ((read, write), (read, write)), close-on-exec.
type Pipe = (OwnedFd, OwnedFd);
fn pipes() -> Result<(Pipe, Pipe), String> {
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"));
    Ok((pipe()?, pipe()?))
}

/// The harness's end of the fork server.
struct Zygote {
    /// A SOCK_SEQPACKET socket: one request, one answer, in turn.
    sock: std::sync::Mutex<OwnedFd>,
}

static ZYGOTE: std::sync::OnceLock<Result<Zygote, String>> = std::sync::OnceLock::new();

/// The fork server, started on first use (the harness starts it before its trials run).
fn zygote() -> Result<&'static Zygote, String> {
    ZYGOTE.get_or_init(Zygote::spawn).as_ref().map_err(Clone::clone)
}

/// Starts the fork server now, while the harness has no other thread that could inherit its
/// socket. An error shows again in every probe's outcome.
pub fn start_zygote() {
    let _ = zygote();
}

impl Zygote {
    fn spawn() -> Result<Zygote, String> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (ours, theirs) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
                .map_err(|e| format!("socketpair: {e}"))?;
        // Its end must survive the exec.
        nix::fcntl::fcntl(&theirs, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))
            .map_err(|e| format!("fcntl: {e}"))?;
        Command::new("/proc/self/exe")
            .arg(format!("--zygote={}", theirs.as_raw_fd()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the fork server: {e}"))?;
        drop(theirs);
        Ok(Zygote { sock: std::sync::Mutex::new(ours) })
    }

    /// Starts a probe process with `args` (as on a command line) and the given stdout and stderr;
    /// its pid.
    fn start(&self, args: &[String], stdout: OwnedFd, stderr: OwnedFd) -> Result<i32, String> {
        use nix::sys::socket::{recv, sendmsg, ControlMessage, MsgFlags};
        let request = args.join("\0");
        let fds = [stdout.as_raw_fd(), stderr.as_raw_fd()];
        let sock = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        sendmsg::<()>(
            sock.as_raw_fd(),
            &[std::io::IoSlice::new(request.as_bytes())],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .map_err(|e| format!("asking the fork server: {e}"))?;
        let mut answer = [0u8; 4];
        match recv(sock.as_raw_fd(), &mut answer, MsgFlags::empty()) {
            Ok(4) => match i32::from_le_bytes(answer) {
                pid if pid > 0 => Ok(pid),
                e => Err(format!("the fork server could not clone: {}", nix::errno::Errno::from_raw(-e))),
            },
            Ok(_) => Err("the fork server is gone".to_string()),
            Err(e) => Err(format!("reading the fork server: {e}")),
        }
    }
}

/// The fork server (`--zygote FD`): for each request (the probe's arguments, NUL-separated, with
/// its stdout and stderr as SCM_RIGHTS), clones itself with CLONE_PARENT and answers the pid;
/// exits when the harness's end closes. It stays single-threaded, so the clone may do anything.
pub fn zygote_main(fd: RawFd) -> ! {
    use nix::sys::socket::{recvmsg, send, ControlMessageOwned, MsgFlags};
    // SAFETY: the harness passed this descriptor for the fork server to own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(&sock, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut space = nix::cmsg_space!([RawFd; 2]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = match recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(m) => m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => std::process::exit(0),
        };
        let len = msg.bytes;
        let mut fds = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(r) = c {
                    // SAFETY: SCM_RIGHTS installed these descriptors for us.
                    fds.extend(r.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
                }
            }
        }
        if len == 0 && fds.is_empty() {
            std::process::exit(0); // the harness is gone
        }
        let args: Vec<String> =
            String::from_utf8_lossy(&buf[..len]).split('\0').map(str::to_string).collect();
        // SAFETY: a fork-like clone (no new stack: the child runs on a copy of this one) of a
        // single-threaded process. CLONE_PARENT makes the child the harness's; its exit signal
        // is this process's, SIGCHLD. (glibc's cached thread id of the child's main thread stays
        // this process's: nothing here uses it, and glibc's raise() asks the kernel.)
        let pid = unsafe { libc::syscall(libc::SYS_clone, libc::CLONE_PARENT | libc::SIGCHLD, 0, 0, 0, 0) };
        if pid == 0 {
            drop(sock);
            probe_process(args, fds);
        }
        let answer = if pid < 0 { -nix::errno::Errno::last_raw() } else { pid as i32 };
        drop(fds);
        if send(fd, &answer.to_le_bytes(), MsgFlags::empty()).is_err() {
            std::process::exit(0);
        }
    }
}

/// A clone of the fork server becoming a probe process: its own process group, the harness's
/// pipes as stdout and stderr, then the probe.
fn probe_process(args: Vec<String>, fds: Vec<OwnedFd>) -> ! {
    // SAFETY: plain syscalls on this new process's own descriptors and process group.
    unsafe {
        libc::setpgid(0, 0);
        if let [out, err] = &fds[..] {
            libc::dup2(out.as_raw_fd(), 1);
            libc::dup2(err.as_raw_fd(), 2);
        }
    }
    drop(fds);
    let cli =
        match crate::run::cli::parse(std::iter::once("suite".into()).chain(args.into_iter().map(Into::into)))
        {
            Ok(cli) => cli,
            Err(e) => {
                eprintln!("suite: probe arguments: {e}");
                std::process::exit(2)
            }
        };
    match &cli.mode {
        crate::run::cli::Mode::Probe(id) => child_main(id, &cli),
        _ => {
            eprintln!("suite: the fork server was asked for something other than a probe");
            std::process::exit(2)
        }
    }
}

/// A probe's stdout or stderr: the read end of its pipe (non-blocking, until EOF) and what
/// arrived.
struct Stream {
    fd: Option<OwnedFd>,
    buf: Vec<u8>,
}

impl Stream {
    fn new(fd: OwnedFd) -> Stream {
        let _ = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
        Stream { fd: Some(fd), buf: Vec::new() }
    }

    /// Reads what is there; at EOF the pipe is closed.
    fn drain(&mut self) {
        let mut chunk = [0u8; 4096];
        while let Some(fd) = &self.fd {
            match nix::unistd::read(fd, &mut chunk) {
                Ok(0) => self.fd = None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }
}

/// Reads the streams as output arrives until the process behind `pidfd` exits (true) or
/// `until` passes (false).
fn watch(pidfd: &OwnedFd, streams: &mut [Stream; 2], until: Instant) -> bool {
    use std::os::fd::AsFd;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let ready = {
            let mut fds = vec![pidfd.as_fd()];
            fds.extend(streams.iter().filter_map(|s| s.fd.as_ref().map(|f| f.as_fd())));
            crate::kit::poll::wait_any(&fds, left).unwrap_or_default()
        };
        streams.iter_mut().for_each(Stream::drain);
        if ready.first() == Some(&true) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
    }
}

/// After the probe ended: what is left in its pipes, up to EOF (a stray process holding them open
/// gets 2 s on stdout, 200 ms on stderr).
fn finish(streams: &mut [Stream; 2]) {
    use std::os::fd::AsFd;
    let start = Instant::now();
    let grace = [Duration::from_secs(2), Duration::from_millis(200)];
    loop {
        streams.iter_mut().for_each(Stream::drain);
        let open: Vec<_> = streams
            .iter()
            .zip(grace)
            .filter(|(s, g)| s.fd.is_some() && start.elapsed() < *g)
            .filter_map(|(s, g)| s.fd.as_ref().map(|f| (f.as_fd(), g)))
            .collect();
        let Some(limit) = open.iter().map(|(_, g)| g.saturating_sub(start.elapsed())).max() else {
            return;
        };
        let fds: Vec<_> = open.iter().map(|(f, _)| *f).collect();
        let _ = crate::kit::poll::wait_any(&fds, limit);
    }
}

/// A pidfd for a child process (readable once it has exited).
pub(crate) fn pidfd_open(pid: i32) -> Result<OwnedFd, nix::errno::Errno> {
    // SAFETY: pidfd_open returns a new descriptor that we own.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    nix::errno::Errno::result(raw).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The child side: run the probe, print one report line, exit.
pub fn child_main(id: &str, cli: &Cli) -> ! {
    let report = match crate::run::catalogue::find(id) {
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
                        if let Err(e) = crate::kit::privileges::deny_userfaultfd() {
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
                        ctx.sabotage = Some(crate::kit::outcome::Sabotage::StalePage)
                    }
                    Fault::ServeZero(x) if x == id => {
                        ctx.sabotage = Some(crate::kit::outcome::Sabotage::ZeroPage)
                    }
                    Fault::NoRace(x) if x == id => ctx.sabotage = Some(crate::kit::outcome::Sabotage::NoRace),
                    Fault::SettingHang(x) if x == id => crate::kit::settings::HANG_AFTER_SETTING
                        .store(true, std::sync::atomic::Ordering::SeqCst),
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
                match std::panic::catch_unwind(|| (b.probe)(&ctx, b.variant)) {
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

fn tail(s: &str) -> String {
    let s = s.trim();
    let start = s.char_indices().rev().nth(400).map_or(0, |(i, _)| i);
    s[start..].replace('\n', " | ")
}
