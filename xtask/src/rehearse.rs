//! `cargo xtask ci rehearse`: both workflows run here as GitHub would run them, from a clean
//! checkout of one commit. Each job gets a fresh runner (home, workspace, temp); its `run:` steps
//! run in order with GitHub's shell rules; `.ci/in-debian`'s `docker run` gets a fresh container
//! made of a Debian bookworm root that debootstrap built from Debian's archive (cached; as bare as
//! the `debian:bookworm` image, with that image's apt settings), entered with namespaces and
//! chroot (`container.rs`); `uses:` steps are simulated (`workflow_run.rs`).
//!
//! Stand-ins, because this machine cannot do what a hosted runner does: the runner's `sudo`
//! (the KVM udev rule) is logged and not run; rustup cannot be downloaded here, so each runner's
//! CI home starts with this machine's toolchain (the one rust-toolchain.toml names, bind-mounted
//! read-only) and rustup, as after an earlier `in-debian` call of the same job; pull requests and
//! Pages deployments are recorded in folders, and opening a pull request fails as on a repository
//! that does not let Actions open them, unless `--pull-requests allowed`.
//!
//! Scenarios: `matrix-plan-fails` (the archive unreachable for the plan: its job must fail),
//! `ci-push` (ci.yml's jobs must pass), `matrix-scheduled` (plan, two kernels' jobs and one that
//! fails, compile, diff, pull request, Pages: the Pages folder must hold the report).

use crate::gha::{Outcome, Workflow};
use crate::workflow_run::{self, copy_tree, remove_runner, Hooks, JobRun, Log, Run, RunDirs};
use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use xshell::{cmd, Shell};

pub const SCENARIOS: [&str; 3] = ["matrix-plan-fails", "ci-push", "matrix-scheduled"];
const DEFAULT_KERNELS: [&str; 2] = ["debian-6.1-cloud", "debian-5.10-cloud"];
/// The build the rehearsal runs of the builds job's legs, unless `--kernel` names builds: each
/// leg is a cold kernel build in a fresh container (minutes), and one shows the job works.
const DEFAULT_BUILD: &str = "build-6.12-no-userfaultfd";
/// A kernel id no track has: its job must fail.
const NO_SUCH_KERNEL: &str = "rehearsal-no-such-kernel";

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
            pull_requests_allowed: false,
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

