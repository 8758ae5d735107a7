//! The run pipeline the tasks stand on: prepare the suite and its initramfs once; then every
//! column goes its own way, on a thread of its own, as soon as its own inputs are ready: its
//! kernel fetched (a few downloads at once) or built (one build at a time), its own selftests
//! built, its guest booted (the first guest ready chooses the accelerator), its results written;
//! the cores are shared between guests and the build by the rule in `schedule.rs`. Then the host,
//! and the matrix compiled. What happens is reported as typed [`RunEvent`]s: the progress display
//! and the tests consume the same events.

use crate::boot::accel::Choice;
use crate::boot::qemu::Accel;
use crate::boot::qemu::Settings;
use crate::boot::runner;
use crate::inputs::apt::LazyApt;
use crate::inputs::fleet::{Cache, Fleet, Image, KernelId};
use crate::util::sha256_file;
use anyhow::{bail, Context, Result};
use model::arch::Arch;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use xshell::Shell;

mod columns;

use columns::{run_columns, Real, Source};

pub const HOST_ID: &str = "host";

/// What a matrix run is asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    pub kernels: Vec<KernelId>,
    /// Local kernel images (`--kernel-image PATH[=ID]`, each with its `--config FILE`); without
    /// an id the column is named by the kernel's `uname -r`.
    pub images: Vec<(PathBuf, Option<String>, Option<PathBuf>)>,
    pub accel: Choice,
    pub host: bool,
    /// Put the host's column into `out` (`--publish-host`); else it stays with its logs.
    pub publish_host: bool,
    /// Guests booted at once.
    pub jobs: usize,
    /// How each guest runs (its accelerator is chosen when the run starts).
    pub run: Settings,
    /// The matrix directory: `results/` and `compat.toml` go here.
    pub out: PathBuf,
    /// Per-kernel logs go here, one directory per kernel id.
    pub logs: PathBuf,
    /// Run each kernel's own userfaultfd selftests after the suite (`cargo xtask matrix` does;
    /// the end-to-end tests of other things do not).
    pub selftests: bool,
    /// Fetch built kernels and selftests from the binary cache before compiling them
    /// (`--no-binary-cache`: never).
    pub binary_cache: bool,
    /// When the command started (the summary's time to the first cell counts from it).
    pub started: std::time::Instant,
}

impl Options {
    /// `--accel tcg-mt` only with a QEMU measured to run it safely.
    pub fn check_tcg_mt(&self) -> Result<()> {
        if self.accel == Choice::TcgMulti {
            let version = crate::boot::qemu::version(&self.run.qemu);
            if !crate::boot::qemu::multi_threaded_tcg_is_safe(&version) {
                bail!(
                    "--accel tcg-mt needs QEMU 10 or later (QEMU 7.2 with a host thread per guest CPU kills guests early in boot on 'Oops: int3'), and {} is {}: use --accel tcg, or a newer QEMU with --qemu",
                    self.run.qemu.display(),
                    if version.is_empty() { "not a QEMU that answers --version".to_string() } else { version }
                );
            }
        }
        Ok(())
    }

    pub fn new(root: &Path) -> Options {
        Options {
            kernels: Vec::new(),
            images: Vec::new(),
            accel: Choice::Auto,
            host: false,
            publish_host: false,
            jobs: 2,
            run: Settings::default(),
            out: root.join("matrix"),
            logs: root.join("target/uffdc/runs"),
            selftests: false,
            binary_cache: true,
            started: std::time::Instant::now(),
        }
    }

    /// Where each kernel's results file goes (`<out>/results/<id>.toml`).
    pub fn results_dir(&self) -> PathBuf {
        self.out.join("results")
    }

    /// The fleet kernels to run (tracks and builds): the named ones, or all of them unless only
    /// local images were given.
    pub fn fleet_ids(&self, fleet: &Fleet) -> Vec<KernelId> {
        if self.kernels.is_empty() && !self.images.is_empty() {
            Vec::new()
        } else if self.kernels.is_empty() {
            fleet.ids()
        } else {
            self.kernels.clone()
        }
    }
}

