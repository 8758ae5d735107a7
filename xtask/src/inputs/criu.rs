//! CRIU in the guest: Debian's `criu` of each release in [`RELEASES`] and the shared libraries it
//! loads, for each architecture of [`ARCHES`], for the `clients.criu_*` behaviours
//! (`suite/src/probes/clients_criu/`).
//!
//! Pinned in `images/criu.lock` like the Go toolchain (`pin.rs`: package, version, sha256, size),
//! taken from Debian's archive with the fleet's private apt, verified before use and unpacked by
//! content (`debs.rs`) under `~/.cache/uffd-conformance/criu/<release>-<key>/`. A refresh pins, per
//! release, the newest `criu` and what apt resolves for its library dependencies on an empty
//! system (its Python dependencies are left out: they serve `crit`, which the probe does not run).
//!
//! What goes into the initramfs is only what the binary loads: `criu` itself, the objects its
//! `DT_NEEDED` entries name (followed to their own), and the dynamic loader its `PT_INTERP` names,
//! as `/criu/<release>/{criu, ld.so, lib/<soname>}` beside a `package` file naming the pin. The
//! probe runs `ld.so --library-path lib criu ...`, so two releases' C libraries live side by side.
//! A host run finds the same tree beside the suite binary. An initramfs carries the tree of its
//! guest's architecture (the pins of another architecture than x86_64 say `arch` in the lock).

use crate::inputs::apt::{self, LazyApt};
use crate::inputs::debs;
use crate::inputs::fleet::{Cache, Fleet};
use crate::inputs::pin::{self, DebPin, Lock};
use anyhow::{bail, Context, Result};
use model::arch::Arch;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use xshell::Shell;

pub const LOCK: &str = "images/criu.lock";
const REFRESH: &str = "cargo xtask images refresh criu";
/// The Debian releases whose CRIU every guest carries: bookworm's 3.17 and trixie's 4.x.
pub const RELEASES: &[&str] = &["bookworm", "trixie"];
/// The architectures whose CRIU is pinned: every architecture a column runs on.
pub const ARCHES: &[Arch] = &model::arch::ALL;
/// The directory of the CRIU trees, in the initramfs (`/criu`) and beside a host's suite.
pub const DIR: &str = "criu";

/// The pins, every release's `criu` of every architecture among them.
pub fn load(root: &Path) -> Result<Lock> {
    let lock = Lock::load(root, LOCK, REFRESH)?;
    for arch in ARCHES {
        for release in RELEASES {
            if !lock.packages.iter().any(|p| p.package == "criu" && p.suite == *release && p.arch == *arch) {
                bail!("{LOCK} pins no criu from {release} for {arch}: run `{REFRESH}`");
            }
        }
    }
    Ok(lock)
}

/// The pins of one release for one architecture.
fn pins_of<'a>(lock: &'a Lock, release: &str, arch: Arch) -> Vec<&'a DebPin> {
    lock.packages.iter().filter(|p| p.suite == release && p.arch == arch).collect()
}

/// Re-pins, per architecture and release, the newest `criu` and the closure of its library
/// dependencies.
pub fn refresh(sh: &Shell, root: &Path, apt: &mut LazyApt) -> Result<()> {
    for release in RELEASES {
        apt.add_suite(release);
    }
    let mut lock = Lock::default();
    for &arch in ARCHES {
        let mut apt = apt.for_arch(arch);
        apt.get()?.update(sh, true)?;
        for release in RELEASES {
            lock.packages.extend(refresh_one(sh, apt.get()?, release, arch)?);
        }
    }
    let header = format!(
        "# CRIU in the guests (xtask/src/inputs/criu.rs): the newest criu of each of {}, for {}, and\n\
         # what apt resolves for its library dependencies on an empty system (not its Python ones).\n\
         # Written by `{REFRESH}`; every entry was downloaded and verified by apt against the signed\n\
         # archive; each .deb's sha256 is checked before it is unpacked.\n",
        RELEASES.join(", "),
        ARCHES.iter().map(|a| a.debian()).collect::<Vec<_>>().join(", ")
    );
    lock.save(root, LOCK, &header)?;
    println!("wrote {LOCK}");
    Ok(())
}

