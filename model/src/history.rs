//! The matrix's history: each behaviour's observation per kernel column and point release, with
//! the date it was first seen. It lives beside the matrix (`matrix/history.toml`) and is kept in
//! the repository, so the report can say what changed since the previous published matrix and
//! between which point releases a behaviour changed.
//!
//! The update rule ([`History::record`]): after a matrix is compiled, every cell that observed the
//! kernel (`expected`, `unexpected`, `unsupported`) whose kernel column has no entry yet for that
//! point release with that observation gets one, stamped with the matrix's `generated` date.
//! Nothing is ever removed or rewritten: a kernel that moves to a new point release, or observes
//! something new, adds an entry; cells that say nothing about the kernel (skipped, error, hung,
//! crashed, missing, flaky) add none.
//!
//! What changed is about kernels only:
//! - **Revisions of a behaviour's vocabulary.** When a kernel column observes something new at a
//!   point release whose entry says otherwise (same column, same version, same `uname -r`), the
//!   kernel did not change: the suite words the observation differently now (`fault read` became
//!   `fault read (waits in D)`), or the run was not reproducible. That starts a new revision of the
//!   behaviour's vocabulary ([`Revision`], listed in the file's `[revisions]`, derived from the
//!   entries whenever the file is read or written): entries first seen before it are of an older
//!   revision, kept, and never compared with the current one.
//! - **Configuration variants are not versions.** Along the kernel versions ([`History::stretches`])
//!   only the matrix's columns that are not configuration variants of a build
//!   ([`crate::columns::is_configuration_variant`]) count, one point per point release; where columns
//!   of one release disagree, the most frequent observation stands for it (the report's
//!   configurations section shows the differences). A step is always between two point releases.

use crate::data::{Compat, Verdict, SCHEMA};
use crate::version::KernelVersion;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// `matrix/history.toml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    pub schema: u32,
    /// Per behaviour id, the revisions of its vocabulary after the first, oldest first: derived
    /// from `behaviours` ([`History::revise`]), written for the reader.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revisions: BTreeMap<String, Vec<Revision>>,
    /// Per behaviour id, its entries in the order they were recorded.
    #[serde(default)]
    pub behaviours: BTreeMap<String, Vec<Entry>>,
}

/// A new revision of a behaviour's vocabulary: the matrix from which it holds, and the evidence, a
/// column that observed something else at the same point release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revision {
    /// The `generated` date of the first matrix in the new vocabulary; entries first seen before it
    /// are of an older revision.
    pub since: String,
    pub kernel: String,
    pub version: String,
    pub before: String,
    pub after: String,
}

/// One observation of one kernel column at one point release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The kernel column's id (`debian-6.1-cloud`).
    pub kernel: String,
    /// The point release (`6.1.192`), or `uname -r` when no version could be read from it.
    pub version: String,
    /// `uname -r`.
    pub release: String,
    pub observed: String,
    pub verdict: Verdict,
    /// The `generated` date of the first matrix that had it (RFC 3339, UTC).
    pub first_seen: String,
}

/// Whether a cell with this verdict observed the kernel (the others say nothing about it).
pub fn observes_the_kernel(v: Verdict) -> bool {
    matches!(v, Verdict::Expected | Verdict::Unexpected | Verdict::Unsupported)
}

/// The point release a kernel column names, as history entries spell it.
pub fn point_release(compat: &Compat, kernel: &str) -> String {
    match compat.kernels.get(kernel) {
        Some(info) => info.kernel_version().map_or_else(|| info.release.clone(), |v| v.to_string()),
        None => "?".to_string(),
    }
}

/// A cell whose observation differs from the one the previous matrix had for that kernel column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub behaviour: String,
    pub kernel: String,
    /// What the column observed before, at which point release, first seen when.
    pub before: Entry,
    /// The point release and observation now.
    pub version: String,
    pub observed: String,
    pub verdict: Verdict,
}

/// A stretch of kernel versions (in version order) that observed the same thing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stretch {
    pub observed: String,
    /// `(version, kernel column)` of each point in the stretch, in version order.
    pub points: Vec<(String, String)>,
}

impl History {
    pub fn new() -> History {
        History { schema: SCHEMA, revisions: BTreeMap::new(), behaviours: BTreeMap::new() }
    }