pub fn run(sh: &Shell, root: &Path, opts: &Options) -> Result<()> {
    if !crate::inputs::packages::is_root() {
        bail!("cargo xtask ci rehearse builds a Debian root and enters it with namespaces and chroot: run it as root");
    }
    // Every mount the rehearsal makes stays in a namespace of its own and goes with it.
    // SAFETY: called before this process starts any thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        bail!("unshare(CLONE_NEWNS): {}", std::io::Error::last_os_error());
    }
    let none: Option<&str> = None;
    nix::mount::mount(none, "/", none, nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE, none)?;
    let _cwd = sh.push_dir(root);
    let rev = &opts.rev;
    let spec = format!("{rev}^{{commit}}");
    let sha = cmd!(sh, "git rev-parse --verify {spec}").quiet().read().context("--rev names no commit")?;
    let dir = root.join("target/uffdc/rehearse");
    std::fs::create_dir_all(&dir)?;
    let _lock = crate::util::lock(&dir.join("lock"))?;
    let log = Log::create(&dir.join("rehearsal.log"))?;
    log.line(&format!("rehearsal of {sha} ({rev}); scenarios: {}", opts.scenarios.join(", ")));
    if rev == "HEAD"
        && !cmd!(sh, "git status --porcelain --untracked-files=no").quiet().read()?.trim().is_empty()
    {
        log.line(
            "note: the work tree has uncommitted changes; the rehearsal checks out the commit, without them",
        );
    }
    let started = std::time::Instant::now();
    let debian = debian_root(sh, &dir, &log)?;
    let runs = dir.join("runs");
    if runs.exists() {
        remove_runner(&runs)?;
    }
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    stand_ins(&bin)?;
    let scratch = dir.join("containers");
    std::fs::create_dir_all(&scratch)?;
    let toolchain = Toolchain::find(sh, &sha)?;
    let repo =
        PathBuf::from(cmd!(sh, "git rev-parse --path-format=absolute --git-common-dir").quiet().read()?);
    let mut verdicts: Vec<(bool, String)> = Vec::new();
    for scenario in &opts.scenarios {
        let t = std::time::Instant::now();
        let file = if scenario.starts_with("ci-") { "ci.yml" } else { "matrix.yml" };
        let text = cmd!(sh, "git show {sha}:.github/workflows/{file}").quiet().read()?;
        let workflow = Workflow::parse(file, &text)?;
        let mut hooks = Rehearsal {
            toolchain: &toolchain,
            env: vec![
                (
                    "PATH".into(),
                    format!("{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", bin.display()),
                ),
                (crate::container::ROOT_VAR.into(), debian.display().to_string()),
                (crate::container::SCRATCH_VAR.into(), scratch.display().to_string()),
            ],
            pull_requests_allowed: opts.pull_requests_allowed,
            kernels: opts.kernels.clone(),
            scenario: scenario.clone(),
        };
        if scenario == "matrix-plan-fails" {
            hooks.env.push((
                crate::container::EXTRA_ENV_VAR.into(),
                "UFFDC_DEBIAN_MIRROR=file:///nonexistent/rehearsal-unreachable-mirror".into(),
            ));
        }
        log.line(&format!("\n████ scenario {scenario}: {file}"));
        let run = Run {
            workflow: &workflow,
            event: if scenario.starts_with("ci-") { "push" } else { "schedule" },
            repo: repo.clone(),
            sha: sha.clone(),
            dirs: RunDirs { dir: runs.join(scenario) },
            keep: opts.keep,
            log: log.clone(),
        };
        let jobs = run.run(&mut hooks)?;
        let checks = match scenario.as_str() {
            "matrix-plan-fails" => check_plan_fails(&jobs),
            "ci-push" => check_all_pass(&jobs),
            _ => check_scheduled(&jobs, &run.dirs, &opts.kernels, opts.pull_requests_allowed),
        };
        log.line(&format!("████ scenario {scenario}: {:.0} min", t.elapsed().as_secs_f64() / 60.0));
        for (ok, text) in &checks {
            log.line(&format!("  {} {text}", if *ok { "ok  " } else { "FAIL" }));
        }
        verdicts.extend(checks.into_iter().map(|(ok, t)| (ok, format!("{scenario}: {t}"))));
    }
    let failed: Vec<&String> = verdicts.iter().filter(|(ok, _)| !ok).map(|(_, t)| t).collect();
    log.line(&format!(
        "\nrehearsal of {sha}: {} check(s), {} failed, {:.0} min; log: {}",
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

/// The runner's `docker` (this binary's container stand-in) and `sudo` (logged, not run).
fn stand_ins(bin: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let exe = bin.join("xtask");
    let _ = std::fs::remove_file(&exe);
    std::fs::copy(std::env::current_exe()?, &exe).context("copying xtask for the docker stand-in")?;
    let scripts = [
        ("docker", format!("#!/bin/sh\nexec {} ci rehearse-container \"$@\"\n", exe.display())),
        (
            "sudo",
            "#!/bin/sh\n# The runner's sudo: changes to the runner machine are not made on this one.\necho \"rehearsal: not run here (it would change this machine, not a disposable runner): sudo $*\" >&2\ncat >/dev/null\n".to_string(),
        ),
    ];
    for (name, text) in scripts {
        let path = bin.join(name);
        std::fs::write(&path, text)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// This machine's copy of the toolchain the rehearsed commit's rust-toolchain.toml names.
struct Toolchain {
    /// `1.95.0-x86_64-unknown-linux-gnu`
    name: String,
    dir: PathBuf,
    rustup: PathBuf,
}

impl Toolchain {
    fn find(sh: &Shell, sha: &str) -> Result<Toolchain> {
        let text = cmd!(sh, "git show {sha}:rust-toolchain.toml")
            .quiet()
            .read()
            .context("the rehearsed commit has no rust-toolchain.toml: the CI toolchain must be pinned")?;
        let file: toml::Value = toml::from_str(&text)?;
        let channel = file["toolchain"]["channel"].as_str().context("rust-toolchain.toml has no channel")?;
        let name = format!("{channel}-x86_64-unknown-linux-gnu");
        let home = std::env::var_os("RUSTUP_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".rustup"));
        let dir = home.join("toolchains").join(&name).canonicalize().with_context(|| {
            format!("this machine has no Rust {channel} toolchain in {}: `rustup toolchain install {channel} --component rustfmt,clippy`", home.display())
        })?;
        let rustup = crate::inputs::packages::which("rustup").context("rustup is not on PATH")?;
        Ok(Toolchain { name, dir, rustup })
    }
}

struct Rehearsal<'a> {
    toolchain: &'a Toolchain,
    env: Vec<(String, String)>,
    pull_requests_allowed: bool,
    kernels: Vec<String>,
    scenario: String,
}

impl Rehearsal<'_> {
    fn toolchain_mount(&self, home: &Path) -> PathBuf {
        home.join(".cache/uffdc-ci/rustup/toolchains").join(&self.toolchain.name)
    }
}

/// The builds job's legs the rehearsal runs: the builds `--kernel` names, else `DEFAULT_BUILD`.
fn choose_builds(
    job: &str,
    legs: Vec<Map<String, Value>>,
    asked: &[String],
    log: &Log,
) -> Vec<Map<String, Value>> {
    let planned: Vec<String> = legs.iter().filter_map(|l| l["build"].as_str().map(String::from)).collect();
    let named: Vec<&str> =
        asked.iter().map(String::as_str).filter(|k| planned.iter().any(|p| p == k)).collect();
    let wanted: Vec<&str> = if named.is_empty() { vec![DEFAULT_BUILD] } else { named };
    let chosen: Vec<Map<String, Value>> =
        legs.into_iter().filter(|l| l["build"].as_str().is_some_and(|b| wanted.contains(&b))).collect();
    log.line(&format!(
        "rehearsal: job {job} planned {} build(s) ({}); running {} ({})",
        planned.len(),
        planned.join(", "),
        chosen.len(),
        wanted.join(", ")
    ));
    chosen
}

impl Hooks for Rehearsal<'_> {
    fn legs(&mut self, job: &str, legs: Vec<Map<String, Value>>, log: &Log) -> Vec<Map<String, Value>> {
        if legs.iter().any(|l| l.contains_key("build")) {
            return choose_builds(job, legs, &self.kernels, log);
        }
        if !legs.iter().any(|l| l.contains_key("kernel")) {
            return legs;
        }
        let planned: Vec<String> =
            legs.iter().filter_map(|l| l["kernel"].as_str().map(String::from)).collect();
        let mut chosen: Vec<Map<String, Value>> = self
            .kernels
            .iter()
            .filter_map(|k| legs.iter().find(|l| l["kernel"] == k.as_str()).cloned())
            .collect();
        if chosen.is_empty() {
            log.line(&format!(
                "rehearsal: none of the kernels asked for ({}) was planned",
                self.kernels.join(", ")
            ));
        }
        if let Some(first) = chosen.first().cloned() {
            let mut broken = first;
            broken.insert("kernel".into(), Value::String(NO_SUCH_KERNEL.into()));
            chosen.push(broken);
        }
        log.line(&format!(
            "rehearsal: job {job} planned {} leg(s) ({}); running {} of them and {NO_SUCH_KERNEL}, whose job must fail",
            planned.len(),
            planned.join(", "),
            chosen.len().saturating_sub(1)
        ));
        chosen
    }

    fn prepare_runner(&mut self, home: &Path) -> Result<()> {
        let ci = home.join(".cache/uffdc-ci");
        let mount = self.toolchain_mount(home);
        std::fs::create_dir_all(&mount)?;
        let none: Option<&str> = None;
        use nix::mount::MsFlags;
        nix::mount::mount(Some(&self.toolchain.dir), &mount, none, MsFlags::MS_BIND | MsFlags::MS_REC, none)
            .context("bind-mounting the toolchain")?;
        nix::mount::mount(
            none,
            &mount,
            none,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
            none,
        )
        .context("making the toolchain read-only")?;
        std::fs::write(ci.join("rustup/settings.toml"), "version = \"12\"\nprofile = \"minimal\"\n")?;
        let bin = ci.join("cargo/bin");
        std::fs::create_dir_all(&bin)?;
        std::fs::copy(&self.toolchain.rustup, bin.join("rustup"))?;
        for proxy in ["cargo", "rustc", "rustdoc", "rustfmt", "cargo-fmt", "cargo-clippy", "clippy-driver"] {
            std::os::unix::fs::symlink("rustup", bin.join(proxy))?;
        }
        Ok(())
    }

    fn release_runner(&mut self, home: &Path) -> Result<()> {
        nix::mount::umount2(&self.toolchain_mount(home), nix::mount::MntFlags::MNT_DETACH)
            .context("unmounting the toolchain")?;
        Ok(())
    }

    fn runner_env(&self) -> Vec<(String, String)> {
        self.env.clone()
    }

    fn pull_requests_allowed(&self) -> bool {
        self.pull_requests_allowed
    }

    fn after_job(&mut self, job: &JobRun, _log: &Log) -> bool {
        !(self.scenario == "matrix-plan-fails" && job.job == "plan")
    }
}

type Checks = Vec<(bool, String)>;

fn job<'a>(jobs: &'a [JobRun], id: &str) -> Option<&'a JobRun> {
    jobs.iter().find(|j| j.job == id)
}

