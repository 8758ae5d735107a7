//! The suite binary on the host kernel, end to end: real probes, real verdicts, and proof that
//! the grading can fail. Needs root (`cargo xtask test` runs these).

use model::{Catalogue, Results, Verdict};
use std::path::PathBuf;
use std::process::{Command, Output};

const SUITE: &str = env!("CARGO_BIN_EXE_suite");

/// The host's huge pages are one pool for every test here: a run that reserves some
/// (`--reserve-hugepages`) runs alone, so no other run's probes take them (or find them). A file
/// lock, not a `static`: the test command runs each test in a process of its own (cargo-nextest).
fn suite(args: &[&str]) -> Output {
    suite_with(args, &[])
}

/// [`suite`] with these environment variables set.
fn suite_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    use nix::fcntl::{Flock, FlockArg};
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("host-huge-pages.lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).unwrap();
    let how =
        if args.contains(&"--reserve-hugepages") { FlockArg::LockExclusive } else { FlockArg::LockShared };
    let _turn = Flock::lock(file, how).map_err(|(_, e)| e).expect("locking the host's huge pages");
    Command::new(SUITE).args(args).envs(env.iter().copied()).output().expect("running the suite")
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn catalogue() -> Catalogue {
    model::data::parse(&String::from_utf8(suite(&["--catalogue"]).stdout).unwrap()).unwrap()
}

fn run_with_results(name: &str, args: &[&str]) -> (Output, Results) {
    run_with_results_and(name, args, &[])
}

fn run_with_results_and(name: &str, args: &[&str], env: &[(&str, &str)]) -> (Output, Results) {
    let path = scratch(name).join("results.toml");
    let mut all = vec!["--results", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = suite_with(&all, env);
    let results = model::data::load(&path).unwrap_or_else(|e| {
        panic!(
            "{e}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, results)
}

#[test]
#[ignore = "needs root: run through `cargo xtask test`"]
fn every_behaviour_is_observed_and_graded_on_this_kernel() {
    let (out, results) = run_with_results("all", &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let catalogue = catalogue();
    assert_eq!(results.cells.keys().collect::<Vec<_>>(), catalogue.behaviours.keys().collect::<Vec<_>>());
    for (id, cell) in &results.cells {
        assert!(
            matches!(cell.verdict, Verdict::Expected | Verdict::Unsupported | Verdict::Skipped),
            "{id}: {cell:?}"
        );
        if cell.verdict == Verdict::Skipped {
            // Only for a stated prerequisite of this machine, never of the kernel.
            assert!(cell.reason.as_deref().is_some_and(|r| r.contains("host")), "{id}: {cell:?}");
        } else {
            assert!(!cell.observed.is_empty() && cell.expected.is_some(), "{id}: {cell:?}");
        }
    }
    assert_eq!(
        results.kernel.release,
        String::from_utf8(Command::new("uname").arg("-r").output().unwrap().stdout).unwrap().trim()
    );
}

#[test]
#[ignore = "needs root: run through `cargo xtask test`"]
fn every_behaviour_can_come_out_unexpected() {
    // Two ways for each behaviour: a wrong observation, and a prerequisite reported missing on
    // this kernel, which has them all (every expectation row that applies here says it works).
    for (id, behaviour) in catalogue().behaviours {
        let name = id.replacen('.', "::", 1);
        for (fault, mark) in [("--corrupt", "corrupted("), ("--inject-fault", "self-test")] {
            let spec = if fault == "--corrupt" { id.clone() } else { format!("unsupported={id}") };
            // Every behaviour observes something here: those that change a host setting may,
            // and huge pages are reserved for the run (as many as any probe declares).
            let (out, results) = run_with_results(
                &format!("fail-{id}"),
                &["--allow-sysctl-changes", "--reserve-hugepages", "4", fault, &spec, "--exact", &name],
            );
            let cell = &results.cells[&id];
            // `expected` reads `<kernels>: <expectation>`.
            let lacks = |e: &str| e.split_once(": ").is_some_and(|(_, e)| e.starts_with("unsupported:"));
            if fault == "--inject-fault" && cell.expected.as_deref().is_some_and(lacks) {
                // What this kernel lacks by its expectation (a huge page size of another
                // architecture: `*_64k` and `*_32m` on x86-64): a prerequisite reported missing is expected
                // here, and the corrupted observation above already came out unexpected.
                assert_eq!(cell.verdict, Verdict::Unsupported, "{id} {fault}: {cell:?}");
                continue;
            }
            assert!(!out.status.success(), "{id} {fault}: the run passed");
            assert_eq!(cell.verdict, Verdict::Unexpected, "{id} {fault} ({}): {cell:?}", behaviour.summary);
            assert!(cell.observed.starts_with(mark), "{id}: {cell:?}");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains(&format!("---- {name} ----")) && stdout.contains("unexpected:"),
                "{stdout}"
            );
        }
    }
}

#[test]
#[ignore = "needs root: run through `cargo xtask test`"]
fn a_hung_or_crashed_probe_is_an_outcome_and_the_suite_goes_on() {
    let (out, results) = run_with_results(
        "faults",
        &[
            "--inject-fault",
            "probe-hang=api.features",
            "--inject-fault",
            "probe-crash=api.user_mode_only",
            "--watchdog-s",
            "2",
            "api::",
        ],
    );
    assert!(!out.status.success());
    assert_eq!(results.cells["api.features"].verdict, Verdict::Hung);
    assert_eq!(results.cells["api.user_mode_only"].verdict, Verdict::Crashed);
    assert_eq!(results.cells["api.user_mode_only"].observed, "crashed: SIGSEGV");
    assert_eq!(results.cells["api.dev_userfaultfd"].verdict, Verdict::Expected);
    let api = catalogue().behaviours.values().filter(|b| b.family == "api").count();
    assert_eq!(results.cells.len(), api, "the filter `api::` selects the api family only");
    assert!(results.cells.keys().all(|id| id.starts_with("api.")));
}

#[test]
fn libtest_interface_is_intact() {
    let list = String::from_utf8(suite(&["--list"]).stdout).unwrap();
    let catalogue = catalogue();
    for (id, b) in &catalogue.behaviours {
        let line = format!("[{}] {}: test", b.family, id.replacen('.', "::", 1));
        assert!(list.lines().any(|l| l == line), "missing {line:?} in\n{list}");
    }
    assert_eq!(list.lines().filter(|l| l.ends_with(": test")).count(), catalogue.behaviours.len());
    let skipped = String::from_utf8(suite(&["--list", "--skip", "populate"]).stdout).unwrap();
    assert!(!skipped.contains("populate::") && skipped.contains("api::features"));
    let bad = suite(&["--window-ms", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--window-ms takes a whole number"));
}

#[test]
#[ignore = "needs root: run through `cargo xtask test`"]
fn json_format_reports_each_trial() {
    let out = suite(&["--format", "json", "--exact", "api::features"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines().any(|l| l.contains("\"name\": \"api::features\"") && l.contains("\"event\": \"ok\"")),
        "{text}"
    );
}

#[test]
#[ignore = "needs root: run through `cargo xtask test`"]
fn ten_runs_observe_the_same_values() {
    let (out, results) = run_with_results("repeat", &["--repeat", "10", "--reserve-hugepages", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(results.cells.len(), catalogue().behaviours.len());
    for (id, cell) in &results.cells {
        assert_ne!(cell.verdict, Verdict::Flaky, "{id}: {cell:?}");
        assert_eq!(cell.details.get("repeats").map(ToString::to_string).as_deref(), Some("10"), "{id}");
    }
}

#[test]
#[ignore = "needs root: run through `cargo xtask test`"]
fn repeats_that_disagree_make_a_flaky_cell() {
    let (out, results) =
        run_with_results("flaky", &["--repeat", "4", "--inject-fault", "flaky=api.features", "api::"]);
    assert!(!out.status.success(), "a flaky behaviour fails the run");
    let cell = &results.cells["api.features"];
    assert_eq!(cell.verdict, Verdict::Flaky, "{cell:?}");
    let seen = cell.details["observations"].to_string();
    assert!(seen.starts_with("2x ") && seen.contains("; 2x unexpected \"corrupted("), "{seen}");
    assert_eq!(results.cells["api.ioctls"].verdict, Verdict::Expected);
}

#[test]
#[ignore = "needs root: run through `cargo xtask test`"]
fn the_stress_checker_catches_a_stale_or_lost_page_and_a_stress_that_did_not_happen() {
    for (fault, observed) in [("serve-stale", "1 stale page"), ("serve-zero", "1 lost page")] {
        let (out, results) = run_with_results(
            fault,
            &["--inject-fault", &format!("{fault}=stw.parallel_stress"), "--exact", "stw::parallel_stress"],
        );
        assert!(!out.status.success(), "{fault}");
        let cell = &results.cells["stw.parallel_stress"];
        assert_eq!((cell.verdict, cell.observed.as_str()), (Verdict::Unexpected, observed), "{cell:?}");
    }
    let (_, results) = run_with_results(
        "no-race",
        &["--inject-fault", "no-race=stw.parallel_stress", "--exact", "stw::parallel_stress"],
    );
    let cell = &results.cells["stw.parallel_stress"];
    assert_eq!(cell.verdict, Verdict::Error, "{cell:?}");
    assert!(
        cell.reason.as_deref().unwrap().contains("fell short of its schedule: forced EAGAIN races"),
        "{cell:?}"
    );
}

/// The CRIU self-test: a page of the dump zeroed before `criu lazy-pages` serves it must come
/// back as wrong pages (in the restored process and in the child it forks), an unexpected cell.
#[test]
#[ignore = "needs root and Debian's CRIU beside the suite (UFFDC_CRIU_DIR): run through `cargo xtask test`"]
fn a_criu_restore_served_a_corrupted_page_comes_out_unexpected() {
    let id = "clients.criu_trixie_lazy_restore";
    let (out, results) = run_with_results(
        "criu-corrupt",
        &["--inject-fault", &format!("serve-zero={id}"), "--exact", "clients::criu_trixie_lazy_restore"],
    );
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let cell = &results.cells[id];
    assert_eq!(
        (cell.verdict, cell.observed.as_str()),
        (Verdict::Unexpected, "restores, 2 pages wrong"),
        "{cell:?}"
    );
}

/// Where a restore is a race (CRIU 4.1.1 on arm64), the probe restores one dump again after a
/// restore that completed: here, where a restore does not stall, every one of three restores of
/// the same dump must come back whole.
#[test]
#[ignore = "needs root and Debian's CRIU beside the suite (UFFDC_CRIU_DIR): run through `cargo xtask test`"]
fn one_dump_restored_three_times_comes_back_whole_each_time() {
    let id = "clients.criu_trixie_lazy_restore";
    let (out, results) = run_with_results_and(
        "criu-three-restores",
        &["--exact", "clients::criu_trixie_lazy_restore"],
        &[("UFFDC_CRIU_RESTORES", "3")],
    );
    let cell = &results.cells[id];
    assert!(out.status.success(), "{cell:?}");
    assert!(cell.observed.starts_with("restores, pages right"), "{cell:?}");
    assert_eq!(
        cell.details.get("restores").map(ToString::to_string).as_deref(),
        Some("3 of 3 restored whole"),
        "{cell:?}"
    );
}

fn knob() -> String {
    std::fs::read_to_string("/proc/sys/vm/unprivileged_userfaultfd").unwrap().trim().to_string()
}

#[test]
#[ignore = "needs root: run through `cargo xtask test`"]
fn a_host_run_leaves_its_security_settings_alone_or_puts_them_back() {
    let before = knob();
    // By default the suite does not touch them: the behaviours that must are skipped.
    let (_, results) = run_with_results("settings-default", &["api::"]);
    let cell = &results.cells["api.unprivileged"];
    assert_eq!(cell.verdict, Verdict::Skipped, "{cell:?}");
    assert!(cell.reason.as_deref().unwrap().contains("--allow-sysctl-changes"), "{cell:?}");
    assert_eq!(
        results.cells["api.fork_needs_ptrace"].verdict,
        Verdict::Expected,
        "needs no setting on 5.11+"
    );
    assert_eq!(knob(), before);
    // Asked to, it changes them; a probe killed by its watchdog right after a change (to the
    // value the default is not) leaves it changed, and the suite puts it back.
    let path = scratch("settings-killed").join("results.toml");
    let mut suite = Command::new(SUITE)
        .args(["--results", path.to_str().unwrap(), "--allow-sysctl-changes"])
        .args(["--inject-fault", "setting-hang=api.unprivileged", "--watchdog-s", "5"])
        .args(["--exact", "api::unprivileged"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let changed = if before == "0" { "1" } else { "0" };
    let start = std::time::Instant::now();
    while knob() != changed && start.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::yield_now();
    }
    assert_eq!(knob(), changed, "the probe changes the setting before it hangs");
    assert!(!suite.wait().unwrap().success());
    let results: Results = model::data::load(&path).unwrap();
    assert_eq!(results.cells["api.unprivileged"].verdict, Verdict::Hung);
    assert_eq!(knob(), before, "the setting must be as it was");
    // And a run that completes restores it itself.
    let (_, results) =
        run_with_results("settings-allowed", &["--allow-sysctl-changes", "--exact", "api::unprivileged"]);
    assert_eq!(results.cells["api.unprivileged"].verdict, Verdict::Expected);
    assert_eq!(results.cells["api.unprivileged"].details["default"].to_string(), before);
    assert_eq!(knob(), before);
}

#[test]
#[ignore = "needs root: run through `cargo xtask test`"]
fn userfaultfd_gone_from_a_kernel_built_with_it_is_a_regression() {
    // A seccomp filter makes userfaultfd(2) fail with ENOSYS, as on a kernel built without
    // CONFIG_USERFAULTFD; but this kernel's configuration says it has it: every cell is a finding,
    // and the run fails.
    let (out, results) = run_with_results("no-userfaultfd", &["--inject-fault", "no-userfaultfd"]);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let config = results.kernel.config.expect("this host's configuration is recorded");
    assert_eq!(config.value("CONFIG_USERFAULTFD"), "y", "{config:?}");
    assert_eq!(results.cells.len(), catalogue().behaviours.len());
    for (id, cell) in &results.cells {
        if cell.verdict == Verdict::Skipped {
            continue; // a gap of the machine comes first (a host setting, no huge pages)
        }
        // What this architecture never has (64 KiB and 32 MiB huge pages off arm64) is unsupported
        // by its own row, userfaultfd or not: those behaviours alone.
        if (id.ends_with("_64k") || id.ends_with("_32m")) && std::env::consts::ARCH != "aarch64" {
            assert_eq!(cell.verdict, Verdict::Unsupported, "{id}: {cell:?}");
            assert!(cell.expected.as_deref().is_some_and(|e| e.contains("arch!=arm64")), "{id}: {cell:?}");
            continue;
        }
        assert_eq!(cell.verdict, Verdict::Unexpected, "{id}: {cell:?}");
        let reason = cell.reason.as_deref().unwrap_or("");
        assert!(reason.contains("CONFIG_USERFAULTFD") && reason.contains("a regression"), "{id}: {reason}");
    }
}

#[test]
#[ignore = "needs root: run through `cargo xtask test`"]
fn the_stale_copy_race_catches_a_stale_page_and_a_race_that_did_not_run() {
    // On base pages, and on huge pages (4 reserved for the run).
    for (id, rounds) in [("remove.stale_copy_race", 64), ("remove.hugetlb_stale_copy_race", 4)] {
        let run = |fault: &str| {
            let (_, results) = run_with_results(
                &format!("{fault}-{id}"),
                &[
                    "--reserve-hugepages",
                    "4",
                    "--inject-fault",
                    &format!("{fault}={id}"),
                    "--exact",
                    &id.replacen('.', "::", 1),
                ],
            );
            results.cells[id].clone()
        };
        let stale = run("serve-stale");
        assert_eq!(stale.verdict, Verdict::Unexpected, "{id}: {stale:?}");
        assert!(stale.observed.starts_with("stale page seen"), "{id}: {stale:?}");
        let unraced = run("no-race");
        assert_eq!(unraced.verdict, Verdict::Error, "{id}: {unraced:?}");
        let why = unraced.reason.as_deref().unwrap();
        assert!(why.starts_with(&format!("the race fell short of its rounds: 0 of {rounds}")), "{id}: {why}");
    }
}

#[test]
#[ignore = "needs root and the Go workload: run through `cargo xtask test`"]
fn the_go_stress_checker_catches_a_stale_or_lost_page_and_a_stress_that_did_not_happen() {
    let id = "stw.go_stress_load";
    for (fault, observed) in [("serve-stale", "1 stale page"), ("serve-zero", "1 lost page")] {
        let (out, results) = run_with_results(
            &format!("go-{fault}"),
            &["--inject-fault", &format!("{fault}={id}"), "--exact", "stw::go_stress_load"],
        );
        assert!(!out.status.success(), "{fault}");
        let cell = &results.cells[id];
        assert_eq!((cell.verdict, cell.observed.as_str()), (Verdict::Unexpected, observed), "{cell:?}");
    }
    let (_, results) = run_with_results(
        "go-no-race",
        &["--inject-fault", &format!("no-race={id}"), "--exact", "stw::go_stress_load"],
    );
    let cell = &results.cells[id];
    assert_eq!(cell.verdict, Verdict::Error, "{cell:?}");
    assert!(cell.reason.as_deref().unwrap().contains("fell short of its schedule: forced races"), "{cell:?}");
}

#[test]
#[ignore = "needs root: run through `cargo xtask test`"]
fn without_the_go_workload_its_behaviours_are_skipped_and_say_why() {
    let path = scratch("no-go").join("results.toml");
    let out = Command::new(SUITE)
        .args(["--results", path.to_str().unwrap(), "stw::go_"])
        .env("UFFDC_GO_WORKLOAD", "/nonexistent/uffdc-go")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let results: Results = model::data::load(&path).unwrap();
    assert!(results.kernel.go.is_none(), "no Go release without the workload");
    assert!(!results.cells.is_empty());
    for (id, cell) in &results.cells {
        assert_eq!(cell.verdict, Verdict::Skipped, "{id}: {cell:?}");
        let why = cell.reason.as_deref().unwrap();
        assert!(why.contains("no Go workload") && why.contains("/nonexistent/uffdc-go"), "{id}: {why}");
    }
}

#[test]
#[ignore = "needs root and the Go workload: run through `cargo xtask test`"]
fn a_run_records_the_go_release_of_its_workload() {
    let (_, results) = run_with_results("go-release", &["--exact", "api::features"]);
    let go = results.kernel.go.expect("the run's metadata names the Go release");
    assert!(go.starts_with("go1."), "{go}");
}
