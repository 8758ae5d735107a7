//! System prerequisites: found, installed with apt when running as root, or a stop with the
//! exact command to run.

use anyhow::{bail, Result};
use std::path::Path;
use xshell::{cmd, Shell};

/// Something a task needs from the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// qemu-system-x86_64, to boot guest kernels.
    Qemu,
    /// libclang, for the `userfaultfd-sys` crate's bindgen build step.
    Libclang,
    /// apt-get and dpkg-deb, to fetch kernels with Debian's own tooling.
    AptTools,
    /// Debian's archive keyring, to check the archive's signatures.
    DebianKeyring,
    /// Chromium, to test the HTML report in a real browser.
    Chromium,
    /// Python's venv module, for the KCIDB schema validator (PyPI's kcidb-io).
    PythonVenv,
}

pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

impl Need {
    fn package(self) -> &'static str {
        match self {
            Need::Qemu => "qemu-system-x86",
            Need::Libclang => "libclang-dev",
            Need::AptTools => "apt",
            Need::DebianKeyring => "debian-archive-keyring",
            Need::Chromium => "chromium",
            Need::PythonVenv => "python3-venv",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Need::Qemu => "QEMU (qemu-system-x86_64)",
            Need::Libclang => "libclang (the userfaultfd-sys build step runs bindgen)",
            Need::AptTools => "apt-get and dpkg-deb (kernels are fetched with Debian's tooling)",
            Need::DebianKeyring => "Debian's archive keyring (archive signatures are checked)",
            Need::Chromium => "Chromium (the HTML report is tested in a headless browser)",
            Need::PythonVenv => "Python's venv (the KCIDB export is validated with PyPI's kcidb-io)",
        }
    }

    fn present(self) -> bool {
        match self {
            Need::Qemu => on_path("qemu-system-x86_64"),
            Need::Libclang => libclang_present(),
            Need::AptTools => on_path("apt-get") && on_path("dpkg-deb"),
            Need::DebianKeyring => Path::new(DEBIAN_KEYRING).exists(),
            Need::Chromium => on_path("chromium"),
            Need::PythonVenv => std::process::Command::new("python3")
                .args(["-m", "venv", "--help"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        }
    }
}

pub fn on_path(program: &str) -> bool {
    which(program).is_some()
}

fn libclang_present() -> bool {
    if let Some(dir) = std::env::var_os("LIBCLANG_PATH") {
        return Path::new(&dir).exists();
    }
    let dirs = ["/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/lib/x86_64-linux-gnu"];
    let llvm = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("llvm-"))
        .map(|e| e.path().join("lib"));
    dirs.iter()
        .map(std::path::PathBuf::from)
        .chain(llvm)
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            // clang-sys loads libclang.so[.N] or libclang-N.so[.M] (not libclang-cpp).
            name.starts_with("libclang.so")
                || name
                    .strip_prefix("libclang-")
                    .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()) && v.contains(".so"))
        })
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Makes sure every need is met: installs what is missing with apt when running as root on a
/// machine with apt, otherwise stops with the command to run.
pub fn ensure(sh: &Shell, needs: &[Need]) -> Result<()> {
    let missing: Vec<Need> = needs.iter().copied().filter(|n| !n.present()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|n| n.package()).collect();
    let what: Vec<&str> = missing.iter().map(|n| n.what()).collect();
    if !(is_root() && on_path("apt-get")) {
        bail!(
            "missing {}: install with `sudo apt-get install -y {}` (or run this command as root, which installs it)",
            what.join(", "),
            packages.join(" ")
        );
    }
    eprintln!("installing {} ({})", packages.join(" "), what.join(", "));
    let quiet = ["-q", "-o", "Dpkg::Use-Pty=0"];
    cmd!(sh, "apt-get {quiet...} update").env("DEBIAN_FRONTEND", "noninteractive").run()?;
    cmd!(sh, "apt-get {quiet...} install -y --no-install-recommends {packages...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()?;
    let still: Vec<&str> = missing.iter().filter(|n| !n.present()).map(|n| n.what()).collect();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(", "));
    }
    Ok(())
}

/// The full path of a program on PATH.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| p.is_file())
}
