//! The kernel fleet: what is wanted (`images/kernels.toml`, tracks), what that resolved to
//! (`images/kernels.lock`, pins), and the verified cache of kernel images under
//! `target/uffdc/images` that later runs use offline. Fetching goes through [`crate::inputs::apt`].

use crate::inputs::apt::LazyApt;
use crate::inputs::pin::DebPin;
use crate::util::sha256_file;
use anyhow::{bail, Context, Result};
use model::arch::Arch;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use xshell::Shell;

/// A kernel column's id: a track or a build of `images/kernels.toml` (`debian-6.1-cloud`,
/// `build-6.12`), a local image's (`--kernel-image`), or the host's (`host`). Written as itself in
/// files and messages (`{:?}` quotes it as a string).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KernelId(String);

impl std::ops::Deref for KernelId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for KernelId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<Path> for KernelId {
    fn as_ref(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl std::fmt::Debug for KernelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl std::fmt::Display for KernelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

impl From<String> for KernelId {
    fn from(id: String) -> KernelId {
        KernelId(id)
    }
}

impl From<&str> for KernelId {
    fn from(id: &str) -> KernelId {
        KernelId(id.to_string())
    }
}

impl PartialEq<str> for KernelId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for KernelId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// A kernel the matrix wants: which Debian suites to take it from and which meta package names
/// it, so `cargo xtask images refresh` can find the newest point release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Track {
    /// Suites searched for the newest version, e.g. `["bookworm", "bookworm-security"]`.
    pub suites: Vec<String>,
    /// The flavour's meta package, e.g. `linux-image-cloud-amd64`; its dependencies lead to the
    /// package that holds the kernel image.
    pub meta: String,
    /// The architecture (`x86_64` unless said: `arm64`); the meta package is that of its Debian
    /// architecture (`-amd64`, `-arm64`).
    #[serde(default)]
    pub arch: Arch,
    /// Why this kernel is in the matrix.
    pub why: String,
}

/// What a track resolved to: one exact package, verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub suite: String,
    pub package: String,
    pub version: String,
    /// The architecture of the package (x86_64 when a lock from before architectures says none).
    #[serde(default)]
    pub arch: Arch,
    /// The kernel's `uname -r`, from the image's file name.
    pub release: String,
    /// sha256 of the .deb.
    pub sha256: String,
    /// Size of the .deb in bytes.
    pub size: u64,
    /// The package that holds the kernel's configuration where the image's package does not:
    /// from Debian's 7.x packaging, `linux-binary-<abi>` holds vmlinuz and the modules and
    /// `linux-base-<abi>` (of the same version, its dependency) `/usr/lib/modules/<abi>/config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigPin>,
}

/// The pinned package with a kernel's configuration (same suite, version and architecture as the
/// kernel's package).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigPin {
    pub package: String,
    /// sha256 of the .deb.
    pub sha256: String,
    /// Size of the .deb in bytes.
    pub size: u64,
}

impl Pin {
    /// The package pinned, for the verified download.
    pub fn deb(&self) -> DebPin {
        DebPin {
            suite: self.suite.clone(),
            package: self.package.clone(),
            version: self.version.clone(),
            arch: self.arch,
            sha256: self.sha256.clone(),
            size: self.size,
        }
    }

    /// The configuration's package pinned, for the verified download, where it has one.
    pub fn config_deb(&self) -> Option<DebPin> {
        self.config.as_ref().map(|c| DebPin {
            suite: self.suite.clone(),
            package: c.package.clone(),
            version: self.version.clone(),
            arch: self.arch,
            sha256: c.sha256.clone(),
            size: c.size,
        })
    }

    /// Where the kernel's configuration came from, as a results file names it.
    pub fn config_source(&self, release: &str) -> String {
        match &self.config {
            Some(c) => format!("/usr/lib/modules/{release}/config of {} {}", c.package, self.version),
            None => format!("/boot/config-{release} of {} {}", self.package, self.version),
        }
    }

    /// How a results file names this kernel's origin.
    pub fn source(&self) -> String {
        let arch = match self.arch {
            Arch::X86_64 => String::new(),
            other => format!(":{}", other.debian()),
        };
        format!("debian {} {}{arch} {} (deb sha256 {})", self.suite, self.package, self.version, self.sha256)
    }
}

