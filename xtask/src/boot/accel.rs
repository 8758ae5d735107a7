//! Choosing the accelerator. `/dev/kvm` existing proves nothing (on our build machines it exists
//! and guests hang or abort), so `auto` uses KVM only after a short probe boot under KVM reached
//! the suite's end record; the verdict is cached per machine boot. The probe boots a guest of this
//! machine's own architecture (`pipeline::columns`), the only one KVM runs: an x86-64 kernel
//! on x86-64, an arm64 one (`-accel kvm -cpu host`, `virt,gic-version=host`) on arm64.

use crate::boot::qemu::Accel;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    Auto,
    Kvm,
    Tcg,
    /// TCG with a host thread per guest CPU.
    TcgMulti,
}

impl std::str::FromStr for Choice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Choice::Auto),
            "kvm" => Ok(Choice::Kvm),
            "tcg" => Ok(Choice::Tcg),
            "tcg-mt" => Ok(Choice::TcgMulti),
            _ => Err(format!("--accel takes auto, kvm, tcg or tcg-mt, not {s:?}")),
        }
    }
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Verdict {
    machine: String,
    kvm_works: bool,
    detail: String,
}

/// What identifies "this machine, as booted now" (a reboot or a new QEMU may change the answer):
/// its boot, its architecture and the QEMU that KVM runs here, the one for this machine's own
/// architecture (the probe boots a guest of it: qemu-system-aarch64 with `-accel kvm -cpu host`
/// on an arm64 machine, such as GitHub's arm64 runners; qemu-system-x86_64 on x86-64).
fn machine_key() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let native = model::arch::Arch::native();
    let binary = match native {
        model::arch::Arch::X86_64 => crate::boot::qemu::BINARY,
        model::arch::Arch::Arm64 => crate::boot::qemu::BINARY_ARM64,
    };
    let qemu = std::fs::metadata(crate::inputs::packages::which(binary).unwrap_or_default())
        .and_then(|m| m.modified())
        .map(|t| format!("{t:?}"))
        .unwrap_or_default();
    format!("boot {} {native} {binary} {qemu}", boot.trim())
}

/// Resolves `--accel`. `probe` boots a guest under KVM and says whether it reached its end.
pub fn choose(choice: Choice, cache: &Path, probe: &mut dyn FnMut() -> Result<(), String>) -> Result<Accel> {
    choose_with(Path::new("/dev/kvm"), choice, cache, probe)
}

/// [`choose`] with the KVM device at `kvm`.
fn choose_with(
    kvm: &Path,
    choice: Choice,
    cache: &Path,
    probe: &mut dyn FnMut() -> Result<(), String>,
) -> Result<Accel> {
    let openable = || std::fs::OpenOptions::new().read(true).write(true).open(kvm).is_ok();
    match choice {
        Choice::Tcg => Ok(Accel::Tcg),
        Choice::TcgMulti => Ok(Accel::TcgMulti),
        Choice::Kvm => {
            if !openable() {
                bail!("--accel kvm: /dev/kvm is missing or not accessible; use --accel tcg (or auto)");
            }
            match probe() {
                Ok(()) => Ok(Accel::Kvm),
                Err(e) => {
                    bail!("--accel kvm: a probe boot under KVM failed ({e}); use --accel tcg (or auto)")
                }
            }
        }
        Choice::Auto => {
            if !openable() {
                return Ok(Accel::Tcg);
            }
            let key = machine_key();
            if let Some(v) =
                std::fs::read_to_string(cache).ok().and_then(|t| toml::from_str::<Verdict>(&t).ok())
            {
                if v.machine == key {
                    return Ok(if v.kvm_works { Accel::Kvm } else { Accel::Tcg });
                }
            }
            eprintln!("accel: /dev/kvm is there; checking with a probe boot that KVM really works");
            let result = probe();
            let verdict = Verdict {
                machine: key,
                kvm_works: result.is_ok(),
                detail: result.clone().err().unwrap_or_else(|| "probe boot reached the end record".into()),
            };
            if let Err(e) = &result {
                eprintln!("accel: KVM does not work here ({e}); using TCG");
            }
            let _ = crate::util::write_atomic(cache, toml::to_string(&verdict)?.as_bytes());
            Ok(if verdict.kvm_works { Accel::Kvm } else { Accel::Tcg })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = crate::util::project_root().join("target/uffdc/tests/accel").join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn kvm_is_used_only_after_a_probe_boot_proved_it_and_the_verdict_is_kept() {
        let d = dir("choose");
        let (kvm, cache) = (d.join("kvm"), d.join("accel.toml"));
        let never = &mut || -> Result<(), String> { panic!("no probe boot was due") };
        // No device: TCG for auto, a one-line error for kvm.
        assert_eq!(choose_with(&kvm, Choice::Auto, &cache, never).unwrap(), Accel::Tcg);
        let err = choose_with(&kvm, Choice::Kvm, &cache, never).unwrap_err().to_string();
        assert!(err.contains("/dev/kvm is missing or not accessible") && !err.contains('\n'), "{err}");
        assert_eq!(choose_with(&kvm, Choice::Tcg, &cache, never).unwrap(), Accel::Tcg);
        // A device that opens proves nothing: the probe boot decides, once per machine.
        std::fs::write(&kvm, "").unwrap();
        let probes = std::cell::Cell::new(0);
        let mut failing = || {
            probes.set(probes.get() + 1);
            Err("failed to set MSR 0x10a".to_string())
        };
        assert_eq!(choose_with(&kvm, Choice::Auto, &cache, &mut failing).unwrap(), Accel::Tcg);
        assert_eq!(choose_with(&kvm, Choice::Auto, &cache, &mut failing).unwrap(), Accel::Tcg);
        assert_eq!(probes.get(), 1, "the verdict is cached");
        let err = choose_with(&kvm, Choice::Kvm, &cache, &mut failing).unwrap_err().to_string();
        assert!(err.contains("a probe boot under KVM failed (failed to set MSR 0x10a)"), "{err}");
        // Another machine (a cache from elsewhere) probes again; a probe that works picks KVM.
        std::fs::write(&cache, "machine = \"elsewhere\"\nkvm_works = false\ndetail = \"\"\n").unwrap();
        assert_eq!(choose_with(&kvm, Choice::Auto, &cache, &mut || Ok(())).unwrap(), Accel::Kvm);
        assert_eq!(choose_with(&kvm, Choice::Auto, &cache, never).unwrap(), Accel::Kvm);
        assert_eq!(choose_with(&kvm, Choice::Tcg, &cache, never).unwrap(), Accel::Tcg, "asked for TCG");
    }

    #[test]
    fn the_choice_parses() {
        assert_eq!("auto".parse::<Choice>(), Ok(Choice::Auto));
        assert!("fast".parse::<Choice>().unwrap_err().contains("auto, kvm, tcg or tcg-mt"));
    }
}
