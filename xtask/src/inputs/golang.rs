//! The Go toolchain and the Go workload (`suite/go`, built as `uffdc-go`).
//!
//! The toolchain is the newest `golang-1.NN-go` Debian ships, with its `golang-1.NN-src` (the
//! standard library's source, which the compiler builds from), taken from Debian's archive with
//! the apt handle the run passes in (the one the kernels use: the same mirror and signature
//! checks), pinned in `images/go.lock` (package, version, sha256, size), verified against the pin
//! before use and unpacked with `dpkg-deb -x` under the cache's `go/`, where it works in place
//! (GOROOT set, GOTOOLCHAIN=local, no module proxy: the workload uses the standard library only).
//! The compiler runs on the machine, so it is pinned once per machine architecture ([`HOSTS`]:
//! amd64's `golang-1.NN-go`, and arm64's, `arch = "arm64"` in the lock, for GitHub's arm64
//! runners), all of one version; `golang-1.NN-src` is architecture-independent (`Architecture:
//! all`) and pinned once. Each machine unpacks its own compiler and the source.
//! The workload is built statically (CGO_ENABLED=0) and cached under a key over the pins, its source and the
//! build flags; `uffdc-go version` names the Go release it was built with.

use crate::inputs::apt::{self, LazyApt};
use crate::inputs::fleet::Cache;
use crate::inputs::pin::{self, DebPin, Lock};
use anyhow::{bail, Context, Result};
use model::arch::Arch;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use xshell::{cmd, Shell};

pub const LOCK: &str = "images/go.lock";
/// Where the workload's source lives.
pub const SOURCE: &str = "suite/go";
/// Its name, in the initramfs (beside the suite, `/init`) and beside a host's suite binary.
pub const NAME: &str = "uffdc-go";
/// `go build` flags: static, reproducible, without symbol tables (a smaller initramfs).
const BUILD_FLAGS: [&str; 4] = ["-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o"];

/// `cargo xtask images refresh go`: what rewrites the lock.
const REFRESH: &str = "cargo xtask images refresh go";

/// The machine architectures the compiler is pinned for: the x86-64 machines (a developer's, CI's
/// x86 runners) and GitHub's arm64 runners, which run the arm64 kernel legs.
pub const HOSTS: [Arch; 2] = model::arch::ALL;

/// The toolchain's pins: the compiler (`golang-1.NN-go`) for every machine architecture of
/// [`HOSTS`], and the standard library's source (`golang-1.NN-src`), all of one version.
pub fn load(root: &Path) -> Result<Lock> {
    let lock = Lock::load(root, LOCK, REFRESH)?;
    check(&lock)?;
    Ok(lock)
}

/// A lock pins a compiler for each of [`HOSTS`] and the source, all of one version.
fn check(lock: &Lock) -> Result<()> {
    if !lock.packages.iter().any(|p| p.package.ends_with("-src")) {
        bail!("{LOCK} must pin a golang-1.NN-go and its golang-1.NN-src: run `{REFRESH}`");
    }
    for host in HOSTS {
        if compiler(lock, host).is_none() {
            return Err(no_compiler(host));
        }
    }
    let version = go_version(lock);
    if let Some(other) = lock.packages.iter().find(|p| p.version != version) {
        bail!(
            "{LOCK} pins {} {} beside {version}: the compilers and the source are one release (run `{REFRESH}`)",
            other.package,
            other.version
        );
    }
    Ok(())
}

fn no_compiler(host: Arch) -> anyhow::Error {
    anyhow::anyhow!(
        "{LOCK} pins no golang-1.NN-go for an {host} machine (arch = \"{host}\"): run `{REFRESH}`"
    )
}

/// The compiler pinned for a machine of architecture `host`.
fn compiler(lock: &Lock, host: Arch) -> Option<&DebPin> {
    lock.packages.iter().find(|p| p.package.ends_with("-go") && p.arch == host)
}

