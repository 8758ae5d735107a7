//! `images refresh`: every pin re-resolved against the archive (the kernel tracks to their newest
//! point release, the toolchain, the Go toolchain, the builds' and the kernels' source packages),
//! the locks rewritten. `images refresh` and `ci plan --refresh` stand on it.

use crate::inputs::apt::{self, LazyApt};
use crate::inputs::fleet::{Cache, Fleet, KernelId, Track, LOCK};
use anyhow::{bail, Context, Result};
use model::arch::Arch;
use std::collections::BTreeMap;
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
/// and rewrites the locks, fetching with `apt`, the command's one private apt (`Fleet::apt`, with
/// its `--mirror`).
pub fn pins(sh: &Shell, root: &Path, ids: Vec<String>, apt: &mut LazyApt) -> Result<()> {
    let mut fleet = Fleet::load(root)?;
    let cache = Cache::new(root);
    let fleet = &mut fleet;
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
    let ids: Vec<KernelId> =
        if ids.is_empty() { fleet.tracks.keys().cloned().collect() } else { ids.to_vec() };
    // A private apt per architecture (`APT::Architecture`), each updated once.
    let mut apts: BTreeMap<Arch, LazyApt> = BTreeMap::new();
    for id in &ids {
        let Some(track) = fleet.tracks.get(id).cloned() else {
            bail!("unknown track {id:?} (see images/kernels.toml)");
        };
        let apt = match apts.entry(track.arch) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let mut own = apt.for_arch(track.arch);
                own.get()?.update(sh, true)?;
                e.insert(own)
            }
        };
        // The newest version the archive lists, else (a mirror that lists a version it does not
        // serve: seen here with bullseye-security's arm64 kernels) the next newer one that downloads.
        let mut pinned = None;
        let mut failures = Vec::new();
        for (version, suite) in candidates(sh, apt, id, &track)? {
            let package = kernel_package(sh, apt, id, &track, &version)?;
            match cache.fetch_new(sh, id, &suite, &package, &version, apt) {
                Ok((_, pin)) => {
                    pinned = Some((package, version, pin));
                    break;
                }
                Err(e) => {
                    eprintln!("note: {id}: {package} {version} ({suite}) could not be fetched ({e:#}); trying the next older version");
                    failures.push(format!("{package} {version}: {e:#}"));
                }
            }
        }
        let Some((package, version, pin)) = pinned else {
            bail!(
                "{id}: no version of {} in {} could be fetched: {}",
                track.meta,
                track.suites.join(", "),
                failures.join("; ")
            );
        };
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

/// The versions of the track's meta package in its suites, newest first.
fn candidates(sh: &Shell, apt: &mut LazyApt, id: &str, track: &Track) -> Result<Vec<(String, String)>> {
    let apt = apt.get()?;
    let mut found: Vec<(String, String)> = apt
        .versions(sh, &track.meta)?
        .into_iter()
        .filter(|(_, suite)| track.suites.contains(suite))
        .collect();
    if found.is_empty() {
        bail!("{id}: no {} in {}: is the mirror complete?", track.meta, track.suites.join(", "));
    }
    // An insertion sort by dpkg's order (a handful of versions).
    let mut sorted: Vec<(String, String)> = Vec::new();
    for candidate in found.drain(..) {
        let at = sorted.iter().position(|(v, _)| apt::newer(sh, &candidate.0, v)).unwrap_or(sorted.len());
        sorted.insert(at, candidate);
    }
    Ok(sorted)
}

/// The meta package at `version` followed through its dependencies to the package that holds the
/// kernel: the first `linux-image-*` or `linux-binary-*` dependency (not unsigned) whose installed
/// size is that of a kernel (newer Debian packages keep vmlinuz in `linux-binary-*`;
/// `linux-image-*` became a small meta package). The download in `fetch_new` then proves the
/// package really holds a kernel image.
fn kernel_package(sh: &Shell, apt: &mut LazyApt, id: &str, track: &Track, version: &str) -> Result<String> {
    let apt = apt.get()?;
    let mut queue = vec![track.meta.clone()];
    let mut seen = Vec::new();
    while let Some(package) = queue.pop() {
        if seen.contains(&package) {
            continue;
        }
        seen.push(package.clone());
        let fields = apt
            .show(sh, &package, version)
            .with_context(|| format!("{id}: {package}={version} vanished from the lists"))?;
        let installed_kb: u64 = fields.get("Installed-Size").and_then(|s| s.parse().ok()).unwrap_or(0);
        if package != track.meta && installed_kb >= 4096 {
            return Ok(package);
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