/// The pins of one release's `criu` for `apt`'s architecture, and of its libraries' packages.
fn refresh_one(
    sh: &Shell,
    apt: &mut crate::inputs::apt::Apt,
    release: &str,
    arch: Arch,
) -> Result<Vec<DebPin>> {
    let mut best: Option<String> = None;
    for (version, suite) in apt.versions(sh, "criu")? {
        if suite == *release && best.as_ref().is_none_or(|v| apt::newer(sh, &version, v)) {
            best = Some(version);
        }
    }
    let Some(version) = best else {
        bail!("no criu in {release}'s lists for {arch}: is the mirror complete?")
    };
    let fields = apt.show(sh, "criu", &version).context("criu vanished from the lists")?;
    let libraries = library_dependencies(fields.get("Depends").map_or("", String::as_str));
    let names: Vec<&str> = libraries.iter().map(String::as_str).collect();
    let mut pins = vec![DebPin::download(sh, apt, release, "criu", &version)?.1];
    for (package, v) in apt.closure(sh, release, &names)? {
        pins.push(DebPin::download(sh, apt, release, &package, &v)?.1);
    }
    pins.sort_by(|a, b| a.package.cmp(&b.package));
    println!("{:<20} {release} {arch}: criu {version} and {} libraries' packages", "criu", pins.len() - 1);
    Ok(pins)
}

/// The package names of a `Depends` field that CRIU's binary needs: the first of each set of
/// alternatives, without versions, without `python3*` (they serve `crit`).
fn library_dependencies(depends: &str) -> Vec<String> {
    depends
        .split(',')
        .filter_map(|d| d.split('|').next())
        .filter_map(|d| d.split_whitespace().next())
        .map(|d| d.split(':').next().unwrap_or(d))
        .filter(|d| !d.starts_with("python3"))
        .map(String::from)
        .collect()
}

/// The files of every release's CRIU for `arch`, as they go into the initramfs (paths under
/// [`DIR`]), unpacked from the verified pins (fetched with the run's `apt`, for `arch`) when the
/// cache does not have them.
pub fn files(sh: &Shell, root: &Path, apt: &mut LazyApt, arch: Arch) -> Result<Vec<(String, Vec<u8>)>> {
    let lock = load(root)?;
    let mut own;
    let apt = if apt.arch == arch {
        apt
    } else {
        own = apt.for_arch(arch);
        &mut own
    };
    let mut out = Vec::new();
    for release in RELEASES {
        let pins = pins_of(&lock, release, arch);
        let tree = unpacked(sh, root, release, &pins, apt)?;
        let criu = pins.iter().find(|p| p.package == "criu").expect("checked on load");
        let prefix = format!("{DIR}/{release}");
        for (name, data) in loaded(&tree, arch)? {
            out.push((format!("{prefix}/{name}"), data));
        }
        out.push((format!("{prefix}/package"), format!("criu {} ({release})\n", criu.version).into_bytes()));
    }
    Ok(out)
}

/// Writes `files` (from [`files`]) under `dir` where they differ: a host run's suite finds
/// `criu/` beside itself. Returns that `criu/` directory (what `UFFDC_CRIU_DIR` would name).
pub fn place(files: &[(String, Vec<u8>)], dir: &Path) -> Result<PathBuf> {
    for (name, data) in files {
        let path = dir.join(name);
        if std::fs::read(&path).ok().as_deref() != Some(&data[..]) {
            std::fs::create_dir_all(path.parent().expect("a file under criu/"))?;
            crate::util::write_atomic(&path, data)?;
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        }
    }
    Ok(dir.join(DIR))
}

/// The release's pins unpacked into the cache (once per set of pins).
fn unpacked(sh: &Shell, root: &Path, release: &str, pins: &[&DebPin], apt: &mut LazyApt) -> Result<PathBuf> {
    let text: String = pins.iter().map(|p| toml::to_string(p).unwrap_or_default()).collect();
    let base = Cache::new(root).dir.join("criu");
    let dir = base.join(format!("{release}-{}", crate::util::short_hash(text.as_bytes())));
    apt.add_suite(release);
    let what = format!("criu    {release} {}", apt.arch);
    debs::unpacked_root(
        sh,
        &dir,
        &base.join("unpack.lock"),
        &text,
        pins,
        apt,
        (LOCK, REFRESH),
        &what,
        |_| Ok(()),
    )?;
    Ok(dir)
}

