//! `cargo xtask bench [--kernel ID]... [--jobs N] [--boots N]`: where the time of a matrix run
//! goes, per kernel: fetching (cold, from the mirror, and from the verified cache), the bare floor
//! (the same kernel and initramfs with an init that reports it started and powers off at once),
//! boot to init and the suite in a real run, and the whole run; then the whole matrix of those
//! kernels with `--jobs` guests at once, against its work floor (per column: bare boot, suite CPU
//! and selftests; the matrix's: their sum over the cores, and the longest column) and with its
//! time to the first cell. With `--boots N` it also boots each kernel bare N times (`--jobs` at
//! once) and counts the boots that failed before init. For each Debian kernel it also measures
//! what the clients family adds to the suite: the suite run with it and with `--skip clients::`,
//! alternated, in pairs, and what it adds to the whole matrix: the whole matrix run again without it
//! (`--matrix-pairs`). Prints a table and writes
//! `target/bench.toml`. Targets are checked here, not in tests. `--cold` measures instead how long
//! a new user waits: `cargo xtask matrix` from a fresh clone with an empty cache (`cold.rs`).

pub mod cold;
mod pairs;

use crate::boot::pipeline::{self, Options, Prepared};
use crate::boot::qemu::Settings;
use crate::boot::runner;
use crate::flags::in_range;
use crate::inputs::fleet::{Cache, Fleet, KernelId};
use anyhow::Result;
use pairs::{clients_pairs, growth, median, paired};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use xshell::Shell;

/// The suite's time on a kernel, at most this fraction of that kernel's bare boot (issue 13: with
/// ~90 behaviours, "at or under 0.75 of a bare boot on every kernel").
const SUITE_OVER_BARE: f64 = 0.75;

/// A build that reused the compiler cache (a configuration variant of a source already built), at
/// most this long on two cores (issue 25).
const VARIANT_BUILD_S: f64 = 90.0;

#[derive(Serialize)]
struct KernelBench {
    release: String,
    /// The architecture (`x86_64`, `arm64`: under TCG on another machine's).
    arch: String,
    accel: String,
    /// A column the project builds from source (its `fetch_cold_s` is a cold build).
    build: bool,
    /// A Debian image: fetching it from the mirror. A build: configuring and compiling it, as
    /// recorded when it was built (`cargo xtask images build`; NaN when it was built before that
    /// was recorded).
    fetch_cold_s: f64,
    /// A build's compilations answered by ccache and compiled anew when it was built (none for
    /// a Debian image or a build made before ccache); a build that reused some is a variant,
    /// whose target is at most [`VARIANT_BUILD_S`].
    ccache_hits: Option<u64>,
    ccache_misses: Option<u64>,
    /// The files a build compiled (fewer than a whole build's when its source's output tree held
    /// another configuration: kbuild recompiled only what the change reaches).
    compiled: Option<u64>,
    /// Whether the build was made over an earlier build of its source.
    incremental: bool,
    /// A build taken from the binary cache instead: published from this cache into a folder and
    /// fetched from it (`file://`: the download is a local copy, so this is the verifying,
    /// unpacking and installing, not a network's time) into a scratch cache (NaN for a Debian
    /// image, or when the build is not cached to publish).
    binary_cached_s: f64,
    fetch_cached_s: f64,
    bare_boot_s: f64,
    init_s: f64,
    suite_s: f64,
    /// The CPU time the probe processes used (the sum of their cells' `cpu_ms`): under TCG the
    /// suite is CPU-bound, so this, not the probes' wall time, is what the suite costs. With
    /// single-threaded TCG (a QEMU before 10) a guest's vCPUs share one host thread, and time a
    /// vCPU waited for its turn counts too.
    probes_cpu_s: f64,
    /// The probes that used the most CPU: `id cpu_ms`.
    heaviest: Vec<String>,
    /// A Debian kernel: what the clients family adds to the suite's time (`suite_s` with it minus
    /// without it, the median of `--clients-pairs` alternated pairs of runs); the target is at
    /// most [`CLIENTS_ADD_S`]. NaN for a build, with `--clients-pairs 0`, or when a run did not
    /// complete.
    clients_s: f64,
    /// Each pair's difference, seconds, in the order run.
    clients_pairs_s: Vec<f64>,
    /// The clients family's probe CPU (the sum of its cells' `cpu_ms`) in the first run with it.
    clients_cpu_s: f64,
    /// The kernel's own selftests in the whole-matrix run: their programs' time in the guest (under
    /// single-threaded TCG a guest's time is one host core's).
    selftests_s: f64,
    /// The column's work: bare boot + suite CPU (`probes_cpu_s`) + selftests (`selftests_s`).
    column_floor_s: f64,
    total_s: f64,
    /// suite_s / bare_boot_s: the target is at most [`SUITE_OVER_BARE`]. NaN when either run
    /// did not complete (`incomplete` says why): no target is met by a run that failed.
    suite_over_bare: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    incomplete: Option<String>,
    /// `--boots N`: bare boots tried, and those that failed before init (with why).
    #[serde(skip_serializing_if = "Option::is_none")]
    boots: Option<Boots>,
}

