//! How a guest runs (`Settings`: the machine, its limits, the suite's arguments) and its QEMU
//! command line: the kernel with the suite's initramfs, the console on the first serial port (a
//! file), the results stream on the second (QEMU's stdout, a pipe).

use anyhow::{bail, Result};
use model::arch::Arch;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    /// TCG, every vCPU in turn on one host thread.
    Tcg,
    /// TCG with a host thread per vCPU (`--accel tcg-mt`, QEMU 10 or later: see [`multi_threaded_tcg_is_safe`]).
    TcgMulti,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
            Accel::TcgMulti => "tcg-mt",
        }
    }
}

pub const BINARY: &str = "qemu-system-x86_64";
/// The QEMU of the arm64 columns (Debian's qemu-system-arm).
pub const BINARY_ARM64: &str = "qemu-system-aarch64";

/// How guests (and the host suite) are run: the one description of the machine and its limits,
/// shared by the matrix task, bench, the KVM probe and the tests.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The QEMU of the x86_64 columns (`--qemu x86_64=PATH`).
    pub qemu: PathBuf,
    /// The QEMU of the arm64 columns (`--qemu arm64=PATH`).
    pub qemu_arm64: PathBuf,
    pub accel: Accel,
    pub cpus: u32,
    pub mem_mb: u32,
    /// Hard limit for a whole guest (or host) run.
    pub timeout: Duration,
    /// How long a guest may take to send its start record before the boot counts as failed.
    pub boot_timeout: Duration,
    /// Boots tried before a guest that keeps failing before its start record is given up.
    pub boot_attempts: u32,
    /// How long a guest may take to exit after its end record before it is stopped.
    pub grace: Duration,
    /// Extra arguments for the suite (`--window-ms=500`, filters, self-test faults).
    pub suite_args: Vec<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            qemu: PathBuf::from(crate::boot::qemu::BINARY),
            qemu_arm64: PathBuf::from(BINARY_ARM64),
            accel: Accel::Tcg,
            cpus: 2,
            mem_mb: 1024,
            timeout: Duration::from_secs(300),
            boot_timeout: Duration::from_secs(30),
            boot_attempts: 3,
            grace: Duration::from_secs(5),
            suite_args: Vec::new(),
        }
    }
}

impl Settings {
    /// The QEMU that boots kernels of `arch`.
    pub fn qemu_for(&self, arch: Arch) -> PathBuf {
        match arch {
            Arch::X86_64 => self.qemu.clone(),
            Arch::Arm64 => self.qemu_arm64.clone(),
        }
    }
}

/// One guest boot.
pub struct Boot<'a> {
    pub settings: &'a Settings,
    /// The guest's architecture: its QEMU, machine, CPU model and serial ports.
    pub arch: Arch,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    /// ttyS0: the kernel's and the suite's console.
    pub console: PathBuf,
    /// QEMU's own stderr.
    pub stderr: PathBuf,
}