/// What a machine of architecture `host` unpacks: its compiler and the source.
fn host_pins(lock: &Lock, host: Arch) -> Lock {
    let packages = lock
        .packages
        .iter()
        .filter(|p| if p.package.ends_with("-go") { p.arch == host } else { p.package.ends_with("-src") })
        .cloned()
        .collect();
    Lock { packages }
}

fn save(lock: &Lock, root: &Path) -> Result<()> {
    lock.save(
        root,
        LOCK,
        &format!(
            "# The Go toolchain that builds the Go workload ({SOURCE}): the newest golang-1.NN-go in Debian's\n\
             # archive for each machine architecture that runs it (amd64; arm64, `arch`), and its golang-1.NN-src\n\
             # (architecture-independent). Written by `{REFRESH}`; every entry was\n\
             # downloaded and verified by apt against the signed archive; builds check each .deb's sha256.\n"
        ),
    )
}

/// `1.27.3-1`: the compiler package's version (every pin's: `check`).
fn go_version(lock: &Lock) -> &str {
    lock.packages.iter().find(|p| p.package.ends_with("-go")).map_or("", |p| p.version.as_str())
}

/// The built workload.
#[derive(Clone, Debug)]
pub struct Workload {
    pub path: PathBuf,
    /// What it reports as its runtime (`runtime.Version()`): `go1.27.3`.
    pub version: String,
}

fn dir(root: &Path) -> PathBuf {
    Cache::new(root).dir.join("go")
}

/// The workload, built with the pinned toolchain (fetched with the run's `apt`, verified and
/// unpacked first if need be), or taken from the cache when that toolchain already built this
/// source.
pub fn workload(sh: &Shell, root: &Path, apt: &mut LazyApt) -> Result<Workload> {
    workload_for(sh, root, apt, Arch::native())
}

/// [`workload`] for `arch` (`GOARCH`): another architecture's build is named by it in the cache,
/// and its Go release read from the binary's build information (`go version FILE`), since it
/// cannot run here.
pub fn workload_for(sh: &Shell, root: &Path, apt: &mut LazyApt, arch: Arch) -> Result<Workload> {
    let lock = load(root)?;
    let key = build_key(root, &lock)?;
    let name = match arch {
        Arch::X86_64 => format!("{NAME}-{key}"),
        other => format!("{NAME}-{}-{key}", other.name()),
    };
    let out = dir(root).join("build").join(name);
    let version_file = out.with_extension("version");
    let cached = || -> Option<Workload> {
        let version = std::fs::read_to_string(&version_file).ok()?.trim().to_string();
        (out.is_file() && !version.is_empty()).then(|| Workload { path: out.clone(), version })
    };
    if let Some(w) = cached() {
        return Ok(w);
    }
    std::fs::create_dir_all(dir(root))?;
    let _lock = crate::util::lock(&dir(root).join("build.lock"))?;
    if let Some(w) = cached() {
        return Ok(w);
    }
    let goroot = toolchain(sh, root, &lock, apt)?;
    let tmp = out.with_extension("tmp");
    let _cwd = sh.push_dir(root.join(SOURCE));
    eprintln!("go      build {SOURCE} with {} ({})", go_version(&lock), crate::util::display_path(&goroot));
    go(sh, root, &goroot, &["build"])
        .env("GOARCH", arch.goarch())
        .args(BUILD_FLAGS)
        .arg(&tmp)
        .arg(".")
        .quiet()
        .run()
        .with_context(|| {
            format!("building the Go workload ({SOURCE}) for {arch} with {}", goroot.display())
        })?;
    let version = if arch == Arch::native() {
        cmd!(sh, "{tmp} version").quiet().read().context("uffdc-go version")?.trim().to_string()
    } else {
        // `FILE: go1.24.4`
        let line =
            go(sh, root, &goroot, &["version"]).arg(&tmp).quiet().read().context("go version uffdc-go")?;
        line.rsplit(' ').next().unwrap_or_default().trim().to_string()
    };
    if !version.starts_with("go") {
        bail!("the built Go workload reports version {version:?}, not go1.N.M");
    }
    std::fs::rename(&tmp, &out)?;
    crate::util::write_atomic(&version_file, format!("{version}\n").as_bytes())?;
    Ok(Workload { path: out, version })
}

