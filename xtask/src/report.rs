//! `cargo xtask report`: the matrix as people read it, rendered from `matrix/compat.toml`, the
//! history beside it (`matrix/history.toml`) and the requirement profiles (`profiles/`):
//! `COMPATIBILITY.md` (checked in, the text version) and one self-contained `index.html` (no
//! external assets) for publishing. Both answer "can I run my software on this kernel?" first:
//! the profiles' verdicts per kernel; then the findings, grouped by behaviour with the kernels as
//! ranges; what changed since the previous matrix and between which point releases; the features
//! and ioctls by kernel; and every cell. The page adds an overview of all behaviours × all kernels
//! coloured by which distinct observation each kernel made, permalinks (`#ID/KERNEL`) and search.
//!
//! Kernel columns are in version order everywhere (`model::columns`). Nothing here assumes which
//! behaviours or kernels there are.

use anyhow::{Context, Result};
use model::columns::{by_version, describe, version_label};
use model::expect::Expect;
use model::findings::{findings, Finding, Kind};
use model::history::{observes_the_kernel, History};
use model::profile::{Outcome, Profile, Status};
use model::{Cell, Compat, Verdict};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

pub const COMPATIBILITY: &str = "COMPATIBILITY.md";
/// The history file beside `compat.toml` (see `model::history`).
pub const HISTORY: &str = "history.toml";

/// Renders both from the matrix in `matrix_dir` (`COMPATIBILITY.md` beside `compat.toml`); the
/// page goes to `html_dir/index.html`.
pub fn run(matrix_dir: &Path, html_dir: &Path) -> Result<()> {
    let compat: Compat = model::data::load(&matrix_dir.join("compat.toml"))?;
    let (profiles, history) = inputs(matrix_dir)?;
    let view = View::new(&compat, &profiles, &history);
    crate::util::write_atomic(&matrix_dir.join(COMPATIBILITY), markdown(&view).as_bytes())?;
    let page = html_dir.join("index.html");
    crate::util::write_atomic(&page, html(&view)?.as_bytes())?;
    println!(
        "wrote {} and {}",
        crate::util::display_path(&matrix_dir.join(COMPATIBILITY)),
        crate::util::display_path(&page)
    );
    Ok(())
}

/// The profiles (`profiles/`) and the matrix's history, which the report reads besides the matrix.
fn inputs(matrix_dir: &Path) -> Result<(Vec<Profile>, History)> {
    let profiles = crate::check::all(&crate::util::project_root())?;
    let history = model::history::load(&matrix_dir.join(HISTORY))?;
    Ok((profiles, history))
}

pub fn write_markdown(matrix_dir: &Path, compat: &Compat) -> Result<()> {
    let (profiles, history) = inputs(matrix_dir)?;
    let view = View::new(compat, &profiles, &history);
    crate::util::write_atomic(&matrix_dir.join(COMPATIBILITY), markdown(&view).as_bytes())
}

/// Records a compiled matrix in the history beside it (`model::history::History::record`: its new
/// observations and point releases, stamped with its `generated` date); returns the entries added.
pub fn record_history(matrix_dir: &Path, compat: &Compat) -> Result<usize> {
    let path = matrix_dir.join(HISTORY);
    let mut history = model::history::load(&path)?;
    let added = history.record(compat);
    if added > 0 || !path.exists() {
        crate::util::write_atomic(&path, history.to_toml().as_bytes())?;
    }
    Ok(added)
}

pub fn default_html_dir(root: &Path) -> PathBuf {
    root.join("target/report")
}

pub fn symbol(v: Verdict) -> &'static str {
    match v {
        Verdict::Expected => "✅",
        Verdict::Unexpected => "❌",
        Verdict::Unsupported => "➖",
        Verdict::Skipped => "⏭️",
        Verdict::Flaky => "🎲",
        Verdict::Error => "⚠️",
        Verdict::Hung => "⏳",
        Verdict::Crashed => "💥",
        Verdict::Missing => "❔",
    }
}

/// The page's verdict marks: one character each, in fonts every browser has (DejaVu included), so
/// that a verdict reads without its colour.
fn mark(v: Verdict) -> &'static str {
    match v {
        Verdict::Expected => "✓",
        Verdict::Unexpected => "✗",
        Verdict::Unsupported => "–",
        Verdict::Skipped => "s",
        Verdict::Flaky => "≈",
        Verdict::Error => "!",
        Verdict::Hung => "h",
        Verdict::Crashed => "c",
        Verdict::Missing => "?",
    }
}

fn meaning(v: Verdict) -> &'static str {
    match v {
        Verdict::Expected => "matches the expectation for that kernel version",
        Verdict::Unexpected => "differs from the expectation: a finding",
        Verdict::Unsupported => "a prerequisite is missing on that kernel",
        Verdict::Skipped => "a prerequisite of the machine is missing (not the kernel's); nothing learnt",
        Verdict::Flaky => "repeated runs observed different things",
        Verdict::Error => "the harness failed; nothing learnt",
        Verdict::Hung => "the probe's watchdog fired",
        Verdict::Crashed => "the probe died from a signal",
        Verdict::Missing => "no result arrived (see the reason)",
    }
}

fn outcome_symbol(o: Outcome) -> &'static str {
    match o {
        Outcome::Satisfies => "✅",
        Outcome::Violates => "❌",
        Outcome::NotChecked => "❔",
    }
}

/// Table-safe text: no pipes or newlines, and at most `max` characters.
fn cell_text(s: &str, max: usize) -> String {
    short(&s.replace('|', "\\|"), max)
}

/// One line of at most `max` characters.
fn short(s: &str, max: usize) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}

fn families(compat: &Compat) -> BTreeMap<&str, Vec<&str>> {
    let mut f: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, b) in &compat.behaviours {
        f.entry(b.family.as_str()).or_default().push(id.as_str());
    }
    f
}

/// A behaviour whose observation is a set of names (features, ioctls): its expectation says
/// `includes:` somewhere, or every kernel observed a list of upper-case names (`WAKE COPY
/// ZEROPAGE`; an unnamed bit reads `bitN`), some more than one. Its cells are shown against the
/// kernel before it, its names on a timeline.
fn is_set_valued(b: &model::Behaviour) -> bool {
    let facts: Vec<&str> = b.cells.values().filter(|c| lists_names(c)).map(|c| c.observed.as_str()).collect();
    b.expectation.iter().any(|r| matches!(r.parsed(), Ok(Expect::Includes(_))))
        || (facts.iter().all(|o| is_name_list(o)) && facts.iter().any(|o| o.split_whitespace().count() > 1))
}

fn is_name_list(s: &str) -> bool {
    let name = |w: &str| {
        w.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            || w.strip_prefix("bit").is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    };
    !s.trim().is_empty() && s.split_whitespace().all(name)
}

/// The names added and removed between two name lists (`+MOVE`, `−RWP`), if both are lists that
/// differ.
fn name_changes(old: &str, new: &str) -> Option<Vec<String>> {
    let many = |s: &str| s.split_whitespace().nth(1).is_some();
    if !(is_name_list(old) && is_name_list(new) && (many(old) || many(new))) {
        return None;
    }
    let (o, n): (Vec<&str>, Vec<&str>) = (old.split_whitespace().collect(), new.split_whitespace().collect());
    let mut parts: Vec<String> = n.iter().filter(|w| !o.contains(w)).map(|w| format!("+{w}")).collect();
    parts.extend(o.iter().filter(|w| !n.contains(w)).map(|w| format!("−{w}")));
    (!parts.is_empty()).then_some(parts)
}

/// How an observation changed: `` `+MOVE +POISON` `` for name lists, else `` `old` → `new` ``.
fn change_text(old: &str, new: &str) -> String {
    match name_changes(old, new) {
        Some(parts) => format!("`{}`", parts.join(" ")),
        None => format!("`{}` → `{}`", short(old, 60), short(new, 60)),
    }
}

/// A cell whose observation is a fact about the kernel's names (not an errno of a failed probe).
fn lists_names(c: &Cell) -> bool {
    matches!(c.verdict, Verdict::Expected | Verdict::Unexpected)
}

/// One finding group: a behaviour, a kind and a claim, with the kernels it holds on by what they
/// observed.
pub struct FindingGroup<'a> {
    pub behaviour: &'a str,
    pub kind: Kind,
    pub claim: String,
    pub source: String,
    /// `(observed, kernels)` in the order first met (kernels in version order).
    pub observed: Vec<(String, Vec<String>)>,
}

/// The names of a set-valued behaviour by kernel: each name, the first kernel (in version order)
/// that has it, and every kernel that has it.
pub struct Timeline<'a> {
    pub behaviour: &'a str,
    pub names: Vec<(String, Vec<&'a str>)>,
}

