//! Guest kernels: `images/kernels.toml` pins, fetched with Debian's own tooling (apt-get with a
//! private configuration under `target/uffdc/apt`, never the system's apt state), verified
//! against the pinned sha256, and unpacked into a cache that later runs use offline.

use crate::deps::DEBIAN_KEYRING;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use xshell::{cmd, Shell};

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelsFile {
    pub kernels: BTreeMap<String, Pin>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub suite: String,
    pub package: String,
    pub version: String,
    pub sha256: String,
    pub why: String,
}

impl Pin {
    /// How a results file names this kernel's origin.
    pub fn source(&self) -> String {
        format!("debian {} {} {} (deb sha256 {})", self.suite, self.package, self.version, self.sha256)
    }
}

pub fn load_kernels(root: &Path) -> Result<KernelsFile> {
    let path = root.join("images/kernels.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(1, |s| text[..s.start].matches('\n').count() + 1);
        anyhow::anyhow!("{}:{line}: {} (fix the file)", path.display(), e.message().trim())
    })
}

impl KernelsFile {
    /// The pins for the requested ids (all when none are requested), in request order.
    pub fn select(&self, ids: &[String]) -> Result<Vec<(String, Pin)>> {
        if ids.is_empty() {
            return Ok(self.kernels.iter().map(|(k, p)| (k.clone(), p.clone())).collect());
        }
        ids.iter()
            .map(|id| match self.kernels.get(id) {
                Some(pin) => Ok((id.clone(), pin.clone())),
                None => bail!(
                    "unknown kernel id {id:?}: images/kernels.toml has {}",
                    self.kernels.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
                ),
            })
            .collect()
    }
}

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

/// A kernel ready to boot.
#[derive(Clone, Debug)]
pub struct Image {
    pub id: String,
    pub pin: Pin,
    pub vmlinuz: PathBuf,
    /// The kernel's `uname -r`, from the image's file names.
    pub release: String,
    /// `CONFIG_USERFAULTFD=y` in the packaged config, when it has one.
    pub userfaultfd: Option<bool>,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheEntry {
    package: String,
    version: String,
    deb_sha256: String,
    vmlinuz_sha256: String,
    release: String,
    userfaultfd: Option<bool>,
}

pub struct Cache {
    pub dir: PathBuf,
}

impl Cache {
    pub fn new(root: &Path) -> Cache {
        Cache { dir: root.join("target/uffdc") }
    }

    fn image_dir(&self, id: &str) -> PathBuf {
        self.dir.join("images").join(id)
    }

    /// The cached image, if it was verified for exactly this pin and is still intact.
    fn cached(&self, id: &str, pin: &Pin) -> Option<Image> {
        let dir = self.image_dir(id);
        let entry: CacheEntry =
            toml::from_str(&std::fs::read_to_string(dir.join("image.toml")).ok()?).ok()?;
        let vmlinuz = dir.join("vmlinuz");
        let intact = entry.package == pin.package
            && entry.version == pin.version
            && entry.deb_sha256 == pin.sha256
            && sha256_file(&vmlinuz).ok()? == entry.vmlinuz_sha256;
        intact.then(|| Image {
            id: id.to_string(),
            pin: pin.clone(),
            vmlinuz,
            release: entry.release,
            userfaultfd: entry.userfaultfd,
        })
    }

    /// The image for a pin: from the cache when verified there, else fetched, verified and
    /// unpacked. Serialised across processes by a lock on the cache.
    pub fn fetch(
        &self,
        sh: &Shell,
        id: &str,
        pin: &Pin,
        all: &KernelsFile,
        mirrors: &dyn Fn() -> Result<Mirrors>,
    ) -> Result<Image> {
        if let Some(image) = self.cached(id, pin) {
            return Ok(image);
        }
        std::fs::create_dir_all(&self.dir)?;
        let _lock = crate::util::lock(&self.dir.join("images.lock"))?;
        if let Some(image) = self.cached(id, pin) {
            return Ok(image);
        }
        let deb = self.download(sh, pin, all, &mirrors()?)?;
        let actual = sha256_file(&deb)?;
        if actual != pin.sha256 {
            let _ = std::fs::remove_file(&deb);
            bail!(
                "{id}: {} has sha256 {actual}, but images/kernels.toml pins {}: the download was corrupt (deleted; rerun to fetch again) or the pin is wrong",
                deb.display(),
                pin.sha256
            );
        }
        self.unpack(id, pin, &deb)
    }

