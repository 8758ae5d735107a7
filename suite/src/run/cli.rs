//! The suite's own options. Everything it does not recognise goes to libtest-mimic untouched
//! (`--list`, filters, `--exact`, `--skip`, `--format json`, `--test-threads`).

use crate::kit::outcome::Ctx;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub const HELP: &str = "\
uffd-conformance suite: one trial per userfaultfd behaviour, each probed in a child process.

Suite options (libtest-mimic's own options follow below):
  --results PATH        write every behaviour's observation and verdict to PATH (TOML)
  --stream PATH         also append each result to PATH as it is produced (the line format a
                        guest sends over its results port)
  --window-ms N         how long \"nothing happens\" checks watch (default 300)
  --timeout-ms N        how long to wait for something that should happen (default 10000)
  --watchdog-s N        kill a probe that has not finished after N seconds: `hung` (default 60)
  --repeat N            run every behaviour N times; a behaviour whose observations differ is
                        `flaky`, with each distinct observation and its count (default 1)
  --reserve-hugepages N reserve N more huge pages (vm.nr_hugepages) for the run and put the
                        setting back afterwards (a host has none by default: the hugetlb
                        behaviours are `skipped` then; a guest reserves its own)
  --allow-sysctl-changes
                        on a host, let probes change security sysctls (vm.unprivileged_userfaultfd)
                        for their run; they are put back afterwards, even if a probe is killed.
                        Without it those behaviours are `skipped` on a host (a guest always allows)
  --cpus N              the CPUs this machine must have online: with fewer the run stops with a
                        fatal error before any behaviour (xtask passes the guest's -smp)
  --catalogue           print the behaviour catalogue (TOML) and exit
  --corrupt ID          (self-test) make behaviour ID report a wrong observation
  --inject-fault SPEC   (self-test) panic-after=N | hang-after=N | truncate-after=N |
                        no-power-off (guest),
                        probe-hang=ID | probe-crash=ID | no-userfaultfd (as without CONFIG_USERFAULTFD) |
                        serve-stale=ID | serve-zero=ID (the probe's page server serves one stale
                        or zero page; its checker must report it) | no-race=ID (the probe leaves
                        out the races it makes on purpose; it must report falling short) |
                        setting-hang=ID (the probe blocks right after changing a system setting) |
                        flaky=ID (every other run of the probe is corrupted: see --repeat) |
                        unsupported=ID (the probe reports a missing prerequisite without probing)

Environment: UFFDC_GO_WORKLOAD=PATH, the Go workload the stw.go_* behaviours run (default:
uffdc-go beside the suite; `cargo xtask images fetch go` builds it).
";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Run,
    Catalogue,
    /// Internal: run one probe in this process and report on stdout.
    Probe(String),
    /// Internal: the fork server that starts probe processes (`isolate::zygote_main`), talking
    /// over the socket with this descriptor number.
    Zygote(i32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// In a guest: after N results, end PID 1, which panics the kernel.
    PanicAfter(usize),
    /// In a guest: after N results, stop making progress (the host's hard timeout must fire).
    HangAfter(usize),
    /// In a guest: after N results, send half of the next record and power off at once.
    TruncateAfter(usize),
    /// In a guest: after the end record, do not power off (the host must stop the guest).
    NoPowerOff,
    /// The probe of this behaviour blocks forever (its watchdog must fire).
    ProbeHang(String),
    /// The probe of this behaviour dies from SIGSEGV.
    ProbeCrash(String),
    /// Every probe runs as on a kernel without CONFIG_USERFAULTFD: a seccomp filter makes
    /// userfaultfd(2) fail with ENOSYS.
    NoUserfaultfd,
    /// This behaviour's page server serves one refault with stale content (its checker must see it).
    ServeStale(String),
    /// This behaviour's page server serves one refault with a zero page (its checker must see it).
    ServeZero(String),
    /// This behaviour leaves out the races it makes on purpose (it must report falling short).
    NoRace(String),
    /// This behaviour's probe blocks forever right after it changed a system setting.
    SettingHang(String),
    /// This behaviour's observation is corrupted on every other run (`--repeat` must call it flaky).
    Flaky(String),
    /// This behaviour reports a missing prerequisite without probing (where the kernel should have
    /// it, that must grade `unexpected`).
    Unsupported(String),
}

#[derive(Clone, Debug)]
pub struct Cli {
    pub mode: Mode,
    pub ctx: Ctx,
    pub watchdog: Duration,
    /// How many times each behaviour is run (`--repeat`).
    pub repeat: u32,
    /// Huge pages to reserve for the run (`--reserve-hugepages`).
    pub reserve_hugepages: u32,
    /// The CPUs that must be online (`--cpus`): a guest whose kernel brought up fewer than QEMU
    /// gave it would observe the parallel behaviours on a smaller machine than its column says.
    pub cpus: Option<u32>,
    pub results: Option<PathBuf>,
    pub stream: Option<PathBuf>,
    pub corrupt: Vec<String>,
    pub faults: Vec<Fault>,
    /// argv[0] and the arguments for libtest-mimic.
    pub test_args: Vec<OsString>,
}

impl Cli {
    /// The arguments that carry this configuration to the probe child of run `run` (0 unless
    /// `--repeat`).
    pub fn child_args(&self, id: &str, run: u32) -> Vec<String> {
        let mut args = vec![
            "--probe".to_string(),
            id.to_string(),
            format!("--window-ms={}", self.ctx.window.as_millis()),
            format!("--timeout-ms={}", self.ctx.timeout.as_millis()),
        ];
        if self.ctx.may_change_settings {
            args.push("--allow-sysctl-changes".to_string());
        }
        if self.corrupt.iter().any(|c| c == id) {
            args.push(format!("--corrupt={id}"));
        }
        for f in &self.faults {
            match f {
                Fault::ProbeHang(x) if x == id => args.push(format!("--inject-fault=probe-hang={id}")),
                Fault::ProbeCrash(x) if x == id => args.push(format!("--inject-fault=probe-crash={id}")),
                Fault::NoUserfaultfd => args.push("--inject-fault=no-userfaultfd".to_string()),
                Fault::ServeStale(x) if x == id => args.push(format!("--inject-fault=serve-stale={id}")),
                Fault::ServeZero(x) if x == id => args.push(format!("--inject-fault=serve-zero={id}")),
                Fault::NoRace(x) if x == id => args.push(format!("--inject-fault=no-race={id}")),
                Fault::SettingHang(x) if x == id => args.push(format!("--inject-fault=setting-hang={id}")),
                Fault::Flaky(x) if x == id && run % 2 == 1 => args.push(format!("--corrupt={id}")),
                Fault::Unsupported(x) if x == id => args.push(format!("--inject-fault=unsupported={id}")),
                _ => {}
            }
        }
        args
    }
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli, String> {
    let mut args = args.into_iter();
    let mut cli = Cli {
        mode: Mode::Run,
        ctx: Ctx::default(),
        watchdog: Duration::from_secs(60),
        repeat: 1,
        reserve_hugepages: 0,
        cpus: None,
        results: None,
        stream: None,
        corrupt: Vec::new(),
        faults: Vec::new(),
        test_args: vec![args.next().unwrap_or_else(|| "suite".into())],
    };
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str().map(str::to_string) else {
            cli.test_args.push(arg);
            continue;
        };
        let (flag, inline) = match text.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (text.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next().and_then(|v| v.into_string().ok()))
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |name: &str, v: String| -> Result<u64, String> {
            v.parse().map_err(|_| format!("{name} takes a whole number, not {v:?}"))
        };
        let positive = |name: &str, n: u64| -> Result<u64, String> {
            if n == 0 || n > u64::from(u32::MAX) {
                Err(format!("{name} takes a whole number from 1 to {}, not {n}", u32::MAX))
            } else {
                Ok(n)
            }
        };
        match flag.as_str() {
            "--results" => cli.results = Some(PathBuf::from(value("--results")?)),
            "--stream" => cli.stream = Some(PathBuf::from(value("--stream")?)),
            "--window-ms" => {
                cli.ctx.window = Duration::from_millis(positive(&flag, number(&flag, value(&flag)?)?)?)
            }
            "--timeout-ms" => {
                cli.ctx.timeout = Duration::from_millis(positive(&flag, number(&flag, value(&flag)?)?)?)
            }
            "--watchdog-s" => {
                cli.watchdog = Duration::from_secs(positive(&flag, number(&flag, value(&flag)?)?)?)
            }
            "--repeat" => cli.repeat = positive(&flag, number(&flag, value(&flag)?)?)? as u32,
            "--allow-sysctl-changes" => cli.ctx.may_change_settings = true,
            "--reserve-hugepages" => {
                cli.reserve_hugepages = positive(&flag, number(&flag, value(&flag)?)?)? as u32
            }
            "--cpus" => cli.cpus = Some(positive(&flag, number(&flag, value(&flag)?)?)? as u32),
            "--catalogue" => cli.mode = Mode::Catalogue,
            "--probe" => cli.mode = Mode::Probe(value("--probe")?),
            "--zygote" => {
                let fd = value("--zygote")?;
                cli.mode =
                    Mode::Zygote(fd.parse().map_err(|_| format!("--zygote takes a descriptor, not {fd:?}"))?)
            }
            "--corrupt" => cli.corrupt.push(known_id(value("--corrupt")?)?),
            "--inject-fault" => cli.faults.push(parse_fault(&value("--inject-fault")?)?),
            "--help" | "-h" => {
                println!("{HELP}");
                cli.test_args.push(arg);
            }
            _ => cli.test_args.push(arg),
        }
    }
    Ok(cli)
}

fn known_id(id: String) -> Result<String, String> {
    match crate::run::catalogue::find(&id) {
        Some(_) => Ok(id),
        None => Err(format!("unknown behaviour id {id:?} (see `suite --list`)")),
    }
}

fn parse_fault(spec: &str) -> Result<Fault, String> {
    let (kind, arg) = if spec == "no-userfaultfd" || spec == "no-power-off" {
        (spec, "")
    } else {
        spec.split_once('=').ok_or_else(|| format!("bad fault {spec:?}: use KIND=VALUE"))?
    };
    let count = || arg.parse::<usize>().map_err(|_| format!("fault {kind} takes a count, not {arg:?}"));
    Ok(match kind {
        "panic-after" => Fault::PanicAfter(count()?),
        "hang-after" => Fault::HangAfter(count()?),
        "truncate-after" => Fault::TruncateAfter(count()?),
        "probe-hang" => Fault::ProbeHang(known_id(arg.to_string())?),
        "probe-crash" => Fault::ProbeCrash(known_id(arg.to_string())?),
        "no-userfaultfd" => Fault::NoUserfaultfd,
        "no-power-off" => Fault::NoPowerOff,
        "serve-stale" => Fault::ServeStale(known_id(arg.to_string())?),
        "serve-zero" => Fault::ServeZero(known_id(arg.to_string())?),
        "no-race" => Fault::NoRace(known_id(arg.to_string())?),
        "setting-hang" => Fault::SettingHang(known_id(arg.to_string())?),
        "flaky" => Fault::Flaky(known_id(arg.to_string())?),
        "unsupported" => Fault::Unsupported(known_id(arg.to_string())?),
        _ => {
            return Err(format!(
                "unknown fault {kind:?}: panic-after, hang-after, truncate-after, no-power-off, probe-hang, probe-crash, no-userfaultfd, serve-stale, serve-zero, no-race, setting-hang, flaky or unsupported"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Cli, String> {
        parse(std::iter::once("suite").chain(args.iter().copied()).map(OsString::from))
    }

    #[test]
    fn splits_own_flags_from_libtest_flags() {
        let cli = parse_str(&[
            "--results",
            "r.toml",
            "--exact",
            "api::features",
            "--window-ms=50",
            "--format",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.results, Some(PathBuf::from("r.toml")));
        assert_eq!(cli.ctx.window, Duration::from_millis(50));
        assert_eq!(
            cli.test_args,
            ["suite", "--exact", "api::features", "--format", "json"].map(OsString::from)
        );
    }

    #[test]
    fn rejects_bad_values() {
        assert!(parse_str(&["--window-ms", "soon"]).is_err());
        assert!(parse_str(&["--corrupt", "no.such"]).is_err());
        assert!(parse_str(&["--inject-fault", "explode=1"]).is_err());
        assert!(parse_str(&["--results"]).is_err());
        assert_eq!(parse_str(&["--inject-fault", "panic-after=3"]).unwrap().faults, [Fault::PanicAfter(3)]);
    }

    #[test]
    fn child_args_carry_settings_and_self_tests() {
        let cli = parse_str(&[
            "--corrupt",
            "api.features",
            "--inject-fault=probe-hang=api.features",
            "--timeout-ms",
            "7",
        ])
        .unwrap();
        let args = cli.child_args("api.features", 0);
        assert!(args.contains(&"--corrupt=api.features".to_string()));
        assert!(args.contains(&"--inject-fault=probe-hang=api.features".to_string()));
        assert!(args.contains(&"--timeout-ms=7".to_string()));
        assert!(!cli.child_args("api.user_mode_only", 0).iter().any(|a| a.starts_with("--corrupt")));
    }
}
