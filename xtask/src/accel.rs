//! Choosing the accelerator. `/dev/kvm` existing proves nothing (on our build machines it exists
//! and guests hang or abort), so `auto` uses KVM only after a short probe boot under KVM reached
//! the suite's end record; the verdict is cached per machine boot.

use crate::qemu::Accel;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    Auto,
    Kvm,
    Tcg,
}

impl std::str::FromStr for Choice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Choice::Auto),
            "kvm" => Ok(Choice::Kvm),
            "tcg" => Ok(Choice::Tcg),
            _ => Err(format!("--accel takes auto, kvm or tcg, not {s:?}")),
        }
    }
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Verdict {
    machine: String,
    kvm_works: bool,
    detail: String,
}

/// What identifies "this machine, as booted now" (a reboot or a new QEMU may change the answer).
fn machine_key() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let qemu = std::fs::metadata(crate::deps::which(crate::qemu::BINARY).unwrap_or_default())
        .and_then(|m| m.modified())
        .map(|t| format!("{t:?}"))
        .unwrap_or_default();
    format!("boot {} qemu {qemu}", boot.trim())
}

/// Resolves `--accel`. `probe` boots a guest under KVM and says whether it reached its end.
pub fn choose(choice: Choice, cache: &Path, probe: &mut dyn FnMut() -> Result<(), String>) -> Result<Accel> {
    let openable = || std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    match choice {
        Choice::Tcg => Ok(Accel::Tcg),
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