#[derive(Serialize, Default)]
struct Boots {
    tried: u32,
    failed: u32,
    /// Failure reasons, each with how often it happened.
    why: BTreeMap<String, u32>,
    /// Median bare boot, seconds.
    median_s: f64,
}

#[derive(Serialize)]
struct Bench {
    date: String,
    machine: String,
    cpus: usize,
    jobs: usize,
    /// Each architecture's QEMU version (`x86_64: QEMU emulator version ...; arm64: ...`).
    qemu: String,
    kernels: BTreeMap<KernelId, KernelBench>,
    /// The matrix of all these kernels (and the host with `--host`), as `cargo xtask matrix` runs
    /// it with a warm cache.
    matrix_s: f64,
    /// Why the whole-matrix run did not complete, if it did not (then `matrix_s` has no verdict).
    #[serde(skip_serializing_if = "Option::is_none")]
    matrix_error: Option<String>,
    host: bool,
    /// The whole-matrix run's time to its first cell.
    first_cell_s: f64,
    /// The sum of the columns' floors (`column_floor_s`) divided by the machine's cores.
    floor_s: f64,
    /// The longest single column's floor, and its id: no matrix ends before it.
    longest_s: f64,
    longest: String,
    /// matrix_s / max(floor_s, longest_s): the target is at most [`OVER_FLOOR`] (issue 25).
    over_floor: f64,
    /// What the clients family adds to the whole matrix's wall time: per pair (a whole-matrix run
    /// with it, the first being `matrix_s`, and one with `--skip clients::`, alternated), with
    /// minus without, seconds, in the order run (`--matrix-pairs`).
    matrix_clients_pairs_s: Vec<f64>,
    /// Each pair's run without the family, seconds.
    matrix_without_clients_s: Vec<f64>,
    /// The median of the pairs' differences, each over its run without the family: the fraction
    /// the family adds to the matrix (the bound for a guest of its own is
    /// [`CLIENTS_MATRIX_GROWTH`]). NaN when there are no pairs or a run did not complete.
    matrix_clients_growth: f64,
}

/// The warm whole matrix, at most this many times its work floor (issue 25: scheduling efficiency).
const OVER_FLOOR: f64 = 1.25;
/// What the clients family (real clients: CRIU, the userfaultfd crate) may add to a Debian
/// kernel's suite, seconds (issue 26).
const CLIENTS_ADD_S: f64 = 1.5;
/// By default the suite is run this many times with the clients family and as many without it,
/// alternated; what the family adds is the median of the pairs' differences (one pair's is within
/// the noise of a guest's scheduling: single pairs measured 0.4 to 3.9 s on one kernel).
const CLIENTS_PAIRS: u32 = 3;
/// What the clients family may add to the whole matrix's wall time where it runs in a guest of
/// its own (issue 26), as a fraction: the bound its cost to the matrix is measured against.
const CLIENTS_MATRIX_GROWTH: f64 = 0.15;
/// Pairs of whole-matrix runs with and without the clients family, by default.
const MATRIX_PAIRS: u32 = 1;

/// How many runs the bench adds to its fixed ones, from its flags.
#[derive(Clone, Copy, Debug)]
pub struct Counts {
    /// `--boots N`: bare boots of each kernel (0: none).
    pub boots: u32,
    /// `--clients-pairs N`: pairs of suite runs with and without the clients family (0: none).
    pub clients_pairs: u32,
    /// `--matrix-pairs N`: pairs of whole-matrix runs with and without the clients family.
    pub matrix_pairs: u32,
}

/// The libtest filter that leaves the clients family out.
const WITHOUT_CLIENTS: [&str; 2] = ["--skip", "clients::"];

/// One half of a pair: the folder its run writes in, and the suite arguments that make it (none
/// with the clients family, [`WITHOUT_CLIENTS`] without it).
fn half(with: bool) -> (&'static str, Vec<String>) {
    match with {
        true => ("with-clients", Vec::new()),
        false => ("without-clients", WITHOUT_CLIENTS.map(String::from).to_vec()),
    }
}

