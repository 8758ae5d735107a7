//! The suite as PID 1 of a guest kernel: mount what the probes need, take arguments from the
//! kernel command line (everything after `--`), stream results over the second serial port
//! (`/dev/ttyS1`; on arm64 the virt board's second PL011 UART, `/dev/ttyAMA1`), then the kernel's own selftests where the initramfs has them, end with an
//! end-of-results record, power off. Any failure becomes a `fatal`
//! record; the guest always powers off.

use crate::run::harness::Sink;
use model::stream::Record;
use std::sync::Arc;

#[cfg(not(target_arch = "aarch64"))]
pub const RESULTS_PORT: &str = "/dev/ttyS1";
#[cfg(target_arch = "aarch64")]
pub const RESULTS_PORT: &str = "/dev/ttyAMA1";

pub fn main() -> ! {
    let bare = std::env::args().any(|a| a == "--power-off");
    match setup().and_then(|()| open_port()) {
        // The trivial init of `cargo xtask bench`'s bare boot: a complete run of nothing (it
        // says it started, and ended), then power off at once.
        Ok(port) if bare => {
            let sink = Sink::new(Some(port), Vec::new());
            let uname = crate::kit::machine::uname();
            sink.send(&Record::Start {
                release: uname.release,
                version: uname.version,
                machine: uname.machine,
                planned: Vec::new(),
                uptime_ms: crate::kit::machine::uptime_ms(),
                suite: crate::run::harness::suite_version(),
                config: crate::kit::machine::kernel_config(),
                go: None,
                cpus: crate::kit::machine::online_cpus(),
            });
            sink.send(&Record::End { count: 0, uptime_ms: crate::kit::machine::uptime_ms() });
        }
        Err(e) => eprintln!("uffdc guest: {e}"),
        Ok(port) => match crate::run::cli::parse(std::env::args_os()) {
            Err(e) => Sink::new(Some(port), Vec::new())
                .send(&Record::Fatal { message: format!("bad arguments on the kernel command line: {e}") }),
            Ok(cli)
                if cli.cpus.is_some_and(|want| {
                    crate::kit::machine::online_cpus().is_none_or(|have| have < want)
                }) =>
            {
                let (want, have) = (cli.cpus.unwrap_or(0), crate::kit::machine::online_cpus().unwrap_or(0));
                Sink::new(Some(port), Vec::new()).send(&Record::Fatal {
                    message: format!(
                        "the kernel brought up {have} of the {want} CPUs QEMU gave the guest, so its \
                         parallel behaviours would run on a smaller machine than asked: a kernel \
                         without ACPI finds CPUs only in the firmware's MP table, which lists every \
                         CPU with QEMU's qboot (xtask uses it when QEMU has qboot.rom: install \
                         qemu-system-data) and only the first with SeaBIOS"
                    ),
                })
            }
            Ok(mut cli) => {
                // The guest is the suite's own machine: probes may change its settings.
                cli.ctx.may_change_settings = true;
                let sink = Arc::new(Sink::new(Some(port), cli.faults.clone()));
                // Trial failures are results, not the guest's concern: the conclusion is not used.
                // The kernel's own selftests (when xtask packed them) run after the suite.
                let run = || {
                    drop(crate::run::harness::run(&cli, &sink));
                    crate::run::selftests::run(&sink);
                };
                match std::panic::catch_unwind(run) {
                    Ok(()) => {
                        sink.send(&Record::End {
                            count: sink.count(),
                            uptime_ms: crate::kit::machine::uptime_ms(),
                        });
                        if cli.faults.contains(&crate::run::cli::Fault::NoPowerOff) {
                            // Self-test: a guest that halts instead of powering off.
                            loop {
                                std::thread::park();
                            }
                        }
                    }
                    Err(_) => sink
                        .send(&Record::Fatal { message: "the suite panicked (see the console log)".into() }),
                }
            }
        },
    }
    crate::kit::machine::power_off()
}

fn setup() -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    for (source, target, fstype) in
        [("proc", "/proc", "proc"), ("sysfs", "/sys", "sysfs"), ("devtmpfs", "/dev", "devtmpfs")]
    {
        std::fs::create_dir_all(target).map_err(|e| format!("mkdir {target}: {e}"))?;
        match mount(Some(source), target, Some(fstype), MsFlags::empty(), None::<&str>) {
            Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
            Err(e) => return Err(format!("mount {fstype} on {target}: {e}")),
        }
    }
    Ok(())
}

fn open_port() -> Result<std::fs::File, String> {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    let port = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags_noctty()
        .open(RESULTS_PORT)
        .map_err(|e| format!("open {RESULTS_PORT}: {e}"))?;
    // Raw mode: no newline translation, nothing held back.
    if let Ok(mut t) = tcgetattr(&port) {
        cfmakeraw(&mut t);
        let _ = tcsetattr(&port, SetArg::TCSANOW, &t);
    }
    Ok(port)
}

trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}
impl NoCtty for std::fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOCTTY)
    }
}