/// What `usr/sbin/criu` in `tree` (unpacked for `arch`) loads: itself as `criu`, its dynamic
/// loader as `ld.so`, and every object its `DT_NEEDED` entries reach as `lib/<soname>`.
fn loaded(tree: &Path, arch: Arch) -> Result<Vec<(String, Vec<u8>)>> {
    let criu = std::fs::read(tree.join("usr/sbin/criu")).with_context(|| {
        format!("{} has no usr/sbin/criu: pin the criu package that does", tree.display())
    })?;
    let elf = goblin::elf::Elf::parse(&criu).context("usr/sbin/criu is not an ELF object")?;
    let interp = elf.interpreter.context("usr/sbin/criu names no dynamic loader (PT_INTERP)")?.to_string();
    let mut queue: Vec<String> = elf.libraries.iter().map(|l| l.to_string()).collect();
    let mut seen = BTreeSet::new();
    let mut out = vec![("ld.so".to_string(), read_in(tree, Path::new(&interp))?)];
    // The C library names the dynamic loader (`ld-linux-x86-64.so.2`), which is packed as `ld.so`
    // already, and which resolves that name to itself (its DT_SONAME): a second copy is never read.
    let loader = Path::new(&interp).file_name().map(|n| n.to_string_lossy().into_owned());
    while let Some(soname) = queue.pop() {
        if !seen.insert(soname.clone()) || loader.as_deref() == Some(soname.as_str()) {
            continue;
        }
        let multiarch = format!("usr/lib/{}-linux-gnu", arch.machine());
        let path = [multiarch.as_str(), "usr/lib64", "usr/lib"]
            .iter()
            .map(|d| Path::new("/").join(d).join(&soname))
            .find(|p| resolve_in(tree, p).is_some_and(|r| r.is_file()))
            .with_context(|| {
                format!("{soname}, which CRIU loads, is in none of the pinned packages: run `{REFRESH}`")
            })?;
        let data = read_in(tree, &path)?;
        let lib = goblin::elf::Elf::parse(&data).with_context(|| format!("{soname} is not an ELF object"))?;
        queue.extend(lib.libraries.iter().map(|l| l.to_string()));
        out.push((format!("lib/{soname}"), data));
    }
    out.push(("criu".to_string(), criu));
    Ok(out)
}

/// `path` (absolute, as the unpacked system sees it) inside `tree`, its symbolic links followed
/// inside `tree` too (an absolute link target names a path of the unpacked system, not the host's).
fn resolve_in(tree: &Path, path: &Path) -> Option<PathBuf> {
    let mut p = tree.join(path.strip_prefix("/").unwrap_or(path));
    for _ in 0..16 {
        match std::fs::read_link(&p) {
            Ok(target) if target.is_absolute() => p = tree.join(target.strip_prefix("/").ok()?),
            Ok(target) => p = p.parent()?.join(target),
            Err(_) => return p.exists().then_some(p),
        }
    }
    None
}

fn read_in(tree: &Path, path: &Path) -> Result<Vec<u8>> {
    let real = resolve_in(tree, path)
        .with_context(|| format!("{} is not in {}: run `{REFRESH}`", path.display(), tree.display()))?;
    std::fs::read(&real).with_context(|| format!("cannot read {}", real.display()))
}

/// The kernel modules CRIU needs where a Debian kernel builds them as modules (a booted Debian
/// system loads them on demand through modprobe, which a guest does not have): the socket diag
/// modules its dump reads sockets through, nf_tables, in which kerndat_init creates a table
/// (criu/kerndat.c kerndat_has_nftables_concat: without it every command stops), and veth, whose
/// pair kerndat_link_nsid makes.
const MODULES: &[&str] = &[
    "unix_diag",
    "inet_diag",
    "tcp_diag",
    "udp_diag",
    "raw_diag",
    "packet_diag",
    "netlink_diag",
    "nf_tables",
    "veth",
];