    fn download(&self, sh: &Shell, pin: &Pin, all: &KernelsFile, mirrors: &Mirrors) -> Result<PathBuf> {
        let apt = self.dir.join("apt");
        for d in ["lists/partial", "cache/archives/partial", "debs"] {
            std::fs::create_dir_all(apt.join(d))?;
        }
        let mut suites: Vec<&str> = all.kernels.values().map(|p| p.suite.as_str()).collect();
        suites.push(&pin.suite);
        suites.sort();
        suites.dedup();
        let sources: String = suites
            .iter()
            .map(|s| {
                let uri = if s.ends_with("-security") { &mirrors.security } else { &mirrors.main };
                format!("deb [signed-by={DEBIAN_KEYRING}] {uri} {s} main\n")
            })
            .collect();
        let list = apt.join("sources.list");
        let stale = std::fs::read_to_string(&list).map_or(true, |old| old != sources);
        std::fs::write(&list, &sources)?;
        std::fs::write(apt.join("status"), "")?;
        let options = &apt_options(&apt);
        let wanted = &format!("{}={}", pin.package, pin.version);
        let known = || {
            cmd!(sh, "apt-cache {options...} show {wanted}")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run()
                .is_ok()
        };
        if stale || !known() {
            eprintln!("apt     update (private lists in {})", crate::util::display_path(&apt));
            cmd!(sh, "apt-get {options...} -qq update")
                .quiet()
                .run()
                .context("apt-get update (private lists under target/uffdc/apt)")?;
        }
        if !known() {
            bail!(
                "{wanted} is not in {} {}: the archive no longer serves this version; pin a current one in images/kernels.toml, or point UFFDC_DEBIAN_MIRROR at a mirror that has it",
                if pin.suite.ends_with("-security") { &mirrors.security } else { &mirrors.main },
                pin.suite
            );
        }
        let debs = apt.join("debs");
        let _cwd = sh.push_dir(&debs);
        eprintln!("apt     download {wanted}");
        cmd!(sh, "apt-get {options...} -qq download {wanted}")
            .quiet()
            .run()
            .with_context(|| format!("apt-get download {wanted}"))?;
        let prefix = format!("{}_", pin.package);
        let version = pin.version.replace(':', "%3a");
        std::fs::read_dir(&debs)?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let n = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
                n.starts_with(&prefix) && n.contains(&format!("_{version}_")) && n.ends_with(".deb")
            })
            .with_context(|| format!("apt-get download left no .deb for {wanted} in {}", debs.display()))
    }

    /// Takes the kernel image (and its config) out of the .deb by content.
    fn unpack(&self, id: &str, pin: &Pin, deb: &Path) -> Result<Image> {
        let mut child = std::process::Command::new("dpkg-deb")
            .arg("--fsys-tarfile")
            .arg(deb)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("running dpkg-deb")?;
        let mut archive = tar::Archive::new(child.stdout.take().expect("piped"));
        let (mut vmlinuz, mut config, mut release) = (None, None, None);
        for entry in archive.entries().context("reading the .deb's data")? {
            let mut entry = entry?;
            if !entry.header().entry_type().is_file() {
                continue;
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
            if let Some((what, r)) = kind {
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                if what == "vmlinuz" {
                    vmlinuz = Some(data);
                    release = Some(r);
                } else {
                    config = Some(data);
                }
            }
        }
        let status = child.wait()?;
        if !status.success() {
            bail!(
                "dpkg-deb --fsys-tarfile {} failed ({status}): the .deb is damaged; delete it and rerun",
                deb.display()
            );
        }
        let (Some(vmlinuz), Some(release)) = (vmlinuz, release) else {
            bail!("{id}: {} {} holds no kernel image (no /boot/vmlinuz-* or /usr/lib/modules/*/vmlinuz): pin the package that does", pin.package, pin.version);
        };
        let userfaultfd =
            config.as_ref().map(|c| String::from_utf8_lossy(c).lines().any(|l| l == "CONFIG_USERFAULTFD=y"));
        let dir = self.image_dir(id);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("vmlinuz"), &vmlinuz)?;
        if let Some(config) = &config {
            std::fs::write(dir.join("config"), config)?;
        }
        let entry = CacheEntry {
            package: pin.package.clone(),
            version: pin.version.clone(),
            deb_sha256: pin.sha256.clone(),
            vmlinuz_sha256: hex(&Sha256::digest(&vmlinuz)),
            release: release.clone(),
            userfaultfd,
        };
        crate::util::write_atomic(&dir.join("image.toml"), toml::to_string(&entry)?.as_bytes())?;
        Ok(Image { id: id.to_string(), pin: pin.clone(), vmlinuz: dir.join("vmlinuz"), release, userfaultfd })
    }
}

fn apt_options(apt: &Path) -> Vec<String> {
    let p = |rel: &str| apt.join(rel).display().to_string();
    let mut o = vec![
        format!("Dir::Etc::SourceList={}", p("sources.list")),
        "Dir::Etc::SourceParts=-".to_string(),
        format!("Dir::State::Lists={}", p("lists")),
        format!("Dir::Cache={}", p("cache")),
        format!("Dir::State::Status={}", p("status")),
        "Debug::NoLocking=1".to_string(),
        "APT::Sandbox::User=root".to_string(),
        "Acquire::Languages=none".to_string(),
        "APT::Architecture=amd64".to_string(),
        "APT::Architectures=amd64".to_string(),
    ];
    for target in ["DEP-11", "DEP-11-icons", "DEP-11-icons-small", "DEP-11-icons-hidpi", "CNF"] {
        o.push(format!("Acquire::IndexTargets::deb::{target}::DefaultEnabled=false"));
    }
    o.into_iter().flat_map(|o| ["-o".to_string(), o]).collect()
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn selects_known_ids_and_names_the_unknown() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let kernels = load_kernels(root).unwrap();
        assert!(
            kernels.kernels.contains_key("debian-5.10-cloud")
                && kernels.kernels.contains_key("debian-6.1-cloud")
        );
        for pin in kernels.kernels.values() {
            assert_eq!(pin.sha256.len(), 64, "{pin:?}");
        }
        let err = kernels.select(&["debian-9.9-cloud".into()]).unwrap_err().to_string();
        assert!(
            err.contains("unknown kernel id \"debian-9.9-cloud\"") && err.contains("debian-6.1-cloud"),
            "{err}"
        );
    }
}
