//! The rehearsal's stand-in for `docker run` (`cargo xtask ci rehearse` puts it on the simulated
//! runner's PATH as `docker`): a fresh container made of the cached Debian root (debootstrap) under
//! an overlay, in new mount, PID, UTS and IPC namespaces, entered with chroot. It takes the options
//! `.ci/in-debian` uses and refuses any other: `--rm`, `--privileged` (all of /dev, sysfs
//! writable), `--device`, `--init` (a PID 1 that forwards signals and reaps), `-e`, `-v`, `-w`,
//! `--shm-size` (a private /dev/shm, 64 MB unless given, as Docker's). Like Docker's client it
//! forwards SIGINT and SIGTERM to the container's PID 1 and exits with the container's status.

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::{self, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, chroot, execvpe, fork, ForkResult, Pid};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

/// The only image the stand-in stands in for.
pub const IMAGE: &str = "debian:bookworm";
/// The pristine root (made by the rehearsal with debootstrap).
pub const ROOT_VAR: &str = "UFFDC_REHEARSE_ROOT";
/// Where containers' overlay layers go.
pub const SCRATCH_VAR: &str = "UFFDC_REHEARSE_SCRATCH";
/// `NAME=VALUE` lines added to every container's environment (a rehearsal scenario's fault).
pub const EXTRA_ENV_VAR: &str = "UFFDC_REHEARSE_CONTAINER_ENV";

#[derive(Debug, Default)]
struct Spec {
    init: bool,
    env: Vec<String>,
    volumes: Vec<(PathBuf, PathBuf, bool)>,
    workdir: Option<PathBuf>,
    shm_size: Option<String>,
    command: Vec<String>,
}

fn parse(args: &[String]) -> Result<Spec> {
    let mut args = args.iter();
    if args.next().map(String::as_str) != Some("run") {
        bail!("the rehearsal's docker stands in for `docker run` only");
    }
    let mut spec = Spec::default();
    let mut image = None;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline.clone().or_else(|| args.next().cloned()).with_context(|| format!("{flag} needs a value"))
        };
        match flag {
            "--rm" | "--privileged" => {}
            "--init" => spec.init = true,
            "--device" => {
                value()?;
            }
            "-e" | "--env" => spec.env.push(value()?),
            "-v" | "--volume" => {
                let v = value()?;
                let parts: Vec<&str> = v.split(':').collect();
                let (src, dst, ro) = match parts.as_slice() {
                    [s, d] => (s, d, false),
                    [s, d, "ro"] => (s, d, true),
                    [s, d, "rw"] => (s, d, false),
                    _ => bail!("volume {v:?}: the stand-in takes SRC:DST[:ro]"),
                };
                spec.volumes.push((PathBuf::from(src), PathBuf::from(dst), ro));
            }
            "-w" | "--workdir" => spec.workdir = Some(PathBuf::from(value()?)),
            "--shm-size" => spec.shm_size = Some(value()?),
            f if f.starts_with('-') => {
                bail!("docker run option {f} is not one the rehearsal's stand-in knows")
            }
            _ => {
                image = Some(arg.clone());
                break;
            }
        }
    }
    match image.as_deref() {
        Some(IMAGE) => {}
        Some(other) => bail!("image {other}: the rehearsal stands in for {IMAGE} only"),
        None => bail!("docker run: no image given"),
    }
    spec.command = args.cloned().collect();
    if spec.command.is_empty() {
        bail!("docker run: no command (the stand-in's image has none of its own)");
    }
    Ok(spec)
}

/// `docker run ...`; returns the container's exit status (125 for the stand-in's own errors).
pub fn docker(args: &[String]) -> i32 {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("docker (rehearsal stand-in): {e:#}");
            125
        }
    }
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

fn run(args: &[String]) -> Result<i32> {
    let spec = parse(args)?;
    let root = PathBuf::from(
        std::env::var_os(ROOT_VAR)
            .context("UFFDC_REHEARSE_ROOT is unset: only `cargo xtask ci rehearse` runs this")?,
    );
    let scratch = PathBuf::from(std::env::var_os(SCRATCH_VAR).context("UFFDC_REHEARSE_SCRATCH is unset")?);
    let dir = scratch.join(format!("container-{}", std::process::id()));
    let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
    for d in [&upper, &work, &merged] {
        std::fs::create_dir_all(d)?;
    }
    // SAFETY: this process is single-threaded here (the stand-in's main, before any thread).
    let r = unsafe {
        libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC)
    };
    if r != 0 {
        bail!("unshare: {} (the rehearsal needs root)", std::io::Error::last_os_error());
    }
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none).context("making / private")?;
    let options =
        format!("lowerdir={},upperdir={},workdir={}", root.display(), upper.display(), work.display());
    mount(Some("overlay"), &merged, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
        .context("mounting the container's overlay")?;
    bind(Path::new("/dev"), &merged.join("dev"), false)?;
    let shm = format!("size={},mode=1777", spec.shm_size.as_deref().unwrap_or("64m"));
    mount(Some("shm"), &merged.join("dev/shm"), Some("tmpfs"), MsFlags::empty(), Some(shm.as_str()))
        .context("mounting /dev/shm")?;
    for (src, dst, ro) in &spec.volumes {
        if !dst.is_absolute() {
            bail!("volume destination {} is not absolute", dst.display());
        }
        let target = merged.join(dst.strip_prefix("/").unwrap_or(dst));
        std::fs::create_dir_all(&target)?;
        bind(src, &target, *ro)?;
    }
    // Docker writes the container's resolv.conf and hosts from the machine's.
    for f in ["etc/resolv.conf", "etc/hosts"] {
        if let Ok(data) = std::fs::read(Path::new("/").join(f)) {
            let _ = std::fs::remove_file(merged.join(f));
            std::fs::write(merged.join(f), data)?;
        }
    }
    let hostname = format!("rehearsal{}", std::process::id());
    nix::unistd::sethostname(&hostname)?;
    let env = environment(&spec, &hostname)?;
    // SAFETY: single-threaded; the child only mounts, chroots and execs (or runs `init`).
    match unsafe { fork() }? {
        ForkResult::Child => {
            // A killed stand-in takes its container with it (the rehearsal leaves nothing running).
            // SAFETY: prctl with constant arguments.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
            let code = match enter(&spec, &merged, env) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("docker (rehearsal stand-in): {e:#}");
                    127
                }
            };
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            CHILD.store(child.as_raw(), Ordering::SeqCst);
            for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT] {
                // SAFETY: `forward` only calls kill(2).
                unsafe { signal::signal(sig, SigHandler::Handler(forward)) }?;
            }
            let code = wait_exit(child)?;
            // The container's PID 1 is gone, so is everything else in it; drop its mounts.
            let _ = umount2(&merged, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir_all(&dir);
            Ok(code)
        }
    }
}

