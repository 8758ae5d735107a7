//! `cargo xtask matrix`: build the suite, fetch the kernels, boot each with the suite as init,
//! collect every kernel's results into `matrix/results/<id>.toml`, and compile
//! `matrix/compat.toml` from all results files there (other kernels' columns are kept).

use crate::accel::{self, Choice};
use crate::deps::{self, Need};
use crate::fleet::{sha256_file, Cache, Fleet, Image};
use crate::progress::{Progress, Stage};
use crate::qemu::Accel;
use crate::runner::{self, Settings};
use crate::util::display_path;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use xshell::Shell;

pub const HOST_ID: &str = "host";

#[derive(Clone, Debug)]
pub struct Options {
    pub kernels: Vec<String>,
    /// Local kernel images (`--kernel-image PATH[=ID]`); without an id the column is named by
    /// the kernel's `uname -r`.
    pub images: Vec<(PathBuf, Option<String>)>,
    pub accel: Choice,
    pub host: bool,
    pub mirror: Option<String>,
    pub timeout: Duration,
    pub cpus: u32,
    pub mem_mb: u32,
    /// Guests booted at once.
    pub jobs: usize,
    /// The QEMU binary.
    pub qemu: PathBuf,
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
            images: Vec::new(),
            accel: Choice::Auto,
            host: false,
            mirror: None,
            timeout: Duration::from_secs(300),
            cpus: 2,
            mem_mb: 1024,
            jobs: 2,
            qemu: PathBuf::from(crate::qemu::BINARY),
            out: root.join("matrix"),
            logs: root.join("target/uffdc/runs"),
            suite_args: Vec::new(),
        }
    }

    /// How guests run under these options, with the given accelerator.
    pub fn settings(&self, accel: Accel, prepared: &Prepared) -> Settings {
        Settings {
            qemu: self.qemu.clone(),
            accel,
            cpus: self.cpus,
            mem_mb: self.mem_mb,
            timeout: self.timeout,
            suite_args: self.suite_args.clone(),
            suite_version: prepared.version.clone(),
        }
    }

    /// The fleet kernels to run: the named ones, or all of them unless only local images were
    /// given.
    fn fleet_ids(&self, fleet: &Fleet) -> Vec<String> {
        if self.kernels.is_empty() && !self.images.is_empty() {
            Vec::new()
        } else if self.kernels.is_empty() {
            fleet.tracks.keys().cloned().collect()
        } else {
            self.kernels.clone()
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
    let binary = std::fs::read(&suite).with_context(|| format!("cannot read {}", suite.display()))?;
    let initrd = root.join("target/uffdc/initramfs.cpio");
    crate::util::write_atomic(&initrd, &crate::initramfs::for_suite(&binary))?;
    Ok(Prepared { suite, catalogue, initrd, version: crate::suite_bin::version(sh, root) })
}

pub fn run(sh: &Shell, root: &Path, opts: &Options) -> Result<()> {
    let fleet = Fleet::load(root)?;
    let ids = opts.fleet_ids(&fleet);
    fleet.select(&ids)?;
    let mut needs = vec![Need::Libclang];
    if !ids.is_empty() || !opts.images.is_empty() {
        needs.push(Need::Qemu);
    }
    if !ids.is_empty() {
        needs.extend([Need::AptTools, Need::DebianKeyring]);
    }
    deps::ensure(sh, &needs)?;
    if opts.host && !deps::is_root() {
        eprintln!("note: the host column is best run as root: several probes need it and will report `error` otherwise");
    }
    let prepared = prepare(sh, root, None)?;
    gather(sh, root, opts, &prepared, &mut |_, _| {})
}

/// Fetches, boots and records every selected kernel (`opts.jobs` guests at once), then compiles
/// the matrix. `on_boot` gets each kernel id and its QEMU pid as the guest starts. Each kernel's
/// results are written as soon as it finishes; a kernel that cannot be fetched keeps the results
/// it had.
pub fn gather(
    sh: &Shell,
    root: &Path,
    opts: &Options,
    prepared: &Prepared,
    on_boot: &mut (dyn FnMut(&str, u32) + Send),
) -> Result<()> {
    let fleet = Fleet::load(root)?;
    let selected = fleet.select(&opts.fleet_ids(&fleet))?;
    let cache = Cache::new(root);
    let mut apt = crate::images::lazy_apt(&fleet, &cache, opts.mirror.clone());
    let mut ids: Vec<String> = selected.iter().map(|(id, _)| id.clone()).collect();
    ids.extend(opts.images.iter().map(|(path, id)| id.clone().unwrap_or_else(|| local_label(path))));
    if opts.host {
        ids.push(HOST_ID.to_string());
    }
    let progress = Progress::start(&ids);
    let mut failed = Vec::new();
    let mut images = Vec::new();
    for (id, pin) in &selected {
        progress.set(id, Stage::Fetching);
        match cache.fetch(sh, id, pin, &mut apt) {
            Ok(image) => {
                if image.userfaultfd == Some(false) {
                    eprintln!(
                        "note: {id} is built without CONFIG_USERFAULTFD: its cells will be `unsupported`"
                    );
                }
                progress.set(id, Stage::Waiting);
                images.push(image)
            }
            Err(e) => {
                progress.set(id, Stage::Failed(format!("could not fetch: {e:#}")));
                failed.push(format!("{id}: could not fetch (its previous results, if any, are kept): {e:#}"));
            }
        }
    }
    for (path, id) in &opts.images {
        images.push(local_image(path, id.as_deref())?);
    }
    let accel = match images.first() {
        None => Accel::Tcg,
        Some(first) => accel::choose(opts.accel, &cache.dir.join("accel.toml"), &mut || {
            probe_kvm(first, prepared, opts)
        })?,
    };
    let settings = opts.settings(accel, prepared);
    let results_dir = opts.out.join("results");
    let failed = Mutex::new(failed);
    let queue = Mutex::new(images.into_iter());
    let on_boot = Mutex::new(on_boot);
    let error = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            scope.spawn(|| loop {
                let Some(image) = queue.lock().unwrap().next() else { break };
                let label = image.id.clone();
                progress.set(&label, Stage::Booting);
                let logs = opts.logs.join(&label);
                progress.watch(&label, logs.join("results.log"));
                let run = runner::run_guest(&image, &prepared.initrd, &settings, &logs, &mut |pid| {
                    (on_boot.lock().unwrap())(&label, pid)
                });
                match run {
                    Ok(results) => {
                        // A local image without an id is named by the kernel's own uname -r.
                        let id = if image.id.starts_with(LOCAL_PREFIX) && !results.kernel.release.is_empty() {
                            sanitize(&results.kernel.release)
                        } else {
                            image.id.clone()
                        };
                        progress.set(&label, Stage::Done(runner::brief(&results, &logs)));
                        if let Err(e) = save_results(&results_dir, &id, &results, &mut failed.lock().unwrap())
                        {
                            *error.lock().unwrap() = Some(e);
                        }
                    }
                    Err(e) => {
                        progress.set(&label, Stage::Failed(format!("{e:#}")));
                        *error.lock().unwrap() = Some(e);
                    }
                }
            });
        }
    });
    if opts.host {
        progress.set(HOST_ID, Stage::Running { done: 0, planned: prepared.catalogue.behaviours.len() });
        let logs = opts.logs.join(HOST_ID);
        progress.watch(HOST_ID, logs.join("results.log"));
        let results = runner::run_host(&prepared.suite, &settings, &logs)?;
        progress.set(HOST_ID, Stage::Done(runner::brief(&results, &logs)));
        save_results(&results_dir, HOST_ID, &results, &mut failed.lock().unwrap())?;
    }
    progress.finish();
    if let Some(e) = error.into_inner().unwrap() {
        return Err(e);
    }
    let compat = compile(&opts.out, &prepared.catalogue)?;
    eprintln!(
        "matrix  {} ({} behaviours x {} kernels), report in {}",
        display_path(&opts.out.join("compat.toml")),
        compat.behaviours.len(),
        compat.kernels.len(),
        display_path(&opts.out.join(crate::report::COMPATIBILITY)),
    );
    let failed = failed.into_inner().unwrap();
    if !failed.is_empty() {
        bail!("{} kernel(s) did not complete:\n  {}", failed.len(), failed.join("\n  "));
    }
    Ok(())
}