/// The pinned toolchain's `go ARGS...`, isolated from the machine's Go settings: its own GOROOT,
/// no toolchain switching, no module proxy, caches under the cache's go/, static builds for this
/// machine's architecture (a build for another sets GOARCH itself).
fn go<'a>(sh: &'a Shell, root: &Path, goroot: &Path, args: &[&str]) -> xshell::Cmd<'a> {
    let work = dir(root);
    cmd!(sh, "{goroot}/bin/go {args...}")
        .env("GOROOT", goroot)
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOWORK", "off")
        .env("GOENV", "off")
        .env("GOTELEMETRY", "off")
        .env("CGO_ENABLED", "0")
        .env("GOOS", "linux")
        .env("GOARCH", Arch::native().goarch())
        .env("GOCACHE", work.join("cache"))
        .env("GOPATH", work.join("gopath"))
        .env("HOME", work.join("home"))
}

/// The test command's checks of the workload's Go code, as `cargo fmt --check` and clippy are of
/// the Rust: `gofmt -l` and `go vet`, with the pinned toolchain.
pub fn lint(sh: &Shell, root: &Path, apt: &mut LazyApt) -> Result<()> {
    let lock = load(root)?;
    let goroot = toolchain(sh, root, &lock, apt)?;
    let _cwd = sh.push_dir(root.join(SOURCE));
    let unformatted = cmd!(sh, "{goroot}/bin/gofmt -l .").quiet().read().context("gofmt -l")?;
    if !unformatted.trim().is_empty() {
        bail!(
            "{SOURCE} is not gofmt-formatted ({}): run `{}/bin/gofmt -w {SOURCE}`",
            unformatted.split_whitespace().collect::<Vec<_>>().join(", "),
            crate::util::display_path(&goroot)
        );
    }
    go(sh, root, &goroot, &["vet", "."])
        .quiet()
        .run()
        .with_context(|| format!("go vet found problems in {SOURCE}"))
}

/// A key over what the workload is made of: the pins, every source file, the build flags.
fn build_key(root: &Path, lock: &Lock) -> Result<String> {
    let mut h = Sha256::new();
    h.update(toml::to_string(lock)?.as_bytes());
    h.update(BUILD_FLAGS.join(" ").as_bytes());
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(SOURCE))
        .with_context(|| format!("cannot read {SOURCE}"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for f in files {
        h.update(f.file_name().unwrap_or_default().as_encoded_bytes());
        h.update([0]);
        h.update(std::fs::read(&f)?);
        h.update([0]);
    }
    Ok(h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect())
}

/// The GOROOT of the pinned toolchain for this machine, unpacked from its verified .debs (its
/// compiler's and the source's, each fetched with `apt` made for the pin's architecture, its
/// suites added).
fn toolchain(sh: &Shell, root: &Path, lock: &Lock, apt: &mut LazyApt) -> Result<PathBuf> {
    let host = Arch::native();
    let pins = host_pins(lock, host);
    let Some(compiler) = compiler(&pins, host).cloned() else { return Err(no_compiler(host)) };
    let version = go_version(lock);
    // x86_64's folder keeps its name from before the arm64 compiler was pinned.
    let folder = match host {
        Arch::X86_64 => version.to_string(),
        other => format!("{version}-{}", other.debian()),
    };
    let unpacked = dir(root).join("toolchain").join(folder);
    let marker = unpacked.join("pins.toml");
    let marker_text = toml::to_string(&pins)?;
    // golang-1.27-go keeps its GOROOT in /usr/lib/go-1.27.
    let series = compiler.package.trim_start_matches("golang-").trim_end_matches("-go");
    let goroot = unpacked.join(format!("usr/lib/go-{series}"));
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == marker_text) {
        return Ok(goroot);
    }
    let _ = std::fs::remove_dir_all(&unpacked);
    std::fs::create_dir_all(&unpacked)?;
    for pin in &pins.packages {
        apt.add_suite(&pin.suite);
    }
    for pin in &pins.packages {
        // `verified` fetches a pin with the apt of its architecture (arm64's compiler with an
        // arm64 apt), whatever this handle was made for.
        let deb = pin::verified(sh, pin, apt, LOCK, REFRESH)?;
        cmd!(sh, "dpkg-deb -x {deb} {unpacked}")
            .quiet()
            .run()
            .with_context(|| format!("unpacking {}", deb.display()))?;
    }
    crate::util::write_atomic(&marker, marker_text.as_bytes())?;
    if !goroot.join("bin/go").is_file() {
        bail!("{} holds no bin/go: pin the golang-1.NN-go package that does", goroot.display());
    }
    Ok(goroot)
}

