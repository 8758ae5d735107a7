//! `cargo xtask check PROFILE... [--host] [--kernel ID]... [--matrix FILE]`: whether kernels give
//! what a piece of software needs. Each profile (`profiles/<name>.toml`, see `model::profile`) is
//! checked on every kernel column of the matrix (or each `--kernel`), or, with `--host`, on the
//! running kernel: only the behaviours the profiles need are run, directly (no QEMU), and the
//! suite is not allowed to change any setting of the host, so what would need it is `skipped` and
//! reported as not checked.
//!
//! A `--kernel` that names no column but a version (`6.6`, `5.15.170`) is answered from the
//! expectation tables, labelled documented; so is the host's kernel when no column runs its point
//! release. `--json` prints the answer as `docs/check.schema.json` describes it (`model::check`).
//!
//! Exit status: 0 every kernel asked about satisfies every profile; 1 some kernel violates some
//! profile; 2 the check could not be made (a malformed profile, an `expect` value the behaviour
//! never takes, no matrix); 3 nothing was violated but some need could not be checked.

use crate::boot::qemu::Settings;
use crate::inputs::profiles::{all, load};
use anyhow::{bail, Result};
use model::arch::Arch;
use model::check::{Column, FAILED};
use model::profile::Profile;
use model::Compat;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use xshell::Shell;

/// What `cargo xtask check` was asked.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub profiles: Vec<String>,
    pub host: bool,
    pub kernels: Vec<String>,
    /// The architecture a `--kernel` version is answered for (default: this machine's).
    pub arch: Option<String>,
    pub matrix: Option<PathBuf>,
    /// The suite binary for `--host` (default: build it); the tests pass the one they built.
    pub suite: Option<PathBuf>,
    /// Print `docs/check.schema.json`'s JSON instead of text.
    pub json: bool,
}

