//! Docker for the rehearsal: Debian's `dockerd` started when none answers (its data, exec root,
//! pidfile and socket under target/) and stopped afterwards; the `debian:bookworm` image the
//! workflows' `.ci/in-debian` runs, pulled when a registry answers and otherwise imported from a
//! debootstrap root made from this machine's Debian mirror; and the `docker` shim on the
//! rehearsal's PATH, which replaces `--privileged` only where this machine refuses it.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xshell::{cmd, Shell};

pub const IMAGE: &str = "debian:bookworm";
/// What a container gets where `--privileged` is refused: every capability this machine's
/// bounding set has (it lacks CAP_SYS_RESOURCE), no seccomp filter, a writable /proc/sys
/// (`systempaths=unconfined`) and every device allowed by the devices cgroup, which is what the
/// workflows' containers use `--privileged` for (QEMU, /dev/kvm, the suite's sysctls); the host's
/// device nodes themselves (`host_devices`: /dev/userfaultfd, /dev/kvm, ...) are passed with
/// `--device`, as --privileged gives them.
const INSTEAD_OF_PRIVILEGED: [&str; 7] = [
    "--cap-add=ALL",
    "--device-cgroup-rule=a *:* rwm",
    "--cap-drop=SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "systempaths=unconfined",
];

/// A Docker daemon the rehearsal talks to: this machine's own, or one it started (stopped on drop).
pub struct Daemon {
    pub host: String,
    child: Option<Child>,
}