impl Boot<'_> {
    /// The accelerator this guest runs under: KVM runs only guests of this machine's own
    /// architecture, so another architecture's guest runs under TCG whatever was chosen.
    pub fn accel(&self) -> Accel {
        match self.settings.accel {
            Accel::Kvm if self.arch != Arch::native() => Accel::Tcg,
            accel => accel,
        }
    }

    /// The command; its stdout carries the second serial port (ttyS1, ttyAMA1 on arm64), the
    /// results stream.
    pub fn command(&self) -> Result<Command> {
        let s = self.settings;
        for arg in &s.suite_args {
            if arg.is_empty() || arg.contains(char::is_whitespace) || arg.contains('"') {
                bail!(
                    "suite argument {arg:?} cannot be passed on a kernel command line (no spaces or quotes)"
                );
            }
        }
        // Huge pages are reserved for the hugetlb probes. Speculative-execution mitigations are
        // off: they change nothing userfaultfd does, and under TCG they cost a quarter of the
        // suite's time (page-table isolation flushes the emulated TLB on every syscall).
        // The suite stops with a fatal error unless the kernel brought up every CPU it was given.
        // `no_timer_check` skips the early IO-APIC timer check, which an emulated CPU that the
        // host does not schedule in time fails: a guest under TCG on a loaded machine panicked
        // with "IO-APIC + timer doesn't work!" (the test command beside four other jobs on two
        // cores); virtual machines' images commonly pass it, and it touches nothing userfaultfd does.
        // On arm64 the console is the virt machine's first PL011 UART, and `no_timer_check`
        // (x86's) is not a parameter the kernel knows: it would reach the suite as an argument.
        // Huge pages: 16 of the default size for every column; arm64 also reserves 16 of 64 KiB
        // (contiguous PTEs, `HugeSize::Cont64K` in the suite: the `*_64k` behaviours fault in at
        // most 4 each) and 4 of 32 MiB (contiguous PMDs, `HugeSize::Cont32M`: the `*_32m` ones fault
        // in at most 4 each, the harness hands them out one probe at a time; 128 MiB of the guest's
        // memory), each after its `hugepagesz=` (mm/hugetlb.c hugepages_setup: a `hugepages=` before
        // any `hugepagesz=` is the default size's). x86-64 has neither size: they are not asked for there.
        let (console, x86, huge) = match self.arch {
            Arch::X86_64 => ("ttyS0", " no_timer_check", "hugepages=16"),
            Arch::Arm64 => {
                ("ttyAMA0", "", "hugepages=16 hugepagesz=64K hugepages=16 hugepagesz=32M hugepages=4")
            }
        };
        let mut append = format!(
            "console={console} panic=-1 quiet loglevel=4 mitigations=off{x86} rdinit=/init {huge} -- --cpus={}",
            s.cpus
        );
        for arg in &s.suite_args {
            append += " ";
            append += arg;
        }
        // Under TCG, arm64's `max` CPU authenticates pointers with QEMU's implementation-defined
        // algorithm instead of the architected QARMA, which costs emulated guests much of their
        // time (QEMU's docs/system/arm/cpu-features.rst); it changes nothing userfaultfd does.
        let tcg_cpu = match self.arch {
            Arch::X86_64 => "max",
            Arch::Arm64 => "max,pauth-impdef=on",
        };
        let (accel, cpu) = match self.accel() {
            Accel::Kvm => ("kvm", "host"),
            Accel::Tcg => ("tcg,thread=single", tcg_cpu),
            Accel::TcgMulti => ("tcg,thread=multi", tcg_cpu),
        };
        let qemu = s.qemu_for(self.arch);
        if self.arch == Arch::Arm64 {
            let version = version(&qemu);
            // A QEMU that did not answer is named when it fails to start (`explain`).
            if !version.is_empty() && !at_least_10(&version) {
                bail!(
                    "{} is {version}: the arm64 guests' results port is the virt board's second UART, which QEMU has from 10.0 (Debian: bookworm-backports' qemu-system-arm)",
                    qemu.display()
                );
            }
        }
        let mut c = Command::new(&qemu);
        c.args(["-nodefaults", "-no-reboot", "-display", "none", "-monitor", "none"]);
        // arm64: QEMU's `virt` board, booting the kernel image directly (no firmware); from QEMU
        // 10.0 it has a second PL011 UART when given a second -serial (ttyAMA1: the results).
        // Under KVM the interrupt controller is the host's (GICv3 on arm64 servers, where the
        // board's default GICv2 cannot run).
        match (self.arch, self.accel()) {
            (Arch::Arm64, Accel::Kvm) => c.args(["-M", "virt,gic-version=host"]),
            (Arch::Arm64, _) => c.args(["-M", "virt"]),
            _ => &mut c,
        };
        // qboot, QEMU's minimal firmware, instead of SeaBIOS: SeaBIOS's MP table lists only the boot
        // CPU, so a kernel without ACPI (the project's own builds) came up with one CPU of two; qboot
        // lists every CPU and passes QEMU's ACPI tables on unchanged for the kernels that use them.
        // A QEMU without it boots SeaBIOS: the Debian kernels (ACPI) still see every CPU, and a
        // build's guest stops, saying it has fewer CPUs than it was given.
        if self.arch == Arch::X86_64 && has_qboot(&qemu) {
            c.args(["-bios", QBOOT]);
        }
        c.args(["-accel", accel, "-cpu", cpu])
            .args(["-smp", &s.cpus.to_string(), "-m", &s.mem_mb.to_string()])
            .arg("-kernel")
            .arg(self.kernel)
            .arg("-initrd")
            .arg(self.initrd)
            .args(["-append", &append])
            .arg("-serial")
            .arg(format!("file:{}", self.console.display()))
            .args(["-serial", "stdio"])
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&self.stderr)?);
        Ok(c)
    }

    /// A failure to start QEMU, with the fix when QEMU is missing.
    pub fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        match e.downcast_ref::<std::io::Error>() {
            Some(io) if io.kind() == std::io::ErrorKind::NotFound => anyhow::anyhow!(
                "{} not found: install QEMU (`sudo apt-get install {}`, or run as root and it is installed for you)",
                self.settings.qemu_for(self.arch).display(),
                match self.arch {
                    Arch::X86_64 => "qemu-system-x86",
                    Arch::Arm64 => "qemu-system-arm",
                }
            ),
            _ => e,
        }
    }
}