    /// Derives `revisions` from the entries: replayed in the order they were recorded, an entry
    /// whose column's previous entry has the same point release and `uname -r` but another
    /// observation starts a revision (one per behaviour and matrix).
    pub fn revise(&mut self) {
        self.revisions.clear();
        for (id, entries) in &self.behaviours {
            let mut last: BTreeMap<&str, &Entry> = BTreeMap::new();
            let mut found: Vec<Revision> = Vec::new();
            for e in entries {
                if let Some(prev) = last.get(e.kernel.as_str()) {
                    if same_kernel(prev, &e.version, &e.release)
                        && prev.observed != e.observed
                        && found.last().is_none_or(|r| r.since != e.first_seen)
                    {
                        found.push(Revision {
                            since: e.first_seen.clone(),
                            kernel: e.kernel.clone(),
                            version: e.version.clone(),
                            before: prev.observed.clone(),
                            after: e.observed.clone(),
                        });
                    }
                }
                last.insert(&e.kernel, e);
            }
            if !found.is_empty() {
                self.revisions.insert(id.clone(), found);
            }
        }
    }

    /// The date from which a behaviour's entries are in the vocabulary of `compat`'s cells: the
    /// newest revision's, or `compat`'s own when its cells reword what the history has for an
    /// unchanged kernel (before it is recorded). `None`: every entry is.
    pub fn vocabulary_since(&self, compat: &Compat, behaviour: &str) -> Option<String> {
        let pending = compat.behaviours.get(behaviour).is_some_and(|b| {
            b.cells.iter().filter(|(_, c)| observes_the_kernel(c.verdict)).any(|(kernel, cell)| {
                self.of(behaviour, kernel).last().is_some_and(|e| {
                    e.first_seen < compat.generated
                        && e.observed != cell.observed
                        && compat
                            .kernels
                            .get(kernel)
                            .is_some_and(|info| same_kernel(e, &point_release(compat, kernel), &info.release))
                })
            })
        });
        if pending {
            return Some(compat.generated.clone());
        }
        self.revisions.get(behaviour).and_then(|r| r.last()).map(|r| r.since.clone())
    }

