//! The suite binary on the host kernel, end to end: real probes, real verdicts, and proof that
//! the grading can fail. Needs root (`cargo xtask test` runs these).

use matrix::{Catalogue, Results, Verdict};
use std::path::PathBuf;
use std::process::{Command, Output};

const SUITE: &str = env!("CARGO_BIN_EXE_suite");

fn suite(args: &[&str]) -> Output {
    Command::new(SUITE).args(args).output().expect("running the suite")
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn catalogue() -> Catalogue {
    matrix::model::parse(&String::from_utf8(suite(&["--catalogue"]).stdout).unwrap()).unwrap()
}

fn run_with_results(name: &str, args: &[&str]) -> (Output, Results) {
    let path = scratch(name).join("results.toml");
    let mut all = vec!["--results", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = suite(&all);
    let results = matrix::model::load(&path).unwrap_or_else(|e| {
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
        assert!(matches!(cell.verdict, Verdict::Expected | Verdict::Unsupported), "{id}: {cell:?}");
        assert!(!cell.observed.is_empty() && cell.expected.is_some(), "{id}: {cell:?}");
    }
    assert_eq!(
        results.kernel.release,
        String::from_utf8(Command::new("uname").arg("-r").output().unwrap().stdout).unwrap().trim()
    );
}

#[test]
#[ignore = "needs root: run through `cargo xtask test`"]
fn a_corrupted_observation_of_any_behaviour_fails_the_run() {
    for (id, behaviour) in catalogue().behaviours {
        let name = id.replacen('.', "::", 1);
        let (out, results) =
            run_with_results(&format!("corrupt-{id}"), &["--corrupt", &id, "--exact", &name]);
        assert!(!out.status.success(), "{id}: a corrupted observation passed");
        let cell = &results.cells[&id];
        assert_eq!(cell.verdict, Verdict::Unexpected, "{id} ({}): {cell:?}", behaviour.summary);
        assert!(cell.observed.starts_with("corrupted("), "{id}: {cell:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("---- {name} ----")) && stdout.contains("unexpected: observed"),
            "{stdout}"
        );
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
    let observed = |run: usize| -> Vec<(String, String)> {
        let (_, results) = run_with_results(&format!("repeat-{run}"), &[]);
        results.cells.into_iter().map(|(id, cell)| (id, cell.observed)).collect()
    };
    let first = observed(0);
    assert_eq!(first.len(), catalogue().behaviours.len());
    for run in 1..10 {
        let again = observed(run);
        let differ: Vec<_> = first.iter().zip(&again).filter(|(a, b)| a != b).collect();
        assert!(differ.is_empty(), "run {run} observed differently: {differ:?}");
    }
}

#[test]
#[ignore = "needs root: run through `cargo xtask test`"]
fn without_userfaultfd_every_behaviour_is_unsupported_not_failed() {
    // A seccomp filter makes userfaultfd(2) fail with ENOSYS, as on a kernel built without
    // CONFIG_USERFAULTFD: the run completes and says so in every cell.
    let (out, results) = run_with_results("no-userfaultfd", &["--inject-fault", "no-userfaultfd"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(results.cells.len(), catalogue().behaviours.len());
    for (id, cell) in &results.cells {
        assert_eq!(cell.verdict, Verdict::Unsupported, "{id}: {cell:?}");
        let reason = cell.reason.as_deref().unwrap_or("");
        assert!(reason.contains("CONFIG_USERFAULTFD") || reason.contains("huge page"), "{id}: {reason}");
    }
}