/// QEMU's minimal firmware (qemu-system-data ships it with Debian's and Ubuntu's QEMU).
const QBOOT: &str = "qboot.rom";

/// Whether `qemu` finds qboot in one of its data directories (`-L help` lists them).
fn has_qboot(qemu: &Path) -> bool {
    let dirs = asked(qemu, &["-L", "help"]);
    dirs.lines().any(|d| Path::new(d.trim()).join(QBOOT).is_file())
}

/// Whether `qemu --version`'s first line names a QEMU at or after 10.0, the first measured to run
/// TCG with a host thread per vCPU safely. TCG is single-threaded unless asked (`--accel tcg-mt`).
///
/// Static keys patch kernel text through int3 (text_poke_bp). With a host thread per vCPU,
/// Debian's QEMU 7.2 lets a vCPU run a stale translation that still holds the int3 after the
/// patcher finished, and the guest dies early in boot ("Oops: int3" in sched_clock_cpu,
/// enqueue_task_fair or enqueue_timer, then "Fatal exception in interrupt"): on the 7.2 kernel
/// with -smp 2, 2 of 100 bare boots and 1 of 60 (2026-11-25), 1 of 33 (2026-11-26); 0 of 100
/// single-threaded. Debian's QEMU 10.0.2 (bookworm-backports) showed no such death in 300 bare
/// boots of the same kernel (100 and 200, two sessions). Versions between are not measured.
///
/// Multi-threaded, a guest's CPUs really run at once, and a guest alone on the machine runs the
/// suite about a third faster. But with more vCPU threads than host cores (two 2-CPU guests on
/// two cores, as the matrix runs by default) the guests stall each other: the kernels' own
/// selftests took about five times as long (the whole matrix with them: 320 s against 90 s), so
/// the default stays single-threaded and `tcg-mt` is for a machine with a core per guest CPU.
pub fn multi_threaded_tcg_is_safe(version_line: &str) -> bool {
    at_least_10(version_line)
}

/// Whether `qemu --version`'s first line names QEMU 10.0 or later.
fn at_least_10(version_line: &str) -> bool {
    let Some(rest) = version_line.strip_prefix("QEMU emulator version ") else { return false };
    let major = rest.split('.').next().and_then(|m| m.parse::<u32>().ok());
    major.is_some_and(|m| m >= 10)
}

/// The first line of `qemu --version` (`QEMU emulator version 10.0.2 (Debian ...)`).
pub fn version(qemu: &Path) -> String {
    asked(qemu, &["--version"]).lines().next().unwrap_or_default().to_string()
}

/// What `qemu ARGS` printed on stdout (empty when it could not run), asked once per binary and
/// question.
fn asked(qemu: &Path, args: &[&str]) -> String {
    type Seen = Vec<((PathBuf, Vec<String>), String)>;
    static SEEN: std::sync::Mutex<Seen> = std::sync::Mutex::new(Vec::new());
    let key = (qemu.to_path_buf(), args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, out)) = seen.iter().find(|(k, _)| *k == key) {
        return out.clone();
    }
    let out = Command::new(qemu)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    seen.push((key, out.clone()));
    out
}

