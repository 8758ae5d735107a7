//! Debian's own tooling, privately: apt-get and apt-cache with a configuration of their own under
//! `target/uffdc/apt` (sources, lists, cache, an empty dpkg status), never the system's apt state.
//! The mirror comes from the machine's apt sources unless overridden; archive signatures are
//! checked against Debian's keyring.

use anyhow::{bail, Context, Result};
use model::arch::Arch;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use xshell::{cmd, Shell};

/// Debian's archive keyring: every source is `signed-by` it, so apt checks the archive's signatures.
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Where the Debian archive is fetched from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirrors {
    pub main: String,
    pub security: String,
}

const CODENAMES: &[&str] = &[
    "stretch",
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "unstable",
    "experimental",
];

/// The Debian mirrors to use: `--mirror` / `UFFDC_DEBIAN_MIRROR` and
/// `UFFDC_DEBIAN_SECURITY_MIRROR` when given, else the ones in this machine's apt sources.
pub fn mirrors(main_override: Option<&str>) -> Result<Mirrors> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut entries = Vec::new();
    for file in apt_source_files() {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if file.extension().is_some_and(|e| e == "sources") {
                entries.extend(deb822_entries(&text));
            } else {
                entries.extend(one_line_entries(&text));
            }
        }
    }
    let (found_main, found_security) = debian_mirrors(&entries);
    let main = main_override.map(String::from).or_else(|| env("UFFDC_DEBIAN_MIRROR")).or(found_main);
    let Some(main) = main else {
        bail!(
            "no Debian mirror in this machine's apt sources (/etc/apt/sources.list*): pass --mirror URI or set UFFDC_DEBIAN_MIRROR=<Debian mirror URI>"
        );
    };
    let main = main.trim_end_matches('/').to_string();
    let security = env("UFFDC_DEBIAN_SECURITY_MIRROR")
        .or(found_security)
        .unwrap_or_else(|| format!("{main}-security"))
        .trim_end_matches('/')
        .to_string();
    Ok(Mirrors { main, security })
}

/// The environment variable naming the binary cache (a URL, or `off`).
pub const BINARY_CACHE_ENV: &str = "UFFDC_BINARY_CACHE";

/// The binary cache (`bincache.rs`), from where built kernels and selftests are fetched before
/// compiling: `UFFDC_BINARY_CACHE` (`off` or empty: none), else the published
/// report's `binaries/` folder, when the checkout's `origin` is on GitHub.
pub fn binary_cache() -> Option<String> {
    match std::env::var(BINARY_CACHE_ENV) {
        Ok(v) if v.is_empty() || v == "off" => None,
        Ok(v) => Some(v),
        Err(_) => {
            static DEFAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
            DEFAULT
                .get_or_init(|| {
                    let out = std::process::Command::new("git")
                        .arg("-C")
                        .arg(crate::util::project_root())
                        .args(["config", "--get", "remote.origin.url"])
                        .stderr(std::process::Stdio::null())
                        .output()
                        .ok()?;
                    published_at(String::from_utf8_lossy(&out.stdout).trim())
                })
                .clone()
        }
    }
}

/// The published report's binary cache for a GitHub remote (`https://github.com/OWNER/REPO`,
/// `git@github.com:OWNER/REPO.git`): `https://OWNER.github.io/REPO/binaries/`, as README's
/// "published report" says (a repository named `OWNER.github.io` is served at the site's root).
fn published_at(remote: &str) -> Option<String> {
    let path = remote
        .strip_prefix("https://github.com/")
        .or_else(|| remote.strip_prefix("git@github.com:"))
        .or_else(|| remote.strip_prefix("ssh://git@github.com/"))?;
    let (owner, repo) = path.trim_end_matches('/').trim_end_matches(".git").split_once('/')?;
    if owner.is_empty() || repo.is_empty() || repo.contains('/') {
        return None;
    }
    let owner = owner.to_ascii_lowercase();
    Some(if repo.eq_ignore_ascii_case(&format!("{owner}.github.io")) {
        format!("https://{owner}.github.io/binaries/")
    } else {
        format!("https://{owner}.github.io/{repo}/binaries/")
    })
}

fn apt_source_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    let mut parts: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
        .collect();
    parts.sort();
    files.extend(parts);
    files
}

/// An apt source: a URI and the suites taken from it.
type Entry = (String, Vec<String>);