/// Re-pins the toolchain to the newest `golang-1.NN-go` that the fleet's suites hold for every
/// machine architecture of [`HOSTS`] at one version, a compiler per architecture (each downloaded
/// with the apt of its architecture), and its `golang-1.NN-src` of that version; rewrites the lock.
pub fn refresh(sh: &Shell, root: &Path, apt: &mut LazyApt) -> Result<()> {
    let mut apts: Vec<LazyApt> = HOSTS.iter().map(|h| apt.for_arch(*h)).collect();
    // (series minor, package) -> versions (with their suite) per architecture.
    let mut offered: Vec<Vec<(u32, String)>> = Vec::new();
    for a in &mut apts {
        let a = a.get()?;
        a.update(sh, true)?;
        // golang-1.27-go and the like.
        offered.push(
            a.package_names(sh, "golang-1.")?
                .into_iter()
                .filter_map(|n| Some((n.strip_prefix("golang-1.")?.strip_suffix("-go")?.parse().ok()?, n)))
                .collect(),
        );
    }
    // The series with the highest minor number every architecture has, at its newest version
    // every architecture has (an architecture whose build lags keeps the pins on the older one).
    let mut series: Vec<(u32, String)> =
        offered[0].iter().filter(|s| offered.iter().all(|o| o.contains(s))).cloned().collect();
    series.sort();
    let mut chosen: Option<(String, String, String)> = None;
    for (_, compiler) in series.iter().rev() {
        let mut common: Option<Vec<(String, String)>> = None;
        for a in &mut apts {
            let versions = a.get()?.versions(sh, compiler)?;
            common = Some(match common {
                None => versions,
                Some(c) => c.into_iter().filter(|v| versions.contains(v)).collect(),
            });
        }
        let mut best: Option<(String, String)> = None;
        for (version, suite) in common.unwrap_or_default() {
            if best.as_ref().is_none_or(|(v, _)| apt::newer(sh, &version, v)) {
                best = Some((version, suite));
            }
        }
        if let Some((version, suite)) = best {
            chosen = Some((compiler.clone(), version, suite));
            break;
        }
    }
    let Some((compiler, version, suite)) = chosen else {
        let names: Vec<&str> = HOSTS.iter().map(|h| h.debian()).collect();
        bail!(
            "no golang-1.NN-go of one version for {} in the archive's lists: is the mirror complete?",
            names.join(" and ")
        );
    };
    let source = format!("{}-src", compiler.trim_end_matches("-go"));
    // x86_64's compiler and the source first (as the lock was before arm64), then the others'.
    let mut lock = Lock::default();
    lock.packages.push(DebPin::download(sh, apts[0].get()?, &suite, &compiler, &version)?.1);
    lock.packages.push(DebPin::download(sh, apts[0].get()?, &suite, &source, &version)?.1);
    for a in &mut apts[1..] {
        lock.packages.push(DebPin::download(sh, a.get()?, &suite, &compiler, &version)?.1);
    }
    check(&lock)?;
    let old = load(root).ok();
    let hosts: Vec<&str> = HOSTS.iter().map(|h| h.debian()).collect();
    let hosts = hosts.join(", ");
    match &old {
        Some(o) if o == &lock => println!("{:<20} unchanged: {compiler} {version} ({hosts})", "go"),
        Some(o) => println!("{:<20} {} -> {compiler} {version} ({hosts})", "go", go_version(o)),
        None => println!("{:<20} pinned {compiler} {version} ({hosts})", "go"),
    }
    save(&lock, root)?;
    println!("wrote {LOCK}");
    Ok(())
}