    /// The entries of one behaviour on one kernel column, oldest first.
    pub fn of<'a>(&'a self, behaviour: &str, kernel: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.behaviours.get(behaviour).into_iter().flatten().filter(move |e| e.kernel == kernel)
    }

    /// Records the matrix's observations (the update rule above); returns how many entries it
    /// added. Recording the same matrix twice adds nothing the second time.
    pub fn record(&mut self, compat: &Compat) -> usize {
        let added = self.append(compat);
        self.revise();
        added
    }

    fn append(&mut self, compat: &Compat) -> usize {
        let mut added = 0;
        for (id, b) in &compat.behaviours {
            for (kernel, cell) in &b.cells {
                if !observes_the_kernel(cell.verdict) {
                    continue;
                }
                let version = point_release(compat, kernel);
                let last = self.of(id, kernel).last();
                if last.is_some_and(|e| e.version == version && e.observed == cell.observed) {
                    continue;
                }
                let release = compat.kernels.get(kernel).map(|k| k.release.clone()).unwrap_or_default();
                self.behaviours.entry(id.clone()).or_default().push(Entry {
                    kernel: kernel.clone(),
                    version,
                    release,
                    observed: cell.observed.clone(),
                    verdict: cell.verdict,
                    first_seen: compat.generated.clone(),
                });
                added += 1;
            }
        }
        added
    }

    /// The cells whose observation differs from what the previous matrix observed on the same
    /// column (its last entry first seen before this matrix was generated) at another point
    /// release, in the same vocabulary: what the kernel's new point release changed.
    pub fn changes(&self, compat: &Compat) -> Vec<Change> {
        let mut out = Vec::new();
        for (id, b) in &compat.behaviours {
            for (kernel, cell) in &b.cells {
                if !observes_the_kernel(cell.verdict) {
                    continue;
                }
                let since = self.vocabulary_since(compat, id);
                let before = self.of(id, kernel).filter(|e| e.first_seen < compat.generated).last();
                let version = point_release(compat, kernel);
                let kernel_changed = |e: &&Entry| {
                    e.observed != cell.observed
                        && e.version != version
                        && since.as_ref().is_none_or(|s| &e.first_seen >= s)
                };
                if let Some(before) = before.filter(kernel_changed) {
                    out.push(Change {
                        behaviour: id.clone(),
                        kernel: kernel.clone(),
                        before: before.clone(),
                        version,
                        observed: cell.observed.clone(),
                        verdict: cell.verdict,
                    });
                }
            }
        }
        out
    }

    /// The kernel columns whose point release moved since the previous matrix: `(kernel, before,
    /// now)`.
    pub fn moves(&self, compat: &Compat) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for kernel in compat.kernels.keys() {
            let now = point_release(compat, kernel);
            let before = self
                .behaviours
                .values()
                .flatten()
                .filter(|e| &e.kernel == kernel && e.first_seen < compat.generated)
                .max_by(|a, b| a.first_seen.cmp(&b.first_seen));
            if let Some(before) = before.filter(|e| e.version != now) {
                out.push((kernel.clone(), before.version.clone(), now));
            }
        }
        out
    }

    /// One behaviour by kernel version on one architecture: every point release recorded (and the
    /// matrix's own cells) of the matrix's columns of that architecture that are not configuration
    /// variants, in the current vocabulary, in version order, one point per release, cut into
    /// stretches that observed the same thing. More than one stretch means the behaviour changed
    /// between the last point of one and the first of the next, which are always two different
    /// point releases. One architecture at a time: x86's 5.10.262 and arm64's 5.10.223 differing
    /// is not a change between versions (the report lists it where the architectures differ).
    pub fn stretches(&self, compat: &Compat, behaviour: &str, arch: crate::arch::Arch) -> Vec<Stretch> {
        let is_version = |kernel: &str| {
            compat.kernels.get(kernel).is_some_and(|info| {
                !crate::columns::is_configuration_variant(info) && crate::columns::arch(info) == arch
            })
        };
        let since = self.vocabulary_since(compat, behaviour);
        // Per point release (ordered by version): each (kernel, observation) once.
        type Release = (Option<KernelVersion>, String);
        let mut at: BTreeMap<Release, Vec<(String, String)>> = BTreeMap::new();
        let mut add = |version: &str, kernel: &str, observed: &str| {
            let points = at.entry((version.parse::<KernelVersion>().ok(), version.to_string())).or_default();
            let point = (kernel.to_string(), observed.to_string());
            if !points.contains(&point) {
                points.push(point);
            }
        };
        for e in self.behaviours.get(behaviour).into_iter().flatten() {
            if is_version(&e.kernel) && since.as_ref().is_none_or(|s| &e.first_seen >= s) {
                add(&e.version, &e.kernel, &e.observed);
            }
        }
        if let Some(b) = compat.behaviours.get(behaviour) {
            for (kernel, cell) in b.cells.iter().filter(|(_, c)| observes_the_kernel(c.verdict)) {
                if is_version(kernel) {
                    add(&point_release(compat, kernel), kernel, &cell.observed);
                }
            }
        }
        let mut out: Vec<Stretch> = Vec::new();
        for ((_, version), points) in at {
            // The most frequent observation of the release, the first column (by id) that has it.
            let mut counts: Vec<(&str, usize, &str)> = Vec::new();
            let mut sorted = points.clone();
            sorted.sort();
            for (kernel, observed) in &sorted {
                match counts.iter_mut().find(|c| c.0 == observed) {
                    Some(c) => c.1 += 1,
                    None => counts.push((observed, 1, kernel)),
                }
            }
            let (observed, _, kernel) = counts
                .iter()
                .copied()
                .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(a.2)))
                .expect("a release has points");
            let point = (version.clone(), kernel.to_string());
            match out.last_mut() {
                Some(s) if s.observed == observed => s.points.push(point),
                _ => out.push(Stretch { observed: observed.to_string(), points: vec![point] }),
            }
        }
        out
    }

    /// The file's text: one entry a line, as an inline table, so that a change to the history is
    /// a readable diff.
    pub fn to_toml(&self) -> String {
        let s = |v: &str| toml::Value::String(v.to_string()).to_string();
        let mut t = String::from(
            "# What every kernel column of the matrix observed, per point release, and the matrix that first\n\
             # had it (model/src/history.rs). Appended to whenever the matrix is compiled (`cargo xtask\n\
             # matrix`, `cargo xtask ci compile`); never edited by hand.\n\n",
        );
        let _ = writeln!(t, "schema = {}\n", self.schema);
        let mut revised = self.clone();
        revised.revise();
        if !revised.revisions.is_empty() {
            t += "# Revisions of a behaviour's vocabulary (derived from the entries below): a column observed\n\
                  # something else at the same point release, so the suite words it differently now (or the run\n\
                  # was not reproducible); entries first seen before `since` are of an older revision.\n[revisions]\n";
            for (id, revisions) in &revised.revisions {
                let _ = writeln!(t, "{} = [", s(id));
                for r in revisions {
                    let _ = writeln!(
                        t,
                        "  {{ since = {}, kernel = {}, version = {}, before = {}, after = {} }},",
                        s(&r.since),
                        s(&r.kernel),
                        s(&r.version),
                        s(&r.before),
                        s(&r.after)
                    );
                }
                t += "]\n";
            }
            t += "\n";
        }
        t += "[behaviours]\n";
        for (id, entries) in &self.behaviours {
            let _ = writeln!(t, "{} = [", s(id));
            for e in entries {
                let _ = writeln!(
                    t,
                    "  {{ kernel = {}, version = {}, release = {}, observed = {}, verdict = {}, first_seen = {} }},",
                    s(&e.kernel),
                    s(&e.version),
                    s(&e.release),
                    s(&e.observed),
                    s(e.verdict.as_str()),
                    s(&e.first_seen)
                );
            }
            t += "]\n";
        }
        t
    }
}

