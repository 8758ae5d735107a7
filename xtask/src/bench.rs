//! `cargo xtask bench [--kernel ID]... [--jobs N]`: where the time of a matrix run goes, per
//! kernel: fetching (cold, from the mirror, and from the verified cache), the bare floor (the same
//! kernel and initramfs with an init that powers off at once), boot to init and the suite in a real
//! run, and the whole run; then the whole matrix of those kernels with `--jobs` guests at once.
//! Prints a table and writes `target/bench.toml`. Targets are checked here, not in tests.

use crate::fleet::{Cache, Fleet};
use crate::matrix::{self, Options, Prepared};
use crate::runner::{self, Settings};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use xshell::Shell;

#[derive(Serialize)]
struct KernelBench {
    release: String,
    accel: String,
    fetch_cold_s: f64,
    fetch_cached_s: f64,
    bare_boot_s: f64,
    init_s: f64,
    suite_s: f64,
    total_s: f64,
    /// suite_s / bare_boot_s: the target is at most 1.
    suite_over_bare: f64,
}

#[derive(Serialize)]
struct Bench {
    date: String,
    machine: String,
    cpus: usize,
    jobs: usize,
    kernels: BTreeMap<String, KernelBench>,
    /// The matrix of all these kernels, as `cargo xtask matrix` runs it with a warm cache.
    matrix_s: f64,
}

pub fn run(sh: &Shell, root: &Path, kernels: Vec<String>, jobs: usize, mirror: Option<String>) -> Result<()> {
    crate::deps::ensure(
        sh,
        &[
            crate::deps::Need::Libclang,
            crate::deps::Need::Qemu,
            crate::deps::Need::AptTools,
            crate::deps::Need::DebianKeyring,
        ],
    )?;
    let fleet = Fleet::load(root)?;
    let selected = fleet.select(&kernels)?;
    let prepared = matrix::prepare(sh, root, None)?;
    let cache = Cache::new(root);
    let mut apt = crate::images::lazy_apt(&fleet, &cache, mirror);
    let dir = root.join("target/uffdc/bench");
    let mut opts = Options::new(root);
    opts.kernels = selected.iter().map(|(id, _)| id.clone()).collect();
    opts.out = dir.join("matrix");
    opts.logs = dir.join("logs");
    opts.jobs = jobs;
    let mut out = BTreeMap::new();
    let mut accel = None;
    for (id, pin) in &selected {
        // Cold: drop the cached image and the .deb, fetch from the mirror.
        let _ = std::fs::remove_dir_all(cache.dir.join("images").join(id));
        let deb_prefix = format!("{}_", pin.package);
        for e in std::fs::read_dir(cache.dir.join("apt/debs")).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(&deb_prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let t = Instant::now();
        let image = cache.fetch(sh, id, pin, &mut apt)?;
        let fetch_cold = t.elapsed();
        let t = Instant::now();
        cache.fetch(sh, id, pin, &mut apt)?;
        let fetch_cached = t.elapsed();
        let accel = match accel {
            Some(a) => a,
            None => {
                *accel.insert(crate::accel::choose(opts.accel, &cache.dir.join("accel.toml"), &mut || {
                    matrix::probe_kvm(&image, &prepared, &opts)
                })?)
            }
        };
        let settings = |args: Vec<String>| Settings { suite_args: args, ..opts.settings(accel, &prepared) };
        let bare = runner::run_guest(
            &image,
            &prepared.initrd,
            &settings(vec!["--power-off".into()]),
            &dir.join("bare").join(id),
            &mut |_| {},
        )?;
        let real = runner::run_guest(
            &image,
            &prepared.initrd,
            &settings(Vec::new()),
            &dir.join("real").join(id),
            &mut |_| {},
        )?;
        let secs = |ms: Option<u64>| ms.unwrap_or(0) as f64 / 1000.0;
        let (bare_s, suite_s) = (secs(bare.kernel.duration_ms), secs(real.kernel.suite_ms));
        out.insert(
            id.clone(),
            KernelBench {
                release: real.kernel.release.clone(),
                accel: accel.name().to_string(),
                fetch_cold_s: fetch_cold.as_secs_f64(),
                fetch_cached_s: fetch_cached.as_secs_f64(),
                bare_boot_s: bare_s,
                init_s: secs(real.kernel.init_ms),
                suite_s,
                total_s: secs(real.kernel.duration_ms),
                suite_over_bare: if bare_s > 0.0 { suite_s / bare_s } else { f64::NAN },
            },
        );
    }
    let t = Instant::now();
    let whole = matrix::gather(sh, root, &opts, &prepared, &mut |_, _| {});
    let matrix_s = t.elapsed().as_secs_f64();
    if let Err(e) = whole {
        eprintln!("bench: the matrix run did not complete: {e:#}");
    }
    let bench = Bench {
        date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        machine: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        jobs,
        kernels: out,
        matrix_s,
    };
    print_table(&bench, &prepared);
    crate::util::write_atomic(&root.join("target/bench.toml"), toml::to_string(&bench)?.as_bytes())?;
    println!("wrote target/bench.toml");
    Ok(())
}

fn print_table(b: &Bench, _: &Prepared) {
    println!(
        "{:<20} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}  suite<=bare",
        "kernel", "fetch", "cached", "bare", "init", "suite", "total", "s/b"
    );
    for (id, k) in &b.kernels {
        println!(
            "{id:<20} {:>6.1} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>6.2}  {}",
            k.fetch_cold_s,
            k.fetch_cached_s,
            k.bare_boot_s,
            k.init_s,
            k.suite_s,
            k.total_s,
            k.suite_over_bare,
            if k.suite_over_bare <= 1.0 { "met" } else { "MISSED" }
        );
    }
    println!(
        "matrix of {} kernels, {} at once, {} cpus ({}): {:.1}s  (target < 60s: {})",
        b.kernels.len(),
        b.jobs,
        b.cpus,
        b.kernels.values().next().map_or("-", |k| k.accel.as_str()),
        b.matrix_s,
        if b.matrix_s < 60.0 { "met" } else { "MISSED" }
    );
}
