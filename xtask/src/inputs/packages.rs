//! The system packages the tasks need (QEMU, libclang, apt's tools, Debian's keyring, Chromium,
//! Python's venv): found, installed with apt when running as root (never removing a package), or a
//! stop with the exact command to run.

use crate::inputs::apt::DEBIAN_KEYRING;
use anyhow::{bail, Context, Result};
use std::path::Path;
use xshell::{cmd, Shell};

/// Something a task needs from the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// qemu-system-x86_64, to boot guest kernels.
    Qemu,
    /// qemu-system-aarch64, to boot the arm64 columns' kernels.
    QemuArm64,
    /// Debian's cross C compiler for arm64 and its C library headers: the suite's
    /// `userfaultfd-sys` compiles a C file and runs bindgen over the kernel's headers for its
    /// target, so the arm64 suite needs a C compiler and headers for aarch64.
    CrossGccArm64,
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
    /// Docker's daemon and client (Debian's docker.io), for the workflows' containers in the
    /// rehearsal (`cargo xtask ci rehearse`).
    Docker,
    /// debootstrap, to make the rehearsal's `debian:bookworm` image where no registry answers.
    Debootstrap,
    /// Node.js, which runs the rehearsal's cache stand-in as a runner runs a JavaScript action.
    Nodejs,
}

impl Need {
    /// The Debian packages that meet it.
    fn packages(self) -> &'static [&'static str] {
        match self {
            Need::Qemu => &["qemu-system-x86"],
            Need::QemuArm64 => &["qemu-system-arm"],
            // On an arm64 machine the native compiler is the one (Debian's gcc installs the
            // triplet-named `aarch64-linux-gnu-gcc` too); Debian builds no cross gcc for it.
            Need::CrossGccArm64 if native_arm64() => &["gcc", "libc6-dev", "linux-libc-dev"],
            Need::CrossGccArm64 => &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"],
            Need::Libclang => &["libclang-dev"],
            Need::AptTools => &["apt"],
            Need::DebianKeyring => &["debian-archive-keyring"],
            Need::Chromium => &["chromium"],
            Need::PythonVenv => &["python3-venv"],
            Need::Docker => &["docker.io"],
            Need::Debootstrap => &["debootstrap"],
            Need::Nodejs => &["nodejs"],
        }
    }

    fn what(self) -> &'static str {
        match self {
            Need::Qemu => "QEMU (qemu-system-x86_64)",
            Need::QemuArm64 => "QEMU for arm64 (qemu-system-aarch64)",
            Need::CrossGccArm64 => "a C compiler for arm64 (the arm64 suite's userfaultfd-sys compiles C)",
            Need::Libclang => "libclang (the userfaultfd-sys build step runs bindgen)",
            Need::AptTools => "apt-get and dpkg-deb (kernels are fetched with Debian's tooling)",
            Need::DebianKeyring => "Debian's archive keyring (archive signatures are checked)",
            Need::Chromium => "Chromium (the HTML report is tested in a headless browser)",
            Need::PythonVenv => "Python's venv (the KCIDB export is validated with PyPI's kcidb-io)",
            Need::Docker => "Docker (the rehearsal runs the workflows' containers)",
            Need::Debootstrap => "debootstrap (the rehearsal builds its Debian image)",
            Need::Nodejs => "Node.js (the rehearsal's cache stand-in is a JavaScript action)",
        }
    }

    fn present(self) -> bool {
        match self {
            Need::Qemu => on_path("qemu-system-x86_64"),
            // The arm64 guests' results port is the virt board's second UART: QEMU 10 and later.
            Need::QemuArm64 => qemu_major("qemu-system-aarch64").is_some_and(|v| v >= QEMU_ARM64_MIN),
            Need::CrossGccArm64 => {
                // The uapi headers' `<asm/...>`: Debian's multiarch folder on an arm64 machine.
                let headers = if native_arm64() {
                    "/usr/include/aarch64-linux-gnu/asm"
                } else {
                    "/usr/aarch64-linux-gnu/include/linux"
                };
                on_path("aarch64-linux-gnu-gcc") && Path::new(headers).is_dir()
            }
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
            Need::Docker => on_path("dockerd") && on_path("docker"),
            Need::Debootstrap => on_path("debootstrap"),
            Need::Nodejs => on_path("node"),
        }
    }
}

/// Whether this machine is arm64 (a GitHub arm64 runner): its native tools build for arm64.
fn native_arm64() -> bool {
    model::arch::Arch::native() == model::arch::Arch::Arm64
}

/// The first QEMU release whose arm64 virt board has the second UART the results go through.
pub const QEMU_ARM64_MIN: u32 = 10;

