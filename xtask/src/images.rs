//! `cargo xtask images refresh | fetch | list`: the fleet's pins and cache.

use crate::apt::{self, LazyApt};
use crate::fleet::{Cache, Fleet, Track, LOCK};
use anyhow::{bail, Context, Result};
use std::path::Path;
use xshell::Shell;

pub enum Command {
    /// Re-resolve every track (or the named ones) to the newest point release and rewrite the lock.
    Refresh(Vec<String>),
    /// Fill the cache with every pinned image (or the named ones).
    Fetch(Vec<String>),
    /// Show tracks, pins and cache state.
    List,
}

pub fn run(sh: &Shell, root: &Path, command: Command, mirror: Option<String>) -> Result<()> {
    let mut fleet = Fleet::load(root)?;
    let cache = Cache::new(root);
    let mut apt = fleet.apt(&cache, mirror.clone());
    // `go` names the Go toolchain (images/go.lock) among the kernel tracks.
    let go = |ids: &[String]| ids.is_empty() || ids.iter().any(|i| i == "go");
    let kernels = |ids: &[String]| -> Option<Vec<String>> {
        let rest: Vec<String> = ids.iter().filter(|i| *i != "go").cloned().collect();
        (ids.is_empty() || !rest.is_empty()).then_some(rest)
    };
    match command {
        Command::Refresh(ids) => {
            if let Some(k) = kernels(&ids) {
                refresh(sh, root, &mut fleet, &cache, &mut apt, &k)?;
            }
            if go(&ids) {
                crate::golang::refresh(sh, root, &mut apt)?;
            }
            Ok(())
        }
        Command::Fetch(ids) => {
            if go(&ids) {
                crate::golang::fetch(sh, root, mirror.clone())?;
            }
            let Some(ids) = kernels(&ids) else { return Ok(()) };
            for (id, pin) in fleet.select(&ids)? {
                let image = cache.fetch(sh, &id, &pin, &mut apt)?;
                println!(
                    "{id:<20} {:<28} cached: {}",
                    image.release,
                    crate::util::display_path(&image.vmlinuz)
                );
            }
            Ok(())
        }
        Command::List => {
            println!(
                "{:<20} {:<22} {:<46} {:<22} {:<28} cache",
                "track", "suites", "package", "version", "release"
            );
            for (id, track) in &fleet.tracks {
                let pin = fleet.lock.kernels.get(id);
                let cached = pin.map(|p| cache.cached(id, p).is_some());
                println!(
                    "{id:<20} {:<22} {:<46} {:<22} {:<28} {}",
                    track.suites.join(","),
                    pin.map_or("(not pinned)", |p| p.package.as_str()),
                    pin.map_or("-", |p| p.version.as_str()),
                    pin.map_or("-", |p| p.release.as_str()),
                    match cached {
                        Some(true) => "verified",
                        Some(false) => "not fetched",
                        None => "-",
                    }
                );
            }
            crate::golang::list(root);
            Ok(())
        }
    }
}

fn refresh(
    sh: &Shell,
    root: &Path,
    fleet: &mut Fleet,
    cache: &Cache,
    apt: &mut LazyApt,
    ids: &[String],
) -> Result<()> {
    apt.get()?.update(sh, true)?;
    let ids: Vec<String> = if ids.is_empty() { fleet.tracks.keys().cloned().collect() } else { ids.to_vec() };
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
