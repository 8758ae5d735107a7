//! The kernel build toolchain: a Debian root made of pinned packages (`images/toolchain.lock`:
//! gcc, binutils, make, bison, flex, bc, libelf and the shell tools a kernel build calls, with
//! every dependency apt resolves for them on an empty system), each .deb taken from Debian's
//! archive with the fleet's private apt and verified against its pin, unpacked by content under
//! `target/uffdc/builds/root-<key>/` (the key moves with any pin), and entered with chroot.
//!
//! Why a root of its own rather than the machine's compilers: the build never depends on what a
//! machine has installed (a developer's newer gcc, a CI image's), the same pins give the same
//! compiler everywhere, and nothing is installed on the machine, so nothing is ever removed from
//! it. Why bookworm: its gcc 12 builds every source the project reads (5.10 to 7.x) and is the
//! release the CI container runs. Maintainer scripts do not run in it; the few links they would
//! make (`awk`, `cc`, `/bin/sh`) and the device nodes a build opens are made here.
//!
//! Programs for another architecture (the arm64 columns' selftests) are built with Debian's cross
//! compiler for it, pinned in the same lock (`[[cross.arm64]]`: `gcc-aarch64-linux-gnu`,
//! `libc6-dev-arm64-cross` and what apt adds to the native pins for them) and unpacked into the
//! same root on first use ([`ensure_for`]): the native pins, and so the key of every x86 build,
//! stay what they were, while a cross build's key ([`key_for`]) covers both sets and its
//! architecture.
//!
//! The root's programs run on the machine, so a machine of another architecture (GitHub's arm64
//! runners, which run the arm64 kernel legs) has a root of its own: the same packages resolved by
//! an arm64 apt (`[[host.arm64]]`: `arch = "arm64"` on each pin), whose native gcc builds the arm64
//! columns' selftests. What such a machine cannot build (x86-64 programs: the kernel builds, the
//! x86 columns' selftests; no cross compiler from arm64 is pinned) is refused with the way out.

use crate::inputs::apt::LazyApt;
use crate::inputs::debs;
use crate::inputs::fleet::Cache;
use crate::inputs::pin::{self, DebPin, Lock};
use anyhow::{bail, Context, Result};
use model::arch::Arch;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use xshell::Shell;

pub const LOCK: &str = "images/toolchain.lock";
const REFRESH: &str = "cargo xtask images refresh toolchain";
/// The release the toolchain is taken from.
pub const RELEASE: &str = "bookworm";
/// What a kernel build (and a static build of its selftests) calls; apt adds their dependencies.
const PACKAGES: &[&str] = &[
    "gcc",
    "make",
    "bc",
    "bison",
    "flex",
    "libc6-dev",
    "libelf-dev",
    "bash",
    "dash",
    "coreutils",
    "sed",
    "grep",
    "mawk",
    "findutils",
    "diffutils",
    "tar",
    "gzip",
    "xz-utils",
    "perl-base",
    "libc-bin",
    // Kernel builds compile through ccache (`BuildRoot::CCACHE`): a configuration variant of a
    // source already built recompiles only the files its options change.
    "ccache",
];

/// Debian's cross compiler for each architecture other than the toolchain's own (amd64), and the
/// static C library it links with; apt adds its binutils, its libgcc and the uapi headers
/// (`linux-libc-dev-arm64-cross`). Debian builds them from the same gcc and glibc sources as the
/// native ones (bookworm: gcc 12.2.0, glibc 2.36).
const CROSS: &[(Arch, &[&str])] = &[(Arch::Arm64, &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"])];

/// The GNU triple of `arch`: the prefix of its cross tools (`aarch64-linux-gnu-gcc`).
pub fn triple(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64-linux-gnu",
        Arch::Arm64 => "aarch64-linux-gnu",
    }
}

/// The machine architectures other than x86_64 that have a root of their own (`[[host.<arch>]]`).
const OTHER_HOSTS: &[Arch] = &[Arch::Arm64];

/// The whole lock file: the native toolchain of an x86-64 machine (`[[packages]]`, what [`load`]
/// gives and kernel builds are keyed on), per architecture the packages its cross compiler adds
/// to it (`[[cross.arm64]]`), and per other machine architecture its whole root
/// (`[[host.arm64]]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolchainLock {
    pub packages: Vec<DebPin>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cross: BTreeMap<String, Vec<DebPin>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host: BTreeMap<String, Vec<DebPin>>,
}