impl Daemon {
    pub fn start(dir: &Path, log: &mut dyn FnMut(&str)) -> Result<Daemon> {
        if answers(None) {
            log("docker: this machine's daemon answers; using it");
            return Ok(Daemon { host: std::env::var("DOCKER_HOST").unwrap_or_default(), child: None });
        }
        let sock = dir.join("docker.sock");
        let host = format!("unix://{}", sock.display());
        if answers(Some(&host)) {
            log(&format!("docker: the rehearsal's daemon from an earlier run answers at {host}"));
            return Ok(Daemon { host, child: None });
        }
        for d in ["data", "exec"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        let out = std::fs::File::create(dir.join("dockerd.log"))?;
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--host")
            .arg(&host)
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting dockerd (Debian's docker.io)")?;
        let mut daemon = Daemon { host: host.clone(), child: Some(child) };
        // Ready when the API answers; dockerd exiting first is a failure with its log to read.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = daemon.child.as_mut().expect("started").try_wait()? {
                daemon.child = None;
                bail!(
                    "dockerd exited ({status}) before it answered: see {}",
                    dir.join("dockerd.log").display()
                );
            }
            if sock.exists() && answers(Some(&host)) {
                break;
            }
            if Instant::now() > deadline {
                bail!("dockerd did not answer within 60 s: see {}", dir.join("dockerd.log").display());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        log(&format!("docker: started dockerd (data under {})", crate::util::display_path(dir)));
        Ok(daemon)
    }

    pub fn docker(&self) -> Command {
        let mut c = Command::new("docker");
        if !self.host.is_empty() {
            c.env("DOCKER_HOST", &self.host);
        }
        c
    }

    /// The `debian:bookworm` image: there already, pulled, or imported from a debootstrap root.
    pub fn image(&self, sh: &Shell, dir: &Path, log: &mut dyn FnMut(&str)) -> Result<()> {
        if self
            .docker()
            .args(["image", "inspect", IMAGE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success()
        {
            log(&format!("docker: {IMAGE} is there"));
            return Ok(());
        }
        let pulled =
            self.docker().args(["pull", "-q", IMAGE]).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        if pulled.success() {
            log(&format!("docker: pulled {IMAGE}"));
            return Ok(());
        }
        log(&format!("docker: no registry answers; {IMAGE} is built here with debootstrap from this machine's Debian mirror"));
        let root = debootstrap(sh, dir, log)?;
        let tar =
            Command::new("tar").arg("-C").arg(&root).args(["-c", "."]).stdout(Stdio::piped()).spawn()?;
        let status = self
            .docker()
            .args(["import", "--change", "CMD [\"bash\"]", "-", IMAGE])
            .stdin(tar.stdout.context("tar's output")?)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("docker import of {} failed", root.display());
        }
        std::fs::remove_dir_all(&root)?;
        Ok(())
    }

    /// The image the jobs' containers start from (`.ci/in-debian`'s `DEBIAN_IMAGE`): `IMAGE` after
    /// the rehearsed commit's own `.ci/debian-env` has installed its packages, made once per
    /// version of that script (tagged by its blob id) and kept with the daemon's data. Every
    /// container a GitHub job starts repeats that apt install (about a minute of unpacking here,
    /// for each of the scheduled run's ten containers); here it is run, for real, once. Returns
    /// the tag.
    pub fn prepared(&self, sh: &Shell, dir: &Path, sha: &str, log: &mut dyn FnMut(&str)) -> Result<String> {
        let blob = cmd!(sh, "git rev-parse {sha}:.ci/debian-env").quiet().read()?;
        let tag = format!("uffdc-rehearsal/debian-env:{}", &blob[..12]);
        let quiet = |c: &mut Command| c.stdout(Stdio::null()).stderr(Stdio::null()).status();
        if quiet(self.docker().args(["image", "inspect", &tag]))?.success() {
            log(&format!("docker: {tag} ({IMAGE} after this .ci/debian-env's setup) is there"));
            return Ok(tag);
        }
        let work = dir.join("debian-env");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(work.join(".ci"))?;
        for file in [".ci/debian-env", "rust-toolchain.toml"] {
            let text = cmd!(sh, "git show {sha}:{file}").quiet().read()?;
            std::fs::write(work.join(file), text + "\n")?;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(work.join(".ci/debian-env"), std::fs::Permissions::from_mode(0o755))?;
        // The CI home, as .ci/in-debian mounts it: the toolchain goes there, not into the image.
        let home = std::env::var_os("UFFDC_CI_HOME").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/uffdc-ci")
        });
        std::fs::create_dir_all(&home)?;
        let name = "uffdc-rehearsal-debian-env";
        let _ = quiet(self.docker().args(["rm", "-f", name]));
        let started = Instant::now();
        let status = self
            .docker()
            .args([
                "run",
                "--name",
                name,
                "-e",
                "CARGO_HOME=/ci-home/cargo",
                "-e",
                "RUSTUP_HOME=/ci-home/rustup",
            ])
            .arg("-v")
            .arg(format!("{}:/work", work.display()))
            .arg("-v")
            .arg(format!("{}:/ci-home", home.display()))
            .args(["-w", "/work", IMAGE, "/work/.ci/debian-env", "true"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("debian-env.log"))?)
            .status()?;
        if !status.success() {
            bail!(".ci/debian-env failed in {IMAGE}: see {}", dir.join("debian-env.log").display());
        }
        let committed = self.docker().args(["commit", name, &tag]).stdout(Stdio::null()).status()?;
        let _ = quiet(self.docker().args(["rm", "-f", name]));
        if !committed.success() {
            bail!("docker commit of {name} as {tag} failed");
        }
        log(&format!(
            "docker: {tag}: {IMAGE} after this .ci/debian-env's setup ({:.0} s); the jobs' containers start from it",
            started.elapsed().as_secs_f64()
        ));
        Ok(tag)
    }

    /// Whether this machine refuses `docker run --privileged` (its capability bounding set lacks
    /// one that --privileged asks for).
    pub fn privileged_refused(&self) -> Result<bool> {
        let out = self.docker().args(["run", "--rm", "--privileged", IMAGE, "true"]).output()?;
        Ok(!out.status.success())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }
}

fn answers(host: Option<&str>) -> bool {
    let mut c = Command::new("docker");
    if let Some(h) = host {
        c.env("DOCKER_HOST", h);
    }
    c.arg("info").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// The device nodes --privileged gives a container and Docker's default set lacks: every
/// character and block device directly under the host's /dev (/dev/userfaultfd, /dev/kvm, loop
/// devices, ...), except the consoles and virtual terminals.
fn host_devices() -> Vec<String> {
    use std::os::unix::fs::FileTypeExt;
    const DEFAULT: [&str; 8] = ["null", "zero", "full", "random", "urandom", "tty", "console", "ptmx"];
    let mut out: Vec<String> = std::fs::read_dir("/dev")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_char_device() || t.is_block_device()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            let terminal = ["tty", "vcs"].iter().any(|p| n.starts_with(p));
            !DEFAULT.contains(&n.as_str()) && !terminal
        })
        .map(|n| format!("/dev/{n}"))
        .collect();
    out.sort();
    out
}

/// What the workflows fetch on every run and cache nowhere, taken here from this machine's shared
/// cache (the per-user `~/.cache/uffd-conformance`, content-addressed and locked: safe to share
/// with the xtask commands run outside the rehearsal): the private apt's lists and packages
/// (`apt/`), the Go toolchain (`go/`) and the unpacked build toolchains with their ccache
/// (`builds/root-*`). The shim mounts each over the same path in the container's own cache
/// (`UFFDC_CACHE_DIR`, the checkout's `target/uffdc`); what the workflows do cache (kernel images,
/// built kernels, selftests, cargo's outputs) is not mounted and goes through their cache steps.
/// A GitHub runner downloads and unpacks these afresh each job: that time is network time there.
pub struct SharedCache {
    pub root: PathBuf,
    /// Paths under `root`.
    pub parts: Vec<String>,
}

impl SharedCache {
    pub fn new(root: PathBuf) -> Result<SharedCache> {
        let mut parts = vec!["apt".to_string(), "go".to_string()];
        for p in &parts {
            std::fs::create_dir_all(root.join(p))?;
        }
        // The private apts of other architectures (`apt-arm64`: the arm64 kernels' packages).
        let mut apts: Vec<String> = std::fs::read_dir(&root)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("apt-") && root.join(n).is_dir())
            .collect();
        apts.sort();
        parts.extend(apts);
        let builds = root.join("builds");
        std::fs::create_dir_all(&builds)?;
        let mut roots: Vec<String> = std::fs::read_dir(&builds)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("root-") && builds.join(n).is_dir())
            .map(|n| format!("builds/{n}"))
            .collect();
        roots.sort();
        parts.extend(roots);
        // The roots' lock: two legs that would unpack the same root wait for each other.
        std::fs::OpenOptions::new().create(true).append(true).open(builds.join("root.lock"))?;
        parts.push("builds/root.lock".into());
        Ok(SharedCache { root, parts })
    }
}

