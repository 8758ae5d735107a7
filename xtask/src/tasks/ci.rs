//! `cargo xtask ci plan | compile | binaries`: the fan-out and fan-in of the scheduled matrix
//! workflow, and the binary cache it publishes beside the report. The workflow runs the same
//! commands a person does (`images refresh`, `matrix --kernel ID`, `report`, `diff`); these only
//! split the work and put it back together.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use xshell::Shell;

/// A kernel id no track has: the rehearsal asks for its leg (`UFFDC_CI_PLAN_ONLY`), which must fail
/// before it writes results.
pub const NO_SUCH_KERNEL: &str = "rehearsal-no-such-kernel";
/// GitHub's arm64 Linux runners' label (act maps it to this machine in the rehearsal).
pub const ARM64_RUNNER: &str = "ubuntu-24.04-arm";
/// GitHub's x86-64 Linux runners' label.
pub const X86_64_RUNNER: &str = "ubuntu-latest";

/// The runner a kernel leg of `arch` runs on (the plan's `runner`, matrix.yml's `runs-on`): a
/// machine of the guest's own architecture, where KVM may run it (the accelerator probe boot
/// decides, never the runner's label: TCG where KVM does not work). An arm64 leg runs on
/// [`ARM64_RUNNER`], whose Go compiler and selftests' build root are pinned for an arm64 machine
/// (images/go.lock's and images/toolchain.lock's `arch = "arm64"` entries). Any leg could also run
/// on an x86-64 runner, an arm64 guest under TCG there (the rehearsal does so).
pub fn runner_for(arch: model::arch::Arch) -> &'static str {
    match arch {
        model::arch::Arch::X86_64 => X86_64_RUNNER,
        model::arch::Arch::Arm64 => ARM64_RUNNER,
    }
}
/// The locks a scheduled run's refresh may rewrite, each of which must travel to the pull request.
pub const LOCKS: [&str; 4] =
    ["images/kernels.lock", "images/toolchain.lock", "images/go.lock", "images/criu.lock"];

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

/// `cargo xtask ci binaries`: the binary cache's published folder (`inputs/bincache.rs`), from
/// this machine's cache and from the folders under each FROM.
pub fn run_binaries(root: &Path, b: crate::flags::Binaries) -> Result<()> {
    let fleet = crate::inputs::fleet::Fleet::load(root)?;
    let ids: Vec<crate::inputs::fleet::KernelId> = if b.kernel.is_empty() {
        fleet.ids()
    } else {
        b.kernel.iter().cloned().map(crate::inputs::fleet::KernelId::from).collect()
    };
    // What this machine's cache holds: each --kernel's, or every column's unless the entries
    // come from elsewhere (the scheduled workflow's compile gathers the jobs' folders).
    let mut written = Vec::new();
    if !b.kernel.is_empty() || b.from.is_empty() {
        let (here, missing) = publish_cached(root, &fleet, &ids, &b.out)?;
        for why in missing {
            println!("not published: {why}");
        }
        written.extend(here);
    }
    for from in &b.from {
        written.extend(crate::inputs::bincache::merge(from, &b.out)?);
    }
    for (entry, a) in &written {
        println!("{entry:<28} {:<20} {:>9} bytes  {}", a.id, a.size, a.file);
    }
    let total: u64 =
        std::fs::read_dir(&b.out)?.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum();
    println!(
        "{}: {} entries written, {:.1} MB in all",
        crate::util::display_path(&b.out),
        written.len(),
        total as f64 / 1e6
    );
    Ok(())
}

