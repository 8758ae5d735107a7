//! `images refresh`: every pin re-resolved against the archive (the kernel tracks to their newest
//! point release, the toolchain, the Go toolchain, the builds' and the kernels' source packages),
//! the locks rewritten. `images refresh` and `ci plan --refresh` stand on it.

use crate::inputs::apt::{self, LazyApt};
use crate::inputs::fleet::{Cache, Fleet, KernelId, Track, LOCK};
use anyhow::{bail, Context, Result};
use std::path::Path;
use xshell::Shell;

/// `toolchain` names the kernel build toolchain (images/toolchain.lock) among the ids.
pub const TOOLCHAIN: &str = "toolchain";
/// `sources` names the source packages alone (`[sources]` of images/kernels.lock: the builds', and
/// each packaged kernel's own, which its selftests are built from), leaving the kernels' pins as
/// they are.
pub const SOURCES: &str = "sources";
/// `go` names the Go toolchain (images/go.lock).
pub const GO: &str = "go";
/// `criu` names the guests' CRIU (images/criu.lock).
pub const CRIU: &str = "criu";

/// Re-resolves every pin (or those of the named ids: tracks, builds, `toolchain`, `go`, `sources`)
/// and rewrites the locks.
pub fn pins(sh: &Shell, root: &Path, ids: Vec<String>, mirror: Option<String>) -> Result<()> {
    let mut fleet = Fleet::load(root)?;
    let cache = Cache::new(root);
    let mut apt = fleet.apt(&cache, mirror);
    let (fleet, apt) = (&mut fleet, &mut apt);
    let all = ids.is_empty();
    if all || ids.iter().any(|i| i == TOOLCHAIN) {
        apt.add_suite(crate::inputs::buildroot::RELEASE);
        crate::inputs::buildroot::refresh(sh, root, apt)?;
    }
    if all || ids.iter().any(|i| i == GO) {
        crate::inputs::golang::refresh(sh, root, apt)?;
    }
    if all || ids.iter().any(|i| i == CRIU) {
        crate::inputs::criu::refresh(sh, root, apt)?;
    }
    let sources = ids.iter().any(|i| i == SOURCES);
    let ids: Vec<KernelId> = ids
        .into_iter()
        .filter(|i| i != TOOLCHAIN && i != SOURCES && i != GO && i != CRIU)
        .map(KernelId::from)
        .collect();
    let tracks: Vec<KernelId> = ids.iter().filter(|i| !fleet.builds.contains_key(*i)).cloned().collect();
    if all || !tracks.is_empty() {
        kernel_tracks(sh, root, fleet, &cache, apt, &tracks)?;
    }
    // The builds' sources, and the packaged kernels' own (their selftests are built from
    // them), follow the pins.
    if all || sources || !ids.is_empty() {
        crate::inputs::builds::refresh(sh, root, fleet, apt)?;
    }
    Ok(())
}

fn kernel_tracks(
    sh: &Shell,
    root: &Path,
    fleet: &mut Fleet,
    cache: &Cache,
    apt: &mut LazyApt,
    ids: &[KernelId],
) -> Result<()> {
    apt.get()?.update(sh, true)?;
    let ids: Vec<KernelId> =
        if ids.is_empty() { fleet.tracks.keys().cloned().collect() } else { ids.to_vec() };
    for id in &ids {
        let Some(track) = fleet.tracks.get(id).cloned() else {
            bail!("unknown track {id:?} (see images/kernels.toml)");
        };
        let (suite, package, version) = resolve(sh, apt, id, &track)?;
        let (_, pin) = cache.fetch_new(sh, id, &suite, &package, &version, apt)?;
        match fleet.lock.kernels.get(id) {
            Some(old) if old == &pin => println!("{id:<20} unchanged: {package} {version}"),
            Some(old) => {
                println!("{id:<20} {} {} -> {package} {version} ({})", old.package, old.version, pin.release)
            }
            None => println!("{id:<20} pinned {package} {version} ({})", pin.release),
        }
        fleet.lock.kernels.insert(id.clone(), pin);
        // Written after every track, so an interrupted refresh keeps what it resolved.
        fleet.save_lock(root)?;
    }
    println!("wrote {LOCK}");
    Ok(())
}

/// The newest version of the track's meta package in its suites, followed through its
/// dependencies to the package that holds the kernel: the first `linux-image-*` or
/// `linux-binary-*` dependency (not unsigned) whose installed size is that of a kernel (newer
/// Debian packages keep vmlinuz in `linux-binary-*`; `linux-image-*` became a small meta package).
/// The download in `fetch_new` then proves the package really holds a kernel image.
fn resolve(sh: &Shell, apt: &mut LazyApt, id: &str, track: &Track) -> Result<(String, String, String)> {
    let apt = apt.get()?;
    let mut best: Option<(String, String)> = None;
    for (version, suite) in apt.versions(sh, &track.meta)? {
        if track.suites.contains(&suite) && best.as_ref().is_none_or(|(v, _)| apt::newer(sh, &version, v)) {
            best = Some((version, suite));
        }
    }
    let Some((version, suite)) = best else {
        bail!("{id}: no {} in {}: is the mirror complete?", track.meta, track.suites.join(", "));
    };
    let mut queue = vec![track.meta.clone()];
    let mut seen = Vec::new();
    while let Some(package) = queue.pop() {
        if seen.contains(&package) {
            continue;
        }
        seen.push(package.clone());
        let fields = apt
            .show(sh, &package, &version)
            .with_context(|| format!("{id}: {package}={version} vanished from the lists"))?;
        let installed_kb: u64 = fields.get("Installed-Size").and_then(|s| s.parse().ok()).unwrap_or(0);
        if package != track.meta && installed_kb >= 4096 {
            return Ok((suite, package, version));
        }
        let deps = fields.get("Depends").cloned().unwrap_or_default();
        let mut next: Vec<String> = deps
            .split(',')
            .filter_map(|d| d.split('|').next())
            .filter_map(|d| d.split_whitespace().next())
            .filter(|p| {
                (p.starts_with("linux-image-") || p.starts_with("linux-binary-")) && !p.contains("unsigned")
            })
            .map(String::from)
            .collect();
        next.reverse();
        queue.extend(next);
    }
    bail!("{id}: no package under {}={version} looks like it holds a kernel image", track.meta)
}
