//! The report's view: everything it shows, computed once from the matrix, the profiles and the
//! history (profile verdicts, grouped findings, timelines, changes, the kernels' own selftests and
//! where they disagree with our behaviours), and the small wordings both renderings share.

use model::columns::{by_version, describe, version_label};
use model::documented::Since;
use model::expect::{applicable, applicable_on, Expect, Rule};
use model::findings::{findings, Finding, Kind};
use model::history::{observes_the_kernel, History};
use model::profile::{Outcome, Profile, Status};
use model::version::KernelVersion;
use model::{Cell, Compat, Verdict};
use std::collections::BTreeMap;

mod arch;
mod clients;
pub use arch::*;
pub use clients::*;

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
        Verdict::Absent => "·",
    }
}

/// The page's verdict marks: one character each, in fonts every browser has (DejaVu included), so
/// that a verdict reads without its colour.
pub fn mark(v: Verdict) -> &'static str {
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
        Verdict::Absent => "·",
    }
}

pub fn meaning(v: Verdict) -> &'static str {
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
        Verdict::Absent => {
            "not in this kernel's selftests (their cases differ by version): nothing to observe"
        }
    }
}

pub fn outcome_symbol(o: Outcome) -> &'static str {
    match o {
        Outcome::Satisfies => "✅",
        Outcome::Violates => "❌",
        Outcome::NotChecked => "❔",
    }
}

/// Table-safe text: no pipes or newlines, and at most `max` characters.
pub fn cell_text(s: &str, max: usize) -> String {
    short(&s.replace('|', "\\|"), max)
}

/// One line of at most `max` characters.
pub fn short(s: &str, max: usize) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}