/// The pipeline's options and the runs the bench adds ([`Counts`]) from `cargo xtask bench`'s
/// flags.
pub fn options(root: &Path, b: crate::flags::Bench) -> Result<(Options, Counts)> {
    if b.no_binary_cache {
        anyhow::bail!("--no-binary-cache is for --cold (the warm bench measures the binary cache itself): add --cold, or drop it");
    }
    let boots = b.boots.map(|n| in_range("--boots", n, 1, 10_000)).transpose()?.unwrap_or(0);
    let clients_pairs = b
        .clients_pairs
        .map(|n| in_range("--clients-pairs", n, 0, 20))
        .transpose()?
        .unwrap_or(CLIENTS_PAIRS.into());
    let matrix_pairs = b
        .matrix_pairs
        .map(|n| in_range("--matrix-pairs", n, 0, 10))
        .transpose()?
        .unwrap_or(MATRIX_PAIRS.into());
    let mut opts = Options::new(root);
    opts.kernels = b.kernel.into_iter().map(KernelId::from).collect();
    opts.host = b.host;
    // The whole-matrix run is what `cargo xtask matrix` does: the selftests too.
    opts.selftests = !b.no_selftests;
    if let Some(n) = b.jobs {
        opts.jobs = in_range("--jobs", n, 1, 64)? as usize;
    }
    opts.run.set_qemus(&b.qemu)?;
    if let Some(a) = b.accel {
        opts.accel = a.parse().map_err(anyhow::Error::msg)?;
    }
    opts.check_tcg_mt()?;
    Ok((
        opts,
        Counts {
            boots: boots as u32,
            clients_pairs: clients_pairs as u32,
            matrix_pairs: matrix_pairs as u32,
        },
    ))
}

/// `mirror`: `--mirror`, from which the run's one private apt is made (`Fleet::apt`).
pub fn run(sh: &Shell, root: &Path, asked: &Options, counts: Counts, mirror: Option<String>) -> Result<()> {
    let fleet = Fleet::load(root)?;
    let arches = fleet.arches(&asked.kernels);
    let mut needs = vec![
        crate::inputs::packages::Need::Libclang,
        crate::inputs::packages::Need::Qemu,
        crate::inputs::packages::Need::AptTools,
        crate::inputs::packages::Need::DebianKeyring,
    ];
    needs.extend(arches.iter().flat_map(|a| crate::inputs::packages::for_arch(*a)));
    crate::inputs::packages::ensure(sh, &needs)?;
    let (selected, builds) = fleet.partition(&asked.kernels)?;
    let cache = Cache::new(root);
    let prepared = pipeline::prepare(sh, root, None, &arches, fleet.apt(&cache, mirror))?;
    // The run's one apt (the suites prepare added included), as the pipeline's steps use it.
    let mut apt = prepared.apt();
    let dir = root.join("target/uffdc/bench");
    let mut opts = asked.clone();
    opts.kernels = selected.iter().map(|(id, _)| id.clone()).chain(builds.iter().cloned()).collect();
    opts.out = dir.join("matrix");
    opts.logs = dir.join("logs");
    let jobs = opts.jobs;
    let mut out = BTreeMap::new();
    let mut accel = None;
    let kernels = selected.iter().map(|(id, pin)| (id, Some(pin))).chain(builds.iter().map(|id| (id, None)));
    for (id, pin) in kernels {
        let fetched = fetch(sh, root, &fleet, &mut apt, id, pin)?;
        // Another architecture's guest runs under TCG, and cannot be the KVM probe.
        let accel = match accel {
            _ if fetched.image.arch != model::arch::Arch::native() => crate::boot::qemu::Accel::Tcg,
            Some(a) => a,
            None => *accel.insert(crate::boot::accel::choose(
                opts.accel,
                &cache.dir.join("accel.toml"),
                &mut || pipeline::probe_kvm(&fetched.image, &prepared, &opts),
            )?),
        };
        let settings = Settings { accel, boot_attempts: 1, ..opts.run.clone() };
        out.insert(id.clone(), bench_kernel(id, &fetched, &settings, &prepared, &dir, counts, jobs)?);
    }
    let t = Instant::now();
    let first_cell = std::sync::OnceLock::new();
    let whole = pipeline::gather(sh, root, &opts, &prepared, &|e| {
        if let pipeline::RunEvent::Run(_, runner::Event::Record(model::stream::Record::Cell { .. })) = e {
            first_cell.get_or_init(|| t.elapsed().as_secs_f64());
        }
    });
    let matrix_s = t.elapsed().as_secs_f64();
    let matrix_error = whole.err().map(|e| format!("{e:#}"));
    let cpus = crate::util::cores();
    let (floor_s, longest, longest_s) = floors(&mut out, &opts.results_dir(), cpus);
    let over_floor = match (&matrix_error, out.values().any(|k| k.incomplete.is_some())) {
        (None, false) => matrix_s / floor_s.max(longest_s),
        _ => f64::NAN,
    };
    // The whole matrix again without the clients family (and, after the first pair, with it), each
    // run in a folder of its own so the first run's results, the floors', stay as they are.
    let first = if matrix_error.is_none() { matrix_s } else { f64::NAN };
    let mut without_s = Vec::new();
    let matrix_pairs = paired(first, counts.matrix_pairs, &mut |i, with| {
        let mut o = opts.clone();
        let (what, args) = half(with);
        o.out = dir.join("matrix-pairs").join(i.to_string()).join(what);
        o.logs = o.out.join("logs");
        o.run.suite_args.extend(args);
        let t = Instant::now();
        let s = match pipeline::gather(sh, root, &o, &prepared, &|_| {}) {
            Ok(_) => t.elapsed().as_secs_f64(),
            Err(e) => {
                eprintln!("bench: the whole matrix {what} (pair {i}) did not complete, so that pair has no figure: {e:#}");
                f64::NAN
            }
        };
        if !with {
            without_s.push(s);
        }
        Ok(s)
    })?;
    let bench = Bench {
        date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        machine: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        cpus,
        jobs,
        // Each architecture's QEMU (`--qemu [ARCH=]PATH`), this machine's first.
        qemu: std::iter::once(model::arch::Arch::native())
            .chain(arches.iter().copied())
            .map(|a| format!("{a}: {}", crate::boot::qemu::version(&opts.run.qemu_for(a))))
            .collect::<Vec<_>>()
            .join("; "),
        kernels: out,
        matrix_s,
        matrix_error,
        host: opts.host,
        first_cell_s: first_cell.get().copied().unwrap_or(f64::NAN),
        floor_s,
        longest_s,
        longest,
        over_floor,
        matrix_clients_growth: growth(&matrix_pairs, &without_s),
        matrix_clients_pairs_s: matrix_pairs,
        matrix_without_clients_s: without_s,
    };
    print_table(&bench, &prepared);
    save(&root.join("target/bench.toml"), None, toml::Table::try_from(&bench)?)?;
    println!("wrote target/bench.toml");
    Ok(())
}