/// A kernel the project builds from a Debian source package (`cargo xtask images build`): the
/// base configuration (`images/configs/base.config`) and what differs from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildTrack {
    /// Suites searched for the newest source package, e.g. `["trixie", "trixie-security"]`.
    pub suites: Vec<String>,
    /// The source package, e.g. `linux-source-6.12`; builds of one source share its pin.
    pub source: String,
    /// What differs from the base configuration: `CONFIG_USERFAULTFD = "n"`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Why this configuration is in the matrix.
    pub why: String,
}

/// What a source package resolved to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcePin {
    pub suite: String,
    pub version: String,
    /// sha256 of the .deb.
    pub sha256: String,
    pub size: u64,
}

impl SourcePin {
    /// `package` pinned as this, for the verified download.
    pub fn deb(&self, package: &str) -> DebPin {
        DebPin {
            suite: self.suite.clone(),
            package: package.to_string(),
            version: self.version.clone(),
            arch: Arch::X86_64,
            sha256: self.sha256.clone(),
            size: self.size,
        }
    }

    /// What a source package's download pinned.
    pub fn of(deb: DebPin) -> SourcePin {
        SourcePin { suite: deb.suite, version: deb.version, sha256: deb.sha256, size: deb.size }
    }
}

/// The source package of a Debian kernel's own version (its selftests are built from it):
/// `linux-source-6.12` for a kernel version `6.12.118-1` (or `7.3~rc7-1~exp1`).
pub fn source_package(version: &str) -> Option<String> {
    let mut parts = version.split(['.', '-', '~', '+']);
    let (major, minor) = (parts.next()?, parts.next()?);
    (major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok())
        .then(|| format!("linux-source-{major}.{minor}"))
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TracksFile {
    tracks: BTreeMap<KernelId, Track>,
    #[serde(default)]
    builds: BTreeMap<KernelId, BuildTrack>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub kernels: BTreeMap<KernelId, Pin>,
    /// The source packages of the builds, by package name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, SourcePin>,
}

/// Kernels asked for: the packaged ones with their pins, and the builds' ids.
pub type Selection = (Vec<(KernelId, Pin)>, Vec<KernelId>);

/// Tracks and their pins.
#[derive(Clone, Debug)]
pub struct Fleet {
    pub tracks: BTreeMap<KernelId, Track>,
    /// Kernels built from source.
    pub builds: BTreeMap<KernelId, BuildTrack>,
    pub lock: LockFile,
}

pub const TRACKS: &str = "images/kernels.toml";
pub const LOCK: &str = "images/kernels.lock";

fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(1, |s| text[..s.start].matches('\n').count() + 1);
        anyhow::anyhow!("{}:{line}: {} (fix the file)", path.display(), e.message().trim())
    })
}

impl Fleet {
    pub fn load(root: &Path) -> Result<Fleet> {
        let tracks: TracksFile = parse_toml(&root.join(TRACKS))?;
        let lock_path = root.join(LOCK);
        let lock = if lock_path.exists() { parse_toml(&lock_path)? } else { LockFile::default() };
        if let Some(id) = tracks.builds.keys().find(|id| tracks.tracks.contains_key(*id)) {
            bail!("{TRACKS}: {id:?} is both a track and a build: give them different ids");
        }
        for (id, track) in &tracks.tracks {
            let debian = track.arch.debian();
            if !track.meta.ends_with(&format!("-{debian}")) {
                bail!(
                    "{TRACKS}: track {id:?} is {} but its meta package {} is not Debian's {debian}: name the -{debian} flavour, or set arch",
                    track.arch,
                    track.meta
                );
            }
            if let Some(pin) = lock.kernels.get(id).filter(|p| p.arch != track.arch) {
                bail!(
                    "{LOCK}: {id:?} is pinned for {} but {TRACKS} says {}: run `cargo xtask images refresh {id}`",
                    pin.arch,
                    track.arch
                );
            }
        }
        Ok(Fleet { tracks: tracks.tracks, builds: tracks.builds, lock })
    }