const LOCAL_PREFIX: &str = "local:";

fn local_label(path: &Path) -> String {
    format!("{LOCAL_PREFIX}{}", path.file_name().unwrap_or_default().to_string_lossy())
}

/// A file name made of a kernel release (`6.18.0-rc1+` stays readable; `/` does not survive).
fn sanitize(release: &str) -> String {
    release.chars().map(|c| if c.is_ascii_alphanumeric() || "._+-".contains(c) { c } else { '_' }).collect()
}

/// A kernel image given on the command line: it must be a bzImage (the boot protocol header's
/// "HdrS" magic), booted as it is.
fn local_image(path: &Path, id: Option<&str>) -> Result<Image> {
    let data =
        std::fs::read(path).with_context(|| format!("--kernel-image {}: cannot read it", path.display()))?;
    if data.get(0x202..0x206) != Some(b"HdrS") {
        bail!(
            "--kernel-image {}: not an x86 bzImage (no \"HdrS\" boot header at 0x202): pass arch/x86/boot/bzImage",
            path.display()
        );
    }
    let sha = sha256_file(path)?;
    Ok(Image {
        id: id.map_or_else(|| local_label(path), String::from),
        vmlinuz: path.to_path_buf(),
        release: String::new(),
        userfaultfd: None,
        source: format!("local {} (sha256 {sha})", path.display()),
    })
}

