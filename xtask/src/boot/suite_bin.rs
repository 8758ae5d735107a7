//! Building the suite as the static binary that runs both as a guest's PID 1 and on the host.

use anyhow::{bail, Context, Result};
use model::arch::Arch;
use std::path::{Path, PathBuf};
use xshell::{cmd, Shell};

pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// The Rust target of the suite for `arch`: glibc's static-pie on x86_64 (as before
/// architectures), musl on arm64, whose static C library and start files Rust's own toolchain
/// ships (`rustup target add`; `rust-toolchain.toml` names the target).
pub fn target(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => TARGET,
        Arch::Arm64 => ARM64_TARGET,
    }
}

const ARM64_TARGET: &str = "aarch64-unknown-linux-musl";

/// Debian's cross compiler (`gcc-aarch64-linux-gnu`) and its kernel headers
/// (`linux-libc-dev-arm64-cross`): `userfaultfd-sys` compiles a C file with the target's C compiler
/// and runs bindgen over `<linux/userfaultfd.h>` for the target, whose `<asm/...>` must be arm64's.
const ARM64_CC: &str = "aarch64-linux-gnu-gcc";
const ARM64_HEADERS: &str = "/usr/aarch64-linux-gnu/include";
/// On an arm64 machine (GitHub's arm64 runners) the native compiler (Debian's `gcc` has the
/// triple-named link) and the native headers, whose `<asm/...>` are in Debian's multiarch folder
/// (`linux-libc-dev`), which clang need not search for a musl target by itself.
const ARM64_NATIVE_HEADERS: &str = "/usr/include/aarch64-linux-gnu";

/// The arm64 uapi headers bindgen reads on this machine.
fn arm64_headers() -> &'static str {
    if Arch::native() == Arch::Arm64 {
        ARM64_NATIVE_HEADERS
    } else {
        ARM64_HEADERS
    }
}

/// `cargo build` of the suite for this machine's architecture, statically linked, in the `guest`
/// profile: the one that runs on the host and prints the catalogue.
pub fn build(sh: &Shell, root: &Path) -> Result<PathBuf> {
    build_for(sh, root, Arch::native())
}

/// The suite for `arch`. arm64's is cross-compiled for musl and linked with `rust-lld` and the
/// target's self-contained musl start files and C library (what Rust's toolchain ships for it):
/// Debian's cross gcc would link its own glibc start files instead; it only compiles
/// `userfaultfd-sys`'s C file.
pub fn build_for(sh: &Shell, root: &Path, arch: Arch) -> Result<PathBuf> {
    let _cwd = sh.push_dir(root);
    let version = version(sh, root);
    let rev = version.split_once('+').map_or("", |(_, rev)| rev);
    let target = target(arch);
    let mut build = cmd!(sh, "cargo build --quiet --package suite --profile guest --target {target}")
        // With an explicit --target, RUSTFLAGS reach only target artefacts, not build scripts.
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // The suite names its own build in its results (`0.1.0+abc1234`).
        .env("UFFDC_SUITE_REV", rev)
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if arch == Arch::Arm64 {
        install_target(sh, target)?;
        let var = target.replace('-', "_");
        build = build
            .env(format!("CARGO_TARGET_{}_LINKER", var.to_uppercase()), "rust-lld")
            .env(format!("CC_{var}"), ARM64_CC)
            .env(format!("BINDGEN_EXTRA_CLANG_ARGS_{var}"), format!("-isystem {}", arm64_headers()));
    }
    build.run().with_context(|| format!("building the static suite for {arch} ({target})"))?;
    let bin = root.join("target").join(target).join("guest/suite");
    let elf = std::fs::read(&bin).with_context(|| format!("cannot read {}", bin.display()))?;
    if needs_interpreter(&elf) {
        bail!(
            "{} is dynamically linked (RUSTFLAGS overridden?); it cannot run as a guest's init",
            bin.display()
        );
    }
    Ok(bin)
}

/// The target's standard library, added with rustup when the toolchain lacks it (rustup installs
/// what `rust-toolchain.toml` names only with the toolchain itself).
fn install_target(sh: &Shell, target: &str) -> Result<()> {
    let libdir = cmd!(sh, "rustc --print target-libdir --target {target}").quiet().read()?;
    if Path::new(libdir.trim()).is_dir() {
        return Ok(());
    }
    eprintln!("rustup  target add {target}");
    cmd!(sh, "rustup target add {target}")
        .run()
        .with_context(|| format!("`rustup target add {target}` (the arm64 suite's standard library)"))
}

