//! `cargo xtask matrix`: build the suite, fetch the kernels, boot each with the suite as init,
//! collect every kernel's results into `matrix/results/<id>.toml`, and compile
//! `matrix/compat.toml` from all results files there (other kernels' columns are kept). The work
//! itself is the run pipeline's (`pipeline.rs`); this task sets it up and shows its progress.

use crate::boot::pipeline::{gather, prepare, Options};
use crate::flags::in_range;
use crate::inputs::fleet::KernelId;
use crate::inputs::packages::{self, Need};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;
use xshell::Shell;

/// `mirror`: `--mirror`, from which the run's one private apt is made (`Fleet::apt`).
pub fn run(sh: &Shell, root: &Path, opts: &Options, mirror: Option<String>) -> Result<()> {
    // Every path given is checked before anything is built or downloaded.
    check_paths(opts)?;
    let fleet = crate::inputs::fleet::Fleet::load(root)?;
    let ids = opts.fleet_ids(&fleet);
    fleet.partition(&ids)?;
    let mut needs = vec![Need::Libclang];
    if !ids.is_empty() || !opts.images.is_empty() {
        // This machine's own architecture's QEMU (an arm64 machine's is qemu-system-aarch64);
        // the other architectures' come with `for_arch` below.
        needs.extend(packages::for_arch(model::arch::Arch::native()));
    }
    if !ids.is_empty() {
        needs.extend([Need::AptTools, Need::DebianKeyring]);
    }
    let mut arches = fleet.arches(&ids);
    for (path, id, config) in &opts.images {
        let arch = crate::boot::pipeline::local_image(path, id.as_deref(), config.as_deref())?.arch;
        if arch != model::arch::Arch::native() && !arches.contains(&arch) {
            arches.push(arch);
        }
    }
    needs.extend(arches.iter().flat_map(|a| packages::for_arch(*a)));
    packages::ensure(sh, &needs)?;
    if opts.host && !packages::is_root() {
        eprintln!("note: the host column is best run as root: several probes need it and will report `error` otherwise");
    }
    let apt = fleet.apt(&crate::inputs::fleet::Cache::new(root), mirror);
    let prepared = prepare(sh, root, None, &arches, apt)?;
    // The history keeps what the matrix observed before this run (and starts from it if it has none).
    if let Ok(before) = model::data::load(&opts.out.join("compat.toml")) {
        crate::publish::history::record(&opts.out, &before)?;
    }
    let progress = crate::boot::progress::Progress::start();
    let result = gather(sh, root, opts, &prepared, &|e| progress.observe(e));
    progress.finish();
    // The readable report follows the matrix, whatever became of the run (its columns are kept).
    if let Ok(compat) = model::data::load(&opts.out.join("compat.toml")) {
        crate::publish::history::record(&opts.out, &compat)?;
        crate::publish::write_markdown(&opts.out, &compat)?;
        eprintln!("report  {}", crate::util::display_path(&opts.out.join(crate::publish::COMPATIBILITY)));
    }
    result
}

/// The files the command line names exist: a local kernel image and its configuration (a QEMU
/// given is checked as its flag is read: `qemu::given`); a one-line error names the flag, the path
/// and what is wrong with it.
fn check_paths(opts: &Options) -> Result<()> {
    let file = |flag: &str, path: &Path| -> Result<()> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => bail!("{flag} {}: not a file", path.display()),
            Err(e) => bail!("{flag} {}: {e}", path.display()),
        }
    };
    for (image, _, config) in &opts.images {
        file("--kernel-image", image)?;
        if let Some(config) = config {
            file("--kernel-image ...,config=", config)?;
        }
    }
    Ok(())
}

