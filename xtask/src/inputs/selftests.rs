//! The kernel's own userfaultfd selftests, built from each column's own Debian source package
//! and run in its guest after the suite (the family `selftests`): `uffd-unit-tests` and
//! `uffd-stress` (tools/testing/selftests/mm, 6.4 and later), or `userfaultfd`
//! (tools/testing/selftests/vm, 5.10 and 6.1). They are built statically with the pinned toolchain
//! (`buildroot.rs`, compiling through its ccache) against the source's own uapi headers
//! (`make headers`), cached under `~/.cache/uffd-conformance/builds/selftests/<key>/` (the key
//! over the source's sha256 and the toolchain's pins), and packed into the guest's initramfs under
//! `/selftests/`, where the suite runs them (`suite/src/run/selftests.rs`) with small parameters
//! and a time limit each.
//!
//! An arm64 column's are built the same way with the toolchain's pinned cross compiler
//! (`aarch64-linux-gnu-gcc`, `buildroot::ensure_for`) against the source's arm64 uapi headers
//! (`make ARCH=arm64 headers`), keyed over the architecture and the cross pins too, so x86 and
//! arm64 builds never share a key.

use crate::inputs::bincache::Kind;
use crate::inputs::buildroot::{self, BuildRoot};
use crate::inputs::fleet::{Fleet, SourcePin};
use crate::util::short_hash;
use anyhow::{bail, Context, Result};
use model::arch::Arch;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use xshell::Shell;

/// Where the guest finds them.
pub const DIR: &str = "selftests";
const RECIPE: &str = "uffdc selftests 4";

/// The selftests of one column: the source they were built from and the programs.
#[derive(Clone, Debug)]
pub struct Selftests {
    pub source: String,
    pub programs: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    source: String,
    programs: Vec<String>,
}

/// The source package a column's selftests come from: a build's own source, or the source package
/// of a Debian kernel's version (pinned in `[sources]`; the version pinned there may differ from
/// the kernel's when a build pins a newer one, and the record says which it was).
pub fn source_of(fleet: &Fleet, id: &str) -> Option<(String, SourcePin)> {
    let package = match (fleet.builds.get(id), fleet.lock.kernels.get(id)) {
        (Some(build), _) => build.source.clone(),
        (None, Some(pin)) => crate::inputs::fleet::source_package(&pin.version)?,
        (None, None) => return None,
    };
    let pin = fleet.lock.sources.get(&package)?;
    Some((package, pin.clone()))
}