/// What the guests need, prepared once per invocation: this machine's architecture before any
/// column, every other one when its first column needs it (an x86-64 column boots while the
/// arm64 suite still compiles).
pub struct Prepared {
    pub suite: PathBuf,
    pub catalogue: model::Catalogue,
    /// The initramfs with the suite alone (for a kernel whose configuration is not known).
    pub initrd: PathBuf,
    /// This machine's suite, Go workload (`uffdc-go`, placed beside the suite binary for a host
    /// run too) and CRIU (every release's, with what it loads: `inputs/criu.rs`; under `criu/`
    /// in every initramfs, and beside the suite binary for a host run).
    native: ArchFiles,
    root: PathBuf,
    /// Each other architecture a column runs on: its files, made once, by the first column of it
    /// that asks ([`Prepared::arch_files`]); an error is that architecture's columns' failure.
    other: BTreeMap<Arch, std::sync::OnceLock<Result<ArchFiles, String>>>,
    /// The run's private apt (the task made it from its `--mirror`): every step fetches with a
    /// clone of it (`Prepared::apt`), so the mirror is decided once.
    apt: LazyApt,
}

/// An architecture's suite, Go workload and CRIU tree, as packed into its guests.
struct ArchFiles {
    binary: Vec<u8>,
    go_binary: Vec<u8>,
    criu: Vec<(String, Vec<u8>)>,
}

impl Prepared {
    /// The initramfs for `image`: the suite, and the kernel's configuration where it is known
    /// (the guest's suite grades expectations that depend on it).
    pub fn initrd_for(&self, image: &Image) -> Result<PathBuf> {
        self.initrd_with(image, None)
    }