/// The pipeline's options from `cargo xtask matrix`'s flags (`dashes`: whether the command line had
/// `--`, which suite arguments must follow), each number checked against its range.
pub fn options(root: &Path, m: crate::flags::Matrix, dashes: bool) -> Result<Options> {
    if !m.suite_args.is_empty() && !dashes {
        bail!(
            "unexpected argument {:?} for matrix: kernels are --kernel ID; suite arguments go after `--`",
            m.suite_args[0]
        );
    }
    let mut opts = Options::new(root);
    opts.selftests = !m.no_selftests;
    opts.binary_cache = !m.no_binary_cache;
    opts.kernels = m.kernel.into_iter().map(KernelId::from).collect();
    for image in m.kernel_image {
        let (rest, config) = match image.split_once(",config=") {
            Some((r, c)) => (r.to_string(), Some(PathBuf::from(c))),
            None => (image, None),
        };
        let (path, id) = match rest.split_once('=') {
            Some((p, id)) => (p.to_string(), Some(id.to_string())),
            None => (rest, None),
        };
        opts.images.push((PathBuf::from(path), id, config));
    }
    opts.host = m.host;
    if m.publish_host && !m.host {
        bail!("--publish-host puts the host column into the matrix: add --host");
    }
    opts.publish_host = m.publish_host;
    if let Some(n) = m.jobs {
        opts.jobs = in_range("--jobs", n, 1, 64)? as usize;
    }
    let repeat = m.repeat.map(|n| in_range("--repeat", n, 1, 1000)).transpose()?.unwrap_or(1);
    if let Some(a) = m.accel {
        opts.accel = a.parse().map_err(anyhow::Error::msg)?;
    }
    if let Some(n) = m.boot_timeout {
        opts.run.boot_timeout = Duration::from_secs(in_range("--boot-timeout", n, 1, 3600)?);
    }
    if let Some(n) = m.boot_attempts {
        opts.run.boot_attempts = in_range("--boot-attempts", n, 1, 10)? as u32;
    }
    if let Some(n) = m.cpus {
        opts.run.cpus = in_range("--cpus", n, 1, 64)? as u32;
    }
    if let Some(n) = m.memory {
        opts.run.mem_mb = in_range("--memory", n, 256, 65_536)? as u32;
    }
    opts.run.set_qemus(&m.qemu)?;
    if let Some(o) = m.out {
        opts.out = o;
    }
    opts.check_tcg_mt()?;
    opts.run.suite_args.extend(m.suite_args.iter().map(|a| a.to_string_lossy().into_owned()));
    if repeat > 1 {
        opts.run.suite_args.push(format!("--repeat={repeat}"));
    }
    // Each repeat of the suite takes its time: the default hard limit grows with them.
    opts.run.timeout = match m.timeout {
        Some(n) => Duration::from_secs(in_range("--timeout", n, 10, 86_400)?),
        None => opts.run.timeout * repeat.min(20) as u32,
    };
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use crate::boot::accel::Choice;
    use crate::boot::pipeline::{compile, gather, local_image, Options, Prepared, RunEvent, HOST_ID};
    use crate::boot::qemu::Settings;
    use crate::boot::runner::{self, Event};
    use crate::inputs::fleet::{Cache, Fleet, Image, KernelId};
    use model::arch::Arch;
    use model::stream::Record;
    use model::{Compat, Verdict};
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::Duration;
    use xshell::Shell;

    #[test]
    fn a_malformed_results_file_is_named_with_its_line() {
        let out = scratch("malformed");
        std::fs::create_dir_all(out.join("results")).unwrap();
        std::fs::write(out.join("results/broken.toml"), "schema = 1\n[kernel]\nrelease = 5\n").unwrap();
        let catalogue = model::Catalogue { schema: model::data::SCHEMA, behaviours: BTreeMap::new() };
        let err = compile(&out, &catalogue).unwrap_err().to_string();
        assert!(err.contains("results/broken.toml:3:"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }

    /// A fresh directory under target/ for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = crate::util::project_root().join("target/uffdc/tests").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The static suite that `cargo xtask test` built, and what the guests need.
    fn prepared(sh: &Shell) -> Prepared {
        let suite = std::env::var_os("UFFDC_SUITE_BIN")
            .map(PathBuf::from)
            .expect("UFFDC_SUITE_BIN is unset: run the end-to-end tests through `cargo xtask test`");
        let root = crate::util::project_root();
        let apt = Fleet::load(&root).unwrap().apt(&Cache::new(&root), None);
        crate::boot::pipeline::prepare(sh, &root, Some(suite), &[], apt).unwrap()
    }

    fn options(name: &str, kernels: &[&str]) -> Options {
        let dir = scratch(name);
        let mut opts = Options::new(&crate::util::project_root());
        opts.kernels = kernels.iter().map(|k| KernelId::from(*k)).collect();
        opts.accel = Choice::Tcg;
        opts.out = dir.join("matrix");
        opts.logs = dir.join("logs");
        opts.run.timeout = Duration::from_secs(240);
        opts
    }

    fn load_compat(opts: &Options) -> Compat {
        model::data::load(&opts.out.join("compat.toml")).unwrap()
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn two_debian_kernels_and_the_host_fill_the_matrix() {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let mut opts = options("two-kernels", &["debian-5.10-cloud", "debian-6.1-cloud"]);
        opts.host = true;
        opts.publish_host = true;
        gather(&sh, &root, &opts, &prepared(&sh), &|_| {}).unwrap();
        let compat = load_compat(&opts);
        assert_eq!(compat.kernels.len(), 3);
        for (id, k) in &compat.kernels {
            assert_eq!(k.status, model::RunStatus::Complete, "{id}: {:?}", k.reason);
            assert_eq!(k.accel, if id == HOST_ID { "none" } else { "tcg" });
            // The Go workload ran beside the suite, in the initramfs and on the host.
            assert!(k.go.as_deref().is_some_and(|g| g.starts_with("go1.")), "{id}: {:?}", k.go);
        }
        assert!(compat.kernels["debian-5.10-cloud"].release.starts_with("5.10."));
        assert!(compat.kernels["debian-6.1-cloud"].release.starts_with("6.1."));
        for (id, b) in &compat.behaviours {
            for (kernel, cell) in &b.cells {
                assert!(
                    matches!(cell.verdict, Verdict::Expected | Verdict::Unsupported | Verdict::Skipped),
                    "{id} on {kernel}: {cell:?}"
                );
                assert!(cell.verdict != Verdict::Skipped || kernel == HOST_ID, "{id} on {kernel}: {cell:?}");
            }
        }
        let populate = &compat.behaviours["populate.read_missing"].cells;
        assert_eq!(populate["debian-5.10-cloud"].observed, "EINVAL");
        assert_eq!(populate["debian-5.10-cloud"].verdict, Verdict::Unsupported);
        assert_eq!(populate["debian-6.1-cloud"].observed, "fault read");
        assert_eq!(populate[HOST_ID].observed, "fault read");
        assert_eq!(compat.behaviours["api.dev_userfaultfd"].cells["debian-5.10-cloud"].observed, "absent");
        assert_eq!(compat.behaviours["api.dev_userfaultfd"].cells["debian-6.1-cloud"].observed, "works");
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn a_killed_qemu_or_a_kernel_panic_loses_only_its_own_cells() {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let prepared = prepared(&sh);
        let mut opts = options("guest-failures", &["debian-5.10-cloud", "debian-6.1-cloud"]);

        // 1. QEMU of the second kernel is killed once its first result has arrived.
        let pid = std::sync::Mutex::new(None);
        let err = gather(&sh, &root, &opts, &prepared, &|e| match e {
            RunEvent::Run("debian-6.1-cloud", Event::Spawned { pid: p, .. }) => {
                *pid.lock().unwrap() = Some(*p)
            }
            RunEvent::Run("debian-6.1-cloud", Event::Record(Record::Cell { .. })) => {
                if let Some(p) = pid.lock().unwrap().take() {
                    // SAFETY: QEMU is the run's child, still running (it is reading its stream).
                    unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
                }
            }
            _ => {}
        })
        .unwrap_err();
        assert!(err.to_string().contains("did not complete"), "{err:#}");
        let compat = load_compat(&opts);
        assert_eq!(compat.kernels["debian-5.10-cloud"].status, model::RunStatus::Complete);
        let killed = &compat.kernels["debian-6.1-cloud"];
        assert_eq!(killed.status, model::RunStatus::Incomplete);
        assert!(killed.reason.as_deref().unwrap().contains("QEMU was killed by SIGKILL"), "{killed:?}");
        let cells: Vec<_> = compat.behaviours.values().map(|b| &b.cells["debian-6.1-cloud"]).collect();
        let kept = cells.iter().filter(|c| c.verdict != Verdict::Missing).count();
        assert!(kept >= 1 && kept < cells.len(), "{kept} of {} cells survived", cells.len());
        for c in cells.iter().filter(|c| c.verdict == Verdict::Missing) {
            assert!(c.reason.as_deref().unwrap().contains("QEMU was killed"), "{c:?}");
        }
        for b in compat.behaviours.values() {
            assert_ne!(b.cells["debian-5.10-cloud"].verdict, Verdict::Missing);
        }

        // 2. A later run of one kernel whose suite panics the kernel after three results merges
        //    into the same matrix: the other kernel's column stays as it was.
        opts.kernels = vec!["debian-6.1-cloud".into()];
        opts.run.suite_args = vec!["--inject-fault=panic-after=3".into(), "--test-threads=1".into()];
        assert!(gather(&sh, &root, &opts, &prepared, &|_| {}).is_err());
        let after = load_compat(&opts);
        assert_eq!(after.kernels["debian-5.10-cloud"], compat.kernels["debian-5.10-cloud"]);
        let panicked = &after.kernels["debian-6.1-cloud"];
        assert!(
            panicked.reason.as_deref().unwrap().starts_with("kernel panic: Attempted to kill init"),
            "{panicked:?}"
        );
        let real = after
            .behaviours
            .values()
            .filter(|b| b.cells["debian-6.1-cloud"].verdict != Verdict::Missing)
            .count();
        assert_eq!(real, 3);
        for (id, b) in &after.behaviours {
            assert_eq!(b.cells["debian-5.10-cloud"], compat.behaviours[id].cells["debian-5.10-cloud"]);
        }
        let console = root.join(panicked.console_log.as_deref().unwrap());
        assert!(std::fs::read_to_string(console).unwrap().contains("Kernel panic"));
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn a_guest_that_stops_making_progress_hits_the_hard_timeout() {
        let sh = Shell::new().unwrap();
        let mut opts = options("hung-guest", &["debian-6.1-cloud"]);
        // The guest's whole time: enough to boot and run the one behaviour before the hang (a
        // few seconds), then cut (it was 30 s, waited out whole).
        opts.run.timeout = Duration::from_secs(15);
        opts.run.suite_args = vec!["--inject-fault=hang-after=1".into(), "--test-threads=1".into()];
        assert!(gather(&sh, &crate::util::project_root(), &opts, &prepared(&sh), &|_| {}).is_err());
        let compat = load_compat(&opts);
        let k = &compat.kernels["debian-6.1-cloud"];
        assert!(k.reason.as_deref().unwrap().starts_with("hard timeout"), "{k:?}");
        // It was cut while it hung, not before the suite ran: the one behaviour before the hang
        // has its cell.
        let observed = compat.behaviours.values().filter(|b| {
            b.cells.get("debian-6.1-cloud").is_some_and(|c| c.verdict != model::Verdict::Missing)
        });
        assert!(observed.count() >= 1, "no cell was observed before the hard timeout");
    }

    /// The cached image of a fleet kernel (fetched if need be).
    fn fleet_image(sh: &Shell, id: &str) -> Image {
        let root = crate::util::project_root();
        let fleet = Fleet::load(&root).unwrap();
        let cache = Cache::new(&root);
        let (_, pin) = fleet.select(&[KernelId::from(id)]).unwrap().remove(0);
        cache.fetch(sh, id, &pin, &mut fleet.apt(&cache, None)).unwrap()
    }

    /// Issue 27: an arm64 kernel boots under qemu-system-aarch64 with the arm64 suite as init:
    /// its bare boot reports start and end over the second UART and powers off; a run of a few
    /// behaviours (a Go one among them) grades them on arm64 and records the architecture.
    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn an_arm64_guest_streams_its_results_and_powers_off() {
        let sh = Shell::new().unwrap();
        let var = |k: &str| {
            std::env::var_os(k).map(PathBuf::from).unwrap_or_else(|| {
                panic!("{k} is unset: run the end-to-end tests through `cargo xtask test`")
            })
        };
        let mut prepared = prepared(&sh);
        let arm64 = model::arch::Arch::Arm64;
        prepared.add_arch(arm64, &var("UFFDC_SUITE_BIN_ARM64"), &var("UFFDC_GO_WORKLOAD_ARM64")).unwrap();
        let image = fleet_image(&sh, "debian-6.1-cloud-arm64");
        assert_eq!(image.arch, arm64);
        let dir = scratch("arm64-guest");
        let initrd = prepared.initrd_for(&image).unwrap();
        let bare = runner::run_guest(
            &image,
            &initrd,
            &settings(&["--power-off"], 120),
            &dir.join("bare"),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(bare.kernel.status, model::RunStatus::Complete, "{:?}", bare.kernel.reason);
        assert_eq!((bare.kernel.machine.as_str(), bare.kernel.arch), ("aarch64", Some(arm64)));
        // One filter a run: write-protect (none on 6.1 arm64: the arch row, from the kernel's own
        // configuration), fork (a raw clone there), a Go behaviour (the workload's own syscall number).
        for (filter, id, verdict) in [
            ("wp::toggle", "wp.toggle", Verdict::Unsupported),
            ("remove::fork", "remove.fork", Verdict::Expected),
            ("stw::go_gc_load", "stw.go_gc_load", Verdict::Expected),
        ] {
            let logs = dir.join(filter.replace("::", "-"));
            let run =
                runner::run_guest(&image, &initrd, &settings(&[filter], 240), &logs, &mut |_| {}).unwrap();
            assert_eq!(run.kernel.status, model::RunStatus::Complete, "{filter}: {:?}", run.kernel.reason);
            assert_eq!(run.cells.get(id).map(|c| c.verdict), Some(verdict), "{filter}: {:?}", run.cells);
            assert_eq!(run.kernel.config.as_ref().and_then(|c| c.arch()), Some(arm64));
        }
    }

    fn settings(args: &[&str], timeout: u64) -> Settings {
        Settings {
            timeout: Duration::from_secs(timeout),
            suite_args: args.iter().map(|a| a.to_string()).collect(),
            ..Settings::default()
        }
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn a_guest_that_never_starts_init_is_booted_again_then_reported_with_the_kernel_panic() {
        let sh = Shell::new().unwrap();
        let dir = scratch("no-init");
        let initrd = dir.join("broken.cpio");
        std::fs::write(
            &initrd,
            crate::boot::initramfs::for_suite(b"#! this is not an executable", &[], None),
        )
        .unwrap();
        let image = fleet_image(&sh, "debian-6.1-cloud");
        let mut retried = Vec::new();
        let r = runner::run_guest(&image, &initrd, &settings(&[], 60), &dir.join("logs"), &mut |e| {
            if let Event::Retrying { reason } = e {
                retried.push(reason.to_string());
            }
        })
        .unwrap();
        assert_eq!(r.kernel.status, model::RunStatus::Incomplete);
        let reason = r.kernel.reason.unwrap();
        assert!(reason.starts_with("kernel panic: No working init found"), "{reason}");
        assert!(r.cells.is_empty());
        // Every attempt died before the suite started: three boots, two kept as failed.
        assert_eq!(r.kernel.boot_attempts, Some(3));
        assert_eq!(r.kernel.failed_boots, retried);
        assert_eq!(retried.len(), 2);
        for line in &retried {
            assert!(
                line.starts_with("attempt ") && line.contains(": kernel panic: No working init found"),
                "{line}"
            );
            let kept = line.rsplit("(logs: ").next().unwrap().trim_end_matches(")").trim_end_matches('/');
            let console = crate::util::project_root().join(kept).join("console.log");
            assert!(std::fs::read_to_string(&console).unwrap().contains("No working init found"), "{line}");
        }
    }

    /// A guest whose kernel brings up fewer CPUs than QEMU gave it stops before any behaviour, with
    /// the cause: its cells would describe a smaller machine than its column says. (Provoked by
    /// asking the suite for more CPUs than the guest has; the real cause was a firmware table.)
    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn a_guest_with_fewer_cpus_online_than_given_stops_with_the_cause() {
        let sh = Shell::new().unwrap();
        let dir = scratch("fewer-cpus");
        let image = fleet_image(&sh, "debian-6.1-cloud");
        let initrd = prepared(&sh).initrd_for(&image).unwrap();
        let r = runner::run_guest(&image, &initrd, &settings(&["--cpus=3"], 60), &dir, &mut |_| {}).unwrap();
        assert_eq!(r.kernel.status, model::RunStatus::Incomplete);
        let reason = r.kernel.reason.unwrap();
        assert!(reason.contains("the kernel brought up 2 of the 3 CPUs"), "{reason}");
        assert!(r.cells.is_empty());
    }

    /// A stand-in for QEMU that fails the first boot as `first` says (`silent`: prints nothing
    /// and never exits; `dies`: exits at once), then runs the real QEMU. Only a boot (`-kernel`)
    /// fails: xtask's questions to QEMU (`--version`, `-L help` for its firmware) are answered.
    fn flaky_qemu(dir: &std::path::Path, first: &str) -> PathBuf {
        let script = dir.join("qemu");
        let marker = dir.join("first-boot-done");
        let fail = match first {
            "silent" => "exec sleep 600",
            _ => "exit 0",
        };
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncase \" $* \" in *\" -kernel \"*) if [ ! -e {m} ]; then touch {m}; {fail}; fi;; esac\nexec {q} \"$@\"\n",
                m = marker.display(),
                q = crate::inputs::packages::which(crate::boot::qemu::BINARY).unwrap().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        script
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn a_boot_that_stays_silent_or_dies_before_the_suite_starts_is_retried() {
        let sh = Shell::new().unwrap();
        let prepared = prepared(&sh);
        let image = fleet_image(&sh, "debian-6.1-cloud");
        // The real boot that follows must fit the boot timeout even on a loaded 2-CPU machine
        // running other tests' guests at once (5 s did not, once in a while): 20 s.
        for (first, why) in [("silent", "no start record within 20s"), ("dies", "the guest printed nothing")]
        {
            let dir = scratch(&format!("retry-{first}"));
            let run = Settings {
                qemu: flaky_qemu(&dir, first),
                boot_timeout: Duration::from_secs(20),
                ..settings(&["--exact", "api::features"], 120)
            };
            let started = std::time::Instant::now();
            let r =
                runner::run_guest(&image, &prepared.initrd, &run, &dir.join("logs"), &mut |_| {}).unwrap();
            assert_eq!(r.kernel.status, model::RunStatus::Complete, "{first}: {:?}", r.kernel.reason);
            // The injected failure, retried; a real boot after it that misses the deadline on a
            // loaded machine (seen at load 14: 3 boots) is retried too, and says so.
            let failed = &r.kernel.failed_boots;
            assert_eq!(r.kernel.boot_attempts, Some(failed.len() as u32 + 1), "{first}: {failed:?}");
            assert!(failed[0].starts_with(&format!("attempt 1: {why}")), "{failed:?}");
            assert!(
                failed[1..].iter().all(|f| f.contains("no start record within 20s")),
                "a later boot failed otherwise than by the load: {failed:?}"
            );
            assert_eq!(r.cells["api.features"].verdict, Verdict::Expected);
            assert!(started.elapsed() < Duration::from_secs(100), "the silent boot is cut at its deadline");
        }
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn a_guest_that_does_not_power_off_after_its_end_record_is_stopped_and_complete() {
        let sh = Shell::new().unwrap();
        let prepared = prepared(&sh);
        let image = fleet_image(&sh, "debian-6.1-cloud");
        let dir = scratch("no-power-off");
        let run = settings(&["--inject-fault=no-power-off", "--exact", "api::features"], 120);
        let r = runner::run_guest(&image, &prepared.initrd, &run, &dir.join("logs"), &mut |_| {}).unwrap();
        assert_eq!(r.kernel.status, model::RunStatus::Complete, "{:?}", r.kernel.reason);
        let took = Duration::from_millis(r.kernel.duration_ms.unwrap());
        assert!(took < Duration::from_secs(60), "stopped after the grace period, not the timeout: {took:?}");
        assert_eq!(r.cells["api.features"].verdict, Verdict::Expected);
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn a_results_stream_cut_mid_record_keeps_the_whole_records() {
        let sh = Shell::new().unwrap();
        let prepared = prepared(&sh);
        let dir = scratch("truncated");
        let image = fleet_image(&sh, "debian-6.1-cloud");
        let args = ["--inject-fault=truncate-after=2", "--test-threads=1"];
        let r = runner::run_guest(
            &image,
            &prepared.initrd,
            &settings(&args, 120),
            &dir.join("logs"),
            &mut |_| {},
        )
        .unwrap();
        let reason = r.kernel.reason.clone().unwrap();
        let all = prepared.catalogue.behaviours.len();
        assert!(
            reason.starts_with(&format!("the results stream was cut off mid-record (after 2 of {all}")),
            "{reason}"
        );
        assert_eq!(r.cells.values().filter(|c| c.verdict != Verdict::Missing).count(), 2);
        assert_eq!(r.cells.len(), all, "the planned behaviours without a result are missing");
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn missing_qemu_is_a_clear_error_and_loses_nothing() {
        let sh = Shell::new().unwrap();
        let mut opts = options("no-qemu", &["debian-6.1-cloud"]);
        opts.run.qemu = PathBuf::from("/nonexistent/qemu-system-x86_64");
        let before = opts.out.join("results/debian-6.1-cloud.toml");
        std::fs::create_dir_all(before.parent().unwrap()).unwrap();
        std::fs::write(&before, "kept").unwrap();
        let err = gather(&sh, &crate::util::project_root(), &opts, &prepared(&sh), &|_| {}).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("/nonexistent/qemu-system-x86_64 not found: install QEMU"), "{msg}");
        assert_eq!(std::fs::read_to_string(&before).unwrap(), "kept", "earlier results must survive");
    }

    /// A real kernel built without CONFIG_USERFAULTFD (from Debian's source, `cargo xtask images
    /// build`; cached after the first build): every behaviour finds userfaultfd missing, for that
    /// reason, graded by the row for its configuration.
    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn a_kernel_built_without_userfaultfd_finds_it_missing_in_every_behaviour() {
        let sh = Shell::new().unwrap();
        let id = "build-6.12-no-userfaultfd";
        let opts = options("no-userfaultfd-build", &[id]);
        gather(&sh, &crate::util::project_root(), &opts, &prepared(&sh), &|_| {}).unwrap();
        let compat = load_compat(&opts);
        let k = &compat.kernels[id];
        assert_eq!(k.status, model::RunStatus::Complete, "{:?}", k.reason);
        let build = k.build.as_ref().expect("a built column records its build");
        // Its write-protect PTE markers go with it (they depend on userfaultfd).
        assert_eq!(build.differs, ["CONFIG_PTE_MARKER_UFFD_WP=n", "CONFIG_USERFAULTFD=n"]);
        assert!(build.source.starts_with("linux-source-6.12 "), "{build:?}");
        assert!(build.config.iter().any(|l| l == "CONFIG_SMP=y") && build.config_sha256.len() == 64);
        // A kernel without ACPI finds its CPUs in the firmware's MP table: every one QEMU gave it
        // must be online (SeaBIOS listed only the first, and these columns ran on one CPU).
        assert_eq!(k.cpus, Some(opts.run.cpus), "the built kernel brought up every CPU");
        assert_eq!(
            k.config.as_ref().expect("its configuration is recorded").value("CONFIG_USERFAULTFD"),
            "n"
        );
        for (behaviour, b) in &compat.behaviours {
            let cell = &b.cells[id];
            assert_eq!(cell.verdict, Verdict::Unsupported, "{behaviour}: {cell:?}");
            assert!(
                cell.reason.as_deref().unwrap_or("").contains("built without CONFIG_USERFAULTFD"),
                "{behaviour}: {cell:?}"
            );
            assert!(
                cell.expected.as_deref().unwrap_or("").contains("CONFIG_USERFAULTFD!=y"),
                "{behaviour}: {cell:?}"
            );
        }
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn a_local_kernel_image_is_named_by_its_release_and_graded_by_its_config() {
        let sh = Shell::new().unwrap();
        let image = fleet_image(&sh, "debian-6.1-cloud");
        let (config, _) = image.config.clone().expect("the Debian package ships its config");
        let mut opts = options("local-image", &[]);
        opts.images = vec![(image.vmlinuz.clone(), None, Some(config.clone()))];
        opts.run.suite_args = vec!["--exact".into(), "api::features".into()];
        gather(&sh, &crate::util::project_root(), &opts, &prepared(&sh), &|_| {}).unwrap();
        let results: model::Results =
            model::data::load(&opts.out.join(format!("results/{}.toml", image.release))).unwrap();
        assert!(results.kernel.source.starts_with("local "), "{:?}", results.kernel.source);
        assert_eq!(results.cells["api.features"].verdict, Verdict::Expected);
        // The guest's suite read the configuration from its initramfs and recorded it.
        let recorded = results.kernel.config.expect("the configuration is recorded");
        assert_eq!(recorded.source, format!("--config {}", config.display()));
        assert_eq!(recorded.value("CONFIG_USERFAULTFD"), "y");

        let not_a_kernel = scratch("local-image-bad").join("vmlinuz");
        std::fs::write(&not_a_kernel, vec![0u8; 4096]).unwrap();
        let err = local_image(&not_a_kernel, None, None).unwrap_err().to_string();
        assert!(err.contains("not an x86 bzImage") && err.contains("nor an arm64 Image"), "{err}");
        // An arm64 Image is one of arm64 (its magic at 0x38).
        let mut arm = vec![0u8; 4096];
        arm[0x38..0x3c].copy_from_slice(b"ARM\x64");
        std::fs::write(&not_a_kernel, arm).unwrap();
        assert_eq!(local_image(&not_a_kernel, None, None).unwrap().arch, model::arch::Arch::Arm64);
        let err = local_image(&image.vmlinuz, None, Some(&not_a_kernel.with_file_name("nope"))).unwrap_err();
        assert!(err.to_string().contains("--config") && err.to_string().contains("no such file"), "{err}");
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn two_runs_fetching_at_once_share_one_verified_download() {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let fleet = Fleet::load(&root).unwrap();
        let real = Cache::new(&root);
        let (id, pin) = fleet.select(&["debian-7.2-cloud".into()]).unwrap().remove(0);
        let dir = scratch("shared-cache");
        let fetched: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let sh = Shell::new().unwrap();
                        let cache = Cache { dir: dir.clone() };
                        // The private apt (lists, .debs) is the real one; the image cache is fresh.
                        let mut apt = fleet.apt(&real, None);
                        cache.fetch(&sh, &id, &pin, &mut apt).map(|i| i.vmlinuz)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
        });
        assert_eq!(fetched[0], fetched[1]);
        assert!(Cache { dir: dir.clone() }.cached(&id, &pin).is_some(), "the shared entry verifies");

        // A download that does not match its pin is refused, named, and not cached.
        let wrong = crate::inputs::fleet::Pin { sha256: "0".repeat(64), ..pin.clone() };
        let other = scratch("wrong-sha");
        let err = Cache { dir: other.clone() }
            .fetch(&sh, &id, &wrong, &mut fleet.apt(&real, None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("has sha256") && err.contains("corrupt"), "{err}");
        assert!(Cache { dir: other.clone() }.cached(&id, &wrong).is_none());

        // A pin the archive no longer serves says how to move on.
        let gone = crate::inputs::fleet::Pin { version: "0.0.1-vanished".into(), ..pin.clone() };
        let err =
            Cache { dir: other }.fetch(&sh, &id, &gone, &mut fleet.apt(&real, None)).unwrap_err().to_string();
        assert!(err.contains("no longer serves") && err.contains("cargo xtask images refresh"), "{err}");
        let _ = sh;
    }

    fn matrix(args: &[&str]) -> anyhow::Result<Options> {
        let dashes = args.contains(&"--");
        let args = std::iter::once("matrix").chain(args.iter().copied()).map(Into::into).collect();
        match crate::flags::parse(args).map_err(|e| anyhow::anyhow!("{e}"))?.subcommand {
            crate::flags::XtaskCmd::Matrix(m) => super::options(&crate::util::project_root(), m, dashes),
            _ => unreachable!(),
        }
    }

    #[test]
    fn matrix_flags_are_read_and_their_ranges_checked() {
        let o =
            matrix(&["--kernel", "a", "--kernel=b", "--jobs", "3", "--repeat=10", "--", "--window-ms", "5"])
                .unwrap();
        assert_eq!(o.kernels, ["a", "b"]);
        assert_eq!(o.jobs, 3);
        assert_eq!(o.run.suite_args, ["--window-ms", "5", "--repeat=10"]);
        assert_eq!(o.run.timeout, Duration::from_secs(3000));
        let o = matrix(&["--kernel-image", "/k/bzImage=mine,config=/k/.config"]).unwrap();
        assert_eq!(o.images[0].1.as_deref(), Some("mine"));
        assert_eq!(o.images[0].2.as_deref(), Some(std::path::Path::new("/k/.config")));
        for (flag, value) in
            [("--jobs", "0"), ("--cpus", "0"), ("--memory", "64"), ("--repeat", "0"), ("--timeout", "1")]
        {
            let err = matrix(&[flag, value]).unwrap_err().to_string();
            assert!(
                err.contains(&format!("{flag} takes a whole number from")) && !err.contains('\n'),
                "{err}"
            );
        }
        assert!(matrix(&["--jobs", "many"]).is_err());
        assert!(matrix(&["--accel", "fast"]).unwrap_err().to_string().contains("auto, kvm, tcg or tcg-mt"));
        // A path that names nothing is refused before anything is built.
        let missing = matrix(&["--kernel-image", "/nonexistent/bzImage"]).unwrap();
        let e = super::check_paths(&missing).unwrap_err().to_string();
        assert!(e.starts_with("--kernel-image /nonexistent/bzImage: No such file"), "{e}");
        let dir = matrix(&["--kernel-image", "/tmp"]).unwrap();
        assert_eq!(super::check_paths(&dir).unwrap_err().to_string(), "--kernel-image /tmp: not a file");
        let exe = std::env::current_exe().unwrap();
        let config = format!("{}=mine,config=/nonexistent/.config", exe.display());
        let e = super::check_paths(&matrix(&["--kernel-image", &config]).unwrap()).unwrap_err().to_string();
        assert!(e.starts_with("--kernel-image ...,config= /nonexistent/.config: No such file"), "{e}");
        let e = matrix(&["--qemu", "/nonexistent/qemu"]).unwrap_err().to_string();
        assert!(e.starts_with("--qemu /nonexistent/qemu: No such file"), "{e}");
        assert!(super::check_paths(&matrix(&["--kernel-image", &exe.display().to_string()]).unwrap()).is_ok());
        // The binary cache is asked before a build compiles, unless told not to.
        assert!(matrix(&[]).unwrap().binary_cache);
        assert!(!matrix(&["--no-binary-cache"]).unwrap().binary_cache);
        // The host column stays local unless asked for.
        assert!(!matrix(&["--host"]).unwrap().publish_host);
        assert!(matrix(&["--host", "--publish-host"]).unwrap().publish_host);
        assert!(matrix(&["--publish-host"]).unwrap_err().to_string().contains("add --host"));
    }

    /// `--accel tcg-mt` is refused, in one line, with a QEMU before 10 or one that does not answer.
    #[test]
    fn tcg_mt_needs_qemu_10() {
        let qemu = |name: &str, version: &str| crate::boot::qemu::stand_in("tcg-mt", name, version, "x86_64");
        let (old, new) = (qemu("qemu-7.2", "7.2.22 (Debian)"), qemu("qemu-10", "10.0.2 (Debian)"));
        let silent = qemu("qemu-silent", "");
        let o = matrix(&["--accel", "tcg-mt", "--qemu", &new]).unwrap();
        assert_eq!(o.accel, Choice::TcgMulti);
        for q in [old.as_str(), silent.as_str()] {
            let err = matrix(&["--accel", "tcg-mt", "--qemu", q]).unwrap_err().to_string();
            assert!(err.starts_with("--accel tcg-mt needs QEMU 10 or later") && !err.contains('\n'), "{err}");
        }
        assert!(matrix(&["--accel", "tcg", "--qemu", &old]).is_ok());
    }

    /// `--qemu [ARCH=]PATH` sets the QEMU of one architecture's columns (without ARCH=, the one the
    /// binary says it emulates), once per architecture; a path that names nothing, a binary that
    /// is no QEMU, or one for another architecture is a one-line error naming the value.
    #[test]
    fn qemu_is_given_per_architecture() {
        let arm = crate::boot::qemu::stand_in("qemu-arch", "qemu-system-aarch64", "10.0.2", "aarch64");
        let x86 = crate::boot::qemu::stand_in("qemu-arch", "qemu-system-x86_64", "10.0.2", "x86_64");
        let riscv = crate::boot::qemu::stand_in("qemu-arch", "qemu-system-riscv64", "10.0.2", "riscv64");
        let mute = crate::boot::qemu::stand_in("qemu-arch", "not-a-qemu", "", "");
        let o = matrix(&["--qemu", &format!("arm64={arm}")]).unwrap();
        assert_eq!(
            (o.run.qemu_arm64.display().to_string(), o.run.qemu),
            (arm.clone(), Settings::default().qemu)
        );
        // Without ARCH=, the architecture the binary emulates; both at once, in either order.
        let o = matrix(&["--qemu", &arm, "--qemu", &x86]).unwrap();
        assert_eq!(o.run.qemu_for(Arch::Arm64).display().to_string(), arm);
        assert_eq!(o.run.qemu_for(Arch::X86_64).display().to_string(), x86);
        let o = matrix(&["--qemu", &format!("x86_64={x86}")]).unwrap();
        assert_eq!(
            (o.run.qemu.display().to_string(), o.run.qemu_arm64),
            (x86.clone(), Settings::default().qemu_arm64)
        );
        let err = |args: &[&str]| {
            let e = matrix(args).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{e}");
            e
        };
        let wrong = format!("x86_64={arm}");
        assert!(err(&["--qemu", &wrong])
            .starts_with(&format!("--qemu {wrong}: that QEMU emulates aarch64, not x86_64")));
        let e = err(&["--qemu", "arm64=/nonexistent/qemu-system-aarch64"]);
        assert!(e.starts_with("--qemu arm64=/nonexistent/qemu-system-aarch64: No such file"), "{e}");
        assert!(err(&["--qemu", "amd64=/usr/bin/qemu"])
            .contains("unknown architecture \"amd64\": use x86_64 or arm64"));
        assert!(
            err(&["--qemu", &riscv]).contains("it emulates riscv64, and the columns run on x86_64 and arm64")
        );
        assert!(
            err(&["--qemu", &mute]).ends_with("not a QEMU system emulator (no answer to QMP's query-target)")
        );
        assert!(err(&["--qemu", "arm64=no-such-qemu-on-path"]).ends_with(": not found"));
        assert!(err(&["--qemu", &arm, "--qemu", &format!("arm64={arm}")]).contains("was given already"));
        // The real ones, where installed, say what they emulate.
        for (arch, name) in [(Arch::X86_64, "qemu-system-x86_64"), (Arch::Arm64, "qemu-system-aarch64")] {
            if let Ok(o) = matrix(&["--qemu", name]) {
                assert_eq!(o.run.qemu_for(arch), std::path::PathBuf::from(name));
            }
        }
    }
}
