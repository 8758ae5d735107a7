//! `cargo xtask matrix`: build the suite, fetch the kernels, boot each with the suite as init,
//! collect every kernel's results into `matrix/results/<id>.toml`, and compile
//! `matrix/compat.toml` from all results files there (other kernels' columns are kept).

use crate::accel::{self, Choice};
use crate::deps::{self, Need};
use crate::images::{self, Cache, Image};
use crate::qemu::Accel;
use crate::runner::{self, Settings};
use crate::util::display_path;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use xshell::Shell;

pub const HOST_ID: &str = "host";

#[derive(Clone, Debug)]
pub struct Options {
    pub kernels: Vec<String>,
    pub accel: Choice,
    pub host: bool,
    pub mirror: Option<String>,
    pub timeout: Duration,
    pub cpus: u32,
    pub mem_mb: u32,
    /// The matrix directory: `results/` and `compat.toml` go here.
    pub out: PathBuf,
    /// Per-kernel logs go here, one directory per kernel id.
    pub logs: PathBuf,
    pub suite_args: Vec<String>,
}

impl Options {
    pub fn new(root: &Path) -> Options {
        Options {
            kernels: Vec::new(),
            accel: Choice::Auto,
            host: false,
            mirror: None,
            timeout: Duration::from_secs(300),
            cpus: 2,
            mem_mb: 1024,
            out: root.join("matrix"),
            logs: root.join("target/uffdc/runs"),
            suite_args: Vec::new(),
        }
    }
}

/// What the guests need, prepared once per invocation.
pub struct Prepared {
    pub suite: PathBuf,
    pub catalogue: matrix::Catalogue,
    pub initrd: PathBuf,
    pub version: String,
}

pub fn prepare(sh: &Shell, root: &Path, suite: Option<PathBuf>) -> Result<Prepared> {
    let suite = match suite {
        Some(s) => s,
        None => crate::suite_bin::build(sh, root)?,
    };
    let catalogue = crate::suite_bin::catalogue(sh, &suite)?;
    let binary =
        std::fs::read(&suite).with_context(|| format!("cannot read {}", suite.display()))?;
    let initrd = root.join("target/uffdc/initramfs.cpio");
    crate::util::write_atomic(&initrd, &crate::initramfs::for_suite(&binary))?;
    Ok(Prepared {
        suite,
        catalogue,
        initrd,
        version: crate::suite_bin::version(sh, root),
    })
}

pub fn run(sh: &Shell, root: &Path, opts: &Options) -> Result<()> {
    let kernels = images::load_kernels(root)?;
    let selected = kernels.select(&opts.kernels)?;
    let mut needs = vec![Need::Libclang];
    if !selected.is_empty() {
        needs.extend([Need::Qemu, Need::AptTools, Need::DebianKeyring]);
    }
    deps::ensure(sh, &needs)?;
    if opts.host && !deps::is_root() {
        eprintln!("note: the host column is best run as root: several probes need it and will report `error` otherwise");
    }
    let prepared = prepare(sh, root, None)?;
    let cache = Cache::new(root);
    let mut failed = Vec::new();
    let mut images = Vec::new();
    for (id, pin) in &selected {
        eprintln!("fetch   {id}: {} {}", pin.package, pin.version);
        match cache.fetch(sh, id, pin, &kernels, &|| {
            images::mirrors(opts.mirror.as_deref())
        }) {
            Ok(image) => {
                if image.userfaultfd == Some(false) {
                    eprintln!("note: {id} is built without CONFIG_USERFAULTFD: its cells will be `unsupported`");
                }
                images.push(image)
            }
            Err(e) => {
                eprintln!("error: {id}: {e:#}");
                failed.push(format!(
                    "{id}: could not fetch (its previous results, if any, are kept)"
                ));
            }
        }
    }
    let accel = match images.first() {
        None => Accel::Tcg,
        Some(first) => accel::choose(opts.accel, &cache.dir.join("accel.toml"), &mut || {
            probe_kvm(first, &prepared, opts)
        })?,
    };
    let settings = Settings {
        accel,
        cpus: opts.cpus,
        mem_mb: opts.mem_mb,
        timeout: opts.timeout,
        suite_args: opts.suite_args.clone(),
        suite_version: prepared.version.clone(),
    };
    let results_dir = opts.out.join("results");
    for image in &images {
        eprintln!("boot    {} ({}, {})", image.id, image.release, accel.name());
        let results = runner::run_guest(
            image,
            &prepared.initrd,
            &settings,
            &opts.logs.join(&image.id),
            &mut |_| {},
        )?;
        save_results(&results_dir, &image.id, &results, &mut failed)?;
    }
    if opts.host {
        eprintln!("host    running the suite on this machine's kernel");
        let results = runner::run_host(&prepared.suite, &settings, &opts.logs.join(HOST_ID))?;
        save_results(&results_dir, HOST_ID, &results, &mut failed)?;
    }
    let compat = compile(&opts.out, &prepared.catalogue)?;
    eprintln!(
        "matrix  {} ({} behaviours x {} kernels)",
        display_path(&opts.out.join("compat.toml")),
        compat.behaviours.len(),
        compat.kernels.len()
    );
    if !failed.is_empty() {
        bail!(
            "{} kernel(s) did not complete:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    Ok(())
}

fn save_results(
    dir: &Path,
    id: &str,
    results: &matrix::Results,
    failed: &mut Vec<String>,
) -> Result<()> {
    let path = dir.join(format!("{id}.toml"));
    matrix::model::save(&path, results)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("{}", runner::summary(id, results));
    if let Some(reason) = &results.kernel.reason {
        failed.push(format!("{id}: {reason}"));
    }
    Ok(())
}

/// A short boot under KVM that runs no behaviour: it works when the end record arrives.
fn probe_kvm(image: &Image, prepared: &Prepared, opts: &Options) -> Result<(), String> {
    let settings = Settings {
        accel: Accel::Kvm,
        cpus: 1,
        mem_mb: 512,
        timeout: Duration::from_secs(30),
        suite_args: vec!["--exact".into(), "no-behaviour-has-this-name".into()],
        suite_version: prepared.version.clone(),
    };
    match runner::run_guest(
        image,
        &prepared.initrd,
        &settings,
        &opts.logs.join("kvm-probe"),
        &mut |_| {},
    ) {
        Ok(r) if r.kernel.status == matrix::RunStatus::Complete => Ok(()),
        Ok(r) => Err(r.kernel.reason.unwrap_or_default()),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// Compiles `<out>/compat.toml` from every `<out>/results/*.toml` and the catalogue.
pub fn compile(out: &Path, catalogue: &matrix::Catalogue) -> Result<matrix::Compat> {
    let mut runs = BTreeMap::new();
    let dir = out.join("results");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    for file in files {
        let id = file
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let results: matrix::Results = matrix::model::load(&file)?;
        runs.insert(id, results);
    }
    let generated = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (compat, dropped) = matrix::compile::compile(catalogue, &runs, generated);
    for d in dropped {
        eprintln!("note: dropped a result for a behaviour this suite no longer has: {d}");
    }
    matrix::model::save(&out.join("compat.toml"), &compat)?;
    Ok(compat)
}
