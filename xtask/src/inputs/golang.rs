//! The Go toolchain and the Go workload (`suite/go`, built as `uffdc-go`).
//!
//! The toolchain is the newest `golang-1.NN-go` Debian ships, with its `golang-1.NN-src` (the
//! standard library's source, which the compiler builds from), taken from Debian's archive with
//! the private apt the kernels use (the same mirror and signature checks), pinned in
//! `images/go.lock` (package, version, sha256, size), verified against the pin before use and
//! unpacked with `dpkg-deb -x` under `target/uffdc/go/`, where it works in place (GOROOT set,
//! GOTOOLCHAIN=local, no module proxy: the workload uses the standard library only). The workload
//! is built statically (CGO_ENABLED=0) and cached under a key over the pins, its source and the
//! build flags; `uffdc-go version` names the Go release it was built with.

use crate::inputs::apt::{self, LazyApt};
use crate::inputs::fleet::{sha256_file, Cache, Fleet};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
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

/// One pinned package of the toolchain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoPin {
    pub suite: String,
    pub package: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoLock {
    /// The compiler (`golang-1.NN-go`) and the standard library's source (`golang-1.NN-src`).
    pub packages: Vec<GoPin>,
}

impl GoLock {
    pub fn load(root: &Path) -> Result<GoLock> {
        let path = root.join(LOCK);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {LOCK}: run `cargo xtask images refresh go`"))?;
        let lock: GoLock = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{LOCK}: {} (fix the file)", e.message().trim()))?;
        if !lock.packages.iter().any(|p| p.package.ends_with("-go"))
            || !lock.packages.iter().any(|p| p.package.ends_with("-src"))
        {
            bail!("{LOCK} must pin a golang-1.NN-go and its golang-1.NN-src: run `cargo xtask images refresh go`");
        }
        Ok(lock)
    }

    fn save(&self, root: &Path) -> Result<()> {
        let text = format!(
            "# The Go toolchain that builds the Go workload ({SOURCE}): the newest golang-1.NN-go in Debian's\n\
             # archive and its golang-1.NN-src. Written by `cargo xtask images refresh go`; every entry was\n\
             # downloaded and verified by apt against the signed archive; builds check each .deb's sha256.\n\n{}",
            toml::to_string(self)?
        );
        crate::util::write_atomic(&root.join(LOCK), text.as_bytes())
    }

    /// `1.27.3-1`: the compiler package's version.
    fn version(&self) -> &str {
        self.packages.iter().find(|p| p.package.ends_with("-go")).map_or("", |p| p.version.as_str())
    }
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

/// The workload, built with the pinned toolchain (fetched, verified and unpacked first if need
/// be), or taken from the cache when that toolchain already built this source.
pub fn workload(sh: &Shell, root: &Path, mirror: Option<String>) -> Result<Workload> {
    let lock = GoLock::load(root)?;
    let key = build_key(root, &lock)?;
    let out = dir(root).join("build").join(format!("{NAME}-{key}"));
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
    let goroot = toolchain(sh, root, &lock, mirror)?;
    let tmp = out.with_extension("tmp");
    let _cwd = sh.push_dir(root.join(SOURCE));
    eprintln!("go      build {SOURCE} with {} ({})", lock.version(), crate::util::display_path(&goroot));
    go(sh, root, &goroot, &["build"])
        .args(BUILD_FLAGS)
        .arg(&tmp)
        .arg(".")
        .quiet()
        .run()
        .with_context(|| format!("building the Go workload ({SOURCE}) with {}", goroot.display()))?;
    let version = cmd!(sh, "{tmp} version").quiet().read().context("uffdc-go version")?.trim().to_string();
    if !version.starts_with("go") {
        bail!("the built Go workload reports version {version:?}, not go1.N.M");
    }
    std::fs::rename(&tmp, &out)?;
    crate::util::write_atomic(&version_file, format!("{version}\n").as_bytes())?;
    Ok(Workload { path: out, version })
}

/// The pinned toolchain's `go ARGS...`, isolated from the machine's Go settings: its own GOROOT,
/// no toolchain switching, no module proxy, caches under target/uffdc/go/, static amd64 builds.
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
        .env("GOARCH", "amd64")
        .env("GOCACHE", work.join("cache"))
        .env("GOPATH", work.join("gopath"))
        .env("HOME", work.join("home"))
}