/// A kernel's image and what getting it took.
struct Fetched {
    image: crate::inputs::fleet::Image,
    /// A build (its cold time is `cargo xtask images build`'s, as recorded), not a Debian image.
    build: bool,
    cold_s: f64,
    cached_s: f64,
    /// A build fetched from a binary cache of itself (NaN: a Debian image, or not measured).
    binary_s: f64,
    /// What the build reused of ccache, as recorded when it was built.
    reuse: Option<crate::inputs::buildroot::CcacheStats>,
    compiled: Option<u64>,
    incremental: bool,
}

/// A Debian image fetched cold (its cached image and .deb dropped first) and then from the cache;
/// a build looked up twice (built first if it is not cached; its cold time is the one recorded).
fn fetch(
    sh: &Shell,
    root: &Path,
    fleet: &Fleet,
    apt: &mut crate::inputs::apt::LazyApt,
    id: &KernelId,
    pin: Option<&crate::inputs::fleet::Pin>,
) -> Result<Fetched> {
    let cache = Cache::new(root);
    let Some(pin) = pin else {
        // A build: its cold time is `cargo xtask images build`'s (not redone here: minutes);
        // the cached time is the warm lookup the matrix makes.
        let mut image =
            || crate::inputs::builds::image(sh, root, fleet, id, apt, &mut crate::util::cores, &mut |_| {});
        let built_image = image()?;
        let t = Instant::now();
        image()?;
        let cached_s = t.elapsed().as_secs_f64();
        let built = crate::inputs::builds::cold_build(root, fleet, id);
        return Ok(Fetched {
            image: built_image,
            build: true,
            cold_s: built.map_or(f64::NAN, |b| b.secs),
            cached_s,
            binary_s: binary_cached(root, fleet, id)?,
            reuse: built.and_then(|b| b.ccache),
            compiled: built.and_then(|b| b.compiled),
            incremental: built.is_some_and(|b| b.incremental),
        });
    };
    let _ = std::fs::remove_dir_all(cache.dir.join("images").join(id));
    // The kernel's package and, where it has one of its own, its configuration's (Debian 7.x).
    let prefixes: Vec<String> = std::iter::once(&pin.package)
        .chain(pin.config.as_ref().map(|c| &c.package))
        .map(|p| format!("{p}_"))
        .collect();
    for e in std::fs::read_dir(apt.for_arch(pin.arch).debs_dir()).into_iter().flatten().flatten() {
        if prefixes.iter().any(|p| e.file_name().to_string_lossy().starts_with(p.as_str())) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let t = Instant::now();
    let image = cache.fetch(sh, id, pin, apt)?;
    let cold_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    cache.fetch(sh, id, pin, apt)?;
    Ok(Fetched {
        image,
        build: false,
        cold_s,
        cached_s: t.elapsed().as_secs_f64(),
        binary_s: f64::NAN,
        reuse: None,
        compiled: None,
        incremental: false,
    })
}

/// Build `id` as the binary cache gives it: its cached entry published into
/// `target/uffdc/bench/binaries/`, then fetched from there (`file://`) and verified into a scratch
/// cache folder, timed; NaN when it is not cached (`fetch` built it just before, so only a build
/// that failed).
fn binary_cached(root: &Path, fleet: &Fleet, id: &str) -> Result<f64> {
    let dir = root.join("target/uffdc/bench");
    let (published, scratch) = (dir.join("binaries"), dir.join("binary-cache"));
    for d in [&published, &scratch] {
        let _ = std::fs::remove_dir_all(d);
    }
    let Some(entry) = crate::inputs::builds::published(root, fleet, id) else { return Ok(f64::NAN) };
    crate::inputs::bincache::publish(&Cache::new(root).dir.join("builds"), &[entry], &published)?;
    let url = format!("file://{}", published.display());
    let t = Instant::now();
    let mut why = String::new();
    let came = crate::inputs::builds::fetch_published(root, fleet, id, Some(&url), &scratch, &mut |l| {
        why = l.to_string()
    })?;
    let secs = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&scratch);
    anyhow::ensure!(came, "{id}: its own published entry did not come back from the binary cache: {why}");
    Ok(secs)
}