/// `--qemu [ARCH=]PATH` (matrix, bench; repeatable): the QEMU of ARCH's columns (`x86_64` or
/// `arm64`, the kernel's names, as column ids write them), or, without `ARCH=`, of the architecture
/// the binary itself says it emulates (QMP `query-target`). PATH is a file, or a name looked up on
/// PATH. A one-line error names the value and what is wrong: a path that names nothing, a binary
/// that is no QEMU system emulator, one for another architecture than ARCH, or for one no column
/// runs on.
pub fn given(value: &str) -> Result<(Arch, PathBuf)> {
    let (named, path) = match value.split_once('=') {
        Some((arch, path)) if !arch.contains('/') => {
            let arch = arch.parse::<Arch>().map_err(|e| anyhow::anyhow!("--qemu {value}: {e}"))?;
            (Some(arch), PathBuf::from(path))
        }
        _ => (None, PathBuf::from(value)),
    };
    if path.components().count() > 1 {
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => bail!("--qemu {value}: not a file"),
            Err(e) => bail!("--qemu {value}: {e}"),
        }
    }
    let runs = match target(&path) {
        Ok(target) => target,
        Err(e) => bail!("--qemu {value}: {e}"),
    };
    let Some(arch) = Arch::from_machine(&runs) else {
        bail!(
            "--qemu {value}: it emulates {runs}, and the columns run on {} (qemu-system-x86_64, qemu-system-aarch64)",
            model::arch::ALL.map(Arch::name).join(" and ")
        );
    };
    match named {
        Some(named) if named != arch => bail!(
            "--qemu {value}: that QEMU emulates {runs}, not {} (the arm64 columns need qemu-system-aarch64, the x86_64 ones qemu-system-x86_64)",
            named.machine()
        ),
        _ => Ok((arch, path)),
    }
}

impl Settings {
    /// Each `--qemu [ARCH=]PATH` (see [`given`]), at most one per architecture.
    pub fn set_qemus(&mut self, values: &[String]) -> Result<()> {
        let mut seen = Vec::new();
        for value in values {
            let (arch, path) = given(value)?;
            if seen.contains(&arch) {
                bail!("--qemu {value}: a QEMU for {arch} was given already (one --qemu per architecture)");
            }
            seen.push(arch);
            match arch {
                Arch::X86_64 => self.qemu = path,
                Arch::Arm64 => self.qemu_arm64 = path,
            }
        }
        Ok(())
    }
}

/// The architecture `qemu` emulates, as QEMU names it (`x86_64`, `aarch64`: `uname -m`'s names),
/// asked over QMP (`query-target`) of a machine that runs nothing (`-machine none`), within 10 s.
pub fn target(qemu: &Path) -> Result<String> {
    use std::io::{Read, Write};
    let mut child = Command::new(qemu)
        .args(["-machine", "none", "-nodefaults", "-display", "none", "-qmp", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!("not found"),
            _ => anyhow::anyhow!("cannot run it: {e}"),
        })?;
    let commands = concat!(
        r#"{"execute":"qmp_capabilities"}"#,
        "\n",
        r#"{"execute":"query-target"}"#,
        "\n",
        r#"{"execute":"quit"}"#,
        "\n"
    );
    // A program that is no QEMU may exit without reading: its answer below says so.
    let _ = child.stdin.take().expect("piped").write_all(commands.as_bytes());
    let mut stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = tx.send(out);
    });
    let out = rx.recv_timeout(Duration::from_secs(10));
    let _ = child.kill();
    let _ = child.wait();
    let out = out.map_err(|_| anyhow::anyhow!("it did not answer QMP's query-target within 10 s"))?;
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["return"]["arch"].as_str().map(String::from))
        .ok_or_else(|| anyhow::anyhow!("not a QEMU system emulator (no answer to QMP's query-target)"))
}

