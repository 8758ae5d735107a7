//! `cargo xtask images refresh | fetch | build | list`: the fleet's pins and cache, and the
//! kernels built from source (`builds.rs`) with their toolchain (`buildroot.rs`).

use crate::inputs::fleet::{Cache, Fleet, KernelId};
use crate::inputs::refresh::{CRIU, GO, TOOLCHAIN};
use anyhow::{bail, Result};
use std::path::Path;
use xshell::Shell;

pub enum Command {
    /// Re-resolve every track (or the named ones) to the newest point release and rewrite the lock.
    Refresh(Vec<String>),
    /// Fill the cache with every pinned image (or the named ones).
    Fetch(Vec<String>),
    /// Build every build track (or the named ones), or find it in the cache.
    Build(Vec<String>),
    /// Show tracks, pins and cache state.
    List,
}

impl Command {
    /// The command from `cargo xtask images VERB [ID]...`.
    pub fn parse(verb: &str, ids: Vec<String>) -> Result<Command> {
        Ok(match verb {
            "refresh" => Command::Refresh(ids),
            "fetch" => Command::Fetch(ids),
            "build" => Command::Build(ids),
            "list" if ids.is_empty() => Command::List,
            other => {
                bail!(
                    "cargo xtask images takes refresh, fetch, build or list (and list no ids), not {other:?}"
                )
            }
        })
    }
}

/// `binary_cache`: a build may be fetched from the binary cache (`--no-binary-cache`: never).
pub fn run(
    sh: &Shell,
    root: &Path,
    command: Command,
    mirror: Option<String>,
    binary_cache: bool,
) -> Result<()> {
    let fleet = Fleet::load(root)?;
    let cache = Cache::new(root);
    // The one private apt every input of this command is fetched with.
    let mut apt = fleet.apt(&cache, mirror);
    if !binary_cache {
        apt.binary_cache = None;
    }
    match command {
        Command::Refresh(ids) => crate::inputs::refresh::pins(sh, root, ids, &mut apt),
        Command::Build(ids) => {
            let ids: Vec<KernelId> = ids.into_iter().map(KernelId::from).collect();
            crate::inputs::builds::run(sh, root, &fleet, &mut apt, &ids)
        }
        Command::Fetch(ids) => {
            if ids.is_empty() || ids.iter().any(|i| i == GO) {
                crate::inputs::golang::fetch(sh, root, &mut apt)?;
            }
            if ids.is_empty() || ids.iter().any(|i| i == CRIU) {
                for &arch in crate::inputs::criu::ARCHES {
                    let files = crate::inputs::criu::files(sh, root, &mut apt, arch)?;
                    let size: usize = files.iter().map(|(_, d)| d.len()).sum();
                    println!(
                        "{CRIU:<20} {arch}: {} files, {} KiB in the initramfs",
                        files.len(),
                        size / 1024
                    );
                }
            }
            if !ids.is_empty() && ids.iter().all(|i| i == GO || i == CRIU) {
                return Ok(());
            }
            let ids: Vec<KernelId> =
                ids.into_iter().filter(|i| i != GO && i != CRIU).map(KernelId::from).collect();
            for (id, pin) in fleet.partition(&ids)?.0 {
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
                "{:<24} {:<22} {:<46} {:<22} {:<28} cache",
                "track", "suites", "package", "version", "release"
            );
            for (id, track) in &fleet.tracks {
                let pin = fleet.lock.kernels.get(id);
                let cached = pin.map(|p| cache.cached(id, p).is_some());
                println!(
                    "{id:<24} {:<22} {:<46} {:<22} {:<28} {}",
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
            for (id, build) in &fleet.builds {
                let pin = fleet.lock.sources.get(&build.source);
                let differs: Vec<String> = build.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!(
                    "{id:<20} {:<22} {:<46} {:<22} {}",
                    build.suites.join(","),
                    build.source,
                    pin.map_or("(not pinned)", |p| p.version.as_str()),
                    if differs.is_empty() { "base configuration".to_string() } else { differs.join(" ") }
                );
            }
            match crate::inputs::buildroot::load(root) {
                Ok(lock) => println!(
                    "{TOOLCHAIN:<20} {:<22} {} packages (images/toolchain.lock)",
                    crate::inputs::buildroot::RELEASE,
                    lock.packages.len()
                ),
                Err(e) => println!("{TOOLCHAIN:<20} {e:#}"),
            }
            crate::inputs::golang::list(root);
            crate::inputs::criu::list(root);
            Ok(())
        }
    }
}
