//! Pinned .debs, one way for every pinned artifact (the kernels, their source packages, the kernel
//! build toolchain, the Go toolchain): a [`DebPin`] names the exact package apt resolved and the
//! sha256 and size of what it downloaded; a [`Lock`] is a lock file of `[[packages]]` pins;
//! [`DebPin::download`] makes a pin from a fresh download, and [`verified`] is the one verified
//! download (the cached .deb when its sha256 matches, else downloaded and checked, and a file with
//! another sha256 deleted and named). [`download_url`] is the same for a file named by URL (the
//! binary cache's, `bincache.rs`): apt's own HTTP client, the sha256 checked by apt and again here.

use crate::inputs::apt::{Apt, LazyApt};
use crate::util::sha256_file;
use anyhow::{bail, Context, Result};
use model::arch::Arch;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use xshell::Shell;

/// One pinned package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebPin {
    pub suite: String,
    pub package: String,
    pub version: String,
    /// The package's architecture, written only when it is not x86_64 (amd64): a lock from
    /// before architectures, and every x86_64 pin, reads and writes as before.
    #[serde(default, skip_serializing_if = "is_x86_64")]
    pub arch: Arch,
    /// sha256 of the .deb.
    pub sha256: String,
    /// Size of the .deb in bytes.
    pub size: u64,
}

fn is_x86_64(arch: &Arch) -> bool {
    *arch == Arch::X86_64
}

impl DebPin {
    /// Downloads `package=version` from `suite` (apt checks it against the signed archive) and
    /// pins what came, of apt's architecture: the .deb and its pin.
    pub fn download(
        sh: &Shell,
        apt: &mut Apt,
        suite: &str,
        package: &str,
        version: &str,
    ) -> Result<(PathBuf, DebPin)> {
        let deb = apt.download(sh, package, version, suite)?;
        let pin = DebPin {
            suite: suite.to_string(),
            package: package.to_string(),
            version: version.to_string(),
            arch: apt.arch,
            sha256: sha256_file(&deb)?,
            size: std::fs::metadata(&deb)?.len(),
        };
        Ok((deb, pin))
    }
}

/// A lock file of pinned packages (`[[packages]]`), with a comment header saying what wrote it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub packages: Vec<DebPin>,
}

impl Lock {
    /// Reads `path` (relative to the project root); `refresh` is the command that writes it.
    pub fn load(root: &Path, path: &str, refresh: &str) -> Result<Lock> {
        let text = std::fs::read_to_string(root.join(path))
            .with_context(|| format!("cannot read {path}: run `{refresh}`"))?;
        let lock: Lock = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{path}: {} (fix the file)", e.message().trim()))?;
        if lock.packages.is_empty() {
            bail!("{path} pins no package: run `{refresh}`");
        }
        Ok(lock)
    }

    pub fn save(&self, root: &Path, path: &str, header: &str) -> Result<()> {
        let text = format!("{header}\n{}", toml::to_string(self)?);
        crate::util::write_atomic(&root.join(path), text.as_bytes())
    }

    /// A key over every pin (a cache of what the packages make moves with any of them).
    pub fn key(&self) -> Result<String> {
        Ok(crate::util::short_hash(toml::to_string(self)?.as_bytes()))
    }

    /// Pins `packages` (what apt resolved: name, version) in `suite`, each downloaded and hashed.
    pub fn pin(sh: &Shell, apt: &mut LazyApt, suite: &str, packages: &[(String, String)]) -> Result<Lock> {
        let apt = apt.get()?;
        apt.fetch_ahead(sh, packages);
        let mut lock = Lock::default();
        for (package, version) in packages {
            lock.packages.push(DebPin::download(sh, apt, suite, package, version)?.1);
        }
        lock.packages.sort_by(|a, b| a.package.cmp(&b.package));
        Ok(lock)
    }
}

/// The pin's .deb: from apt's download cache when its sha256 matches, else downloaded and checked.
/// `lock` names the lock file and `refresh` the command that rewrites it, for the error. A pin of
/// another architecture than `apt`'s is fetched by the same apt for that architecture.
pub fn verified(sh: &Shell, pin: &DebPin, apt: &mut LazyApt, lock: &str, refresh: &str) -> Result<PathBuf> {
    let mut other;
    let apt = if apt.arch == pin.arch {
        apt
    } else {
        other = apt.for_arch(pin.arch);
        &mut other
    };
    if let Some(deb) = cached_deb(apt, pin) {
        return Ok(deb);
    }
    let deb = apt.get()?.download(sh, &pin.package, &pin.version, &pin.suite)?;
    check(&deb, pin, lock, refresh)?;
    Ok(deb)
}

/// The .deb of `pin`, when the cache has it with the pinned sha256.
fn cached_deb(apt: &LazyApt, pin: &DebPin) -> Option<PathBuf> {
    let debs = apt.for_arch(pin.arch).debs_dir();
    let name = format!("{}_{}_", pin.package, pin.version.replace(':', "%3a"));
    std::fs::read_dir(&debs).into_iter().flatten().flatten().map(|e| e.path()).find(|p| {
        p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&name))
            && sha256_file(p).is_ok_and(|s| s == pin.sha256)
    })
}