/// Publishes what the cache holds of columns `ids` (a build's kernel; every column's selftests)
/// into `out` (`bincache::publish`). Returns what it wrote and, for what it did not, why.
fn publish_cached(
    root: &Path,
    fleet: &crate::inputs::fleet::Fleet,
    ids: &[crate::inputs::fleet::KernelId],
    out: &Path,
) -> Result<(crate::inputs::bincache::Written, Vec<String>)> {
    let mut entries: Vec<crate::inputs::bincache::Entry> = Vec::new();
    let mut missing = Vec::new();
    for id in ids {
        if !fleet.builds.contains_key(&**id) && !fleet.lock.kernels.contains_key(&**id) {
            missing.push(format!("{id}: neither a pinned track nor a build of images/kernels.toml"));
            continue;
        }
        if fleet.builds.contains_key(&**id) {
            match crate::inputs::builds::published(root, fleet, id) {
                Some(e) => entries.push(e),
                None => missing.push(format!("{id}: its kernel is not built here")),
            }
        }
        match crate::inputs::selftests::published(root, fleet, id) {
            Some(e) if entries.iter().any(|o| o.kind == e.kind && o.key == e.key) => {}
            Some(e) => entries.push(e),
            None => missing.push(format!("{id}: its selftests are not built here")),
        }
    }
    let builds = crate::inputs::fleet::Cache::new(root).dir.join("builds");
    Ok((crate::inputs::bincache::publish(&builds, &entries, out)?, missing))
}

/// What a leg's verified image is cached under (matrix.yml's `image-<kernel>-<pin>`): the kernel
/// package's sha256, and its configuration package's where it has one (Debian 7.x), so that an
/// image unpacked without that package is never restored as the pin's.
fn image_key(pin: &crate::inputs::fleet::Pin) -> String {
    match &pin.config {
        Some(c) => format!("{}-{}", pin.sha256, &c.sha256[..c.sha256.len().min(16)]),
        None => pin.sha256.clone(),
    }
}

/// `{"include": [{"kernel": ID, "pin": KEY}...]}` for a workflow's `strategy.matrix`, after an
/// optional refresh of the pins: one job per kernel, each knowing its pin ([`image_key`]) to key
/// that kernel's image cache with.
pub fn plan(sh: &Shell, root: &Path, refresh: bool, mirror: Option<String>) -> Result<String> {
    if refresh {
        let fleet = crate::inputs::fleet::Fleet::load(root)?;
        let mut apt = fleet.apt(&crate::inputs::fleet::Cache::new(root), mirror);
        crate::inputs::refresh::pins(sh, root, Vec::new(), &mut apt)?;
    }
    let fleet = crate::inputs::fleet::Fleet::load(root)?;
    let only = plan_only();
    let mut jobs: Vec<serde_json::Value> = fleet
        .select(&[])?
        .into_iter()
        .filter(|(id, _)| only.as_ref().is_none_or(|o| o.iter().any(|k| **id == **k)))
        // `runner`: where the leg runs (`runner_for`: a runner of the guest's architecture).
        .map(|(id, pin)| {
            let runner = runner_for(pin.arch);
            serde_json::json!({ "kernel": id, "pin": image_key(&pin), "arch": pin.arch.name(), "runner": runner })
        })
        .collect();
    // The rehearsal's leg that must fail: a kernel no track has.
    if only.as_ref().is_some_and(|o| o.iter().any(|k| k == NO_SUCH_KERNEL)) {
        let runner = runner_for(model::arch::Arch::native());
        jobs.push(serde_json::json!({ "kernel": NO_SUCH_KERNEL, "pin": "none", "runner": runner }));
    }
    Ok(serde_json::json!({ "include": jobs }).to_string())
}

/// Set by the rehearsal (`cargo xtask ci rehearse`) in its containers: the kernels and builds
/// (comma-separated) the plans keep, so that a rehearsal runs two kernels and one build rather
/// than the whole fleet; with `NO_SUCH_KERNEL`, the kernel plan adds that leg.
pub const PLAN_ONLY: &str = "UFFDC_CI_PLAN_ONLY";

fn plan_only() -> Option<Vec<String>> {
    let v = std::env::var(PLAN_ONLY).ok().filter(|v| !v.is_empty())?;
    eprintln!("ci plan: only {v} ({PLAN_ONLY} is set: a rehearsal)");
    Some(v.split(',').map(String::from).collect())
}