/// Whether an entry is of the kernel a column runs now: the same point release and `uname -r`.
fn same_kernel(e: &Entry, version: &str, release: &str) -> bool {
    e.version == version && e.release == release
}

/// Reads a history file (its revisions derived again from its entries); one that does not exist
/// is an empty history.
pub fn load(path: &std::path::Path) -> Result<History, crate::data::LoadError> {
    if !path.exists() {
        return Ok(History::new());
    }
    let mut history: History = crate::data::load(path)?;
    history.revise();
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Behaviour, Cell, RunInfo};
    use crate::expect::Rule;

    const X86: crate::arch::Arch = crate::arch::Arch::X86_64;

    fn compat(generated: &str, kernels: &[(&str, &str)], cells: &[(&str, &str, &str, Verdict)]) -> Compat {
        let mut behaviours: BTreeMap<String, Behaviour> = BTreeMap::new();
        for (id, kernel, observed, verdict) in cells {
            let b = behaviours.entry(id.to_string()).or_insert_with(|| Behaviour {
                family: "remove".into(),
                summary: String::new(),
                observes: String::new(),
                expectation: vec![Rule::new("*", "x")],
                documented: Vec::new(),
                citation: String::new(),
                notes: String::new(),
                selftests: Vec::new(),
                cells: BTreeMap::new(),
            });
            let mut cell = Cell::missing("");
            cell.observed = observed.to_string();
            cell.verdict = *verdict;
            b.cells.insert(kernel.to_string(), cell);
        }
        Compat {
            schema: SCHEMA,
            generated: generated.into(),
            kernels: kernels
                .iter()
                .map(|(id, debian)| {
                    let info = RunInfo {
                        release: "6.1.0-56-cloud-amd64".into(),
                        version: format!("#1 SMP Debian {debian}-1"),
                        ..RunInfo::default()
                    };
                    (id.to_string(), info)
                })
                .collect(),
            behaviours,
        }
    }

    #[test]
    fn records_changes_and_point_releases_once() {
        let e = Verdict::Expected;
        let old = compat(
            "2026-09-01T00:00:00Z",
            &[("k61", "6.1.176")],
            &[("remove.copy_field", "k61", "untouched", e), ("remove.x", "k61", "skipped", Verdict::Skipped)],
        );
        let mut h = History::new();
        assert_eq!(h.record(&old), 1, "skipped cells say nothing about the kernel");
        assert_eq!(h.record(&old), 0, "recording twice adds nothing");
        assert!(h.changes(&old).is_empty());

        let new = compat(
            "2026-11-25T00:00:00Z",
            &[("k61", "6.1.192")],
            &[("remove.copy_field", "k61", "-EAGAIN", e)],
        );
        // Before the history has it, and after: the same change.
        let before = h.changes(&new);
        assert_eq!(h.record(&new), 1);
        assert_eq!(h.changes(&new), before);
        assert_eq!(before.len(), 1);
        assert_eq!(
            (before[0].before.version.as_str(), before[0].before.observed.as_str()),
            ("6.1.176", "untouched")
        );
        assert_eq!((before[0].version.as_str(), before[0].observed.as_str()), ("6.1.192", "-EAGAIN"));
        assert_eq!(h.moves(&new), [("k61".to_string(), "6.1.176".to_string(), "6.1.192".to_string())]);

        // A point release that observes the same thing is recorded, and is no change.
        let same = compat(
            "2026-12-01T00:00:00Z",
            &[("k61", "6.1.193")],
            &[("remove.copy_field", "k61", "-EAGAIN", e)],
        );
        assert_eq!(h.record(&same), 1);
        assert!(h.changes(&same).is_empty());

        let text = h.to_toml();
        let back: History = crate::data::parse(&text).unwrap();
        assert_eq!(back, h);
        assert_eq!(text.lines().filter(|l| l.starts_with("  { kernel")).count(), 3, "{text}");

        let stretches = h.stretches(&same, "remove.copy_field", X86);
        assert_eq!(stretches.len(), 2, "{stretches:?}");
        assert_eq!(stretches[0].points, [("6.1.176".to_string(), "k61".to_string())]);
        assert_eq!(stretches[1].observed, "-EAGAIN");
    }

    #[test]
    fn a_rewording_at_the_same_point_release_is_a_revision_not_a_kernel_change() {
        let e = Verdict::Expected;
        let kernels = [("k510", "5.10.262"), ("k61", "6.1.192")];
        let old = compat(
            "2026-11-01T00:00:00Z",
            &[("k510", "5.10.262"), ("k61", "6.1.176")],
            &[("remote.readv", "k510", "fault read", e), ("remote.readv", "k61", "fault read", e)],
        );
        let mut h = History::new();
        h.record(&old);
        // The suite now says where the reader waits: the same kernels, reworded; k61 also moved.
        let new = compat(
            "2026-11-25T00:00:00Z",
            &kernels,
            &[
                ("remote.readv", "k510", "fault read (waits in D)", e),
                ("remote.readv", "k61", "fault read (waits in D)", e),
            ],
        );
        // Before it is recorded and after: no change, no step, one stretch in the new words.
        for recorded in [false, true] {
            if recorded {
                h.record(&new);
                assert_eq!(h.revisions["remote.readv"].len(), 1, "{:?}", h.revisions);
                let r = &h.revisions["remote.readv"][0];
                assert_eq!(
                    (r.since.as_str(), r.kernel.as_str(), r.before.as_str(), r.after.as_str()),
                    ("2026-11-25T00:00:00Z", "k510", "fault read", "fault read (waits in D)")
                );
            }
            assert_eq!(h.vocabulary_since(&new, "remote.readv").as_deref(), Some("2026-11-25T00:00:00Z"));
            assert!(
                h.changes(&new).is_empty(),
                "k61's 6.1.176 entry is of the old vocabulary: {:?}",
                h.changes(&new)
            );
            let s = h.stretches(&new, "remote.readv", X86);
            assert_eq!(s.len(), 1, "{s:?}");
            assert_eq!(s[0].points.len(), 2, "one point per release: {s:?}");
        }
        // The file says so, and reads back the same.
        let text = h.to_toml();
        assert!(
            text.contains(
                "[revisions]\n\"remote.readv\" = [\n  { since = \"2026-11-25T00:00:00Z\", kernel = \"k510\""
            ),
            "{text}"
        );
        let back: History = crate::data::parse(&text).unwrap();
        assert_eq!(back, h);

        // A later point release that really changes is still a change, in the new vocabulary.
        let later = compat(
            "2026-12-01T00:00:00Z",
            &[("k510", "5.10.262"), ("k61", "6.1.193")],
            &[
                ("remote.readv", "k510", "fault read (waits in D)", e),
                ("remote.readv", "k61", "fault read (waits in S)", e),
            ],
        );
        let changes = h.changes(&later);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!((changes[0].before.version.as_str(), changes[0].version.as_str()), ("6.1.192", "6.1.193"));
        assert_eq!(h.stretches(&later, "remote.readv", X86).len(), 2);
        // A result that is not reproducible on the same kernel (a selftest that failed once) is no
        // kernel change either.
        let flaky = compat(
            "2026-12-02T00:00:00Z",
            &kernels,
            &[
                ("remote.readv", "k510", "fault read (waits in D)", e),
                ("remote.readv", "k61", "error text", e),
            ],
        );
        assert!(h.changes(&flaky).is_empty());
    }

    #[test]
    fn configuration_variants_are_not_versions() {
        let e = Verdict::Expected;
        let mut c = compat(
            "2026-11-25T00:00:00Z",
            &[
                ("k61", "6.1.192"),
                ("build", "6.12.118"),
                ("build-no-thp", "6.12.118"),
                ("rt", "6.12.118"),
                ("k72", "7.2.13"),
            ],
            &[
                ("populate.x", "k61", "a", e),
                ("populate.x", "build", "b", e),
                ("populate.x", "build-no-thp", "ENOSYS", Verdict::Unsupported),
                ("populate.x", "rt", "b", e),
                ("populate.x", "k72", "b", e),
            ],
        );
        for info in c.kernels.values_mut() {
            info.release = info.version.split(' ').nth(3).unwrap().trim_end_matches("-1").into();
        }
        for id in ["build", "build-no-thp"] {
            let info = c.kernels.get_mut(id).unwrap();
            info.build = Some(crate::data::Build {
                differs: if id == "build" {
                    Vec::new()
                } else {
                    vec!["CONFIG_TRANSPARENT_HUGEPAGE=n".into()]
                },
                ..crate::data::Build::default()
            });
        }
        let mut h = History::new();
        h.record(&c);
        let s = h.stretches(&c, "populate.x", X86);
        let points: Vec<Vec<&str>> =
            s.iter().map(|s| s.points.iter().map(|(v, _)| v.as_str()).collect()).collect();
        assert_eq!(points, [vec!["6.1.192"], vec!["6.12.118", "7.2.13"]], "{s:?}");
        assert_eq!(s[1].points[0].1, "build", "the first column of the release with its observation");
    }

    /// An arm64 column observing something else at a version between two x86 ones is no change
    /// along the versions of either architecture.
    #[test]
    fn stretches_are_per_architecture() {
        let mut c = compat(
            "2026-12-01T00:00:00Z",
            &[("a", "6.1.100"), ("b", "6.1.192"), ("a-arm64", "6.1.150")],
            &[
                ("wp.x", "a", "fault", Verdict::Expected),
                ("wp.x", "b", "fault", Verdict::Expected),
                ("wp.x", "a-arm64", "no feature", Verdict::Unsupported),
            ],
        );
        c.kernels.get_mut("a-arm64").unwrap().arch = Some(crate::arch::Arch::Arm64);
        let mut h = History::new();
        h.record(&c);
        let x86 = h.stretches(&c, "wp.x", X86);
        assert_eq!(x86.len(), 1, "{x86:?}");
        assert_eq!(x86[0].points.len(), 2);
        let arm = h.stretches(&c, "wp.x", crate::arch::Arch::Arm64);
        assert_eq!(
            (arm.len(), arm[0].observed.as_str(), arm[0].points[0].1.as_str()),
            (1, "no feature", "a-arm64")
        );
    }

    /// The committed history, with the committed matrix: every step along the versions and every
    /// change since the previous matrix is between two different point releases.
    #[test]
    fn the_committed_history_lists_only_kernel_changes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../matrix");
        let compat: Compat = crate::data::load(&dir.join("compat.toml")).unwrap();
        let h = load(&dir.join("history.toml")).unwrap();
        let mut steps = 0;
        for (id, arch) in compat.behaviours.keys().flat_map(|id| crate::arch::ALL.map(|a| (id, a))) {
            for pair in h.stretches(&compat, id, arch).windows(2) {
                let (before, after) = (pair[0].points.last().unwrap(), &pair[1].points[0]);
                assert_ne!(before.0, after.0, "{id}: a step between identical point releases: {pair:?}");
                steps += 1;
            }
        }
        assert!(steps > 0, "the committed matrix has kernel changes along the versions");
        for c in h.changes(&compat) {
            assert_ne!(c.before.version, c.version, "{c:?}");
        }
    }
}