/// Everything the report shows, computed once for both renderings.
pub struct View<'a> {
    pub compat: &'a Compat,
    pub history: &'a History,
    /// Kernel columns in version order.
    pub order: Vec<&'a str>,
    pub profiles: Vec<(&'a Profile, BTreeMap<&'a str, model::profile::KernelCheck<'a>>)>,
    pub findings: Vec<FindingGroup<'a>>,
    pub timelines: Vec<Timeline<'a>>,
    pub changes: Vec<model::history::Change>,
    pub moves: Vec<(String, String, String)>,
    /// The behaviours observed differently along the kernel versions (history included), with
    /// their stretches.
    pub stretches: Vec<(&'a str, Vec<model::history::Stretch>)>,
    /// Where behaviours change along the kernel versions, step by step.
    pub steps: Vec<Step<'a>>,
}

/// Two neighbouring points along the kernel versions (`(version, kernel)`, history included)
/// between which behaviours changed, and those changes: `(behaviour, before, after)`.
pub struct Step<'a> {
    pub before: (String, String),
    pub after: (String, String),
    pub changes: Vec<(&'a str, String, String)>,
}

impl<'a> View<'a> {
    pub fn new(compat: &'a Compat, profiles: &'a [Profile], history: &'a History) -> View<'a> {
        let order = by_version(&compat.kernels);
        let profiles = profiles
            .iter()
            .map(|p| {
                let per: BTreeMap<&str, _> = order
                    .iter()
                    .map(|k| (*k, p.check(|id| compat.behaviours.get(id).and_then(|b| b.cells.get(*k)))))
                    .collect();
                (p, per)
            })
            .collect();
        let timelines = compat
            .behaviours
            .iter()
            .filter(|(_, b)| is_set_valued(b))
            .map(|(id, b)| {
                let mut names: Vec<(String, Vec<&str>)> = Vec::new();
                for k in &order {
                    let Some(c) = b.cells.get(*k).filter(|c| lists_names(c)) else { continue };
                    for word in c.observed.split_whitespace() {
                        match names.iter_mut().find(|(n, _)| n == word) {
                            Some((_, ks)) => ks.push(k),
                            None => names.push((word.to_string(), vec![k])),
                        }
                    }
                }
                Timeline { behaviour: id.as_str(), names }
            })
            .collect();
        let stretches: Vec<(&str, Vec<model::history::Stretch>)> = compat
            .behaviours
            .keys()
            .map(|id| (id.as_str(), history.stretches(compat, id)))
            .filter(|(_, s)| s.len() > 1)
            .collect();
        let mut steps: Vec<Step<'_>> = Vec::new();
        for (id, s) in &stretches {
            for pair in s.windows(2) {
                let before = pair[0].points.last().expect("a stretch has points").clone();
                let after = pair[1].points[0].clone();
                let change = (*id, pair[0].observed.clone(), pair[1].observed.clone());
                match steps.iter_mut().find(|x| x.before == before && x.after == after) {
                    Some(x) => x.changes.push(change),
                    None => steps.push(Step { before, after, changes: vec![change] }),
                }
            }
        }
        let at = |(v, k): &(String, String)| (v.parse::<model::version::KernelVersion>().ok(), k.clone());
        steps.sort_by_key(|x| (at(&x.before), at(&x.after)));
        View {
            compat,
            history,
            order,
            profiles,
            findings: group_findings(compat, &findings(compat)),
            timelines,
            changes: history.changes(compat),
            moves: history.moves(compat),
            stretches,
            steps,
        }
    }

    fn label(&self, kernel: &str) -> String {
        self.compat.kernels.get(kernel).map_or_else(|| kernel.to_string(), version_label)
    }

    /// A set of kernels in words (`every kernel (7)`, `5.10.262 to 6.1.192 (a, b)`).
    fn kernels(&self, set: &[impl AsRef<str>]) -> String {
        describe(&self.compat.kernels, |k| set.iter().any(|s| s.as_ref() == k))
    }

    /// A set-valued cell, short: how many names, and what changed from the kernel before it (in
    /// version order) that listed names: `13 (+4 -0 vs 5.10.262)`, with the added and removed.
    fn set_cell(&self, id: &str, kernel: &str) -> Option<(String, Vec<String>, Vec<String>)> {
        let b = self.compat.behaviours.get(id).filter(|b| is_set_valued(b))?;
        let c = b.cells.get(kernel).filter(|c| lists_names(c))?;
        let at = self.order.iter().position(|k| *k == kernel)?;
        let words: Vec<&str> = c.observed.split_whitespace().collect();
        let before = self.order[..at]
            .iter()
            .rev()
            .find_map(|k| b.cells.get(*k).filter(|c| lists_names(c)).map(|c| (k, c)));
        Some(match before {
            None => (format!("{} listed", words.len()), Vec::new(), Vec::new()),
            Some((k, prev)) => {
                let old: Vec<&str> = prev.observed.split_whitespace().collect();
                let added: Vec<String> =
                    words.iter().filter(|w| !old.contains(w)).map(|w| w.to_string()).collect();
                let removed: Vec<String> =
                    old.iter().filter(|w| !words.contains(w)).map(|w| w.to_string()).collect();
                let diff = if added.is_empty() && removed.is_empty() {
                    format!("same as {}", self.label(k))
                } else {
                    format!("+{} −{} vs {}", added.len(), removed.len(), self.label(k))
                };
                (format!("{} ({diff})", words.len()), added, removed)
            }
        })
    }

    /// The date of the previous matrix the history knows (its newest entry before this one).
    fn previous_matrix(&self) -> Option<&str> {
        self.history
            .behaviours
            .values()
            .flatten()
            .map(|e| e.first_seen.as_str())
            .filter(|d| *d < self.compat.generated.as_str())
            .max()
    }
}

/// Findings grouped: one per behaviour, kind and claim, with every kernel it holds on.
fn group_findings<'a>(compat: &'a Compat, all: &[Finding]) -> Vec<FindingGroup<'a>> {
    let order = by_version(&compat.kernels);
    let mut out: Vec<FindingGroup<'a>> = Vec::new();
    for kind in [Kind::Documentation, Kind::Expectation, Kind::Flaky] {
        for (id, _) in compat.behaviours.iter() {
            for k in &order {
                for f in all.iter().filter(|f| f.kind == kind && &f.behaviour == id && f.kernel == *k) {
                    let group = match out
                        .iter_mut()
                        .find(|g| g.behaviour == id && g.kind == kind && g.claim == f.claim)
                    {
                        Some(g) => g,
                        None => {
                            out.push(FindingGroup {
                                behaviour: id.as_str(),
                                kind: kind.clone(),
                                claim: f.claim.clone(),
                                source: f.source.clone(),
                                observed: Vec::new(),
                            });
                            out.last_mut().expect("just pushed")
                        }
                    };
                    match group.observed.iter_mut().find(|(o, _)| *o == f.observed) {
                        Some((_, ks)) => ks.push(f.kernel.clone()),
                        None => group.observed.push((f.observed.clone(), vec![f.kernel.clone()])),
                    }
                }
            }
        }
    }
    out
}

/// The names an `includes:` claim lists that an observation lacks (empty for other claims).
fn lacking(claim: &str, observed: &str) -> Vec<String> {
    let Some((_, names)) = claim.split_once("includes:") else { return Vec::new() };
    let have: Vec<&str> = observed.split_whitespace().collect();
    names.split_whitespace().filter(|n| !have.contains(n)).map(String::from).collect()
}

fn kind_title(kind: &Kind) -> &'static str {
    match kind {
        Kind::Documentation => "Documentation mismatches",
        Kind::Expectation => "Unexpected",
        Kind::Flaky => "Flaky (repeated runs disagreed)",
    }
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Documentation => "documentation",
        Kind::Expectation => "expectation",
        Kind::Flaky => "flaky",
    }
}

/// The profiles section: a verdict per profile and kernel, then what each profile lacks where,
/// each need once with the kernels as ranges.
fn profiles_markdown(v: &View<'_>) -> String {
    let mut md = String::from("\n## Can I run it here? Profiles\n\n");
    if v.profiles.is_empty() {
        md += "No profile in `profiles/`.\n";
        return md;
    }
    md += "What a piece of software needs (`profiles/<name>.toml`), checked on every kernel: ✅ satisfies, \
           ❌ violates, ❔ not checked (a needed behaviour said nothing about that kernel). Check a profile with \
           `cargo xtask check NAME`, or on a production host with `cargo xtask check NAME --host`.\n\n| profile |";
    for k in &v.order {
        let _ = write!(md, " {k} ({}) |", v.label(k));
    }
    md += "\n|---|";
    md += &"---|".repeat(v.order.len());
    md += "\n";
    for (p, per) in &v.profiles {
        let _ = write!(md, "| [{}](../profiles/{}.toml) |", p.name, p.name);
        for k in &v.order {
            let check = &per[k];
            let n = check.needs.iter().filter(|c| c.status != Status::Met).count();
            let _ = write!(
                md,
                " {} {}{} |",
                outcome_symbol(check.outcome),
                check.outcome,
                if n > 0 { format!(" ({n})") } else { String::new() }
            );
        }
        md += "\n";
    }
    for (p, per) in &v.profiles {
        let _ = writeln!(md, "\n**{}**: {}", p.name, p.summary);
        let mut any = false;
        for need in &p.needs {
            let mut by_observed: Vec<(Status, String, Option<String>, Vec<&str>)> = Vec::new();
            for k in &v.order {
                let Some(c) = per[k].needs.iter().find(|c| c.need.behaviour == need.behaviour) else {
                    continue;
                };
                if c.status == Status::Met {
                    continue;
                }
                match by_observed.iter_mut().find(|(s, o, _, _)| *s == c.status && *o == c.observed) {
                    Some((_, _, _, ks)) => ks.push(k),
                    None => by_observed.push((c.status, c.observed.clone(), c.reason.clone(), vec![k])),
                }
            }
            for (status, observed, reason, ks) in by_observed {
                any = true;
                let what = match status {
                    Status::Violated => format!("observed `{}`", short(&observed, 80)),
                    _ => format!("not checked ({})", short(reason.as_deref().unwrap_or(""), 120)),
                };
                let _ = writeln!(
                    md,
                    "- `{}` needs `{}`: {what} on {}. Why: {}",
                    need.behaviour,
                    short(&need.expect, 100),
                    v.kernels(&ks),
                    need.why
                );
            }
        }
        if !any {
            md += "- Every kernel satisfies it.\n";
        }
    }
    md
}

/// The findings section: every behaviour where kernels contradict the documentation or their
/// expectation, once, with the kernels as ranges and the documented claim quoted.
fn findings_markdown(v: &View<'_>) -> String {
    let mut md = String::from("\n## Findings\n");
    for kind in [Kind::Documentation, Kind::Expectation, Kind::Flaky] {
        let _ = write!(md, "\n### {}\n\n", kind_title(&kind));
        let groups: Vec<&FindingGroup<'_>> = v.findings.iter().filter(|g| g.kind == kind).collect();
        if groups.is_empty() {
            md += "None observed.\n";
            continue;
        }
        for g in groups {
            let b = &v.compat.behaviours[g.behaviour];
            let seen: Vec<String> = g
                .observed
                .iter()
                .map(|(o, ks)| match lacking(&g.claim, o) {
                    lacks if lacks.is_empty() => format!("`{}` on {}", short(o, 60), v.kernels(ks)),
                    lacks => format!("a list without `{}` on {}", lacks.join(" "), v.kernels(ks)),
                })
                .collect();
            let _ = writeln!(
                md,
                "- **`{}`**: {}. Claimed: {}. Observed {}.",
                g.behaviour,
                b.summary,
                short(&g.claim, 200),
                seen.join("; ")
            );
            if !g.source.is_empty() {
                let _ = writeln!(md, "  > {}", g.source);
            }
            if !b.notes.is_empty() {
                let _ = writeln!(md, "\n  {}", b.notes);
            }
            let _ = writeln!(md, "\n  What the kernel does, by its source: {}", b.citation);
        }
    }
    md
}

/// What changed since the previous matrix (from the history), and where behaviours change along
/// the kernel versions.
fn changes_markdown(v: &View<'_>) -> String {
    let mut md = String::from("\n## What changed\n\n");
    match v.previous_matrix() {
        None => {
            md +=
                "The history (`matrix/history.toml`) starts with this matrix: nothing to compare with yet.\n"
        }
        Some(date) => {
            let _ = writeln!(md, "Since the previous matrix ({date}):\n");
            for (k, before, now) in &v.moves {
                let _ = writeln!(md, "- {k} moved from {before} to {now}.");
            }
            for c in &v.changes {
                let _ = writeln!(
                    md,
                    "- `{}` on {}: `{}` on {} (first seen {}) → `{}` on {}.",
                    c.behaviour,
                    c.kernel,
                    short(&c.before.observed, 80),
                    c.before.version,
                    c.before.first_seen,
                    short(&c.observed, 80),
                    c.version
                );
            }
            if v.changes.is_empty() {
                md += "- No observation changed.\n";
            }
        }
    }
    md += "\nAlong the kernel versions (every point release the history recorded, in version order), where \
           behaviours change:\n\n";
    if v.steps.is_empty() {
        md += "Nowhere: every kernel observed the same thing for every behaviour.\n";
    }
    for step in &v.steps {
        let _ = writeln!(
            md,
            "- Between {} ({}) and {} ({}):",
            step.before.0, step.before.1, step.after.0, step.after.1
        );
        for (id, old, new) in &step.changes {
            let _ = writeln!(md, "  - `{id}`: {}", change_text(old, new));
        }
    }
    md
}