/// `deb [options] URI suite components...` lines.
fn one_line_entries(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        let mut rest: Vec<&str> = words.collect();
        if rest.first().is_some_and(|w| w.starts_with('[')) {
            let end = rest.iter().position(|w| w.ends_with(']')).unwrap_or(0);
            rest.drain(..=end);
        }
        if let [uri, suite, ..] = rest[..] {
            entries.push((uri.to_string(), vec![suite.to_string()]));
        }
    }
    entries
}

/// deb822 stanzas (`Types:`, `URIs:`, `Suites:`, `Enabled:`), separated by blank lines.
fn deb822_entries(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        for line in stanza.lines() {
            if line.starts_with('#') || line.starts_with(char::is_whitespace) {
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let words = |k: &str| -> Vec<String> {
            fields.get(k).map(|v| v.split_whitespace().map(String::from).collect()).unwrap_or_default()
        };
        if fields.get("enabled").is_some_and(|v| v == "no") || !words("types").iter().any(|t| t == "deb") {
            continue;
        }
        for uri in words("uris") {
            entries.push((uri, words("suites")));
        }
    }
    entries
}

/// (main archive URI, security archive URI): the first sources that carry a Debian suite.
fn debian_mirrors(entries: &[Entry]) -> (Option<String>, Option<String>) {
    let debian = |s: &str| CODENAMES.contains(&s.split('-').next().unwrap_or(""));
    let find = |security: bool| {
        entries
            .iter()
            .find(|(_, suites)| suites.iter().any(|s| debian(s) && s.ends_with("-security") == security))
            .map(|(uri, _)| uri.clone())
    };
    (find(false), find(true))
}

/// A private apt over a set of suites, for one architecture.
pub struct Apt {
    dir: PathBuf,
    pub mirrors: Mirrors,
    options: Vec<String>,
    /// Whose packages it fetches (`APT::Architecture`).
    pub arch: Arch,
    /// The sources changed since the lists were last fetched.
    stale: bool,
    /// `apt-cache show` answers read ahead for many packages at once ([`Apt::fetch_ahead`]),
    /// by `package=version`; forgotten when the lists are fetched again.
    shown: BTreeMap<String, BTreeMap<String, String>>,
}

impl Apt {
    /// Prepares `<cache>/apt` for `suites` (security suites from the security mirror), or
    /// `<cache>/apt-<arch>` for another architecture than x86_64 (lists and .debs of its own).
    pub fn new(cache: &Path, mirrors: Mirrors, suites: &[String], arch: Arch) -> Result<Apt> {
        let dir = cache.join(dir_name(arch));
        for d in ["lists/partial", "cache/archives/partial", "debs"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        let mut suites = suites.to_vec();
        suites.sort();
        suites.dedup();
        let sources: String = suites
            .iter()
            .map(|s| format!("deb [signed-by={DEBIAN_KEYRING}] {} {s} main\n", mirrors.uri(s)))
            .collect();
        let list = dir.join("sources.list");
        let changed = std::fs::read_to_string(&list).map_or(true, |old| old != sources);
        let stale = changed
            || !dir
                .join("lists")
                .read_dir()
                .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.path().is_file())));
        // Written only when it changes, and atomically: the columns of a run each make an apt, and
        // another's apt-get may be reading these files.
        if changed {
            crate::util::write_atomic(&list, sources.as_bytes())?;
        }
        if !dir.join("status").exists() {
            crate::util::write_atomic(&dir.join("status"), b"")?;
        }
        let options = apt_options(&dir, arch);
        Ok(Apt { dir, mirrors, options, arch, stale, shown: BTreeMap::new() })
    }

    /// `apt-get update` of the private lists, when they are stale or `force`d.
    pub fn update(&mut self, sh: &Shell, force: bool) -> Result<()> {
        if !(self.stale || force) {
            return Ok(());
        }
        // Two runs sharing the cache must not write the same lists at once.
        let _lock = crate::util::lock(&self.dir.join("apt.lock"))?;
        let options = &self.options;
        eprintln!("apt     update (private lists in {})", crate::util::display_path(&self.dir));
        cmd!(sh, "apt-get {options...} -qq update")
            .quiet()
            .run()
            .context("apt-get update (private lists under target/uffdc/apt)")?;
        self.stale = false;
        self.shown.clear();
        Ok(())
    }

    /// The fields of `package=version` (`Depends`, `Installed-Size`, `Size`, `SHA256`, ...), from
    /// the first stanza apt-cache prints; `None` when the archive does not have it.
    pub fn show(&self, sh: &Shell, package: &str, version: &str) -> Option<BTreeMap<String, String>> {
        let wanted = format!("{package}={version}");
        if let Some(fields) = self.shown.get(&wanted) {
            return Some(fields.clone());
        }
        let options = &self.options;
        let text = cmd!(sh, "apt-cache {options...} show {wanted}").quiet().ignore_stderr().read().ok()?;
        let first = stanzas(&text).next();
        first
    }

    /// Reads ahead what [`Apt::show`] answers for each `(package, version)` of `wanted` with one
    /// `apt-cache show`, and fetches the .debs the cache lacks with one `apt-get download`: a
    /// lock's refresh pins a hundred packages, where one apt process per package spent a second
    /// or more each on startup (minutes per refresh on a loaded machine). Checks nothing and
    /// fails quietly: [`Apt::download`] then checks each package, fetching what this left out.
    pub fn fetch_ahead(&mut self, sh: &Shell, wanted: &[(String, String)]) {
        let args: Vec<String> =
            wanted.iter().map(|(p, v)| format!("{p}={v}")).filter(|w| !self.shown.contains_key(w)).collect();
        if !args.is_empty() {
            let options = &self.options;
            let out = cmd!(sh, "apt-cache {options...} show {args...}")
                .quiet()
                .ignore_stderr()
                .ignore_status()
                .read();
            for fields in stanzas(&out.unwrap_or_default()) {
                if let (Some(p), Some(v)) = (fields.get("Package"), fields.get("Version")) {
                    self.shown.entry(format!("{p}={v}")).or_insert(fields);
                }
            }
        }
        let debs = self.dir.join("debs");
        let missing: Vec<String> = wanted
            .iter()
            .filter(|(p, v)| {
                // One the archive does not list is left to download(), which names it.
                let Some(want) = self.shown.get(&format!("{p}={v}")).and_then(|f| f.get("SHA256")) else {
                    return false;
                };
                let name = format!("{p}_{}_", v.replace(':', "%3a"));
                !std::fs::read_dir(&debs).into_iter().flatten().flatten().any(|e| {
                    e.file_name().to_string_lossy().starts_with(&name)
                        && crate::util::sha256_file(&e.path()).is_ok_and(|s| s == *want)
                })
            })
            .map(|(p, v)| format!("{p}={v}"))
            .collect();
        if let Err(e) = self.download_all(sh, &missing) {
            eprintln!(
                "apt     one download of {} packages failed ({e:#}): fetching them one by one",
                missing.len()
            );
        }
    }

    /// Every (version, suite) the archive has for `package`.
    pub fn versions(&self, sh: &Shell, package: &str) -> Result<Vec<(String, String)>> {
        let options = &self.options;
        let text = cmd!(sh, "apt-cache {options...} madison {package}").quiet().ignore_stderr().read()?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let cols: Vec<&str> = l.split('|').map(str::trim).collect();
                let suite = cols.get(2)?.split_whitespace().nth(1)?.split('/').next()?;
                Some((cols.get(1)?.to_string(), suite.to_string()))
            })
            .collect())
    }

    /// The names of the packages in the lists that start with `prefix` (`apt-cache pkgnames`).
    pub fn package_names(&self, sh: &Shell, prefix: &str) -> Result<Vec<String>> {
        let options = &self.options;
        let text = cmd!(sh, "apt-cache {options...} pkgnames {prefix}").quiet().ignore_stderr().read()?;
        let mut names: Vec<String> =
            text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
        names.sort();
        Ok(names)
    }

    /// What installing `packages` on an empty system from `release` takes (the packages and their
    /// dependencies, no recommends), by apt's own simulation: (package, version) pairs.
    pub fn closure(&self, sh: &Shell, release: &str, packages: &[&str]) -> Result<Vec<(String, String)>> {
        let options = &self.options;
        let default = format!("APT::Default-Release={release}");
        let out =
            cmd!(sh, "apt-get {options...} -o {default} -s install --no-install-recommends {packages...}")
                .quiet()
                .ignore_status()
                .output()?;
        if !out.status.success() {
            bail!(
                "apt cannot install {} from {release}: {}",
                packages.join(" "),
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("").trim()
            );
        }
        // `Inst gcc-12 (12.2.0-14 Debian:12.12/oldstable [amd64])`
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("Inst "))
            .filter_map(|l| {
                let (name, rest) = l.split_once(" (")?;
                Some((name.to_string(), rest.split_whitespace().next()?.to_string()))
            })
            .collect())
    }

    /// Downloads `package=version` into `<cache>/apt/debs` and returns the .deb's path.
    pub fn download(&mut self, sh: &Shell, package: &str, version: &str, suite: &str) -> Result<PathBuf> {
        let mut fields = self.show(sh, package, version);
        if fields.is_none() {
            self.update(sh, true)?;
            fields = self.show(sh, package, version);
        }
        let Some(fields) = fields else {
            bail!(
                "{package}={version} is not in {} {suite}: the archive no longer serves this version; run `cargo xtask images refresh` to pin current ones, or point UFFDC_DEBIAN_MIRROR at a mirror that has it",
                self.mirrors.uri(suite)
            );
        };
        let debs = self.dir.join("debs");
        // One writer per package: different packages download in parallel (a run's columns).
        std::fs::create_dir_all(self.dir.join("locks"))?;
        let _lock = crate::util::lock(&self.dir.join("locks").join(format!("{package}.lock")))?;
        let _cwd = sh.push_dir(&debs);
        let options = &self.options;
        let wanted = format!("{package}={version}");
        let prefix = format!("{package}_");
        let escaped = version.replace(':', "%3a");
        let find = || {
            std::fs::read_dir(&debs).into_iter().flatten().flatten().map(|e| e.path()).find(|p| {
                let n = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
                n.starts_with(&prefix) && n.contains(&format!("_{escaped}_")) && n.ends_with(".deb")
            })
        };
        // Already here with the sha256 the signed index gives this version: what apt-get download
        // would fetch and check again (a refresh re-pins a hundred toolchain packages this way).
        if let Some(deb) = find().filter(|d| {
            fields.get("SHA256").is_some_and(|want| crate::util::sha256_file(d).is_ok_and(|s| s == *want))
        }) {
            return Ok(deb);
        }
        eprintln!("apt     download {wanted}");
        cmd!(sh, "apt-get {options...} -qq download {wanted}")
            .quiet()
            .run()
            .with_context(|| format!("apt-get download {wanted}"))?;
        find().with_context(|| format!("apt-get download left no .deb for {wanted} in {}", debs.display()))
    }
}