/// Fills the cache: the pinned toolchain's .debs, verified, and the workload built with it.
pub fn fetch(sh: &Shell, root: &Path, apt: &mut LazyApt) -> Result<()> {
    let w = workload(sh, root, apt)?;
    println!("{:<20} {:<28} cached: {}", "go", w.version, crate::util::display_path(&w.path));
    Ok(())
}

/// One line for `cargo xtask images list`.
pub fn list(root: &Path) {
    match load(root) {
        Ok(lock) => {
            for p in &lock.packages {
                let package = format!("{}:{}", p.package, p.arch.debian());
                println!("{:<20} {:<22} {:<46} {:<22}", "go", p.suite, package, p.version);
            }
        }
        Err(e) => println!("{:<20} {e:#}", "go"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_toolchain_is_pinned_for_every_machine_architecture() {
        let root = crate::util::project_root();
        let lock = load(&root).unwrap();
        for p in &lock.packages {
            assert_eq!(p.sha256.len(), 64, "{p:?}");
            assert!(p.size > 0 && p.package.starts_with("golang-1."), "{p:?}");
            assert_eq!(p.version, go_version(&lock), "the compilers and the source are one version: {p:?}");
        }
        // Each machine unpacks its own compiler and the one source.
        for host in HOSTS {
            let pins = host_pins(&lock, host);
            assert_eq!(pins.packages.len(), 2, "{host}: {pins:?}");
            assert_eq!(compiler(&pins, host).map(|p| p.arch), Some(host));
            assert!(pins.packages.iter().any(|p| p.package.ends_with("-src")));
        }
        assert_ne!(
            compiler(&lock, Arch::X86_64).unwrap().sha256,
            compiler(&lock, Arch::Arm64).unwrap().sha256
        );
        // The key moves with the source.
        let key = build_key(&root, &lock).unwrap();
        let mut other = lock.clone();
        other.packages[0].sha256 = "0".repeat(64);
        assert_ne!(build_key(&root, &other).unwrap(), key);
    }

    /// A lock without a machine's compiler, or with two releases, says so with the fix.
    #[test]
    fn a_lock_missing_a_machines_compiler_is_refused() {
        let lock = load(&crate::util::project_root()).unwrap();
        let mut no_arm64 = lock.clone();
        no_arm64.packages.retain(|p| p.arch != Arch::Arm64);
        let e = check(&no_arm64).unwrap_err().to_string();
        assert!(e.contains("no golang-1.NN-go for an arm64 machine") && e.contains(REFRESH), "{e}");
        let mut two = lock.clone();
        two.packages.last_mut().unwrap().version = "1.0-1".into();
        let e = check(&two).unwrap_err().to_string();
        assert!(e.contains("1.0-1") && e.contains("one release"), "{e}");
        let mut no_src = lock;
        no_src.packages.retain(|p| !p.package.ends_with("-src"));
        assert!(check(&no_src).unwrap_err().to_string().contains("golang-1.NN-src"));
    }
}