/// Where the [`MODULES`] and what they depend on live in a kernel package (libcrc32c needs crc32c
/// from crypto/ where that is a module: 6.12's PREEMPT_RT build).
const MODULE_DIRS: &[&str] =
    &["/kernel/net/", "/kernel/lib/", "/kernel/drivers/net/", "/kernel/crypto/", "/kernel/arch/"];

/// For a packaged kernel (a track of the fleet), the [`MODULES`] its .deb holds and the modules
/// they depend on (their `.modinfo` `depends=`), decompressed (`.ko.xz` from 6.12), as
/// `criu/modules/<file>.ko` in load order, with
/// `criu/modules/order` listing them: the guest's probe loads them before CRIU runs. A built
/// kernel, or one whose configuration builds them in or not at all, gets none.
pub fn modules(root: &Path, id: &str, apt: &mut LazyApt) -> Result<Vec<(String, Vec<u8>)>> {
    let fleet = Fleet::load(root)?;
    let Some(pin) = fleet.lock.kernels.get(id) else { return Ok(Vec::new()) };
    // Cached by the kernel .deb's sha256 and the modules asked for.
    let key = crate::util::short_hash(
        format!("{} {} {}", pin.sha256, MODULES.join(" "), MODULE_DIRS.join(" ")).as_bytes(),
    );
    let cache = Cache::new(root).dir.join("criu/modules").join(format!("{id}-{key}"));
    let cached = || -> Option<Vec<(String, Vec<u8>)>> {
        let order = std::fs::read_to_string(cache.join("order")).ok()?;
        let mut out = Vec::new();
        for file in order.lines() {
            out.push((format!("{DIR}/modules/{file}"), std::fs::read(cache.join(file)).ok()?));
        }
        out.push((format!("{DIR}/modules/order"), order.into_bytes()));
        Some(out)
    };
    if let Some(files) = cached() {
        return Ok(files);
    }
    let files = modules_from_deb(pin, apt)?;
    std::fs::create_dir_all(&cache)?;
    // `order` last: a cache entry without it is not one.
    for (name, data) in &files {
        crate::util::write_atomic(&cache.join(name.rsplit('/').next().expect("a file name")), data)?;
    }
    Ok(files)
}

fn modules_from_deb(pin: &crate::inputs::fleet::Pin, apt: &mut LazyApt) -> Result<Vec<(String, Vec<u8>)>> {
    let sh = Shell::new()?;
    let deb = pin::verified(&sh, &pin.deb(), apt, crate::inputs::fleet::LOCK, "cargo xtask images refresh")?;
    // Every module of the package by name (`nf_tables`), with its file name and data.
    let mut all = std::collections::BTreeMap::new();
    debs::each_file(&deb, |entry| {
        let path = entry.path()?.to_string_lossy().into_owned();
        let file = path.rsplit('/').next().unwrap_or("").to_string();
        let name = file.split(".ko").next().unwrap_or("").replace('-', "_");
        if MODULE_DIRS.iter().any(|d| path.contains(d))
            && file.contains(".ko")
            && entry.header().entry_type().is_file()
        {
            let mut data = Vec::new();
            std::io::Read::read_to_end(entry, &mut data)?;
            let (file, data) = match file.strip_suffix(".xz") {
                Some(plain) => {
                    let mut out = Vec::new();
                    lzma_rs::xz_decompress(&mut &data[..], &mut out).map_err(|e| {
                        anyhow::anyhow!("{}: {file}: {e:?} (delete the .deb and rerun)", deb.display())
                    })?;
                    (plain.to_string(), out)
                }
                None => (file, data),
            };
            all.insert(name, (file, data));
        }
        Ok(())
    })?;
    let mut order: Vec<String> = Vec::new();
    // A name a module is known by (`crc32c`, which a `softdep` names) and the module.
    let mut aliases: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    for (name, (_, data)) in &all {
        for alias in modinfo(data, "alias") {
            aliases.entry(alias).or_insert_with(|| name.clone());
        }
    }
    fn visit(
        name: &str,
        all: &std::collections::BTreeMap<String, (String, Vec<u8>)>,
        aliases: &std::collections::BTreeMap<String, String>,
        order: &mut Vec<String>,
    ) {
        let name = if all.contains_key(name) { name } else { aliases.get(name).map_or(name, String::as_str) };
        if order.iter().any(|o| o == name) {
            return;
        }
        let Some((_, data)) = all.get(name) else { return };
        for dep in depends(data) {
            visit(&dep, all, aliases, order);
        }
        order.push(name.to_string());
    }
    for m in MODULES {
        visit(m, &all, &aliases, &mut order);
    }
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut list = String::new();
    for name in &order {
        let (file, data) = &all[name];
        list.push_str(&format!("{file}\n"));
        out.push((format!("{DIR}/modules/{file}"), data.clone()));
    }
    if !out.is_empty() {
        out.push((format!("{DIR}/modules/order"), list.into_bytes()));
    }
    Ok(out)
}