impl Apt {
    /// Fetches every `package=version` of `wanted` into the .deb cache with one `apt-get download`
    /// (one process and one connection for all, where one call per package spent about two seconds
    /// each on startup: 33 calls for bookworm's CRIU). Checks nothing: the callers find each .deb
    /// by its pinned sha256 afterwards, and fetch what is still missing one by one, whose errors
    /// name the package. Stale lists are fetched first: in an empty cache there are none, and
    /// `apt-get download` then locates no package (a cold run fetched CRIU's 33 one by one).
    pub fn download_all(&mut self, sh: &Shell, wanted: &[String]) -> Result<()> {
        if wanted.is_empty() {
            return Ok(());
        }
        self.update(sh, false)?;
        let debs = self.dir.join("debs");
        std::fs::create_dir_all(&debs)?;
        let _cwd = sh.push_dir(&debs);
        let options = &self.options;
        eprintln!("apt     download {} packages: {}", wanted.len(), wanted.join(" "));
        cmd!(sh, "apt-get {options...} -qq download {wanted...}").quiet().run()?;
        Ok(())
    }
}

/// The stanzas of `apt-cache show`'s output, each as its fields (continuation lines left out).
fn stanzas(text: &str) -> impl Iterator<Item = BTreeMap<String, String>> + '_ {
    text.split("\n\n").filter_map(|stanza| {
        let fields: BTreeMap<String, String> = stanza
            .lines()
            .filter(|l| !l.starts_with(' '))
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (!fields.is_empty()).then_some(fields)
    })
}

