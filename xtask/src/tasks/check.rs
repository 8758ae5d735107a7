//! `cargo xtask check PROFILE... [--host] [--kernel ID]... [--matrix FILE]`: whether kernels give
//! what a piece of software needs. Each profile (`profiles/<name>.toml`, see `model::profile`) is
//! checked on every kernel column of the matrix (or each `--kernel`), or, with `--host`, on the
//! running kernel: only the behaviours the profiles need are run, directly (no QEMU), and the
//! suite is not allowed to change any setting of the host, so what would need it is `skipped` and
//! reported as not checked.
//!
//! Exit status: 0 every kernel asked about satisfies every profile; 1 some kernel violates some
//! profile; 2 the check could not be made (a malformed profile, no matrix); 3 nothing was violated
//! but some need could not be checked.

use crate::boot::qemu::Settings;
use crate::inputs::profiles::{all, load};
use anyhow::{bail, Result};
use model::columns::version_label;
use model::profile::{Outcome, Profile, Status};
use model::{Cell, Compat, RunInfo};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use xshell::Shell;

pub const SATISFIED: i32 = 0;
pub const VIOLATED: i32 = 1;
pub const FAILED: i32 = 2;
pub const NOT_CHECKED: i32 = 3;

/// What `cargo xtask check` was asked.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub profiles: Vec<String>,
    pub host: bool,
    pub kernels: Vec<String>,
    pub matrix: Option<PathBuf>,
    /// The suite binary for `--host` (default: build it); the tests pass the one they built.
    pub suite: Option<PathBuf>,
}

impl From<crate::flags::Check> for Options {
    fn from(c: crate::flags::Check) -> Options {
        Options { profiles: c.profiles, host: c.host, kernels: c.kernel, matrix: c.matrix, suite: None }
    }
}

/// One kernel to check: its column id, how it was produced, its cells.
pub struct Column<'a> {
    pub id: String,
    pub info: &'a RunInfo,
    pub cells: BTreeMap<&'a str, &'a Cell>,
}

/// `cargo xtask check`: prints the verdicts and returns the exit status.
pub fn main(sh: &Shell, root: &Path, opts: &Options) -> i32 {
    match run(sh, root, opts) {
        Ok((text, status)) => {
            print!("{text}");
            status
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            FAILED
        }
    }
}

/// The verdicts as text, and the exit status.
pub fn run(sh: &Shell, root: &Path, opts: &Options) -> Result<(String, i32)> {
    if opts.profiles.is_empty() {
        let names: Vec<String> = all(root)?.into_iter().map(|p| p.name).collect();
        bail!("name at least one profile (a file, or one of: {})", names.join(", "));
    }
    let profiles: Vec<Profile> = opts.profiles.iter().map(|p| load(root, p)).collect::<Result<_>>()?;
    let mut out = String::new();
    let compat: Option<Compat> = if !opts.host || !opts.kernels.is_empty() {
        let path = opts.matrix.clone().unwrap_or_else(|| root.join("matrix/compat.toml"));
        let compat: Compat = model::data::load(&path)?;
        for p in &profiles {
            p.check_ids(|id| compat.behaviours.contains_key(id), &crate::util::display_path(&path))
                .map_err(anyhow::Error::msg)?;
        }
        for p in &profiles {
            for warning in stale(p, &compat.behaviours) {
                eprintln!("warning: {warning}");
            }
        }
        let _ =
            writeln!(out, "against {} (matrix of {})", crate::util::display_path(&path), compat.generated);
        Some(compat)
    } else {
        None
    };
    let mut columns = Vec::new();
    if let Some(compat) = &compat {
        columns = matrix_columns(compat, &opts.kernels)?;
    }
    let host = if opts.host { Some(run_host(sh, root, &profiles, opts.suite.clone())?) } else { None };
    if let Some((results, note)) = &host {
        let _ = writeln!(out, "{note}");
        columns.push(Column {
            id: crate::boot::pipeline::HOST_ID.to_string(),
            info: &results.kernel,
            cells: results.cells.iter().map(|(k, c)| (k.as_str(), c)).collect(),
        });
    }
    let (text, status) = verdicts(&profiles, &columns);
    out += &text;
    Ok((out, status))
}