fn save_results(dir: &Path, id: &str, results: &matrix::Results, failed: &mut Vec<String>) -> Result<()> {
    let path = dir.join(format!("{id}.toml"));
    matrix::model::save(&path, results).with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(reason) = &results.kernel.reason {
        failed.push(format!("{id}: {reason}"));
    }
    Ok(())
}

/// A short boot under KVM that runs no behaviour: it works when the end record arrives.
pub fn probe_kvm(image: &Image, prepared: &Prepared, opts: &Options) -> Result<(), String> {
    let settings = Settings {
        cpus: 1,
        mem_mb: 512,
        timeout: Duration::from_secs(30),
        suite_args: vec!["--exact".into(), "no-behaviour-has-this-name".into()],
        ..opts.settings(Accel::Kvm, prepared)
    };
    match runner::run_guest(image, &prepared.initrd, &settings, &opts.logs.join("kvm-probe"), &mut |_| {}) {
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
        let id = file.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        let results: matrix::Results = matrix::model::load(&file)?;
        runs.insert(id, results);
    }
    let generated = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (compat, dropped) = matrix::compile::compile(catalogue, &runs, generated);
    for d in dropped {
        eprintln!("note: dropped a result for a behaviour this suite no longer has: {d}");
    }
    matrix::model::save(&out.join("compat.toml"), &compat)?;
    crate::report::write_markdown(out, &compat)?;
    Ok(compat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use matrix::{Compat, Verdict};

    #[test]
    fn a_malformed_results_file_is_named_with_its_line() {
        let out = scratch("malformed");
        std::fs::create_dir_all(out.join("results")).unwrap();
        std::fs::write(out.join("results/broken.toml"), "schema = 1\n[kernel]\nrelease = 5\n").unwrap();
        let catalogue = matrix::Catalogue { schema: matrix::model::SCHEMA, behaviours: BTreeMap::new() };
        let err = compile(&out, &catalogue).unwrap_err().to_string();
        assert!(err.contains("results/broken.toml:3:"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }

    /// A fresh directory under target/ for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = crate::util::project_root().join("target/uffdc/tests").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The static suite that `cargo xtask test` built, and what the guests need.
    fn prepared(sh: &Shell) -> Prepared {
        let suite = std::env::var_os("UFFDC_SUITE_BIN")
            .map(PathBuf::from)
            .expect("UFFDC_SUITE_BIN is unset: run the end-to-end tests through `cargo xtask test`");
        prepare(sh, &crate::util::project_root(), Some(suite)).unwrap()
    }

    fn options(name: &str, kernels: &[&str]) -> Options {
        let dir = scratch(name);
        let mut opts = Options::new(&crate::util::project_root());
        opts.kernels = kernels.iter().map(|k| k.to_string()).collect();
        opts.accel = Choice::Tcg;
        opts.out = dir.join("matrix");
        opts.logs = dir.join("logs");
        opts.timeout = Duration::from_secs(240);
        opts
    }

    fn load_compat(opts: &Options) -> Compat {
        matrix::model::load(&opts.out.join("compat.toml")).unwrap()
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn two_debian_kernels_and_the_host_fill_the_matrix() {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let mut opts = options("two-kernels", &["debian-5.10-cloud", "debian-6.1-cloud"]);
        opts.host = true;
        gather(&sh, &root, &opts, &prepared(&sh), &mut |_, _| {}).unwrap();
        let compat = load_compat(&opts);
        assert_eq!(compat.kernels.len(), 3);
        for (id, k) in &compat.kernels {
            assert_eq!(k.status, matrix::RunStatus::Complete, "{id}: {:?}", k.reason);
            assert_eq!(k.accel, if id == HOST_ID { "none" } else { "tcg" });
        }
        assert!(compat.kernels["debian-5.10-cloud"].release.starts_with("5.10."));
        assert!(compat.kernels["debian-6.1-cloud"].release.starts_with("6.1."));
        for (id, b) in &compat.behaviours {
            for (kernel, cell) in &b.cells {
                assert!(
                    matches!(cell.verdict, Verdict::Expected | Verdict::Unsupported),
                    "{id} on {kernel}: {cell:?}"
                );
            }
        }
        let populate = &compat.behaviours["populate.read_missing"].cells;
        assert_eq!(populate["debian-5.10-cloud"].observed, "EINVAL");
        assert_eq!(populate["debian-5.10-cloud"].verdict, Verdict::Unsupported);
        assert_eq!(populate["debian-6.1-cloud"].observed, "fault read");
        assert_eq!(populate[HOST_ID].observed, "fault read");
        assert_eq!(compat.behaviours["api.dev_userfaultfd"].cells["debian-5.10-cloud"].observed, "absent");
        assert_eq!(compat.behaviours["api.dev_userfaultfd"].cells["debian-6.1-cloud"].observed, "works");
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn a_killed_qemu_or_a_kernel_panic_loses_only_its_own_cells() {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let prepared = prepared(&sh);
        let mut opts = options("guest-failures", &["debian-5.10-cloud", "debian-6.1-cloud"]);

        // 1. QEMU of the second kernel is killed once its first result has arrived.
        let logs = opts.logs.clone();
        let err = gather(&sh, &root, &opts, &prepared, &mut |id, pid| {
            if id == "debian-6.1-cloud" {
                kill_after_first_result(logs.join(id).join("results.log"), pid);
            }
        })
        .unwrap_err();
        assert!(err.to_string().contains("did not complete"), "{err:#}");
        let compat = load_compat(&opts);
        assert_eq!(compat.kernels["debian-5.10-cloud"].status, matrix::RunStatus::Complete);
        let killed = &compat.kernels["debian-6.1-cloud"];
        assert_eq!(killed.status, matrix::RunStatus::Incomplete);
        assert!(killed.reason.as_deref().unwrap().contains("QEMU was killed by SIGKILL"), "{killed:?}");
        let cells: Vec<_> = compat.behaviours.values().map(|b| &b.cells["debian-6.1-cloud"]).collect();
        let kept = cells.iter().filter(|c| c.verdict != Verdict::Missing).count();
        assert!(kept >= 1 && kept < cells.len(), "{kept} of {} cells survived", cells.len());
        for c in cells.iter().filter(|c| c.verdict == Verdict::Missing) {
            assert!(c.reason.as_deref().unwrap().contains("QEMU was killed"), "{c:?}");
        }
        for b in compat.behaviours.values() {
            assert_ne!(b.cells["debian-5.10-cloud"].verdict, Verdict::Missing);
        }

        // 2. A later run of one kernel whose suite panics the kernel after three results merges
        //    into the same matrix: the other kernel's column stays as it was.
        opts.kernels = vec!["debian-6.1-cloud".into()];
        opts.suite_args = vec!["--inject-fault=panic-after=3".into(), "--test-threads=1".into()];
        assert!(gather(&sh, &root, &opts, &prepared, &mut |_, _| {}).is_err());
        let after = load_compat(&opts);
        assert_eq!(after.kernels["debian-5.10-cloud"], compat.kernels["debian-5.10-cloud"]);
        let panicked = &after.kernels["debian-6.1-cloud"];
        assert!(
            panicked.reason.as_deref().unwrap().starts_with("kernel panic: Attempted to kill init"),
            "{panicked:?}"
        );
        let real = after
            .behaviours
            .values()
            .filter(|b| b.cells["debian-6.1-cloud"].verdict != Verdict::Missing)
            .count();
        assert_eq!(real, 3);
        for (id, b) in &after.behaviours {
            assert_eq!(b.cells["debian-5.10-cloud"], compat.behaviours[id].cells["debian-5.10-cloud"]);
        }
        let console = root.join(panicked.console_log.as_deref().unwrap());
        assert!(std::fs::read_to_string(console).unwrap().contains("Kernel panic"));
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn a_guest_that_stops_making_progress_hits_the_hard_timeout() {
        let sh = Shell::new().unwrap();
        let mut opts = options("hung-guest", &["debian-6.1-cloud"]);
        opts.timeout = Duration::from_secs(30);
        opts.suite_args = vec!["--inject-fault=hang-after=1".into(), "--test-threads=1".into()];
        assert!(gather(&sh, &crate::util::project_root(), &opts, &prepared(&sh), &mut |_, _| {}).is_err());
        let k = &load_compat(&opts).kernels["debian-6.1-cloud"];
        assert!(k.reason.as_deref().unwrap().starts_with("hard timeout"), "{k:?}");
    }

    /// The cached image of a fleet kernel (fetched if need be).
    fn fleet_image(sh: &Shell, id: &str) -> Image {
        let root = crate::util::project_root();
        let fleet = Fleet::load(&root).unwrap();
        let cache = Cache::new(&root);
        let (_, pin) = fleet.select(&[id.to_string()]).unwrap().remove(0);
        cache.fetch(sh, id, &pin, &mut crate::images::lazy_apt(&fleet, &cache, None)).unwrap()
    }

    fn settings(prepared: &Prepared, args: &[&str], timeout: u64) -> Settings {
        Settings {
            timeout: Duration::from_secs(timeout),
            suite_args: args.iter().map(|a| a.to_string()).collect(),
            ..Options::new(&crate::util::project_root()).settings(Accel::Tcg, prepared)
        }
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn a_guest_that_never_starts_init_is_reported_with_the_kernel_panic() {
        let sh = Shell::new().unwrap();
        let prepared = prepared(&sh);
        let dir = scratch("no-init");
        let initrd = dir.join("broken.cpio");
        std::fs::write(&initrd, crate::initramfs::for_suite(b"#! this is not an executable")).unwrap();
        let image = fleet_image(&sh, "debian-6.1-cloud");
        let r =
            runner::run_guest(&image, &initrd, &settings(&prepared, &[], 60), &dir.join("logs"), &mut |_| {})
                .unwrap();
        assert_eq!(r.kernel.status, matrix::RunStatus::Incomplete);
        let reason = r.kernel.reason.unwrap();
        assert!(reason.starts_with("kernel panic: No working init found"), "{reason}");
        assert!(r.cells.is_empty());
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn a_results_stream_cut_mid_record_keeps_the_whole_records() {
        let sh = Shell::new().unwrap();
        let prepared = prepared(&sh);
        let dir = scratch("truncated");
        let image = fleet_image(&sh, "debian-6.1-cloud");
        let args = ["--inject-fault=truncate-after=2", "--test-threads=1"];
        let r = runner::run_guest(
            &image,
            &prepared.initrd,
            &settings(&prepared, &args, 120),
            &dir.join("logs"),
            &mut |_| {},
        )
        .unwrap();
        let reason = r.kernel.reason.clone().unwrap();
        assert!(reason.starts_with("the results stream was cut off mid-record (after 2 of 54"), "{reason}");
        assert_eq!(r.cells.values().filter(|c| c.verdict != Verdict::Missing).count(), 2);
        assert_eq!(r.cells.len(), 54, "the planned behaviours without a result are missing");
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn missing_qemu_is_a_clear_error_and_loses_nothing() {
        let sh = Shell::new().unwrap();
        let mut opts = options("no-qemu", &["debian-6.1-cloud"]);
        opts.qemu = PathBuf::from("/nonexistent/qemu-system-x86_64");
        let before = opts.out.join("results/debian-6.1-cloud.toml");
        std::fs::create_dir_all(before.parent().unwrap()).unwrap();
        std::fs::write(&before, "kept").unwrap();
        let err =
            gather(&sh, &crate::util::project_root(), &opts, &prepared(&sh), &mut |_, _| {}).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("/nonexistent/qemu-system-x86_64 not found: install QEMU"), "{msg}");
        assert_eq!(std::fs::read_to_string(&before).unwrap(), "kept", "earlier results must survive");
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn a_local_kernel_image_is_named_by_its_release() {
        let sh = Shell::new().unwrap();
        let image = fleet_image(&sh, "debian-6.1-cloud");
        let mut opts = options("local-image", &[]);
        opts.images = vec![(image.vmlinuz.clone(), None)];
        opts.suite_args = vec!["--exact".into(), "api::features".into()];
        gather(&sh, &crate::util::project_root(), &opts, &prepared(&sh), &mut |_, _| {}).unwrap();
        let results: matrix::Results =
            matrix::model::load(&opts.out.join(format!("results/{}.toml", image.release))).unwrap();
        assert!(results.kernel.source.starts_with("local "), "{:?}", results.kernel.source);
        assert_eq!(results.cells["api.features"].verdict, Verdict::Expected);

        let not_a_kernel = scratch("local-image-bad").join("vmlinuz");
        std::fs::write(&not_a_kernel, vec![0u8; 4096]).unwrap();
        let err = local_image(&not_a_kernel, None).unwrap_err().to_string();
        assert!(err.contains("not an x86 bzImage"), "{err}");
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn two_runs_fetching_at_once_share_one_verified_download() {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let fleet = Fleet::load(&root).unwrap();
        let real = Cache::new(&root);
        let (id, pin) = fleet.select(&["debian-7.2-cloud".into()]).unwrap().remove(0);
        let dir = scratch("shared-cache");
        let fetched: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let sh = Shell::new().unwrap();
                        let cache = Cache { dir: dir.clone() };
                        // The private apt (lists, .debs) is the real one; the image cache is fresh.
                        let mut apt = crate::images::lazy_apt(&fleet, &real, None);
                        cache.fetch(&sh, &id, &pin, &mut apt).map(|i| i.vmlinuz)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
        });
        assert_eq!(fetched[0], fetched[1]);
        assert!(Cache { dir: dir.clone() }.cached(&id, &pin).is_some(), "the shared entry verifies");

        // A download that does not match its pin is refused, named, and not cached.
        let wrong = crate::fleet::Pin { sha256: "0".repeat(64), ..pin.clone() };
        let other = scratch("wrong-sha");
        let err = Cache { dir: other.clone() }
            .fetch(&sh, &id, &wrong, &mut crate::images::lazy_apt(&fleet, &real, None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("has sha256") && err.contains("corrupt"), "{err}");
        assert!(Cache { dir: other.clone() }.cached(&id, &wrong).is_none());

        // A pin the archive no longer serves says how to move on.
        let gone = crate::fleet::Pin { version: "0.0.1-vanished".into(), ..pin.clone() };
        let err = Cache { dir: other }
            .fetch(&sh, &id, &gone, &mut crate::images::lazy_apt(&fleet, &real, None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no longer serves") && err.contains("cargo xtask images refresh"), "{err}");
        let _ = sh;
    }

    /// Kills `pid` from another thread once `results` holds a complete cell record.
    fn kill_after_first_result(results: PathBuf, pid: u32) {
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(200) {
                // A whole cell record (a line being written does not decode yet).
                let text = std::fs::read_to_string(&results).unwrap_or_default();
                if !matrix::stream::decode(&text).cells.is_empty() {
                    // SAFETY: QEMU is our child, still running: its waiter has not reaped it.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
    }
}
