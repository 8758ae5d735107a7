//! The run pipeline the tasks stand on: prepare the suite and its initramfs once, fetch each
//! kernel, choose the accelerator, boot the guests (`jobs` at once) and the host, write each
//! kernel's results as soon as it finishes, and compile the matrix. What happens is reported as
//! typed [`RunEvent`]s: the progress display and the tests consume the same events.

use crate::boot::accel::{self, Choice};
use crate::boot::qemu::Accel;
use crate::boot::qemu::Settings;
use crate::boot::runner;
use crate::inputs::apt::LazyApt;
use crate::inputs::fleet::{Cache, Fleet, Image, KernelId};
use crate::util::sha256_file;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use xshell::Shell;

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
    pub mirror: Option<String>,
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
            mirror: None,
            jobs: 2,
            run: Settings::default(),
            out: root.join("matrix"),
            logs: root.join("target/uffdc/runs"),
            selftests: false,
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

/// What the guests need, prepared once per invocation.
pub struct Prepared {
    pub suite: PathBuf,
    pub catalogue: model::Catalogue,
    /// The initramfs with the suite alone (for a kernel whose configuration is not known).
    pub initrd: PathBuf,
    binary: Vec<u8>,
    /// The Go workload (`uffdc-go`), packed beside the suite in every initramfs and placed beside
    /// the suite binary for a host run.
    go_binary: Vec<u8>,
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
        if image.config.is_none() && selftests.is_none() {
            return Ok(self.initrd.clone());
        }
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
        let mut programs: Vec<(&str, &[u8])> = vec![(crate::inputs::golang::NAME, self.go_binary.as_slice())];
        if let Some(s) = selftests {
            programs
                .extend(names.iter().zip(&s.programs).map(|(n, (_, data))| (n.as_str(), data.as_slice())));
        }
        let path = self.initrd.with_file_name(format!("initramfs-{}.cpio", sanitize(&image.id)));
        let archive = crate::boot::initramfs::for_suite(
            &self.binary,
            &programs,
            config.as_ref().map(|(s, t)| (*s, t.as_slice())),
        );
        crate::util::write_atomic(&path, &archive)?;
        Ok(path)
    }
}

