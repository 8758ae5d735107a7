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
    /// Per behaviour id, its entries in the order they were recorded.
    #[serde(default)]
    pub behaviours: BTreeMap<String, Vec<Entry>>,
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
        History { schema: SCHEMA, behaviours: BTreeMap::new() }
    }

    /// The entries of one behaviour on one kernel column, oldest first.
    pub fn of<'a>(&'a self, behaviour: &str, kernel: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.behaviours.get(behaviour).into_iter().flatten().filter(move |e| e.kernel == kernel)
    }

    /// Records the matrix's observations (the update rule above); returns how many entries it
    /// added. Recording the same matrix twice adds nothing the second time.
    pub fn record(&mut self, compat: &Compat) -> usize {
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
    /// column (its last entry first seen before this matrix was generated).
    pub fn changes(&self, compat: &Compat) -> Vec<Change> {
        let mut out = Vec::new();
        for (id, b) in &compat.behaviours {
            for (kernel, cell) in &b.cells {
                if !observes_the_kernel(cell.verdict) {
                    continue;
                }
                let before = self.of(id, kernel).filter(|e| e.first_seen < compat.generated).last();
                if let Some(before) = before.filter(|e| e.observed != cell.observed) {
                    out.push(Change {
                        behaviour: id.clone(),
                        kernel: kernel.clone(),
                        before: before.clone(),
                        version: point_release(compat, kernel),
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

    /// One behaviour by kernel version: every point release recorded (and the matrix's own cells),
    /// in version order, cut into stretches that observed the same thing. More than one stretch
    /// means the behaviour changed between the last point of one and the first of the next.
    pub fn stretches(&self, compat: &Compat, behaviour: &str) -> Vec<Stretch> {
        let mut points: Vec<(Option<KernelVersion>, String, String, String)> = Vec::new();
        let mut add = |version: &str, kernel: &str, observed: &str| {
            let key = (
                version.parse::<KernelVersion>().ok(),
                version.to_string(),
                kernel.to_string(),
                observed.to_string(),
            );
            if !points.contains(&key) {
                points.push(key);
            }
        };
        for e in self.behaviours.get(behaviour).into_iter().flatten() {
            add(&e.version, &e.kernel, &e.observed);
        }
        if let Some(b) = compat.behaviours.get(behaviour) {
            for (kernel, cell) in b.cells.iter().filter(|(_, c)| observes_the_kernel(c.verdict)) {
                add(&point_release(compat, kernel), kernel, &cell.observed);
            }
        }
        points.sort();
        let mut out: Vec<Stretch> = Vec::new();
        for (_, version, kernel, observed) in points {
            match out.last_mut() {
                Some(s) if s.observed == observed => s.points.push((version, kernel)),
                _ => out.push(Stretch { observed, points: vec![(version, kernel)] }),
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
        let _ = writeln!(t, "schema = {}\n\n[behaviours]", self.schema);
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

/// Reads a history file; one that does not exist is an empty history.
pub fn load(path: &std::path::Path) -> Result<History, crate::data::LoadError> {
    if !path.exists() {
        return Ok(History::new());
    }
    crate::data::load(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Behaviour, Cell, RunInfo};
    use crate::expect::Rule;

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

        let stretches = h.stretches(&same, "remove.copy_field");
        assert_eq!(stretches.len(), 2, "{stretches:?}");
        assert_eq!(stretches[0].points, [("6.1.176".to_string(), "k61".to_string())]);
        assert_eq!(stretches[1].observed, "-EAGAIN");
    }
}