/// The rehearsal's `docker`, first on its PATH: passes everything to Docker's own client, except
/// that a `run` gets `-e $UFFDC_REHEARSAL_DOCKER_ENV` when that is set, the `shared` mounts (see
/// `SharedCache`) where the container's xtask keeps its cache, and, where `--privileged` is
/// refused here, its `--privileged` becomes `INSTEAD_OF_PRIVILEGED` and the host's devices (said
/// on stderr).
pub fn shim(bin: &Path, daemon: &Daemon, refused: bool, shared: &SharedCache) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(bin)?;
    let real = crate::inputs::packages::which("docker").context("no docker client on PATH")?;
    let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let instead = INSTEAD_OF_PRIVILEGED.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
    let devices = host_devices().iter().map(|d| quote(d)).collect::<Vec<_>>().join(" ");
    let mounts = shared.parts.iter().map(|p| quote(p)).collect::<Vec<_>>().join(" ");
    let text = format!(
        r#"#!/usr/bin/env bash
# Written by `cargo xtask ci rehearse`: the rehearsal's docker (see xtask/src/rehearse/docker.rs).
set -euo pipefail
export DOCKER_HOST='{host}'
if [ "${{1:-}}" = run ]; then
  shift
  args=(run)
  # What the rehearsal passes into the workflows' containers (the plan's legs: see mod.rs).
  [ -z "${{UFFDC_REHEARSAL_DOCKER_ENV:-}}" ] || args+=(-e "$UFFDC_REHEARSAL_DOCKER_ENV")
  # Where the container's xtask keeps its shared cache (UFFDC_CACHE_DIR, relative to -w).
  cache="" workdir="" prev=""
  for a in "$@"; do
    [ "$prev" != -w ] || workdir=$a
    [ "$prev" != -e ] || case "$a" in UFFDC_CACHE_DIR=*) cache=${{a#UFFDC_CACHE_DIR=}} ;; esac
    prev=$a
  done
  shared=({mounts})
  if [ -n "$cache" ] && [ ${{#shared[@]}} -gt 0 ]; then
    case "$cache" in /*) ;; *) cache="$workdir/$cache" ;; esac
    for s in "${{shared[@]}}"; do args+=(-v "{shared_root}/$s:$cache/$s"); done
    echo "rehearsal docker shim: what no workflow caches comes from this machine's shared cache {shared_root}, mounted at $cache: ${{shared[*]}}" >&2
  fi
  for a in "$@"; do
    if [ "{refused}" = true ] && [ "$a" = --privileged ]; then
      echo "rehearsal docker shim: this machine refuses --privileged (its capability bounding set lacks CAP_SYS_RESOURCE); running with {instead_text} and the host's devices instead" >&2
      args+=({instead})
      for d in {devices}; do
        case " $* " in *" $d "*|*" $d:"*) ;; *) args+=(--device "$d") ;; esac
      done
    else
      args+=("$a")
    fi
  done
  set -- "${{args[@]}}"
fi
exec '{real}' "$@"
"#,
        host = daemon.host,
        real = real.display(),
        shared_root = shared.root.display(),
        instead_text = INSTEAD_OF_PRIVILEGED.join(" "),
    );
    let path = bin.join("docker");
    std::fs::write(&path, text)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    // The runner's sudo changes a runner that is thrown away afterwards (the KVM udev rule); here it
    // would change this machine: logged, not run.
    let sudo = bin.join("sudo");
    std::fs::write(
        &sudo,
        "#!/bin/sh\necho \"rehearsal: not run here (it would change this machine, not a disposable runner): sudo $*\" >&2\n[ \"$1\" != tee ] || cat >/dev/null\n",
    )?;
    std::fs::set_permissions(&sudo, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// A Debian bookworm root as bare as the `debian:bookworm` image (debootstrap's minbase, with that
/// image's apt settings and sources layout and empty apt lists), from this machine's Debian mirror,
/// with the certificate authorities and apt network settings this machine needs to reach it.
fn debootstrap(sh: &Shell, dir: &Path, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    crate::inputs::packages::ensure(sh, &[crate::inputs::packages::Need::Debootstrap])?;
    let mirrors = crate::inputs::apt::mirrors(None)?;
    let root = dir.join("bookworm.tmp");
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    log(&format!("debian root: debootstrap --variant=minbase bookworm from {}", mirrors.main));
    let keyring = format!("--keyring={}", crate::inputs::apt::DEBIAN_KEYRING);
    let main = &mirrors.main;
    cmd!(sh, "debootstrap --variant=minbase {keyring} bookworm {root} {main}")
        .quiet()
        .ignore_stdout()
        .run()
        .context("debootstrap failed: check this machine's Debian mirror in /etc/apt/sources.list*")?;
    let files: [(&str, String); 6] = [
        ("etc/apt/apt.conf.d/docker-autoremove-suggests", "Apt::AutoRemove::SuggestsImportant \"false\";\n".into()),
        (
            "etc/apt/apt.conf.d/docker-clean",
            "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };\nAPT::Update::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };\nDir::Cache::pkgcache \"\";\nDir::Cache::srcpkgcache \"\";\n".into(),
        ),
        ("etc/apt/apt.conf.d/docker-gzip-indexes", "Acquire::GzipIndexes \"true\";\n".into()),
        ("etc/apt/apt.conf.d/docker-no-languages", "Acquire::Languages \"none\";\n".into()),
        ("etc/dpkg/dpkg.cfg.d/docker-apt-speedup", "force-unsafe-io\n".into()),
        (
            "etc/apt/sources.list.d/debian.sources",
            format!(
                "Types: deb\nURIs: {}\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: {}\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
                mirrors.main, mirrors.security
            ),
        ),
    ];
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("a folder"))?;
        std::fs::write(&p, text)?;
    }
    let _ = std::fs::remove_file(root.join("etc/apt/sources.list"));
    // This machine reaches registries through TLS-intercepting proxies whose authorities it trusts
    // locally; the image trusts them too once `ca-certificates` is installed in it (a hosted runner
    // needs none of this).
    if Path::new("/usr/local/share/ca-certificates").is_dir() {
        let dest = root.join("usr/local/share");
        cmd!(sh, "cp -a /usr/local/share/ca-certificates {dest}/").quiet().run()?;
    }
    // Likewise the settings this machine's apt needs to use its mirror (e.g. a frozen snapshot
    // whose Release files have expired).
    let dump = cmd!(sh, "apt-config dump").quiet().read().unwrap_or_default();
    let keys = [
        "Acquire::Check-Valid-Until ",
        "Acquire::Check-Date ",
        "Acquire::http::Proxy ",
        "Acquire::https::Proxy ",
    ];
    let network: Vec<&str> = dump.lines().filter(|l| keys.iter().any(|k| l.starts_with(k))).collect();
    if !network.is_empty() {
        std::fs::write(root.join("etc/apt/apt.conf.d/99rehearsal-this-machine"), network.join("\n") + "\n")?;
    }
    for d in ["var/lib/apt/lists", "var/cache/apt/archives"] {
        for e in std::fs::read_dir(root.join(d))? {
            let p = e?.path();
            if p.is_file() {
                std::fs::remove_file(p)?;
            }
        }
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_privileged_stand_in_passes_the_hosts_devices_but_not_dockers_own_or_terminals() {
        let devices = host_devices();
        for own in ["/dev/null", "/dev/tty", "/dev/ptmx", "/dev/tty0", "/dev/ttyS0"] {
            assert!(!devices.iter().any(|d| d == own), "{own} in {devices:?}");
        }
        if Path::new("/dev/userfaultfd").exists() {
            assert!(devices.iter().any(|d| d == "/dev/userfaultfd"), "{devices:?}");
        }
    }

    #[test]
    fn the_shared_cache_mounts_the_apts_go_and_the_build_roots_only() {
        let dir = crate::util::project_root().join("target/uffdc/tests/rehearse-shared-cache");
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["builds/root-abc", "builds/kernels", "images/k1", "apt-arm64"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("builds/root-file"), "").unwrap();
        let shared = SharedCache::new(dir.clone()).unwrap();
        assert_eq!(shared.parts, ["apt", "go", "apt-arm64", "builds/root-abc", "builds/root.lock"]);
        assert!(dir.join("apt").is_dir() && dir.join("builds/root.lock").is_file());
    }
}
