//! Runs a workflow here the way GitHub's hosted runners would: jobs in `needs` order, each matrix
//! leg on a runner of its own (a fresh home, workspace and temp directory), `if:` conditions
//! with GitHub's status rules, each `run:` step as a script with GitHub's shell and its
//! `$GITHUB_OUTPUT` / `$GITHUB_ENV` files, and the `uses:` steps simulated in the layouts those
//! actions produce: checkout (a clone of one commit), upload and download artifact (a store per
//! run; one artifact's files keep their paths below the paths' common ancestor; several
//! downloaded artifacts land in a folder each), cache (a store keyed by key and paths, restored on
//! an exact key or a restore-keys prefix, saved after a successful job), upload-pages-artifact and
//! deploy-pages (the run's Pages folder), create-pull-request (recorded, and refused when the
//! repository does not let Actions open pull requests).

use crate::gha::{self, Ctx, Job, Outcome, Status, Step, Workflow};
use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The rehearsal's log: everything the steps print, and the runner's own lines, in order; also
/// echoed to stderr.
#[derive(Clone)]
pub struct Log(Arc<Mutex<std::fs::File>>);

impl Log {
    pub fn create(path: &Path) -> Result<Log> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file =
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Log(Arc::new(Mutex::new(file))))
    }

    pub fn line(&self, text: &str) {
        let mut f = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(f, "{text}");
        eprintln!("{text}");
    }
}

/// What the rehearsal adds to a run: which legs of a matrix to run, the runner's tools, what
/// pull requests do, when to stop.
pub trait Hooks {
    /// The matrix legs to run of a job (all by default).
    fn legs(&mut self, _job: &str, legs: Vec<Map<String, Value>>, _log: &Log) -> Vec<Map<String, Value>> {
        legs
    }
    /// Sets up a fresh runner's home before its first step (the runner image's part).
    fn prepare_runner(&mut self, home: &Path) -> Result<()>;
    /// Undoes `prepare_runner` before the runner's directory is deleted.
    fn release_runner(&mut self, home: &Path) -> Result<()>;
    /// Variables every step sees besides GitHub's (e.g. PATH with the runner's tools first).
    fn runner_env(&self) -> Vec<(String, String)>;
    /// Whether this repository lets Actions create pull requests.
    fn pull_requests_allowed(&self) -> bool;
    /// Called after each job; `false` stops the run there.
    fn after_job(&mut self, _job: &JobRun, _log: &Log) -> bool {
        true
    }
}

#[derive(Clone, Debug)]
pub struct StepRun {
    pub title: String,
    pub action: Option<String>,
    pub outcome: Outcome,
    pub outputs: BTreeMap<String, String>,
    /// The evaluated `with:` inputs of an action step (also for a skipped step, where they could
    /// be evaluated).
    pub inputs: BTreeMap<String, String>,
    pub secs: f64,
}

#[derive(Clone, Debug)]
pub struct LegRun {
    pub name: String,
    pub matrix: Map<String, Value>,
    pub result: Outcome,
    pub steps: Vec<StepRun>,
}

#[derive(Clone, Debug)]
pub struct JobRun {
    pub job: String,
    pub result: Outcome,
    pub legs: Vec<LegRun>,
    pub outputs: Map<String, Value>,
    /// Why the job failed before any leg ran (e.g. its matrix could not be evaluated).
    pub error: Option<String>,
}

/// Where a run keeps what outlives its jobs.
pub struct RunDirs {
    pub dir: PathBuf,
}

impl RunDirs {
    pub fn artifacts(&self) -> PathBuf {
        self.dir.join("artifacts")
    }
    pub fn caches(&self) -> PathBuf {
        self.dir.join("caches")
    }
    pub fn pages(&self) -> PathBuf {
        self.dir.join("pages")
    }
    pub fn pull_requests(&self) -> PathBuf {
        self.dir.join("pull-requests")
    }
    fn runners(&self) -> PathBuf {
        self.dir.join("runners")
    }
}

pub struct Run<'a> {
    pub workflow: &'a Workflow,
    pub event: &'a str,
    /// The repository the checkout action clones, and the commit.
    pub repo: PathBuf,
    pub sha: String,
    pub dirs: RunDirs,
    /// Keep each runner's directory after its job (for debugging).
    pub keep: bool,
    pub log: Log,
}

