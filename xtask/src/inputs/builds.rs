//! `cargo xtask images build [ID]...`: kernels the project builds from Debian's source packages
//! (the `builds` of `images/kernels.toml`), so the matrix has a configuration axis: the same source
//! built with the base configuration (`images/configs/base.config`) and with each difference a
//! build track names.
//!
//! A build: the source package's pin (`images/kernels.lock`, `[sources]`) is fetched with the
//! private apt and verified, its tarball unpacked once into the pinned toolchain's root
//! (`buildroot.rs`); `make allnoconfig` with the base configuration and the track's options
//! (`KCONFIG_ALLCONFIG`) resolves the `.config`, which must hold every option asked for
//! (`kconfig.rs`); then `make bzImage` in the source's one output tree, where kbuild recompiles
//! only what the configuration's changes reach, through ccache.
//! The result is cached under `~/.cache/uffd-conformance/builds/kernels/<key>/`, the key over the source's
//! sha256, the toolchain's pins and the resolved `.config`; an index from the inputs (the pins, the
//! base configuration, the options) to that key makes a warm build a lookup that needs neither the
//! source nor the toolchain. A cached bzImage is re-hashed before each use.

use crate::inputs::apt::LazyApt;
use crate::inputs::bincache;
use crate::inputs::buildroot::{self, BuildRoot};
use crate::inputs::debs;
use crate::inputs::fleet::{Cache, Fleet, Image, KernelId, SourcePin, LOCK};
use crate::inputs::kconfig::{check_resolved, fragment, set_options, value_of, BASE};
use crate::inputs::pin::{self, DebPin};
use crate::util::{sha256_file, short_hash};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use xshell::Shell;

const REFRESH: &str = "cargo xtask images refresh";
/// Bumped when how a build is made changes (the make invocation, the layout of the cache).
/// 2: a fixed KBUILD_BUILD_TIMESTAMP, so the same inputs give the same bzImage.
const RECIPE: &str = "uffdc kernel build 2";

/// What a cached build recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    release: String,
    bzimage_sha256: String,
    build: model::data::Build,
    /// How long configuring and compiling took when it was built (ms, with `jobs` jobs, in the
    /// source's output tree as the build before it left it, through ccache), which
    /// `cargo xtask bench` reports (it does not rebuild).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    built_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jobs: Option<usize>,
    /// Compilations of that build answered by ccache and compiled anew: what a configuration
    /// variant reused of the builds before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ccache_hits: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ccache_misses: Option<u64>,
    /// The files make compiled (its `CC` lines, ccache's answers among them): fewer than a
    /// build in an empty tree when the output tree held a build of the same source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    compiled: Option<u64>,
    /// Whether the output tree held an earlier build of the source (kbuild then recompiled only
    /// what the configuration's changes reach).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    incremental: Option<bool>,
}

/// The index entry from a build's inputs to its cached kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Inputs {
    kernel: String,
}

fn builds_dir(root: &Path) -> PathBuf {
    Cache::new(root).dir.join("builds")
}

/// A key over what a build is made from: its source's pin, the toolchain's pins, the base
/// configuration and the track's options (so the scheduled workflow can key its cache on it
/// before building anything).
pub fn inputs_key(root: &Path, fleet: &Fleet, id: &str) -> Result<String> {
    let track = fleet.builds.get(id).with_context(|| format!("unknown build {id:?}"))?;
    let pin = fleet.lock.sources.get(&track.source).with_context(|| {
        format!("build {id:?}: its source {} has no pin in {LOCK}: run `{REFRESH}`", track.source)
    })?;
    let base = std::fs::read_to_string(root.join(BASE)).with_context(|| format!("cannot read {BASE}"))?;
    let toolchain = buildroot::load(root)?;
    Ok(short_hash(
        format!(
            "{RECIPE}\n{}\n{}\n{}",
            toml::to_string(pin)?,
            toml::to_string(&toolchain)?,
            fragment(&base, id, track)
        )
        .as_bytes(),
    ))
}

/// `cargo xtask images build [ID]...`: builds (or finds in the cache) each build track.
pub fn run(sh: &Shell, root: &Path, fleet: &Fleet, apt: &mut LazyApt, ids: &[KernelId]) -> Result<()> {
    let ids: Vec<KernelId> =
        if ids.is_empty() { fleet.builds.keys().cloned().collect() } else { ids.to_vec() };
    for id in &ids {
        let started = std::time::Instant::now();
        let image = image(sh, root, fleet, id, apt, &mut crate::util::cores, &mut |line| {
            eprintln!("build   {id}: {line}")
        })?;
        println!(
            "{id:<28} {:<20} {:>6.1}s  {}",
            image.release,
            started.elapsed().as_secs_f64(),
            crate::util::display_path(&image.vmlinuz)
        );
    }
    Ok(())
}