/// The selftests of column `id`, built (or taken from the cache); `None` when no source package is
/// pinned for it. `cores` is called when the compile starts (it runs one compiler at a time: it
/// needs one core, which is its until this returns); `progress` is told what happens.
pub fn for_kernel(
    sh: &Shell,
    root: &Path,
    fleet: &Fleet,
    id: &str,
    apt: &mut crate::inputs::apt::LazyApt,
    cores: &mut dyn FnMut() -> usize,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<Selftests>> {
    let Some((package, pin)) = source_of(fleet, id) else { return Ok(None) };
    let arch = fleet.arch(id).unwrap_or_default();
    let (key, dir) = entry(root, &pin, arch)?;
    if let Some(found) = fetched(root, fleet, id, apt.binary_cache.as_deref(), progress) {
        return Ok(Some(found));
    }
    let builds = crate::inputs::fleet::Cache::new(root).dir.join("builds");
    // Its log goes there too (a kernel build made that folder; a Debian-only run had none).
    std::fs::create_dir_all(builds.join("logs"))?;
    let _lock = crate::util::lock_or_wait(&builds.join("build.lock"), || progress(crate::util::BUILD_WAIT))?;
    if let Some(found) = cached(&dir) {
        return Ok(Some(found));
    }
    progress("selftests: toolchain");
    let broot = buildroot::ensure_for(sh, root, apt, arch)?;
    progress(&format!("selftests: source {package} {}", pin.version));
    let tree = crate::inputs::builds::source_tree(sh, &broot, &package, &pin, apt)?;
    cores();
    progress("selftests: compiling");
    let out = format!("/out/selftests-{key}");
    // Kernel builds make this folder too, but a run of Debian kernels alone may never have built one.
    let logs = builds.join("logs");
    std::fs::create_dir_all(&logs)?;
    let before = broot.ccache_stats()?;
    let log = match arch {
        Arch::X86_64 => format!("selftests-{package}.log"),
        arch => format!("selftests-{package}-{arch}.log"),
    };
    let (programs, changed) = build(&broot, &tree, &out, &logs.join(log))?;
    let reused = broot.ccache_stats()?.since(before);
    progress(&format!(
        "selftests: built, ccache answered {} of {} compilations",
        reused.hits,
        reused.hits + reused.misses
    ));
    let _ = std::fs::remove_file(dir.join("selftests.toml"));
    std::fs::create_dir_all(&dir)?;
    for p in &programs {
        std::fs::copy(broot.path(&format!("{out}/{p}")), dir.join(p))?;
    }
    let mut source = format!("{package} {} ({}, deb sha256 {})", pin.version, pin.suite, pin.sha256);
    if arch != Arch::X86_64 {
        source += &format!("; built for {arch} with {}", broot.compiler);
    }
    if let Some(changed) = changed {
        source += &format!("; {changed}");
    }
    let entry = Entry { source, programs };
    crate::util::write_atomic(&dir.join("selftests.toml"), toml::to_string(&entry)?.as_bytes())?;
    cached(&dir).context("the selftests just built are not in the cache").map(Some)
}

/// The key of the selftests of `pin` built for `arch` and their folder in the cache.
fn entry(root: &Path, pin: &SourcePin, arch: Arch) -> Result<(String, PathBuf)> {
    let key = key(&pin.sha256, &buildroot::key_for(root, arch)?, arch);
    let dir = crate::inputs::fleet::Cache::new(root).dir.join("builds/selftests").join(&key);
    Ok((key, dir))
}

/// The key over the recipe, the source's sha256, the toolchain's key for `arch` and (for another
/// architecture than x86_64, whose keys are what they were before architectures) the
/// architecture's name.
fn key(source_sha256: &str, toolchain: &str, arch: Arch) -> String {
    let recipe = match arch {
        Arch::X86_64 => format!("{RECIPE} {UNIT_MEM_MIB}"),
        arch => format!("{RECIPE} {UNIT_MEM_MIB} {arch}"),
    };
    short_hash(format!("{recipe}\n{source_sha256}\n{toolchain}").as_bytes())
}

/// The selftests of column `id` from the cache, or else from the binary cache at `url` (fetched
/// and verified into the cache): no build, so no build turn to wait for.
pub fn fetched(
    root: &Path,
    fleet: &Fleet,
    id: &str,
    url: Option<&str>,
    progress: &mut dyn FnMut(&str),
) -> Option<Selftests> {
    let (_, pin) = source_of(fleet, id)?;
    let (key, dir) = entry(root, &pin, fleet.arch(id).unwrap_or_default()).ok()?;
    if let Some(found) = cached(&dir) {
        return Some(found);
    }
    let builds = crate::inputs::fleet::Cache::new(root).dir.join("builds");
    let valid = |staged: &Path| cached(&staged.join("selftests").join(&key)).is_some();
    crate::inputs::bincache::fetch(url, &builds, Kind::Selftests, &key, &valid, progress)
        .then(|| cached(&dir))?
}

/// What the cache holds of column `id`'s selftests, to publish in the binary cache.
pub fn published(root: &Path, fleet: &Fleet, id: &str) -> Option<crate::inputs::bincache::Entry> {
    let (key, dir) = entry(root, &source_of(fleet, id)?.1, fleet.arch(id).unwrap_or_default()).ok()?;
    cached(&dir)?;
    let files = crate::inputs::bincache::files_in(dir.parent()?.parent()?, &format!("selftests/{key}"))?;
    Some(crate::inputs::bincache::Entry { kind: Kind::Selftests, key, id: id.to_string(), files })
}

fn cached(dir: &Path) -> Option<Selftests> {
    let entry: Entry = toml::from_str(&std::fs::read_to_string(dir.join("selftests.toml")).ok()?).ok()?;
    let programs = entry
        .programs
        .iter()
        .map(|p| Some((p.clone(), std::fs::read(dir.join(p)).ok()?)))
        .collect::<Option<_>>()?;
    Some(Selftests { source: entry.source, programs })
}

/// `uffd-unit-tests` works on areas of `UFFD_TEST_MEM_SIZE` (32 MiB upstream) in every case; the
/// build sets it to this, the one change made to the selftests: under TCG the 32 MiB cost about
/// 40 s per guest, and 8 MiB of 2 MiB huge pages (source and destination: 8 pages) fit in the
/// 16 a guest reserves, where 32 MiB made every hugetlb case skip ("memory allocation failed").
/// Not less: with 4 MiB (about half the time again) 7.3's `rwp-pagemap` and `poison` on hugetlb
/// skip ("need at least 4 pages", "Too less pages for POISON test").
pub const UNIT_MEM_MIB: u32 = 8;

/// Builds the source's userfaultfd selftests statically: its uapi headers first (`make headers`,
/// once per tree and architecture), then each program with gcc (its sources compiled through
/// ccache, then linked), as its Makefile would but without the rest of the selftests.
/// Returns the programs and what was changed in them.
fn build(broot: &BuildRoot, tree: &str, out: &str, log: &Path) -> Result<(Vec<String>, Option<String>)> {
    let mm = broot.path(&format!("{tree}/tools/testing/selftests/mm"));
    let vm = broot.path(&format!("{tree}/tools/testing/selftests/vm"));
    let (dir, names): (&str, &[&str]) = if mm.join("uffd-unit-tests.c").is_file() {
        ("mm", &["uffd-unit-tests", "uffd-stress"])
    } else if vm.join("userfaultfd.c").is_file() {
        ("vm", &["userfaultfd"])
    } else {
        bail!(
            "{tree} has no userfaultfd selftests (tools/testing/selftests/mm/uffd-unit-tests.c or vm/userfaultfd.c): \
             run with --no-selftests, or pin another source with `cargo xtask images refresh sources`"
        );
    };
    // What each program is linked from, as the directory's Makefile says (it moves between
    // versions: thp_settings.c became hugepage_settings.c in 7.x).
    let makefile =
        std::fs::read_to_string(broot.path(&format!("{tree}/tools/testing/selftests/{dir}/Makefile")))
            .with_context(|| format!("{tree}: no Makefile beside its userfaultfd selftests"))?;
    let programs: Vec<(&str, Vec<String>)> = names.iter().map(|p| (*p, linked_with(&makefile, p))).collect();
    let unit = mm.join("uffd-unit-tests.c");
    let shrink = std::fs::read_to_string(&unit).is_ok_and(|t| t.lines().any(is_mem_size_define));
    let sd = format!("{tree}/tools/testing/selftests/{dir}");
    // The uapi headers of the target's architecture, and its compiler (the native gcc, or the
    // pinned cross compiler: `aarch64-linux-gnu-gcc`).
    let (karch, gcc) = (broot.arch.name(), broot.gcc());
    let cross = match broot.arch {
        Arch::X86_64 => String::new(),
        arch => format!(" CROSS_COMPILE={}-", buildroot::triple(arch)),
    };
    // The uapi headers (`make headers`: about 10 s, the whole build once its compiles come from
    // ccache) are made once per source tree and architecture and kept in the tree
    // (`.uffdc-headers-<arch>`, which goes with the tree when it is unpacked again):
    // `headers_install` gives the same files for the same tree and ARCH. Made in a folder of their
    // own and renamed when complete, so a build stopped halfway leaves none that look made (builds
    // hold the build lock).
    let headers = format!("{tree}/.uffdc-headers-{karch}");
    let mut script = format!(
        "set -e\nif [ ! -d {headers} ]; then\n  rm -rf {headers}.new\n  \
         make -s O={headers}.new ARCH={karch}{cross} 'HOSTCC=ccache gcc' headers\n  \
         mv {headers}.new {headers}\nfi\ncd {out}\nmkdir -p obj\n"
    );
    // Compiled in the output folder, each source once, through ccache (`buildroot::CCACHE`: paths
    // are hashed relative to the folder, so a rebuild into another folder reuses the objects),
    // then linked; the same compiler calls `gcc -o P P.c ...` makes, without the rest of the
    // selftests.
    let cc = format!(
        "ccache {gcc} -c -O2 -w -D_GNU_SOURCE -isystem {headers}/usr/include -I{sd} -I{sd}/.. -I{tree} \
         -I{tree}/tools/include -I{tree}/tools/include/uapi"
    );
    let mut compiled: Vec<String> = Vec::new();
    for (program, linked) in &programs {
        // The one change: a copy of uffd-unit-tests.c with a smaller UFFD_TEST_MEM_SIZE.
        let main = if *program == "uffd-unit-tests" && shrink {
            script += &format!(
                "sed 's/^#define[[:space:]]*UFFD_TEST_MEM_SIZE[[:space:]].*/#define UFFD_TEST_MEM_SIZE ({UNIT_MEM_MIB}UL << 20)/' \
                 {sd}/{program}.c > {program}.c\n"
            );
            format!("{program}.c")
        } else {
            format!("{sd}/{program}.c")
        };
        let mut objects = Vec::new();
        for source in std::iter::once(main).chain(linked.iter().map(|l| format!("{sd}/{l}"))) {
            let object =
                format!("obj/{}.o", Path::new(&source).file_stem().unwrap_or_default().to_string_lossy());
            if !compiled.contains(&object) {
                script += &format!("{cc} -o {object} {source}\n");
                compiled.push(object.clone());
            }
            objects.push(object);
        }
        script += &format!("{gcc} -static -o {program} {} -lpthread -lm -lrt\n", objects.join(" "));
    }
    let file = format!("{out}/build.sh");
    std::fs::create_dir_all(broot.path(out))?;
    std::fs::write(broot.path(&file), script)?;
    let env: Vec<(String, String)> =
        buildroot::CCACHE.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    broot.run(tree, &["/usr/bin/bash".to_string(), file], &env, log).with_context(|| {
        format!(
            "building the userfaultfd selftests of {tree} failed (log: {}): run with --no-selftests to go on without them",
            crate::util::display_path(log)
        )
    })?;
    let changed =
        shrink.then(|| format!("uffd-unit-tests with UFFD_TEST_MEM_SIZE {UNIT_MEM_MIB} MiB (upstream 32)"));
    Ok((programs.into_iter().map(|(p, _)| p.to_string()).collect(), changed))
}

/// The other sources `program` is linked from, from the selftests' Makefile: the `.c` files of the
/// rules for `$(TEST_GEN_FILES)` (the userfaultfd programs are among them) and for
/// `$(OUTPUT)/program`.
fn linked_with(makefile: &str, program: &str) -> Vec<String> {
    let own = format!("$(OUTPUT)/{program}");
    let mut sources: Vec<String> = Vec::new();
    for line in makefile.lines() {
        let Some((targets, rest)) = line.split_once(':') else { continue };
        if rest.starts_with('=') || rest.contains('=') || targets.starts_with(char::is_whitespace) {
            continue;
        }
        if targets.split_whitespace().any(|t| t == "$(TEST_GEN_FILES)" || t == own) {
            for file in rest.split_whitespace().filter(|w| w.ends_with(".c")) {
                if !sources.iter().any(|s| s == file) {
                    sources.push(file.to_string());
                }
            }
        }
    }
    sources
}

/// `#define  UFFD_TEST_MEM_SIZE  (32UL << 20)`, the line the build changes.
fn is_mem_size_define(line: &str) -> bool {
    let mut words = line.split_whitespace();
    words.next() == Some("#define") && words.next() == Some("UFFD_TEST_MEM_SIZE")
}

/// Where the guest's initramfs puts program `name`.
pub fn path_in_guest(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_linked_as_their_makefile_says() {
        // tools/testing/selftests/mm/Makefile of linux-source-7.2 7.2.13-1 (excerpt).
        let mm = "LDLIBS = -lrt -lpthread -lm\n\
                  $(TEST_GEN_PROGS): vm_util.c hugepage_settings.c\n\
                  $(TEST_GEN_FILES): vm_util.c hugepage_settings.c\n\
                  \n\
                  $(OUTPUT)/uffd-stress: uffd-common.c\n\
                  $(OUTPUT)/uffd-unit-tests: uffd-common.c\n\
                  $(OUTPUT)/uffd-wp-mremap: uffd-common.c\n\
                  $(BINARIES_32): LDLIBS += -lrt -ldl -lm\n\
                  $(OUTPUT)/cow: LDLIBS += $(IOURING_EXTRA_LIBS)\n";
        assert_eq!(linked_with(mm, "uffd-unit-tests"), ["vm_util.c", "hugepage_settings.c", "uffd-common.c"]);
        assert_eq!(linked_with(mm, "uffd-stress"), ["vm_util.c", "hugepage_settings.c", "uffd-common.c"]);
        // tools/testing/selftests/vm/Makefile of linux-source-6.1 6.1.192-2 and 5.10 5.10.262-1.
        let vm61 =
            "LDLIBS = -lrt -lpthread\n$(OUTPUT)/khugepaged: vm_util.c\n$(OUTPUT)/userfaultfd: vm_util.c\n";
        assert_eq!(linked_with(vm61, "userfaultfd"), ["vm_util.c"]);
        let vm510 = "LDLIBS = -lrt\n$(OUTPUT)/userfaultfd: LDLIBS += -lpthread\n";
        assert!(linked_with(vm510, "userfaultfd").is_empty());
        assert!(is_mem_size_define("#define  UFFD_TEST_MEM_SIZE               (32UL << 20)"));
        assert!(!is_mem_size_define("\tnr_pages = UFFD_TEST_MEM_SIZE / page_size;"));
    }

    /// The toolchain's root for `id`'s architecture and `id`'s source tree in it, with the builds'
    /// lock held (no other build runs meanwhile) and a folder for logs under `target/`.
    fn root_and_tree(id: &str, logs: &str) -> (BuildRoot, String, nix::fcntl::Flock<std::fs::File>, PathBuf) {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let fleet = Fleet::load(&root).unwrap();
        let (package, pin) = source_of(&fleet, id).unwrap();
        let mut apt = fleet.apt(&crate::inputs::fleet::Cache::new(&root), None);
        let arch = fleet.arch(id).unwrap();
        let broot = buildroot::ensure_for(&sh, &root, &mut apt, arch).unwrap();
        let tree = crate::inputs::builds::source_tree(&sh, &broot, &package, &pin, &mut apt).unwrap();
        let builds = crate::inputs::fleet::Cache::new(&root).dir.join("builds");
        let lock = crate::util::lock(&builds.join("build.lock")).unwrap();
        let logs = root.join("target/uffdc/tests").join(logs);
        std::fs::create_dir_all(&logs).unwrap();
        (broot, tree, lock, logs)
    }

    #[test]
    #[ignore = "needs root and Debian's archive: run through `cargo xtask test`"]
    fn a_rebuild_in_another_folder_takes_every_compile_from_ccache_and_gives_the_same_programs() {
        // No other build counts in ccache's statistics meanwhile (the lock).
        let (broot, tree, _lock, logs) = root_and_tree("build-6.12", "selftests-ccache");
        let mut built = Vec::new();
        let mut reused = Vec::new();
        for out in ["/out/test-selftests-a", "/out/test-selftests-b"] {
            let _ = std::fs::remove_dir_all(broot.path(out));
            let before = broot.ccache_stats().unwrap();
            let (programs, _) = build(&broot, &tree, out, &logs.join("build.log")).unwrap();
            reused.push(broot.ccache_stats().unwrap().since(before));
            let bytes: Vec<Vec<u8>> =
                programs.iter().map(|p| std::fs::read(broot.path(&format!("{out}/{p}"))).unwrap()).collect();
            built.push((programs, bytes));
            let _ = std::fs::remove_dir_all(broot.path(out));
        }
        eprintln!("ccache, first build: {:?}; rebuild in another folder: {:?}", reused[0], reused[1]);
        // uffd-unit-tests, uffd-stress and the sources they are linked from, each compiled once.
        assert!(reused[1].hits >= 4 && reused[1].misses == 0, "{reused:?}");
        assert_eq!(built[0].0, ["uffd-unit-tests", "uffd-stress"]);
        assert!(built[0] == built[1], "the rebuild gave other programs");
    }

    /// The ELF machine (`e_machine`) of a 64-bit little-endian ELF file, and whether it asks for
    /// an interpreter (a `PT_INTERP` program header: dynamically linked).
    fn elf_machine_and_interp(elf: &[u8]) -> (u16, bool) {
        let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
        assert_eq!(&elf[..4], b"\x7fELF");
        let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
        let (phentsize, phnum) = (u16_at(54) as usize, u16_at(56) as usize);
        let interp = (0..phnum).any(|i| u32_at(phoff + i * phentsize) == 3);
        (u16_at(18), interp)
    }

    #[test]
    #[ignore = "needs root and Debian's archive: run through `cargo xtask test`"]
    fn an_arm64_columns_selftests_are_static_aarch64_programs() {
        let (broot, tree, _lock, logs) = root_and_tree("debian-6.12-cloud-arm64", "selftests-arm64");
        assert_eq!(broot.gcc(), "aarch64-linux-gnu-gcc");
        let out = "/out/test-selftests-arm64";
        let _ = std::fs::remove_dir_all(broot.path(out));
        let (programs, _) = build(&broot, &tree, out, &logs.join("build.log")).unwrap();
        assert_eq!(programs, ["uffd-unit-tests", "uffd-stress"]);
        for p in &programs {
            let elf = std::fs::read(broot.path(&format!("{out}/{p}"))).unwrap();
            // EM_AARCH64, and no interpreter: it runs in a guest with nothing but itself.
            assert_eq!(elf_machine_and_interp(&elf), (183, false), "{p}");
        }
        let _ = std::fs::remove_dir_all(broot.path(out));
    }

    /// x86 selftests keep the key they had before architectures (their cache stays valid); an
    /// arm64 build of the same source never shares it, and moves with the cross pins.
    #[test]
    fn x86_and_arm64_selftests_never_share_a_key() {
        let sha = "ae95fe63d4c553f8d0e6c86cb1ab566f3894a43743eb19ab585cd97d82f26514";
        let x86 = key(sha, "toolchain", Arch::X86_64);
        assert_eq!(x86, short_hash(format!("{RECIPE} {UNIT_MEM_MIB}\n{sha}\ntoolchain").as_bytes()));
        assert_ne!(key(sha, "toolchain", Arch::Arm64), x86);
        assert_ne!(key(sha, "cross", Arch::Arm64), key(sha, "toolchain", Arch::Arm64));
        // With the committed lock: each architecture's toolchain key differs, and so do the keys.
        let root = crate::util::project_root();
        let fleet = Fleet::load(&root).unwrap();
        let (_, pin) = source_of(&fleet, "debian-6.1-cloud-arm64").unwrap();
        assert_eq!(fleet.arch("debian-6.1-cloud-arm64"), Some(Arch::Arm64));
        let (a, dir_a) = entry(&root, &pin, Arch::Arm64).unwrap();
        let (x, dir_x) = entry(&root, &pin, Arch::X86_64).unwrap();
        assert_ne!(a, x);
        assert_ne!(dir_a, dir_x);
    }

    #[test]
    fn each_kernel_names_its_own_source_package() {
        assert_eq!(crate::inputs::fleet::source_package("6.12.118-1").as_deref(), Some("linux-source-6.12"));
        assert_eq!(
            crate::inputs::fleet::source_package("7.3~rc7-1~exp1").as_deref(),
            Some("linux-source-7.3")
        );
        assert_eq!(crate::inputs::fleet::source_package("5.10.262-1").as_deref(), Some("linux-source-5.10"));
        assert_eq!(crate::inputs::fleet::source_package("nope"), None);
        let fleet = Fleet::load(&crate::util::project_root()).unwrap();
        for id in fleet.ids() {
            assert!(source_of(&fleet, &id).is_some(), "{id} has no pinned source for its selftests");
        }
    }
}