    /// The same, with the kernel's own selftests (run after the suite) when given.
    pub fn initrd_with(
        &self,
        image: &Image,
        selftests: Option<&crate::inputs::selftests::Selftests>,
    ) -> Result<PathBuf> {
        if image.arch == Arch::native() && image.config.is_none() && selftests.is_none() {
            return Ok(self.initrd.clone());
        }
        let files = self.arch_files(image.arch).map_err(|e| anyhow::anyhow!("{}: {e}", image.id))?;
        let (binary, go_binary) = (&files.binary, &files.go_binary);
        let config = match &image.config {
            Some((config, source)) => Some((
                source.as_str(),
                std::fs::read(config).with_context(|| format!("cannot read {}", config.display()))?,
            )),
            None => None,
        };
        let names: Vec<String> = selftests
            .map(|s| {
                s.programs
                    .iter()
                    .map(|(p, _)| crate::inputs::selftests::path_in_guest(p).display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let mut programs: Vec<(&str, &[u8])> = vec![(crate::inputs::golang::NAME, go_binary.as_slice())];
        // The CRIU of the guest's architecture, and the modules of its kernel's package.
        let modules = crate::inputs::criu::modules(&self.root, &image.id, &mut self.apt())?;
        let criu = files.criu.as_slice();
        programs.extend(criu.iter().map(|(n, d)| (n.as_str(), d.as_slice())));
        programs.extend(modules.iter().map(|(n, d)| (n.as_str(), d.as_slice())));
        if let Some(s) = selftests {
            programs
                .extend(names.iter().zip(&s.programs).map(|(n, (_, data))| (n.as_str(), data.as_slice())));
        }
        let path = self.initrd.with_file_name(format!("initramfs-{}.cpio", sanitize(&image.id)));
        let archive = crate::boot::initramfs::for_suite(
            binary,
            &programs,
            config.as_ref().map(|(s, t)| (*s, t.as_slice())),
        );
        crate::util::write_atomic(&path, &archive)?;
        Ok(path)
    }
}

/// The suite (the given build, else built), the Go workload and CRIU for this machine, and a
/// place for each other architecture of `arches` (made when its first column asks; the catalogue
/// comes from this machine's build). CRIU's packages download while the suite compiles. `apt` is
/// the run's one private apt (`Fleet::apt`, with the task's `--mirror`): the Go toolchain, CRIU,
/// and then every column's kernel, build and selftests are fetched with it.
pub fn prepare(
    sh: &Shell,
    root: &Path,
    suite: Option<PathBuf>,
    arches: &[Arch],
    mut apt: LazyApt,
) -> Result<Prepared> {
    let mut criu_apt = apt.clone();
    let (suite, criu) = std::thread::scope(|s| -> Result<_> {
        let criu =
            s.spawn(move || crate::inputs::criu::files(&Shell::new()?, root, &mut criu_apt, Arch::native()));
        let suite = match suite {
            Some(s) => s,
            None => crate::boot::suite_bin::build(sh, root)?,
        };
        let criu = criu.join().map_err(|_| anyhow::anyhow!("preparing CRIU panicked"))??;
        Ok((suite, criu))
    })?;
    // CRIU's releases are among the run's suites, as its thread added them to its handle.
    for release in crate::inputs::criu::RELEASES {
        apt.add_suite(release);
    }
    let catalogue = crate::boot::suite_bin::catalogue(sh, &suite)?;
    let binary = std::fs::read(&suite).with_context(|| format!("cannot read {}", suite.display()))?;
    let go = crate::inputs::golang::workload(sh, root, &mut apt)?;
    let go_binary = std::fs::read(&go.path).with_context(|| format!("cannot read {}", go.path.display()))?;
    eprintln!("go      {} ({})", go.version, crate::util::display_path(&go.path));
    // A host run finds the workload where a guest does: beside the suite.
    if let Some(dir) = suite.parent() {
        let beside = dir.join(crate::inputs::golang::NAME);
        if std::fs::read(&beside).ok().as_deref() != Some(&go_binary[..]) {
            crate::util::write_atomic(&beside, &go_binary)?;
            std::fs::set_permissions(&beside, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        }
        crate::inputs::criu::place(&criu, dir)?;
    }
    let initrd = root.join("target/uffdc/initramfs.cpio");
    let mut programs: Vec<(&str, &[u8])> = vec![(crate::inputs::golang::NAME, &go_binary)];
    programs.extend(criu.iter().map(|(n, d)| (n.as_str(), d.as_slice())));
    let archive = crate::boot::initramfs::for_suite(&binary, &programs, None);
    crate::util::write_atomic(&initrd, &archive)?;
    let other = arches.iter().filter(|a| **a != Arch::native()).map(|a| (*a, Default::default())).collect();
    Ok(Prepared {
        suite,
        catalogue,
        initrd,
        native: ArchFiles { binary, go_binary, criu },
        root: root.to_path_buf(),
        other,
        apt,
    })
}

impl Prepared {
    /// A handle on the run's apt for one step (a step takes its own apt's locks, on its own thread).
    pub fn apt(&self) -> LazyApt {
        self.apt.clone()
    }

    /// The suite and the Go workload built for another architecture (`arch`'s columns boot them,
    /// without CRIU), given instead of built here (the tests pass the test command's builds).
    #[cfg(test)]
    pub fn add_arch(&mut self, arch: Arch, suite: &Path, go: &Path) -> Result<()> {
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
        let files = ArchFiles { binary: read(suite)?, go_binary: read(go)?, criu: Vec::new() };
        self.other.insert(arch, std::sync::OnceLock::from(Ok(files)));
        Ok(())
    }

    /// Whether `arch`'s files still have to be made (its first column makes them: a build).
    pub fn arch_pending(&self, arch: Arch) -> bool {
        self.other.get(&arch).is_some_and(|o| o.get().is_none())
    }

    /// `arch`'s suite, Go workload and CRIU: made by the first caller (the others wait for it),
    /// an error (in one line) for every caller when they cannot be made.
    fn arch_files(&self, arch: Arch) -> Result<&ArchFiles, String> {
        if arch == Arch::native() {
            return Ok(&self.native);
        }
        let Some(other) = self.other.get(&arch) else {
            return Err(format!(
                "no suite was built for {arch} in this run (prepare it with the run's architectures)"
            ));
        };
        let made = other.get_or_init(|| {
            let make = || -> Result<ArchFiles> {
                let sh = Shell::new()?;
                let suite = crate::boot::suite_bin::build_for(&sh, &self.root, arch)?;
                let go = crate::inputs::golang::workload_for(&sh, &self.root, &mut self.apt(), arch)?;
                eprintln!(
                    "suite   {arch}: {} (go {})",
                    crate::util::display_path(&suite),
                    crate::util::display_path(&go.path)
                );
                let criu = crate::inputs::criu::files(&sh, &self.root, &mut self.apt(), arch)?;
                let read =
                    |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
                Ok(ArchFiles { binary: read(&suite)?, go_binary: read(&go.path)?, criu })
            };
            make().map_err(|e| format!("the suite for {arch} could not be prepared: {e:#}"))
        });
        made.as_ref().map_err(Clone::clone)
    }

    /// Makes `arch`'s files now, when they are still to be made (a column of it calls this as a
    /// build, before it waits for a guest slot).
    pub fn prepare_arch(&self, arch: Arch) -> Result<()> {
        self.arch_files(arch).map(drop).map_err(|e| anyhow::anyhow!(e))
    }
}

/// Something that happened in a matrix run, per kernel column.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// The columns this run will produce, in order.
    Planned(&'a [KernelId]),
    Fetching(&'a str),
    /// Building from source (`cargo xtask images build`) or its own selftests, or finding them in
    /// the cache: what it is doing now (or waiting for: `waiting: ...`).
    Building(&'a str, &'a str),
    /// Waiting for what it names (a download slot, a free guest slot, the KVM probe).
    Waiting(&'a str, &'a str),
    Booting(&'a str),
    /// What the kernel's run reported as it happened (QEMU's pid, each record, a retried boot).
    Run(&'a str, &'a runner::Event<'a>),
    /// The kernel's results, written to its results file.
    Done(&'a str, &'a model::Results, &'a Path),
    Failed(&'a str, &'a str),
}

/// Who is told of the events (the progress display, a test).
pub type Observer<'a> = dyn Fn(&RunEvent<'_>) + Sync + 'a;

/// Fetches or builds, builds the selftests of, boots and records every selected kernel and the
/// host, then compiles the matrix. Each column goes its own way as soon as its own inputs are
/// ready (`run_columns`); its results are written as soon as it finishes; a kernel that cannot be
/// fetched or built keeps the results it had.
pub fn gather(
    // Each step makes its own shell: a shell is one thread's.
    _sh: &Shell,
    root: &Path,
    opts: &Options,
    prepared: &Prepared,
    observe: &Observer<'_>,
) -> Result<()> {
    let fleet = Fleet::load(root)?;
    // No fleet ids: only --kernel-image's kernels run (partition would take none as all).
    let ids = opts.fleet_ids(&fleet);
    let (selected, builds) = if ids.is_empty() { (Vec::new(), Vec::new()) } else { fleet.partition(&ids)? };
    let mut columns: Vec<(KernelId, Source)> =
        selected.into_iter().map(|(id, pin)| (id, Source::Fetch(pin))).collect();
    columns.extend(builds.into_iter().map(|id| (id, Source::Build)));
    for (path, id, config) in &opts.images {
        let image = local_image(path, id.as_deref(), config.as_deref())?;
        columns.push((image.id.clone(), Source::Local(image)));
    }
    let mut ids: Vec<KernelId> = columns.iter().map(|(id, _)| id.clone()).collect();
    if opts.host {
        ids.push(KernelId::from(HOST_ID));
    }
    observe(&RunEvent::Planned(&ids));
    // The time to the first cell, from the command's start.
    let first_cell = std::sync::OnceLock::new();
    let observe = &|e: &RunEvent<'_>| {
        if let RunEvent::Run(_, runner::Event::Record(model::stream::Record::Cell { .. })) = e {
            first_cell.get_or_init(|| opts.started.elapsed());
        }
        observe(e)
    };
    let cache = Cache::new(root);
    let real = Real { root, fleet: &fleet, cache: &cache, opts, prepared };
    let ran = run_columns(&real, opts, columns, observe);
    let mut failed = ran.failed;
    if opts.host {
        let settings = ran.settings.unwrap_or_else(|| Settings { accel: Accel::Tcg, ..opts.run.clone() });
        let logs = opts.logs.join(HOST_ID);
        observe(&RunEvent::Booting(HOST_ID));
        let results = runner::run_host(&prepared.suite, &settings, &logs, &mut |e| {
            observe(&RunEvent::Run(HOST_ID, &e))
        })?;
        observe(&RunEvent::Done(HOST_ID, &results, &logs));
        // The published matrix is the kernels anyone can reproduce: a host stays local unless asked.
        let dir = if opts.publish_host { opts.results_dir() } else { logs.clone() };
        save_results(&dir, HOST_ID, &results, &mut failed)?;
        if !opts.publish_host {
            eprintln!(
                "note: the host column stays local, in {}/{HOST_ID}.toml, not in the matrix (--publish-host puts it there)",
                crate::util::display_path(&logs)
            );
        }
    }
    if let Some(e) = ran.error {
        return Err(e);
    }
    let compat = compile(&opts.out, &prepared.catalogue)?;
    let first = first_cell.get().map_or("none".to_string(), |t| format!("{:.1}s", t.as_secs_f64()));
    eprintln!(
        "matrix  {} ({} behaviours x {} kernels; first cell after {first}, all after {:.1}s)",
        crate::util::display_path(&opts.out.join("compat.toml")),
        compat.behaviours.len(),
        compat.kernels.len(),
        opts.started.elapsed().as_secs_f64(),
    );
    if !failed.is_empty() {
        bail!("{} kernel(s) did not complete:\n  {}", failed.len(), failed.join("\n  "));
    }
    Ok(())
}

pub const LOCAL_PREFIX: &str = "local:";

fn local_label(path: &Path) -> KernelId {
    KernelId::from(format!("{LOCAL_PREFIX}{}", path.file_name().unwrap_or_default().to_string_lossy()))
}

/// A file name made of a kernel release (`6.18.0-rc1+` stays readable; `/` does not survive).
fn sanitize(release: &str) -> String {
    release.chars().map(|c| if c.is_ascii_alphanumeric() || "._+-".contains(c) { c } else { '_' }).collect()
}

/// A kernel image given on the command line: an x86 bzImage (the boot protocol header's "HdrS"
/// magic) or an arm64 Image (the "ARM\x64" magic of its header, Documentation/arch/arm64/booting.rst),
/// booted as it is. Its configuration is `config` when given, else the `.config` of the build tree
/// it sits in (`arch/x86/boot/bzImage`, `arch/arm64/boot/Image`), else not known (unless the kernel
/// has CONFIG_IKCONFIG_PROC: the guest's suite reads `/proc/config.gz` then).
pub fn local_image(path: &Path, id: Option<&str>, config: Option<&Path>) -> Result<Image> {
    let data =
        std::fs::read(path).with_context(|| format!("--kernel-image {}: cannot read it", path.display()))?;
    let (arch, in_tree) = if data.get(0x202..0x206) == Some(b"HdrS") {
        (Arch::X86_64, "arch/x86/boot/bzImage")
    } else if data.get(0x38..0x3c) == Some(b"ARM\x64") {
        (Arch::Arm64, "arch/arm64/boot/Image")
    } else {
        bail!(
            "--kernel-image {}: not an x86 bzImage (no \"HdrS\" boot header at 0x202) nor an arm64 Image (no \"ARM\\x64\" magic at 0x38): pass arch/x86/boot/bzImage or arch/arm64/boot/Image",
            path.display()
        );
    };
    let sha = sha256_file(path)?;
    let tree = path.parent().and_then(Path::parent).and_then(Path::parent).and_then(Path::parent);
    let config = match config {
        Some(c) if !c.is_file() => bail!("--config {}: no such file", c.display()),
        Some(c) => Some((c.to_path_buf(), format!("--config {}", c.display()))),
        None => tree.map(|t| t.join(".config")).filter(|c| path.ends_with(in_tree) && c.is_file()).map(|c| {
            let source = format!("{} (the build tree's)", c.display());
            (c, source)
        }),
    };
    Ok(Image {
        id: id.map_or_else(|| local_label(path), KernelId::from),
        arch,
        vmlinuz: path.to_path_buf(),
        release: String::new(),
        userfaultfd: None,
        config,
        source: format!("local {} (sha256 {sha})", path.display()),
        build: None,
    })
}

fn save_results(dir: &Path, id: &str, results: &model::Results, failed: &mut Vec<String>) -> Result<()> {
    let path = dir.join(format!("{id}.toml"));
    model::data::save(&path, results).with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(reason) = &results.kernel.reason {
        failed.push(format!("{id}: {reason}"));
    }
    Ok(())
}

/// A short boot under KVM that runs no behaviour: it works when the end record arrives.
pub fn probe_kvm(image: &Image, prepared: &Prepared, opts: &Options) -> Result<(), String> {
    let settings = Settings {
        accel: Accel::Kvm,
        cpus: 1,
        mem_mb: 512,
        timeout: std::time::Duration::from_secs(30),
        boot_attempts: 1,
        suite_args: vec!["--exact".into(), "no-behaviour-has-this-name".into()],
        ..opts.run.clone()
    };
    let run = prepared.initrd_for(image).and_then(|initrd| {
        runner::run_guest(image, &initrd, &settings, &opts.logs.join("kvm-probe"), &mut |_| {})
    });
    match run {
        Ok(r) if r.kernel.status == model::RunStatus::Complete => Ok(()),
        Ok(r) => Err(r.kernel.reason.unwrap_or_default()),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// Compiles `<out>/compat.toml` from every `<out>/results/*.toml` and the catalogue.
pub fn compile(out: &Path, catalogue: &model::Catalogue) -> Result<model::Compat> {
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
        let results: model::Results = model::data::load(&file)?;
        runs.insert(id, results);
    }
    let generated = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (compat, dropped) = model::compile::compile(catalogue, &runs, generated);
    for d in dropped {
        eprintln!("note: dropped a result for a behaviour this suite no longer has: {d}");
    }
    model::data::save(&out.join("compat.toml"), &compat)?;
    Ok(compat)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15, item 5a: with only `--kernel-image`, only those run; `--kernel` adds fleet
    /// kernels (tracks or builds) to them; with neither, every track and build runs.
    #[test]
    fn with_only_local_images_no_fleet_kernel_runs() {
        let root = crate::util::project_root();
        let fleet = Fleet::load(&root).unwrap();
        let mut opts = Options::new(&root);
        opts.images.push((PathBuf::from("/k/bzImage"), None, None));
        assert!(opts.fleet_ids(&fleet).is_empty());
        opts.kernels = vec!["build-6.12-no-userfaultfd".into()];
        assert_eq!(opts.fleet_ids(&fleet), ["build-6.12-no-userfaultfd"]);
        let (images, builds) = fleet.partition(&opts.fleet_ids(&fleet)).unwrap();
        assert!(images.is_empty() && builds == ["build-6.12-no-userfaultfd"]);
        let all = Options::new(&root).fleet_ids(&fleet);
        assert_eq!(all.len(), fleet.tracks.len() + fleet.builds.len());
        let err = fleet.partition(&["no-such-kernel".into()]).unwrap_err().to_string();
        assert!(err.contains("build-6.12-no-userfaultfd") && err.contains("debian-6.1-cloud"), "{err}");
    }
}