/// The test command's checks of the workload's Go code, as `cargo fmt --check` and clippy are of
/// the Rust: `gofmt -l` and `go vet`, with the pinned toolchain.
pub fn lint(sh: &Shell, root: &Path) -> Result<()> {
    let lock = GoLock::load(root)?;
    let goroot = toolchain(sh, root, &lock, None)?;
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
fn build_key(root: &Path, lock: &GoLock) -> Result<String> {
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

/// The GOROOT of the pinned toolchain, unpacked from its verified .debs.
fn toolchain(sh: &Shell, root: &Path, lock: &GoLock, mirror: Option<String>) -> Result<PathBuf> {
    let unpacked = dir(root).join("toolchain").join(lock.version());
    let marker = unpacked.join("pins.toml");
    let pins = toml::to_string(lock)?;
    let goroot = || -> Result<PathBuf> {
        let compiler = lock.packages.iter().find(|p| p.package.ends_with("-go")).expect("checked on load");
        // golang-1.27-go keeps its GOROOT in /usr/lib/go-1.27.
        let series = compiler.package.trim_start_matches("golang-").trim_end_matches("-go");
        Ok(unpacked.join(format!("usr/lib/go-{series}")))
    };
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == pins) {
        return goroot();
    }
    let _ = std::fs::remove_dir_all(&unpacked);
    std::fs::create_dir_all(&unpacked)?;
    let mut apt = apt_for(root, lock, mirror)?;
    for pin in &lock.packages {
        let deb = verified_deb(sh, root, pin, &mut apt)?;
        cmd!(sh, "dpkg-deb -x {deb} {unpacked}")
            .quiet()
            .run()
            .with_context(|| format!("unpacking {}", deb.display()))?;
    }
    crate::util::write_atomic(&marker, pins.as_bytes())?;
    let goroot = goroot()?;
    if !goroot.join("bin/go").is_file() {
        bail!("{} holds no bin/go: pin the golang-1.NN-go package that does", goroot.display());
    }
    Ok(goroot)
}

/// The fleet's private apt (its lists serve every suite the kernels and the toolchain come from).
fn apt_for(root: &Path, lock: &GoLock, mirror: Option<String>) -> Result<LazyApt> {
    let fleet = Fleet::load(root)?;
    let mut fleet_apt = fleet.clone();
    // A toolchain suite the kernels do not use still gets a source line.
    for pin in &lock.packages {
        if !fleet.tracks.values().any(|t| t.suites.contains(&pin.suite))
            && !fleet.lock.kernels.values().any(|k| k.suite == pin.suite)
        {
            fleet_apt.tracks.insert(
                format!("go:{}", pin.suite),
                crate::inputs::fleet::Track {
                    suites: vec![pin.suite.clone()],
                    meta: String::new(),
                    why: String::new(),
                },
            );
        }
    }
    Ok(fleet_apt.apt(&Cache::new(root), mirror))
}

/// The pin's .deb: from the download cache when its sha256 matches, else downloaded and checked.
fn verified_deb(sh: &Shell, root: &Path, pin: &GoPin, apt: &mut LazyApt) -> Result<PathBuf> {
    let debs = Cache::new(root).dir.join("apt/debs");
    let name = format!("{}_{}_", pin.package, pin.version.replace(':', "%3a"));
    let cached = std::fs::read_dir(&debs).into_iter().flatten().flatten().map(|e| e.path()).find(|p| {
        p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&name))
            && sha256_file(p).is_ok_and(|s| s == pin.sha256)
    });
    if let Some(deb) = cached {
        return Ok(deb);
    }
    let deb = apt.get()?.download(sh, &pin.package, &pin.version, &pin.suite)?;
    let actual = sha256_file(&deb)?;
    if actual != pin.sha256 {
        let _ = std::fs::remove_file(&deb);
        bail!(
            "{} has sha256 {actual}, but {LOCK} pins {}: the download was corrupt (deleted; rerun to fetch again) or the pin is wrong (`cargo xtask images refresh go`)",
            deb.display(),
            pin.sha256
        );
    }
    Ok(deb)
}