    pub fn save_lock(&self, root: &Path) -> Result<()> {
        let text = format!(
            "# What each track of images/kernels.toml resolved to. Written by `cargo xtask images refresh`;\n\
             # every entry was downloaded, verified by apt against the signed archive, and its kernel image\n\
             # found in it.\n\n{}",
            toml::to_string(&self.lock)?
        );
        crate::util::write_atomic(&root.join(LOCK), text.as_bytes())
    }

    /// An apt over every suite the fleet names (so one set of lists serves all tracks), made on
    /// first use.
    pub fn apt(&self, cache: &Cache, mirror: Option<String>) -> LazyApt {
        let mut suites: Vec<String> = self.tracks.values().flat_map(|t| t.suites.clone()).collect();
        suites.extend(self.lock.kernels.values().map(|p| p.suite.clone()));
        suites.extend(self.builds.values().flat_map(|b| b.suites.clone()));
        suites.extend(self.lock.sources.values().map(|p| p.suite.clone()));
        LazyApt::new(&cache.dir, mirror, suites)
    }

    /// Every kernel id: the tracks, then the builds.
    pub fn ids(&self) -> Vec<KernelId> {
        self.tracks.keys().chain(self.builds.keys()).cloned().collect()
    }

    /// The architectures other than this machine's that `ids` (every kernel when empty) run on:
    /// their suites are cross-built.
    pub fn arches(&self, ids: &[KernelId]) -> Vec<Arch> {
        let ids = if ids.is_empty() { self.ids() } else { ids.to_vec() };
        let mut arches: Vec<Arch> =
            ids.iter().filter_map(|id| self.arch(id)).filter(|a| *a != Arch::native()).collect();
        arches.sort();
        arches.dedup();
        arches
    }

    /// The architecture of a column of the fleet (builds are x86_64), `None` for an unknown id.
    pub fn arch(&self, id: &str) -> Option<Arch> {
        self.tracks.get(id).map(|t| t.arch).or_else(|| self.builds.contains_key(id).then_some(Arch::X86_64))
    }

    /// The requested ids (all when none are), split into the packaged kernels' pins and the
    /// builds' ids, each in request order.
    pub fn partition(&self, ids: &[KernelId]) -> Result<Selection> {
        let ids: Vec<KernelId> = if ids.is_empty() { self.ids() } else { ids.to_vec() };
        let (builds, images): (Vec<KernelId>, Vec<KernelId>) =
            ids.into_iter().partition(|id| self.builds.contains_key(id));
        if images.is_empty() {
            return Ok((Vec::new(), builds));
        }
        Ok((self.select(&images)?, builds))
    }

    /// The pins for the requested ids (all tracks when none are requested), in request order.
    pub fn select(&self, ids: &[KernelId]) -> Result<Vec<(KernelId, Pin)>> {
        let ids: Vec<KernelId> =
            if ids.is_empty() { self.tracks.keys().cloned().collect() } else { ids.to_vec() };
        ids.iter()
            .map(|id| {
                if !self.tracks.contains_key(id) {
                    bail!("unknown kernel id {id:?}: {TRACKS} has {}", self.ids().join(", "));
                }
                match self.lock.kernels.get(id) {
                    Some(pin) => Ok((id.clone(), pin.clone())),
                    None => bail!("kernel {id:?} has no pin in {LOCK}: run `cargo xtask images refresh`"),
                }
            })
            .collect()
    }
}

