//! .debs unpacked by content (no maintainer scripts run): into a merged-/usr root, or entry by
//! entry. Their pins and verified download are `pin.rs`'s.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::Path;

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

/// A root unpacked from pinned .debs, made once: `dir/.uffdc-pins.toml` holds `marker` (what the
/// pins were), and a root without exactly that is made again, under the flock `lock`, from each
/// pin's verified .deb (`lock_file` and `refresh` name its lock file and the command that rewrites
/// it), then `finish`ed before the marker is written. `what` names it in the progress line.
/// Returns whether it was made now.
#[allow(clippy::too_many_arguments)]
pub fn unpacked_root(
    sh: &xshell::Shell,
    dir: &Path,
    lock: &Path,
    marker: &str,
    pins: &[&crate::inputs::pin::DebPin],
    apt: &mut crate::inputs::apt::LazyApt,
    (lock_file, refresh): (&str, &str),
    what: &str,
    finish: impl FnOnce(&Path) -> Result<()>,
) -> Result<bool> {
    let made = || std::fs::read_to_string(dir.join(".uffdc-pins.toml")).is_ok_and(|m| m == marker);
    if made() {
        return Ok(false);
    }
    std::fs::create_dir_all(lock.parent().expect("a lock file in a directory"))?;
    let _lock = crate::util::lock(lock)?;
    if made() {
        return Ok(false);
    }
    let _ = std::fs::remove_dir_all(dir);
    eprintln!("{what}: unpacking {} pinned packages into {}", pins.len(), crate::util::display_path(dir));
    crate::inputs::pin::prefetch(sh, pins, apt);
    for pin in pins {
        let deb = crate::inputs::pin::verified(sh, pin, apt, lock_file, refresh)?;
        unpack(&deb, dir).with_context(|| format!("unpacking {}", deb.display()))?;
    }
    finish(dir)?;
    crate::util::write_atomic(&dir.join(".uffdc-pins.toml"), marker.as_bytes())?;
    Ok(true)
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
