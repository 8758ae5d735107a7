//! A run's columns, each on a thread of its own through its steps (fetch or build its kernel →
//! build its own selftests → boot → write its results), each step as soon as its own inputs are
//! ready; what bounds them is `schedule.rs`'s.

use super::{probe_kvm, sanitize, save_results, Observer, Options, Prepared, RunEvent, LOCAL_PREFIX};
use crate::boot::accel;
use crate::boot::qemu::{Accel, Settings};
use crate::boot::runner;
use crate::boot::schedule::{Cores, Slots, TurnGuard, Turns};
use crate::inputs::apt::LazyApt;
use crate::inputs::fleet::{Cache, Fleet, Image, KernelId};
use anyhow::Result;
use std::path::Path;
use std::sync::Mutex;
use xshell::Shell;

/// Downloads at once: they wait on the network, not on the cores.
const DOWNLOADS: usize = 3;

/// Where a column's kernel comes from.
pub(super) enum Source {
    /// A pinned Debian kernel, from the verified cache or downloaded.
    Fetch(crate::inputs::fleet::Pin),
    /// A build (`images/kernels.toml`), from the build cache or compiled.
    Build,
    /// `--kernel-image`, as it is.
    Local(Image),
}

/// The work of each step of a column. The pipeline's is [`Real`]; the tests put their own.
pub trait Steps: Sync {
    fn fetch(&self, id: &str, pin: &crate::inputs::fleet::Pin) -> Result<Image>;
    /// `cores` is called when the compile starts and returns the cores it may use.
    fn build(
        &self,
        id: &str,
        cores: &mut dyn FnMut() -> usize,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Image>;
    /// The kernel's own selftests; `None` when no source package is pinned for it.
    fn selftests(
        &self,
        image: &Image,
        cores: &mut dyn FnMut() -> usize,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Option<Selftests>>;
    /// Whether the suite for `arch` (another architecture than this machine's) is still to be built.
    fn arch_pending(&self, arch: model::arch::Arch) -> bool;
    /// Builds the suite, the Go workload and CRIU for `arch`, once (the first column of it).
    fn prepare_arch(&self, arch: model::arch::Arch) -> Result<()>;
    /// The guests' settings, the accelerator chosen (the KVM probe boots `first`): called once.
    fn settings(&self, first: &Image) -> Result<Settings>;
    /// The build's kernel, when the cache has it or the binary cache gives it (no turn to wait
    /// for: only a compile takes one).
    fn cached_build(&self, id: &str, progress: &mut dyn FnMut(&str)) -> Option<Image>;
    /// The kernel's own selftests, when the cache has them or the binary cache gives them (no
    /// turn to wait for, as for [`Steps::cached_build`]: a fetch is no build).
    fn cached_selftests(&self, image: &Image, progress: &mut dyn FnMut(&str)) -> Option<Selftests>;
    fn boot(
        &self,
        image: &Image,
        own: Option<&Selftests>,
        settings: &Settings,
        logs: &Path,
        observe: &mut dyn FnMut(runner::Event<'_>),
    ) -> Result<model::Results>;
}

type Selftests = crate::inputs::selftests::Selftests;

/// The real steps: the caches, the builds, QEMU.
pub(super) struct Real<'a> {
    pub(super) root: &'a Path,
    pub(super) fleet: &'a Fleet,
    pub(super) cache: &'a Cache,
    pub(super) opts: &'a Options,
    pub(super) prepared: &'a Prepared,
}

impl Real<'_> {
    /// Each step has its own handle on the run's apt (they take its locks) and its own shell (a
    /// shell is one thread's).
    fn apt(&self) -> LazyApt {
        let mut apt = self.prepared.apt();
        if !self.opts.binary_cache {
            apt.binary_cache = None;
        }
        apt
    }
}

impl Steps for Real<'_> {
    fn fetch(&self, id: &str, pin: &crate::inputs::fleet::Pin) -> Result<Image> {
        self.cache.fetch(&Shell::new()?, id, pin, &mut self.apt())
    }