/// The build's kernel: from the cache when these inputs were built before and the bzImage is
/// intact, else built. `progress` is told what happens (stages, compile counts).
pub fn image(
    sh: &Shell,
    root: &Path,
    fleet: &Fleet,
    id: &str,
    apt: &mut LazyApt,
    jobs: &mut dyn FnMut() -> usize,
    progress: &mut dyn FnMut(&str),
) -> Result<Image> {
    let Some(track) = fleet.builds.get(id) else {
        bail!(
            "unknown build {id:?}: {} has builds {}",
            crate::inputs::fleet::TRACKS,
            fleet.builds.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    };
    let Some(pin) = fleet.lock.sources.get(&track.source) else {
        bail!("build {id:?}: its source {} has no pin in {LOCK}: run `{REFRESH}`", track.source);
    };
    let base = std::fs::read_to_string(root.join(BASE)).with_context(|| format!("cannot read {BASE}"))?;
    let fragment = fragment(&base, id, track);
    let dir = builds_dir(root);
    let key = inputs_key(root, fleet, id)?;
    let index = dir.join("inputs").join(format!("{key}.toml"));
    if let Some(image) = from_cache(root, fleet, id) {
        return Ok(image);
    }
    // Someone else's build of the same inputs (the binary cache), verified, before compiling.
    if fetch_published(root, fleet, id, apt.binary_cache.as_deref(), &dir, progress)? {
        if let Some(image) = from_cache(root, fleet, id) {
            return Ok(image);
        }
    }
    std::fs::create_dir_all(&dir)?;
    // One build at a time on a machine: two would only share its cores.
    let _lock = crate::util::lock_or_wait(&dir.join("build.lock"), || progress(crate::util::BUILD_WAIT))?;
    if let Some(image) = from_cache(root, fleet, id) {
        return Ok(image);
    }
    progress("toolchain");
    let broot = buildroot::ensure(sh, root, apt)?;
    progress(&format!("source {} {}", track.source, pin.version));
    let tree = source_tree(sh, &broot, &track.source, pin, apt)?;
    // One output tree per source, shared by its builds: kbuild rebuilds an object when an option
    // its sources and headers mention changed (fixdep records them per object), so a
    // configuration variant recompiles only those; the rest (ccache would have to preprocess each
    // again to find it, and objtool would rerun on it) stays. Measured on build-6.12 and
    // build-6.12-no-pte-marker: 75 of 693 objects recompiled, and the same bzImage as a build in
    // an empty tree, both ways.
    let out = format!("/out/{}", tree.trim_start_matches("/src/"));
    std::fs::create_dir_all(broot.path(&out))?;
    std::fs::write(broot.path(&format!("{out}/uffdc.config")), &fragment)?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let make = |target: &str| -> Vec<String> {
        let mut argv: Vec<String> = ["/usr/bin/make", "-s"].map(String::from).to_vec();
        argv.push(format!("O={out}"));
        argv.push("ARCH=x86_64".into());
        argv.push("CC=ccache gcc".into());
        argv.push("HOSTCC=ccache gcc".into());
        argv.push(target.to_string());
        argv
    };
    let env = vec![
        ("KCONFIG_ALLCONFIG".to_string(), format!("{out}/uffdc.config")),
        ("KBUILD_BUILD_USER".to_string(), "uffdc".to_string()),
        ("KBUILD_BUILD_HOST".to_string(), "uffdc".to_string()),
        ("KBUILD_BUILD_VERSION".to_string(), "1".to_string()),
        // uname -v names the Debian version the source is, as Debian's own kernels do
        // (init/Makefile reads KBUILD_BUILD_VERSION_TIMESTAMP before KBUILD_BUILD_TIMESTAMP).
        ("KBUILD_BUILD_VERSION_TIMESTAMP".to_string(), format!("uffdc build of Debian {}", pin.version)),
        // What else reads the build's date gets a fixed one: usr/gen_initramfs.sh gives the
        // built-in initramfs's entries `date -d "$KBUILD_BUILD_TIMESTAMP"`, or the time of the build
        // when that does not parse (as the version text above does not), which made two builds of
        // the same inputs differ (in .init.data, and so in the build id).
        ("KBUILD_BUILD_TIMESTAMP".to_string(), "@0".to_string()),
    ]
    .into_iter()
    .chain(buildroot::CCACHE.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    .collect::<Vec<_>>();
    let cold = std::time::Instant::now();
    progress("configuring (make allnoconfig with the base configuration and the track's options)");
    broot.run(&tree, &make("allnoconfig"), &env, &logs.join(format!("{id}-config.log")))?;
    let resolved_path = broot.path(&format!("{out}/.config"));
    let resolved = std::fs::read_to_string(&resolved_path)
        .with_context(|| format!("make allnoconfig left no {}", resolved_path.display()))?;
    check_resolved(id, track, &fragment, &resolved, &broot.path(&tree), pin)?;
    let set = set_options(&resolved);
    let kernel = kernel_key(&pin.sha256, &broot.key, &set);
    if let Some(image) = cached(root, id, &kernel) {
        crate::util::write_atomic(&index, toml::to_string(&Inputs { kernel })?.as_bytes())?;
        return Ok(image);
    }
    let jobs = jobs();
    progress(&format!(
        "make -j{jobs} bzImage (log: {})",
        crate::util::display_path(&logs.join(format!("{id}.log")))
    ));
    let mut argv = make("bzImage");
    argv.insert(1, format!("-j{jobs}"));
    argv.retain(|a| a != "-s");
    argv.push("V=0".into());
    let before = broot.ccache_stats()?;
    let incremental = broot.path(&format!("{out}/vmlinux")).exists();
    let compiled = compile(&broot, &tree, &argv, &env, &logs.join(format!("{id}.log")), progress)?;
    let reused = broot.ccache_stats()?.since(before);
    let release_argv = make("kernelrelease");
    let release = broot.command(&tree, &release_argv, &env)?.output().context("make kernelrelease")?;
    let release = String::from_utf8_lossy(&release.stdout).trim().to_string();
    if release.is_empty() {
        bail!("build {id}: `make kernelrelease` printed nothing");
    }
    let bzimage = std::fs::read(broot.path(&format!("{out}/arch/x86/boot/bzImage")))
        .with_context(|| format!("build {id}: make bzImage left no arch/x86/boot/bzImage"))?;
    let base_sha = short_hash(base.as_bytes());
    let differs: Vec<String> =
        track.options.keys().map(|k| format!("{k}={}", value_of(&resolved, k))).collect();
    let entry = Entry {
        release,
        bzimage_sha256: hex_sha(&bzimage),
        build: model::data::Build {
            source: format!("{} {} ({}, deb sha256 {})", track.source, pin.version, pin.suite, pin.sha256),
            base: format!("{BASE} (sha256 {base_sha}…)"),
            differs,
            toolchain: format!("{} ({} {})", broot.compiler, buildroot::LOCK, broot.key),
            config_sha256: hex_sha(resolved.as_bytes()),
            config: set,
        },
        built_ms: Some(cold.elapsed().as_millis() as u64),
        jobs: Some(jobs),
        ccache_hits: Some(reused.hits),
        ccache_misses: Some(reused.misses),
        compiled: Some(compiled),
        incremental: Some(incremental),
    };
    let kdir = dir.join("kernels").join(&kernel);
    let _ = std::fs::remove_file(kdir.join("build.toml"));
    crate::util::write_atomic(&kdir.join("bzImage"), &bzimage)?;
    crate::util::write_atomic(&kdir.join("config"), resolved.as_bytes())?;
    crate::util::write_atomic(&kdir.join("build.toml"), toml::to_string(&entry)?.as_bytes())?;
    crate::util::write_atomic(&index, toml::to_string(&Inputs { kernel: kernel.clone() })?.as_bytes())?;
    cached(root, id, &kernel).context("the build just cached does not verify")
}

/// The key a built kernel is cached under: over its source's sha256, the toolchain's key and the
/// options its resolved `.config` sets.
fn kernel_key(source_sha256: &str, toolchain: &str, set: &[String]) -> String {
    short_hash(format!("{RECIPE}\n{source_sha256}\n{toolchain}\n{}", set.join("\n")).as_bytes())
}

/// The build's kernel from the cache, when these inputs were built before and it is intact.
pub fn from_cache(root: &Path, fleet: &Fleet, id: &str) -> Option<Image> {
    let index = builds_dir(root).join("inputs").join(format!("{}.toml", inputs_key(root, fleet, id).ok()?));
    let inputs: Inputs = toml::from_str(&std::fs::read_to_string(index).ok()?).ok()?;
    cached(root, id, &inputs.kernel)
}

/// Build `id`'s kernel from the binary cache at `url` into the cache folder `builds` (the per-user
/// cache's `builds/`, or bench's scratch one), verified; whether it came (a miss is told to
/// `progress`, in one line saying why).
pub fn fetch_published(
    root: &Path,
    fleet: &Fleet,
    id: &str,
    url: Option<&str>,
    builds: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<bool> {
    let key = inputs_key(root, fleet, id)?;
    let valid = |staged: &Path| fetched_is_valid(root, fleet, id, &key, staged);
    Ok(bincache::fetch(url, builds, bincache::Kind::Kernel, &key, &valid, progress))
}

/// A kernel from the binary cache, unpacked into `staged` (laid out as the cache's `builds/`), is
/// what its input key says: its record is intact (the bzImage has the sha256 it records) and its
/// `.config` with this checkout's source and toolchain pins gives the kernel key it is filed under.
fn fetched_is_valid(root: &Path, fleet: &Fleet, id: &str, key: &str, staged: &Path) -> bool {
    let valid = || -> Option<bool> {
        let inputs: Inputs =
            toml::from_str(&std::fs::read_to_string(staged.join("inputs").join(format!("{key}.toml"))).ok()?)
                .ok()?;
        let kdir = staged.join("kernels").join(&inputs.kernel);
        cached_in(&kdir, id)?;
        let pin = fleet.lock.sources.get(&fleet.builds.get(id)?.source)?;
        let config = std::fs::read_to_string(kdir.join("config")).ok()?;
        let toolchain = buildroot::load(root).ok()?.key().ok()?;
        Some(kernel_key(&pin.sha256, &toolchain, &set_options(&config)) == inputs.kernel)
    };
    valid() == Some(true)
}

/// What the cache holds of build `id`, to publish in the binary cache: its input record and its
/// kernel's folder, when they are there and intact.
pub fn published(root: &Path, fleet: &Fleet, id: &str) -> Option<bincache::Entry> {
    let key = inputs_key(root, fleet, id).ok()?;
    let dir = builds_dir(root);
    let inputs: Inputs =
        toml::from_str(&std::fs::read_to_string(dir.join("inputs").join(format!("{key}.toml"))).ok()?)
            .ok()?;
    cached(root, id, &inputs.kernel)?;
    let mut files = vec![format!("inputs/{key}.toml")];
    files.extend(bincache::files_in(&dir, &format!("kernels/{}", inputs.kernel))?);
    Some(bincache::Entry { kind: bincache::Kind::Kernel, key, id: id.to_string(), files })
}

/// How a cached build was made: how long configuring and compiling took, and how many of its
/// compilations ccache answered (`None` for a build made before ccache was used).
#[derive(Clone, Copy, Debug)]
pub struct BuildTime {
    pub secs: f64,
    pub ccache: Option<crate::inputs::buildroot::CcacheStats>,
    /// The files make compiled (`None` for a build made before that was recorded).
    pub compiled: Option<u64>,
    /// Whether it was built over an earlier build of its source.
    pub incremental: bool,
}

/// How the cached build of `id` was made; `None` when it is not cached or was built before build
/// times were recorded.
pub fn cold_build(root: &Path, fleet: &Fleet, id: &str) -> Option<BuildTime> {
    let key = inputs_key(root, fleet, id).ok()?;
    let dir = builds_dir(root);
    let inputs: Inputs =
        toml::from_str(&std::fs::read_to_string(dir.join("inputs").join(format!("{key}.toml"))).ok()?)
            .ok()?;
    let entry: Entry = toml::from_str(
        &std::fs::read_to_string(dir.join("kernels").join(&inputs.kernel).join("build.toml")).ok()?,
    )
    .ok()?;
    let ccache = entry
        .ccache_hits
        .zip(entry.ccache_misses)
        .map(|(hits, misses)| crate::inputs::buildroot::CcacheStats { hits, misses });
    Some(BuildTime {
        secs: entry.built_ms? as f64 / 1000.0,
        ccache,
        compiled: entry.compiled,
        incremental: entry.incremental.unwrap_or(false),
    })
}

/// A cached build, when its record is there and its bzImage still has the recorded sha256.
fn cached(root: &Path, id: &str, kernel: &str) -> Option<Image> {
    cached_in(&builds_dir(root).join("kernels").join(kernel), id)
}

/// The build in folder `kdir`, when its record is there and its bzImage has the recorded sha256.
fn cached_in(kdir: &Path, id: &str) -> Option<Image> {
    let entry: Entry = toml::from_str(&std::fs::read_to_string(kdir.join("build.toml")).ok()?).ok()?;
    let vmlinuz = kdir.join("bzImage");
    if sha256_file(&vmlinuz).ok()? != entry.bzimage_sha256 {
        return None;
    }
    let config = kdir.join("config");
    let userfaultfd =
        std::fs::read_to_string(&config).ok().map(|c| value_of(&c, "CONFIG_USERFAULTFD") == "y");
    let what = if entry.build.differs.is_empty() {
        "the base configuration".to_string()
    } else {
        format!("the base configuration with {}", entry.build.differs.join(", "))
    };
    Some(Image {
        id: KernelId::from(id),
        arch: model::arch::Arch::X86_64,
        vmlinuz,
        release: entry.release.clone(),
        userfaultfd,
        config: Some((config, format!("the resolved .config of build {id} ({what})"))),
        source: format!("built {} with {what} ({})", entry.build.source, entry.build.toolchain),
        build: Some(entry.build),
    })
}

/// The source tree, unpacked in the root at `/src/<package>-<version>`, from the verified .deb.
pub fn source_tree(
    sh: &Shell,
    broot: &BuildRoot,
    package: &str,
    pin: &SourcePin,
    apt: &mut LazyApt,
) -> Result<String> {
    let inside = format!("/src/{package}-{}", pin.version.replace([':', '~'], "_"));
    let tree = broot.path(&inside);
    let marker = tree.join(".uffdc-source");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == pin.sha256) {
        return Ok(inside);
    }
    apt.add_suite(buildroot::RELEASE);
    let deb = pin::verified(sh, &pin.deb(package), apt, LOCK, REFRESH)?;
    unpack_source(broot, &deb, &inside)?;
    std::fs::write(&marker, &pin.sha256)?;
    Ok(inside)
}

/// Unpacks a `linux-source-*` .deb's tarball into `inside` (a path in the root), with the
/// root's own tar and xz. A damaged package is named as such.
pub fn unpack_source(broot: &BuildRoot, deb: &Path, inside: &str) -> Result<()> {
    let tree = broot.path(inside);
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(&tree)?;
    let tarball = format!("{inside}.tar.xz");
    let damaged = |why: String| {
        anyhow::anyhow!(
            "{} is damaged ({why}): delete it and rerun to fetch it again, or re-pin with `{REFRESH}`",
            deb.display()
        )
    };
    let mut found = false;
    debs::each_file(deb, |entry| {
        let path = entry.path()?.to_string_lossy().into_owned();
        if path.starts_with("./usr/src/linux-source-") && path.ends_with(".tar.xz") {
            let mut file = std::fs::File::create(broot.path(&tarball))?;
            std::io::copy(entry, &mut file).map_err(|e| damaged(e.to_string()))?;
            found = true;
        }
        Ok(())
    })?;
    if !found {
        bail!(damaged("it holds no /usr/src/linux-source-*.tar.xz".into()));
    }
    let argv: Vec<String> =
        ["/usr/bin/tar", "-xJf", &tarball, "-C", inside, "--strip-components=1"].map(String::from).to_vec();
    let log = broot.path(&format!("{inside}.log"));
    let unpacked = broot.run("/", &argv, &[], &log);
    let _ = std::fs::remove_file(broot.path(&tarball));
    unpacked.map_err(|e| damaged(format!("its tarball does not unpack: {e:#}")))?;
    if !tree.join("Makefile").is_file() || !tree.join("Kconfig").is_file() {
        bail!(damaged("its tarball holds no kernel tree (no Makefile and Kconfig at the top)".into()));
    }
    Ok(())
}

/// Runs the compile, its output in `log`, telling `progress` how many files it compiled (every
/// 500, and at the end); returns that count.
fn compile(
    broot: &BuildRoot,
    tree: &str,
    argv: &[String],
    env: &[(String, String)],
    log: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<u64> {
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut child = broot
        .command(tree, argv, env)?
        .stdin(std::process::Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .spawn()
        .with_context(|| format!("cannot run make in {}", broot.dir.display()))?;
    let mut file = std::fs::File::create(log)?;
    let started = std::time::Instant::now();
    let mut compiled = 0;
    for line in std::io::BufReader::new(std::fs::File::from(reader)).lines() {
        let line = line.unwrap_or_default();
        std::io::Write::write_all(&mut file, format!("{line}\n").as_bytes())?;
        if line.trim_start().starts_with("CC ") {
            compiled += 1;
            if compiled % 500 == 0 {
                progress(&format!("{compiled} files compiled, {:.0}s", started.elapsed().as_secs_f64()));
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "`{}` failed ({status}): {} (whole log: {})",
            argv.join(" "),
            buildroot::tail(log),
            crate::util::display_path(log)
        );
    }
    progress(&format!("{compiled} files compiled in {:.0}s", started.elapsed().as_secs_f64()));
    Ok(compiled)
}

fn hex_sha(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Re-pins the builds' source packages to the newest version in their suites, and pins the source
/// package of every packaged kernel's own version (its selftests are built from it) where no build
/// pins that package.
pub fn refresh(
    sh: &Shell,
    root: &Path,
    fleet: &mut Fleet,
    apt: &mut crate::inputs::apt::LazyApt,
) -> Result<()> {
    let mut sources: BTreeMap<String, (Vec<String>, Option<String>)> = BTreeMap::new();
    for track in fleet.builds.values() {
        sources.entry(track.source.clone()).or_default().0.extend(track.suites.clone());
    }
    for (id, pin) in &fleet.lock.kernels {
        let Some(package) = crate::inputs::fleet::source_package(&pin.version) else { continue };
        if let std::collections::btree_map::Entry::Vacant(e) = sources.entry(package) {
            let suites = fleet.tracks.get(id).map(|t| t.suites.clone()).unwrap_or_default();
            e.insert((suites, Some(pin.version.clone())));
        }
    }
    for (package, (suites, exact)) in sources {
        let apt = apt.get()?;
        let mut best: Option<(String, String)> = None;
        for (version, suite) in apt.versions(sh, &package)? {
            if exact.as_ref().is_none_or(|e| *e == version)
                && suites.contains(&suite)
                && best.as_ref().is_none_or(|(v, _)| crate::inputs::apt::newer(sh, &version, v))
            {
                best = Some((version, suite));
            }
        }
        let Some((version, suite)) = best else {
            if let Some(exact) = exact {
                // Debian does not ship every kernel's own source: those kernels run without
                // their selftests (`cargo xtask matrix` says so).
                println!("{package:<20} {exact} is not in {}: not pinned", suites.join(", "));
                continue;
            }
            bail!("{package}: not in {}: is the mirror complete?", suites.join(", "));
        };
        let pin = SourcePin::of(DebPin::download(sh, apt, &suite, &package, &version)?.1);
        match fleet.lock.sources.get(&package) {
            Some(old) if old == &pin => println!("{package:<20} unchanged: {version}"),
            Some(old) => println!("{package:<20} {} -> {version}", old.version),
            None => println!("{package:<20} pinned {version}"),
        }
        fleet.lock.sources.insert(package, pin);
        fleet.save_lock(root)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "UFFDC_TEST_BINCACHE_CHILD";
    const TEST: &str = "a_published_kernel_is_used_without_compiling_and_a_bad_one_falls_back_to_building";

    /// The binary cache in front of `image`, against a server on 127.0.0.1, each case in a child
    /// process (this test run again with its own per-user cache, `UFFDC_CACHE_DIR`, and binary cache,
    /// `UFFDC_BINARY_CACHE`; a fallback build fails at once, its mirror a folder that does not exist): a
    /// published kernel is used without compiling (no toolchain, no build log, no core asked for);
    /// a corrupt download, one whose `.config` does not give the key it is filed under, and a server
    /// that does not answer each fall back to building with a line saying why; with the binary
    /// cache turned off (`--no-binary-cache`) nothing is asked of the server.
    #[test]
    fn a_published_kernel_is_used_without_compiling_and_a_bad_one_falls_back_to_building() {
        if let Ok(mode) = std::env::var(CHILD) {
            return child(&mode);
        }
        let root = crate::util::project_root();
        let fleet = Fleet::load(&root).unwrap();
        let id = "build-6.12";
        let dir = root.join("target/uffdc/tests/bincache-build");
        let _ = std::fs::remove_dir_all(&dir);
        // A kernel entry as a build leaves it (a stand-in bzImage), published.
        let publish = |name: &str, filed_under: Option<&str>| -> PathBuf {
            let from = dir.join(format!("{name}-builds"));
            let config = "CONFIG_USERFAULTFD=y\nCONFIG_UFFDC_BINCACHE_TEST=y\n";
            let pin = &fleet.lock.sources[&fleet.builds[id].source];
            let toolchain = buildroot::load(&root).unwrap().key().unwrap();
            let kernel = filed_under
                .map(String::from)
                .unwrap_or_else(|| kernel_key(&pin.sha256, &toolchain, &set_options(config)));
            let bzimage = b"a stand-in bzImage".to_vec();
            let entry = Entry {
                release: "6.12.0-uffdc-test".into(),
                bzimage_sha256: hex_sha(&bzimage),
                build: model::data::Build {
                    source: "test".into(),
                    base: "test".into(),
                    differs: Vec::new(),
                    toolchain: "test".into(),
                    config_sha256: hex_sha(config.as_bytes()),
                    config: set_options(config),
                },
                built_ms: None,
                jobs: None,
                ccache_hits: None,
                ccache_misses: None,
                compiled: None,
                incremental: None,
            };
            let key = inputs_key(&root, &fleet, id).unwrap();
            let kdir = from.join("kernels").join(&kernel);
            std::fs::create_dir_all(&kdir).unwrap();
            std::fs::write(kdir.join("bzImage"), &bzimage).unwrap();
            std::fs::write(kdir.join("config"), config).unwrap();
            std::fs::write(kdir.join("build.toml"), toml::to_string(&entry).unwrap()).unwrap();
            crate::util::write_atomic(
                &from.join("inputs").join(format!("{key}.toml")),
                toml::to_string(&Inputs { kernel: kernel.clone() }).unwrap().as_bytes(),
            )
            .unwrap();
            let mut files = vec![format!("inputs/{key}.toml")];
            files.extend(bincache::files_in(&from, &format!("kernels/{kernel}")).unwrap());
            let out = dir.join(name);
            let e = bincache::Entry { kind: bincache::Kind::Kernel, key, id: id.into(), files };
            bincache::publish(&from, &[e], &out).unwrap();
            out
        };
        let run = |case: &str, url: &str, mode: &str| -> (String, PathBuf) {
            let cache = dir.join(format!("cache-{case}"));
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", &format!("inputs::builds::tests::{TEST}")])
                .args(["--nocapture", "--test-threads=1"])
                .env(CHILD, mode)
                .env("UFFDC_CACHE_DIR", &cache)
                .env(crate::inputs::apt::BINARY_CACHE_ENV, url)
                .output()
                .unwrap();
            let text =
                String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && text.contains("result: "), "{case}: {text}");
            (text, cache.join("builds"))
        };
        let good = publish("good", None);
        let (url, requests) = bincache::serve(good.clone());
        let (text, builds) = run("hit", &url, "build");
        assert!(text.contains("result: ok") && text.contains("binary cache: kernels/"), "{text}");
        assert!(!text.contains("progress: toolchain"), "a hit built: {text}");
        assert!(!builds.join("logs").exists() && !builds.join("build.lock").exists(), "{text}");
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 2, "the index and the kernel");
        let falls_back = |text: &str, why: &str| {
            assert!(text.contains("binary cache: kernels/") && text.contains(why), "{text}");
            assert!(text.contains(": building locally\n"), "{text}");
            assert!(text.contains("progress: toolchain") && text.contains("result: error"), "{text}");
        };
        // The same index, a byte of the kernel's file changed.
        let corrupt = dir.join("corrupt");
        std::fs::create_dir_all(&corrupt).unwrap();
        for e in std::fs::read_dir(&good).unwrap().flatten() {
            let mut data = std::fs::read(e.path()).unwrap();
            if e.file_name().to_string_lossy().ends_with(".tar") {
                data[600] ^= 1;
            }
            std::fs::write(corrupt.join(e.file_name()), data).unwrap();
        }
        let (url, _) = bincache::serve(corrupt);
        let (text, builds) = run("corrupt", &url, "build");
        falls_back(&text, "Hash Sum mismatch");
        assert!(!builds.join("kernels").exists(), "{text}");
        // Filed under a kernel key its .config does not give.
        let (url, _) = bincache::serve(publish("wrong-key", Some("0123456789abcdef")));
        let (text, builds) = run("wrong-key", &url, "build");
        falls_back(&text, "does not verify");
        assert!(!builds.join("kernels").exists(), "{text}");
        // A server that does not answer.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let (text, _) = run("no-server", &format!("http://{closed}/"), "build");
        falls_back(&text, "its index");
        // Turned off: the server is not asked.
        let (url, requests) = bincache::serve(good);
        let (text, _) = run("off", &url, "no-binary-cache");
        assert!(text.contains("progress: toolchain") && !text.contains("binary cache"), "{text}");
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// One case of the test above, in its own process: `image` of build-6.12 with a mirror that
    /// does not answer, so that a build fails as soon as it needs its toolchain.
    fn child(mode: &str) {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let fleet = Fleet::load(&root).unwrap();
        let mut apt = fleet.apt(&Cache::new(&root), Some("file:///nonexistent/uffdc-test-mirror".into()));
        if mode == "no-binary-cache" {
            apt.binary_cache = None;
        }
        let result = image(
            &sh,
            &root,
            &fleet,
            "build-6.12",
            &mut apt,
            &mut || panic!("a compile started"),
            &mut |l| eprintln!("progress: {l}"),
        );
        match result {
            Ok(image) => eprintln!("result: ok {}", image.vmlinuz.display()),
            Err(e) => eprintln!("result: error {e:#}"),
        }
    }

    #[test]
    fn every_build_names_a_pinned_source_and_the_base_configuration_is_there() {
        let root = crate::util::project_root();
        let fleet = Fleet::load(&root).unwrap();
        assert!(fleet.builds.len() >= 6, "{:?}", fleet.builds.keys());
        for (id, b) in &fleet.builds {
            let pin =
                fleet.lock.sources.get(&b.source).unwrap_or_else(|| panic!("{id}: {} unpinned", b.source));
            assert_eq!(pin.sha256.len(), 64, "{id}");
            assert!(b.options.keys().all(|k| k.starts_with("CONFIG_")), "{id}: {:?}", b.options);
        }
        let base = std::fs::read_to_string(root.join(BASE)).unwrap();
        assert_eq!(crate::inputs::kconfig::asked(&base)["CONFIG_USERFAULTFD"], "y");
    }

    #[test]
    #[ignore = "needs root and Debian's archive: run through `cargo xtask test`"]
    fn an_option_the_source_does_not_know_or_cannot_set_is_named() {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let mut fleet = Fleet::load(&root).unwrap();
        let mut track = fleet.builds["build-6.12"].clone();
        track.options.insert("CONFIG_NO_SUCH_OPTION_UFFDC".into(), "y".into());
        fleet.builds.insert("test-unknown-option".into(), track.clone());
        let mut apt = fleet.apt(&Cache::new(&root), None);
        let err = image(&sh, &root, &fleet, "test-unknown-option", &mut apt, &mut || 1, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CONFIG_NO_SUCH_OPTION_UFFDC (in the options of build test-unknown-option")
                && err.contains("is not an option linux-source-6.12")
                && !err.contains('\n'),
            "{err}"
        );
        // An option the source knows, whose dependency the configuration leaves off.
        track.options = [("CONFIG_SERIAL_8250_PCI".to_string(), "y".to_string())].into();
        fleet.builds.insert("test-unmet-option".into(), track);
        let err = image(&sh, &root, &fleet, "test-unmet-option", &mut apt, &mut || 1, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CONFIG_SERIAL_8250_PCI=y (in the options of build test-unmet-option")
                && err.contains("resolved to CONFIG_SERIAL_8250_PCI=n (it depends on")
                && err.contains("PCI")
                && !err.contains('\n'),
            "{err}"
        );
    }

    #[test]
    #[ignore = "needs root and Debian's archive: run through `cargo xtask test`"]
    fn a_corrupt_source_package_is_named_and_not_used() {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let dir = root.join("target/uffdc/tests/corrupt-source");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A download that does not match its pin: deleted, and the error says what to do.
        let deb = dir.join("linux-source-6.12_6.12.118-1_all.deb");
        std::fs::write(&deb, b"not the pinned bytes").unwrap();
        let pin = DebPin {
            suite: "trixie".into(),
            package: "linux-source-6.12".into(),
            version: "6.12.118-1".into(),
            arch: Default::default(),
            sha256: "0".repeat(64),
            size: 20,
        };
        let err = pin::check(&deb, &pin, LOCK, REFRESH).unwrap_err().to_string();
        assert!(err.contains("has sha256") && err.contains("corrupt") && err.contains(REFRESH), "{err}");
        assert!(!deb.exists(), "a corrupt download is deleted");
        // A package damaged inside (cut short): unpacking it is refused, named, and leaves no tree.
        let fleet = Fleet::load(&root).unwrap();
        let source = &fleet.builds["build-6.12-no-userfaultfd"].source;
        let pin = fleet.lock.sources[source].deb(source);
        let mut apt = fleet.apt(&Cache::new(&root), None);
        apt.add_suite(buildroot::RELEASE);
        let good = pin::verified(&sh, &pin, &mut apt, LOCK, REFRESH).unwrap();
        let data = std::fs::read(&good).unwrap();
        let cut = dir.join("cut.deb");
        std::fs::write(&cut, &data[..data.len() / 2]).unwrap();
        let broot = buildroot::ensure(&sh, &root, &mut apt).unwrap();
        let err = unpack_source(&broot, &cut, "/src/test-corrupt").unwrap_err().to_string();
        assert!(
            err.contains("cut.deb is damaged") && err.contains("delete it and rerun") && !err.contains('\n'),
            "{err}"
        );
        assert!(!broot.path("/src/test-corrupt/Makefile").exists());
        let _ = std::fs::remove_dir_all(broot.path("/src/test-corrupt"));
    }
}