/// The compiler cache's settings for a build in the root: its directory inside the root (it lives
/// and dies with the root, whose key moves with every pin, the compiler's included), paths made
/// relative to the working directory before hashing (`CCACHE_BASEDIR`), and the working directory
/// left out of the hash (`CCACHE_NOHASHDIR`: the variants' output trees differ only by name and
/// the base configuration builds no debug information that would record it). ccache never changes
/// what is built: a hit returns the object the same preprocessed input and compiler gave before,
/// so a bzImage's key stays a function of its inputs alone.
pub const CCACHE: [(&str, &str); 4] = [
    ("CCACHE_DIR", "/var/cache/uffdc-ccache"),
    ("CCACHE_BASEDIR", "/"),
    ("CCACHE_NOHASHDIR", "1"),
    ("CCACHE_MAXSIZE", "4G"),
];

/// The unpacked toolchain.
#[derive(Clone, Debug)]
pub struct BuildRoot {
    pub dir: PathBuf,
    /// Moves with every pin of the lock.
    pub key: String,
    /// `gcc-12 12.2.0-14`, as builds record it (`gcc-12-aarch64-linux-gnu 12.2.0-14cross1` for
    /// arm64).
    pub compiler: String,
    /// What it compiles for: the native root's `gcc`, or [`triple`]`-gcc`.
    pub arch: Arch,
}

/// The x86-64 toolchain's pins (`[[packages]]`: what kernel builds are keyed on).
pub fn load(root: &Path) -> Result<Lock> {
    native_pins(&load_all(root)?)
}

/// The whole lock, cross compilers included.
pub fn load_all(root: &Path) -> Result<ToolchainLock> {
    let text = std::fs::read_to_string(root.join(LOCK))
        .with_context(|| format!("cannot read {LOCK}: run `{REFRESH}`"))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("{LOCK}: {} (fix the file)", e.message().trim()))
}

/// The pins the cross compiler for `arch` adds to the native toolchain.
fn cross_pins(lock: &ToolchainLock, arch: Arch) -> Result<&[DebPin]> {
    match lock.cross.get(arch.name()) {
        Some(pins) if !pins.is_empty() => Ok(pins),
        _ => bail!(
            "{LOCK} pins no cross compiler for {arch} (no [[cross.{arch}]] entries): run `{REFRESH}`, or run with --no-selftests"
        ),
    }
}

/// The key of what this machine's root builds for `arch` (the selftests' cache and binary cache
/// entries are keyed on it): [`key_of`] on this machine's architecture.
pub fn key_for(root: &Path, arch: Arch) -> Result<String> {
    key_of(&load_all(root)?, Arch::native(), arch)
}

/// How a machine of architecture `host` builds programs for `target`.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// With its own root's compiler (`[[packages]]` on x86-64, `[[host.<arch>]]` elsewhere).
    Native,
    /// With the x86-64 root and the target's pinned cross compiler.
    Cross,
    /// Not at all: no compiler for `target` is pinned for such a machine.
    None,
}

fn route(host: Arch, target: Arch) -> Route {
    match (host, target) {
        _ if host == target => Route::Native,
        (Arch::X86_64, _) => Route::Cross,
        _ => Route::None,
    }
}

/// The key of what a machine of architecture `host` builds for `target`: the x86-64 root's key
/// for x86_64 (what it was before cross compilers: x86 builds keep their keys; on an arm64
/// machine too, which cannot build them but may find them in the binary cache), one over that key,
/// the architecture and its cross pins for a cross build, and for another machine's native build
/// the key of its own root's pins (which say their architecture), so no two share a key.
fn key_of(all: &ToolchainLock, host: Arch, target: Arch) -> Result<String> {
    let native = native_pins(all)?.key()?;
    match route(host, target) {
        _ if target == Arch::X86_64 => Ok(native),
        Route::Native => host_pins(all, host)?.key(),
        _ => cross_key(&native, target, cross_pins(all, target)?),
    }
}

/// The x86-64 machine's root (`[[packages]]`).
fn native_pins(all: &ToolchainLock) -> Result<Lock> {
    if all.packages.is_empty() {
        bail!("{LOCK} pins no package: run `{REFRESH}`");
    }
    Ok(Lock { packages: all.packages.clone() })
}