fn bind(src: &Path, dst: &Path, ro: bool) -> Result<()> {
    let none: Option<&str> = None;
    mount(Some(src), dst, none, MsFlags::MS_BIND | MsFlags::MS_REC, none)
        .with_context(|| format!("bind-mounting {} at {}", src.display(), dst.display()))?;
    if ro {
        mount(none, dst, none, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, none)?;
    }
    Ok(())
}

/// The image's environment, then `-e` (a bare NAME takes the client's value, if it has one),
/// then the scenario's additions.
fn environment(spec: &Spec, hostname: &str) -> Result<Vec<CString>> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("HOSTNAME".into(), hostname.into()),
        ("HOME".into(), "/root".into()),
    ];
    let mut set = |k: &str, v: String| match env.iter_mut().find(|(key, _)| key == k) {
        Some(slot) => slot.1 = v,
        None => env.push((k.to_string(), v)),
    };
    for e in &spec.env {
        match e.split_once('=') {
            Some((k, v)) => set(k, v.to_string()),
            None => {
                if let Ok(v) = std::env::var(e) {
                    set(e, v)
                }
            }
        }
    }
    for line in std::env::var(EXTRA_ENV_VAR).unwrap_or_default().lines() {
        if let Some((k, v)) = line.split_once('=') {
            set(k, v.to_string());
        }
    }
    env.into_iter().map(|(k, v)| Ok(CString::new(format!("{k}={v}"))?)).collect()
}

/// In the child, PID 1 of the new PID namespace: proc and sysfs, chroot, then the command (or an
/// init that runs it).
fn enter(spec: &Spec, merged: &Path, env: Vec<CString>) -> Result<i32> {
    let none: Option<&str> = None;
    mount(Some("proc"), &merged.join("proc"), Some("proc"), MsFlags::empty(), none)
        .context("mounting /proc")?;
    mount(Some("sysfs"), &merged.join("sys"), Some("sysfs"), MsFlags::empty(), none)
        .context("mounting /sys")?;
    chroot(merged).context("chroot")?;
    chdir("/")?;
    if let Some(w) = &spec.workdir {
        std::fs::create_dir_all(w)?;
        chdir(w.as_path()).with_context(|| format!("workdir {}", w.display()))?;
    }
    let argv: Vec<CString> =
        spec.command.iter().map(|a| CString::new(a.as_str())).collect::<Result<_, _>>()?;
    if !spec.init {
        execvpe(&argv[0], &argv, &env).with_context(|| format!("cannot run {}", spec.command[0]))?;
        unreachable!("execvpe returned");
    }
    // --init: PID 1 forwards signals to the command and reaps every orphan until it ends.
    // SAFETY: single-threaded.
    match unsafe { fork() }? {
        ForkResult::Child => {
            let e = execvpe(&argv[0], &argv, &env);
            eprintln!("docker (rehearsal stand-in): cannot run {}: {e:?}", spec.command[0]);
            std::process::exit(127);
        }
        ForkResult::Parent { child } => {
            CHILD.store(child.as_raw(), Ordering::SeqCst);
            for sig in [
                Signal::SIGINT,
                Signal::SIGTERM,
                Signal::SIGHUP,
                Signal::SIGQUIT,
                Signal::SIGUSR1,
                Signal::SIGUSR2,
            ] {
                // SAFETY: `forward` only calls kill(2).
                unsafe { signal::signal(sig, SigHandler::Handler(forward)) }?;
            }
            loop {
                match waitpid(Pid::from_raw(-1), None) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == child => return Ok(code),
                    Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => return Ok(128 + sig as i32),
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => bail!("waiting for the command: {e}"),
                }
            }
        }
    }
}

fn wait_exit(child: Pid) -> Result<i32> {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("waiting for the container: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_in_debian_options_and_refuses_others() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let spec = parse(&args("run --rm --privileged --init --device /dev/kvm -e CI -e A=b -v /x:/work -v /y:/ci-home:ro -w /work --shm-size=2g debian:bookworm /work/.ci/debian-env cargo fmt")).unwrap();
        assert!(spec.init);
        assert_eq!(spec.env, ["CI", "A=b"]);
        assert_eq!(spec.volumes[1], (PathBuf::from("/y"), PathBuf::from("/ci-home"), true));
        assert_eq!(spec.command, ["/work/.ci/debian-env", "cargo", "fmt"]);
        assert_eq!(spec.shm_size.as_deref(), Some("2g"));
        assert!(parse(&args("run --network host debian:bookworm true")).is_err());
        assert!(parse(&args("run ubuntu:24.04 true")).is_err());
    }
}