/// An [`Apt`] made on first use: runs that find everything in the cache touch no network and
/// need no mirror.
///
/// A run makes one (`Fleet::apt`, from its `--mirror`) and hands it to every consumer: each
/// thread or architecture takes a clone or [`LazyApt::for_arch`], which share the mirror decision
/// (made once, on the first use of any of them) but make their own [`Apt`] (they take its locks).
pub struct LazyApt {
    cache: PathBuf,
    mirrors: std::sync::Arc<Decision>,
    suites: Vec<String>,
    /// Whose packages it fetches (`APT::Architecture`).
    pub arch: Arch,
    /// Where built kernels and selftests are fetched from before compiling (`bincache.rs`; `None`:
    /// always build, as `--no-binary-cache` asks).
    pub binary_cache: Option<String>,
    apt: Option<Apt>,
}

/// The mirror a run asked for (`--mirror`, else none), and the [`Mirrors`] decided from it on
/// first use.
#[derive(Debug)]
struct Decision {
    asked: Option<String>,
    decided: std::sync::Mutex<Option<Mirrors>>,
}

impl Clone for LazyApt {
    /// The same handle (mirror decision, suites, architecture), with an [`Apt`] of its own.
    fn clone(&self) -> LazyApt {
        self.for_arch(self.arch)
    }
}