/// One kernel's bare boot, its `boots` bare boots (when asked) and its suite run.
fn bench_kernel(
    id: &KernelId,
    fetched: &Fetched,
    settings: &Settings,
    prepared: &Prepared,
    dir: &Path,
    counts: Counts,
    jobs: usize,
) -> Result<KernelBench> {
    let boots = counts.boots;
    let image = &fetched.image;
    let settings = |args: Vec<String>| Settings { suite_args: args, ..settings.clone() };
    let bare = runner::run_guest(
        image,
        &prepared.initrd_for(image)?,
        &settings(vec!["--power-off".into()]),
        &dir.join("bare").join(id),
        &mut |_| {},
    )?;
    let boots = (boots > 0).then(|| {
        count_boots(
            image,
            prepared,
            &settings(vec!["--power-off".into()]),
            &dir.join("boots").join(id),
            boots,
            jobs,
        )
    });
    let real = runner::run_guest(
        image,
        &prepared.initrd_for(image)?,
        &settings(Vec::new()),
        &dir.join("real").join(id),
        &mut |_| {},
    )?;
    let secs = |ms: Option<u64>| ms.unwrap_or(0) as f64 / 1000.0;
    let clients_pairs_s = if fetched.build || counts.clients_pairs == 0 {
        Vec::new()
    } else {
        clients_pairs(&real, counts.clients_pairs, &mut |i, with| {
            let (what, args) = half(with);
            runner::run_guest(
                image,
                &prepared.initrd_for(image)?,
                &settings(args),
                &dir.join(what).join(i.to_string()).join(id),
                &mut |_| {},
            )
        })?
    };
    let incomplete = [("bare boot", &bare), ("suite run", &real)].iter().find_map(|(what, r)| {
        (r.kernel.status != model::RunStatus::Complete)
            .then(|| format!("the {what} did not complete: {}", r.kernel.reason.as_deref().unwrap_or("?")))
    });
    let (bare_s, suite_s) = (secs(bare.kernel.duration_ms), secs(real.kernel.suite_ms));
    let cpu = |c: &model::Cell| match c.details.get("cpu_ms") {
        Some(model::Detail::Int(ms)) => *ms as u64,
        _ => 0,
    };
    let mut by_cpu: Vec<(&String, u64)> = real.cells.iter().map(|(id, c)| (id, cpu(c))).collect();
    by_cpu.sort_by_key(|(_, ms)| std::cmp::Reverse(*ms));
    Ok(KernelBench {
        release: real.kernel.release.clone(),
        arch: image.arch.to_string(),
        accel: settings(Vec::new()).accel.name().to_string(),
        build: fetched.build,
        fetch_cold_s: fetched.cold_s,
        ccache_hits: fetched.reuse.map(|r| r.hits),
        ccache_misses: fetched.reuse.map(|r| r.misses),
        compiled: fetched.compiled,
        incremental: fetched.incremental,
        binary_cached_s: fetched.binary_s,
        fetch_cached_s: fetched.cached_s,
        bare_boot_s: bare_s,
        init_s: secs(real.kernel.init_ms),
        suite_s,
        probes_cpu_s: by_cpu.iter().map(|(_, ms)| ms).sum::<u64>() as f64 / 1000.0,
        heaviest: by_cpu.iter().take(3).map(|(id, ms)| format!("{id} {ms}")).collect(),
        clients_s: median(&clients_pairs_s),
        clients_pairs_s,
        clients_cpu_s: by_cpu
            .iter()
            .filter(|(id, _)| id.starts_with("clients."))
            .map(|(_, ms)| ms)
            .sum::<u64>() as f64
            / 1000.0,
        selftests_s: 0.0,
        column_floor_s: f64::NAN,
        total_s: secs(real.kernel.duration_ms),
        suite_over_bare: if bare_s > 0.0 && incomplete.is_none() { suite_s / bare_s } else { f64::NAN },
        incomplete,
        boots,
    })
}