/// Re-pins the toolchain to the newest `golang-1.NN-go` in the fleet's suites and its
/// `golang-1.NN-src` of the same version; rewrites the lock.
pub fn refresh(sh: &Shell, root: &Path, apt: &mut LazyApt) -> Result<()> {
    let apt = apt.get()?;
    apt.update(sh, true)?;
    // golang-1.27-go and the like; the series with the highest minor number wins.
    let mut series: Vec<(u32, String)> = apt
        .package_names(sh, "golang-1.")?
        .into_iter()
        .filter_map(|n| {
            let minor = n.strip_prefix("golang-1.")?.strip_suffix("-go")?.parse().ok()?;
            Some((minor, n))
        })
        .collect();
    series.sort();
    let Some((_, compiler)) = series.last() else {
        bail!("no golang-1.NN-go in the archive's lists: is the mirror complete?");
    };
    let source = format!("{}-src", compiler.trim_end_matches("-go"));
    let mut best: Option<(String, String)> = None;
    for (version, suite) in apt.versions(sh, compiler)? {
        if best.as_ref().is_none_or(|(v, _)| apt::newer(sh, &version, v)) {
            best = Some((version, suite));
        }
    }
    let Some((version, suite)) = best else { bail!("{compiler} has no version in the lists") };
    let mut lock = GoLock::default();
    for package in [compiler.as_str(), source.as_str()] {
        let deb = apt.download(sh, package, &version, &suite)?;
        lock.packages.push(GoPin {
            suite: suite.clone(),
            package: package.to_string(),
            version: version.clone(),
            sha256: sha256_file(&deb)?,
            size: std::fs::metadata(&deb)?.len(),
        });
    }
    let old = GoLock::load(root).ok();
    match &old {
        Some(o) if o == &lock => println!("{:<20} unchanged: {compiler} {version}", "go"),
        Some(o) => println!("{:<20} {} -> {compiler} {version}", "go", o.version()),
        None => println!("{:<20} pinned {compiler} {version}", "go"),
    }
    lock.save(root)?;
    println!("wrote {LOCK}");
    Ok(())
}

/// Fills the cache: the pinned toolchain's .debs, verified, and the workload built with it.
pub fn fetch(sh: &Shell, root: &Path, mirror: Option<String>) -> Result<()> {
    let w = workload(sh, root, mirror)?;
    println!("{:<20} {:<28} cached: {}", "go", w.version, crate::util::display_path(&w.path));
    Ok(())
}

/// One line for `cargo xtask images list`.
pub fn list(root: &Path) {
    match GoLock::load(root) {
        Ok(lock) => {
            for p in &lock.packages {
                println!("{:<20} {:<22} {:<46} {:<22}", "go", p.suite, p.package, p.version);
            }
        }
        Err(e) => println!("{:<20} {e:#}", "go"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_toolchain_is_pinned() {
        let root = crate::util::project_root();
        let lock = GoLock::load(&root).unwrap();
        for p in &lock.packages {
            assert_eq!(p.sha256.len(), 64, "{p:?}");
            assert!(p.size > 0 && p.package.starts_with("golang-1."), "{p:?}");
            assert_eq!(p.version, lock.version(), "the compiler and its source are one version: {p:?}");
        }
        // The key moves with the source.
        let key = build_key(&root, &lock).unwrap();
        let mut other = lock.clone();
        other.packages[0].sha256 = "0".repeat(64);
        assert_ne!(build_key(&root, &other).unwrap(), key);
    }
}
