//! Booting a guest: the QEMU command line, under a hard timeout.

use crate::util::{run_with_timeout, Ended};
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

pub struct Boot {
    /// The QEMU binary (`qemu-system-x86_64` from PATH).
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Arguments for the suite (after `--` on the kernel command line).
    pub init_args: Vec<String>,
    pub accel: Accel,
    pub cpus: u32,
    pub mem_mb: u32,
    /// ttyS0: the kernel's and the suite's console.
    pub console: PathBuf,
    /// ttyS1: the results stream.
    pub results: PathBuf,
    /// QEMU's own stderr.
    pub stderr: PathBuf,
    pub timeout: Duration,
}

pub const BINARY: &str = "qemu-system-x86_64";

impl Boot {
    pub fn command(&self) -> Result<Command> {
        for arg in &self.init_args {
            if arg.is_empty() || arg.contains(char::is_whitespace) || arg.contains('"') {
                bail!(
                    "suite argument {arg:?} cannot be passed on a kernel command line (no spaces or quotes)"
                );
            }
        }
        // Huge pages are reserved for populate.hugetlb_missing.
        let mut append = String::from("console=ttyS0 panic=-1 quiet loglevel=4 rdinit=/init hugepages=4");
        if !self.init_args.is_empty() {
            append += " -- ";
            append += &self.init_args.join(" ");
        }
        let (accel, cpu) = match self.accel {
            Accel::Kvm => ("kvm", "host"),
            Accel::Tcg => ("tcg", "max"),
        };
        let mut c = Command::new(&self.qemu);
        c.args(["-nodefaults", "-no-reboot", "-display", "none", "-monitor", "none"])
            .args(["-accel", accel, "-cpu", cpu])
            .args(["-smp", &self.cpus.to_string(), "-m", &self.mem_mb.to_string()])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .args(["-append", &append])
            .arg("-serial")
            .arg(format!("file:{}", self.console.display()))
            .arg("-serial")
            .arg(format!("file:{}", self.results.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.stderr)?);
        Ok(c)
    }

    /// Boots and waits for QEMU to exit or the timeout to fire.
    pub fn run(&self, on_start: &mut dyn FnMut(u32)) -> Result<(Ended, Duration)> {
        let command = self.command()?;
        match run_with_timeout(command, self.timeout, on_start) {
            Err(e)
                if e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) =>
            {
                bail!(
                    "{} not found: install QEMU (`sudo apt-get install qemu-system-x86`, or run as root and it is installed for you)",
                    self.qemu.display()
                )
            }
            other => other,
        }
    }
}