impl Run<'_> {
    /// Runs every job in `needs` order; returns each job's result.
    pub fn run(&self, hooks: &mut dyn Hooks) -> Result<Vec<JobRun>> {
        for d in [self.dirs.artifacts(), self.dirs.caches(), self.dirs.pages(), self.dirs.pull_requests()] {
            std::fs::create_dir_all(d)?;
        }
        let mut done: Vec<JobRun> = Vec::new();
        let mut pending: Vec<&Job> = self.workflow.jobs.iter().collect();
        while !pending.is_empty() {
            let Some(i) =
                pending.iter().position(|j| j.needs.iter().all(|n| done.iter().any(|d| &d.job == n)))
            else {
                bail!("{}: the jobs' needs form a cycle", self.workflow.file);
            };
            let job = pending.remove(i);
            let run = self.job(job, &done, hooks)?;
            let go_on = hooks.after_job(&run, &self.log);
            done.push(run);
            if !go_on {
                self.log.line("rehearsal: stopping this run here (the scenario has what it checks)");
                break;
            }
        }
        Ok(done)
    }

    fn job(&self, job: &Job, done: &[JobRun], hooks: &mut dyn Hooks) -> Result<JobRun> {
        let result_of =
            |id: &str| done.iter().find(|d| d.job == id).map(|d| d.result).unwrap_or(Outcome::Skipped);
        let ancestors: Vec<Outcome> = self.workflow.ancestors(&job.id).iter().map(|a| result_of(a)).collect();
        let mut needs = Map::new();
        for n in &job.needs {
            let d = done.iter().find(|d| &d.job == n).expect("needs ran first");
            needs.insert(n.clone(), json!({"result": d.result.word(), "outputs": d.outputs}));
        }
        let mut ctx = self.base_ctx(Status::of_needs(&ancestors, false));
        ctx.set("needs", Value::Object(needs.clone()));
        let header = format!("══ {} / job {}", self.workflow.file, job.id);
        let skipped = |error: Option<String>| JobRun {
            job: job.id.clone(),
            result: if error.is_some() { Outcome::Failure } else { Outcome::Skipped },
            legs: Vec::new(),
            outputs: Map::new(),
            error,
        };
        let condition = job.condition.clone().unwrap_or_else(|| "success()".into());
        if !ctx.condition(&condition)? {
            self.log.line(&format!("{header}: skipped (if: {condition})"));
            return Ok(skipped(None));
        }
        let legs = match &job.matrix {
            None => vec![None],
            Some(m) => match ctx.evaluate_yaml(m).and_then(|v| gha::expand_matrix(&v)) {
                Ok(combos) => hooks.legs(&job.id, combos, &self.log).into_iter().map(Some).collect(),
                Err(e) => {
                    let e = format!("Error when evaluating 'strategy' for job '{}': {e:#}", job.id);
                    self.log.line(&format!("{header}: failed: {e}"));
                    return Ok(skipped(Some(e)));
                }
            },
        };
        let mut runs = Vec::new();
        let mut outputs = Map::new();
        for (n, matrix) in legs.into_iter().enumerate() {
            let name = match &matrix {
                Some(m) => {
                    format!("{} ({})", job.id, m.values().map(gha::to_text).collect::<Vec<_>>().join(", "))
                }
                None => job.id.clone(),
            };
            self.log.line(&format!("{header}: {name}"));
            let dir = self.dirs.runners().join(format!("{}-{n}", job.id));
            let leg = self.leg(job, &name, matrix.unwrap_or_default(), &needs, &dir, hooks, &mut outputs);
            let leg = match leg {
                Ok(l) => l,
                Err(e) => bail!("the rehearsal failed on {name}: {e:#}"),
            };
            self.log.line(&format!("── {name}: {}", leg.result.word()));
            runs.push(leg);
        }
        let result = if runs.iter().all(|l| l.result == Outcome::Success) {
            Outcome::Success
        } else if runs.iter().any(|l| l.result == Outcome::Failure) {
            Outcome::Failure
        } else {
            Outcome::Cancelled
        };
        Ok(JobRun { job: job.id.clone(), result, legs: runs, outputs, error: None })
    }

    fn base_ctx(&self, status: Status) -> Ctx {
        let mut ctx = Ctx { status, ..Ctx::default() };
        ctx.set(
            "github",
            json!({"event_name": self.event, "sha": self.sha, "ref": "refs/heads/main",
                   "repository": "uffd-conformance/uffd-conformance", "workflow": self.workflow.name,
                   "run_id": "1", "run_number": "1", "run_attempt": "1"}),
        );
        ctx.set("runner", json!({"os": "Linux", "arch": "X64"}));
        ctx.set("vars", json!({}));
        ctx.set("inputs", json!({}));
        ctx
    }

    #[allow(clippy::too_many_arguments)]
    fn leg(
        &self,
        job: &Job,
        name: &str,
        matrix: Map<String, Value>,
        needs: &Map<String, Value>,
        dir: &Path,
        hooks: &mut dyn Hooks,
        job_outputs: &mut Map<String, Value>,
    ) -> Result<LegRun> {
        if dir.exists() {
            remove_runner(dir)?;
        }
        let (home, temp) = (dir.join("home"), dir.join("temp"));
        let workspace = dir.join("work/uffd-conformance/uffd-conformance");
        for d in [&home, &temp, &workspace] {
            std::fs::create_dir_all(d)?;
        }
        hooks.prepare_runner(&home)?;
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ("HOME".into(), home.display().to_string()),
            ("LANG".into(), "C.UTF-8".into()),
            ("CI".into(), "true".into()),
            ("GITHUB_ACTIONS".into(), "true".into()),
            ("GITHUB_WORKSPACE".into(), workspace.display().to_string()),
            ("GITHUB_JOB".into(), job.id.clone()),
            ("GITHUB_EVENT_NAME".into(), self.event.into()),
            ("GITHUB_SHA".into(), self.sha.clone()),
            ("GITHUB_REF".into(), "refs/heads/main".into()),
            ("GITHUB_REPOSITORY".into(), "uffd-conformance/uffd-conformance".into()),
            ("GITHUB_RUN_ID".into(), "1".into()),
            ("RUNNER_OS".into(), "Linux".into()),
            ("RUNNER_ARCH".into(), "X64".into()),
            ("RUNNER_TEMP".into(), temp.display().to_string()),
        ];
        for (k, v) in hooks.runner_env() {
            set_var(&mut env, &k, v);
        }
        let mut status = Status::default();
        let mut steps_ctx = Map::new();
        let mut runs = Vec::new();
        let mut posts: Vec<(String, Vec<PathBuf>, String)> = Vec::new();
        let ctx_for = |status: Status, steps_ctx: &Map<String, Value>, env: &[(String, String)]| {
            let mut ctx = self.base_ctx(status);
            ctx.set("needs", Value::Object(needs.clone()));
            ctx.set("matrix", Value::Object(matrix.clone()));
            ctx.set("steps", Value::Object(steps_ctx.clone()));
            ctx.set("env", Value::Object(env.iter().map(|(k, v)| (k.clone(), json!(v))).collect()));
            ctx.set("job", json!({"status": if status.failed { "failure" } else { "success" }}));
            ctx.set("runner", json!({"os": "Linux", "arch": "X64", "temp": temp.display().to_string()}));
            ctx.workspace = Some(workspace.clone());
            ctx
        };
        // Workflow and job `env:` (evaluated once, before the steps).
        for (k, v) in self.workflow.env.iter().chain(&job.env) {
            let value = ctx_for(status, &steps_ctx, &env).interpolate(v)?;
            set_var(&mut env, k, value);
        }
        for (n, step) in job.steps.iter().enumerate() {
            let ctx = ctx_for(status, &steps_ctx, &env);
            let title = ctx.interpolate(&step.title()).unwrap_or_else(|_| step.title());
            let condition = step.condition.clone().unwrap_or_else(|| "success()".into());
            let mut inputs = BTreeMap::new();
            // An input whose expression cannot be evaluated fails the step with why, as GitHub
            // does ("the template is not valid"), instead of reading as an input left out.
            let mut input_errors = Vec::new();
            for (k, v) in &step.with {
                match ctx.interpolate(v) {
                    Ok(v) => {
                        inputs.insert(k.clone(), v);
                    }
                    Err(e) => input_errors.push(format!("input {k}: {e:#}")),
                }
            }
            let started = Instant::now();
            let mut run = StepRun {
                title: title.clone(),
                action: step.action().map(String::from),
                outcome: Outcome::Skipped,
                outputs: BTreeMap::new(),
                inputs: inputs.clone(),
                secs: 0.0,
            };
            if !ctx.condition(&condition)? {
                self.log.line(&format!("── step {}: {title}: skipped (if: {condition})", n + 1));
            } else {
                self.log.line(&format!("── step {}: {title}", n + 1));
                let mut step_env = env.clone();
                for (k, v) in &step.env {
                    set_var(&mut step_env, k, ctx.interpolate(v)?);
                }
                let result = if !input_errors.is_empty() {
                    Err(anyhow::anyhow!("{}", input_errors.join("; ")))
                } else if let Some(script) = &step.run {
                    let script = ctx.interpolate(script)?;
                    let shell = self.workflow.shell_of(job, step);
                    self.run_script(n, &script, shell, step, &workspace, &temp, &step_env, &mut env)
                } else {
                    let mut sim =
                        Sim { run: self, job, home: &home, workspace: &workspace, hooks, posts: &mut posts };
                    sim.action(step, &inputs)
                };
                run.outcome = match result {
                    Ok(outputs) => {
                        run.outputs = outputs;
                        Outcome::Success
                    }
                    Err(e) => {
                        self.log.line(&format!("   failed: {e:#}"));
                        Outcome::Failure
                    }
                };
            }
            run.secs = started.elapsed().as_secs_f64();
            if run.outcome != Outcome::Skipped {
                self.log.line(&format!("   {} in {:.0}s", run.outcome.word(), run.secs));
            }
            let conclusion = if run.outcome == Outcome::Failure && step.continue_on_error {
                Outcome::Success
            } else {
                run.outcome
            };
            if conclusion == Outcome::Failure {
                status.failed = true;
            }
            if let Some(id) = &step.id {
                steps_ctx.insert(
                    id.clone(),
                    json!({"outcome": run.outcome.word(), "conclusion": conclusion.word(), "outputs": run.outputs}),
                );
            }
            runs.push(run);
        }
        // Post steps (the cache saves), last first, as GitHub runs them: only after success.
        for (key, paths, version) in posts.into_iter().rev() {
            if status.failed {
                self.log.line(&format!("── post cache {key}: not saved (the job failed)"));
                continue;
            }
            self.save_cache(&key, &paths, &version)?;
        }
        let ctx = ctx_for(status, &steps_ctx, &env);
        for (k, v) in &job.outputs {
            let value = ctx.interpolate(v)?;
            if !value.is_empty() {
                job_outputs.insert(k.clone(), Value::String(value));
            }
        }
        hooks.release_runner(&home)?;
        if !self.keep {
            remove_runner(dir)?;
        }
        Ok(LegRun {
            name: name.to_string(),
            matrix,
            result: if status.failed { Outcome::Failure } else { Outcome::Success },
            steps: runs,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn run_script(
        &self,
        n: usize,
        script: &str,
        shell: Option<&str>,
        step: &Step,
        workspace: &Path,
        temp: &Path,
        step_env: &[(String, String)],
        env: &mut Vec<(String, String)>,
    ) -> Result<BTreeMap<String, String>> {
        let file = temp.join(format!("step-{n}.sh"));
        std::fs::write(&file, script)?;
        let (output, env_file, path_file) =
            (temp.join(format!("output-{n}")), temp.join(format!("env-{n}")), temp.join(format!("path-{n}")));
        for f in [&output, &env_file, &path_file] {
            std::fs::write(f, "")?;
        }
        let argv: Vec<String> = gha::shell_command(shell)?
            .into_iter()
            .map(|a| a.replace("{0}", &file.display().to_string()))
            .collect();
        let cwd = match &step.working_directory {
            Some(d) => workspace.join(d),
            None => workspace.to_path_buf(),
        };
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .current_dir(&cwd)
            .env_clear()
            .envs(step_env.iter().map(|(k, v)| (k, v)))
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_ENV", &env_file)
            .env("GITHUB_PATH", &path_file)
            .env("GITHUB_STEP_SUMMARY", temp.join(format!("summary-{n}")))
            .stdin(Stdio::null());
        let status = run_logged(command, &self.log)?;
        let outputs: BTreeMap<String, String> =
            gha::parse_commands_file(&std::fs::read_to_string(&output)?)?.into_iter().collect();
        for (k, v) in gha::parse_commands_file(&std::fs::read_to_string(&env_file)?)? {
            set_var(env, &k, v);
        }
        for p in std::fs::read_to_string(&path_file)?.lines().filter(|l| !l.trim().is_empty()) {
            let old = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone()).unwrap_or_default();
            set_var(env, "PATH", format!("{p}:{old}"));
        }
        if !status.success() {
            bail!("Process completed with exit code {}.", status.code().unwrap_or(1));
        }
        Ok(outputs)
    }

    fn save_cache(&self, key: &str, paths: &[PathBuf], version: &str) -> Result<()> {
        let store = self.dirs.caches();
        if find_cache(&store, key, version)?.is_some() {
            self.log.line(&format!("── post cache: {key} already exists, not saved"));
            return Ok(());
        }
        let existing: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
        if existing.is_empty() {
            self.log.line(&format!(
                "── post cache: Path Validation Error: Path(s) specified in the action for caching do(es) not exist, hence no cache is being saved ({key})"
            ));
            return Ok(());
        }
        let n = std::fs::read_dir(&store)?.count();
        let entry = store.join(format!("{n:04}"));
        for (i, p) in paths.iter().enumerate() {
            if p.exists() {
                copy_tree(p, &entry.join(i.to_string()))?;
            }
        }
        std::fs::write(entry.join("key"), key)?;
        std::fs::write(entry.join("version"), version)?;
        self.log.line(&format!("── post cache: saved {key} ({} path(s))", existing.len()));
        Ok(())
    }
}

