//! The binary cache: kernels and selftests someone already built, published as static files
//! beside the report and fetched, verified, before compiling.
//!
//! A published folder (`cargo xtask ci binaries --out DIR`) holds `index.toml` (each entry,
//! `kernels/<input key>` or `selftests/<key>`, with its file's name, size and sha256) and one
//! uncompressed tar per entry: the entry's files as the per-user cache lays them out under
//! `builds/` (a kernel: `inputs/<input key>.toml` and `kernels/<kernel key>/`; selftests:
//! `selftests/<key>/`), and a manifest naming the entry. The input key is the one a build is
//! looked up by (`builds::inputs_key`, the selftests' key), so a lookup needs neither source nor
//! toolchain.
//!
//! Fetching (`fetch`), where a build would start: the index, then the tar with apt's own HTTP
//! client (`pin::download_url`: apt checks its sha256, and it is checked again), its manifest
//! must name the entry asked for and its files must lie in that entry's folders; the files are
//! unpacked into a folder beside the cache's, the entry's own check (a kernel's bzImage against
//! the sha256 its record holds; the selftests' programs all there) must pass there, and only
//! then are they moved into the cache. Anything else (no binary cache configured, a server that
//! does not answer, an entry not published, a corrupt download, a manifest for another key) is a
//! miss with one line saying why, and the build goes on locally: never a wrong artifact.
//!
//! Where it is (`apt::binary_cache`, beside the Debian mirror): `UFFDC_BINARY_CACHE` (a URL; `off`
//! turns it off), else the `binaries/` folder of the project's published report (the GitHub Pages
//! site of the checkout's `origin` remote), else none; `LazyApt::binary_cache` carries it to the
//! builds. `--no-binary-cache` (matrix, images) turns it off for one command.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

const INDEX: &str = "index.toml";
const MANIFEST: &str = "uffdc-artifact.toml";
/// Bumped when the layout of a published folder or artifact changes.
const FORMAT: u32 = 1;

/// What a published entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A built kernel, by its build's input key.
    Kernel,
    /// A column's selftests, by their key.
    Selftests,
}

impl Kind {
    fn folder(self) -> &'static str {
        match self {
            Kind::Kernel => "kernels",
            Kind::Selftests => "selftests",
        }
    }

    /// The entry's name in the index: `kernels/<key>`, `selftests/<key>`.
    pub fn entry(self, key: &str) -> String {
        format!("{}/{key}", self.folder())
    }
}

/// `index.toml`: every published entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub format: u32,
    #[serde(default)]
    pub artifacts: BTreeMap<String, Artifact>,
}

/// What a publish wrote: each entry's name and its file.
pub type Written = Vec<(String, Artifact)>;

/// One published file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub file: String,
    pub size: u64,
    pub sha256: String,
    /// The column it was built for (what it is, for a reader; the key is what counts).
    pub id: String,
}

/// An artifact's own record of what it is.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: u32,
    entry: String,
    id: String,
    files: Vec<String>,
}

/// What the cache holds of one entry, to publish: its files, relative to the cache's `builds/`.
#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: Kind,
    pub key: String,
    pub id: String,
    pub files: Vec<String>,
}

/// Puts entry `kind`/`key` from the binary cache at `url` into the cache's `builds` folder, when it
/// is published and verifies; `valid` is the entry's own check, run on a folder laid out as
/// `builds` is. Returns whether it did; a miss is told to `progress` in one line saying why, and
/// the caller builds.
pub fn fetch(
    url: Option<&str>,
    builds: &Path,
    kind: Kind,
    key: &str,
    valid: &dyn Fn(&Path) -> bool,
    progress: &mut dyn FnMut(&str),
) -> bool {
    let Some(url) = url else { return false };
    let entry = kind.entry(key);
    let started = std::time::Instant::now();
    match fetch_entry(url, builds, kind, key, valid) {
        Ok(true) => {
            progress(&format!(
                "binary cache: {entry} fetched from {url} and verified in {:.1}s",
                started.elapsed().as_secs_f64()
            ));
            true
        }
        Ok(false) => {
            progress(&format!("binary cache: {url} has no {entry}: building locally"));
            false
        }
        Err(e) => {
            progress(&format!("binary cache: {entry} not used ({e:#}): building locally"));
            false
        }
    }
}