/// A kernel ready to boot.
#[derive(Clone, Debug)]
pub struct Image {
    pub id: KernelId,
    /// The architecture it runs on: which QEMU boots it, and which suite goes into its initramfs.
    pub arch: Arch,
    pub vmlinuz: PathBuf,
    /// The kernel's `uname -r` as far as known before booting (from the package's file names).
    pub release: String,
    /// `CONFIG_USERFAULTFD=y` in the packaged config, when it has one.
    pub userfaultfd: Option<bool>,
    /// The kernel's `.config`, when known, and where it came from (the guest's suite reads it
    /// from its initramfs to grade expectations that depend on the configuration).
    pub config: Option<(PathBuf, String)>,
    /// Where it came from, as results record it.
    pub source: String,
    /// How it was built, for a kernel the project builds (`cargo xtask images build`).
    pub build: Option<model::data::Build>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheEntry {
    package: String,
    version: String,
    deb_sha256: String,
    vmlinuz_sha256: String,
    release: String,
    userfaultfd: Option<bool>,
    /// sha256 of the configuration's own package, where the pin names one.
    #[serde(default)]
    config_deb_sha256: Option<String>,
    /// sha256 of the configuration file as unpacked (`config`), where the packages held one.
    #[serde(default)]
    config_sha256: Option<String>,
}

/// The content-addressed caches every checkout of the project shares, as cargo's registry and
/// ccache are shared: verified images (`images/<id>/`: vmlinuz, config, image.toml), the private
/// apt's lists and .debs, source packages, the build toolchain's root, built kernels and
/// selftests (`builds/`), the Go toolchain and workload (`go/`), the machine's KVM verdict, the test
/// command's compiler cache and Python tools (`sccache/`, `python/venv-<key>`). Every
/// entry is keyed by what it was made from and verified (sha256) before use, and writers take a
/// lock, so checkouts and worktrees of any revision can share it; a second clone starts warm.
/// What belongs to one checkout (runs, logs, the initramfs, test scratch) stays under
/// its `target/uffdc/`.
pub struct Cache {
    pub dir: PathBuf,
}

impl Cache {
    pub fn new(root: &Path) -> Cache {
        Cache { dir: shared_dir(root, |k| std::env::var_os(k)) }
    }

    fn image_dir(&self, id: &str) -> PathBuf {
        self.dir.join("images").join(id)
    }

    /// The lock of one kernel's entry: kernels are fetched in parallel, each entry by one writer.
    fn lock_image(&self, id: &str) -> Result<nix::fcntl::Flock<std::fs::File>> {
        let dir = self.dir.join("images");
        std::fs::create_dir_all(&dir)?;
        crate::util::lock(&dir.join(format!("{id}.lock")))
    }

    /// The cached image, if it was verified for exactly this pin and is still intact (its
    /// vmlinuz still has the sha256 recorded when it was unpacked).
    pub fn cached(&self, id: &str, pin: &Pin) -> Option<Image> {
        let dir = self.image_dir(id);
        let entry: CacheEntry =
            toml::from_str(&std::fs::read_to_string(dir.join("image.toml")).ok()?).ok()?;
        let vmlinuz = dir.join("vmlinuz");
        let intact = entry.package == pin.package
            && entry.version == pin.version
            && entry.deb_sha256 == pin.sha256
            && entry.config_deb_sha256 == pin.config.as_ref().map(|c| c.sha256.clone())
            && sha256_file(&vmlinuz).ok()? == entry.vmlinuz_sha256;
        let config = dir.join("config");
        // The configuration as unpacked (its sha256 recorded then); an entry made before those
        // were recorded stands as it was, unless the pin names a configuration package.
        let config_intact = match (&entry.config_sha256, &pin.config) {
            (Some(sha), _) => sha256_file(&config).ok().as_ref() == Some(sha),
            (None, Some(_)) => false,
            (None, None) => true,
        };
        let intact = intact && config_intact;
        let config = config.exists().then(|| (config, pin.config_source(&entry.release)));
        intact.then(|| Image {
            id: KernelId::from(id),
            arch: pin.arch,
            vmlinuz,
            release: entry.release,
            userfaultfd: entry.userfaultfd,
            config,
            source: pin.source(),
            build: None,
        })
    }

    /// The image for a pin: from the cache when verified there, else downloaded, checked against
    /// the pinned sha256 and unpacked. Serialised across processes by a lock on the cache.
    pub fn fetch(&self, sh: &Shell, id: &str, pin: &Pin, apt: &mut LazyApt) -> Result<Image> {
        if let Some(image) = self.cached(id, pin) {
            return Ok(image);
        }
        let _lock = self.lock_image(id)?;
        if let Some(image) = self.cached(id, pin) {
            return Ok(image);
        }
        // The package comes from the private apt of its own architecture (`verified` picks it).
        let mut verified = |deb: &DebPin| {
            crate::inputs::pin::verified(sh, deb, apt, LOCK, "cargo xtask images refresh")
                .map_err(|e| anyhow::anyhow!("{id}: {e:#}"))
        };
        let deb = verified(&pin.deb())?;
        let config = pin.config_deb().map(|c| verified(&c)).transpose()?;
        self.unpack(id, pin, &deb, config.as_deref())
    }