/// `{"include": [{"build": ID, "key": KEY}...]}`: one job per build track, each with the key
/// over what it is built from (its source's pin, the toolchain's pins, the base configuration and
/// its options) to key its build cache with: a warm build is then a cache hit.
pub fn plan_builds(root: &Path) -> Result<String> {
    let fleet = crate::inputs::fleet::Fleet::load(root)?;
    let only = plan_only();
    let jobs: Vec<serde_json::Value> = fleet
        .builds
        .keys()
        .filter(|id| only.as_ref().is_none_or(|o| o.iter().any(|k| ***id == **k)))
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
    if artifacts.is_empty() {
        bail!(
            "ci compile: no artifact folder given: name the folders the legs' results were downloaded to, e.g. `cargo xtask ci compile artifacts/*` (or `cargo xtask ci compile matrix` to recompile the committed results)"
        );
    }
    if found.is_empty() {
        bail!(
            "no results/<kernel>.toml under {}: give the folders the legs' artifacts were downloaded to",
            artifacts.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    // The history keeps the published matrix's observations (and starts from them if it has none).
    if let Ok(published) = model::data::load(&matrix_dir.join("compat.toml")) {
        crate::publish::history::record(matrix_dir, &published)?;
    }
    let dest = matrix_dir.join("results");
    std::fs::create_dir_all(&dest)?;
    let mut merged = std::collections::BTreeSet::new();
    for file in &found {
        let results: model::Results = model::data::load(file)?;
        let name = file.file_name().context("a results file has a name")?;
        model::data::save(&dest.join(name), &results)?;
        merged.insert(name.to_os_string());
        println!("merged {} ({})", file.display(), results.kernel.release);
    }
    // A committed column this run brought no results for (its leg failed before writing any) is
    // not republished as current: it says when it was observed and which run failed to renew it.
    for entry in std::fs::read_dir(&dest)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "toml")
            || merged.contains(path.file_name().unwrap_or_default())
        {
            continue;
        }
        let mut results: model::Results = model::data::load(&path)?;
        if let Some(note) = stale_note(&results.kernel.date, results.kernel.reason.as_deref()) {
            results.kernel.reason = Some(note);
            results.kernel.status = model::RunStatus::Incomplete;
            model::data::save(&path, &results)?;
            println!("stale: {} (no results in this run)", path.display());
        }
    }
    // The suite's catalogue comes from a build of the suite, whose userfaultfd-sys runs bindgen.
    crate::inputs::packages::ensure(sh, &[crate::inputs::packages::Need::Libclang])?;
    let apt = crate::inputs::fleet::Fleet::load(root)?.apt(&crate::inputs::fleet::Cache::new(root), None);
    let prepared = crate::boot::pipeline::prepare(sh, root, None, &[], apt)?;
    let compat = crate::boot::pipeline::compile(matrix_dir, &prepared.catalogue)?;
    crate::publish::history::record(matrix_dir, &compat)?;
    crate::publish::write(matrix_dir, html_dir)?;
    // The site keeps the history too: the next scheduled run starts from it (matrix.yml).
    std::fs::copy(matrix_dir.join(crate::publish::HISTORY), html_dir.join(crate::publish::HISTORY))
        .context("copying the history beside the report")?;
    Ok(found.len())
}