/// The simulated actions of one runner.
struct Sim<'a, 'r> {
    run: &'a Run<'r>,
    job: &'a Job,
    home: &'a Path,
    workspace: &'a Path,
    hooks: &'a mut dyn Hooks,
    posts: &'a mut Vec<(String, Vec<PathBuf>, String)>,
}

impl Sim<'_, '_> {
    fn action(&mut self, step: &Step, inputs: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
        let action = step.action().context("a step without run or uses")?;
        let known: &[&str] = match action {
            "actions/checkout" => &[],
            "actions/upload-artifact" => {
                &["name", "path", "if-no-files-found", "include-hidden-files", "retention-days", "overwrite"]
            }
            "actions/download-artifact" => &["name", "pattern", "path", "merge-multiple"],
            "actions/cache" => &["path", "key", "restore-keys"],
            "actions/upload-pages-artifact" => &["path", "name", "retention-days"],
            "actions/deploy-pages" => &["artifact_name"],
            "peter-evans/create-pull-request" => {
                &["branch", "commit-message", "title", "body", "add-paths", "base", "delete-branch", "labels"]
            }
            other => bail!("the rehearsal does not simulate {other}"),
        };
        if let Some(k) = inputs.keys().find(|k| !known.contains(&k.as_str())) {
            bail!("the rehearsal does not simulate input {k:?} of {action}");
        }
        let input = |k: &str| inputs.get(k).cloned().unwrap_or_default();
        match action {
            "actions/checkout" => self.checkout(),
            "actions/upload-artifact" => self.upload(
                &non_empty(input("name")).unwrap_or_else(|| "artifact".into()),
                &input("path"),
                &non_empty(input("if-no-files-found")).unwrap_or_else(|| "warn".into()),
                input("include-hidden-files") == "true",
                input("overwrite") == "true",
            ),
            "actions/download-artifact" => self.download(
                non_empty(input("name")),
                non_empty(input("pattern")),
                &input("path"),
                input("merge-multiple") == "true",
            ),
            "actions/cache" => self.cache(&input("path"), &input("key"), &input("restore-keys")),
            "actions/upload-pages-artifact" => {
                let path = non_empty(input("path")).unwrap_or_else(|| "_site/".into());
                let dir = self.resolve(&path);
                if !dir.is_dir() {
                    bail!("tar: {path}: Cannot open: No such file or directory");
                }
                let name = non_empty(input("name")).unwrap_or_else(|| "github-pages".into());
                let dest = self.run.dirs.artifacts().join(&name);
                if dest.exists() {
                    bail!("an artifact named {name} already exists in this run");
                }
                copy_filtered(&dir, &dest, &|rel: &Path| {
                    !rel.components().any(|c| c.as_os_str() == ".git" || c.as_os_str() == ".github")
                })?;
                self.run.log.line(&format!("   uploaded the Pages artifact {name} from {path}"));
                Ok(BTreeMap::from([("artifact_id".into(), name)]))
            }
            "actions/deploy-pages" => {
                self.require_permissions(&[("pages", "write"), ("id-token", "write")])?;
                if self.job.environment.as_deref() != Some("github-pages") {
                    bail!("deploy-pages: the job has no `environment: github-pages`");
                }
                let name = non_empty(input("artifact_name")).unwrap_or_else(|| "github-pages".into());
                let src = self.run.dirs.artifacts().join(&name);
                if !src.is_dir() {
                    bail!("No uploaded artifact was found! Please check if there are any errors at build step, or uploaded artifact name is correct.");
                }
                let pages = self.run.dirs.pages();
                let _ = std::fs::remove_dir_all(&pages);
                copy_tree(&src, &pages)?;
                self.run
                    .log
                    .line(&format!("   deployed to the Pages folder {} (simulated)", pages.display()));
                Ok(BTreeMap::from([("page_url".into(), format!("file://{}/", pages.display()))]))
            }
            _ => self.pull_request(inputs),
        }
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = p.trim();
        if let Some(rest) = p.strip_prefix("~/") {
            self.home.join(rest)
        } else {
            self.workspace.join(p)
        }
    }