/// `Ok(false)`: not published there.
fn fetch_entry(
    url: &str,
    builds: &Path,
    kind: Kind,
    key: &str,
    valid: &dyn Fn(&Path) -> bool,
) -> Result<bool> {
    let base = url.trim_end_matches('/');
    std::fs::create_dir_all(builds)?;
    let scratch = tempdir(builds, "fetch")?;
    let result = (|| {
        let index_file = scratch.join(INDEX);
        // A binary cache that did not answer is not asked again by this process: each lookup would
        // wait for its timeout again.
        static SILENT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        if SILENT.lock().unwrap_or_else(|e| e.into_inner()).contains(&base.to_string()) {
            bail!("its index could not be fetched earlier in this run");
        }
        if let Err(e) = crate::inputs::pin::download_url(&format!("{base}/{INDEX}"), &index_file, None, "") {
            SILENT.lock().unwrap_or_else(|e| e.into_inner()).push(base.to_string());
            return Err(e.context("its index"));
        }
        let index: Index = toml::from_str(&std::fs::read_to_string(&index_file)?)
            .map_err(|e| anyhow::anyhow!("its {INDEX} does not read: {}", e.message().trim()))?;
        if index.format != FORMAT {
            bail!("its {INDEX} is format {}, this checkout reads {FORMAT}", index.format);
        }
        let entry = kind.entry(key);
        let Some(artifact) = index.artifacts.get(&entry) else { return Ok(false) };
        if artifact.file.contains('/') || artifact.file.starts_with('.') {
            bail!("its index names the file {:?}", artifact.file);
        }
        let tar = scratch.join(&artifact.file);
        crate::inputs::pin::download_url(
            &format!("{base}/{}", artifact.file),
            &tar,
            Some(&artifact.sha256),
            &format!("its {INDEX} says"),
        )?;
        let staged = scratch.join("builds");
        let files = unpack(&tar, &staged, kind, key)?;
        if !valid(&staged) {
            bail!(
                "{} unpacks into an entry that does not verify (its record, its files and the key \
                 it is filed under disagree)",
                artifact.file
            );
        }
        install(builds, &staged, &files)?;
        Ok(true)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// A fresh folder under `builds` (beside the cache's, so that what is verified there moves into it).
fn tempdir(builds: &Path, what: &str) -> Result<PathBuf> {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    // The columns of a run fetch on threads of one process: a count tells their folders apart.
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = builds.join(format!(".{what}-{}-{n}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Where the files of entry `kind`/`key` may lie (relative to `builds/`): a kernel's input record
/// and one kernel folder; the selftests' own folder.
fn allowed(kind: Kind, key: &str, path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let plain = |p: &str| !p.is_empty() && p != "." && p != ".." && !p.starts_with('.');
    if !parts.iter().all(|p| plain(p)) {
        return false;
    }
    match (kind, parts.as_slice()) {
        (Kind::Kernel, ["inputs", name]) => *name == format!("{key}.toml"),
        (Kind::Kernel, ["kernels", _, _]) => true,
        (Kind::Selftests, ["selftests", k, _]) => *k == key,
        _ => false,
    }
}

/// Unpacks the artifact `tar` into `into`, after checking its manifest names entry `kind`/`key`
/// and each file lies where that entry's files lie. Returns the files (relative paths).
fn unpack(tar: &Path, into: &Path, kind: Kind, key: &str) -> Result<Vec<String>> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(tar)?);
    for entry in archive.entries().context("not a tar")? {
        let mut entry = entry.context("not a tar")?;
        if !entry.header().entry_type().is_file() {
            bail!("it holds something other than plain files");
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        files.insert(path, data);
    }
    let manifest: Manifest = toml::from_str(&String::from_utf8_lossy(
        files.get(MANIFEST).with_context(|| format!("it holds no {MANIFEST}"))?,
    ))
    .map_err(|e| anyhow::anyhow!("its {MANIFEST} does not read: {}", e.message().trim()))?;
    let entry = kind.entry(key);
    if manifest.format != FORMAT || manifest.entry != entry {
        bail!("it is {} (format {}), not {entry}", manifest.entry, manifest.format);
    }
    let mut listed: Vec<String> = files.keys().filter(|p| *p != MANIFEST).cloned().collect();
    listed.sort();
    let mut named = manifest.files.clone();
    named.sort();
    if listed != named || listed.is_empty() {
        bail!("its files are not the ones its {MANIFEST} names");
    }
    if let Some(bad) = listed.iter().find(|p| !allowed(kind, key, p)) {
        bail!("it holds {bad}, which is not a file of {entry}");
    }
    let mut folders: Vec<&str> = listed.iter().filter_map(|p| p.rsplit_once('/')).map(|(d, _)| d).collect();
    folders.dedup();
    let own = folders.iter().filter(|d| d.contains('/')).count();
    if own != 1 {
        bail!("it holds the files of {own} entry folders, not one");
    }
    for path in &listed {
        crate::util::write_atomic(&into.join(path), &files[path])?;
        if path.starts_with("kernels/") || path.starts_with("selftests/") {
            // The programs run in the guest; the kernel's files are read.
            let mode = if kind == Kind::Selftests && !path.ends_with(".toml") { 0o755 } else { 0o644 };
            std::fs::set_permissions(into.join(path), std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        }
    }
    Ok(listed)
}

/// Moves a verified entry from `staged` into `builds`: its folders (`kernels/<k>`, `selftests/<k>`)
/// first, each replacing whatever was there (a cache entry that did not verify), then its
/// records at the top (`inputs/<key>.toml`), which make it found.
fn install(builds: &Path, staged: &Path, files: &[String]) -> Result<()> {
    std::fs::create_dir_all(builds)?;
    let _lock = crate::util::lock(&builds.join("bincache.lock"))?;
    let mut folders: Vec<String> =
        files.iter().filter_map(|f| f.rsplit_once('/').map(|(d, _)| d.to_string())).collect();
    folders.sort();
    folders.dedup();
    for folder in folders.iter().filter(|f| f.contains('/')) {
        let to = builds.join(folder);
        if to.exists() {
            let aside = tempdir(builds, "replaced")?;
            std::fs::rename(&to, aside.join("old"))?;
            let _ = std::fs::remove_dir_all(&aside);
        }
        std::fs::create_dir_all(to.parent().expect("a folder in builds"))?;
        std::fs::rename(staged.join(folder), &to)?;
    }
    for file in files.iter().filter(|f| f.matches('/').count() == 1) {
        std::fs::create_dir_all(builds.join(file).parent().expect("in a folder"))?;
        std::fs::rename(staged.join(file), builds.join(file))?;
    }
    Ok(())
}

/// Writes `entries` (from the cache's `builds` folder) into the published folder `out`, each as
/// its tar, and adds them to `out/index.toml` (entries already there are kept). Returns what it
/// wrote, as (entry, artifact).
pub fn publish(builds: &Path, entries: &[Entry], out: &Path) -> Result<Written> {
    std::fs::create_dir_all(out)?;
    let mut index = read_index(out)?;
    let mut written = Vec::new();
    for e in entries {
        let entry = e.kind.entry(&e.key);
        let mut files = e.files.clone();
        files.sort();
        if let Some(bad) = files.iter().find(|p| !allowed(e.kind, &e.key, p)) {
            bail!("{entry}: {bad} is not a file of that entry");
        }
        let manifest =
            Manifest { format: FORMAT, entry: entry.clone(), id: e.id.clone(), files: files.clone() };
        let mut tar = tar::Builder::new(Vec::new());
        tar.mode(tar::HeaderMode::Deterministic);
        let mut add = |path: &str, data: &[u8]| -> Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, path, data)?;
            Ok(())
        };
        add(MANIFEST, toml::to_string(&manifest)?.as_bytes())?;
        for f in &files {
            let data = std::fs::read(builds.join(f)).with_context(|| format!("{entry}: cannot read {f}"))?;
            add(f, &data)?;
        }
        let data = tar.into_inner()?;
        let file = format!("{}-{}.tar", e.kind.folder(), e.key);
        crate::util::write_atomic(&out.join(&file), &data)?;
        let artifact = Artifact { file, size: data.len() as u64, sha256: sha256(&data), id: e.id.clone() };
        index.artifacts.insert(entry.clone(), artifact.clone());
        written.push((entry, artifact));
    }
    write_index(out, &index)?;
    Ok(written)
}

/// Adds every entry of the published folders found under `from` (their `index.toml`, at any
/// depth: the scheduled workflow's per-job artifacts) to the published folder `out`, each file
/// checked against the sha256 its index gives (one that does not match is left out, with a line
/// saying so: the report is published all the same). Returns the entries added.
pub fn merge(from: &Path, out: &Path) -> Result<Written> {
    std::fs::create_dir_all(out)?;
    let mut index = read_index(out)?;
    let mut added = Vec::new();
    let mut pending = vec![from.to_path_buf()];
    while let Some(dir) = pending.pop() {
        if dir == out {
            continue;
        }
        let mut children: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .collect();
        children.sort();
        pending.extend(children.iter().filter(|p| p.is_dir()).cloned());
        if !dir.join(INDEX).is_file() {
            continue;
        }
        let found = read_index(&dir)?;
        for (entry, artifact) in found.artifacts {
            let file = dir.join(&artifact.file);
            let actual = crate::util::sha256_file(&file).unwrap_or_else(|e| format!("none ({e:#})"));
            if actual != artifact.sha256 || artifact.file.contains('/') {
                println!(
                    "not published: {entry}: {} has sha256 {actual}, but {} says {}",
                    file.display(),
                    dir.join(INDEX).display(),
                    artifact.sha256
                );
                continue;
            }
            std::fs::copy(&file, out.join(&artifact.file))?;
            index.artifacts.insert(entry.clone(), artifact.clone());
            added.push((entry, artifact));
        }
    }
    write_index(out, &index)?;
    Ok(added)
}

fn read_index(dir: &Path) -> Result<Index> {
    let path = dir.join(INDEX);
    if !path.exists() {
        return Ok(Index { format: FORMAT, artifacts: BTreeMap::new() });
    }
    let index: Index = toml::from_str(&std::fs::read_to_string(&path)?).map_err(|e| {
        anyhow::anyhow!("{}: {} (a published folder of another format?)", path.display(), e.message().trim())
    })?;
    if index.format != FORMAT {
        bail!("{} is format {}, this checkout writes {FORMAT}", path.display(), index.format);
    }
    Ok(index)
}

fn write_index(dir: &Path, index: &Index) -> Result<()> {
    let text = format!(
        "# The binary cache: built kernels and selftests by their input key (`cargo xtask ci binaries`).\n\
         # Each file: the entry's files as ~/.cache/uffd-conformance/builds/ holds them, a manifest.\n\n{}",
        toml::to_string(index)?
    );
    crate::util::write_atomic(&dir.join(INDEX), text.as_bytes())
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    crate::util::hex(&sha2::Sha256::digest(data))
}

/// The files of a cached entry's folder (relative to `builds`), for [`Entry::files`].
pub fn files_in(builds: &Path, folder: &str) -> Option<Vec<String>> {
    let mut files: Vec<String> = std::fs::read_dir(builds.join(folder))
        .ok()?
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| format!("{folder}/{}", e.file_name().to_string_lossy()))
        .collect();
    files.sort();
    Some(files)
}

/// A static file server on 127.0.0.1 for the tests (GET of a file in a folder, one request per
/// connection), counting the requests it answered.
#[cfg(test)]
pub(crate) fn serve(dir: PathBuf) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream);
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let path = first.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
            let body = (!path.contains("..")).then(|| std::fs::read(dir.join(&path)).ok()).flatten();
            let mut stream = reader.into_inner();
            let head = match &body {
                Some(b) => {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len())
                }
                None => {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                }
            };
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_deref().unwrap_or_default());
        }
    });
    (url, requests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_artifact_holds_only_its_own_entrys_files() {
        assert!(allowed(Kind::Kernel, "k1", "inputs/k1.toml"));
        assert!(allowed(Kind::Kernel, "k1", "kernels/abc/bzImage"));
        assert!(!allowed(Kind::Kernel, "k1", "inputs/k2.toml"));
        assert!(!allowed(Kind::Kernel, "k1", "selftests/k1/x"));
        assert!(!allowed(Kind::Kernel, "k1", "kernels/../../etc/passwd"));
        assert!(!allowed(Kind::Kernel, "k1", "kernels/abc/.hidden"));
        assert!(allowed(Kind::Selftests, "s1", "selftests/s1/uffd-stress"));
        assert!(!allowed(Kind::Selftests, "s1", "selftests/s2/uffd-stress"));
        assert!(!allowed(Kind::Selftests, "s1", "/selftests/s1/uffd-stress"));
    }

    /// Publish, then fetch from `file://` (the HTTP cases, against a server on 127.0.0.1, are
    /// `builds.rs`'s, through a build): the entry arrives as it was; an artifact that says it is another
    /// entry, or whose entry does not verify, is refused and leaves nothing in the cache.
    #[test]
    fn a_published_entry_comes_back_as_it_was_and_a_wrong_one_is_refused() {
        let dir = crate::util::project_root().join("target/uffdc/tests/bincache");
        let _ = std::fs::remove_dir_all(&dir);
        let (from, out) = (dir.join("from"), dir.join("out"));
        std::fs::create_dir_all(from.join("selftests/s1")).unwrap();
        std::fs::write(from.join("selftests/s1/selftests.toml"), "source = \"x\"\n").unwrap();
        std::fs::write(from.join("selftests/s1/uffd-stress"), b"\x7fELF a program").unwrap();
        let files = files_in(&from, "selftests/s1").unwrap();
        let entry = Entry { kind: Kind::Selftests, key: "s1".into(), id: "debian-x".into(), files };
        let written = publish(&from, std::slice::from_ref(&entry), &out).unwrap();
        assert_eq!(written[0].0, "selftests/s1");
        let url = format!("file://{}", out.display());
        let mut notes = Vec::new();
        let into = dir.join("cache");
        let ok = |d: &Path| d.join("selftests/s1/uffd-stress").is_file();
        assert!(fetch(Some(&url), &into, Kind::Selftests, "s1", &ok, &mut |l| notes.push(l.to_string())));
        assert_eq!(std::fs::read(into.join("selftests/s1/uffd-stress")).unwrap(), b"\x7fELF a program");
        // Not published: a miss that says so.
        assert!(
            !fetch(Some(&url), &dir.join("c2"), Kind::Selftests, "s9", &ok, &mut |l| notes.push(l.into()))
        );
        assert!(notes.last().unwrap().contains("has no selftests/s9: building locally"), "{notes:?}");
        // The index names s2 with s1's file (whose manifest says s1): refused, nothing cached.
        let mut index = read_index(&out).unwrap();
        let s1 = index.artifacts["selftests/s1"].clone();
        let s1_file = s1.file.clone();
        index.artifacts.insert("selftests/s2".into(), s1);
        write_index(&out, &index).unwrap();
        let c3 = dir.join("c3");
        assert!(!fetch(Some(&url), &c3, Kind::Selftests, "s2", &ok, &mut |l| notes.push(l.into())));
        assert!(
            notes.last().unwrap().contains("it is selftests/s1 (format 1), not selftests/s2"),
            "{notes:?}"
        );
        assert!(!c3.join("selftests").exists());
        // The entry's own check fails: refused, nothing cached.
        let c4 = dir.join("c4");
        assert!(!fetch(Some(&url), &c4, Kind::Selftests, "s1", &|_| false, &mut |l| notes.push(l.into())));
        assert!(notes.last().unwrap().contains("does not verify"), "{notes:?}");
        assert!(!c4.join("selftests").exists());
        // A binary cache whose index cannot be fetched is not asked again in this process.
        let gone = format!("file://{}", dir.join("gone").display());
        assert!(!fetch(Some(&gone), &c4, Kind::Selftests, "s1", &ok, &mut |l| notes.push(l.into())));
        assert!(notes.last().unwrap().contains("its index: Failed to fetch"), "{notes:?}");
        assert!(!fetch(Some(&gone), &c4, Kind::Selftests, "s1", &ok, &mut |l| notes.push(l.into())));
        assert!(notes.last().unwrap().contains("could not be fetched earlier in this run"), "{notes:?}");
        // No binary cache: nothing is tried.
        assert!(!fetch(None, &c4, Kind::Selftests, "s1", &ok, &mut |l| notes.push(l.into())));
        // Merging published folders keeps every entry and checks each file.
        let merged = dir.join("merged");
        assert_eq!(merge(&dir.join("out"), &merged).unwrap().len(), 2);
        assert!(read_index(&merged).unwrap().artifacts.contains_key("selftests/s1"));
        // A file that does not match its index is left out of the merge.
        std::fs::write(out.join(&s1_file), b"damaged").unwrap();
        let again = dir.join("merged-again");
        assert!(merge(&out, &again).unwrap().is_empty());
        assert!(read_index(&again).unwrap().artifacts.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