/// What a module needs loaded before it: its `.modinfo` `depends=` and `softdep=pre:` (libcrc32c's
/// `crc32c`, a crypto algorithm that is a module of its own in some configurations).
fn depends(module: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = modinfo(module, "depends")
        .iter()
        .flat_map(|d| d.split(','))
        .filter(|d| !d.is_empty())
        .map(|d| d.replace('-', "_"))
        .collect();
    for soft in modinfo(module, "softdep") {
        if let Some(pre) = soft.strip_prefix("pre:") {
            out.extend(pre.split_whitespace().take_while(|w| *w != "post:").map(|d| d.replace('-', "_")));
        }
    }
    out
}

/// The values of `key=` in a module's `.modinfo`.
fn modinfo(module: &[u8], key: &str) -> Vec<String> {
    let Ok(elf) = goblin::elf::Elf::parse(module) else { return Vec::new() };
    let Some(section) =
        elf.section_headers.iter().find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".modinfo"))
    else {
        return Vec::new();
    };
    let prefix = format!("{key}=");
    module[section.file_range().unwrap_or_default()]
        .split(|b| *b == 0)
        .filter_map(|f| f.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// Lines for `cargo xtask images list`.
pub fn list(root: &Path) {
    match load(root) {
        Ok(lock) => {
            for &arch in ARCHES {
                for release in RELEASES {
                    let pins = pins_of(&lock, release, arch);
                    let criu = pins.iter().find(|p| p.package == "criu").expect("checked on load");
                    println!(
                        "{:<20} {:<22} {:<46} {:<22} (+{} library packages)",
                        "criu",
                        format!("{release} {}", arch.debian()),
                        "criu",
                        criu.version,
                        pins.len() - 1
                    );
                }
            }
        }
        Err(e) => println!("{:<20} {e:#}", "criu"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_is_pinned_for_every_release_and_architecture() {
        let lock = load(&crate::util::project_root()).unwrap();
        for p in &lock.packages {
            assert!(RELEASES.contains(&p.suite.as_str()) && ARCHES.contains(&p.arch), "{p:?}");
            assert_eq!(p.sha256.len(), 64, "{p:?}");
            assert!(!p.package.starts_with("python3"), "CRIU's binary needs no Python: {p:?}");
        }
    }

    /// 6.12's modules are .ko.xz: decompressed, their dependencies read and loaded first.
    #[test]
    #[ignore = "needs Debian's archive (or the kernel .deb in the cache): run through `cargo xtask test`"]
    fn a_packaged_kernels_modules_come_decompressed_in_dependency_order() {
        let root = crate::util::project_root();
        let mut apt = Fleet::load(&root).unwrap().apt(&Cache::new(&root), None);
        let files = modules(&root, "debian-6.12-cloud", &mut apt).unwrap();
        let order = String::from_utf8(files.last().unwrap().1.clone()).unwrap();
        let order: Vec<&str> = order.lines().collect();
        let at = |m: &str| order.iter().position(|o| *o == m).unwrap_or_else(|| panic!("{m} in {order:?}"));
        assert!(
            at("nfnetlink.ko") < at("nf_tables.ko") && at("inet_diag.ko") < at("tcp_diag.ko"),
            "{order:?}"
        );
        for (name, data) in &files[..files.len() - 1] {
            assert!(name.ends_with(".ko") && data.starts_with(b"\x7fELF"), "{name}");
        }
        assert!(modules(&root, "build-6.12", &mut apt).unwrap().is_empty());
        // The PREEMPT_RT build has crc32c as a module: libcrc32c's softdep brings it first.
        let rt = modules(&root, "debian-6.12-rt", &mut apt).unwrap();
        let rt = String::from_utf8(rt.last().unwrap().1.clone()).unwrap();
        let crc = rt.lines().position(|l| l.starts_with("crc32c")).unwrap_or_else(|| panic!("{rt}"));
        assert!(crc < rt.lines().position(|l| l == "libcrc32c.ko").unwrap(), "{rt}");
        // An arm64 kernel's come from its arm64 .deb (fetched by the arm64 apt): aarch64 objects.
        let arm = modules(&root, "debian-6.1-cloud-arm64", &mut apt).unwrap();
        let (name, data) = arm.iter().find(|(n, _)| n.ends_with("/nf_tables.ko")).expect("nf_tables");
        let elf = goblin::elf::Elf::parse(data).unwrap();
        assert_eq!(elf.header.e_machine, goblin::elf::header::EM_AARCH64, "{name}");
    }

    /// Each architecture's tree holds that architecture's CRIU, loader and libraries.
    #[test]
    #[ignore = "needs Debian's archive (or the pinned .debs in the cache): run through `cargo xtask test`"]
    fn each_architecture_gets_its_own_criu() {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let mut apt = Fleet::load(&root).unwrap().apt(&Cache::new(&root), None);
        for (arch, machine) in
            [(Arch::X86_64, goblin::elf::header::EM_X86_64), (Arch::Arm64, goblin::elf::header::EM_AARCH64)]
        {
            let files = files(&sh, &root, &mut apt, arch).unwrap();
            for release in RELEASES {
                for name in ["criu", "ld.so", "lib/libc.so.6"] {
                    let path = format!("{DIR}/{release}/{name}");
                    let (_, data) =
                        files.iter().find(|(n, _)| *n == path).unwrap_or_else(|| panic!("{path}"));
                    assert_eq!(
                        goblin::elf::Elf::parse(data).unwrap().header.e_machine,
                        machine,
                        "{arch} {path}"
                    );
                }
            }
        }
    }

    #[test]
    fn library_dependencies_leave_out_python_and_versions() {
        let d = "python3-protobuf, python3:any, libbsd0 (>= 0.6.0), libc6 (>= 2.34) | libc6.1, libnl-3-200";
        assert_eq!(library_dependencies(d), ["libbsd0", "libc6", "libnl-3-200"]);
    }

    #[test]
    fn links_are_followed_inside_the_tree() {
        let dir = std::env::temp_dir().join(format!("uffdc-criu-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::fs::create_dir_all(dir.join("usr/lib64")).unwrap();
        std::os::unix::fs::symlink("usr/lib", dir.join("lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib64", dir.join("lib64")).unwrap();
        std::fs::write(dir.join("usr/lib/x86_64-linux-gnu/ld.so.2"), b"loader").unwrap();
        // Absolute, as Debian's lib64 link is: it must not be read from the host's /lib.
        std::os::unix::fs::symlink("/lib/x86_64-linux-gnu/ld.so.2", dir.join("usr/lib64/ld.so.2")).unwrap();
        std::os::unix::fs::symlink("ld.so.2", dir.join("usr/lib/x86_64-linux-gnu/ld.so")).unwrap();
        assert_eq!(read_in(&dir, Path::new("/lib64/ld.so.2")).unwrap(), b"loader");
        assert_eq!(read_in(&dir, Path::new("/usr/lib/x86_64-linux-gnu/ld.so")).unwrap(), b"loader");
        assert!(resolve_in(&dir, Path::new("/usr/lib/none")).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