/// The names of set-valued behaviours (features, ioctls) by kernel.
/// The configuration axis: the columns the project built, grouped by the source they share, each
/// with what differs from the base configuration and the behaviours it observed differently from
/// the base build of the same source.
fn configurations_markdown(v: &View<'_>) -> String {
    let compat = v.compat;
    let mut by_source: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for id in &v.order {
        if let Some(b) = &compat.kernels[*id].build {
            by_source.entry(b.source.as_str()).or_default().push(id);
        }
    }
    if by_source.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "\n## Configurations\n\nKernels built from Debian's source packages (`cargo xtask images build`): columns that \
         share a source differ only in their configuration, the base one (`images/configs/base.config`) and what \
         each changes in it. Behaviours listed were observed differently from the base build of the same source.\n",
    );
    for (source, ids) in by_source {
        let _ = write!(md, "\n`{source}`\n\n| kernel | differs from the base configuration | observed differently |\n|---|---|---|\n");
        let base =
            ids.iter().find(|id| compat.kernels[**id].build.as_ref().is_some_and(|b| b.differs.is_empty()));
        for id in &ids {
            let b = compat.kernels[*id].build.as_ref().expect("grouped by build");
            let differs = if b.differs.is_empty() {
                "(the base configuration)".to_string()
            } else {
                b.differs.join(", ")
            };
            let changed: Vec<String> = match base {
                Some(base) if base != id => compat
                    .behaviours
                    .iter()
                    .filter(|(_, beh)| {
                        let (a, c) = (beh.cells.get(*base), beh.cells.get(*id));
                        a.zip(c).is_some_and(|(a, c)| a.observed != c.observed || a.verdict != c.verdict)
                    })
                    .map(|(bid, _)| format!("`{bid}`"))
                    .collect(),
                _ => Vec::new(),
            };
            let changed = match changed.len() {
                0 if base.is_some_and(|b| b != id) => "none".to_string(),
                0 => "-".to_string(),
                n if n > 12 => format!("{n} behaviours: {} ...", changed[..12].join(", ")),
                _ => changed.join(", "),
            };
            let _ = writeln!(md, "| {id} | {differs} | {changed} |");
        }
    }
    md
}

/// One place where a kernel's own selftest case and one of our behaviours speak about the same
/// thing and disagree.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Disagreement {
    pub kernel: String,
    pub selftest: String,
    pub behaviour: String,
    /// How they disagree, in one sentence.
    pub how: String,
}

/// Where a kernel's own selftest and one of our behaviours speak about the same thing (the
/// behaviour's `selftests`, selftest case ids by their start, declared with it in the suite's
/// catalogue) and disagree on a kernel:
///
/// - the selftest failed where our behaviour observed the kernel doing what it is documented to
///   (`expected`);
/// - the selftest passed where our behaviour found the kernel lacking a part of userfaultfd
///   (`unsupported`, for a reason naming userfaultfd or a `UFFD*` feature: a missing
///   MADV_POPULATE_* or hugetlbfs is a prerequisite of our probe, not something the selftest
///   spoke about).
///
/// Cells that learnt nothing (skipped for the machine, missing, error) disagree with nothing, and
/// neither does a selftest's skip: "feature missing" is what the selftest was told by UFFDIO_API,
/// and our `expected` cell may be the same absence (`wp.unpopulated` on a kernel built without PTE
/// markers: "not offered", as its configuration promises), which a verdict cannot tell apart.
pub fn selftest_disagreements(compat: &Compat) -> Vec<Disagreement> {
    let mut out = Vec::new();
    for (case, b) in compat.behaviours.iter().filter(|(_, b)| b.family == model::data::SELFTESTS) {
        let ours: Vec<&str> = compat
            .behaviours
            .iter()
            .filter(|(_, o)| o.selftests.iter().any(|prefix| case.starts_with(prefix.as_str())))
            .map(|(id, _)| id.as_str())
            .collect();
        for (kernel, cell) in &b.cells {
            for id in &ours {
                let Some(our) = compat.behaviours.get(*id).and_then(|o| o.cells.get(kernel)) else {
                    continue;
                };
                let said = cell
                    .details
                    .get("selftest")
                    .map(|d| d.to_string().trim_matches('"').to_string())
                    .or_else(|| cell.reason.clone())
                    .unwrap_or_default();
                let lacks_uffd =
                    our.reason.as_deref().is_some_and(|r| r.contains("userfaultfd") || r.contains("UFFD"));
                let how = match (cell.observed.as_str(), our.verdict) {
                    ("fail", Verdict::Expected) => {
                        format!(
                            "the selftest failed ({said}) where `{id}` observed `{}`, as expected",
                            our.observed
                        )
                    }
                    ("pass", Verdict::Unsupported) if lacks_uffd => format!(
                        "the selftest passed where `{id}` found the kernel lacking it: {}",
                        our.reason.as_deref().unwrap_or("")
                    ),
                    _ => continue,
                };
                out.push(Disagreement {
                    kernel: kernel.clone(),
                    selftest: case.clone(),
                    behaviour: id.to_string(),
                    how,
                });
            }
        }
    }
    out
}

/// The kernels' own selftests: where each column's came from (or why it has none).
fn selftest_sources(v: &View<'_>) -> Vec<(String, String)> {
    v.order
        .iter()
        .filter_map(|k| v.compat.kernels[*k].selftests.as_ref().map(|s| (k.to_string(), s.clone())))
        .collect()
}

/// Pass, fail and skip counts of a kernel's selftest cases.
fn selftest_counts(compat: &Compat, kernel: &str) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    for b in compat.behaviours.values().filter(|b| b.family == model::data::SELFTESTS) {
        match b.cells.get(kernel).map(|c| c.observed.as_str()) {
            Some("pass") => counts.0 += 1,
            Some("fail") => counts.1 += 1,
            Some("skip") => counts.2 += 1,
            _ => {}
        }
    }
    counts
}

fn selftests_markdown(v: &View<'_>) -> String {
    let compat = v.compat;
    let sources = selftest_sources(v);
    if sources.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "\n## The kernels' own selftests\n\nEach kernel's userfaultfd selftests (`uffd-unit-tests` and `uffd-stress` from \
         tools/testing/selftests/mm, or `userfaultfd` from tools/testing/selftests/vm before 6.4), built from its own Debian \
         source package and run in its guest after the suite: the `selftests` rows below, one per case.\n\n\
         | kernel | pass | fail | skip | built from |\n|---|---|---|---|---|\n",
    );
    for (k, source) in &sources {
        let (pass, fail, skip) = selftest_counts(compat, k);
        let _ = writeln!(md, "| {k} | {pass} | {fail} | {skip} | {} |", cell_text(source, 200));
    }
    let disagree = selftest_disagreements(compat);
    if disagree.is_empty() {
        md += "\nWhere a selftest and one of our behaviours speak about the same thing, they agree on every kernel.\n";
    } else {
        md += "\nWhere a selftest and one of our behaviours speak about the same thing and disagree:\n\n\
               | kernel | selftest | behaviour | how |\n|---|---|---|---|\n";
        for d in disagree {
            let _ = writeln!(
                md,
                "| {} | `{}` | `{}` | {} |",
                d.kernel,
                d.selftest,
                d.behaviour,
                cell_text(&d.how, 300)
            );
        }
    }
    md
}

fn timelines_markdown(v: &View<'_>) -> String {
    let mut md = String::new();
    if v.timelines.is_empty() {
        return md;
    }
    md += "\n## Features and ioctls by kernel\n\nWhich name each kernel lists, by the first kernel (in version order) that has it; \
           the tables below show these cells only as counts and the change from the kernel before.\n";
    for t in &v.timelines {
        let _ = write!(md, "\n### `{}`\n\n| name | first in |", t.behaviour);
        for k in &v.order {
            let _ = write!(md, " {} |", v.label(k));
        }
        md += "\n|---|---|";
        md += &"---|".repeat(v.order.len());
        md += "\n";
        for (name, ks) in &t.names {
            let _ = write!(md, "| {name} | {} |", v.label(ks[0]));
            for k in &v.order {
                md += if ks.contains(k) { " ● |" } else { " |" };
            }
            md += "\n";
        }
    }
    md
}

pub fn markdown(v: &View<'_>) -> String {
    let compat = v.compat;
    let mut md = String::from("# userfaultfd behaviour compatibility\n\n");
    let _ = writeln!(
        md,
        "Generated by `cargo xtask report` from `matrix/compat.toml` (matrix of {}), `matrix/history.toml` and \
         `profiles/`; do not edit. Every cell was observed on that kernel by the uffd-conformance suite: its \
         verdict, then the observed value. Kernels are in version order. The full details, expectation tables and \
         citations are in `compat.toml` and on the HTML report.\n",
        compat.generated
    );
    md += "Legend: ";
    md += &Verdict::ALL
        .iter()
        .map(|v| format!("{} {v} ({})", symbol(*v), meaning(*v)))
        .collect::<Vec<_>>()
        .join("; ");
    md += ".\n";
    md += &profiles_markdown(v);
    md += &findings_markdown(v);
    md += &changes_markdown(v);
    md += "\n## Kernels\n\n| kernel | version | release | accel | source | date | status |\n|---|---|---|---|---|---|---|\n";
    for id in &v.order {
        let k = &compat.kernels[*id];
        let status = match &k.reason {
            Some(r) => format!("incomplete: {}", cell_text(r, 120)),
            None => "complete".to_string(),
        };
        let _ = writeln!(
            md,
            "| {id} | {} | {} | {} | {} | {} | {status} |",
            v.label(id),
            k.release,
            k.accel,
            cell_text(&k.source, 90),
            k.date
        );
    }
    if let Some(go) = go_line(compat) {
        let _ = writeln!(md, "\n{go}");
    }
    md += &configurations_markdown(v);
    md += &selftests_markdown(v);
    md += &timelines_markdown(v);
    for (family, ids) in families(compat) {
        let _ = write!(md, "\n## {family}\n\n| behaviour |");
        for k in &v.order {
            let _ = write!(md, " {k} |");
        }
        md += "\n|---|";
        md += &"---|".repeat(v.order.len());
        md += "\n";
        for id in ids {
            let b = &compat.behaviours[id];
            let _ = write!(md, "| `{id}` {} |", cell_text(&b.summary, 100));
            for k in &v.order {
                match b.cells.get(*k) {
                    Some(c) => {
                        let shown = match v.set_cell(id, k) {
                            Some((short, _, _)) => short,
                            None => cell_text(&c.observed, 48),
                        };
                        let _ = write!(md, " {} {} |", symbol(c.verdict), shown);
                    }
                    None => md += " |",
                }
            }
            md += "\n";
        }
    }
    md
}