/// The reason a column without new results gets: observed on `date`, not renewed by this run (the
/// workflow run's address when run by GitHub Actions). None when it says so already.
fn stale_note(date: &str, reason: Option<&str>) -> Option<String> {
    if reason.is_some_and(|r| r.starts_with(STALE)) {
        return None;
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let run = match (env("GITHUB_SERVER_URL"), env("GITHUB_REPOSITORY"), env("GITHUB_RUN_ID")) {
        (Some(s), Some(r), Some(id)) => format!("{s}/{r}/actions/runs/{id}"),
        _ => "this run".to_string(),
    };
    let before = reason.map(|r| format!(" (then: {r})")).unwrap_or_default();
    Some(format!("{STALE} observed {date}; {run} brought no results for it{before}"))
}

const STALE: &str = "stale:";

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

/// What the workflow files must hold, read with a plain YAML parser (act runs them for real in the
/// rehearsal and in `rehearse::tests`; these are the static rules, each with the defect it keeps
/// out). Each returns the broken rules, so the tests can show it catching a broken copy.
pub mod rules {
    use yaml_rust2::{Yaml, YamlLoader};

    pub fn load(text: &str) -> Yaml {
        YamlLoader::load_from_str(text).expect("a workflow is YAML").remove(0)
    }

    fn jobs(w: &Yaml) -> Vec<(&str, &Yaml)> {
        w["jobs"]
            .as_hash()
            .map_or(Vec::new(), |h| h.iter().filter_map(|(k, v)| Some((k.as_str()?, v))).collect())
    }

    fn steps(job: &Yaml) -> &[Yaml] {
        job["steps"].as_vec().map_or(&[], |v| v.as_slice())
    }

    fn uses(step: &Yaml) -> &str {
        step["uses"].as_str().unwrap_or("")
    }

    fn with<'a>(step: &'a Yaml, key: &str) -> &'a str {
        step["with"][key].as_str().unwrap_or("")
    }

    fn needs(job: &Yaml) -> Vec<&str> {
        match &job["needs"] {
            Yaml::String(s) => vec![s.as_str()],
            Yaml::Array(a) => a.iter().filter_map(Yaml::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// Every job a job waits for, directly or not.
    fn ancestors<'a>(w: &'a Yaml, id: &str) -> Vec<&'a str> {
        let all = jobs(w);
        let mut out: Vec<&str> = Vec::new();
        let mut todo: Vec<&str> =
            all.iter().find(|(j, _)| *j == id).map(|(_, j)| needs(j)).unwrap_or_default();
        while let Some(n) = todo.pop() {
            if let Some((name, job)) = all.iter().find(|(j, _)| *j == n) {
                if !out.contains(name) {
                    out.push(name);
                    todo.extend(needs(job));
                }
            }
        }
        out
    }

    /// Hygiene on every workflow: bash (with pipefail) for every `run:`, a timeout on every job,
    /// checkouts without kept credentials, third-party actions pinned by commit SHA with the
    /// version in a comment, and the KVM udev step guarded where /dev/kvm is absent.
    pub fn hygiene(text: &str) -> Vec<String> {
        let w = load(text);
        let mut broken = Vec::new();
        // GitHub runs `shell: bash` as `bash --noprofile --norc -eo pipefail {0}`.
        if w["defaults"]["run"]["shell"].as_str() != Some("bash") {
            broken.push("defaults.run.shell is not bash: a failed pipeline would be a green step".into());
        }
        for (id, job) in jobs(&w) {
            if job["timeout-minutes"].as_i64().is_none() {
                broken.push(format!("job {id} has no timeout-minutes (GitHub's default is 6 hours)"));
            }
            for step in steps(job) {
                if let Some(shell) = step["shell"].as_str().or(job["defaults"]["run"]["shell"].as_str()) {
                    if shell != "bash" && !shell.contains("pipefail") {
                        broken.push(format!("job {id}: a step runs with shell {shell:?}, without pipefail"));
                    }
                }
                if uses(step).starts_with("actions/checkout@") && with(step, "persist-credentials") != "false"
                {
                    // yaml-rust2 reads `false` as a boolean.
                    if step["with"]["persist-credentials"].as_bool() != Some(false) {
                        broken.push(format!(
                            "job {id}: a checkout keeps the token in .git/config (persist-credentials)"
                        ));
                    }
                }
                let run = step["run"].as_str().unwrap_or("");
                if run.contains("udevadm") && !run.contains("[ ! -e /dev/kvm ]") {
                    broken.push(format!("job {id}: the KVM udev step fails where /dev/kvm is absent"));
                }
            }
        }
        for line in text.lines() {
            let Some(u) = line.trim().trim_start_matches("- ").strip_prefix("uses:") else { continue };
            let (action, comment) = u.split_once('#').unwrap_or((u, ""));
            let sha = action.trim().rsplit('@').next().unwrap_or("");
            let pinned = sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit());
            if !action.trim().starts_with("./") && (!pinned || !comment.trim().starts_with('v')) {
                broken.push(format!(
                    "{} is not pinned by commit SHA with its version in a comment",
                    action.trim()
                ));
            }
        }
        broken
    }

    /// Every artifact a job downloads by name is uploaded by a job it waits for (else the
    /// download fails on GitHub: "Artifact not found").
    pub fn artifacts_flow(text: &str) -> Vec<String> {
        let w = load(text);
        let mut broken = Vec::new();
        for (id, job) in jobs(&w) {
            for step in steps(job).iter().filter(|s| uses(s).starts_with("actions/download-artifact@")) {
                let name = with(step, "name");
                if name.is_empty() {
                    continue;
                }
                let uploaded = ancestors(&w, id).iter().any(|a| {
                    steps(&w["jobs"][*a])
                        .iter()
                        .any(|s| uses(s).starts_with("actions/upload-artifact@") && with(s, "name") == name)
                });
                if !uploaded {
                    broken
                        .push(format!("job {id} downloads artifact {name}, which no job before it uploads"));
                }
            }
        }
        broken
    }

    /// matrix.yml: Pages and the pull request come whatever the kernel legs did (once compile
    /// succeeded), never after a cancellation; every lock the refresh may rewrite travels through
    /// the artifacts, the pin-change check and the pull request.
    pub fn scheduled(text: &str) -> Vec<String> {
        let w = load(text);
        let mut broken = Vec::new();
        for id in ["compile", "pages", "pull-request"] {
            let cond = w["jobs"][id]["if"].as_str().unwrap_or("");
            if !cond.contains("!cancelled()") || cond.contains("always()") {
                broken.push(format!(
                    "job {id}: `if: {cond}` (without `!cancelled()` a failed kernel leg skips it: success() looks at every job before it)"
                ));
            }
        }
        let runs_on = w["jobs"]["kernel"]["runs-on"].as_str().unwrap_or("");
        if runs_on != "${{ matrix.runner }}" {
            broken.push(format!(
                "job kernel: `runs-on: {runs_on}` is not the plan's runner for the leg (`${{{{ matrix.runner }}}}`, from `runner_for`)"
            ));
        }
        // The legs run on runners of two architectures: their build outputs are programs of the
        // runner's, so no leg may restore another architecture's (a wasted download of gigabytes,
        // then every crate built again).
        for step in steps(&w["jobs"]["kernel"]) {
            if !(uses(step).starts_with("actions/cache@") && with(step, "path").contains("target/debug/")) {
                continue;
            }
            let key = with(step, "key");
            let restore = match &step["with"]["restore-keys"] {
                Yaml::String(s) => s.lines().map(str::trim).filter(|l| !l.is_empty()).collect(),
                _ => Vec::new(),
            };
            for k in std::iter::once(key).chain(restore) {
                if !k.contains("${{ runner.arch }}") {
                    broken.push(format!(
                        "job kernel: build outputs cached under `{k}`, without `${{{{ runner.arch }}}}`: a leg may restore another architecture's programs"
                    ));
                }
            }
        }
        let fetches_history = steps(&w["jobs"]["compile"])
            .iter()
            .any(|s| s["run"].as_str().unwrap_or("").contains("/history.toml\" -o"));
        if !fetches_history {
            broken.push("compile does not start from the published site's history.toml".into());
        }
        if ancestors(&w, "pages").contains(&"pull-request") {
            broken
                .push("pages waits for the pull request, which fails where Actions may not open one".into());
        }
        for lock in super::LOCKS {
            let carried = |job: &str, artifact: &str| {
                steps(&w["jobs"][job]).iter().any(|s| {
                    uses(s).starts_with("actions/upload-artifact@")
                        && with(s, "name") == artifact
                        && with(s, "path").lines().any(|l| l.trim() == lock)
                })
            };
            if !carried("plan", "kernels-lock") {
                broken.push(format!("the kernels-lock artifact lacks {lock}"));
            }
            if !carried("compile", "new-matrix") {
                broken.push(format!("the new-matrix artifact lacks {lock}"));
            }
            let pr = steps(&w["jobs"]["pull-request"]).iter().any(|s| {
                uses(s).starts_with("peter-evans/create-pull-request@")
                    && with(s, "add-paths").lines().any(|l| l.trim() == lock)
            });
            if !pr {
                broken.push(format!("the pull request's add-paths lack {lock}"));
            }
            let checked = steps(&w["jobs"]["compile"]).iter().any(|s| {
                s["run"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .any(|l| l.contains("git diff --quiet --") && l.contains(lock))
            });
            if !checked {
                broken.push(format!("the pin-change check ignores {lock}"));
            }
        }
        broken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::accel::Choice;
    use crate::boot::pipeline::{gather, Options};

    fn text(name: &str) -> String {
        std::fs::read_to_string(crate::util::project_root().join(".github/workflows").join(name)).unwrap()
    }

    /// `ci compile` with no artifact folder, or folders holding no results, names the fix (it
    /// said "no results/<kernel>.toml under " with nothing after).
    #[test]
    fn compile_without_results_names_the_fix() {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let dir = root.join("target/uffdc/tests/ci-compile-empty");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("artifacts")).unwrap();
        let e = compile(&sh, &root, &dir.join("m"), &[], &dir.join("html")).unwrap_err().to_string();
        assert!(
            e.starts_with("ci compile: no artifact folder given")
                && e.contains("`cargo xtask ci compile matrix`"),
            "{e}"
        );
        let e = compile(&sh, &root, &dir.join("m"), &[dir.join("artifacts")], &dir.join("html"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("under {}: give the folders", dir.join("artifacts").display())), "{e}");
        assert!(!dir.join("m").exists(), "nothing was written");
    }

    #[test]
    fn the_workflows_keep_the_rules() {
        for file in ["ci.yml", "matrix.yml"] {
            let t = text(file);
            assert_eq!(rules::hygiene(&t), Vec::<String>::new(), "{file}");
            assert_eq!(rules::artifacts_flow(&t), Vec::<String>::new(), "{file}");
        }
        assert_eq!(rules::scheduled(&text("matrix.yml")), Vec::<String>::new());
    }

    /// The rules catch the broken copies the rehearsal must catch too.
    #[test]
    fn the_rules_fail_on_broken_copies() {
        let m = text("matrix.yml");
        // A fan-in that forgets an artifact: plan no longer uploads the locks.
        let forgot = m.replacen(
            "          name: kernels-lock\n          path: |",
            "          name: kernels-lockz\n          path: |",
            1,
        );
        assert_ne!(forgot, m);
        assert!(rules::artifacts_flow(&forgot).iter().any(|b| b.contains("kernels-lock")), "{forgot}");
        // An `if:` that skips Pages after a failed leg (no `if:`: success() of every job before).
        let pages = m.replace("    if: ${{ !cancelled() && needs.compile.result == 'success' }}\n    runs-on: ubuntu-latest\n    timeout-minutes: 15\n    permissions:\n      pages: write", "    runs-on: ubuntu-latest\n    timeout-minutes: 15\n    permissions:\n      pages: write");
        assert_ne!(pages, m);
        assert!(rules::scheduled(&pages).iter().any(|b| b.starts_with("job pages")), "{pages}");
        // A lock missing from the pull request.
        let pr = m.replacen("          add-paths: |\n            matrix/\n            images/kernels.lock\n            images/toolchain.lock\n            images/go.lock\n", "          add-paths: |\n            matrix/\n            images/kernels.lock\n            images/toolchain.lock\n", 1);
        assert_ne!(pr, m);
        assert_eq!(
            rules::scheduled(&pr),
            vec!["the pull request's add-paths lack images/go.lock".to_string()]
        );
        // The legs' runner not taken from the plan.
        let fixed = m.replacen("    runs-on: ${{ matrix.runner }}\n", "    runs-on: ubuntu-latest\n", 1);
        assert_ne!(fixed, m);
        assert!(rules::scheduled(&fixed)
            .iter()
            .any(|b| b.starts_with("job kernel: `runs-on: ubuntu-latest`")));
        // A leg's build outputs restored whatever the runner's architecture.
        let any_arch = m.replacen(
            "            target-kernel-${{ runner.arch }}-\n",
            "            target-kernel-${{ runner.arch }}-\n            target-kernel-\n",
            1,
        );
        assert_ne!(any_arch, m);
        assert_eq!(
            rules::scheduled(&any_arch),
            ["job kernel: build outputs cached under `target-kernel-`, without `${{ runner.arch }}`: a leg may restore another architecture's programs"]
        );
        // Hygiene: a tag instead of a SHA, a job without a timeout, an unguarded KVM step.
        let c = text("ci.yml");
        let tag = c.replacen(
            "actions/checkout@fbc6f3992d24b796d5a048ff273f7fcc4a7b6c09 # v5.1.0",
            "actions/checkout@v5",
            1,
        );
        assert!(rules::hygiene(&tag).iter().any(|b| b.contains("actions/checkout@v5")));
        let no_timeout = c.replace("    timeout-minutes: 90\n", "");
        assert!(rules::hygiene(&no_timeout).iter().any(|b| b.contains("timeout-minutes")));
        let kvm = c.replace("[ ! -e /dev/kvm ]", "true");
        assert!(rules::hygiene(&kvm).iter().any(|b| b.contains("/dev/kvm")));
    }

    /// The runner's kernel: one rule in both workflows (any failure fails the job, as ci.yml's
    /// test command does), its results labelled and still uploaded for compile.
    #[test]
    fn the_runners_kernel_is_graded_by_one_rule() {
        let w = rules::load(&text("matrix.yml"));
        let job = &w["jobs"]["runner-kernel"];
        let run: String = job["steps"].as_vec().unwrap().iter().filter_map(|s| s["run"].as_str()).collect();
        assert!(run.contains("--package suite") && run.contains("--results"), "{run}");
        assert!(!run.contains("101 ]"), "exit status 101 is not accepted: {run}");
        assert!(run.contains("exit \"$status\""), "{run}");
        assert!(run.contains("source = \"host: the GitHub Actions runner"), "{run}");
        let compile_needs = w["jobs"]["compile"]["needs"].as_vec().unwrap();
        assert!(compile_needs.iter().any(|n| n.as_str() == Some("runner-kernel")));
    }

    /// ci.yml runs the CI entry point, once per change: a concurrency group, and pull requests
    /// from this repository's own branches left to their push.
    #[test]
    fn ci_yml_runs_the_ci_entry_point_once() {
        let root = crate::util::project_root();
        let run = std::fs::read_to_string(root.join(".ci/run")).unwrap();
        assert!(run.lines().any(|l| l.trim() == "exec cargo xtask test"), "{run}");
        let w = rules::load(&text("ci.yml"));
        let test = &w["jobs"]["test"];
        let steps: Vec<&str> =
            test["steps"].as_vec().unwrap().iter().filter_map(|s| s["run"].as_str()).collect();
        assert!(steps.iter().any(|s| s.trim() == ".ci/in-debian .ci/run"), "{steps:?}");
        assert!(w["concurrency"]["group"].as_str().is_some_and(|g| g.contains("github.ref")));
        assert!(test["if"].as_str().is_some_and(|c| c.contains("head.repo.full_name != github.repository")));
    }

    /// Each kernel image is cached under its own pin, and each build under its lock and
    /// configuration (one key for the whole lock threw every image away when sid moved).
    #[test]
    fn each_kernel_and_build_is_cached_under_its_own_key() {
        let sh = Shell::new().unwrap();
        let root = crate::util::project_root();
        let fleet = crate::inputs::fleet::Fleet::load(&root).unwrap();
        let plan: serde_json::Value = serde_json::from_str(&plan(&sh, &root, false, None).unwrap()).unwrap();
        let legs = plan["include"].as_array().unwrap();
        assert_eq!(legs.len(), fleet.tracks.len());
        for leg in legs {
            let pin = &fleet.lock.kernels[leg["kernel"].as_str().unwrap()];
            assert_eq!(leg["pin"], image_key(pin).as_str());
            // A kernel whose configuration has a package of its own is keyed by both.
            assert!(leg["pin"].as_str().unwrap().starts_with(&pin.sha256));
            assert_eq!(pin.config.is_some(), leg["pin"].as_str().unwrap() != pin.sha256);
            let arch = fleet.tracks[leg["kernel"].as_str().unwrap()].arch;
            assert_eq!(leg["arch"], arch.name());
            assert_eq!(leg["runner"], runner_for(arch));
        }
        // The arm64 legs run on GitHub's arm64 runners, the x86-64 ones on x86-64 runners.
        assert!(legs.iter().any(|l| l["arch"] == "arm64" && l["runner"] == ARM64_RUNNER), "{plan}");
        assert!(legs.iter().all(|l| (l["arch"] == "arm64") == (l["runner"] == ARM64_RUNNER)), "{plan}");
        let builds: serde_json::Value = serde_json::from_str(&plan_builds(&root).unwrap()).unwrap();
        let keys: std::collections::BTreeSet<&str> =
            builds["include"].as_array().unwrap().iter().map(|l| l["key"].as_str().unwrap()).collect();
        assert_eq!(keys.len(), fleet.builds.len(), "each configuration has a key of its own");
        let w = rules::load(&text("matrix.yml"));
        let key_of = |job: &str, path: &str| -> String {
            w["jobs"][job]["steps"]
                .as_vec()
                .unwrap()
                .iter()
                .find(|s| s["with"]["path"].as_str().is_some_and(|p| p.contains(path)))
                .and_then(|s| s["with"]["key"].as_str())
                .unwrap_or_default()
                .to_string()
        };
        let image = key_of("kernel", "target/uffdc/images");
        assert!(
            image.contains("matrix.kernel")
                && image.contains("matrix.pin")
                && !image.contains("kernels.lock"),
            "{image}"
        );
        let build = key_of("build", "target/uffdc/builds/kernels");
        assert!(build.contains("matrix.build") && build.contains("matrix.key"), "{build}");
    }

    #[test]
    fn a_column_without_new_results_is_marked_stale_once() {
        let note = stale_note("2026-11-30T03:40:00Z", None).unwrap();
        assert!(note.starts_with("stale: observed 2026-11-30T03:40:00Z;"), "{note}");
        assert!(stale_note("d", Some(&note)).is_none());
        assert!(stale_note("d", Some("boot failed")).unwrap().ends_with("(then: boot failed)"));
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
        let apt = crate::inputs::fleet::Fleet::load(&root)
            .unwrap()
            .apt(&crate::inputs::fleet::Cache::new(&root), None);
        let prepared = crate::boot::pipeline::prepare(&sh, &root, Some(suite), &[], apt).unwrap();
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
            // One family is enough to tell the merged matrix from one run's (the whole suite in
            // each of the three runs took 72 s of the test command).
            o.run.suite_args = vec!["api::".into()];
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
        // The site holds the history too (the next scheduled run starts from it).
        assert!(dir.join("html").join(crate::publish::HISTORY).exists());
        // The history records what the merged matrix observed.
        let history = model::history::load(&merged.join(crate::publish::HISTORY)).unwrap();
        assert!(history.behaviours.values().flatten().any(|e| e.kernel == two[0]), "{history:?}");
        // The same as one run over both kernels.
        let once = opts("once", two.clone());
        gather(&sh, &root, &once, &prepared, &|_| {}).unwrap();
        assert_eq!(essence(&merged), essence(&once.out));
    }
}