    fn paths(&self, text: &str) -> Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if line.starts_with('!') || line.contains(['*', '?', '[']) {
                bail!("path {line:?}: the rehearsal simulates plain paths only");
            }
            out.push((line.to_string(), self.resolve(line)));
        }
        if out.is_empty() {
            bail!("Input required and not supplied: path");
        }
        Ok(out)
    }

    fn checkout(&self) -> Result<BTreeMap<String, String>> {
        let ws = self.workspace.display().to_string();
        let source = format!("file://{}", self.run.repo.display());
        let sh = xshell::Shell::new()?;
        let sha = &self.run.sha;
        xshell::cmd!(sh, "git init -q {ws}").quiet().run()?;
        xshell::cmd!(sh, "git -C {ws} fetch -q --no-tags --depth=1 {source} {sha}").quiet().run()?;
        xshell::cmd!(sh, "git -C {ws} checkout -q --detach FETCH_HEAD").quiet().run()?;
        self.run.log.line(&format!("   checked out {sha} into the workspace (a fresh clone, depth 1)"));
        Ok(BTreeMap::from([("commit".into(), sha.clone())]))
    }

    fn upload(
        &self,
        name: &str,
        paths: &str,
        if_none: &str,
        hidden: bool,
        overwrite: bool,
    ) -> Result<BTreeMap<String, String>> {
        let paths = self.paths(paths)?;
        let dest = self.run.dirs.artifacts().join(name);
        if dest.exists() && !overwrite {
            bail!("Failed to CreateArtifact: Received non-retryable error: Failed request: (409) Conflict: an artifact with this name already exists on the workflow run");
        }
        // The root below which files keep their paths: a single file's folder, a single folder,
        // or the common ancestor of several paths.
        let root = if paths.len() == 1 {
            let p = &paths[0].1;
            if p.is_file() {
                p.parent().unwrap_or(p).to_path_buf()
            } else {
                p.clone()
            }
        } else {
            let mut common: PathBuf = paths[0].1.clone();
            for (_, p) in &paths[1..] {
                while !p.starts_with(&common) {
                    if !common.pop() {
                        break;
                    }
                }
            }
            common
        };
        let mut files = 0;
        for (_, p) in &paths {
            if !p.exists() {
                continue;
            }
            let keep = |rel: &Path| {
                hidden || !rel.components().any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
            };
            let rel = p.strip_prefix(&root).unwrap_or(Path::new(""));
            files += copy_filtered(p, &dest.join(rel), &|r: &Path| keep(&rel.join(r)))?;
        }
        if files == 0 {
            let listed: Vec<&str> = paths.iter().map(|(s, _)| s.as_str()).collect();
            let message = format!(
                "No files were found with the provided path: {}. No artifacts will be uploaded.",
                listed.join(", ")
            );
            match if_none {
                "error" => bail!("{message}"),
                "ignore" => {}
                _ => self.run.log.line(&format!("   warning: {message}")),
            }
            return Ok(BTreeMap::new());
        }
        self.run.log.line(&format!("   uploaded artifact {name}: {files} file(s)"));
        Ok(BTreeMap::from([("artifact-id".into(), name.to_string())]))
    }

    fn download(
        &self,
        name: Option<String>,
        pattern: Option<String>,
        path: &str,
        merge: bool,
    ) -> Result<BTreeMap<String, String>> {
        let dest = if path.trim().is_empty() { self.workspace.to_path_buf() } else { self.resolve(path) };
        let store = self.run.dirs.artifacts();
        if let Some(name) = name {
            let src = store.join(&name);
            if !src.is_dir() {
                bail!("Unable to download artifact(s): Artifact not found for name: {name}");
            }
            copy_tree(&src, &dest)?;
            self.run.log.line(&format!("   downloaded artifact {name} into {path}"));
        } else {
            let mut names: Vec<String> = std::fs::read_dir(&store)?
                .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_>>()?;
            names.sort();
            names.retain(|n| pattern.as_deref().is_none_or(|p| glob_match(p, n)));
            for n in &names {
                let target = if merge { dest.clone() } else { dest.join(n) };
                copy_tree(&store.join(n), &target)?;
            }
            self.run.log.line(&format!(
                "   downloaded {} artifact(s) into {path}: {}",
                names.len(),
                names.join(", ")
            ));
        }
        Ok(BTreeMap::from([("download-path".into(), dest.display().to_string())]))
    }

    fn cache(&mut self, paths: &str, key: &str, restore_keys: &str) -> Result<BTreeMap<String, String>> {
        if key.is_empty() {
            bail!("Input required and not supplied: key");
        }
        let paths = self.paths(paths)?;
        let version = paths.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>().join("\n");
        let absolute: Vec<PathBuf> = paths.iter().map(|(_, p)| p.clone()).collect();
        let store = self.run.dirs.caches();
        let mut hit = None;
        let mut exact = false;
        if let Some(entry) = find_cache(&store, key, &version)? {
            hit = Some((entry, key.to_string()));
            exact = true;
        } else {
            for prefix in restore_keys.lines().map(str::trim).filter(|l| !l.is_empty()) {
                if let Some(found) = find_cache_prefix(&store, prefix, &version)? {
                    hit = Some(found);
                    break;
                }
            }
        }
        match &hit {
            Some((entry, found)) => {
                for (i, p) in absolute.iter().enumerate() {
                    let src = entry.join(i.to_string());
                    if src.exists() {
                        copy_tree(&src, p)?;
                    }
                }
                self.run.log.line(&format!("   Cache restored from key: {found}"));
            }
            None => self.run.log.line(&format!("   Cache not found for input keys: {key}")),
        }
        if !exact {
            self.posts.push((key.to_string(), absolute, version));
        }
        Ok(BTreeMap::from([("cache-hit".into(), exact.to_string())]))
    }

    /// A job that sets `permissions:` gets exactly those; an action needing more fails.
    fn require_permissions(&self, needed: &[(&str, &str)]) -> Result<()> {
        for (scope, level) in needed {
            if !self.job.permissions.iter().any(|(s, l)| s == scope && l == level) {
                bail!("the job's token lacks `{scope}: {level}` (set it in the job's permissions)");
            }
        }
        Ok(())
    }

    fn pull_request(&mut self, inputs: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
        self.require_permissions(&[("contents", "write"), ("pull-requests", "write")])?;
        let sh = xshell::Shell::new()?;
        let ws = self.workspace;
        let add: Vec<String> = inputs
            .get("add-paths")
            .map(|a| a.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
            .unwrap_or_default();
        let changed = xshell::cmd!(sh, "git -C {ws} status --porcelain --untracked-files=all -- {add...}")
            .quiet()
            .read()?;
        let n = std::fs::read_dir(self.run.dirs.pull_requests())?.count();
        let record = self.run.dirs.pull_requests().join(format!("{n}.md"));
        let get = |k: &str| inputs.get(k).cloned().unwrap_or_default();
        std::fs::write(
            &record,
            format!(
                "branch: {}\ntitle: {}\ncommit message: {}\nfiles:\n{changed}\n\n{}\n",
                get("branch"),
                get("title"),
                get("commit-message"),
                get("body")
            ),
        )?;
        self.run.log.line(&format!("   pull request recorded in {}", record.display()));
        if !self.hooks.pull_requests_allowed() {
            bail!("GitHub Actions is not permitted to create or approve pull requests. (simulated: the repository's default setting)");
        }
        let operation = if changed.trim().is_empty() { "none" } else { "created" };
        Ok(BTreeMap::from([
            ("pull-request-operation".into(), operation.into()),
            ("pull-request-number".into(), "1".into()),
        ]))
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.trim().is_empty()).then_some(s)
}