impl From<crate::flags::Check> for Options {
    fn from(c: crate::flags::Check) -> Options {
        Options {
            profiles: c.profiles,
            host: c.host,
            kernels: c.kernel,
            arch: c.arch,
            matrix: c.matrix,
            suite: None,
            json: c.json,
        }
    }
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

/// The verdicts as text (or JSON, with `--json`), and the exit status.
pub fn run(sh: &Shell, root: &Path, opts: &Options) -> Result<(String, i32)> {
    if opts.profiles.is_empty() {
        let names: Vec<String> = all(root)?.into_iter().map(|p| p.name).collect();
        bail!("name at least one profile (a file, or one of: {})", names.join(", "));
    }
    let profiles: Vec<Profile> = opts.profiles.iter().map(|p| load(root, p)).collect::<Result<_>>()?;
    let arch = match &opts.arch {
        Some(a) => a.parse::<Arch>().map_err(|e| anyhow::anyhow!("--arch {a}: {e}"))?,
        None => Arch::native(),
    };
    let mut out = String::new();
    let path = opts.matrix.clone().unwrap_or_else(|| root.join("matrix/compat.toml"));
    // With --host alone the matrix is optional: it names the host's nearest column.
    let needs_matrix = !opts.host || !opts.kernels.is_empty() || opts.matrix.is_some();
    let compat: Option<Compat> =
        if needs_matrix || path.exists() { Some(model::data::load(&path)?) } else { None };
    if let Some(compat) = &compat {
        validate(&profiles, &compat.behaviours, &crate::util::display_path(&path))?;
        let _ =
            writeln!(out, "against {} (matrix of {})", crate::util::display_path(&path), compat.generated);
    }
    let mut columns = Vec::new();
    if let Some(compat) = &compat {
        if !opts.host || !opts.kernels.is_empty() {
            columns = matrix_columns(compat, &opts.kernels, arch)?;
        }
    }
    let host = if opts.host { Some(run_host(sh, root, &profiles, opts.suite.clone())?) } else { None };
    let mut host_place = None;
    if let Some((results, catalogue, note)) = &host {
        if compat.is_none() {
            validate(&profiles, &catalogue.behaviours, "this suite build")?;
        }
        let _ = writeln!(out, "{note}");
        columns.push(Column::observed(
            crate::boot::pipeline::HOST_ID,
            &results.kernel,
            results.cells.iter().map(|(k, c)| (k.as_str(), c)).collect(),
        ));
        let version = results.kernel.kernel_version();
        let host_arch = results.kernel.arch.unwrap_or(Arch::native());
        let place = model::check::Host {
            release: results.kernel.release.clone(),
            version,
            nearest: compat.as_ref().zip(version).and_then(|(c, v)| {
                model::check::nearest(&c.kernels, v, host_arch)
                    .map(|(id, same)| (id.to_string(), model::columns::version_label(&c.kernels[id]), same))
            }),
        };
        let _ = writeln!(out, "{}", place.describe());
        if let (Some(v), false) = (version, place.nearest.as_ref().is_some_and(|n| n.2)) {
            // Informational beside what the host observed: it does not decide the exit status.
            let mut documented = Column::documented("host (documented)", v, host_arch);
            documented.counts = false;
            columns.push(documented);
        }
        host_place = Some(place);
    }
    let behaviours = match (&compat, &host) {
        (Some(c), _) => &c.behaviours,
        (None, Some((_, catalogue, _))) => &catalogue.behaviours,
        (None, None) => unreachable!("a matrix is read unless --host"),
    };
    let checked = model::check::check(&profiles, &columns, behaviours);
    if opts.json {
        let matrix = compat.as_ref().map(|c| (crate::util::display_path(&path), c.generated.clone()));
        let value = checked.json(
            &columns,
            matrix.as_ref().map(|(p, g)| (p.as_str(), g.as_str())),
            host_place.as_ref(),
        );
        return Ok((format!("{}\n", serde_json::to_string_pretty(&value)?), checked.status));
    }
    out += &checked.text(&columns);
    Ok((out, checked.status))
}

/// Every need names a behaviour `behaviours` has, and a value it takes; one-line errors with the
/// file, the line and the closest ids or values.
fn validate(
    profiles: &[Profile],
    behaviours: &std::collections::BTreeMap<String, model::Behaviour>,
    against: &str,
) -> Result<()> {
    let ids: Vec<&str> = behaviours.keys().map(String::as_str).collect();
    for p in profiles {
        p.check_ids(&ids, against).map_err(anyhow::Error::msg)?;
        p.check_values(behaviours).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// The matrix's columns asked about (all of them without `--kernel`), in version order; a
/// `--kernel` that is a version but no column is answered from the expectation tables.
fn matrix_columns<'a>(compat: &'a Compat, kernels: &[String], arch: Arch) -> Result<Vec<Column<'a>>> {
    let mut documented = Vec::new();
    for k in kernels {
        if compat.kernels.contains_key(k) {
            continue;
        }
        match k.parse::<model::version::KernelVersion>() {
            Ok(v) => documented.push(Column::documented(k, v, arch)),
            Err(_) => bail!(
                "--kernel {k}: the matrix has no such kernel{} and it is not a kernel version (`6.6`, `5.15.170`); it has {}",
                model::suggest::did_you_mean(k, compat.kernels.keys().map(String::as_str)),
                compat.kernels.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }
    let mut columns: Vec<Column<'a>> = model::columns::by_version(&compat.kernels)
        .into_iter()
        .filter(|k| kernels.is_empty() || kernels.iter().any(|x| x == k))
        .map(|k| {
            Column::observed(
                k,
                &compat.kernels[k],
                compat
                    .behaviours
                    .iter()
                    .filter_map(|(id, b)| b.cells.get(k).map(|c| (id.as_str(), c)))
                    .collect(),
            )
        })
        .collect();
    columns.extend(documented);
    Ok(columns)
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
) -> Result<(model::Results, model::Catalogue, String)> {
    let suite = match suite {
        Some(s) => s,
        None => {
            crate::inputs::packages::ensure(sh, &[crate::inputs::packages::Need::Libclang])?;
            crate::boot::suite_bin::build(sh, root)?
        }
    };
    let catalogue = crate::boot::suite_bin::catalogue(sh, &suite)?;
    let ids: Vec<&str> = catalogue.behaviours.keys().map(String::as_str).collect();
    for p in profiles {
        p.check_ids(&ids, "this suite build").map_err(anyhow::Error::msg)?;
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
    Ok((results, catalogue, note))
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::check::{NOT_CHECKED, SATISFIED, VIOLATED};

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
        let ids: Vec<&str> = catalogue.behaviours.keys().map(String::as_str).collect();
        for p in all(&crate::util::project_root()).unwrap() {
            p.check_ids(&ids, "the suite").unwrap();
        }
    }

    /// A value the behaviour never takes is the profile's error, not every kernel's violation:
    /// exit status 2, one line naming the file, the line of `expect`, the value and the closest.
    #[test]
    fn a_typo_in_an_expected_value_is_a_profile_error() {
        let root = crate::util::project_root();
        let sh = Shell::new().unwrap();
        let opts = options(&["typo.toml"], &[]);
        let err = format!("{:#}", run(&sh, &root, &opts).unwrap_err());
        assert!(
            err.ends_with("typo.toml:7: populate.read_missing never takes the value \"fault reed\": no row of its expectation table names it and no kernel observed it; the closest valid values are \"fault read\" (`cargo xtask explain populate.read_missing` lists its values)"),
            "{err}"
        );
        // Unknown ids get suggestions too.
        let err =
            run(&sh, &root, &options(&["page-server.toml"], &["debian-6.1-clud"])).unwrap_err().to_string();
        assert!(err.contains("no such kernel (did you mean \"debian-6.1-cloud\"?)"), "{err}");
        let err = load(&root, "criu-lazy-page").unwrap_err().to_string();
        assert!(
            err.starts_with("no profile \"criu-lazy-page\" (did you mean \"criu-lazy-pages\"?)"),
            "{err}"
        );
    }

    /// The shipped profiles name values their behaviours take on the committed matrix.
    #[test]
    fn the_shipped_profiles_need_values_the_matrix_knows() {
        let root = crate::util::project_root();
        let compat: Compat = model::data::load(&root.join("matrix/compat.toml")).unwrap();
        validate(&all(&root).unwrap(), &compat.behaviours, "matrix/compat.toml").unwrap();
    }

    /// A version no column runs is answered from the expectation tables, labelled so; and the
    /// minimum version of each profile is printed.
    #[test]
    fn a_version_nobody_ran_is_answered_from_the_tables() {
        let (text, status) = check(&["page-server.toml"], &["5.4", "debian-6.1-cloud"]);
        assert_eq!(status, VIOLATED, "{text}");
        assert!(
            text.contains(
                "\n  5.4               5.4          violates (documented for x86_64, not observed)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("populate.read_missing: documented `unsupported: MADV_POPULATE_* is new in Linux 5.14` (expectation table, before 5.14); needs `fault read`"),
            "{text}"
        );
        assert!(text.contains("  minimum kernel, from the expectation tables: 5.14 ("), "{text}");
        assert!(text.contains("5.14 for populate.read_missing"), "{text}");
    }

    /// `--arch arm64` answers a version from the arm64 rows of the tables: no write-protect before
    /// 6.10 there (`HAVE_ARCH_USERFAULTFD_WP`), where an x86-64 6.1 has it.
    #[test]
    fn a_version_is_answered_for_the_architecture_asked() {
        let root = crate::util::project_root();
        let profile = root.join("xtask/testdata/profiles/wp-tracker.toml");
        let run = |arch: &str| {
            let opts = Options {
                profiles: vec![profile.display().to_string()],
                kernels: vec!["6.1".into()],
                arch: Some(arch.into()),
                ..Options::default()
            };
            run(&Shell::new().unwrap(), &root, &opts).unwrap()
        };
        let (x86, status) = run("x86_64");
        assert!(x86.contains("satisfies (documented for x86_64, not observed)"), "{x86}");
        assert_eq!(status, 0, "{x86}");
        let (arm, status) = run("arm64");
        assert!(arm.contains("violates (documented for arm64, not observed)"), "{arm}");
        assert!(arm.contains("wp.toggle: documented `unsupported:"), "{arm}");
        assert_eq!(status, VIOLATED, "{arm}");
        let err = run_err(&root, "sparc");
        assert!(err.contains("--arch sparc"), "{err}");
    }

    fn run_err(root: &Path, arch: &str) -> String {
        let opts = Options {
            profiles: vec!["criu-lazy-pages".into()],
            arch: Some(arch.into()),
            ..Options::default()
        };
        run(&Shell::new().unwrap(), root, &opts).unwrap_err().to_string()
    }

    /// `--json` carries the schema version and, per profile and kernel, the verdict, each need's
    /// observed/needed/verdict and whether it was observed or documented.
    #[test]
    fn json_says_what_the_text_says() {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let mut opts = options(&["page-server.toml"], &["debian-5.10-cloud", "6.6"]);
        opts.json = true;
        let (text, status) = run(&sh, &root, &opts).unwrap();
        assert_eq!(status, VIOLATED);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["schema_version"], model::check::SCHEMA_VERSION);
        assert_eq!(v["exit_status"], VIOLATED);
        let kernels = v["profiles"][0]["kernels"].as_array().unwrap();
        assert_eq!(kernels.len(), 2);
        assert_eq!(
            (&kernels[0]["id"], &kernels[0]["answer"]),
            (&"debian-5.10-cloud".into(), &"observed".into())
        );
        assert_eq!(kernels[0]["verdict"], "violates");
        let need = &kernels[0]["needs"][0];
        assert_eq!(
            (&need["behaviour"], &need["needed"], &need["observed"], &need["verdict"]),
            (&"populate.read_missing".into(), &"fault read".into(), &"EINVAL".into(), &"violated".into())
        );
        assert_eq!(
            (&kernels[1]["answer"], &kernels[1]["verdict"]),
            (&"documented".into(), &"satisfies".into())
        );
        assert_eq!(v["profiles"][0]["minimum"]["version"], "5.14");
    }

    /// The JSON is valid against its published schema, checked by the reference validator (PyPI's
    /// `jsonschema`, pinned in the test command's venv), for every kind of column.
    #[test]
    #[ignore = "needs PyPI's jsonschema: run through `cargo xtask test`"]
    fn json_validates_against_its_schema() {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let mut opts =
            options(&["page-server.toml", "hugetlb-user.toml"], &["debian-5.10-cloud", "host", "6.6"]);
        opts.json = true;
        let (text, _) = run(&sh, &root, &opts).unwrap();
        let dir = root.join("target/uffdc/tests/check-json");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("check.json");
        std::fs::write(&file, &text).unwrap();
        let python =
            std::env::var("UFFDC_PYTHON").expect("UFFDC_PYTHON is unset: run through `cargo xtask test`");
        let out = std::process::Command::new(python)
            .args([
                "-c",
                "import json, sys, jsonschema; s = json.load(open(sys.argv[1])); d = json.load(open(sys.argv[2])); \
                 jsonschema.Draft202012Validator.check_schema(s); jsonschema.Draft202012Validator(s).validate(d); \
                 print(d['schema_version'], len(d['profiles']))",
            ])
            .arg(root.join("docs/check.schema.json"))
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "jsonschema rejected the output: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{} 2", model::check::SCHEMA_VERSION)
        );
        // The schema's version is the output's.
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join("docs/check.schema.json")).unwrap())
                .unwrap();
        assert_eq!(schema["properties"]["schema_version"]["const"], model::check::SCHEMA_VERSION);
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
        // Where the host sits among the matrix's columns; documented too when no column runs it.
        let place = text.lines().find(|l| l.starts_with("this host's kernel ")).expect("the host's place");
        assert_eq!(
            place.contains("the nearest by version; no column runs"),
            text.contains("\n  host (documented)"),
            "{text}"
        );
    }
}
