//! Pinned sets of Debian packages that are not kernels (the kernel build toolchain; the same
//! shape as the Go toolchain's `images/go.lock`): a lock file of `[[packages]]` (suite, package,
//! version, sha256, size) written by a refresh that apt resolved and downloaded, each .deb verified
//! against its pin before use, and unpacked by content (no maintainer scripts run).

use crate::inputs::apt::LazyApt;
use crate::util::sha256_file;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use xshell::Shell;

/// One pinned package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebPin {
    pub suite: String,
    pub package: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebLock {
    pub packages: Vec<DebPin>,
}

impl DebLock {
    /// Reads `path` (relative to the project root); `refresh` is the command that writes it.
    pub fn load(root: &Path, path: &str, refresh: &str) -> Result<DebLock> {
        let text = std::fs::read_to_string(root.join(path))
            .with_context(|| format!("cannot read {path}: run `{refresh}`"))?;
        let lock: DebLock = toml::from_str(&text)
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
        Ok(short_hash(toml::to_string(self)?.as_bytes()))
    }

    /// Pins `packages` (what apt resolved: name, version) in `suite`, each downloaded and hashed.
    pub fn pin(sh: &Shell, apt: &mut LazyApt, suite: &str, packages: &[(String, String)]) -> Result<DebLock> {
        let apt = apt.get()?;
        let mut lock = DebLock::default();
        for (package, version) in packages {
            let deb = apt.download(sh, package, version, suite)?;
            lock.packages.push(DebPin {
                suite: suite.to_string(),
                package: package.clone(),
                version: version.clone(),
                sha256: sha256_file(&deb)?,
                size: std::fs::metadata(&deb)?.len(),
            });
        }
        lock.packages.sort_by(|a, b| a.package.cmp(&b.package));
        Ok(lock)
    }
}

/// The first 16 hex digits of a sha256.
pub fn short_hash(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The pin's .deb: from the download cache when its sha256 matches, else downloaded and checked.
/// `lock` names the lock file and `refresh` the command that rewrites it, for the error.
pub fn verified(sh: &Shell, pin: &DebPin, apt: &mut LazyApt, lock: &str, refresh: &str) -> Result<PathBuf> {
    let debs = apt.debs_dir();
    let name = format!("{}_{}_", pin.package, pin.version.replace(':', "%3a"));
    let cached = std::fs::read_dir(&debs).into_iter().flatten().flatten().map(|e| e.path()).find(|p| {
        p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&name))
            && sha256_file(p).is_ok_and(|s| s == pin.sha256)
    });
    if let Some(deb) = cached {
        return Ok(deb);
    }
    let deb = apt.get()?.download(sh, &pin.package, &pin.version, &pin.suite)?;
    check(&deb, pin, lock, refresh)?;
    Ok(deb)
}

/// `deb` has the pinned sha256; a file that does not is deleted and named.
pub fn check(deb: &Path, pin: &DebPin, lock: &str, refresh: &str) -> Result<()> {
    let actual = sha256_file(deb)?;
    if actual != pin.sha256 {
        let _ = std::fs::remove_file(deb);
        bail!(
            "{} has sha256 {actual}, but {lock} pins {}: the download was corrupt (deleted; rerun to fetch again) or the pin is wrong (`{refresh}`)",
            deb.display(),
            pin.sha256
        );
    }
    Ok(())
}

/// Unpacks a .deb's files into `dir` (`dpkg-deb --fsys-tarfile`, read here), as a merged-/usr
/// system lays them out: `bin/`, `sbin/`, `lib/` and `lib64/` go under `usr/` (the root has them
/// as links), so packages from before and after Debian's /usr move unpack alike. Symbolic links
/// are kept; device files and the like are not unpacked.
pub fn unpack(deb: &Path, dir: &Path) -> Result<()> {
    for d in ["usr/bin", "usr/sbin", "usr/lib", "usr/lib64"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    for l in ["bin", "sbin", "lib", "lib64"] {
        if std::fs::symlink_metadata(dir.join(l)).is_err() {
            std::os::unix::fs::symlink(format!("usr/{l}"), dir.join(l))?;
        }
    }
    each_file(deb, |entry| {
        let path = entry.path()?.to_string_lossy().trim_start_matches("./").trim_end_matches('/').to_string();
        let path = match path.split_once('/') {
            Some((top @ ("bin" | "sbin" | "lib" | "lib64"), rest)) => format!("usr/{top}/{rest}"),
            _ if path.is_empty() || ["bin", "sbin", "lib", "lib64"].contains(&path.as_str()) => return Ok(()),
            _ => path,
        };
        let target = dir.join(&path);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&target)?;
            return Ok(());
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let _ = std::fs::remove_file(&target);
        if kind.is_symlink() {
            let link = entry.link_name()?.context("a symbolic link without a target")?;
            std::os::unix::fs::symlink(link, &target)?;
        } else if kind.is_hard_link() {
            let link = entry.link_name()?.context("a hard link without a target")?;
            let from = link.to_string_lossy().trim_start_matches("./").to_string();
            std::fs::copy(dir.join(from), &target)?;
        } else if kind.is_file() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            std::fs::write(&target, data)?;
            let mode = entry.header().mode().unwrap_or(0o644);
            std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777))?;
        }
        Ok(())
    })
}

/// Calls `f` with each entry of a .deb's data (`dpkg-deb --fsys-tarfile`, read as it comes); a .deb
/// that cannot be read to its end is named as damaged.
pub fn each_file(
    deb: &Path,
    mut f: impl FnMut(&mut tar::Entry<'_, std::process::ChildStdout>) -> Result<()>,
) -> Result<()> {
    let mut child = std::process::Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("running dpkg-deb")?;
    let mut archive = tar::Archive::new(child.stdout.take().expect("piped"));
    let damaged = |why: String| anyhow::anyhow!("{} is damaged ({why}): delete it and rerun", deb.display());
    let read = (|| -> Result<()> {
        for entry in archive.entries().map_err(|e| damaged(e.to_string()))? {
            f(&mut entry.map_err(|e| damaged(e.to_string()))?)?;
        }
        Ok(())
    })();
    let status = child.wait()?;
    if !status.success() {
        bail!(damaged(format!("dpkg-deb --fsys-tarfile failed: {status}")));
    }
    read
}