impl std::fmt::Debug for LazyApt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyApt")
            .field("mirror", &self.mirrors.asked)
            .field("suites", &self.suites)
            .field("arch", &self.arch)
            .finish()
    }
}

impl LazyApt {
    /// An apt for x86_64 (amd64) packages, and the architecture-independent ones.
    pub fn new(cache: &Path, mirror: Option<String>, suites: Vec<String>) -> LazyApt {
        LazyApt {
            cache: cache.to_path_buf(),
            mirrors: std::sync::Arc::new(Decision { asked: mirror, decided: Default::default() }),
            suites,
            arch: Arch::X86_64,
            binary_cache: binary_cache(),
            apt: None,
        }
    }

    /// The same apt (mirror, suites) for another architecture's packages.
    pub fn for_arch(&self, arch: Arch) -> LazyApt {
        LazyApt {
            cache: self.cache.clone(),
            mirrors: self.mirrors.clone(),
            suites: self.suites.clone(),
            arch,
            binary_cache: self.binary_cache.clone(),
            apt: None,
        }
    }

    /// Where downloaded .debs are kept.
    pub fn debs_dir(&self) -> PathBuf {
        self.cache.join(dir_name(self.arch)).join("debs")
    }

    /// Serves `suite` too (an apt already made without it is made again on next use).
    pub fn add_suite(&mut self, suite: &str) {
        if !self.suites.iter().any(|s| s == suite) {
            self.suites.push(suite.to_string());
            self.apt = None;
        }
    }

    /// The mirrors: decided on the first call of this handle or any made from it, then the same.
    fn mirrors(&self) -> Result<Mirrors> {
        let mut decided = self.mirrors.decided.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = &*decided {
            return Ok(m.clone());
        }
        let m = mirrors(self.mirrors.asked.as_deref())?;
        *decided = Some(m.clone());
        Ok(m)
    }

    pub fn get(&mut self) -> Result<&mut Apt> {
        if self.apt.is_none() {
            let mirrors = self.mirrors()?;
            self.apt = Some(Apt::new(&self.cache, mirrors, &self.suites, self.arch)?);
        }
        Ok(self.apt.as_mut().expect("just made"))
    }
}

/// Whether Debian version `a` sorts after `b` (dpkg --compare-versions).
pub fn newer(sh: &Shell, a: &str, b: &str) -> bool {
    cmd!(sh, "dpkg --compare-versions {a} gt {b}").quiet().run().is_ok()
}

impl Mirrors {
    /// The URI that serves `suite`.
    pub fn uri(&self, suite: &str) -> &str {
        if suite.ends_with("-security") {
            &self.security
        } else {
            &self.main
        }
    }
}

/// The private apt's directory under the cache: `apt` for x86_64 (as before architectures), else
/// `apt-<debian arch>`.
fn dir_name(arch: Arch) -> String {
    match arch {
        Arch::X86_64 => "apt".to_string(),
        other => format!("apt-{}", other.debian()),
    }
}