    /// Downloads a package a track resolved to, finds its kernel image and returns the image with
    /// the pin that records it (apt has checked the .deb against the signed archive); where the
    /// package holds no configuration and is a `linux-binary-<abi>` (Debian 7.x), also
    /// `linux-base-<abi>` of the same version, which holds it.
    pub fn fetch_new(
        &self,
        sh: &Shell,
        id: &str,
        suite: &str,
        package: &str,
        version: &str,
        apt: &mut LazyApt,
    ) -> Result<(Image, Pin)> {
        let _lock = self.lock_image(id)?;
        let (deb, got) = DebPin::download(sh, apt.get()?, suite, package, version)?;
        let mut pin = Pin {
            suite: got.suite,
            package: got.package,
            version: got.version,
            arch: apt.arch,
            release: String::new(),
            sha256: got.sha256,
            size: got.size,
            config: None,
        };
        let image = self.unpack(id, &pin, &deb, None)?;
        pin.release = image.release.clone();
        // Debian's 7.x packaging keeps the configuration in `linux-base-<abi>`, beside
        // `linux-binary-<abi>`: pinned with it, so every cell is graded against the kernel's own
        // configuration.
        let base = pin.package.strip_prefix("linux-binary-").map(|abi| format!("linux-base-{abi}"));
        // Where that package cannot be had or holds none, the kernel is pinned without it, as
        // before, and the refresh says so: its cells then say the configuration is not known.
        if let (None, Some(base)) = (&image.config, base) {
            match DebPin::download(sh, apt.get()?, suite, &base, version) {
                Ok((config_deb, got)) => {
                    let with = Pin {
                        config: Some(ConfigPin { package: got.package, sha256: got.sha256, size: got.size }),
                        ..pin.clone()
                    };
                    let image = self.unpack(id, &with, &deb, Some(&config_deb))?;
                    if image.config.is_some() {
                        return Ok((image, with));
                    }
                    eprintln!("warning: {id}: {base} {version} holds no /usr/lib/modules/{}/config: pinned without the kernel's configuration", image.release);
                    // The entry just written names that package: written again for the pin without it.
                    let image = self.unpack(id, &pin, &deb, None)?;
                    return Ok((image, pin));
                }
                Err(e) => eprintln!(
                    "warning: {id}: the configuration package of {} {version}, {base}, could not be fetched ({e:#}): pinned without the kernel's configuration",
                    pin.package
                ),
            }
        }
        Ok((image, pin))
    }