fn result(jobs: &[JobRun], id: &str) -> Outcome {
    job(jobs, id).map_or(Outcome::Skipped, |j| j.result)
}

fn check_plan_fails(jobs: &[JobRun]) -> Checks {
    let plan = job(jobs, "plan");
    let matrix = plan.and_then(|p| p.outputs.get("matrix")).map(crate::gha::to_text).unwrap_or_default();
    vec![(
        result(jobs, "plan") == Outcome::Failure,
        match result(jobs, "plan") {
            Outcome::Failure => "with the archive unreachable, `ci plan --refresh` fails and so does the plan job".into(),
            other => format!(
                "with the archive unreachable, `ci plan --refresh` failed but the plan job ended {}, handing the kernel jobs' fromJSON {matrix:?}",
                other.word()
            ),
        },
    )]
}

fn check_all_pass(jobs: &[JobRun]) -> Checks {
    jobs.iter()
        .map(|j| {
            let failed: Vec<String> = j
                .legs
                .iter()
                .flat_map(|l| {
                    l.steps
                        .iter()
                        .filter(|s| s.outcome == Outcome::Failure)
                        .map(move |s| format!("{}: {}", l.name, s.title))
                })
                .collect();
            (
                j.result == Outcome::Success,
                format!(
                    "job {}: {}{}",
                    j.job,
                    j.result.word(),
                    if failed.is_empty() {
                        String::new()
                    } else {
                        format!(" (failed: {})", failed.join(", "))
                    }
                ),
            )
        })
        .collect()
}