/// The major version of a QEMU on PATH (`QEMU emulator version 10.0.2 ...`).
fn qemu_major(program: &str) -> Option<u32> {
    let out = std::process::Command::new(which(program)?).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("version ").nth(1)?.split('.').next()?.trim().parse().ok()
}

/// The major upstream version of the package apt would install (`1:7.2+dfsg-7` is 7).
fn candidate_major(sh: &Shell, package: &str) -> Option<u32> {
    let out = cmd!(sh, "apt-cache policy {package}").quiet().ignore_status().read().ok()?;
    let candidate = out.lines().find_map(|l| l.trim().strip_prefix("Candidate: "))?;
    let upstream = candidate.split_once(':').map_or(candidate, |(_, v)| v);
    upstream.split('.').next()?.parse().ok()
}

/// What booting columns of `arch` needs: QEMU for it, and for arm64 the suite's C compiler (the
/// cross compiler on another machine, the native one on an arm64 machine such as GitHub's arm64
/// runners, where the arm64 columns are this machine's own and x86-64 ones the other
/// architecture).
pub fn for_arch(arch: model::arch::Arch) -> Vec<Need> {
    match arch {
        model::arch::Arch::X86_64 => vec![Need::Qemu],
        model::arch::Arch::Arm64 => vec![Need::QemuArm64, Need::CrossGccArm64],
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
/// machine with apt, otherwise stops with the command to run. Installing never removes a package:
/// when the distribution's candidate conflicts with something installed (a newer backports
/// `qemu-utils` against bookworm's `qemu-system-x86`), the same packages are tried from the
/// distribution's backports, which matches a backports install; if that does not resolve it
/// either, it stops naming the conflict and the command that would resolve it.
pub fn ensure(sh: &Shell, needs: &[Need]) -> Result<()> {
    let missing: Vec<Need> = needs.iter().copied().filter(|n| !n.present()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().flat_map(|n| n.packages()).copied().collect();
    // QEMU for arm64 must be 10 or later; where the distribution's is older (bookworm's 7.2) it
    // comes from backports, and an installed qemu-system-x86 is upgraded beside it (both depend
    // on one qemu-system-common): upgraded, never removed.
    let arm64_qemu = missing.contains(&Need::QemuArm64);
    if arm64_qemu && on_path("qemu-system-x86_64") && !packages.contains(&"qemu-system-x86") {
        packages.push("qemu-system-x86");
    }
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
    let old_arm64_qemu =
        arm64_qemu && candidate_major(sh, "qemu-system-arm").is_some_and(|v| v < QEMU_ARM64_MIN);
    // apt either removes what conflicts (bookworm's qemu-system-x86 against backports'
    // qemu-utils) or, where the conflict is a dependency's exact version (bookworm's
    // qemu-system-arm on backports' qemu-system-common), cannot install at all: both go to
    // backports. Where QEMU for arm64 must come from backports anyway, the distribution's own
    // route is not simulated (its answer would go unused).
    let (removed, failed) = if old_arm64_qemu {
        (Vec::new(), None)
    } else {
        match would_remove(sh, &[], &packages) {
            Ok(removed) => (removed, None),
            Err(e) => (Vec::new(), Some(e)),
        }
    };
    let route = if old_arm64_qemu {
        match backports_route(sh)? {
            Some(route) if would_remove(sh, &route, &packages).is_ok_and(|r| r.is_empty()) => {
                eprintln!(
                    "note: the distribution's qemu-system-arm is older than QEMU {QEMU_ARM64_MIN}, which the arm64 guests need; taking {} from {}",
                    packages.join(" "),
                    route.last().map(String::as_str).unwrap_or("backports")
                );
                route
            }
            _ => bail!(
                "the arm64 guests need QEMU {QEMU_ARM64_MIN} or later (qemu-system-aarch64) and this distribution's qemu-system-arm is older, with no backports that install without removing a package: install QEMU {QEMU_ARM64_MIN}+ yourself, or leave the arm64 columns out (--kernel)"
            ),
        }
    } else if removed.is_empty() && failed.is_none() {
        Vec::new()
    } else {
        match backports_route(sh)? {
            Some(route) if would_remove(sh, &route, &packages).is_ok_and(|r| r.is_empty()) => {
                eprintln!(
                    "note: the distribution's {} {}; taking them from {} instead",
                    packages.join(" "),
                    match &failed {
                        Some(e) => format!("cannot be installed here ({e:#})"),
                        None => format!("would replace {} (installed)", removed.join(", ")),
                    },
                    route.last().map(String::as_str).unwrap_or("backports"),
                );
                route
            }
            _ if failed.is_some() => return Err(failed.expect("checked")),
            _ => bail!(
                "installing {} would remove {} (installed, and never removed by this tool): install versions that match it (e.g. from your distribution's backports), or replace it yourself with `sudo apt-get install {} {}`",
                packages.join(" "),
                removed.join(", "),
                packages.join(" "),
                removed.iter().map(|r| r.split(' ').next().unwrap_or(r)).collect::<Vec<_>>().join(" "),
            ),
        }
    };
    cmd!(sh, "apt-get {quiet...} {route...} install -y --no-install-recommends --no-remove {packages...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()?;
    let still: Vec<&str> = missing.iter().filter(|n| !n.present()).map(|n| n.what()).collect();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(", "));
    }
    Ok(())
}

/// The packages (`name [version]`) that `apt-get install` of `packages` would remove, by apt's
/// own simulation, with extra apt options `route`.
fn would_remove(sh: &Shell, route: &[String], packages: &[&str]) -> Result<Vec<String>> {
    let out = cmd!(sh, "apt-get -s {route...} install -y --no-install-recommends {packages...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .quiet()
        .ignore_status()
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "apt-get cannot install {}: {}",
            packages.join(" "),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("").trim()
        );
    }
    Ok(removals(&text))
}

/// `Remv NAME [VERSION]` lines of an `apt-get -s` transcript, as `NAME VERSION`.
fn removals(simulation: &str) -> Vec<String> {
    simulation
        .lines()
        .filter_map(|l| l.strip_prefix("Remv "))
        .map(|l| l.replace(['[', ']'], "").split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

/// apt options that add this Debian release's backports to its own sources, with package lists
/// kept privately under target/ (the system's sources and lists stay as they are), and the target
/// release set to backports; `None` on a system that is not Debian.
fn backports_route(sh: &Shell) -> Result<Option<Vec<String>>> {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field =
        |k: &str| release.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim_matches('"').to_string());
    let (Some("debian"), Some(codename)) = (field("ID=").as_deref(), field("VERSION_CODENAME=")) else {
        return Ok(None);
    };
    let Ok(mirrors) = crate::inputs::apt::mirrors(None) else { return Ok(None) };
    let dir = crate::util::project_root().join("target/uffdc/apt-system");
    for d in ["lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    let line = |uri: &str, suite: String| format!("deb [signed-by={DEBIAN_KEYRING}] {uri} {suite} main\n");
    let sources = [
        line(&mirrors.main, codename.clone()),
        line(&mirrors.main, format!("{codename}-updates")),
        line(&mirrors.security, format!("{codename}-security")),
        line(&mirrors.main, format!("{codename}-backports")),
    ]
    .concat();
    std::fs::write(dir.join("sources.list"), sources)?;
    let p = |rel: &str| dir.join(rel).display().to_string();
    let route: Vec<String> = [
        format!("Dir::Etc::SourceList={}", p("sources.list")),
        "Dir::Etc::SourceParts=-".to_string(),
        format!("Dir::State::Lists={}", p("lists")),
        format!("Dir::Cache={}", p("cache")),
    ]
    .into_iter()
    .flat_map(|o| ["-o".to_string(), o])
    .chain(["-t".to_string(), format!("{codename}-backports")])
    .collect();
    let options = &route[..route.len() - 2];
    cmd!(sh, "apt-get -q -o Dpkg::Use-Pty=0 {options...} update").run().context(
        "apt-get update of this release with its backports (private lists under target/uffdc/apt-system)",
    )?;
    Ok(Some(route))
}

/// The full path of a program on PATH.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    /// Columns of either architecture, on a machine of either, get the QEMU that boots them (an
    /// arm64 machine's own columns need qemu-system-aarch64, which an x86-64 machine's never
    /// needed as its own).
    #[test]
    fn each_architecture_needs_its_own_qemu() {
        use crate::boot::qemu::{BINARY, BINARY_ARM64};
        for (arch, binary) in [(model::arch::Arch::X86_64, BINARY), (model::arch::Arch::Arm64, BINARY_ARM64)]
        {
            assert!(super::for_arch(arch).iter().any(|n| n.what().contains(binary)), "{arch}");
        }
    }

    #[test]
    fn reads_removals_from_an_apt_simulation() {
        let sim = "Inst seabios (1.16.2-1 Debian:12.14/oldstable [all])\n\
                   Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]\n\
                   Conf seabios (1.16.2-1 Debian:12.14/oldstable [all])\n";
        assert_eq!(super::removals(sim), ["qemu-utils 1:10.0.2+ds-2+deb13u1~bpo12+1"]);
        assert!(super::removals("Inst a (1 x [all])\n").is_empty());
    }
}