/// The matrix's columns asked about (all of them without `--kernel`), in version order.
fn matrix_columns<'a>(compat: &'a Compat, kernels: &[String]) -> Result<Vec<Column<'a>>> {
    for k in kernels {
        if !compat.kernels.contains_key(k) {
            bail!(
                "--kernel {k}: the matrix has no such kernel; it has {}",
                compat.kernels.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(model::columns::by_version(&compat.kernels)
        .into_iter()
        .filter(|k| kernels.is_empty() || kernels.iter().any(|x| x == k))
        .map(|k| Column {
            id: k.to_string(),
            info: &compat.kernels[k],
            cells: compat
                .behaviours
                .iter()
                .filter_map(|(id, b)| b.cells.get(k).map(|c| (id.as_str(), c)))
                .collect(),
        })
        .collect())
}

/// The suite's arguments for a host check: only `needed` runs (libtest's exact skips of every
/// other behaviour of `all`), and nothing that changes the host (`--allow-sysctl-changes`,
/// `--reserve-hugepages` are never passed).
pub fn host_args<'a>(all: impl IntoIterator<Item = &'a str>, needed: &BTreeSet<&str>) -> Vec<String> {
    let mut args = vec!["--exact".to_string()];
    for id in all.into_iter().filter(|id| !needed.contains(id)) {
        // The suite's trial name: the id with `::` after the family (`populate::read_missing`).
        args.extend(["--skip".to_string(), id.replacen('.', "::", 1)]);
    }
    args
}

/// Runs the needed behaviours on the running kernel; returns its results and a line saying how.
fn run_host(
    sh: &Shell,
    root: &Path,
    profiles: &[Profile],
    suite: Option<PathBuf>,
) -> Result<(model::Results, String)> {
    let suite = match suite {
        Some(s) => s,
        None => {
            crate::inputs::packages::ensure(sh, &[crate::inputs::packages::Need::Libclang])?;
            crate::boot::suite_bin::build(sh, root)?
        }
    };
    let catalogue = crate::boot::suite_bin::catalogue(sh, &suite)?;
    for p in profiles {
        p.check_ids(|id| catalogue.behaviours.contains_key(id), "this suite build")
            .map_err(anyhow::Error::msg)?;
    }
    for p in profiles {
        for warning in stale(p, &catalogue.behaviours) {
            eprintln!("warning: {warning}");
        }
    }
    let needed: BTreeSet<&str> = profiles.iter().flat_map(Profile::behaviours).collect();
    let settings = Settings {
        suite_args: host_args(catalogue.behaviours.keys().map(String::as_str), &needed),
        ..Settings::default()
    };
    let logs = root.join("target/uffdc/check/host");
    if !crate::inputs::packages::is_root() {
        eprintln!("note: not root: behaviours whose probes need root will not be checked (run as root)");
    }
    eprintln!(
        "check: running {} behaviour(s) on this kernel (no QEMU, no host setting changed)",
        needed.len()
    );
    let results = crate::boot::runner::run_host(&suite, &settings, &logs, &mut |_| {})?;
    let ran: BTreeSet<&str> = results.cells.keys().map(String::as_str).collect();
    if let Some(extra) = ran.iter().find(|id| !needed.contains(*id)) {
        bail!("the suite ran {extra}, which no profile needs: its filters did not select what was asked");
    }
    let note = format!(
        "on this host's running kernel {} ({}): {} behaviour(s) run directly, no QEMU, no host setting changed{}; logs in {}/",
        results.kernel.release,
        results.kernel.version,
        ran.len(),
        match &results.kernel.reason {
            Some(r) => format!("; the run is incomplete: {r}"),
            None => String::new(),
        },
        crate::util::display_path(&logs)
    );
    Ok((results, note))
}

/// The needs that look stale: they accept only exact values, none of which any kernel observed or
/// the behaviour's expectation table names (the suite may word the observation differently now).
pub fn stale(profile: &Profile, behaviours: &BTreeMap<String, model::Behaviour>) -> Vec<String> {
    use model::expect::Expect;
    let values = |e: Expect| match e {
        Expect::Is(v) => vec![v],
        Expect::OneOf(vs) => vs,
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for need in &profile.needs {
        let (Some(b), Ok(expect)) = (behaviours.get(&need.behaviour), Expect::parse(&need.expect)) else {
            continue;
        };
        let accepted = values(expect.clone());
        let named: Vec<String> =
            b.expectation.iter().filter_map(|r| r.parsed().ok()).flat_map(values).collect();
        if accepted.is_empty() || named.is_empty() {
            continue;
        }
        let observed = b.cells.values().any(|c| expect.matches(&c.observed));
        if !observed && !accepted.iter().any(|v| named.contains(v)) {
            out.push(format!(
                "{}:{}: {} needs `{}`, which no kernel observed and its expectation table never names: the suite may word it differently now (`cargo xtask explain {}`)",
                profile.path, need.line, need.behaviour, need.expect, need.behaviour
            ));
        }
    }
    out
}

/// Every profile on every column: the text and the exit status.
pub fn verdicts(profiles: &[Profile], columns: &[Column<'_>]) -> (String, i32) {
    let mut out = String::new();
    let mut tally: BTreeMap<Outcome, usize> = BTreeMap::new();
    let width = columns.iter().map(|c| c.id.len()).max().unwrap_or(0);
    for p in profiles {
        let _ = writeln!(out, "\n{}: {}\n  ({}, {} needs)", p.name, p.summary, p.path, p.needs.len());
        for c in columns {
            let check = p.check(|id| c.cells.get(id).copied());
            *tally.entry(check.outcome).or_default() += 1;
            let _ = writeln!(out, "  {:<width$}  {:<12} {}", c.id, version_label(c.info), check.outcome);
            for n in check.needs.iter().filter(|n| n.status != Status::Met) {
                let what = match n.status {
                    Status::Violated => format!("observed `{}`", n.observed),
                    _ => "not checked".to_string(),
                };
                let reason = n.reason.as_deref().map_or(String::new(), |r| format!(" ({r})"));
                let _ =
                    writeln!(out, "      {}: {what}{reason}; needs `{}`", n.need.behaviour, n.need.expect);
                let _ = writeln!(out, "        because {}", n.need.why);
            }
        }
    }
    let count = |o| tally.get(&o).copied().unwrap_or(0);
    let (violated, unchecked) = (count(Outcome::Violates), count(Outcome::NotChecked));
    let status = if violated > 0 {
        VIOLATED
    } else if unchecked > 0 {
        NOT_CHECKED
    } else {
        SATISFIED
    };
    let _ = writeln!(
        out,
        "\n{} profile(s) on {} kernel(s): {} satisfied, {violated} violated, {unchecked} not checked: exit status {status} ({})",
        profiles.len(),
        columns.len(),
        count(Outcome::Satisfies),
        match status {
            SATISFIED => "every kernel satisfies every profile",
            VIOLATED => "some kernel violates a profile",
            _ => "nothing violated, but some needs were not checked",
        }
    );
    (out, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(profiles: &[&str], kernels: &[&str]) -> Options {
        let root = crate::util::project_root();
        Options {
            profiles: profiles
                .iter()
                .map(|p| root.join("xtask/testdata/profiles").join(p).display().to_string())
                .collect(),
            kernels: kernels.iter().map(|k| k.to_string()).collect(),
            matrix: Some(root.join("xtask/testdata/compat.toml")),
            ..Options::default()
        }
    }

    fn check(profiles: &[&str], kernels: &[&str]) -> (String, i32) {
        let sh = Shell::new().unwrap();
        run(&sh, &crate::util::project_root(), &options(profiles, kernels)).unwrap()
    }

    #[test]
    fn a_profile_that_needs_what_a_kernel_lacks_is_violated() {
        let (text, status) = check(&["page-server.toml"], &[]);
        assert_eq!(status, VIOLATED, "{text}");
        // 5.10 lacks MADV_POPULATE_*: the violated need, what was observed and what was needed.
        let line = text.lines().find(|l| l.trim_start().starts_with("debian-5.10-cloud")).unwrap();
        assert!(line.ends_with("violates"), "{line}");
        assert!(
            text.contains(
                "populate.read_missing: observed `EINVAL` (unsupported: madvise(MADV_POPULATE_READ)"
            ) && text.contains("; needs `fault read`\n        because pre-faults with MADV_POPULATE_READ\n"),
            "{text}"
        );
        let (text, status) = check(&["page-server.toml"], &["debian-6.1-cloud"]);
        assert_eq!(status, SATISFIED, "{text}");
        assert!(!text.contains("debian-5.10-cloud"), "{text}");
    }

    #[test]
    fn what_could_not_be_checked_has_its_own_status() {
        // The fixture's host column: its api.features cell is missing, its hugetlb cell skipped.
        let (text, status) = check(&["hugetlb-user.toml"], &["host"]);
        assert_eq!(status, NOT_CHECKED, "{text}");
        assert!(text.contains("populate.hugetlb_missing: not checked (skipped: no free huge page"), "{text}");
        // A violation elsewhere wins.
        assert_eq!(check(&["hugetlb-user.toml", "page-server.toml"], &[]).1, VIOLATED);
    }

    #[test]
    fn malformed_profiles_and_unknown_ids_are_one_line_errors_with_file_and_line() {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let err = run(&sh, &root, &options(&["unknown-behaviour.toml"], &[])).unwrap_err().to_string();
        assert!(
            err.starts_with("xtask/testdata/profiles/unknown-behaviour.toml:9: unknown behaviour id \"populate.read_mising\""),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
        let err = run(&sh, &root, &options(&["page-server.toml"], &["debian-9"])).unwrap_err().to_string();
        assert!(err.contains("--kernel debian-9: the matrix has no such kernel"), "{err}");
        let err = load(&root, "no-such-profile").unwrap_err().to_string();
        assert!(err.contains("the profiles are: ") && err.contains("snapshot-page-server"), "{err}");
    }

    /// The shipped profiles are well-formed (the ids they name are checked against the suite's
    /// catalogue by `check --host`, and by the test below).
    #[test]
    fn the_shipped_profiles_parse() {
        let profiles = all(&crate::util::project_root()).unwrap();
        assert!(profiles.len() >= 3, "{profiles:?}");
    }

    #[test]
    #[ignore = "needs the built suite: run through `cargo xtask test`"]
    fn the_shipped_profiles_name_behaviours_the_suite_declares() {
        let sh = Shell::new().unwrap();
        let suite = std::env::var_os("UFFDC_SUITE_BIN").expect("run through `cargo xtask test`");
        let catalogue = crate::boot::suite_bin::catalogue(&sh, Path::new(&suite)).unwrap();
        for p in all(&crate::util::project_root()).unwrap() {
            p.check_ids(|id| catalogue.behaviours.contains_key(id), "the suite").unwrap();
        }
    }

    #[test]
    fn needs_the_suite_no_longer_words_so_are_flagged() {
        let root = crate::util::project_root();
        let compat = crate::util::fixture();
        let path = root.join("xtask/testdata/profiles/page-server.toml");
        let ok = load(&root, &path.display().to_string()).unwrap();
        assert!(stale(&ok, &compat.behaviours).is_empty());
        let text =
            std::fs::read_to_string(&path).unwrap().replace("\"fault read\"", "\"fault read, then ok\"");
        let old = Profile::parse("old", "old.toml", &text).unwrap();
        let warnings = stale(&old, &compat.behaviours);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("old.toml:5: populate.read_missing needs `fault read, then ok`"),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_host_check_runs_only_what_is_needed_and_changes_nothing() {
        let needed: BTreeSet<&str> = ["populate.read_missing"].into();
        let args = host_args(["api.features", "populate.read_missing", "api.unprivileged"], &needed);
        assert_eq!(args, ["--exact", "--skip", "api::features", "--skip", "api::unprivileged"]);
        assert!(!args.iter().any(|a| a.contains("allow-sysctl") || a.contains("hugepages")));
    }

    /// `check --host` on this machine: only the needed behaviours run, a behaviour that must change
    /// a host setting is not checked (exit status 3), and the setting is left as it was.
    #[test]
    #[ignore = "needs root and the built suite: run through `cargo xtask test`"]
    fn check_host_on_this_kernel() {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let knob = "/proc/sys/vm/unprivileged_userfaultfd";
        let before = std::fs::read_to_string(knob).ok();
        let mut opts = options(&["host-gate.toml"], &[]);
        opts.host = true;
        opts.matrix = None;
        opts.suite =
            Some(std::env::var_os("UFFDC_SUITE_BIN").expect("run through `cargo xtask test`").into());
        let (text, status) = run(&sh, &root, &opts).unwrap();
        assert_eq!(std::fs::read_to_string(knob).ok(), before, "the host's setting was changed");
        assert_eq!(status, NOT_CHECKED, "{text}");
        assert!(text.contains("api.unprivileged: not checked (skipped: "), "{text}");
        assert!(text.contains(": 2 behaviour(s) run directly, no QEMU"), "only what is needed ran: {text}");
        assert!(!text.contains("populate.read_missing:"), "met, so not listed: {text}");
    }
}