/// A stand-in QEMU in `dir`: `--version` prints `version` (nothing when empty), QMP's
/// query-target answers `arch` (nothing when empty).
#[cfg(test)]
pub(crate) fn stand_in(dir: &str, name: &str, version: &str, arch: &str) -> String {
    let dir = crate::util::project_root().join("target/uffdc/tests").join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let version = if version.is_empty() { String::new() } else { format!("QEMU emulator version {version}") };
    let qmp = if arch.is_empty() { String::new() } else { format!(r#"{{"return": {{"arch": "{arch}"}}}}"#) };
    let script = format!("#!/bin/sh\ncase \"$*\" in *-qmp*) echo '{qmp}' ;; *) echo '{version}' ;; esac\n");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(settings: &Settings) -> Vec<String> {
        let dir = crate::util::project_root().join("target/uffdc/tests/qemu-args");
        std::fs::create_dir_all(&dir).unwrap();
        let boot = Boot {
            settings,
            arch: Arch::X86_64,
            kernel: Path::new("/k/vmlinuz"),
            initrd: Path::new("/k/initrd"),
            console: dir.join("console.log"),
            stderr: dir.join("qemu.stderr"),
        };
        boot.command().unwrap().get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn the_command_line_carries_the_machine_and_the_suite_arguments() {
        let s =
            Settings { cpus: 3, mem_mb: 768, suite_args: vec!["--repeat=2".into()], ..Settings::default() };
        let a = args(&s);
        let after = |flag: &str| a[a.iter().position(|x| x == flag).unwrap() + 1].clone();
        assert_eq!((after("-accel"), after("-cpu")), ("tcg,thread=single".into(), "max".into()));
        assert_eq!((after("-smp"), after("-m")), ("3".into(), "768".into()));
        assert_eq!(after("-kernel"), "/k/vmlinuz");
        if has_qboot(&s.qemu) {
            assert_eq!(after("-bios"), "qboot.rom");
        } else {
            assert!(!a.contains(&"-bios".to_string()), "{a:?}");
        }
        assert!(
            after("-append").ends_with(
                " mitigations=off no_timer_check rdinit=/init hugepages=16 -- --cpus=3 --repeat=2"
            ),
            "{a:?}"
        );
        assert!(a.contains(&"-no-reboot".to_string()) && a.contains(&"stdio".to_string()));
        let mt = args(&Settings { accel: Accel::TcgMulti, ..Settings::default() });
        assert!(mt.windows(2).any(|w| w == ["-accel", "tcg,thread=multi"]), "{mt:?}");
        let kvm = args(&Settings { accel: Accel::Kvm, ..Settings::default() });
        assert!(kvm.windows(2).any(|w| w == ["-cpu", "host"]));
        let bad = Settings { suite_args: vec!["two words".into()], ..Settings::default() };
        let boot = Boot {
            settings: &bad,
            arch: Arch::X86_64,
            kernel: Path::new("/k"),
            initrd: Path::new("/i"),
            console: "/dev/null".into(),
            stderr: "/dev/null".into(),
        };
        assert!(boot.command().unwrap_err().to_string().contains("no spaces or quotes"));
    }

    /// Issue 27: an arm64 guest boots with qemu-system-aarch64 on the virt board (no firmware),
    /// its console on the first PL011 UART and the results on the second, no x86-only kernel
    /// parameter, 64 KiB and 32 MiB huge pages reserved beside the default size's, and TCG on an x86 machine even when KVM was chosen.
    #[test]
    fn an_arm64_guest_gets_its_own_machine() {
        let s = Settings { accel: Accel::Kvm, ..Settings::default() };
        let boot = Boot {
            settings: &s,
            arch: Arch::Arm64,
            kernel: Path::new("/k/vmlinuz"),
            initrd: Path::new("/k/initrd"),
            console: "/dev/null".into(),
            stderr: "/dev/null".into(),
        };
        let c = boot.command().unwrap();
        assert_eq!(c.get_program(), BINARY_ARM64);
        let a: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let after = |flag: &str| a[a.iter().position(|x| x == flag).unwrap() + 1].clone();
        assert_eq!(after("-M"), "virt");
        assert!(!a.contains(&"-bios".to_string()), "{a:?}");
        let append = after("-append");
        assert!(append.starts_with("console=ttyAMA0 ") && !append.contains("no_timer_check"), "{append}");
        // 64 KiB and 32 MiB huge pages (contiguous PTEs, PMDs) for the suite's `*_64k` and `*_32m`
        // behaviours, after the default size's.
        assert!(
            append.contains(" hugepages=16 hugepagesz=64K hugepages=16 hugepagesz=32M hugepages=4 -- "),
            "{append}"
        );
        assert_eq!(a.iter().filter(|x| *x == "-serial").count(), 2, "console and results: {a:?}");
        if Arch::native() == Arch::X86_64 {
            assert_eq!(boot.accel(), Accel::Tcg);
            assert_eq!(
                (after("-accel"), after("-cpu")),
                ("tcg,thread=single".into(), "max,pauth-impdef=on".into())
            );
        }
    }

    /// Multi-threaded TCG only on a QEMU measured not to race the guest's int3 text patching.
    #[test]
    fn tcg_is_multi_threaded_only_from_qemu_10() {
        let safe = |v: &str| multi_threaded_tcg_is_safe(v);
        assert!(safe("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)"));
        assert!(safe("QEMU emulator version 10.1.0"));
        assert!(!safe("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"), "measured racing");
        assert!(!safe("QEMU emulator version 9.2.0"), "not measured");
        assert!(!safe(""), "a QEMU that did not answer");
        assert!(!safe("qemu-system-x86_64: something else"));
    }
}