    /// Takes the kernel image (and its config) out of the .deb by content, the config out of
    /// `config_deb` where the pin names a package of its own for it.
    fn unpack(&self, id: &str, pin: &Pin, deb: &Path, config_deb: Option<&Path>) -> Result<Image> {
        let (mut vmlinuz, mut config, mut release) = (None, None, None);
        let mut config_release: Option<String> = None;
        for (deb, is_config_deb) in std::iter::once((deb, false)).chain(config_deb.map(|d| (d, true))) {
            crate::inputs::debs::each_file(deb, |entry| {
                if !entry.header().entry_type().is_file() {
                    return Ok(());
                }
                let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_string();
                let kind = if let Some(r) = path.strip_prefix("boot/vmlinuz-") {
                    Some(("vmlinuz", r.to_string()))
                } else if let Some(r) = path.strip_prefix("boot/config-") {
                    Some(("config", r.to_string()))
                } else if let Some(rest) = path.strip_prefix("usr/lib/modules/") {
                    match rest.split_once('/') {
                        Some((r, "vmlinuz")) => Some(("vmlinuz", r.to_string())),
                        Some((r, "config")) => Some(("config", r.to_string())),
                        _ => None,
                    }
                } else {
                    None
                };
                // The image only from the kernel's own package; the configuration from either.
                if let Some((what, r)) = kind.filter(|(what, _)| !(is_config_deb && *what == "vmlinuz")) {
                    let mut data = Vec::new();
                    entry.read_to_end(&mut data)?;
                    if what == "vmlinuz" {
                        vmlinuz = Some(data);
                        release = Some(r);
                    } else {
                        config = Some(data);
                        config_release = Some(r);
                    }
                }
                Ok(())
            })?;
        }
        let (Some(vmlinuz), Some(release)) = (vmlinuz, release) else {
            bail!("{id}: {} {} holds no kernel image (no /boot/vmlinuz-* or /usr/lib/modules/*/vmlinuz): pin the package that does", pin.package, pin.version);
        };
        if let Some(r) = config_release.filter(|r| *r != release) {
            bail!(
                "{id}: the configuration found is {r}'s, and the kernel is {release}: pin the configuration package of {} {} (`cargo xtask images refresh {id}`)",
                pin.package,
                pin.version
            );
        }
        let userfaultfd =
            config.as_ref().map(|c| String::from_utf8_lossy(c).lines().any(|l| l == "CONFIG_USERFAULTFD=y"));
        let dir = self.image_dir(id);
        // A previous entry is invalid from here on: remove its record first.
        let _ = std::fs::remove_file(dir.join("image.toml"));
        crate::util::write_atomic(&dir.join("vmlinuz"), &vmlinuz)?;
        match &config {
            Some(config) => crate::util::write_atomic(&dir.join("config"), config)?,
            // An earlier entry's configuration is not this kernel's.
            None => {
                let _ = std::fs::remove_file(dir.join("config"));
            }
        }
        let entry = CacheEntry {
            package: pin.package.clone(),
            version: pin.version.clone(),
            deb_sha256: pin.sha256.clone(),
            vmlinuz_sha256: hex(&Sha256::digest(&vmlinuz)),
            release: release.clone(),
            userfaultfd,
            config_deb_sha256: pin.config.as_ref().map(|c| c.sha256.clone()),
            config_sha256: config.as_ref().map(|c| hex(&Sha256::digest(c))),
        };
        crate::util::write_atomic(&dir.join("image.toml"), toml::to_string(&entry)?.as_bytes())?;
        let config = config.is_some().then(|| (dir.join("config"), pin.config_source(&release)));
        Ok(Image {
            id: KernelId::from(id),
            arch: pin.arch,
            vmlinuz: dir.join("vmlinuz"),
            release,
            userfaultfd,
            config,
            source: pin.source(),
            build: None,
        })
    }
}

use crate::util::hex;

/// Where the shared caches are: `UFFDC_CACHE_DIR` (a relative path is taken from the project's
/// root: the workflows set `target/uffdc`, which their cache steps save), else
/// `$XDG_CACHE_HOME/uffd-conformance`, else `~/.cache/uffd-conformance`, else (no home) the
/// checkout's own `target/uffdc`.
pub fn shared_dir(root: &Path, var: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    let set = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("UFFDC_CACHE_DIR") {
        return root.join(dir);
    }
    if let Some(xdg) = set("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return xdg.join("uffd-conformance");
    }
    match set("HOME").filter(|d| d.is_absolute()) {
        Some(home) => home.join(".cache/uffd-conformance"),
        None => root.join("target/uffdc"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_cache_is_the_users_unless_told_otherwise() {
        let root = Path::new("/src/uffdc");
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| std::ffi::OsString::from(v))
        };
        const HOME: &[(&str, &str)] = &[("HOME", "/home/me")];
        assert_eq!(shared_dir(root, env(HOME)), PathBuf::from("/home/me/.cache/uffd-conformance"));
        const XDG: &[(&str, &str)] = &[("HOME", "/home/me"), ("XDG_CACHE_HOME", "/var/cache/me")];
        assert_eq!(shared_dir(root, env(XDG)), PathBuf::from("/var/cache/me/uffd-conformance"));
        // A relative XDG_CACHE_HOME is invalid by the XDG specification: ignored.
        const RELATIVE: &[(&str, &str)] = &[("HOME", "/home/me"), ("XDG_CACHE_HOME", "cache")];
        assert_eq!(shared_dir(root, env(RELATIVE)), PathBuf::from("/home/me/.cache/uffd-conformance"));
        const TOLD: &[(&str, &str)] = &[("HOME", "/home/me"), ("UFFDC_CACHE_DIR", "target/uffdc")];
        assert_eq!(shared_dir(root, env(TOLD)), PathBuf::from("/src/uffdc/target/uffdc"));
        const ABSOLUTE: &[(&str, &str)] = &[("UFFDC_CACHE_DIR", "/mnt/cache"), ("HOME", "")];
        assert_eq!(shared_dir(root, env(ABSOLUTE)), PathBuf::from("/mnt/cache"));
        assert_eq!(shared_dir(root, env(&[])), PathBuf::from("/src/uffdc/target/uffdc"));
    }

    #[test]
    fn every_track_is_pinned_and_unknown_ids_are_named() {
        let fleet = Fleet::load(&crate::util::project_root()).unwrap();
        for id in [
            "debian-5.10-cloud",
            "debian-6.1-cloud",
            "debian-6.12-cloud",
            "debian-6.12-rt",
            "debian-7.2-cloud",
            "debian-7.3-cloud",
        ] {
            assert!(fleet.tracks.contains_key(id), "track {id} is missing");
        }
        for (id, pin) in fleet.select(&[]).unwrap() {
            assert_eq!(pin.sha256.len(), 64, "{id}: {pin:?}");
            assert!(!pin.release.is_empty() && pin.size > 0, "{id}: {pin:?}");
        }
        let err = fleet.select(&["debian-9.9-cloud".into()]).unwrap_err().to_string();
        assert!(
            err.contains("unknown kernel id \"debian-9.9-cloud\"") && err.contains("debian-6.1-cloud"),
            "{err}"
        );
        let mut unpinned = fleet.clone();
        unpinned.lock.kernels.remove("debian-6.1-cloud");
        let err = unpinned.select(&["debian-6.1-cloud".into()]).unwrap_err().to_string();
        assert!(err.contains("cargo xtask images refresh"), "{err}");
    }

    /// Issue 27: architecture is an axis of the fleet; a track's meta package is its
    /// architecture's, and a pin for another architecture than its track's is refused.
    #[test]
    fn arm64_tracks_are_pinned_for_arm64() {
        let root = crate::util::project_root();
        let fleet = Fleet::load(&root).unwrap();
        for id in [
            "debian-5.10-cloud-arm64",
            "debian-6.1-cloud-arm64",
            "debian-6.12-cloud-arm64",
            "debian-7.2-cloud-arm64",
        ] {
            assert_eq!(fleet.tracks[id].arch, Arch::Arm64, "{id}");
            assert_eq!(fleet.lock.kernels[id].arch, Arch::Arm64, "{id}");
            assert!(fleet.lock.kernels[id].package.ends_with("-arm64"), "{id}");
        }
        assert_eq!(fleet.arch("debian-6.1-cloud"), Some(Arch::X86_64));
        if Arch::native() == Arch::X86_64 {
            assert_eq!(fleet.arches(&["debian-6.1-cloud".into()]), []);
            assert_eq!(fleet.arches(&[]), [Arch::Arm64]);
        }
        let dir = root.join("target/uffdc/tests/fleet-arch");
        std::fs::create_dir_all(dir.join("images")).unwrap();
        let tracks = "[tracks.\"k-arm64\"]\nsuites = [\"bookworm\"]\nmeta = \"linux-image-cloud-amd64\"\narch = \"arm64\"\nwhy = \"w\"\n";
        std::fs::write(dir.join(TRACKS), tracks).unwrap();
        let err = Fleet::load(&dir).unwrap_err().to_string();
        assert!(err.contains("not Debian's arm64") && !err.contains('\n'), "{err}");
        std::fs::write(dir.join(TRACKS), tracks.replace("-amd64", "-arm64")).unwrap();
        let pin = "[kernels.\"k-arm64\"]\nsuite = \"s\"\npackage = \"p\"\nversion = \"1\"\nrelease = \"r\"\nsha256 = \"0\"\nsize = 1\n";
        std::fs::write(dir.join(LOCK), pin).unwrap();
        let err = Fleet::load(&dir).unwrap_err().to_string();
        assert!(err.contains("pinned for x86_64") && err.contains("images refresh k-arm64"), "{err}");
    }

    #[test]
    fn a_corrupted_cached_image_is_not_used() {
        let dir = crate::util::project_root().join("target/uffdc/tests/cache-corruption");
        let _ = std::fs::remove_dir_all(&dir);
        let cache = Cache { dir: dir.clone() };
        let pin = Pin {
            suite: "s".into(),
            package: "p".into(),
            version: "1".into(),
            arch: Arch::X86_64,
            release: "6.1.0-test".into(),
            sha256: "0".repeat(64),
            size: 1,
            config: None,
        };
        let image = cache.image_dir("k");
        std::fs::create_dir_all(&image).unwrap();
        std::fs::write(image.join("vmlinuz"), b"kernel bytes").unwrap();
        let entry = CacheEntry {
            package: "p".into(),
            version: "1".into(),
            deb_sha256: pin.sha256.clone(),
            vmlinuz_sha256: sha256_file(&image.join("vmlinuz")).unwrap(),
            release: "6.1.0-test".into(),
            userfaultfd: Some(true),
            config_deb_sha256: None,
            config_sha256: None,
        };
        std::fs::write(image.join("image.toml"), toml::to_string(&entry).unwrap()).unwrap();
        assert_eq!(cache.cached("k", &pin).unwrap().release, "6.1.0-test");
        // A pin that names a configuration package of its own (Debian 7.x's `linux-base-*`): the
        // entry unpacked without it is not that pin's.
        let with_config = Pin {
            config: Some(ConfigPin { package: "linux-base-x".into(), sha256: "2".repeat(64), size: 1 }),
            ..pin.clone()
        };
        assert!(cache.cached("k", &with_config).is_none(), "an entry without the pinned config package");
        // Unpacked with it: used while its config file is the one unpacked, not once it is gone.
        std::fs::write(image.join("config"), b"CONFIG_USERFAULTFD=y\n").unwrap();
        let unpacked = CacheEntry {
            config_deb_sha256: Some("2".repeat(64)),
            config_sha256: Some(sha256_file(&image.join("config")).unwrap()),
            ..entry.clone()
        };
        std::fs::write(image.join("image.toml"), toml::to_string(&unpacked).unwrap()).unwrap();
        assert!(cache.cached("k", &with_config).unwrap().config.is_some());
        std::fs::remove_file(image.join("config")).unwrap();
        assert!(cache.cached("k", &with_config).is_none(), "a pinned configuration that is gone");
        std::fs::write(image.join("image.toml"), toml::to_string(&entry).unwrap()).unwrap();
        std::fs::write(image.join("vmlinuz"), b"kernel bytez").unwrap();
        assert!(cache.cached("k", &pin).is_none(), "a damaged vmlinuz must be refetched");
        let other = Pin { sha256: "1".repeat(64), ..pin };
        assert!(cache.cached("k", &other).is_none(), "an entry for another pin must not be used");
    }

    /// Debian 7.x keeps the configuration in `linux-base-<abi>`: a pin that names it says so in the
    /// results (`config_source`), and reads and writes back unchanged from the lock.
    #[test]
    fn a_configuration_of_its_own_package_is_pinned_and_named() {
        let text = "suite = \"sid\"\npackage = \"linux-binary-7.2.13+deb14-cloud-amd64\"\nversion = \"7.2.13-1\"\n\
                    arch = \"x86_64\"\nrelease = \"7.2.13+deb14-cloud-amd64\"\nsha256 = \"0\"\nsize = 1\n\n[config]\n\
                    package = \"linux-base-7.2.13+deb14-cloud-amd64\"\nsha256 = \"1\"\nsize = 2\n";
        let pin: Pin = toml::from_str(text).unwrap();
        assert_eq!(
            pin.config_source(&pin.release),
            "/usr/lib/modules/7.2.13+deb14-cloud-amd64/config of linux-base-7.2.13+deb14-cloud-amd64 7.2.13-1"
        );
        let deb = pin.config_deb().unwrap();
        assert_eq!(
            (deb.package.as_str(), deb.version.as_str(), deb.suite.as_str()),
            ("linux-base-7.2.13+deb14-cloud-amd64", "7.2.13-1", "sid")
        );
        assert_eq!(toml::from_str::<Pin>(&toml::to_string(&pin).unwrap()).unwrap(), pin);
        let older = Pin { config: None, ..pin };
        assert!(older.config_deb().is_none());
        assert!(older.config_source("r").starts_with("/boot/config-r of linux-binary-"));
        assert!(!toml::to_string(&older).unwrap().contains("config"), "a pin without one writes none");
    }
}