pub fn prepare(sh: &Shell, root: &Path, suite: Option<PathBuf>) -> Result<Prepared> {
    let suite = match suite {
        Some(s) => s,
        None => crate::boot::suite_bin::build(sh, root)?,
    };
    let catalogue = crate::boot::suite_bin::catalogue(sh, &suite)?;
    let binary = std::fs::read(&suite).with_context(|| format!("cannot read {}", suite.display()))?;
    let go = crate::inputs::golang::workload(sh, root, None)?;
    let go_binary = std::fs::read(&go.path).with_context(|| format!("cannot read {}", go.path.display()))?;
    eprintln!("go      {} ({})", go.version, crate::util::display_path(&go.path));
    // A host run finds the workload where a guest does: beside the suite.
    if let Some(dir) = suite.parent() {
        let beside = dir.join(crate::inputs::golang::NAME);
        if std::fs::read(&beside).ok().as_deref() != Some(&go_binary[..]) {
            crate::util::write_atomic(&beside, &go_binary)?;
            std::fs::set_permissions(&beside, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        }
    }
    let initrd = root.join("target/uffdc/initramfs.cpio");
    let archive =
        crate::boot::initramfs::for_suite(&binary, &[(crate::inputs::golang::NAME, &go_binary)], None);
    crate::util::write_atomic(&initrd, &archive)?;
    Ok(Prepared { suite, catalogue, initrd, binary, go_binary })
}

/// Something that happened in a matrix run, per kernel column.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// The columns this run will produce, in order.
    Planned(&'a [KernelId]),
    Fetching(&'a str),
    /// Building from source (`cargo xtask images build`), or finding the build in the cache: what
    /// it is doing now.
    Building(&'a str, &'a str),
    /// Fetched (or found in the cache), waiting for a free job.
    Waiting(&'a str),
    Booting(&'a str),
    /// What the kernel's run reported as it happened (QEMU's pid, each record, a retried boot).
    Run(&'a str, &'a runner::Event<'a>),
    /// The kernel's results, written to its results file.
    Done(&'a str, &'a model::Results, &'a Path),
    Failed(&'a str, &'a str),
}

/// Who is told of the events (the progress display, a test).
pub type Observer<'a> = dyn Fn(&RunEvent<'_>) + Sync + 'a;

/// Fetches, boots and records every selected kernel (`opts.jobs` guests at once) and the host,
/// then compiles the matrix. Each kernel's results are written as soon as it finishes; a kernel
/// that cannot be fetched keeps the results it had.
pub fn gather(
    sh: &Shell,
    root: &Path,
    opts: &Options,
    prepared: &Prepared,
    observe: &Observer<'_>,
) -> Result<()> {
    let fleet = Fleet::load(root)?;
    // No fleet ids: only --kernel-image's kernels run (partition would take none as all).
    let ids = opts.fleet_ids(&fleet);
    let (selected, builds) = if ids.is_empty() { (Vec::new(), Vec::new()) } else { fleet.partition(&ids)? };
    let cache = Cache::new(root);
    let mut apt = fleet.apt(&cache, opts.mirror.clone());
    let mut ids: Vec<KernelId> = selected.iter().map(|(id, _)| id.clone()).collect();
    ids.extend(builds.iter().cloned());
    ids.extend(
        opts.images
            .iter()
            .map(|(path, id, _)| id.as_deref().map_or_else(|| local_label(path), KernelId::from)),
    );
    if opts.host {
        ids.push(KernelId::from(HOST_ID));
    }
    observe(&RunEvent::Planned(&ids));
    let mut failed = Vec::new();
    let mut images = fetched(sh, &cache, &mut apt, &selected, observe, &mut failed);
    images.extend(built(sh, root, &fleet, &mut apt, &builds, observe, &mut failed));
    for (path, id, config) in &opts.images {
        images.push(local_image(path, id.as_deref(), config.as_deref())?);
    }
    // Each kernel's own selftests, built from its own source package (or from the cache); a
    // kernel whose selftests cannot be built runs without them, and its run says why.
    let selftests = if opts.selftests {
        own_selftests(sh, root, &fleet, &mut apt, &images, observe)
    } else {
        BTreeMap::new()
    };
    let accel = match images.first() {
        None => Accel::Tcg,
        Some(first) => accel::choose(opts.accel, &cache.dir.join("accel.toml"), &mut || {
            probe_kvm(first, prepared, opts)
        })?,
    };
    let settings = Settings { accel, ..opts.run.clone() };
    let failed = Mutex::new(failed);
    let error = guests(opts, prepared, &settings, images, &selftests, &failed, observe);
    if opts.host {
        let logs = opts.logs.join(HOST_ID);
        observe(&RunEvent::Booting(HOST_ID));
        let results = runner::run_host(&prepared.suite, &settings, &logs, &mut |e| {
            observe(&RunEvent::Run(HOST_ID, &e))
        })?;
        observe(&RunEvent::Done(HOST_ID, &results, &logs));
        // The published matrix is the kernels anyone can reproduce: a host stays local unless asked.
        let dir = if opts.publish_host { opts.results_dir() } else { logs.clone() };
        save_results(&dir, HOST_ID, &results, &mut failed.lock().unwrap())?;
        if !opts.publish_host {
            eprintln!(
                "note: the host column stays local, in {}/{HOST_ID}.toml, not in the matrix (--publish-host puts it there)",
                crate::util::display_path(&logs)
            );
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    let compat = compile(&opts.out, &prepared.catalogue)?;
    eprintln!(
        "matrix  {} ({} behaviours x {} kernels)",
        crate::util::display_path(&opts.out.join("compat.toml")),
        compat.behaviours.len(),
        compat.kernels.len(),
    );
    let failed = failed.into_inner().unwrap();
    if !failed.is_empty() {
        bail!("{} kernel(s) did not complete:\n  {}", failed.len(), failed.join("\n  "));
    }
    Ok(())
}

/// Each kernel's own selftests by kernel id, or why it runs without them.
type OwnSelftests = BTreeMap<KernelId, Result<crate::inputs::selftests::Selftests, String>>;

/// The pinned Debian kernels from the verified cache (fetched if need be); one that cannot be
/// fetched is left out, and `failed` says why.
fn fetched(
    sh: &Shell,
    cache: &Cache,
    apt: &mut LazyApt,
    selected: &[(KernelId, crate::inputs::fleet::Pin)],
    observe: &Observer<'_>,
    failed: &mut Vec<String>,
) -> Vec<Image> {
    let mut images = Vec::new();
    for (id, pin) in selected {
        observe(&RunEvent::Fetching(id));
        match cache.fetch(sh, id, pin, apt) {
            Ok(image) => {
                if image.userfaultfd == Some(false) {
                    eprintln!(
                        "note: {id} is built without CONFIG_USERFAULTFD: its cells will be `unsupported`"
                    );
                }
                observe(&RunEvent::Waiting(id));
                images.push(image)
            }
            Err(e) => {
                let error = format!("could not fetch: {e:#}");
                observe(&RunEvent::Failed(id, &error));
                failed.push(format!("{id}: could not fetch (its previous results, if any, are kept): {e:#}"));
            }
        }
    }
    images
}

/// The built kernels, from the build cache or built; one that cannot be built is left out, and
/// `failed` says why.
fn built(
    sh: &Shell,
    root: &Path,
    fleet: &Fleet,
    apt: &mut LazyApt,
    builds: &[KernelId],
    observe: &Observer<'_>,
    failed: &mut Vec<String>,
) -> Vec<Image> {
    let mut images = Vec::new();
    for id in builds {
        observe(&RunEvent::Building(id, "finding the build in the cache"));
        let built = crate::inputs::builds::image(sh, root, fleet, id, apt, &mut |what| {
            observe(&RunEvent::Building(id, what))
        });
        match built {
            Ok(image) => {
                observe(&RunEvent::Waiting(id));
                images.push(image)
            }
            Err(e) => {
                observe(&RunEvent::Failed(id, &format!("could not build: {e:#}")));
                failed.push(format!("{id}: could not build (its previous results, if any, are kept): {e:#}"));
            }
        }
    }
    images
}

/// Each kernel's own selftests, built from its own source package (or found in the cache).
fn own_selftests(
    sh: &Shell,
    root: &Path,
    fleet: &Fleet,
    apt: &mut LazyApt,
    images: &[Image],
    observe: &Observer<'_>,
) -> OwnSelftests {
    let mut selftests = OwnSelftests::new();
    for image in images {
        if image.id.starts_with(LOCAL_PREFIX) {
            // A kernel you built: its source is yours, not a pinned Debian package.
            selftests.insert(image.id.clone(), Err("a local kernel image (--kernel-image)".to_string()));
            continue;
        }
        observe(&RunEvent::Building(&image.id, "the kernel's own selftests"));
        let built = match crate::inputs::selftests::for_kernel(sh, root, fleet, &image.id, apt) {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err("no source package is pinned for it in images/kernels.lock: pin it with \
                             `cargo xtask images refresh sources` (Debian may not ship it)"
                .to_string()),
            Err(e) => Err(format!("{e:#}")),
        };
        if let Err(e) = &built {
            eprintln!("note: {}: runs without its own selftests: {e}", image.id);
        }
        selftests.insert(image.id.clone(), built);
        observe(&RunEvent::Waiting(&image.id));
    }
    selftests
}

/// Boots the guests, `opts.jobs` at once, each with its own selftests, and saves each one's
/// results; a kernel that did not complete is added to `failed`. Returns the first error that
/// stops the whole run (a results file that could not be written, a guest that could not start).
fn guests(
    opts: &Options,
    prepared: &Prepared,
    settings: &Settings,
    images: Vec<Image>,
    selftests: &OwnSelftests,
    failed: &Mutex<Vec<String>>,
    observe: &Observer<'_>,
) -> Option<anyhow::Error> {
    let queue = Mutex::new(images.into_iter());
    let error = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            scope.spawn(|| loop {
                let Some(image) = queue.lock().unwrap().next() else { break };
                let label = image.id.clone();
                observe(&RunEvent::Booting(&label));
                let logs = opts.logs.join(&label);
                let own = selftests.get(&image.id).and_then(|s| s.as_ref().ok());
                // Its selftests run after the suite, each run (and a failed one's reruns) within its
                // own limit: the guest gets that much more time.
                let settings = match own {
                    Some(s) => Settings {
                        timeout: settings.timeout
                            + std::time::Duration::from_secs(model::data::selftest_time_s(
                                s.programs.iter().map(|(name, _)| name.as_str()),
                            )),
                        ..settings.clone()
                    },
                    None => settings.clone(),
                };
                let run = prepared.initrd_with(&image, own).and_then(|initrd| {
                    runner::run_guest(&image, &initrd, &settings, &logs, &mut |e| {
                        observe(&RunEvent::Run(&label, &e))
                    })
                });
                match run {
                    Ok(mut results) => {
                        results.kernel.selftests = selftests.get(&image.id).map(|s| match s {
                            Ok(s) => s.source.clone(),
                            Err(e) => format!("not run: {e}"),
                        });
                        // A local image without an id is named by the kernel's own uname -r.
                        let id = if image.id.starts_with(LOCAL_PREFIX) && !results.kernel.release.is_empty() {
                            KernelId::from(sanitize(&results.kernel.release))
                        } else {
                            image.id.clone()
                        };
                        observe(&RunEvent::Done(&label, &results, &logs));
                        if let Err(e) =
                            save_results(&opts.results_dir(), &id, &results, &mut failed.lock().unwrap())
                        {
                            *error.lock().unwrap() = Some(e);
                        }
                    }
                    Err(e) => {
                        observe(&RunEvent::Failed(&label, &format!("{e:#}")));
                        *error.lock().unwrap() = Some(e);
                    }
                }
            });
        }
    });
    error.into_inner().unwrap()
}

pub const LOCAL_PREFIX: &str = "local:";

fn local_label(path: &Path) -> KernelId {
    KernelId::from(format!("{LOCAL_PREFIX}{}", path.file_name().unwrap_or_default().to_string_lossy()))
}

/// A file name made of a kernel release (`6.18.0-rc1+` stays readable; `/` does not survive).
fn sanitize(release: &str) -> String {
    release.chars().map(|c| if c.is_ascii_alphanumeric() || "._+-".contains(c) { c } else { '_' }).collect()
}

/// A kernel image given on the command line: it must be a bzImage (the boot protocol header's
/// "HdrS" magic), booted as it is. Its configuration is `config` when given, else the `.config` of
/// the build tree it sits in (`arch/x86/boot/bzImage`), else not known (unless the kernel has
/// CONFIG_IKCONFIG_PROC: the guest's suite reads `/proc/config.gz` then).
pub fn local_image(path: &Path, id: Option<&str>, config: Option<&Path>) -> Result<Image> {
    let data =
        std::fs::read(path).with_context(|| format!("--kernel-image {}: cannot read it", path.display()))?;
    if data.get(0x202..0x206) != Some(b"HdrS") {
        bail!(
            "--kernel-image {}: not an x86 bzImage (no \"HdrS\" boot header at 0x202): pass arch/x86/boot/bzImage",
            path.display()
        );
    }
    let sha = sha256_file(path)?;
    let tree = path.parent().and_then(Path::parent).and_then(Path::parent).and_then(Path::parent);
    let config = match config {
        Some(c) if !c.is_file() => bail!("--config {}: no such file", c.display()),
        Some(c) => Some((c.to_path_buf(), format!("--config {}", c.display()))),
        None => tree
            .map(|t| t.join(".config"))
            .filter(|c| path.ends_with("arch/x86/boot/bzImage") && c.is_file())
            .map(|c| {
                let source = format!("{} (the build tree's)", c.display());
                (c, source)
            }),
    };
    Ok(Image {
        id: id.map_or_else(|| local_label(path), KernelId::from),
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