fn print_table(b: &Bench, _: &Prepared) {
    println!(
        "{:<26} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}  s/b<={SUITE_OVER_BARE}",
        "kernel", "cold", "cached", "bare", "init", "suite", "cpu", "total", "s/b"
    );
    for (id, k) in &b.kernels {
        println!(
            "{id:<26} {:>6.1} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>6.2}  {}",
            k.fetch_cold_s,
            k.fetch_cached_s,
            k.bare_boot_s,
            k.init_s,
            k.suite_s,
            k.probes_cpu_s,
            k.total_s,
            k.suite_over_bare,
            verdict(k.suite_over_bare, SUITE_OVER_BARE)
        );
    }
    for (id, k) in &b.kernels {
        if let Some(why) = &k.incomplete {
            println!("  {id:<26} no verdict: {why}");
        }
    }
    println!(
        "cold: a Debian image fetched from the mirror; a build configured and compiled, a variant (one \
         over another build of its source, or that reused ccache) in <= {VARIANT_BUILD_S}s; then the \
         same build from the binary cache (published here, fetched from file://, verified) and the \
         cached lookup"
    );
    for (id, k) in b.kernels.iter().filter(|(_, k)| k.build) {
        let (kind, verdict) = match (k.fetch_cold_s, k.ccache_hits.zip(k.ccache_misses)) {
            (s, _) if s.is_nan() => ("build", "not recorded (built before build times were)".to_string()),
            (_, None) => ("build", "no ccache counts (built before ccache was used)".to_string()),
            (_, Some((0, m))) if !k.incremental => ("cold build", format!("nothing reused ({m} compiled)")),
            (s, Some((h, m))) => (
                "variant",
                format!(
                    "{}ccache answered {h} of {} compilations; {}",
                    k.compiled.map_or(String::new(), |c| format!("{c} files compiled, ")),
                    h + m,
                    if s <= VARIANT_BUILD_S { "met" } else { "MISSED" }
                ),
            ),
        };
        println!(
            "  {id:<26} {kind:<10} {:>6.1}s  binary cache {:>5.2}s  cached {:>5.2}s  {verdict}",
            k.fetch_cold_s, k.binary_cached_s, k.fetch_cached_s
        );
    }
    if b.kernels.values().any(|k| !k.clients_pairs_s.is_empty()) {
        println!(
            "clients family: the suite with it minus without it (median of {} alternated pairs), \
             target <= {CLIENTS_ADD_S}s on a Debian kernel; its probes' CPU:",
            b.kernels.values().map(|k| k.clients_pairs_s.len()).max().unwrap_or(0)
        );
        for (id, k) in b.kernels.iter().filter(|(_, k)| !k.clients_pairs_s.is_empty()) {
            let pairs: Vec<String> = k.clients_pairs_s.iter().map(|s| format!("{s:+.2}")).collect();
            println!(
                "  {id:<26} {:>+6.2}s  ({})  cpu {:>5.2}s  {}",
                k.clients_s,
                pairs.join(" "),
                k.clients_cpu_s,
                verdict(k.clients_s, CLIENTS_ADD_S)
            );
        }
    }
    println!("cpu: the probe processes' CPU time; the heaviest, ms:");
    for (id, k) in &b.kernels {
        println!("  {id:<26} {}", k.heaviest.join(", "));
    }
    if b.kernels.values().any(|k| k.boots.is_some()) {
        println!("{:<20} {:>6} {:>6} {:>7} {:>8}  why", "kernel", "boots", "failed", "rate", "median");
        for (id, k) in &b.kernels {
            if let Some(boots) = &k.boots {
                let why: Vec<String> = boots.why.iter().map(|(w, n)| format!("{n}x {w}")).collect();
                println!(
                    "{id:<20} {:>6} {:>6} {:>6.1}% {:>7.2}s  {}",
                    boots.tried,
                    boots.failed,
                    100.0 * f64::from(boots.failed) / f64::from(boots.tried.max(1)),
                    boots.median_s,
                    why.join("; ")
                );
            }
        }
    }
    println!("qemu: {}", b.qemu);
    println!("work floor per column: bare boot + suite cpu + selftests, s:");
    for (id, k) in &b.kernels {
        let (bare, cpu, own, all) = (k.bare_boot_s, k.probes_cpu_s, k.selftests_s, k.column_floor_s);
        println!("  {id:<26} {bare:>6.2} + {cpu:>6.2} + {own:>6.2} = {all:>6.2}");
    }
    if let Some(e) = &b.matrix_error {
        println!("the whole-matrix run did not complete, so it has no verdict: {e}");
    }
    println!(
        "matrix of {} kernels{}, {} at once, {} cpus ({}): {:.1}s, first cell after {:.1}s; floor (column floors / cpus) {:.1}s, longest column {:.1}s ({}); {:.2}x the floor (target <= {OVER_FLOOR}x: {})",
        b.kernels.len(),
        if b.host { " and the host" } else { "" },
        b.jobs,
        b.cpus,
        b.kernels.values().next().map_or("-", |k| k.accel.as_str()),
        b.matrix_s,
        b.first_cell_s,
        b.floor_s,
        b.longest_s,
        b.longest,
        b.over_floor,
        verdict(b.over_floor, OVER_FLOOR)
    );
    if !b.matrix_clients_pairs_s.is_empty() {
        let pairs: Vec<String> = b
            .matrix_clients_pairs_s
            .iter()
            .zip(&b.matrix_without_clients_s)
            .map(|(d, w)| format!("{d:+.1}s over {w:.1}s"))
            .collect();
        println!(
            "clients family, whole matrix: {:+.1}% (median of {} alternated pairs: {}); a guest of its own may add <= {:.0}%: {}",
            100.0 * b.matrix_clients_growth,
            pairs.len(),
            pairs.join(", "),
            100.0 * CLIENTS_MATRIX_GROWTH,
            verdict(b.matrix_clients_growth, CLIENTS_MATRIX_GROWTH)
        );
    }
}