/// Whether an ELF64 executable has a PT_INTERP program header (needs a dynamic loader).
fn needs_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return true;
    }
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * size;
        elf.get(at..at + 4).is_some_and(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) == 3)
    })
}

/// The behaviours this suite build declares.
pub fn catalogue(sh: &Shell, bin: &Path) -> Result<model::Catalogue> {
    let text = cmd!(sh, "{bin} --catalogue").quiet().read().context("suite --catalogue")?;
    model::data::parse(&text).map_err(|e| anyhow::anyhow!("suite --catalogue printed a bad catalogue: {e}"))
}

/// `0.1.0+abc1234` (`-dirty` when the tree has changes), or the bare version without git. The
/// matrix's own files (`matrix/`) do not count: they are what runs write, and a run that builds
/// another architecture's suite after its first columns were written would call its own suite dirty.
pub fn version(sh: &Shell, root: &Path) -> String {
    let _cwd = sh.push_dir(root);
    let base = env!("CARGO_PKG_VERSION");
    match cmd!(sh, "git rev-parse --short HEAD").quiet().ignore_stderr().read() {
        Ok(rev) => {
            let dirty = cmd!(sh, "git status --porcelain --untracked-files=no -- . :(exclude)matrix")
                .quiet()
                .read()
                .map(|s| !s.trim().is_empty())
                .unwrap_or(false);
            format!("{base}+{rev}{}", if dirty { "-dirty" } else { "" })
        }
        Err(_) => base.to_string(),
    }
}

#[cfg(test)]
mod tests {
    /// An ELF64 header followed by program headers of these types (`p_type` only).
    fn elf(types: &[u32]) -> Vec<u8> {
        let mut e = vec![0u8; 64];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2; // 64-bit
        e[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        e[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes()); // e_phnum
        for t in types {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&t.to_le_bytes());
            e.extend(ph);
        }
        e
    }

    /// A change to the matrix's files (what runs write) leaves the suite clean; one elsewhere
    /// makes it `-dirty`.
    #[test]
    fn the_matrix_written_by_a_run_does_not_make_the_suite_dirty() {
        let dir = crate::util::project_root().join("target/uffdc/tests/suite-version");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("matrix")).unwrap();
        let sh = xshell::Shell::new().unwrap();
        sh.change_dir(&dir);
        std::fs::write(dir.join("matrix/compat.toml"), "a").unwrap();
        std::fs::write(dir.join("Cargo.toml"), "a").unwrap();
        xshell::cmd!(sh, "git init --quiet").run().unwrap();
        xshell::cmd!(sh, "git add -A").run().unwrap();
        xshell::cmd!(sh, "git -c user.name=t -c user.email=t@invalid commit --quiet -m fixture")
            .run()
            .unwrap();
        let clean = super::version(&sh, &dir);
        assert!(clean.contains('+') && !clean.ends_with("-dirty"), "{clean}");
        std::fs::write(dir.join("matrix/compat.toml"), "b").unwrap();
        assert_eq!(super::version(&sh, &dir), clean);
        std::fs::write(dir.join("Cargo.toml"), "b").unwrap();
        assert_eq!(super::version(&sh, &dir), format!("{clean}-dirty"));
    }

    #[test]
    fn tells_static_from_dynamic() {
        const LOAD: u32 = 1;
        const INTERP: u32 = 3;
        const PHDR: u32 = 6;
        assert!(!super::needs_interpreter(&elf(&[PHDR, LOAD, LOAD])), "a static(-pie) executable");
        assert!(super::needs_interpreter(&elf(&[PHDR, INTERP, LOAD])), "one that names a loader");
        // This test binary itself is dynamically linked; the static suite, when built, is not.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(super::needs_interpreter(&me));
        assert!(super::needs_interpreter(b"not an elf"));
        if let Some(suite) = std::env::var_os("UFFDC_SUITE_BIN") {
            assert!(!super::needs_interpreter(&std::fs::read(suite).unwrap()));
        }
    }
}