fn apt_options(apt: &Path, arch: Arch) -> Vec<String> {
    let p = |rel: &str| apt.join(rel).display().to_string();
    let mut o = vec![
        format!("Dir::Etc::SourceList={}", p("sources.list")),
        "Dir::Etc::SourceParts=-".to_string(),
        format!("Dir::State::Lists={}", p("lists")),
        format!("Dir::Cache={}", p("cache")),
        // The binary caches, which the debian:bookworm image turns off (docker-clean): without
        // them every apt-cache call parses every list again (about 20 s each with sid's).
        "Dir::Cache::pkgcache=pkgcache.bin".to_string(),
        "Dir::Cache::srcpkgcache=srcpkgcache.bin".to_string(),
        format!("Dir::State::Status={}", p("status")),
        "Debug::NoLocking=1".to_string(),
        "APT::Sandbox::User=root".to_string(),
        "Acquire::Languages=none".to_string(),
        format!("APT::Architecture={}", arch.debian()),
        format!("APT::Architectures={}", arch.debian()),
    ];
    for target in ["DEP-11", "DEP-11-icons", "DEP-11-icons-small", "DEP-11-icons-hidpi", "CNF"] {
        o.push(format!("Acquire::IndexTargets::deb::{target}::DefaultEnabled=false"));
    }
    o.into_iter().flat_map(|o| ["-o".to_string(), o]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `apt-cache show` for many packages: each stanza by its own fields, a description's
    /// continuation lines left out.
    #[test]
    fn stanzas_of_one_apt_cache_show_for_many_packages() {
        let text =
            "Package: criu\nVersion: 4.1.1-1\nSHA256: aa\nDescription: checkpoint\n restore in userspace\n\n\
                    Package: libnet1\nVersion: 1.3+dfsg-2\nSHA256: bb\n\n";
        let all: Vec<_> = stanzas(text).collect();
        assert_eq!(all.len(), 2);
        assert_eq!((all[0]["Package"].as_str(), all[0]["SHA256"].as_str()), ("criu", "aa"));
        assert_eq!(all[0].len(), 4, "no field from a continuation line: {:?}", all[0]);
        assert_eq!((all[1]["Package"].as_str(), all[1]["Version"].as_str()), ("libnet1", "1.3+dfsg-2"));
        assert_eq!(stanzas("").count(), 0);
    }

    /// A run's handles (clones, other architectures) decide the mirror once, together.
    #[test]
    fn handles_made_from_one_share_its_mirror_decision() {
        let run =
            LazyApt::new(Path::new("/nonexistent"), Some("http://mirror.example/debian/".into()), Vec::new());
        let arm64 = run.for_arch(Arch::Arm64);
        let step = arm64.clone();
        assert_eq!(step.arch, Arch::Arm64);
        assert!(step.mirrors.decided.lock().unwrap().is_none(), "nothing decided before first use");
        let decided = run.mirrors().unwrap();
        assert_eq!(decided.main, "http://mirror.example/debian");
        assert_eq!(step.mirrors.decided.lock().unwrap().as_ref(), Some(&decided));
        assert!(std::sync::Arc::ptr_eq(&run.mirrors, &step.mirrors));
    }

    #[test]
    fn the_published_report_of_a_github_remote_holds_the_binary_cache() {
        for remote in ["https://github.com/Me/uffd-conformance", "git@github.com:Me/uffd-conformance.git"] {
            assert_eq!(
                published_at(remote).as_deref(),
                Some("https://me.github.io/uffd-conformance/binaries/")
            );
        }
        assert_eq!(
            published_at("https://github.com/me/me.github.io").as_deref(),
            Some("https://me.github.io/binaries/")
        );
        assert_eq!(published_at("/work/main"), None);
        assert_eq!(published_at("https://gitlab.com/me/repo"), None);
    }

    #[test]
    fn mirrors_from_deb822_and_one_line_sources() {
        let deb822 = "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
            Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n\
            Types: deb\nEnabled: no\nURIs: http://off.example/debian\nSuites: sid\n";
        let mut entries = one_line_entries(
            "deb [arch=amd64 signed-by=/k.gpg] https://packages.example.com/apt stable main\n",
        );
        entries.extend(deb822_entries(deb822));
        assert_eq!(
            debian_mirrors(&entries),
            (
                Some("http://mirror.example/debian".into()),
                Some("http://mirror.example/debian-security".into())
            )
        );
        let ubuntu = one_line_entries("deb http://archive.ubuntu.com/ubuntu noble main\n");
        assert_eq!(debian_mirrors(&ubuntu), (None, None));
        let old = one_line_entries(
            "deb http://a.example/debian bullseye main # c\ndeb http://s.example/ bullseye-security main\n",
        );
        assert_eq!(
            debian_mirrors(&old),
            (Some("http://a.example/debian".into()), Some("http://s.example/".into()))
        );
    }
}