/// Fetches the pins the cache lacks in one `apt-get download` per architecture, before
/// [`verified`] checks each (and fetches, one by one, naming it, any this left out). A batch that
/// fails only says so: the one-by-one path gives each package's own error.
pub fn prefetch(sh: &Shell, pins: &[&DebPin], apt: &mut LazyApt) {
    let missing: Vec<&DebPin> = pins.iter().copied().filter(|p| cached_deb(apt, p).is_none()).collect();
    let mut arches: Vec<Arch> = Vec::new();
    for p in &missing {
        if !arches.contains(&p.arch) {
            arches.push(p.arch);
        }
    }
    for arch in arches {
        let wanted: Vec<String> = missing
            .iter()
            .filter(|p| p.arch == arch)
            .map(|p| format!("{}={}", p.package, p.version))
            .collect();
        let mut other;
        let apt = if apt.arch == arch {
            &mut *apt
        } else {
            other = apt.for_arch(arch);
            &mut other
        };
        if let Err(e) = apt.get().and_then(|a| a.download_all(sh, &wanted)) {
            eprintln!(
                "apt     one download of {} packages failed ({e:#}): fetching them one by one",
                wanted.len()
            );
        }
    }
}

/// `deb` has the pinned sha256; a file that does not is deleted and named.
pub fn check(deb: &Path, pin: &DebPin, lock: &str, refresh: &str) -> Result<()> {
    has_sha256(deb, &pin.sha256, &format!("{lock} pins"), &format!("the pin is wrong (`{refresh}`)"))
}

/// `file` has sha256 `want` (which `whose` names: "images/go.lock pins"); a file that does not is
/// deleted and named, with the other cause, `or`.
fn has_sha256(file: &Path, want: &str, whose: &str, or: &str) -> Result<()> {
    let actual = sha256_file(file)?;
    if actual != want {
        let _ = std::fs::remove_file(file);
        bail!(
            "{} has sha256 {actual}, but {whose} {want}: the download was corrupt (deleted; rerun to \
             fetch again) or {or}",
            file.display()
        );
    }
    Ok(())
}

/// Downloads `url` to `to` with apt's own HTTP client (`apt-helper download-file`, what fetches the
/// Debian archive; http, https and file URLs), checked against `sha256` when one is given (by apt,
/// and again here); `whose` names where that sha256 comes from. An unreachable server, a missing
/// file or another sha256 is an error in one line; nothing is left at `to` then.
pub fn download_url(url: &str, to: &Path, sha256: Option<&str>, whose: &str) -> Result<()> {
    let _ = std::fs::remove_file(to);
    let mut argv: Vec<String> = [
        "-o",
        "APT::Sandbox::User=root",
        "-o",
        "Debug::NoLocking=1",
        "-o",
        "Acquire::Retries=0",
        "-o",
        "Acquire::http::Timeout=30",
        "-o",
        "Acquire::https::Timeout=30",
        "download-file",
    ]
    .map(String::from)
    .to_vec();
    argv.push(url.to_string());
    argv.push(to.display().to_string());
    if let Some(sha) = sha256 {
        argv.push(format!("SHA256:{sha}"));
    }
    let out = std::process::Command::new(APT_HELPER)
        .args(&argv)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {APT_HELPER} (Debian's apt)"))?;
    let failed = std::path::PathBuf::from(format!("{}.FAILED", to.display()));
    let _ = std::fs::remove_file(&failed);
    if !out.status.success() {
        let _ = std::fs::remove_file(to);
        let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        // apt's own words: "E: Failed to fetch URL  404  File not found", "Hash Sum mismatch", ...
        let why = text
            .lines()
            .find(|l| l.starts_with("E: Failed to fetch"))
            .or_else(|| text.lines().find(|l| l.starts_with("E: ")))
            .map(|l| l.trim_start_matches("E: ").split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| format!("apt-helper download-file failed ({})", out.status));
        bail!("{why}");
    }
    match sha256 {
        Some(sha) => has_sha256(to, sha, whose, "the index is wrong"),
        None if to.is_file() => Ok(()),
        None => bail!("apt-helper download-file {url} left no file"),
    }
}

/// apt's helper, which downloads a URL with apt's acquire methods.
const APT_HELPER: &str = "/usr/lib/apt/apt-helper";

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed locks read and write back byte for byte (after their comment header), so a
    /// refresh that pins the same packages rewrites nothing, and every cache key over a lock
    /// (`Lock::key`, the Go workload's) is what it was. (images/toolchain.lock has cross
    /// compilers beside its `[[packages]]`: `buildroot.rs` tests its own.)
    #[test]
    fn the_committed_locks_round_trip_byte_for_byte() {
        let root = crate::util::project_root();
        for (path, refresh) in [
            ("images/go.lock", "cargo xtask images refresh go"),
            ("images/criu.lock", "cargo xtask images refresh criu"),
        ] {
            let text = std::fs::read_to_string(root.join(path)).unwrap();
            let body = &text[text.find("[[packages]]").unwrap()..];
            let lock = Lock::load(&root, path, refresh).unwrap();
            assert_eq!(toml::to_string(&lock).unwrap(), body, "{path}");
        }
    }
}