    fn build(
        &self,
        id: &str,
        cores: &mut dyn FnMut() -> usize,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Image> {
        let sh = Shell::new()?;
        crate::inputs::builds::image(&sh, self.root, self.fleet, id, &mut self.apt(), cores, progress)
    }

    fn selftests(
        &self,
        image: &Image,
        cores: &mut dyn FnMut() -> usize,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Option<Selftests>> {
        let sh = Shell::new()?;
        crate::inputs::selftests::for_kernel(
            &sh,
            self.root,
            self.fleet,
            &image.id,
            &mut self.apt(),
            cores,
            progress,
        )
    }

    fn arch_pending(&self, arch: model::arch::Arch) -> bool {
        self.prepared.arch_pending(arch)
    }

    fn prepare_arch(&self, arch: model::arch::Arch) -> Result<()> {
        self.prepared.prepare_arch(arch)
    }

    fn cached_build(&self, id: &str, progress: &mut dyn FnMut(&str)) -> Option<Image> {
        use crate::inputs::builds;
        builds::from_cache(self.root, self.fleet, id).or_else(|| {
            let url = self.apt().binary_cache;
            let dir = self.cache.dir.join("builds");
            builds::fetch_published(self.root, self.fleet, id, url.as_deref(), &dir, progress)
                .ok()?
                .then(|| builds::from_cache(self.root, self.fleet, id))?
        })
    }

    fn cached_selftests(&self, image: &Image, progress: &mut dyn FnMut(&str)) -> Option<Selftests> {
        let url = self.apt().binary_cache;
        crate::inputs::selftests::fetched(self.root, self.fleet, &image.id, url.as_deref(), progress)
    }

    fn settings(&self, first: &Image) -> Result<Settings> {
        // KVM runs only this machine's own architecture: a guest of another gets TCG
        // (`Boot::accel`), and cannot be the probe that says whether KVM works here.
        if first.arch != model::arch::Arch::native() {
            let accel = match self.opts.accel {
                accel::Choice::TcgMulti => Accel::TcgMulti,
                accel::Choice::Kvm => anyhow::bail!(
                    "--accel kvm: {} is {}, which KVM cannot run on this {} machine: use --accel auto (TCG for it)",
                    first.id,
                    first.arch,
                    model::arch::Arch::native()
                ),
                _ => Accel::Tcg,
            };
            return Ok(Settings { accel, ..self.opts.run.clone() });
        }
        let file = self.cache.dir.join("accel.toml");
        let accel =
            accel::choose(self.opts.accel, &file, &mut || probe_kvm(first, self.prepared, self.opts))?;
        Ok(Settings { accel, ..self.opts.run.clone() })
    }

    fn boot(
        &self,
        image: &Image,
        own: Option<&Selftests>,
        settings: &Settings,
        logs: &Path,
        observe: &mut dyn FnMut(runner::Event<'_>),
    ) -> Result<model::Results> {
        let initrd = self.prepared.initrd_with(image, own)?;
        runner::run_guest(image, &initrd, settings, logs, observe)
    }
}

/// What became of the columns.
pub(super) struct Ran {
    /// A line per column that did not complete.
    pub(super) failed: Vec<String>,
    /// The first error that stops the whole run (a results file that could not be written, a
    /// guest that could not start, the accelerator that could not be chosen).
    pub(super) error: Option<anyhow::Error>,
    /// The guests' settings, if any guest got that far.
    pub(super) settings: Option<Settings>,
}

/// What the columns share while each goes its own way.
struct Shared<'a> {
    steps: &'a dyn Steps,
    opts: &'a Options,
    observe: &'a Observer<'a>,
    cores: Cores,
    downloads: Slots,
    turns: Turns,
    /// Chosen once, by the first column ready to boot (the KVM probe boots its kernel).
    settings: Mutex<Option<Result<Settings, String>>>,
    failed: Mutex<Vec<String>>,
    error: Mutex<Option<anyhow::Error>>,
}

/// Runs every column on a thread of its own: its kernel (fetched, built or given), its own
/// selftests, its guest, its results; what bounds them is in `schedule.rs`.
pub(super) fn run_columns(
    steps: &dyn Steps,
    opts: &Options,
    columns: Vec<(KernelId, Source)>,
    observe: &Observer<'_>,
) -> Ran {
    let shared = Shared {
        steps,
        opts,
        observe,
        cores: Cores::new(crate::util::cores(), opts.jobs),
        downloads: Slots::new(DOWNLOADS),
        turns: Turns::default(),
        settings: Mutex::new(None),
        failed: Mutex::new(Vec::new()),
        error: Mutex::new(None),
    };
    // A Debian column's selftests come before any kernel build: every one is counted before any
    // column starts (counted as each was spawned, a build listed first could take its turn
    // before a later Debian column was counted, and wait for a guest that waited for that turn).
    let counted: Vec<_> = columns
        .into_iter()
        .map(|(id, source)| {
            let first =
                (opts.selftests && matches!(source, Source::Fetch(_))).then(|| shared.turns.pending());
            (id, source, first)
        })
        .collect();
    std::thread::scope(|scope| {
        for (id, source, first) in counted {
            let shared = &shared;
            scope.spawn(move || column(shared, &id, source, first));
        }
    });
    let settings = shared.settings.into_inner().unwrap_or_else(|e| e.into_inner()).and_then(Result::ok);
    Ran {
        failed: shared.failed.into_inner().unwrap_or_else(|e| e.into_inner()),
        error: shared.error.into_inner().unwrap_or_else(|e| e.into_inner()),
        settings,
    }
}

impl Shared<'_> {
    fn fail(&self, id: &str, shown: &str, line: String) {
        (self.observe)(&RunEvent::Failed(id, shown));
        self.failed.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }

    fn stop(&self, e: anyhow::Error) {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
    }

    /// `step` with a build's cores, taken when its compile starts and given back when it returns.
    fn with_cores<T>(&self, id: &str, want: usize, step: impl FnOnce(&mut dyn FnMut() -> usize) -> T) -> T {
        let mut lease = None;
        let out = step(&mut || {
            let l = self
                .cores
                .build(want, |why| (self.observe)(&RunEvent::Building(id, &format!("waiting: {why}"))));
            let n = l.cores;
            lease = Some(l);
            n
        });
        drop(lease);
        out
    }
}

/// One column: fetch or build → its own selftests → boot → results.
fn column(shared: &Shared<'_>, id: &str, source: Source, first: Option<TurnGuard<'_>>) {
    let observe = shared.observe;
    let image = match source {
        Source::Local(image) => image,
        Source::Fetch(pin) => {
            let _slot = shared.downloads.take(|| observe(&RunEvent::Waiting(id, "a download slot")));
            observe(&RunEvent::Fetching(id));
            match shared.steps.fetch(id, &pin) {
                Ok(image) => image,
                Err(e) => {
                    let line =
                        format!("{id}: could not fetch (its previous results, if any, are kept): {e:#}");
                    return shared.fail(id, &format!("could not fetch: {e:#}"), line);
                }
            }
        }
        Source::Build => {
            observe(&RunEvent::Building(id, "finding the build in the cache"));
            let cached = shared.steps.cached_build(id, &mut |what| observe(&RunEvent::Building(id, what)));
            let built = cached.map(Ok).unwrap_or_else(|| {
                let _turn = shared
                    .turns
                    .take(false, |why| observe(&RunEvent::Building(id, &format!("waiting: {why}"))));
                shared.with_cores(id, usize::MAX, |cores| {
                    shared.steps.build(id, cores, &mut |what| observe(&RunEvent::Building(id, what)))
                })
            });
            match built {
                Ok(image) => image,
                Err(e) => {
                    let line =
                        format!("{id}: could not build (its previous results, if any, are kept): {e:#}");
                    return shared.fail(id, &format!("could not build: {e:#}"), line);
                }
            }
        }
    };
    if image.userfaultfd == Some(false) {
        eprintln!("note: {id} is built without CONFIG_USERFAULTFD: its cells will be `unsupported`");
    }
    if shared.steps.arch_pending(image.arch) {
        // The first column of another architecture builds its suite (as a short build: before
        // any kernel's); x86-64 columns boot meanwhile.
        let what = format!("the suite for {}", image.arch);
        observe(&RunEvent::Building(id, &what));
        let _turn =
            shared.turns.take(true, |why| observe(&RunEvent::Building(id, &format!("waiting: {why}"))));
        let made = shared.with_cores(id, usize::MAX, |cores| {
            cores();
            shared.steps.prepare_arch(image.arch)
        });
        if let Err(e) = made {
            let line = format!("{id}: not booted (its previous results, if any, are kept): {e:#}");
            return shared.fail(id, &format!("{e:#}"), line);
        }
    }
    let own = own_selftests(shared, &image);
    drop(first);
    let Some(own) = own else { return };
    boot(shared, &image, own);
}

/// The column's own selftests (`Some(Err(why))`: it runs without them, saying why; `Some(None)`:
/// none were asked for), or `None` when they could not be built: the column fails, loudly.
fn own_selftests(shared: &Shared<'_>, image: &Image) -> Option<Option<Result<Selftests, String>>> {
    let (id, observe): (&str, _) = (&image.id, shared.observe);
    if !shared.opts.selftests {
        return Some(None);
    }
    if id.starts_with(LOCAL_PREFIX) {
        // A kernel you built: its source is yours, not a pinned Debian package.
        return Some(Some(Err("a local kernel image (--kernel-image)".to_string())));
    }
    observe(&RunEvent::Building(id, "the kernel's own selftests"));
    let cached = shared.steps.cached_selftests(image, &mut |what| observe(&RunEvent::Building(id, what)));
    let built = cached.map(|s| Ok(Some(s))).unwrap_or_else(|| {
        let _turn =
            shared.turns.take(true, |why| observe(&RunEvent::Building(id, &format!("waiting: {why}"))));
        shared.with_cores(id, 1, |cores| {
            shared.steps.selftests(image, cores, &mut |what| observe(&RunEvent::Building(id, what)))
        })
    });
    match built {
        Ok(Some(s)) => Some(Some(Ok(s))),
        Ok(None) => {
            let why = "no source package is pinned for it in images/kernels.lock: pin it with \
                       `cargo xtask images refresh sources` (Debian may not ship it)";
            eprintln!("note: {id}: runs without its own selftests: {why}");
            Some(Some(Err(why.to_string())))
        }
        Err(e) => {
            let why = format!("its own selftests could not be built: {e:#}: {NO_SELFTESTS}");
            shared.fail(
                id,
                &why,
                format!("{id}: not booted (its previous results, if any, are kept): {why}"),
            );
            None
        }
    }
}

/// The hint of a column whose selftests could not be built.
pub const NO_SELFTESTS: &str = "run with --no-selftests to run without them";

/// Boots the column's guest when a guest slot and a core are free (the first to get there chooses
/// the accelerator), and saves its results.
fn boot(shared: &Shared<'_>, image: &Image, own: Option<Result<Selftests, String>>) {
    let (label, observe): (&str, _) = (&image.id, shared.observe);
    let _lease = shared.cores.guest(|why| observe(&RunEvent::Waiting(label, why)));
    let settings = {
        let mut chosen = shared.settings.lock().unwrap_or_else(|e| e.into_inner());
        chosen
            .get_or_insert_with(|| {
                observe(&RunEvent::Waiting(label, "the accelerator (a KVM probe boots this kernel)"));
                shared.steps.settings(image).map_err(|e| {
                    let line = format!("{e:#}");
                    shared.stop(e);
                    line
                })
            })
            .clone()
    };
    let settings = match settings {
        Ok(s) => s,
        Err(e) => return shared.fail(label, &e, format!("{label}: not booted: {e}")),
    };
    let run = own.as_ref().and_then(|s| s.as_ref().ok());
    // Its selftests run after the suite, each run (and a failed one's reruns) within its own
    // limit: the guest gets that much more time.
    let settings = match run {
        Some(s) => Settings {
            timeout: settings.timeout
                + std::time::Duration::from_secs(model::data::selftest_time_s(
                    s.programs.iter().map(|(name, _)| name.as_str()),
                    image.arch,
                )),
            ..settings
        },
        None => settings,
    };
    observe(&RunEvent::Booting(label));
    let logs = shared.opts.logs.join(label);
    let results =
        shared.steps.boot(image, run, &settings, &logs, &mut |e| observe(&RunEvent::Run(label, &e)));
    let mut results = match results {
        Ok(r) => r,
        Err(e) => {
            observe(&RunEvent::Failed(label, &format!("{e:#}")));
            return shared.stop(e);
        }
    };
    results.kernel.selftests = own.map(|s| match s {
        Ok(s) => s.source,
        Err(e) => format!("not run: {e}"),
    });
    // A local image without an id is named by the kernel's own uname -r.
    let id = if label.starts_with(LOCAL_PREFIX) && !results.kernel.release.is_empty() {
        KernelId::from(sanitize(&results.kernel.release))
    } else {
        image.id.clone()
    };
    observe(&RunEvent::Done(label, &results, &logs));
    let mut failed = shared.failed.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = save_results(&shared.opts.results_dir(), &id, &results, &mut failed) {
        shared.stop(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::bail;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    /// Steps that boot nothing: a fetch is immediate; a build cannot finish before some guest
    /// booted (a pipeline that boots only after every build never gets past it); the selftests
    /// of `debian-broken` and `debian-broken-arm64` cannot be built, those of `debian-unpinned`
    /// have no source. An id ending in `-arm64` is an arm64 column.
    /// With `arm64_pending`, the first arm64 column prepares its architecture (holding the build
    /// turn and its cores) until `debian-cached` had its selftests, which come from the caches.
    #[derive(Default)]
    struct Fake {
        booted: Mutex<Vec<String>>,
        chosen: std::sync::atomic::AtomicUsize,
        guest_booted: std::sync::Condvar,
        arm64_pending: std::sync::atomic::AtomicBool,
        cached_given: Mutex<bool>,
        cached_told: std::sync::Condvar,
    }

    fn fake_image(id: &str) -> Image {
        Image {
            id: KernelId::from(id),
            arch: if id.ends_with("-arm64") { model::arch::Arch::Arm64 } else { model::arch::Arch::X86_64 },
            vmlinuz: PathBuf::from("/nonexistent/vmlinuz"),
            release: String::new(),
            userfaultfd: None,
            config: None,
            source: "fake".into(),
            build: None,
        }
    }

    impl Steps for Fake {
        fn fetch(&self, id: &str, _: &crate::inputs::fleet::Pin) -> Result<Image> {
            Ok(fake_image(id))
        }

        fn build(
            &self,
            id: &str,
            cores: &mut dyn FnMut() -> usize,
            _: &mut dyn FnMut(&str),
        ) -> Result<Image> {
            let booted = self.booted.lock().unwrap();
            let limit = std::time::Duration::from_secs(60);
            let (booted, waited) =
                self.guest_booted.wait_timeout_while(booted, limit, |b| b.is_empty()).unwrap();
            // Released before the build's cores are asked for: a guest that still holds a core
            // takes this lock as it boots, and would wait on it while the build waits for its core.
            drop(booted);
            if waited.timed_out() {
                bail!("no guest booted while {id} was being built");
            }
            assert!(cores() >= 1);
            Ok(fake_image(id))
        }

        fn selftests(
            &self,
            image: &Image,
            cores: &mut dyn FnMut() -> usize,
            _: &mut dyn FnMut(&str),
        ) -> Result<Option<Selftests>> {
            match &*image.id {
                "debian-broken" | "debian-broken-arm64" => {
                    cores();
                    bail!("building the userfaultfd selftests of /src failed (log: selftests.log)")
                }
                "debian-unpinned" => Ok(None),
                "debian-cached" => bail!("debian-cached's selftests were built: the caches had them"),
                _ => Ok(Some(Selftests { source: "linux-source-x 1".into(), programs: Vec::new() })),
            }
        }

        fn cached_build(&self, _: &str, _: &mut dyn FnMut(&str)) -> Option<Image> {
            None
        }

        fn arch_pending(&self, arch: model::arch::Arch) -> bool {
            arch == model::arch::Arch::Arm64 && self.arm64_pending.load(std::sync::atomic::Ordering::SeqCst)
        }

        fn prepare_arch(&self, _: model::arch::Arch) -> Result<()> {
            let given = self.cached_given.lock().unwrap();
            let limit = std::time::Duration::from_secs(60);
            let (given, waited) = self.cached_told.wait_timeout_while(given, limit, |g| !*g).unwrap();
            drop(given);
            if waited.timed_out() {
                bail!("debian-cached had no selftests while arm64's suite was being prepared");
            }
            self.arm64_pending.store(false, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }

        fn cached_selftests(&self, image: &Image, _: &mut dyn FnMut(&str)) -> Option<Selftests> {
            if &*image.id != "debian-cached" {
                return None;
            }
            *self.cached_given.lock().unwrap() = true;
            self.cached_told.notify_all();
            Some(Selftests { source: "linux-source-x 1 (cached)".into(), programs: Vec::new() })
        }

        fn settings(&self, _: &Image) -> Result<Settings> {
            self.chosen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Settings::default())
        }

        fn boot(
            &self,
            image: &Image,
            _: Option<&Selftests>,
            _: &Settings,
            _: &Path,
            _: &mut dyn FnMut(runner::Event<'_>),
        ) -> Result<model::Results> {
            self.booted.lock().unwrap().push(image.id.to_string());
            self.guest_booted.notify_all();
            let kernel = model::RunInfo { release: "6.1.0-fake".into(), ..model::RunInfo::default() };
            Ok(model::Results { schema: model::data::SCHEMA, kernel, cells: BTreeMap::new() })
        }
    }

    /// Options with their own scratch matrix and logs (under `target/uffdc/tests/NAME`, emptied),
    /// selftests asked for, and a pin that names nothing (the fake fetches nothing).
    fn scratch(name: &str) -> (Options, crate::inputs::fleet::Pin) {
        let dir = crate::util::project_root().join("target/uffdc/tests").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let mut opts = Options::new(&crate::util::project_root());
        (opts.out, opts.logs, opts.selftests) = (dir.join("matrix"), dir.join("logs"), true);
        let pin = crate::inputs::fleet::Pin {
            suite: String::new(),
            package: String::new(),
            version: String::new(),
            arch: model::arch::Arch::X86_64,
            release: String::new(),
            sha256: String::new(),
            size: 0,
            config: None,
        };
        (opts, pin)
    }

    /// Issue 25 items 1 and 5: a Debian column boots while a build is under way; a column whose
    /// own selftests cannot be built is not booted, fails with the cause and the hint, and the
    /// others still run and are kept; the accelerator is chosen once; without the selftests asked
    /// for, that column runs. An arm64 column's selftests are built like the others' (its failure
    /// is as loud).
    #[test]
    fn columns_stream_and_one_whose_selftests_cannot_be_built_fails_loudly() {
        let (mut opts, pin) = scratch("stream");
        let columns = || {
            vec![
                (KernelId::from("build-first"), Source::Build),
                (KernelId::from("debian-broken"), Source::Fetch(pin.clone())),
                (KernelId::from("debian-good"), Source::Fetch(pin.clone())),
                (KernelId::from("debian-unpinned"), Source::Fetch(pin.clone())),
                (KernelId::from("debian-broken-arm64"), Source::Fetch(pin.clone())),
            ]
        };
        let failures = Mutex::new(Vec::new());
        let fake = Fake::default();
        let ran = run_columns(&fake, &opts, columns(), &|e| {
            if let RunEvent::Failed(id, why) = e {
                failures.lock().unwrap().push(format!("{id}: {why}"));
            }
        });
        assert!(ran.error.is_none(), "{:?}", ran.error);
        let mut booted = fake.booted.into_inner().unwrap();
        assert!(booted[0].starts_with("debian-"), "a Debian column boots first: {booted:?}");
        booted.sort();
        assert_eq!(booted, ["build-first", "debian-good", "debian-unpinned"]);
        assert_eq!(fake.chosen.into_inner(), 1, "the accelerator is chosen once");
        let mut failures = failures.into_inner().unwrap();
        // `debian-broken-arm64:` sorts before `debian-broken:`.
        failures.sort();
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures[1].starts_with("debian-broken: its own selftests could not be built: building"));
        assert!(
            failures[0].starts_with("debian-broken-arm64: its own selftests could not be built: building")
        );
        assert!(failures.iter().all(|f| f.ends_with(NO_SELFTESTS)), "{failures:?}");
        assert_eq!(ran.failed.len(), 2);
        assert!(ran.failed.iter().all(|f| f.contains("not booted") && f.contains(NO_SELFTESTS)));
        let results = opts.results_dir();
        let saved = |id: &str| model::data::load::<model::Results>(&results.join(format!("{id}.toml")));
        assert_eq!(saved("debian-good").unwrap().kernel.selftests.as_deref(), Some("linux-source-x 1"));
        let unpinned = saved("debian-unpinned").unwrap().kernel.selftests.unwrap();
        assert!(unpinned.starts_with("not run: no source package is pinned"), "{unpinned}");
        assert!(saved("debian-broken").is_err(), "a column that was not booted writes no results");
        assert!(saved("debian-broken-arm64").is_err());

        // With --no-selftests it runs, and records none.
        opts.selftests = false;
        let fake = Fake::default();
        let ran = run_columns(&fake, &opts, columns(), &|_| {});
        assert!(ran.failed.is_empty() && ran.error.is_none(), "{:?}", ran.failed);
        assert_eq!(fake.booted.into_inner().unwrap().len(), 5);
        assert_eq!(saved("debian-broken").unwrap().kernel.selftests, None);
    }

    /// Issue 25 item 1, as `bench --cold` measured it: a column whose selftests the caches give
    /// (the binary cache included) waits for no build turn, which another column holds (here
    /// arm64's suite, prepared until that column had its selftests).
    #[test]
    fn a_column_whose_selftests_are_cached_takes_no_build_turn() {
        let (opts, pin) = scratch("stream-cached");
        let columns = vec![
            (KernelId::from("debian-first-arm64"), Source::Fetch(pin.clone())),
            (KernelId::from("debian-cached"), Source::Fetch(pin)),
        ];
        let fake = Fake::default();
        fake.arm64_pending.store(true, std::sync::atomic::Ordering::SeqCst);
        let waited = Mutex::new(Vec::new());
        let ran = run_columns(&fake, &opts, columns, &|e| {
            if let RunEvent::Building(id, what) = e {
                if what.starts_with("waiting") {
                    waited.lock().unwrap().push(format!("{id}: {what}"));
                }
            }
        });
        assert!(ran.failed.is_empty() && ran.error.is_none(), "{:?} {:?}", ran.failed, ran.error);
        let waited = waited.into_inner().unwrap();
        assert!(waited.iter().all(|w| !w.starts_with("debian-cached")), "{waited:?}");
        let mut booted = fake.booted.into_inner().unwrap();
        booted.sort();
        assert_eq!(booted, ["debian-cached", "debian-first-arm64"]);
    }
}