/// Each column's work floor, with its selftests' time from the whole-matrix run's results in
/// `results`; the matrix's floor (their sum over `cpus`), and the longest column with its floor.
fn floors(out: &mut BTreeMap<KernelId, KernelBench>, results: &Path, cpus: usize) -> (f64, String, f64) {
    for (id, k) in out.iter_mut() {
        let file = results.join(format!("{id}.toml"));
        k.selftests_s = model::data::load(&file).map_or(f64::NAN, |r| selftests_s(&r));
        k.column_floor_s = k.bare_boot_s + k.probes_cpu_s + k.selftests_s;
    }
    let floor_s = out.values().map(|k| k.column_floor_s).sum::<f64>() / cpus as f64;
    let (longest, longest_s) = out
        .iter()
        .map(|(id, k)| (id.to_string(), k.column_floor_s))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_default();
    (floor_s, longest, longest_s)
}

/// The time of a column's own selftests: each program's (`program_us`, shared by every case it
/// reported) once.
fn selftests_s(results: &model::Results) -> f64 {
    let programs: BTreeMap<String, i64> = results
        .cells
        .iter()
        .filter(|(id, _)| id.starts_with("selftests."))
        .filter_map(|(_, c)| match (c.details.get("program"), c.details.get("program_us")) {
            (Some(model::Detail::Text(p)), Some(model::Detail::Int(us))) => Some((p.clone(), *us)),
            _ => None,
        })
        .collect();
    programs.values().sum::<i64>() as f64 / 1e6
}

/// The section of `target/bench.toml` that `--cold` writes.
const COLD: &str = "cold";

/// Writes `table` into `file`: as its `section`, the rest of the file kept (`--cold`), or as the
/// whole file, its `cold` section kept (the warm bench): each measurement replaces only its own.
fn save(file: &Path, section: Option<&str>, table: toml::Table) -> Result<()> {
    let old: toml::Table =
        std::fs::read_to_string(file).ok().and_then(|t| t.parse().ok()).unwrap_or_default();
    let new = match section {
        Some(section) => {
            let mut all = old;
            all.insert(section.to_string(), toml::Value::Table(table));
            all
        }
        None => {
            let mut all = table;
            if let Some(cold) = old.get(COLD) {
                all.insert(COLD.to_string(), cold.clone());
            }
            all
        }
    };
    crate::util::write_atomic(file, toml::to_string(&new)?.as_bytes())
}

/// `met`, `MISSED`, or `n/a` for a figure that does not exist (a run that did not complete).
fn verdict(figure: f64, at_most: f64) -> &'static str {
    match figure {
        f if f.is_nan() => "n/a",
        f if f <= at_most => "met",
        _ => "MISSED",
    }
}