fn set_var(env: &mut Vec<(String, String)>, key: &str, value: String) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => env.push((key.to_string(), value)),
    }
}

/// `*` and `?` globbing, as artifact patterns use.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(&pattern.chars().collect::<Vec<_>>(), &name.chars().collect::<Vec<_>>())
}

fn find_cache(store: &Path, key: &str, version: &str) -> Result<Option<PathBuf>> {
    Ok(entries(store)?.into_iter().find(|(_, k, v)| k == key && v == version).map(|(e, _, _)| e))
}

/// The newest entry whose key starts with `prefix`.
fn find_cache_prefix(store: &Path, prefix: &str, version: &str) -> Result<Option<(PathBuf, String)>> {
    Ok(entries(store)?
        .into_iter()
        .rev()
        .find(|(_, k, v)| k.starts_with(prefix) && v == version)
        .map(|(e, k, _)| (e, k)))
}

fn entries(store: &Path) -> Result<Vec<(PathBuf, String, String)>> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(store)?.map(|e| Ok(e?.path())).collect::<Result<_>>()?;
    dirs.sort();
    for d in dirs {
        let (Ok(k), Ok(v)) =
            (std::fs::read_to_string(d.join("key")), std::fs::read_to_string(d.join("version")))
        else {
            continue;
        };
        out.push((d, k, v));
    }
    Ok(out)
}

