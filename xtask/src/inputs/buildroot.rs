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

use crate::inputs::apt::LazyApt;
use crate::inputs::debs;
use crate::inputs::fleet::Cache;
use crate::inputs::pin::{self, Lock};
use anyhow::{bail, Context, Result};
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
    /// `gcc-12 12.2.0-14`, as builds record it.
    pub compiler: String,
}

pub fn load(root: &Path) -> Result<Lock> {
    Lock::load(root, LOCK, REFRESH)
}

/// Re-resolves the toolchain in its release and rewrites the lock.
pub fn refresh(sh: &Shell, root: &Path, apt: &mut LazyApt) -> Result<()> {
    apt.get()?.update(sh, true)?;
    let resolved = apt.get()?.closure(sh, RELEASE, PACKAGES)?;
    let lock = Lock::pin(sh, apt, RELEASE, &resolved)?;
    let header = format!(
        "# The kernel build toolchain (xtask/src/inputs/buildroot.rs): {} and every dependency apt resolves\n\
         # for them on an empty {RELEASE} system. Written by `{REFRESH}`; every entry was downloaded and\n\
         # verified by apt against the signed archive; builds check each .deb's sha256.\n",
        PACKAGES.join(" ")
    );
    let old = load(root).ok();
    match &old {
        Some(o) if o == &lock => println!("{:<20} unchanged: {} packages", "toolchain", lock.packages.len()),
        _ => println!(
            "{:<20} pinned {} packages of {RELEASE} ({})",
            "toolchain",
            lock.packages.len(),
            compiler(&lock)
        ),
    }
    lock.save(root, LOCK, &header)?;
    println!("wrote {LOCK}");
    Ok(())
}

fn compiler(lock: &Lock) -> String {
    lock.packages
        .iter()
        .filter(|p| p.package.starts_with("gcc-") && p.package[4..].chars().all(|c| c.is_ascii_digit()))
        .map(|p| format!("{} {}", p.package, p.version))
        .next()
        .unwrap_or_else(|| "no gcc".to_string())
}

/// The toolchain's root, unpacked from its verified .debs if it is not already; `apt` is the
/// fleet's private apt (`Fleet::apt`), which then serves the toolchain's release too.
pub fn ensure(sh: &Shell, root: &Path, apt: &mut LazyApt) -> Result<BuildRoot> {
    let lock = load(root)?;
    let key = lock.key()?;
    let builds = Cache::new(root).dir.join("builds");
    let dir = builds.join(format!("root-{key}"));
    let pins = toml::to_string(&lock)?;
    let made = BuildRoot { dir: dir.clone(), key: key.clone(), compiler: compiler(&lock) };
    apt.add_suite(RELEASE);
    let packages: Vec<&pin::DebPin> = lock.packages.iter().collect();
    let what = format!("build   toolchain of {RELEASE}");
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
}