/// Boots `image` bare `n` times, `jobs` at once, and counts the boots that did not reach init.
fn count_boots(
    image: &crate::inputs::fleet::Image,
    prepared: &Prepared,
    settings: &Settings,
    dir: &Path,
    n: u32,
    jobs: usize,
) -> Boots {
    let next = std::sync::atomic::AtomicU32::new(0);
    let seen = std::sync::Mutex::new((Boots { tried: n, ..Boots::default() }, Vec::new()));
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let run = runner::run_guest(
                    image,
                    &prepared.initrd,
                    settings,
                    &dir.join(i.to_string()),
                    &mut |_| {},
                );
                let mut seen = seen.lock().unwrap();
                match run {
                    Ok(r) if r.kernel.status == model::RunStatus::Complete => {
                        seen.1.push(r.kernel.duration_ms.unwrap_or(0) as f64 / 1000.0)
                    }
                    Ok(r) => {
                        seen.0.failed += 1;
                        let why = r.kernel.reason.unwrap_or_default();
                        let why = why.split(" (after").next().unwrap_or("").to_string();
                        *seen.0.why.entry(why).or_default() += 1;
                    }
                    Err(e) => {
                        seen.0.failed += 1;
                        *seen.0.why.entry(format!("{e:#}")).or_default() += 1;
                    }
                }
            });
        }
    });
    let (mut boots, mut times) = seen.into_inner().unwrap();
    times.sort_by(f64::total_cmp);
    boots.median_s = times.get(times.len() / 2).copied().unwrap_or(0.0);
    boots
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--qemu [ARCH=]PATH` as matrix reads it (`Settings::set_qemus`; matrix's tests cover it whole).
    #[test]
    fn bench_takes_a_qemu_per_architecture() {
        let arm = crate::boot::qemu::stand_in("bench-qemu", "qemu-system-aarch64", "10.0.2", "aarch64");
        let bench = |args: &[&str]| {
            let args = std::iter::once("bench").chain(args.iter().copied()).map(Into::into).collect();
            match crate::flags::parse(args).unwrap().subcommand {
                crate::flags::XtaskCmd::Bench(b) => options(&crate::util::project_root(), b),
                _ => unreachable!(),
            }
        };
        let (o, _) = bench(&["--qemu", &arm]).unwrap();
        assert_eq!(o.run.qemu_arm64.display().to_string(), arm);
        assert_eq!(o.run.qemu, Settings::default().qemu);
        let e = bench(&["--qemu", &format!("x86_64={arm}")]).unwrap_err().to_string();
        assert!(e.contains("that QEMU emulates aarch64, not x86_64") && !e.contains('\n'), "{e}");
    }

    /// A run that did not complete has no figure, and no figure meets no target (a failed bare
    /// boot once showed `s/b 0.00 met`).
    #[test]
    fn a_missing_figure_is_not_a_met_target() {
        assert_eq!(verdict(0.5, 0.75), "met");
        assert_eq!(verdict(0.75, 0.75), "met");
        assert_eq!(verdict(0.8, 0.75), "MISSED");
        assert_eq!(verdict(f64::NAN, 0.75), "n/a");
    }

    /// The warm bench and `--cold` each replace only their own part of `target/bench.toml`.
    #[test]
    fn each_bench_keeps_the_others_section() {
        let dir = crate::util::project_root().join("target/uffdc/test/bench-save");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bench.toml");
        let table = |text: &str| -> toml::Table { text.parse().unwrap() };
        save(&file, None, table("matrix_s = 1.0\n")).unwrap();
        save(&file, Some(COLD), table("whole_s = 2.0\n")).unwrap();
        save(&file, None, table("matrix_s = 3.0\n")).unwrap();
        assert_eq!(
            table(&std::fs::read_to_string(&file).unwrap()),
            table("matrix_s = 3.0\n[cold]\nwhole_s = 2.0\n")
        );
        save(&file, Some(COLD), table("whole_s = 4.0\n")).unwrap();
        assert_eq!(
            table(&std::fs::read_to_string(&file).unwrap()),
            table("matrix_s = 3.0\n[cold]\nwhole_s = 4.0\n")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// What the clients family adds is the median of the pairs' differences, the first pair's
    /// "with" half the real run already made; a run that did not complete leaves no figure.
    #[test]
    fn the_clients_family_costs_the_median_pair() {
        let run = |suite_ms: u64, complete: bool| {
            let mut r = model::Results {
                schema: model::data::SCHEMA,
                kernel: model::RunInfo::default(),
                cells: BTreeMap::new(),
            };
            r.kernel.suite_ms = Some(suite_ms);
            r.kernel.status =
                if complete { model::RunStatus::Complete } else { model::RunStatus::Incomplete };
            r
        };
        let mut asked = Vec::new();
        let with = [0, 9_000, 8_000];
        let without = [7_000, 7_500, 7_250];
        let pairs = clients_pairs(&run(8_500, true), 3, &mut |i, w| {
            asked.push((i, w));
            Ok(run(if w { with[i] } else { without[i] }, true))
        })
        .unwrap();
        assert_eq!(asked, [(0, false), (1, true), (1, false), (2, true), (2, false)]);
        assert_eq!(pairs, [1.5, 1.5, 0.75]);
        assert_eq!(median(&pairs), 1.5);
        assert_eq!(median(&[0.5, 1.0]), 0.75);
        let pairs = clients_pairs(&run(8_500, true), 2, &mut |_, w| Ok(run(7_000, w))).unwrap();
        assert!(pairs.iter().all(|p| p.is_nan()) && median(&pairs).is_nan(), "{pairs:?}");
        assert_eq!(verdict(median(&pairs), CLIENTS_ADD_S), "n/a");
        // The whole matrix: each pair's difference over its own run without the family.
        assert_eq!(growth(&[10.0, 30.0, 3.0], &[100.0, 150.0, 100.0]), 0.1);
        assert!(growth(&[10.0, f64::NAN], &[100.0, 120.0]).is_nan());
        assert!(growth(&[], &[]).is_nan());
    }

    /// A program's time counts once, however many cases it reported; the suite's cells not at all.
    #[test]
    fn a_columns_selftests_count_each_program_once() {
        let cell = |program: &str, us: i64| {
            let mut c = model::Cell::missing("");
            c.details.insert("program".into(), model::Detail::Text(program.into()));
            c.details.insert("program_us".into(), model::Detail::Int(us));
            c
        };
        let mut r = model::Results {
            schema: model::data::SCHEMA,
            kernel: model::RunInfo::default(),
            cells: BTreeMap::new(),
        };
        r.cells.insert("selftests.unit_a".into(), cell("uffd-unit-tests", 2_000_000));
        r.cells.insert("selftests.unit_b".into(), cell("uffd-unit-tests", 2_000_000));
        r.cells.insert("selftests.stress_anon".into(), cell("uffd-stress anon 8 4", 500_000));
        r.cells.insert("api.features".into(), cell("not a selftest", 9_000_000));
        assert_eq!(selftests_s(&r), 2.5);
    }
}