/// The root of a machine of architecture `host`.
fn host_pins(all: &ToolchainLock, host: Arch) -> Result<Lock> {
    if host == Arch::X86_64 {
        return native_pins(all);
    }
    match all.host.get(host.name()) {
        Some(pins) if !pins.is_empty() => Ok(Lock { packages: pins.clone() }),
        _ => bail!(
            "{LOCK} pins no toolchain for an {host} machine (no [[host.{host}]] entries): run `{REFRESH}`, or run with --no-selftests"
        ),
    }
}

fn cross_key(native: &str, arch: Arch, pins: &[DebPin]) -> Result<String> {
    let pins = toml::to_string(&Lock { packages: pins.to_vec() })?;
    Ok(crate::util::short_hash(format!("{native}\ncross {arch}\n{pins}").as_bytes()))
}

/// Re-resolves the toolchain in its release, and each cross compiler on top of it, and rewrites
/// the lock.
pub fn refresh(sh: &Shell, root: &Path, apt: &mut LazyApt) -> Result<()> {
    apt.get()?.update(sh, true)?;
    let resolved = apt.get()?.closure(sh, RELEASE, PACKAGES)?;
    let lock = Lock::pin(sh, apt, RELEASE, &resolved)?;
    let mut all = ToolchainLock { packages: lock.packages.clone(), ..Default::default() };
    for (arch, packages) in CROSS {
        let with: Vec<&str> = PACKAGES.iter().chain(packages.iter()).copied().collect();
        let added = added_by(&resolved, apt.get()?.closure(sh, RELEASE, &with)?)
            .with_context(|| format!("the cross compiler for {arch}"))?;
        all.cross.insert(arch.name().to_string(), Lock::pin(sh, apt, RELEASE, &added)?.packages);
    }
    // Each other machine architecture's root: the same packages, resolved by its own apt.
    for host in OTHER_HOSTS {
        let mut own = apt.for_arch(*host);
        own.get()?.update(sh, true)?;
        let resolved = own.get()?.closure(sh, RELEASE, PACKAGES)?;
        all.host.insert(host.name().to_string(), Lock::pin(sh, &mut own, RELEASE, &resolved)?.packages);
    }
    let cross: Vec<String> = CROSS.iter().map(|(arch, p)| format!("{arch}: {}", p.join(" "))).collect();
    let header = format!(
        "# The kernel build toolchain (xtask/src/inputs/buildroot.rs): {} and every dependency apt resolves\n\
         # for them on an empty {RELEASE} system (the packages); then, per architecture, its cross compiler\n\
         # ({}) and what apt adds to the packages for it (cross.<arch>); then, per other machine architecture,\n\
         # the same packages resolved for a machine of it ({}: host.<arch>, its native gcc builds its own programs).\n\
         # Written by `{REFRESH}`; every entry was downloaded and verified by apt against the signed\n\
         # archive; builds check each .deb's sha256.\n",
        PACKAGES.join(" "),
        cross.join("; "),
        OTHER_HOSTS.iter().map(|h| h.name()).collect::<Vec<_>>().join(", ")
    );
    let old = load_all(root).ok();
    match &old {
        Some(o) if o == &all => println!("{:<20} unchanged: {} packages", "toolchain", lock.packages.len()),
        _ => println!(
            "{:<20} pinned {} packages of {RELEASE} ({}), cross: {}, machines: {}",
            "toolchain",
            lock.packages.len(),
            compiler(&lock.packages),
            all.cross
                .iter()
                .map(|(arch, pins)| format!("{arch} +{} ({})", pins.len(), cross_compiler(pins, arch)))
                .collect::<Vec<_>>()
                .join(", "),
            all.host
                .iter()
                .map(|(arch, pins)| format!("{arch} {} ({})", pins.len(), compiler(pins)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    let text = format!("{header}\n{}", toml::to_string(&all)?);
    crate::util::write_atomic(&root.join(LOCK), text.as_bytes())?;
    println!("wrote {LOCK}");
    Ok(())
}

/// What a closure with a cross compiler adds to the native one. A native package resolved at
/// another version would be unpacked over the native one (and move x86 builds' inputs): refused.
fn added_by(native: &[(String, String)], with: Vec<(String, String)>) -> Result<Vec<(String, String)>> {
    let mut added = Vec::new();
    for (package, version) in with {
        match native.iter().find(|(n, _)| *n == package) {
            Some((_, v)) if *v == version => {}
            Some((_, v)) => bail!(
                "apt resolves {package} {version} with it but {v} without: the native toolchain would change under it"
            ),
            None => added.push((package, version)),
        }
    }
    Ok(added)
}

fn compiler(packages: &[DebPin]) -> String {
    packages
        .iter()
        .filter(|p| p.package.starts_with("gcc-") && p.package[4..].chars().all(|c| c.is_ascii_digit()))
        .map(|p| format!("{} {}", p.package, p.version))
        .next()
        .unwrap_or_else(|| "no gcc".to_string())
}

/// `gcc-12-aarch64-linux-gnu 12.2.0-14cross1`: the versioned cross gcc among `packages`.
fn cross_compiler(packages: &[DebPin], arch: &str) -> String {
    let suffix = Arch::from_machine(arch).map(|a| format!("-{}", triple(a))).unwrap_or_default();
    packages
        .iter()
        .filter(|p| {
            p.package
                .strip_prefix("gcc-")
                .and_then(|rest| rest.strip_suffix(&suffix))
                .is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()))
        })
        .map(|p| format!("{} {}", p.package, p.version))
        .next()
        .unwrap_or_else(|| format!("no {arch} gcc"))
}

/// The root that builds x86-64 programs (the kernel builds), unpacked from its verified .debs if
/// it is not already; `apt` is the fleet's private apt (`Fleet::apt`), which then serves the
/// toolchain's release too. On a machine of another architecture: refused, naming why.
pub fn ensure(sh: &Shell, root: &Path, apt: &mut LazyApt) -> Result<BuildRoot> {
    ensure_for(sh, root, apt, Arch::X86_64)
}

/// This machine's own root (`[[packages]]` on x86-64, `[[host.<arch>]]` elsewhere), unpacked from
/// its verified .debs if it is not already.
fn machine_root(sh: &Shell, root: &Path, apt: &mut LazyApt, host: Arch) -> Result<BuildRoot> {
    let all = load_all(root)?;
    let lock = host_pins(&all, host)?;
    let key = lock.key()?;
    let builds = Cache::new(root).dir.join("builds");
    let dir = builds.join(format!("root-{key}"));
    let pins = toml::to_string(&lock)?;
    let made =
        BuildRoot { dir: dir.clone(), key: key.clone(), compiler: compiler(&lock.packages), arch: host };
    apt.add_suite(RELEASE);
    let packages: Vec<&pin::DebPin> = lock.packages.iter().collect();
    let what = match host {
        Arch::X86_64 => format!("build   toolchain of {RELEASE}"),
        other => format!("build   toolchain of {RELEASE} for an {other} machine"),
    };
    // The C compiler by the name `BuildRoot::gcc` gives (Debian's native gcc has the triple-named
    // link too) and the static C library the selftests link.
    let gcc = format!("usr/bin/{}", made.gcc());
    let libc = format!("usr/lib/{}/libc.a", triple(host));
    debs::unpacked_root(
        sh,
        &dir,
        &builds.join("root.lock"),
        &pins,
        &packages,
        apt,
        (LOCK, REFRESH),
        &what,
        |dir| {
            finish(dir)?;
            for tool in [
                "usr/bin/gcc",
                "usr/bin/make",
                "usr/bin/bison",
                "usr/bin/flex",
                "usr/bin/bc",
                "usr/bin/sh",
                "usr/bin/ccache",
                &gcc,
                &libc,
            ] {
                if !dir.join(tool).exists() {
                    bail!(
                        "the toolchain in {} has no /{tool}: pin packages that provide it (`{REFRESH}`)",
                        dir.display()
                    );
                }
            }
            Ok(())
        },
    )?;
    Ok(made)
}

/// The toolchain's root able to build programs for `arch` on this machine: the machine's own root
/// for its own architecture; on an x86-64 machine, for another architecture, with that
/// architecture's pinned cross compiler unpacked into it (once; a root whose cross pins changed is
/// made again, so no file of an older set stays behind); anything else is refused.
pub fn ensure_for(sh: &Shell, root: &Path, apt: &mut LazyApt, arch: Arch) -> Result<BuildRoot> {
    let host = Arch::native();
    match route(host, arch) {
        Route::Native => return machine_root(sh, root, apt, host),
        Route::Cross => {}
        Route::None => bail!(
            "{arch} programs (kernel builds, an {arch} column's selftests) cannot be built on this {host} machine: \
             {LOCK} pins no cross compiler from {host}; build them on an {arch} machine (the binary cache serves what one built), \
             or leave them out (--kernel, --no-selftests)"
        ),
    }
    let native = machine_root(sh, root, apt, host)?;
    let all = load_all(root)?;
    let pins = cross_pins(&all, arch)?;
    let marker_text = toml::to_string(&Lock { packages: pins.to_vec() })?;
    let marker = native.dir.join(format!(".uffdc-cross-{arch}.toml"));
    let made = || std::fs::read_to_string(&marker).is_ok_and(|m| m == marker_text);
    let made_root = BuildRoot {
        dir: native.dir.clone(),
        key: cross_key(&native.key, arch, pins)?,
        compiler: cross_compiler(pins, arch.name()),
        arch,
    };
    if made() {
        return Ok(made_root);
    }
    let builds = Cache::new(root).dir.join("builds");
    let stale = {
        let _lock = crate::util::lock(&builds.join("root.lock"))?;
        if made() {
            return Ok(made_root);
        }
        if marker.exists() {
            // Another set of cross pins was unpacked here: the root is made again from scratch.
            std::fs::remove_dir_all(&native.dir)
                .with_context(|| format!("removing {} to remake it", native.dir.display()))?;
            true
        } else {
            eprintln!(
                "build   cross compiler for {arch}: unpacking {} pinned packages into {}",
                pins.len(),
                crate::util::display_path(&native.dir)
            );
            for pin in pins {
                let deb = pin::verified(sh, pin, apt, LOCK, REFRESH)?;
                debs::unpack(&deb, &native.dir).with_context(|| format!("unpacking {}", deb.display()))?;
            }
            let gcc = format!("usr/bin/{}-gcc", triple(arch));
            let libc = format!("usr/{}/lib/libc.a", triple(arch));
            for needed in [&gcc, &libc] {
                if !native.dir.join(needed).exists() {
                    bail!(
                        "the cross compiler for {arch} in {} has no /{needed}: pin packages that provide it (`{REFRESH}`)",
                        native.dir.display()
                    );
                }
            }
            crate::util::write_atomic(&marker, marker_text.as_bytes())?;
            false
        }
    };
    if stale {
        return ensure_for(sh, root, apt, arch);
    }
    Ok(made_root)
}

/// What maintainer scripts would have made: the alternatives' links a build calls by their
/// generic names, /bin/sh, /tmp, and the device nodes a compiler opens.
fn finish(dir: &Path) -> Result<()> {
    for (link, target) in [("usr/bin/awk", "mawk"), ("usr/bin/cc", "gcc"), ("usr/bin/sh", "dash")] {
        if std::fs::symlink_metadata(dir.join(link)).is_err() {
            std::os::unix::fs::symlink(target, dir.join(link))?;
        }
    }
    for d in ["tmp", "dev", "src", "out", "proc", CCACHE[0].1.trim_start_matches('/')] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    std::fs::set_permissions(dir.join("tmp"), std::os::unix::fs::PermissionsExt::from_mode(0o1777))?;
    for (name, minor) in [("null", 3), ("zero", 5), ("random", 8), ("urandom", 9)] {
        let node = dir.join("dev").join(name);
        if std::fs::symlink_metadata(&node).is_err() {
            nix::sys::stat::mknod(
                &node,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(1, minor),
            )
            .with_context(|| format!("making {} (device nodes need root)", node.display()))?;
        }
    }
    Ok(())
}

impl BuildRoot {
    /// `argv` run inside the root (chroot), in `cwd` there, with a clean environment plus `env`.
    /// Needs root (chroot(2)).
    pub fn command(
        &self,
        cwd: &str,
        argv: &[String],
        env: &[(String, String)],
    ) -> Result<std::process::Command> {
        if !crate::inputs::packages::is_root() {
            bail!("building kernels enters the pinned toolchain's root with chroot, which needs root: run as root");
        }
        let dir = CString::new(self.dir.as_os_str().as_encoded_bytes())?;
        let cwd = CString::new(cwd)?;
        let mut c = std::process::Command::new(&argv[0]);
        c.args(&argv[1..])
            .env_clear()
            .env("PATH", "/usr/bin:/usr/sbin:/bin:/sbin")
            .env("HOME", "/tmp")
            .env("TMPDIR", "/tmp")
            .env("LC_ALL", "C")
            .envs(env.iter().map(|(k, v)| (k, v)));
        // SAFETY: chroot and chdir are async-signal-safe; their arguments were made before fork.
        unsafe {
            c.pre_exec(move || {
                if libc::chroot(dir.as_ptr()) != 0 || libc::chdir(cwd.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(c)
    }

    /// Runs `argv` in the root with its output in `log`; a failure names the log and its last
    /// lines.
    pub fn run(&self, cwd: &str, argv: &[String], env: &[(String, String)], log: &Path) -> Result<()> {
        let out = std::fs::File::create(log).with_context(|| format!("cannot write {}", log.display()))?;
        let status = self
            .command(cwd, argv, env)?
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()
            .with_context(|| format!("cannot run {} in {}", argv[0], self.dir.display()))?;
        if !status.success() {
            bail!(
                "`{}` failed ({status}): {} (whole log: {})",
                argv.join(" "),
                tail(log),
                crate::util::display_path(log)
            );
        }
        Ok(())
    }

    /// The compiler cache's counters (`ccache --print-stats`), to say how much a build reused.
    pub fn ccache_stats(&self) -> Result<CcacheStats> {
        let env: Vec<(String, String)> = CCACHE.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let out = self
            .command("/", &["/usr/bin/ccache".to_string(), "--print-stats".to_string()], &env)?
            .output()
            .context("ccache --print-stats")?;
        if !out.status.success() {
            bail!(
                "`ccache --print-stats` failed in {}: {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(CcacheStats::parse(&String::from_utf8_lossy(&out.stdout)))
    }

    /// The C compiler for the root's architecture: `gcc`, or the cross compiler's
    /// `aarch64-linux-gnu-gcc`.
    pub fn gcc(&self) -> String {
        match self.arch {
            Arch::X86_64 => "gcc".to_string(),
            arch => format!("{}-gcc", triple(arch)),
        }
    }

    /// Where a path inside the root is on this machine.
    pub fn path(&self, inside: &str) -> PathBuf {
        self.dir.join(inside.trim_start_matches('/'))
    }
}

/// The last error-looking lines of a log, joined into one line.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let errors: Vec<&str> =
        lines.iter().copied().filter(|l| l.contains("rror") || l.contains("***")).collect();
    let pick = if errors.is_empty() {
        &lines[lines.len().saturating_sub(2)..]
    } else {
        &errors[errors.len().saturating_sub(2)..]
    };
    pick.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" / ")
}

/// What ccache counted: compilations answered from the cache and compiled anew.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CcacheStats {
    pub hits: u64,
    pub misses: u64,
}

impl CcacheStats {
    /// Reads `ccache --print-stats` (tab-separated `name value` lines, ccache 4.x): hits are
    /// `direct_cache_hit` + `preprocessed_cache_hit`, misses `cache_miss`.
    fn parse(text: &str) -> CcacheStats {
        let mut stats = CcacheStats::default();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let (Some(name), Some(value)) = (fields.next(), fields.next()) else { continue };
            let Ok(value) = value.parse::<u64>() else { continue };
            match name {
                "direct_cache_hit" | "preprocessed_cache_hit" => stats.hits += value,
                "cache_miss" => stats.misses += value,
                _ => {}
            }
        }
        stats
    }

    /// The counts since `before`.
    pub fn since(self, before: CcacheStats) -> CcacheStats {
        CcacheStats {
            hits: self.hits - before.hits.min(self.hits),
            misses: self.misses - before.misses.min(self.misses),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ccache_counters_add_both_kinds_of_hit_and_count_since_a_start() {
        let text = "stats_updated_timestamp\t1733500000\ndirect_cache_hit\t120\npreprocessed_cache_hit\t30\ncache_miss\t50\nfiles_in_cache\t400\n";
        let now = CcacheStats::parse(text);
        assert_eq!(now, CcacheStats { hits: 150, misses: 50 });
        assert_eq!(now.since(CcacheStats { hits: 100, misses: 10 }), CcacheStats { hits: 50, misses: 40 });
        assert_eq!(CcacheStats::parse("no counters here"), CcacheStats::default());
    }

    fn pin(package: &str, version: &str) -> DebPin {
        DebPin {
            suite: RELEASE.to_string(),
            package: package.to_string(),
            version: version.to_string(),
            arch: model::arch::Arch::X86_64,
            sha256: "0".repeat(64),
            size: 1,
        }
    }

    /// The committed lock reads and writes back byte for byte after its header (a refresh that
    /// pins the same packages rewrites nothing), its native part is a plain lock whose key is
    /// what x86 builds were keyed on, and it pins a cross compiler for arm64.
    #[test]
    fn the_lock_round_trips_and_pins_an_arm64_cross_compiler() {
        let root = crate::util::project_root();
        let text = std::fs::read_to_string(root.join(LOCK)).unwrap();
        let all = load_all(&root).unwrap();
        assert_eq!(toml::to_string(&all).unwrap(), &text[text.find("[[packages]]").unwrap()..]);
        let native = load(&root).unwrap();
        assert_eq!(native.packages, all.packages);
        assert_eq!(key_for(&root, Arch::X86_64).unwrap(), native.key().unwrap());
        let arm64 = cross_pins(&all, Arch::Arm64).unwrap();
        assert!(cross_compiler(arm64, "arm64").starts_with("gcc-12-aarch64-linux-gnu "), "{arm64:?}");
        for needed in ["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross", "binutils-aarch64-linux-gnu"] {
            assert!(arm64.iter().any(|p| p.package == needed), "no {needed} in [[cross.arm64]]");
        }
        // Nothing of the native root is pinned twice (it would be unpacked over it).
        assert!(arm64.iter().all(|c| all.packages.iter().all(|n| n.package != c.package)));
        // An arm64 machine's own root: the same packages, arm64's, with its native gcc 12.
        let machine = host_pins(&all, Arch::Arm64).unwrap().packages;
        assert!(machine.iter().all(|p| p.arch == Arch::Arm64), "{machine:?}");
        assert!(compiler(&machine).starts_with("gcc-12 "), "{machine:?}");
        for needed in PACKAGES.iter().chain(&["binutils-aarch64-linux-gnu", "libc6"]) {
            assert!(machine.iter().any(|p| p.package == *needed), "no {needed} in [[host.arm64]]");
        }
        assert!(!machine.iter().any(|p| p.package.contains("x86-64")), "{machine:?}");
    }

    /// What each machine builds for each architecture, and under which key: an x86-64 machine
    /// builds both (arm64 with the cross compiler), an arm64 machine its own programs with its own
    /// root, under keys no other route shares; x86-64 programs keep their key everywhere (the
    /// binary cache may serve them to an arm64 machine), and building them there is refused.
    #[test]
    fn each_machine_builds_its_own_programs_under_keys_of_their_own() {
        let all = load_all(&crate::util::project_root()).unwrap();
        assert_eq!(route(Arch::X86_64, Arch::X86_64), Route::Native);
        assert_eq!(route(Arch::X86_64, Arch::Arm64), Route::Cross);
        assert_eq!(route(Arch::Arm64, Arch::Arm64), Route::Native);
        assert_eq!(route(Arch::Arm64, Arch::X86_64), Route::None);
        let x86 = native_pins(&all).unwrap().key().unwrap();
        let keys = [
            key_of(&all, Arch::X86_64, Arch::X86_64).unwrap(),
            key_of(&all, Arch::X86_64, Arch::Arm64).unwrap(),
            key_of(&all, Arch::Arm64, Arch::Arm64).unwrap(),
        ];
        assert_eq!(keys[0], x86);
        assert_eq!(key_of(&all, Arch::Arm64, Arch::X86_64).unwrap(), x86);
        assert!(keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2], "{keys:?}");
        assert_eq!(
            key_for(&crate::util::project_root(), Arch::native()).unwrap(),
            keys[if Arch::native() == Arch::X86_64 { 0 } else { 2 }]
        );
        // A lock without an arm64 machine's root says so, with the fix.
        let e =
            host_pins(&ToolchainLock { packages: all.packages.clone(), ..Default::default() }, Arch::Arm64)
                .unwrap_err()
                .to_string();
        assert!(e.contains("no toolchain for an arm64 machine") && e.contains(REFRESH), "{e}");
    }

    #[test]
    fn architectures_never_share_a_key_and_a_cross_key_moves_with_its_pins() {
        let pins = [
            pin("gcc-12-aarch64-linux-gnu", "12.2.0-14cross1"),
            pin("libc6-dev-arm64-cross", "2.36-8cross1"),
        ];
        let arm64 = cross_key("native", Arch::Arm64, &pins).unwrap();
        assert_ne!(arm64, "native");
        assert_ne!(arm64, cross_key("other", Arch::Arm64, &pins).unwrap());
        assert_ne!(arm64, cross_key("native", Arch::X86_64, &pins).unwrap());
        let mut moved = pins.clone();
        moved[1].version = "2.36-9cross1".to_string();
        assert_ne!(arm64, cross_key("native", Arch::Arm64, &moved).unwrap());
        assert_eq!(cross_compiler(&pins, "arm64"), "gcc-12-aarch64-linux-gnu 12.2.0-14cross1");
        assert_eq!(cross_compiler(&pins[1..], "arm64"), "no arm64 gcc");
        // A lock without the architecture's cross compiler says so, with the fix.
        let e = cross_pins(&ToolchainLock::default(), Arch::Arm64).unwrap_err().to_string();
        assert!(e.contains("no cross compiler for arm64") && e.contains("--no-selftests"), "{e}");
        let arm = BuildRoot { dir: PathBuf::new(), key: arm64, compiler: String::new(), arch: Arch::Arm64 };
        assert_eq!(arm.gcc(), "aarch64-linux-gnu-gcc");
        assert_eq!(BuildRoot { arch: Arch::X86_64, ..arm }.gcc(), "gcc");
    }

    /// An arm64 machine's root, made here from its pins (no program of it runs on x86-64): every
    /// tool a kernel or selftests build calls, the triple-named gcc the selftests' build calls and
    /// the static C library they link, all arm64 programs; its key is the arm64 route's.
    #[test]
    #[ignore = "needs root and Debian's archive: run through `cargo xtask test`"]
    fn an_arm64_machines_root_is_made_from_its_pins() {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let mut apt = crate::inputs::fleet::Fleet::load(&root)
            .unwrap()
            .apt(&crate::inputs::fleet::Cache::new(&root), None);
        let broot = machine_root(&sh, &root, &mut apt, Arch::Arm64).unwrap();
        assert_eq!(broot.key, key_of(&load_all(&root).unwrap(), Arch::Arm64, Arch::Arm64).unwrap());
        assert!(broot.compiler.starts_with("gcc-12 "), "{}", broot.compiler);
        assert_eq!(broot.gcc(), "aarch64-linux-gnu-gcc");
        for program in ["usr/bin/make", "usr/bin/gcc-12", "usr/bin/aarch64-linux-gnu-as", "usr/bin/ccache"] {
            let elf = std::fs::read(broot.path(program)).unwrap();
            let elf = goblin::elf::Elf::parse(&elf).unwrap();
            assert_eq!(elf.header.e_machine, goblin::elf::header::EM_AARCH64, "{program}");
        }
        assert!(broot.path("usr/lib/aarch64-linux-gnu/libc.a").is_file());
        assert!(std::fs::read_link(broot.path("usr/bin/aarch64-linux-gnu-gcc")).is_ok());
    }

    #[test]
    fn a_cross_compiler_adds_packages_but_never_moves_a_native_one() {
        let native = vec![
            ("libc6".to_string(), "2.36-9".to_string()),
            ("gcc-12".to_string(), "12.2.0-14".to_string()),
        ];
        let with = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
            native.iter().cloned().chain(extra.iter().map(|(p, v)| (p.to_string(), v.to_string()))).collect()
        };
        let added = added_by(&native, with(&[("gcc-12-aarch64-linux-gnu", "12.2.0-14cross1")])).unwrap();
        assert_eq!(added, [("gcc-12-aarch64-linux-gnu".to_string(), "12.2.0-14cross1".to_string())]);
        let mut moved = with(&[]);
        moved[0].1 = "2.36-10".to_string();
        let e = added_by(&native, moved).unwrap_err().to_string();
        assert!(e.contains("libc6 2.36-10") && e.contains("2.36-9"), "{e}");
    }
}