fn check_scheduled(jobs: &[JobRun], dirs: &RunDirs, kernels: &[String], prs_allowed: bool) -> Checks {
    let mut out = Vec::new();
    let plan = result(jobs, "plan");
    out.push((plan == Outcome::Success, format!("plan: {}", plan.word())));
    let legs: Vec<&workflow_run::LegRun> = jobs.iter().flat_map(|j| j.legs.iter()).collect();
    for k in kernels.iter().map(String::as_str).chain([NO_SUCH_KERNEL]) {
        let leg = legs.iter().find(|l| l.matrix.get("kernel").and_then(Value::as_str) == Some(k));
        let want = if k == NO_SUCH_KERNEL { Outcome::Failure } else { Outcome::Success };
        let got = leg.map_or(Outcome::Skipped, |l| l.result);
        out.push((got == want, format!("kernel job {k}: {} (expected {})", got.word(), want.word())));
    }
    if let Some(j) = jobs.iter().find(|j| j.error.is_some()) {
        out.push((false, format!("job {}: {}", j.job, j.error.as_deref().unwrap_or(""))));
    }
    let compile = result(jobs, "compile");
    let failed_steps = |id: &str| -> String {
        job(jobs, id)
            .map(|j| {
                j.legs
                    .iter()
                    .flat_map(|l| {
                        l.steps.iter().filter(|s| s.outcome == Outcome::Failure).map(|s| s.title.clone())
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    out.push((
        compile == Outcome::Success,
        format!(
            "compile: {}{}",
            compile.word(),
            match failed_steps("compile") {
                f if f.is_empty() => String::new(),
                f => format!(" (failed: {f})"),
            }
        ),
    ));
    // What a pull request would say: only what `cargo xtask diff` printed.
    let mut bodies = Vec::new();
    for j in jobs {
        bodies.extend(j.outputs.iter().filter(|(k, _)| *k == "body").map(|(_, v)| crate::gha::to_text(v)));
        for leg in &j.legs {
            for s in &leg.steps {
                bodies.extend(s.outputs.iter().filter(|(k, _)| *k == "body").map(|(_, v)| v.clone()));
                if s.action.as_deref() == Some("peter-evans/create-pull-request") {
                    bodies.extend(s.inputs.get("body").cloned());
                }
            }
        }
    }
    bodies.retain(|b| !b.trim().is_empty());
    bodies.sort();
    bodies.dedup();
    for body in &bodies {
        let stray = stray_lines(body);
        out.push((
            stray.is_empty(),
            if stray.is_empty() {
                "the pull request body holds only `cargo xtask diff` output".to_string()
            } else {
                format!(
                    "the pull request body holds {} line(s) `cargo xtask diff` did not print, e.g. {:?}",
                    stray.len(),
                    stray[0]
                )
            },
        ));
    }
    // The pull request: opened, refused as the repository's settings say, or not needed.
    let pr = legs.iter().flat_map(|l| l.steps.iter()).find(|s| {
        s.action.as_deref() == Some("peter-evans/create-pull-request") && s.outcome != Outcome::Skipped
    });
    match pr {
        Some(s) => {
            let want = if prs_allowed { Outcome::Success } else { Outcome::Failure };
            out.push((
                s.outcome == want,
                format!(
                    "pull request step: {} (Actions {} to open pull requests here)",
                    s.outcome.word(),
                    if prs_allowed { "allowed" } else { "not allowed" }
                ),
            ));
        }
        None => out.push((true, "pull request: none opened (no cell changed)".to_string())),
    }
    let pages = result(jobs, "pages");
    let index = dirs.pages().join("index.html");
    let html = std::fs::read_to_string(&index).unwrap_or_default();
    let missing: Vec<&String> = kernels.iter().filter(|k| !html.contains(k.as_str())).collect();
    out.push((
        pages == Outcome::Success && !html.is_empty() && missing.is_empty(),
        if html.is_empty() {
            format!("pages: {}; nothing published ({} is missing)", pages.word(), index.display())
        } else if !missing.is_empty() {
            format!("pages: the published report lacks {missing:?}")
        } else {
            format!(
                "pages: {}; the Pages folder {} holds the report with every kernel run",
                pages.word(),
                dirs.pages().display()
            )
        },
    ));
    out
}

/// The lines of a pull request body's code block that are not `cargo xtask diff` output.
fn stray_lines(body: &str) -> Vec<String> {
    let mut inside = false;
    let mut stray = Vec::new();
    let mut fenced = false;
    for line in body.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
            fenced = true;
            continue;
        }
        if inside && !is_diff_line(line) {
            stray.push(line.to_string());
        }
    }
    if !fenced {
        stray.push("(no ``` block holding the diff)".to_string());
    }
    stray
}

/// A line `cargo xtask diff` prints: a kernel's change, a behaviour's change, or the count.
fn is_diff_line(line: &str) -> bool {
    let behaviour_id = |s: &str| {
        s.split_once('.').is_some_and(|(f, n)| {
            !f.is_empty()
                && !n.is_empty()
                && f.chars().all(|c| c.is_ascii_lowercase())
                && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
    };
    line == "no cell changed"
        || line.strip_suffix(" change(s)").is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
        || line.starts_with("kernel ") && line.contains(": ")
        || line
            .split_once(": ")
            .is_some_and(|(head, _)| behaviour_id(head.split(" on ").next().unwrap_or("")))
}

/// The cached Debian bookworm root: debootstrap's minbase from this machine's Debian mirror, with
/// the `debian:bookworm` image's apt settings and sources layout, and empty apt lists.
fn debian_root(sh: &Shell, dir: &Path, log: &Log) -> Result<PathBuf> {
    let mirrors = crate::inputs::apt::mirrors(None)?;
    let root = dir.join("bookworm");
    let stamp = dir.join("bookworm.stamp");
    let want = format!(
        "debootstrap --variant=minbase bookworm {} {} (image settings v4)\n",
        mirrors.main, mirrors.security
    );
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str())
        && root.join("usr/bin/apt-get").exists()
    {
        log.line(&format!("debian root: {} (cached)", crate::util::display_path(&root)));
        return Ok(root);
    }
    if crate::inputs::packages::which("debootstrap").is_none() {
        log.line("installing debootstrap (apt-get)");
        cmd!(sh, "apt-get -q update").quiet().run()?;
        cmd!(sh, "apt-get -q install -y --no-install-recommends --no-remove debootstrap")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .run()
            .context("installing debootstrap: `apt-get install debootstrap`")?;
    }
    let tmp = dir.join("bookworm.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    log.line(&format!("debian root: debootstrap --variant=minbase bookworm from {}", mirrors.main));
    let mut command = std::process::Command::new("debootstrap");
    command
        .args(["--variant=minbase", &format!("--keyring={}", crate::inputs::apt::DEBIAN_KEYRING), "bookworm"])
        .arg(&tmp)
        .arg(&mirrors.main);
    let status = workflow_run::run_logged(command, log)?;
    if !status.success() {
        bail!("debootstrap failed (see the log above): check this machine's Debian mirror in /etc/apt/sources.list*");
    }
    let files: [(&str, String); 7] = [
        ("etc/apt/apt.conf.d/docker-autoremove-suggests", "Apt::AutoRemove::SuggestsImportant \"false\";\n".into()),
        (
            "etc/apt/apt.conf.d/docker-clean",
            "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };\nAPT::Update::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };\nDir::Cache::pkgcache \"\";\nDir::Cache::srcpkgcache \"\";\n".into(),
        ),
        ("etc/apt/apt.conf.d/docker-gzip-indexes", "Acquire::GzipIndexes \"true\";\n".into()),
        ("etc/apt/apt.conf.d/docker-no-languages", "Acquire::Languages \"none\";\n".into()),
        ("etc/dpkg/dpkg.cfg.d/docker-apt-speedup", "force-unsafe-io\n".into()),
        ("usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n".into()),
        (
            "etc/apt/sources.list.d/debian.sources",
            format!(
                "Types: deb\nURIs: {}\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: {}\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
                mirrors.main, mirrors.security
            ),
        ),
    ];
    for (path, text) in files {
        let p = tmp.join(path);
        std::fs::create_dir_all(p.parent().expect("a folder"))?;
        std::fs::write(&p, text)?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.join("usr/sbin/policy-rc.d"), std::fs::Permissions::from_mode(0o755))?;
    let _ = std::fs::remove_file(tmp.join("etc/apt/sources.list"));
    // This machine reaches registries through TLS-intercepting proxies whose authorities it
    // trusts locally; the root trusts them too once `ca-certificates` is installed in it (a hosted
    // runner needs none of this).
    let local_cas = Path::new("/usr/local/share/ca-certificates");
    if local_cas.is_dir() {
        copy_tree(local_cas, &tmp.join("usr/local/share/ca-certificates"))?;
    }
    // pip's settings too (they name the certificate bundle to use).
    if Path::new("/etc/pip.conf").is_file() {
        std::fs::copy("/etc/pip.conf", tmp.join("etc/pip.conf"))?;
    }
    // Likewise the settings this machine's apt needs to use its mirror (e.g. a frozen snapshot
    // whose Release files have expired): the root's apt, and xtask's private apt in it, use them.
    let dump = cmd!(sh, "apt-config dump").quiet().read().unwrap_or_default();
    let network: Vec<&str> = dump
        .lines()
        .filter(|l| {
            [
                "Acquire::Check-Valid-Until ",
                "Acquire::Check-Date ",
                "Acquire::http::Proxy ",
                "Acquire::https::Proxy ",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .collect();
    if !network.is_empty() {
        log.line(&format!("debian root: with this machine's apt network settings: {}", network.join(" ")));
        std::fs::write(tmp.join("etc/apt/apt.conf.d/99rehearsal-this-machine"), network.join("\n") + "\n")?;
    }
    for d in ["var/lib/apt/lists", "var/cache/apt/archives"] {
        for e in std::fs::read_dir(tmp.join(d))? {
            let p = e?.path();
            if p.is_file() {
                std::fs::remove_file(p)?;
            }
        }
    }
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::rename(&tmp, &root)?;
    std::fs::write(&stamp, want)?;
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builds_job_runs_the_default_build_or_the_named_ones() {
        let log =
            Log::create(&crate::util::project_root().join("target/uffdc/tests/rehearse-legs.log")).unwrap();
        let legs: Vec<Map<String, Value>> = ["build-6.12", "build-6.12-no-userfaultfd", "build-6.12-preempt"]
            .iter()
            .map(|b| serde_json::json!({"build": b, "key": "k"}).as_object().unwrap().clone())
            .collect();
        let names = |l: Vec<Map<String, Value>>| -> Vec<String> {
            l.iter().map(|l| l["build"].as_str().unwrap().to_string()).collect()
        };
        let kernels = vec!["debian-6.1-cloud".to_string()];
        assert_eq!(names(choose_builds("build", legs.clone(), &kernels, &log)), [DEFAULT_BUILD]);
        let asked = vec!["debian-6.1-cloud".to_string(), "build-6.12-preempt".to_string()];
        assert_eq!(names(choose_builds("build", legs, &asked, &log)), ["build-6.12-preempt"]);
    }

    #[test]
    fn only_diff_output_passes_for_a_pull_request_body() {
        let good = "The scheduled matrix run observed changes:\n\n```\nkernel debian-7.2-cloud: release 7.2.1 -> 7.2.2\npopulate.read_missing on debian-6.1-cloud: expected `fault read` -> unexpected `fault write`\nremove.fork: behaviour added\n3 change(s)\n```\n";
        assert!(stray_lines(good).is_empty(), "{:?}", stray_lines(good));
        let polluted = good.replace(
            "```\nkernel",
            "```\nGet:1 http://mirror bookworm InRelease [151 kB]\nReading package lists...\nkernel",
        );
        assert_eq!(stray_lines(&polluted).len(), 2);
        assert!(!stray_lines("no block at all").is_empty());
    }
}