/// The distinct observations of a behaviour's cells that observed the kernel, most common first
/// (ties: the one the newest kernel made first): the overview colours a cell by its index here.
fn distinct_observations(v: &View<'_>, id: &str) -> Vec<String> {
    let b = &v.compat.behaviours[id];
    let mut counts: Vec<(String, usize, usize)> = Vec::new();
    for (newest, k) in v.order.iter().rev().enumerate() {
        let Some(c) = b.cells.get(*k).filter(|c| observes_the_kernel(c.verdict)) else { continue };
        match counts.iter_mut().find(|(o, _, _)| *o == c.observed) {
            Some((_, n, _)) => *n += 1,
            None => counts.push((c.observed.clone(), 1, newest)),
        }
    }
    counts.sort_by_key(|(_, n, newest)| (std::cmp::Reverse(*n), *newest));
    counts.into_iter().map(|(o, _, _)| o).collect()
}

/// Which Go release ran the behaviours with a Go runtime in the loop (`RunInfo.go`), on which
/// columns; `None` when no column ran one.
pub fn go_line(compat: &Compat) -> Option<String> {
    let mut by_release: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, k) in &compat.kernels {
        if let Some(go) = &k.go {
            by_release.entry(go.as_str()).or_default().push(id.as_str());
        }
    }
    if by_release.is_empty() {
        return None;
    }
    let all =
        by_release.len() == 1 && by_release.values().next().is_some_and(|v| v.len() == compat.kernels.len());
    let runs: Vec<String> = by_release
        .iter()
        .map(
            |(go, on)| {
                if all {
                    format!("{go} on every kernel")
                } else {
                    format!("{go} on {}", on.join(", "))
                }
            },
        )
        .collect();
    Some(format!(
        "Go runtime in the loop (the Go workload of the `stw.go_*` behaviours and `remove.pending_go_gc`): {}.",
        runs.join("; ")
    ))
}

/// The page's data: the view, as the page's script renders it.
fn page_data(v: &View<'_>) -> Value {
    let compat = v.compat;
    let kernels: Vec<Value> = v
        .order
        .iter()
        .map(|k| {
            let i = &compat.kernels[*k];
            json!({"id": k, "label": v.label(k), "release": i.release, "version": i.version, "accel": i.accel,
                   "source": i.source, "date": i.date, "reason": i.reason, "host": i.accel == "none",
                   "config": i.config.as_ref().map(|c| c.source.clone()),
                   "build": i.build.as_ref().map(|b| json!({"source": b.source, "differs": b.differs}))})
        })
        .collect();
    let behaviours: Vec<Value> = compat
        .behaviours
        .iter()
        .map(|(id, b)| {
            let values = distinct_observations(v, id);
            let cells: serde_json::Map<String, Value> = v
                .order
                .iter()
                .filter_map(|k| b.cells.get(*k).map(|c| (k, c)))
                .map(|(k, c)| {
                    let value = observes_the_kernel(c.verdict).then(|| values.iter().position(|o| *o == c.observed));
                    let set = v.set_cell(id, k);
                    let history: Vec<&model::history::Entry> = v.history.of(id, k).collect();
                    (
                        k.to_string(),
                        json!({"observed": c.observed, "verdict": c.verdict, "mark": mark(c.verdict), "reason": c.reason,
                               "expected": c.expected, "details": c.details, "value": value.flatten(),
                               "short": set.as_ref().map(|s| s.0.clone()), "added": set.as_ref().map(|s| s.1.clone()),
                               "removed": set.as_ref().map(|s| s.2.clone()), "history": history}),
                    )
                })
                .collect();
            let stretches: Vec<Value> = v
                .stretches
                .iter()
                .filter(|(s, _)| s == id)
                .flat_map(|(_, s)| s.iter().map(|s| json!({"observed": s.observed, "points": s.points})))
                .collect();
            json!({"id": id, "family": b.family, "summary": b.summary, "observes": b.observes, "expectation": b.expectation,
                   "documented": b.documented, "citation": b.citation, "notes": b.notes, "values": values, "cells": cells,
                   "set": is_set_valued(b), "stretches": stretches})
        })
        .collect();
    let profiles: Vec<Value> = v
        .profiles
        .iter()
        .map(|(p, per)| {
            let verdicts: serde_json::Map<String, Value> = per
                .iter()
                .map(|(k, check)| {
                    let problems: Vec<Value> = check
                        .needs
                        .iter()
                        .filter(|c| c.status != Status::Met)
                        .map(|c| {
                            json!({"behaviour": c.need.behaviour, "violated": c.status == Status::Violated,
                                   "observed": c.observed, "reason": c.reason, "expect": c.need.expect, "why": c.need.why})
                        })
                        .collect();
                    (k.to_string(), json!({"outcome": check.outcome.as_str(), "problems": problems}))
                })
                .collect();
            let needs: Vec<Value> =
                p.needs.iter().map(|n| json!({"behaviour": n.behaviour, "expect": n.expect, "why": n.why})).collect();
            json!({"name": p.name, "summary": p.summary, "source": p.source, "path": p.path, "needs": needs, "kernels": verdicts})
        })
        .collect();
    let findings: Vec<Value> = v
        .findings
        .iter()
        .map(|g| {
            let observed: Vec<Value> = g
                .observed
                .iter()
                .map(|(o, ks)| json!({"value": o, "kernels": ks, "where": v.kernels(ks), "lacks": lacking(&g.claim, o)}))
                .collect();
            json!({"behaviour": g.behaviour, "kind": kind_name(&g.kind), "claim": g.claim, "source": g.source,
                   "observed": observed})
        })
        .collect();
    let timelines: Vec<Value> = v
        .timelines
        .iter()
        .map(|t| {
            let names: Vec<Value> = t
                .names
                .iter()
                .map(|(n, ks)| json!({"name": n, "first": v.label(ks[0]), "kernels": ks}))
                .collect();
            json!({"behaviour": t.behaviour, "names": names})
        })
        .collect();
    let changes: Vec<Value> = v
        .changes
        .iter()
        .map(|c| {
            json!({"behaviour": c.behaviour, "kernel": c.kernel, "before": c.before, "observed": c.observed,
                   "version": c.version, "verdict": c.verdict})
        })
        .collect();
    let steps: Vec<Value> = v
        .steps
        .iter()
        .map(|x| {
            let changes: Vec<Value> = x
                .changes
                .iter()
                .map(|(id, old, new)| json!({"behaviour": id, "old": old, "new": new, "names": name_changes(old, new)}))
                .collect();
            json!({"before": x.before, "after": x.after, "changes": changes})
        })
        .collect();
    let legend: Vec<Value> = Verdict::ALL
        .iter()
        .map(|x| json!({"verdict": x.as_str(), "mark": mark(*x), "meaning": meaning(*x)}))
        .collect();
    let selftests: Vec<Value> = selftest_sources(v)
        .into_iter()
        .map(|(k, source)| {
            let (pass, fail, skip) = selftest_counts(compat, &k);
            json!({"kernel": k, "source": source, "pass": pass, "fail": fail, "skip": skip})
        })
        .collect();
    let disagreements = selftest_disagreements(compat);
    json!({"generated": compat.generated, "kernels": kernels, "behaviours": behaviours, "profiles": profiles,
           "findings": findings, "timelines": timelines,
           "selftests": {"kernels": selftests, "disagreements": disagreements},
           "changes": {"previous": v.previous_matrix(), "cells": changes, "moves": v.moves, "steps": steps},
           "legend": legend, "go": go_line(compat)})
}

/// The page: the view as JSON, rendered by a small script (see the module comment for what it
/// shows). Its URL fragment is a permalink (`#ID` a behaviour, `#ID/KERNEL` a cell, which opens
/// its details) or the filters (`#q=copy&family=remove&differs=1`).
pub fn html(v: &View<'_>) -> Result<String> {
    // Nothing inside the data may close the script element.
    let data = serde_json::to_string(&page_data(v)).context("serialising the matrix")?.replace("</", "<\\/");
    Ok(PAGE.replace("/*DATA*/", &data))
}