pub fn families(compat: &Compat) -> BTreeMap<&str, Vec<&str>> {
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
pub fn is_set_valued(b: &model::Behaviour) -> bool {
    let facts: Vec<&str> = b.cells.values().filter(|c| lists_names(c)).map(|c| c.observed.as_str()).collect();
    b.expectation.iter().any(|r| matches!(r.parsed(), Ok(Expect::Includes(_))))
        || (facts.iter().all(|o| is_name_list(o)) && facts.iter().any(|o| o.split_whitespace().count() > 1))
}

pub fn is_name_list(s: &str) -> bool {
    let name = |w: &str| {
        w.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            || w.strip_prefix("bit").is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    };
    !s.trim().is_empty() && s.split_whitespace().all(name)
}

/// The names added and removed between two name lists (`+MOVE`, `−RWP`), if both are lists that
/// differ.
pub fn name_changes(old: &str, new: &str) -> Option<Vec<String>> {
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
pub fn change_text(old: &str, new: &str) -> String {
    match name_changes(old, new) {
        Some(parts) => format!("`{}`", parts.join(" ")),
        None => format!("`{}` → `{}`", short(old, 60), short(new, 60)),
    }
}

/// A cell whose observation is a fact about the kernel's names (not an errno of a failed probe).
pub fn lists_names(c: &Cell) -> bool {
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
    /// their stretches: one entry per behaviour and architecture, x86-64's first.
    pub stretches: Vec<(&'a str, Vec<model::history::Stretch>)>,
    /// Where behaviours change along the kernel versions, step by step (x86-64's steps first).
    pub steps: Vec<Step<'a>>,
    /// The real clients the `clients` family runs, one row per client and version (empty when
    /// the matrix has no `clients` behaviours).
    pub clients: Vec<ClientRow<'a>>,
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
        // Along the versions of each architecture (its columns), x86-64 first.
        let stretches: Vec<(&str, Vec<model::history::Stretch>)> = model::arch::ALL
            .into_iter()
            .flat_map(|a| {
                compat.behaviours.keys().map(move |id| (id.as_str(), history.stretches(compat, id, a)))
            })
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
        let at = |(v, k): &(String, String)| {
            let arch = compat.kernels.get(k).map(model::columns::arch);
            (arch, v.parse::<model::version::KernelVersion>().ok(), k.clone())
        };
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
            clients: clients(compat, &by_version(&compat.kernels)),
        }
    }

    /// The project's write-ups of findings, `(path from the project root, text)`: each client row
    /// links those that name one of its behaviours.
    pub fn with_writeups(mut self, docs: &[(String, String)]) -> Self {
        for row in &mut self.clients {
            row.writeups = docs
                .iter()
                .filter(|(_, text)| row.behaviours.iter().any(|id| text.contains(id)))
                .map(|(path, _)| path.clone())
                .collect();
        }
        self
    }

    pub fn label(&self, kernel: &str) -> String {
        self.compat.kernels.get(kernel).map_or_else(|| kernel.to_string(), version_label)
    }

    /// A set of kernels in words (`every kernel (7)`, `5.10.262 to 6.1.192 (a, b)`).
    pub fn kernels(&self, set: &[impl AsRef<str>]) -> String {
        describe(&self.compat.kernels, |k| set.iter().any(|s| s.as_ref() == k))
    }

    /// A set-valued cell, short: how many names, and what changed from the kernel before it (in
    /// version order) that listed names: `13 (+4 -0 vs 5.10.262)`, with the added and removed.
    pub fn set_cell(&self, id: &str, kernel: &str) -> Option<(String, Vec<String>, Vec<String>)> {
        let b = self.compat.behaviours.get(id).filter(|b| is_set_valued(b))?;
        let c = b.cells.get(kernel).filter(|c| lists_names(c))?;
        let at = self.order.iter().position(|k| *k == kernel)?;
        let words: Vec<&str> = c.observed.split_whitespace().collect();
        // The kernel before it of the same architecture: the first arm64 column is not compared
        // with the newest x86 one.
        let arch = |k: &str| self.compat.kernels.get(k).map(model::columns::arch);
        let before = self.order[..at]
            .iter()
            .rev()
            .filter(|k| arch(k) == arch(kernel))
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
    pub fn previous_matrix(&self) -> Option<&str> {
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
pub fn group_findings<'a>(compat: &'a Compat, all: &[Finding]) -> Vec<FindingGroup<'a>> {
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
pub fn lacking(claim: &str, observed: &str) -> Vec<String> {
    let Some((_, names)) = claim.split_once("includes:") else { return Vec::new() };
    let have: Vec<&str> = observed.split_whitespace().collect();
    names.split_whitespace().filter(|n| !have.contains(n)).map(String::from).collect()
}

pub fn kind_title(kind: &Kind) -> &'static str {
    match kind {
        Kind::Documentation => "Documentation mismatches",
        Kind::Expectation => "Unexpected",
        Kind::Flaky => "Flaky (repeated runs disagreed)",
    }
}

pub fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Documentation => "documentation",
        Kind::Expectation => "expectation",
        Kind::Flaky => "flaky",
    }
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
pub fn selftest_sources(v: &View<'_>) -> Vec<(String, String)> {
    v.order
        .iter()
        .filter_map(|k| v.compat.kernels[*k].selftests.as_ref().map(|s| (k.to_string(), s.clone())))
        .collect()
}

/// Pass, fail and skip counts of a kernel's selftest cases.
pub fn selftest_counts(compat: &Compat, kernel: &str) -> (usize, usize, usize) {
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

/// The distinct observations of a behaviour's cells that observed the kernel, most common first
/// (ties: the one the newest kernel made first): the overview marks a cell by its index here
/// (none for the first, b, c, ... for the others).
pub fn distinct_observations(v: &View<'_>, id: &str) -> Vec<String> {
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

/// From which kernel version a behaviour is supported, by its expectation table (the rows without
/// a configuration condition, as `model::documented` reads them): the start of the last stretch of
/// versions whose row is not `unsupported:` (a version no row covers is not supported). Selftest
/// cases have no table of their own: `None`.
pub fn supported_since(b: &model::Behaviour) -> Option<Since> {
    if b.family == model::data::SELFTESTS {
        return None;
    }
    let rows: Vec<Rule> =
        b.expectation.iter().filter(|r| matches!(r.condition(), Ok(None))).cloned().collect();
    if rows.is_empty() {
        return Some(Since::Undetermined);
    }
    let mut points = vec![KernelVersion::new(0, 0, 0)];
    for range in rows.iter().filter_map(|r| r.range().ok()) {
        points.extend(range.from);
        points.extend(range.before);
    }
    points.sort();
    points.dedup();
    let supported: Vec<bool> = points
        .iter()
        .map(|v| {
            applicable(&rows, Some(*v), None)
                .0
                .is_some_and(|r| !matches!(r.parsed(), Ok(Expect::Unsupported(_))))
        })
        .collect();
    let start = supported.iter().rposition(|s| !s).map_or(0, |i| i + 1);
    Some(match start {
        0 => Since::Any,
        i if i == points.len() => Since::Never,
        i => Since::From(points[i]),
    })
}

/// "since 5.14", "any kernel", "no kernel", "not documented": a documented minimum in words.
pub fn since_text(since: &Since) -> String {
    match since {
        Since::From(v) => format!("since {v}"),
        other => other.to_string(),
    }
}

/// A behaviour's `supported_since` as a phrase: "supported since 5.14", "supported on any
/// kernel", "unsupported on every kernel", "support not documented".
pub fn supported_text(since: &Since) -> String {
    match since {
        Since::From(v) => format!("supported since {v}"),
        Since::Any => "supported on any kernel".to_string(),
        Since::Never => "unsupported on every kernel".to_string(),
        Since::Undetermined => "support not documented".to_string(),
    }
}

/// A selftest case this kernel's own selftests do not have (they ran; their cases differ by
/// version): not a result that went missing. A matrix compiled before `absent` was a verdict says
/// so by a `missing` cell with that reason.
pub fn not_in_selftests(b: &model::Behaviour, c: &Cell) -> bool {
    b.family == model::data::SELFTESTS
        && (c.verdict == Verdict::Absent
            || c.verdict == Verdict::Missing && c.reason.as_deref() == Some(model::compile::NO_SUCH_SELFTEST))
}

/// The command that observes one cell again: the kernel's column alone, into a matrix directory of
/// its own (`target/repro`, so the committed matrix is left alone), and for one of our behaviours
/// only that behaviour (the suite's `--exact` trial name) without the kernel's selftests; a
/// selftest case needs its kernel's selftests, which run after the suite. A host column is the
/// suite run directly; a local image is booted with `--kernel-image`.
pub fn reproduce(compat: &Compat, id: &str, kernel: &str) -> Option<String> {
    let info = compat.kernels.get(kernel);
    let trial = id.replacen('.', "::", 1);
    let selftest = model::data::family_of(id) == model::data::SELFTESTS;
    if info.is_some_and(|i| i.accel == "none") {
        // The host runs no selftests.
        return (!selftest).then(|| format!("sudo cargo run -p suite -- --exact {trial}"));
    }
    let column = match info {
        Some(i) if i.source.starts_with("local ") => format!("--kernel-image PATH/TO/bzImage={kernel}"),
        _ => format!("--kernel {kernel}"),
    };
    Some(if selftest {
        format!("cargo xtask matrix {column} --out target/repro")
    } else {
        format!("cargo xtask matrix {column} --no-selftests --out target/repro -- --exact {trial}")
    })
}

/// One value a reader may rely on for a behaviour (the page's "pick the behaviours you rely on"):
/// the need (`expect`, an exact value or `includes: NAME` for a set-valued behaviour), from which
/// version the expectation table says kernels give it, and what each kernel's cell says of it
/// (`model::profile`'s check of a one-need profile).
pub struct Pick {
    pub expect: String,
    pub since: Since,
    pub kernels: BTreeMap<String, Status>,
}

/// The values of a behaviour one may pick: what its kernels observed (the cells that observed the
/// kernel, most common first) and the exact values its table names; each name of a set-valued
/// behaviour as `includes: NAME`.
pub fn picks(v: &View<'_>, id: &str) -> Vec<Pick> {
    let b = &v.compat.behaviours[id];
    let mut values: Vec<String> = if is_set_valued(b) {
        let mut names: Vec<String> = Vec::new();
        for c in v.order.iter().filter_map(|k| b.cells.get(*k)).filter(|c| lists_names(c)) {
            for w in c.observed.split_whitespace() {
                if !names.iter().any(|n| n == w) {
                    names.push(w.to_string());
                }
            }
        }
        names.into_iter().map(|n| format!("includes: {n}")).collect()
    } else {
        // What kernels did (not what a probe found missing), then what the table names.
        let did = |o: &String| b.cells.values().any(|c| lists_names(c) && c.observed == *o);
        let mut values: Vec<String> = distinct_observations(v, id)
            .into_iter()
            .filter(|o| did(o) && Expect::parse(o).is_ok_and(|e| matches!(e, Expect::Is(_))))
            .collect();
        for r in &b.expectation {
            if let Ok(Expect::Is(x)) = r.parsed() {
                values.push(x);
            }
        }
        values
    };
    // What the profiles need of it, so that starting from a profile picks its very needs.
    for (p, _) in &v.profiles {
        values.extend(p.needs.iter().filter(|n| n.behaviour == id).map(|n| n.expect.clone()));
    }
    let mut seen = std::collections::BTreeSet::new();
    values.retain(|x| seen.insert(x.clone()));
    values
        .into_iter()
        .map(|expect| {
            let need = model::profile::Need {
                behaviour: id.to_string(),
                expect: expect.clone(),
                why: String::new(),
                line: 0,
                expect_line: 0,
            };
            let one = Profile {
                name: String::new(),
                path: String::new(),
                summary: String::new(),
                source: String::new(),
                needs: vec![need.clone()],
            };
            let kernels = v
                .order
                .iter()
                .map(|k| (k.to_string(), one.check(|x| b.cells.get(*k).filter(|_| x == id)).needs[0].status))
                .collect();
            Pick { since: model::documented::need_since(&need, b).since, expect, kernels }
        })
        .collect()
}

/// The selftest cases in one line: how many, and how their cells came out.
pub fn selftest_summary(v: &View<'_>) -> String {
    let (mut cases, mut pass, mut fail, mut skip, mut unsupported, mut absent, mut other) =
        (0, 0, 0, 0, 0, 0, 0);
    for b in v.compat.behaviours.values().filter(|b| b.family == model::data::SELFTESTS) {
        cases += 1;
        for c in b.cells.values() {
            match (c.verdict, c.observed.as_str()) {
                _ if not_in_selftests(b, c) => absent += 1,
                (Verdict::Unsupported, _) => unsupported += 1,
                (_, "pass") => pass += 1,
                (_, "fail") => fail += 1,
                (_, "skip") => skip += 1,
                _ => other += 1,
            }
        }
    }
    let mut parts = vec![format!("{pass} passed"), format!("{fail} failed"), format!("{skip} skipped")];
    if unsupported > 0 {
        parts.push(format!("{unsupported} on a kernel built without what they test"));
    }
    if other > 0 {
        parts.push(format!("{other} with no result"));
    }
    format!(
        "{cases} cases of the kernels' own selftests: {}, {absent} not in a kernel's selftests (their cases differ by version)",
        parts.join(", ")
    )
}