/// Runs a command with its output going to the log line by line.
pub fn run_logged(mut command: Command, log: &Log) -> Result<std::process::ExitStatus> {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().with_context(|| format!("cannot run {command:?}"))?;
    let pipes: Vec<Box<dyn std::io::Read + Send>> =
        vec![Box::new(child.stdout.take().expect("piped")), Box::new(child.stderr.take().expect("piped"))];
    let threads: Vec<_> = pipes
        .into_iter()
        .map(|pipe| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(pipe);
                let mut buf = Vec::new();
                while reader.read_until(b'\n', &mut buf).unwrap_or(0) > 0 {
                    log.line(String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']));
                    buf.clear();
                }
            })
        })
        .collect();
    let status = child.wait()?;
    for t in threads {
        let _ = t.join();
    }
    Ok(status)
}

/// Copies a file or a folder (recursively, keeping modes and symlinks) to `dest`.
pub fn copy_tree(src: &Path, dest: &Path) -> Result<usize> {
    copy_filtered(src, dest, &|_| true)
}

/// Like [`copy_tree`], with the files whose path below `src` passes `keep`; returns how many
/// files were copied.
fn copy_filtered(src: &Path, dest: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<usize> {
    fn go(src: &Path, dest: &Path, rel: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<usize> {
        let meta =
            std::fs::symlink_metadata(src).with_context(|| format!("cannot read {}", src.display()))?;
        if !rel.as_os_str().is_empty() && !keep(rel) {
            return Ok(0);
        }
        if meta.is_dir() {
            std::fs::create_dir_all(dest)?;
            std::fs::set_permissions(dest, meta.permissions())?;
            let mut n = 0;
            for e in std::fs::read_dir(src)? {
                let e = e?;
                n += go(&e.path(), &dest.join(e.file_name()), &rel.join(e.file_name()), keep)?;
            }
            Ok(n)
        } else if meta.file_type().is_symlink() {
            let _ = std::fs::remove_file(dest);
            std::os::unix::fs::symlink(std::fs::read_link(src)?, dest)?;
            Ok(1)
        } else {
            if let Some(d) = dest.parent() {
                std::fs::create_dir_all(d)?;
            }
            std::fs::copy(src, dest)
                .with_context(|| format!("cannot copy {} to {}", src.display(), dest.display()))?;
            Ok(1)
        }
    }
    go(src, dest, Path::new(""), keep)
}

/// Deletes a runner's directory, refusing while anything is mounted below it (a bind-mounted
/// toolchain must never be deleted through its mount).
pub fn remove_runner(dir: &Path) -> Result<()> {
    let dir = dir.canonicalize()?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    if let Some(m) =
        mounts.lines().filter_map(|l| l.split(' ').nth(4)).find(|m| Path::new(m).starts_with(&dir))
    {
        bail!("{m} is still mounted below {}: not deleting it (unmount it first)", dir.display());
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot delete {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_patterns_glob() {
        assert!(glob_match("results-*", "results-debian-6.1-cloud"));
        assert!(!glob_match("results-*", "kernels-lock"));
    }
}