const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>userfaultfd behaviour compatibility</title>
<style>
:root{--line:#d0d0d0;--muted:#666}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,"DejaVu Sans",sans-serif;margin:0 auto;padding:0 1.2em 3em;color:#1d1d1d;max-width:1400px}
h1{font-size:1.45em;margin:.8em 0 .2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid var(--line);padding-bottom:.2em}
h3{font-size:1.02em;margin:1.2em 0 .3em}
a{color:#1b5fa8}code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.92em}
.lead{font-size:1.05em;margin:.2em 0 .6em}.muted{color:var(--muted)}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.4em 0}
th,td{border:1px solid var(--line);padding:3px 6px;vertical-align:top}
th{background:#f4f4f4;text-align:left}
.controls{position:sticky;top:0;z-index:5;background:#fff;padding:.5em 0;border-bottom:1px solid var(--line);display:flex;flex-wrap:wrap;gap:.4em 1em;align-items:center}
.controls input[type=search]{font:inherit;padding:.25em .5em;min-width:16em;border:1px solid #999;border-radius:4px}
/* profile verdicts */
table.profiles td.pv{text-align:center;white-space:nowrap;cursor:pointer}
table.profiles th.k{font-weight:normal;font-size:12px;white-space:nowrap}
td.pv.satisfies{background:#dcf3dc}td.pv.violates{background:#f8d0d0;font-weight:600}td.pv.not-checked{background:#eee}
.pv .m{font-weight:700;margin-right:.25em}
.problems{margin:.3em 0 .6em 1.2em;padding:0}.problems li{margin:.15em 0}
details.lacks{margin:.4em 0}details.lacks summary{cursor:pointer}
/* overview */
div.overview{display:flex;flex-wrap:wrap;gap:.6em 2.2em;align-items:flex-start}
table.overview{border-collapse:separate;border-spacing:2px;margin:0}
table.overview th.fam{vertical-align:bottom;text-align:left;font-size:13px;padding-bottom:.2em}
table.overview th,table.overview td{border:0;padding:0;background:none}
table.overview th.k{vertical-align:bottom;background:none;font-weight:normal;font-size:11px;height:10.5em;width:26px}
table.overview th.k span{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;display:inline-block}
table.overview th.k.host span{font-style:italic}
table.overview td.name{font-size:12px;padding-right:.5em;white-space:nowrap;max-width:22em;overflow:hidden;text-overflow:ellipsis}
table.overview td.name a{color:inherit;text-decoration:none}
a.ov{display:block;width:26px;height:20px;line-height:20px;text-align:center;font-size:13px;color:#222;text-decoration:none;border-radius:3px;border:1px solid #0000}
a.ov.unexpected{outline:2px solid #c00;outline-offset:-2px;font-weight:700}
a.ov.nothing,.hatch{background:repeating-linear-gradient(45deg,#fff,#fff 3px,#e2e2e2 3px,#e2e2e2 6px);color:#555}
a.ov.target,td.cell.target{box-shadow:0 0 0 3px #1b5fa8}
.v0{background:#dde7f0}.v1{background:#f6a04d}.v2{background:#a58be0}.v3{background:#4fb3a8}.v4{background:#e5c63c}.v5{background:#e07088}.v6{background:#8fb8e8}.vx{background:#b0b0b0}
.legend{display:flex;flex-wrap:wrap;gap:.2em 1em;font-size:12.5px;margin:.4em 0}
.legend .sw{display:inline-block;min-width:1.5em;text-align:center;border-radius:3px;margin-right:.3em}
/* findings, changes */
li.finding{margin:.5em 0}li.finding blockquote{margin:.3em 0 .3em 1em;padding-left:.6em;border-left:3px solid #ccc;color:#444;font-size:.93em}
.where{font-weight:600}
/* timelines */
table.timeline td.on{text-align:center;color:#1b5fa8}table.timeline td{font-size:12.5px}
/* details */
td.cell{cursor:pointer;max-width:16em;font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;word-break:break-word}
td.cell .mk{font-family:system-ui,"DejaVu Sans",sans-serif;font-weight:700;margin-right:.3em}
td.cell.expected{background:#e6f5e6}td.cell.unexpected{background:#f8c8c8}td.cell.unsupported{background:#eee;color:#555}
td.cell.error,td.cell.crashed{background:#ffe2b0}td.cell.hung{background:#f3d9ff}td.cell.missing{background:#fff;color:#999}
td.cell.skipped{background:#f6f6f6;color:#888;font-style:italic}td.cell.flaky{background:#fde68a}
td.cell small{display:block;color:#555}
tr.behaviour-row.target td.behaviour{box-shadow:inset 4px 0 0 #1b5fa8}
td.behaviour code{font-weight:600}
.hidden{display:none}
#panel{position:fixed;right:1em;bottom:1em;width:36em;max-width:calc(100vw - 2em);max-height:65vh;overflow:auto;background:#fff;border:1px solid #888;
  box-shadow:0 2px 10px #0005;padding:.8em;display:none;font-size:13px;z-index:10}
#panel pre{white-space:pre-wrap;background:#f6f6f6;padding:.4em}
@media (max-width:700px){
  body{padding:0 .6em 3em;font-size:13.5px}
  h1{font-size:1.2em}
  .controls input[type=search]{min-width:0;width:100%}
  table.overview td.name{max-width:9em}
  #panel{left:0;right:0;bottom:0;width:auto;max-width:none;max-height:70vh;border-radius:8px 8px 0 0}
  td.cell{max-width:11em}
  table.profiles th.k{vertical-align:bottom}
  table.profiles th.k span.kl{writing-mode:vertical-rl;transform:rotate(180deg)}
  table.profiles .word,table.profiles .summary{display:none}
  table.profiles{font-size:12px}
  table.profiles th,table.profiles td{padding:2px 3px}
}
</style></head><body>
<h1>userfaultfd behaviour compatibility</h1>
<p class="lead">Can I run my uffd-serving software on this kernel? Find your kind of software below, or check your own
profile with <code>cargo xtask check</code>.</p>
<p id="about" class="muted"></p>
<div class="controls">
 <input type="search" id="q" placeholder="search behaviours, observations, kernels" aria-label="search">
 <label>Family <select id="family"><option value="">all</option></select></label>
 <label><input type="checkbox" id="differs"> only behaviours observed differently across kernels</label>
 <span id="shown" class="muted"></span>
</div>
<section id="profiles-section"><h2 id="profiles">Profiles: can it run here?</h2><div id="profiles-body"></div></section>
<section><h2 id="overview">Overview: every behaviour on every kernel</h2>
<p class="muted">One square per cell. Its colour is which observation the kernel made, per row: the pale one is the most
common, any other colour is a kernel that did something else, so where kernels differ stands out. Its mark is the
verdict (hatched: nothing learnt about the kernel). Select a square for its details; every square and row is a
permalink.</p>
<div class="legend" id="legend"></div>
<div class="overview" id="overview-grid"></div></section>
<section><h2 id="findings">Findings</h2><p class="muted">Where kernels do not do what the documentation (or their expectation) says: one entry per behaviour, with the kernels as ranges in version order.</p><ul id="findings-list"></ul></section>
<section id="selftests-section"><h2 id="selftests">The kernels' own selftests</h2><p class="muted">Each kernel's userfaultfd selftests, built from its own Debian source package and run in its guest after the suite (the <code>selftests</code> rows): their counts, and where a selftest and one of our behaviours speak about the same thing and disagree.</p><div id="selftests-body"></div></section>
<section><h2 id="changes">What changed</h2><div id="changes-body"></div></section>
<section id="timelines-section"><h2 id="timelines">Features and ioctls by kernel</h2><p class="muted">Which name appears where, by the first kernel that has it; the tables below show these cells as counts and the change from the kernel before.</p><div id="timelines-body"></div></section>
<section><h2 id="kernels">Kernels</h2><div class="scroll"><table id="kernels-table"><thead><tr><th>kernel</th><th>version</th><th>release</th><th>accel</th><th>source</th><th>date</th><th>status</th></tr></thead><tbody></tbody></table></div><p id="go"></p></section>
<div id="families"></div>
<div id="panel" role="dialog" aria-live="polite"></div>
<script type="application/json" id="data">/*DATA*/</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const K = D.kernels, B = D.behaviours, byId = new Map(B.map(b => [b.id, b])), kid = new Map(K.map(k => [k.id, k]));
const el = (tag, attrs, ...kids) => { const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) { if (v === null || v === undefined) continue;
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v); }
  for (const k of kids) if (k !== null && k !== undefined && k !== "") e.append(k); return e; };
const code = t => el("code", {}, t);
const link = (hash, ...kids) => el("a", {href: "#" + hash}, ...kids);
const fams = [...new Set(B.map(b => b.family))];
const marks = Object.fromEntries(D.legend.map(l => [l.verdict, l.mark]));
const kernelFact = v => v === "expected" || v === "unexpected" || v === "unsupported";
document.getElementById("about").textContent =
  `Matrix of ${D.generated}: ${B.length} behaviours on ${K.length} kernels, in version order. Every cell was observed on that kernel by the uffd-conformance suite.`;

// Profiles: a verdict per profile and kernel; select one for what it lacks there.
const pb = document.getElementById("profiles-body");
if (!D.profiles.length) pb.append(el("p", {}, "No profile in profiles/."));
else {
  const head = el("tr", {}, el("th", {}, "profile"), ...K.map(k => el("th", {class: "k", title: `${k.id}: ${k.release}`},
    el("span", {class: "kl"}, k.id, el("br"), el("span", {class: "muted"}, k.label)))));
  const body = el("tbody");
  const detail = el("div", {id: "profile-detail"});
  for (const p of D.profiles) {
    const row = el("tr", {}, el("td", {title: p.summary}, el("b", {}, p.name), el("div", {class: "muted summary"}, p.summary)));
    for (const k of K) {
      const v = p.kernels[k.id], cls = v.outcome.replace(" ", "-");
      const m = v.outcome === "satisfies" ? "✓" : v.outcome === "violates" ? "✗" : "?";
      const td = el("td", {class: `pv ${cls}`, "data-profile": p.name, "data-kernel": k.id, "data-outcome": v.outcome,
        title: `${p.name} on ${k.id}: ${v.outcome}`}, el("span", {class: "m"}, m), el("span", {class: "word"}, v.outcome),
        v.problems.length ? ` (${v.problems.length})` : "");
      td.addEventListener("click", () => showProfile(p, k, detail));
      row.append(td);
    }
    body.append(row);
  }
  pb.append(el("div", {class: "scroll"}, el("table", {class: "profiles"}, el("thead", {}, head), body)), detail);
  // What each profile lacks, each need once with its kernels.
  for (const p of D.profiles) {
    const lacking = new Map();
    for (const k of K) for (const pr of p.kernels[k.id].problems) {
      const key = `${pr.behaviour}\u0000${pr.violated}\u0000${pr.observed}`;
      if (!lacking.has(key)) lacking.set(key, {pr, on: []});
      lacking.get(key).on.push(k.id);
    }
    if (!lacking.size) continue;
    const ul = el("ul", {class: "problems"});
    for (const {pr, on} of lacking.values())
      ul.append(el("li", {}, link(pr.behaviour, code(pr.behaviour)), ` needs `, code(pr.expect), `: `,
        pr.violated ? el("span", {}, "observed ", code(pr.observed)) : el("span", {}, `not checked (${pr.reason})`),
        ` on `, el("span", {class: "where"}, on.map(k => `${k} (${kid.get(k).label})`).join(", ")), el("br"),
        el("span", {class: "muted"}, `Why: ${pr.why}`)));
    const where = new Set([...lacking.values()].flatMap(x => x.on));
    pb.append(el("details", {class: "lacks", "data-profile": p.name}, el("summary", {},
      el("b", {}, p.name), ` lacks ${lacking.size} need(s) on ${where.size} kernel(s): ${[...where].join(", ")}`), ul));
  }
}
function showProfile(p, k, into) {
  const v = p.kernels[k.id];
  into.replaceChildren(el("p", {}, el("b", {}, `${p.name} on ${k.id} (${k.label}): ${v.outcome}`), p.source ? el("span", {class: "muted"}, ` (after ${p.source})`) : ""));
  const ul = el("ul", {class: "problems"});
  for (const n of p.needs) {
    const pr = v.problems.find(x => x.behaviour === n.behaviour);
    ul.append(el("li", {}, pr ? (pr.violated ? "✗ " : "? ") : "✓ ", link(`${n.behaviour}/${k.id}`, code(n.behaviour)), " needs ", code(n.expect),
      pr ? (pr.violated ? el("span", {}, ", observed ", code(pr.observed)) : ` (not checked: ${pr.reason})`) : "", el("br"), el("span", {class: "muted"}, n.why)));
  }
  into.append(ul);
}

// The legend: marks and colours.
const lg = document.getElementById("legend");
for (const l of D.legend) lg.append(el("span", {title: l.meaning}, el("span", {class: "sw v0"}, l.mark), `${l.verdict}`));
lg.append(el("span", {}, el("span", {class: "sw v0"}, "\u00a0"), el("span", {class: "sw v1"}, "\u00a0"), el("span", {class: "sw v2"}, "\u00a0"), "first, second, third observation of a row"),
  el("span", {}, el("span", {class: "sw hatch"}, "s"), "nothing learnt about the kernel"));

// The overview: every behaviour on every kernel, coloured by observation, marked by verdict; one
// block per family, side by side where the screen is wide enough.
const ov = document.getElementById("overview-grid");
let overviewCells = 0;
for (const fam of fams) {
  const hrow = el("tr", {}, el("th", {class: "fam"}, fam));
  for (const k of K) hrow.append(el("th", {class: `k${k.host ? " host" : ""}`, title: `${k.id}: ${k.release}${k.host ? " (a host kernel, run directly)" : ""}`}, el("span", {}, `${k.label} ${k.id}`)));
  const ob = el("tbody");
  ov.append(el("table", {class: "overview", "data-family": fam}, el("thead", {}, hrow), ob));
  for (const b of B.filter(b => b.family === fam)) {
    const row = el("tr", {class: "ov-row", "data-id": b.id, "data-family": fam, "data-differs": b.values.length > 1 ? "1" : "0"},
      el("td", {class: "name", title: b.summary}, link(b.id, b.id.slice(fam.length + 1))));
    for (const k of K) {
      const c = b.cells[k.id];
      const colour = !c ? "" : c.value === null ? "nothing" : c.value < 7 ? `v${c.value}` : "vx";
      const a = el("a", {class: `ov ${c ? c.verdict : "missing"} ${colour}`, href: `#${b.id}/${k.id}`, "data-cell": `${b.id}/${k.id}`,
        title: c ? `${b.id} on ${k.id} (${k.label}): ${c.verdict}: ${c.observed}` : `${b.id} on ${k.id}: no cell`}, c ? c.mark : "");
      row.append(el("td", {}, a));
      overviewCells++;
    }
    ob.append(row);
  }
}
document.body.dataset.overviewCells = overviewCells;

// Findings: one entry per behaviour, kind and claim; the kernels as ranges; the claim quoted.
const fl = document.getElementById("findings-list");
if (!D.findings.length) fl.append(el("li", {}, "None observed."));
for (const f of D.findings) {
  const b = byId.get(f.behaviour);
  const says = f.kind === "documentation" ? "the documentation claims" : f.kind === "flaky" ? "repeated runs should agree:" : "the expectation says";
  const li = el("li", {class: "finding", "data-behaviour": f.behaviour, "data-kind": f.kind},
    el("b", {}, f.kind === "documentation" ? "Documentation mismatch: " : f.kind === "flaky" ? "Flaky: " : "Unexpected: "),
    link(f.behaviour, code(f.behaviour)), `: ${b.summary}. ${says[0].toUpperCase() + says.slice(1)} `, code(f.claim), ". Observed ",
    ...f.observed.flatMap((o, i) => [i ? "; " : "", o.lacks.length ? el("span", {}, "a list without ", code(o.lacks.join(" "))) : code(o.value), " on ", el("span", {class: "where"}, o.where)]), ".");
  if (f.source) li.append(el("blockquote", {}, f.source));
  if (b.notes) li.append(el("div", {class: "muted"}, b.notes));
  fl.append(li);
}

// The kernels' own selftests: counts per kernel, and where they disagree with our behaviours.
const sb = document.getElementById("selftests-body");
if (!D.selftests.kernels.length) document.getElementById("selftests-section").hidden = true;
else {
  const t = el("table", {id: "selftests-table"}, el("thead", {}, el("tr", {}, ...["kernel", "pass", "fail", "skip", "built from"].map(h => el("th", {}, h)))));
  const tb = el("tbody");
  for (const s of D.selftests.kernels) tb.append(el("tr", {}, el("td", {}, s.kernel), el("td", {}, String(s.pass)), el("td", {}, String(s.fail)), el("td", {}, String(s.skip)), el("td", {}, s.source)));
  t.append(tb); sb.append(el("div", {class: "scroll"}, t));
  const ul = el("ul", {id: "disagreements"});
  for (const d of D.selftests.disagreements) ul.append(el("li", {class: "disagreement"}, `${d.kernel}: `, link(`${d.selftest}/${d.kernel}`, code(d.selftest)), " and ",
    link(`${d.behaviour}/${d.kernel}`, code(d.behaviour)), `: ${d.how}.`));
  if (!D.selftests.disagreements.length) ul.append(el("li", {}, "Where a selftest and one of our behaviours speak about the same thing, they agree on every kernel."));
  sb.append(ul);
}

// What changed: since the previous matrix (the history), and along the kernel versions.
const cb = document.getElementById("changes-body");
if (!D.changes.previous) cb.append(el("p", {}, "The history (matrix/history.toml) starts with this matrix: nothing to compare with yet."));
else {
  cb.append(el("p", {}, `Since the previous matrix (${D.changes.previous}):`));
  const ul = el("ul", {id: "changes-list"});
  for (const [k, a, b] of D.changes.moves) ul.append(el("li", {class: "move"}, `${k} moved from ${a} to ${b}.`));
  for (const c of D.changes.cells) ul.append(el("li", {class: "change", "data-behaviour": c.behaviour, "data-kernel": c.kernel},
    link(`${c.behaviour}/${c.kernel}`, code(c.behaviour)), ` on ${c.kernel}: `, code(c.before.observed), ` on ${c.before.version} (first seen ${c.before.first_seen}) → `,
    code(c.observed), ` on ${c.version}.`));
  if (!D.changes.cells.length) ul.append(el("li", {}, "No observation changed."));
  cb.append(ul);
}
cb.append(el("p", {}, "Along the kernel versions (every point release the history recorded, in version order), where behaviours change:"));
const ual = el("ul", {id: "steps-list"});
if (!D.changes.steps.length) ual.append(el("li", {}, "Nowhere: every kernel observed the same thing for every behaviour."));
for (const st of D.changes.steps) {
  const inner = el("ul", {});
  for (const c of st.changes) inner.append(el("li", {"data-behaviour": c.behaviour}, link(c.behaviour, code(c.behaviour)), ": ",
    ...(c.names ? [code(c.names.join(" "))] : [code(c.old), " → ", code(c.new)])));
  ual.append(el("li", {class: "step", "data-before": st.before[0], "data-after": st.after[0]},
    el("b", {}, `Changed between ${st.before[0]} (${st.before[1]}) and ${st.after[0]} (${st.after[1]})`), ` (${st.changes.length}):`, inner));
}
cb.append(ual);

// Timelines of set-valued behaviours (features, ioctls).
const tb = document.getElementById("timelines-body");
if (!D.timelines.length) document.getElementById("timelines-section").classList.add("hidden");
for (const t of D.timelines) {
  const head = el("tr", {}, el("th", {}, "name"), el("th", {}, "first in"), ...K.map(k => el("th", {title: k.id}, k.label, el("br"), el("span", {class: "muted"}, k.id))));
  const body = el("tbody");
  for (const n of t.names) body.append(el("tr", {}, el("td", {}, code(n.name)), el("td", {}, n.first),
    ...K.map(k => el("td", {class: n.kernels.includes(k.id) ? "on" : ""}, n.kernels.includes(k.id) ? "●" : ""))));
  tb.append(el("h3", {}, link(t.behaviour, code(t.behaviour))), el("div", {class: "scroll"}, el("table", {class: "timeline"}, el("thead", {}, head), body)));
}

// Kernels.
const kb = document.querySelector("#kernels-table tbody");
for (const k of K) kb.append(el("tr", {}, el("td", {}, k.id, k.host ? el("div", {class: "muted"}, "a host kernel, run directly (no QEMU)") : ""), el("td", {}, k.label),
  el("td", {}, k.release), el("td", {}, k.accel), el("td", {}, k.source), el("td", {}, k.date), el("td", {}, k.reason ? `incomplete: ${k.reason}` : "complete")));
if (D.go) document.getElementById("go").textContent = D.go;

// Every cell, one table per family.
const sel = document.getElementById("family");
for (const f of fams) sel.append(el("option", {value: f}, f));
const root = document.getElementById("families");
for (const fam of fams) {
  const head = el("tr", {}, el("th", {}, "behaviour"), ...K.map(k => el("th", {}, k.id, el("br"), el("span", {class: "muted"}, k.label))));
  const body = el("tbody");
  for (const b of B.filter(b => b.family === fam)) {
    const row = el("tr", {class: "behaviour-row", id: b.id, "data-family": fam, "data-differs": b.values.length > 1 ? "1" : "0",
      "data-text": [b.id, b.summary, ...Object.values(b.cells).map(c => c.observed)].join(" ").toLowerCase()},
      el("td", {class: "behaviour"}, link(b.id, code(b.id)), el("br"), b.summary));
    for (const k of K) {
      const c = b.cells[k.id];
      const td = c ? el("td", {class: `cell ${c.verdict}`, id: `${b.id}/${k.id}`, title: `${c.verdict}: ${c.observed}`},
                        el("span", {class: "mk"}, c.mark), c.short || c.observed,
                        c.added && c.added.length ? el("small", {}, c.added.map(a => "+" + a).join(" ")) : "",
                        c.removed && c.removed.length ? el("small", {}, c.removed.map(a => "−" + a).join(" ")) : "")
                   : el("td", {class: "cell missing"}, "");
      td.addEventListener("click", () => { location.hash = `${b.id}/${k.id}`; });
      row.append(td);
    }
    body.append(row);
  }
  root.append(el("section", {"data-family": fam}, el("h2", {}, fam), el("div", {class: "scroll"}, el("table", {}, el("thead", {}, head), body))));
}

// The details of one cell.
const panel = document.getElementById("panel");
function show(id, k) {
  const b = byId.get(id), c = b.cells[k] || {}, kk = kid.get(k);
  panel.replaceChildren();
  panel.dataset.open = `${id}/${k}`;
  const hist = c.history || [];
  panel.append(el("b", {}, `${id} on ${k}`), kk ? el("span", {class: "muted"}, ` (${kk.label}, ${kk.release})`) : "", el("p", {}, b.summary),
    el("p", {}, `Verdict: ${c.verdict || "-"}. Observed: `, code(c.observed || "-")),
    c.reason ? el("p", {}, `Reason: ${c.reason}`) : "", c.expected ? el("p", {}, `Graded against: ${c.expected}`) : "",
    el("p", {}, "Details:"), el("pre", {}, JSON.stringify(c.details || {}, null, 1)),
    hist.length ? el("p", {}, "On this kernel over time: ", ...hist.map(e => el("div", {}, code(e.observed), ` on ${e.version} (first seen ${e.first_seen})`))) : "",
    el("p", {}, `Observes: ${b.observes}`),
    el("p", {}, "Expectation: ", ...b.expectation.map(r => el("div", {}, code(r.kernels), ": ", r.expect))),
    b.documented && b.documented.length ? el("p", {}, "Documented: ", ...b.documented.map(r => el("div", {}, code(r.kernels), ": ", r.expect, r.source ? el("blockquote", {}, r.source) : ""))) : "",
    el("p", {}, `Citation: ${b.citation}`), b.notes ? el("p", {}, `Notes: ${b.notes}`) : "",
    el("p", {}, "Permalink: ", link(`${id}/${k}`, `#${id}/${k}`)), el("button", {}, "close"));
  panel.querySelector("button").onclick = () => { panel.style.display = "none"; delete panel.dataset.open; };
  panel.style.display = "block";
}

// Filters (search, family, differs) and permalinks, both in the URL fragment.
const q = document.getElementById("q"), diff = document.getElementById("differs");
function apply(write) {
  const fam = sel.value, only = diff.checked, text = q.value.trim().toLowerCase();
  let rows = 0, cells = 0;
  for (const s of root.querySelectorAll("section")) s.classList.toggle("hidden", !!fam && s.dataset.family !== fam);
  for (const r of root.querySelectorAll("tr.behaviour-row")) {
    const hide = (!!fam && r.dataset.family !== fam) || (only && r.dataset.differs !== "1") || (!!text && !r.dataset.text.includes(text));
    r.classList.toggle("hidden", hide);
    const o = ov.querySelector(`tr.ov-row[data-id="${CSS.escape(r.id)}"]`); if (o) o.classList.toggle("hidden", hide);
    if (!hide) { rows++; cells += r.querySelectorAll("td.cell").length; }
  }
  for (const t of ov.querySelectorAll("table.overview")) t.classList.toggle("hidden", !!fam && t.dataset.family !== fam);
  document.getElementById("shown").textContent = `${rows} behaviours, ${cells} cells shown`;
  document.body.dataset.shownRows = rows; document.body.dataset.shownCells = cells;
  if (write) {
    const h = new URLSearchParams(); if (text) h.set("q", text); if (fam) h.set("family", fam); if (only) h.set("differs", "1");
    history.replaceState(null, "", h.toString() ? "#" + h : location.pathname);
  }
}
function target() {
  for (const t of document.querySelectorAll(".target")) t.classList.remove("target");
  const hash = decodeURIComponent(location.hash.slice(1));
  if (!hash || hash.includes("=")) return;
  const [id, k] = hash.split("/");
  if (!byId.has(id)) return;
  const row = document.getElementById(id);
  if (row) row.classList.add("target");
  if (k && kid.has(k)) {
    for (const t of document.querySelectorAll(`[data-cell="${CSS.escape(hash)}"]`)) t.classList.add("target");
    const cell = document.getElementById(hash); if (cell) { cell.classList.add("target"); into(cell); }
    show(id, k);
  } else if (row) into(row);
}
// Scrolls to an element only when it is not in view already.
function into(e) {
  const r = e.getBoundingClientRect();
  if (r.top < 0 || r.bottom > window.innerHeight) e.scrollIntoView({block: "center"});
}
const start = location.hash.includes("=") ? new URLSearchParams(location.hash.slice(1)) : new URLSearchParams();
q.value = start.get("q") || ""; sel.value = start.get("family") || ""; diff.checked = start.get("differs") === "1";
q.oninput = () => apply(true); sel.onchange = () => apply(true); diff.onchange = () => apply(true);
window.addEventListener("hashchange", target);
apply(false); target();
document.body.dataset.height = Math.ceil(document.documentElement.scrollHeight);
document.body.dataset.ready = "1";
</script></body></html>
"##;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::process::Command;

    /// The fixture's profiles (a page server 5.10 cannot run, a hugetlb user the host could not
    /// check).
    fn profiles() -> Vec<Profile> {
        let root = crate::util::project_root();
        ["page-server", "hugetlb-user"]
            .iter()
            .map(|p| {
                let path = root.join(format!("xtask/testdata/profiles/{p}.toml"));
                crate::check::load(&root, &path.display().to_string()).unwrap()
            })
            .collect()
    }

    /// A history in which the fixture's matrix follows an older one: debian-6.1-cloud was at
    /// 6.1.176 then, where remove.madv_free raised its REMOVE event.
    fn history(compat: &Compat) -> History {
        let mut older = compat.clone();
        older.generated = "2026-09-01T00:00:00Z".into();
        let k = older.kernels.get_mut("debian-6.1-cloud").unwrap();
        k.version = k.version.replace("6.1.192", "6.1.176");
        let cell =
            older.behaviours.get_mut("remove.madv_free").unwrap().cells.get_mut("debian-6.1-cloud").unwrap();
        cell.observed = "REMOVE pages [1,3)".into();
        cell.verdict = Verdict::Expected;
        let mut h = History::new();
        h.record(&older);
        h.record(compat);
        h
    }

    /// The fixture with selftest rows: `case` on `kernel` reported `observed` (and `reason`).
    fn with_selftest(c: &mut Compat, case: &str, kernel: &str, observed: &str, reason: Option<&str>) {
        let row =
            c.behaviours.entry(case.to_string()).or_insert_with(|| model::data::selftest_behaviour(case));
        let mut cell = model::Cell::missing("");
        cell.observed = observed.to_string();
        cell.reason = reason.map(String::from);
        cell.verdict = match observed {
            "pass" => Verdict::Expected,
            "fail" => Verdict::Unexpected,
            _ => Verdict::Skipped,
        };
        if let (Some(why), "fail") = (reason, observed) {
            cell.details.insert("selftest".into(), model::Detail::from(why));
        }
        row.cells.insert(kernel.to_string(), cell);
    }

    #[test]
    fn selftests_that_disagree_with_our_behaviours_are_named() {
        let mut c = crate::util::fixture();
        // api.features observed the handshake on both kernels (expected); the 6.1 one's selftest
        // failed (the reason as uffd-unit-tests words it).
        let related: &[(&str, &[&str])] = &[
            ("selftests.unit_uffdio_api", &["api.features"]),
            ("selftests.unit_poison", &["api.features"]),
            ("selftests.userfaultfd_hugetlb", &["populate.hugetlb_missing"]),
            ("selftests.unit_move", &["populate.hugetlb_missing"]),
        ];
        for (case, ids) in related {
            for id in *ids {
                c.behaviours.get_mut(*id).unwrap().selftests.push(case.to_string());
            }
        }
        with_selftest(&mut c, "selftests.unit_uffdio_api_syscall", "debian-5.10-cloud", "pass", None);
        with_selftest(
            &mut c,
            "selftests.unit_uffdio_api_syscall",
            "debian-6.1-cloud",
            "fail",
            Some("UFFDIO_API should fail with wrong api but didn't"),
        );
        // Skips are not observations: neither a missing feature (ours may have found the same
        // absence) nor the machine's (no memory).
        with_selftest(
            &mut c,
            "selftests.unit_poison_anon",
            "debian-6.1-cloud",
            "skip",
            Some("the selftest skipped it: feature missing"),
        );
        with_selftest(
            &mut c,
            "selftests.unit_poison_hugetlb",
            "debian-6.1-cloud",
            "skip",
            Some("the selftest skipped it: memory allocation failed"),
        );
        // 5.10's populate.hugetlb_missing is unsupported for lack of MADV_POPULATE_READ, which the
        // hugetlb stress does not use: no disagreement when it passes.
        with_selftest(&mut c, "selftests.userfaultfd_hugetlb", "debian-5.10-cloud", "pass", None);
        assert!(selftest_disagreements(&c).iter().all(|d| d.selftest != "selftests.userfaultfd_hugetlb"));
        // ... but where ours found userfaultfd itself lacking, a pass disagrees.
        c.behaviours.remove("selftests.userfaultfd_hugetlb");
        c.behaviours
            .get_mut("populate.hugetlb_missing")
            .unwrap()
            .cells
            .get_mut("debian-5.10-cloud")
            .unwrap()
            .reason = Some("the kernel does not offer UFFD_FEATURE_MOVE".into());
        with_selftest(&mut c, "selftests.unit_move_anon", "debian-5.10-cloud", "pass", None);
        // The host's api.features is missing: nothing learnt, nothing to disagree with.
        with_selftest(&mut c, "selftests.unit_uffdio_api_syscall", "host", "fail", Some("boom"));
        let found: Vec<(String, String, String)> =
            selftest_disagreements(&c).into_iter().map(|d| (d.kernel, d.selftest, d.behaviour)).collect();
        let want = |k: &str, s: &str, b: &str| (k.to_string(), s.to_string(), b.to_string());
        assert_eq!(
            found,
            [
                want("debian-5.10-cloud", "selftests.unit_move_anon", "populate.hugetlb_missing"),
                want("debian-6.1-cloud", "selftests.unit_uffdio_api_syscall", "api.features"),
            ]
        );
        let all = selftest_disagreements(&c);
        assert!(all[1].how.contains("UFFDIO_API should fail with wrong api but didn't"), "{}", all[1].how);
        assert!(all[0].how.contains("UFFD_FEATURE_MOVE"), "{}", all[0].how);
        // The report's section names them, and counts each kernel's cases.
        c.kernels.get_mut("debian-6.1-cloud").unwrap().selftests = Some("linux-source-6.1 6.1.192-2".into());
        let (p, h) = (profiles(), History::new());
        let md = markdown(&View::new(&c, &p, &h));
        assert!(md.contains("## The kernels' own selftests"), "{md}");
        assert!(md.contains("| debian-6.1-cloud | 0 | 1 | 2 | linux-source-6.1 6.1.192-2 |"), "{md}");
        // With the relations the behaviours declare, the 6.1 failure disagrees with api.features.
        assert!(
            md.contains("| debian-6.1-cloud | `selftests.unit_uffdio_api_syscall` | `api.features` |"),
            "{md}"
        );
    }

    #[test]
    fn the_go_release_is_shown_when_a_column_ran_one() {
        let mut c = crate::util::fixture();
        let (p, h) = (profiles(), History::new());
        assert_eq!(go_line(&c), None);
        assert!(!markdown(&View::new(&c, &p, &h)).contains("Go runtime"));
        for k in c.kernels.values_mut() {
            k.go = Some("go1.27.3".into());
        }
        let line = go_line(&c).unwrap();
        assert!(line.contains("go1.27.3 on every kernel"), "{line}");
        let view = View::new(&c, &p, &h);
        assert!(markdown(&view).contains(&line) && html(&view).unwrap().contains("go1.27.3 on every kernel"));
        let first = c.kernels.keys().next().unwrap().clone();
        c.kernels.get_mut(&first).unwrap().go = Some("go1.28.0".into());
        let line = go_line(&c).unwrap();
        assert!(line.contains(&format!("go1.28.0 on {first}")) && line.contains("go1.27.3 on "), "{line}");
    }

    #[test]
    fn markdown_answers_first_groups_findings_and_has_every_cell() {
        let c = crate::util::fixture();
        let (p, h) = (profiles(), history(&c));
        let md = markdown(&View::new(&c, &p, &h));
        let at = |s: &str| md.find(s).unwrap_or_else(|| panic!("no {s:?} in\n{md}"));
        assert!(at("## Can I run it here? Profiles") < at("## Findings"));
        assert!(at("## Findings") < at("\n## api\n"));
        // Kernels in version order, a profile verdict, and what it lacks where.
        assert!(md.contains("| [page-server](../profiles/page-server.toml) | ❌ violates (1) | ✅ satisfies | ✅ satisfies |"), "{md}");
        assert!(md.contains("- `populate.read_missing` needs `fault read`: observed `EINVAL` on 5.10.262 (debian-5.10-cloud)."), "{md}");
        // One finding per behaviour, its kernels as a range, its claim quoted.
        assert_eq!(md.matches("- **`api.handshake_twice`**").count(), 1, "{md}");
        assert!(
            md.contains("Observed `EINVAL` on every kernel (3).\n  > UFFDIO_API(2const), man-pages 6.20, ERRORS: \"Calling UFFDIO_API twice"),
            "{md}"
        );
        // The change since the previous matrix, and along the versions.
        assert!(md.contains("- debian-6.1-cloud moved from 6.1.176 to 6.1.192."), "{md}");
        assert!(md.contains("- `remove.madv_free` on debian-6.1-cloud: `REMOVE pages [1,3)` on 6.1.176 (first seen 2026-09-01T00:00:00Z) → `no event` on 6.1.192."), "{md}");
        assert!(
            md.contains("- Between 6.1.192 (debian-6.1-cloud) and 6.18.44 (host):\n  - `remove.copy_field`: `untouched` → `-EAGAIN`\n"),
            "{md}"
        );
        assert!(
            md.contains(
                "  - `api.features`: `+MINOR_HUGETLBFS +MINOR_SHMEM +EXACT_ADDRESS +WP_HUGETLBFS_SHMEM`\n"
            ),
            "{md}"
        );
        // Feature names on a timeline, and the cells as counts.
        assert!(md.contains("| MINOR_HUGETLBFS | 6.1.192 | |"), "{md}");
        assert!(md.contains("✅ 13 (+4 −0 vs 5.10.262) |"), "{md}");
        let cells = md
            .split("\n## api\n")
            .nth(1)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| l.matches(" |").count() - 1)
            .sum::<usize>();
        assert_eq!(cells, c.behaviours.len() * c.kernels.len());
    }

    #[test]
    fn the_history_is_recorded_beside_the_matrix_once() {
        let dir = crate::util::project_root().join("target/uffdc/tests/report-history");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let c = crate::util::fixture();
        let facts = c
            .behaviours
            .values()
            .flat_map(|b| b.cells.values())
            .filter(|c| observes_the_kernel(c.verdict))
            .count();
        assert_eq!(record_history(&dir, &c).unwrap(), facts);
        assert_eq!(record_history(&dir, &c).unwrap(), 0);
        let h = model::history::load(&dir.join(HISTORY)).unwrap();
        assert_eq!(h.behaviours.values().map(Vec::len).sum::<usize>(), facts);
    }

    /// Renders the page in headless Chromium, `width` pixels wide, and reads back the DOM the
    /// page's own script built.
    fn chromium(page: &Path, fragment: &str, width: u32) -> String {
        chromium_run(page, fragment, width, None)
    }

    /// A screenshot of the whole page at `width`: headless Chromium's `--screenshot` shows a
    /// scrolled window blank, so the window is made taller than the page (which reports its height).
    fn screenshot(page: &Path, fragment: &str, width: u32, png: &Path) {
        // With room to spare: a page that fits leaves a fragment's scroll nothing to do.
        let height = (attr(&chromium(page, fragment, width), "data-height") + 600).clamp(600, 16_000);
        chromium_run(page, fragment, width, Some((png, height as u32)));
        assert!(
            std::fs::metadata(png).map(|m| m.len() > 10_000).unwrap_or(false),
            "no screenshot at {}",
            png.display()
        );
    }

    fn chromium_run(page: &Path, fragment: &str, width: u32, screenshot: Option<(&Path, u32)>) -> String {
        let chromium = std::env::var("UFFDC_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let profile = page.parent().unwrap().join(format!("profile{n}"));
        let mut cmd = Command::new(chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()));
        match screenshot {
            Some((png, height)) => cmd
                .arg(format!("--screenshot={}", png.display()))
                .arg(format!("--window-size={width},{height}")),
            None => cmd.arg("--dump-dom").arg(format!("--window-size={width},900")),
        };
        let out = cmd.arg(format!("file://{}{fragment}", page.display())).output().expect("running chromium");
        assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn attr(dom: &str, name: &str) -> usize {
        let at = dom.find(&format!("{name}=\"")).unwrap_or_else(|| panic!("no {name} in the rendered page"));
        dom[at + name.len() + 2..].split('"').next().unwrap().parse().unwrap()
    }

    /// The element with this opening tag's attributes, up to its end: `<li class="finding" ...>`.
    fn element<'d>(dom: &'d str, start: &str, end: &str) -> &'d str {
        let at = dom.find(start).unwrap_or_else(|| panic!("no {start} in the rendered page"));
        let rest = &dom[at..];
        &rest[..rest.find(end).map_or(rest.len(), |e| e + end.len())]
    }

    #[test]
    #[ignore = "needs Chromium: run through `cargo xtask test`"]
    fn the_page_answers_at_a_glance_in_chromium() {
        let c = crate::util::fixture();
        let (p, h) = (profiles(), history(&c));
        let view = View::new(&c, &p, &h);
        let dir = crate::util::project_root().join("target/uffdc/tests/report");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let page = dir.join("index.html");
        std::fs::write(&page, html(&view).unwrap()).unwrap();
        let cells = c.behaviours.len() * c.kernels.len();

        let dom = chromium(&page, "", 1400);
        assert!(dom.contains("data-ready=\"1\""), "the page's script did not finish");
        // The overview: one square per cell, each a permalink, each with its verdict's mark.
        assert_eq!(attr(&dom, "data-overview-cells"), cells);
        assert_eq!(dom.matches("<a class=\"ov ").count(), cells, "one square per matrix cell");
        assert_eq!(dom.matches("class=\"cell ").count(), cells, "one detail cell per matrix cell");
        assert!(dom.contains("href=\"#populate.read_missing/debian-5.10-cloud\" data-cell=\"populate.read_missing/debian-5.10-cloud\""));
        assert_eq!(attr(&dom, "data-shown-cells"), cells);
        // Profile verdicts, every one as the profile check gives it.
        for (profile, per) in &view.profiles {
            for (k, check) in per {
                let want = format!(
                    "data-profile=\"{}\" data-kernel=\"{k}\" data-outcome=\"{}\"",
                    profile.name,
                    check.outcome.as_str()
                );
                assert!(dom.contains(&want), "no {want} in the page");
            }
        }
        assert!(dom.contains(
            "data-profile=\"page-server\" data-kernel=\"debian-5.10-cloud\" data-outcome=\"violates\""
        ));
        // A finding grouped: one entry for a behaviour that holds on every kernel, its source quoted.
        assert_eq!(dom.matches("<li class=\"finding\" data-behaviour=\"api.handshake_twice\"").count(), 1);
        let finding = element(&dom, "<li class=\"finding\" data-behaviour=\"api.handshake_twice\"", "</li>");
        assert!(
            finding.contains("every kernel (3)")
                && finding.contains("<blockquote>UFFDIO_API(2const), man-pages 6.20"),
            "{finding}"
        );
        // What changed since the previous matrix, and between which point releases.
        assert!(dom.contains(
            "class=\"change\" data-behaviour=\"remove.madv_free\" data-kernel=\"debian-6.1-cloud\""
        ));
        assert!(
            dom.contains("Changed between 6.1.192 (debian-6.1-cloud) and 6.18.44 (host)"),
            "along the versions"
        );
        // The feature timeline.
        assert!(element(&dom, "<table class=\"timeline\">", "</table>").contains("MINOR_HUGETLBFS"));

        // A permalink opens its cell.
        let dom = chromium(&page, "#populate.read_missing/debian-6.1-cloud", 390);
        let panel = element(&dom, "<div id=\"panel\"", ">");
        assert!(
            panel.contains("data-open=\"populate.read_missing/debian-6.1-cloud\"")
                && panel.contains("display: block"),
            "{panel}"
        );
        assert!(element(
            &dom,
            "<td class=\"cell expected target\" id=\"populate.read_missing/debian-6.1-cloud\"",
            ">"
        )
        .contains("target"));

        // Search, and the family and "differs" filters, as the URL sets them.
        let matching = c
            .behaviours
            .iter()
            .filter(|(id, b)| {
                let text = format!(
                    "{id} {} {}",
                    b.summary,
                    b.cells.values().map(|c| c.observed.as_str()).collect::<Vec<_>>().join(" ")
                );
                text.to_lowercase().contains("copy")
            })
            .count();
        assert!(matching > 0 && matching < c.behaviours.len());
        assert_eq!(attr(&chromium(&page, "#q=copy", 1400), "data-shown-rows"), matching, "search");
        let differs = |b: &model::Behaviour| {
            let seen: BTreeSet<&str> = b
                .cells
                .values()
                .filter(|cell| observes_the_kernel(cell.verdict))
                .map(|cell| cell.observed.as_str())
                .collect();
            seen.len() > 1
        };
        let (family, total, differing) = families(&c)
            .into_iter()
            .map(|(f, ids)| (f, ids.len(), ids.iter().filter(|id| differs(&c.behaviours[**id])).count()))
            .find(|(_, total, differing)| differing < total)
            .expect("a family where some behaviour is observed the same everywhere");
        assert_eq!(
            attr(&chromium(&page, &format!("#family={family}"), 1400), "data-shown-rows"),
            total,
            "family filter"
        );
        let dom = chromium(&page, &format!("#family={family}&differs=1"), 1400);
        assert_eq!(attr(&dom, "data-shown-rows"), differing, "differs filter");

        // Screenshots at desktop and phone widths (a permalink open on the phone), kept as artifacts.
        for (name, width, fragment) in [
            ("report-desktop.png", 1400, ""),
            ("report-phone.png", 390, ""),
            ("report-phone-permalink.png", 390, "#remove.copy_field/debian-6.1-cloud"),
        ] {
            screenshot(&page, fragment, width, &dir.join(name));
        }
    }
}
