//! A check's answer: requirement profiles ([`crate::profile`]) on kernel columns, each answered
//! from what the kernel *observed* (a matrix column, or the running host) or from what the
//! expectation tables *document* for a version nobody observed ([`crate::documented`]); every
//! profile's minimum kernel version; the host's nearest column. Rendered as text and as JSON,
//! whose schema is `docs/check.schema.json` ([`SCHEMA_VERSION`]).

use crate::columns::{is_configuration_variant, version_label};
use crate::data::{Behaviour, Cell, RunInfo};
use crate::documented::{self, NeedSince, Since};
use crate::profile::{KernelCheck, Outcome, Profile, Status};
use crate::version::KernelVersion;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The version of `check --json`'s output (`docs/check.schema.json`): raised whenever a field
/// changes meaning or goes away; added fields keep it.
pub const SCHEMA_VERSION: u32 = 1;

/// Exit statuses.
pub const SATISFIED: i32 = 0;
pub const VIOLATED: i32 = 1;
pub const FAILED: i32 = 2;
pub const NOT_CHECKED: i32 = 3;

/// Where a column's answer comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The kernel's cells: what it did.
    Observed,
    /// The expectation tables for its version: what it is documented to do.
    Documented,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Observed => "observed",
            Answer::Documented => "documented",
        }
    }
}

/// One kernel to check.
pub struct Column<'a> {
    pub id: String,
    /// The point release (`6.1.192`), else `uname -r`.
    pub version: String,
    /// `uname -r` (empty for a documented version).
    pub release: String,
    pub source: Source<'a>,
    /// Whether its verdicts count towards the exit status (a documented column beside an observed
    /// one of the same kernel does not).
    pub counts: bool,
}

pub enum Source<'a> {
    Observed(BTreeMap<&'a str, &'a Cell>),
    Documented(KernelVersion, crate::arch::Arch),
}

impl<'a> Column<'a> {
    /// An observed column: a kernel's run and its cells.
    pub fn observed(id: &str, info: &RunInfo, cells: BTreeMap<&'a str, &'a Cell>) -> Column<'a> {
        Column {
            id: id.to_string(),
            version: version_label(info),
            release: info.release.clone(),
            source: Source::Observed(cells),
            counts: true,
        }
    }

    /// A documented column: a version on an architecture, answered from the expectation tables.
    pub fn documented(id: &str, version: KernelVersion, arch: crate::arch::Arch) -> Column<'a> {
        Column {
            id: id.to_string(),
            version: version.to_string(),
            release: String::new(),
            source: Source::Documented(version, arch),
            counts: true,
        }
    }

    pub fn answer(&self) -> Answer {
        match self.source {
            Source::Observed(_) => Answer::Observed,
            Source::Documented(..) => Answer::Documented,
        }
    }

    fn check<'p>(&self, profile: &'p Profile, behaviours: &BTreeMap<String, Behaviour>) -> KernelCheck<'p> {
        match &self.source {
            Source::Observed(cells) => profile.check(|id| cells.get(id).copied()),
            Source::Documented(v, arch) => documented::check(profile, behaviours, *v, *arch),
        }
    }
}

/// The matrix's column nearest to a kernel version: the same point release if one runs it, else
/// the fewest releases away (`6.18` is four releases before `7.2`: 6.19, 7.0, 7.1), then the
/// nearest point release; configuration variants only when nothing else is there. Only columns of
/// `arch` count (a column without one recorded is x86-64, as every column was before arm64): an
/// arm64 host's nearest column is never an x86 one. Returns the column and whether it runs exactly
/// that point release.
pub fn nearest(
    kernels: &BTreeMap<String, RunInfo>,
    version: KernelVersion,
    arch: crate::arch::Arch,
) -> Option<(&str, bool)> {
    let key = |v: KernelVersion| (release_index(v), v.patch as i64);
    let (release, patch) = key(version);
    crate::columns::by_version(kernels)
        .into_iter()
        .filter(|id| kernels[*id].arch.unwrap_or(crate::arch::Arch::X86_64) == arch)
        .filter_map(|id| kernels[id].kernel_version().map(|v| (id, v)))
        .min_by_key(|(id, v)| {
            let (r, p) = key(*v);
            (is_configuration_variant(&kernels[*id]), (r - release).abs(), (p - patch).abs())
        })
        .map(|(id, v)| (id, v == version))
}

/// A release's position in the sequence of upstream releases (2.6.39 was followed by 3.0, 3.19 by
/// 4.0, 4.20 by 5.0, 5.19 by 6.0, 6.19 by 7.0).
fn release_index(v: KernelVersion) -> i64 {
    let before: i64 = match v.major {
        0..=2 => 0,
        3 => 40,
        4 => 60,
        5 => 81,
        6 => 101,
        n => 121 + 20 * (n as i64 - 7),
    };
    before + v.minor as i64
}

/// The host, as a check on it describes it.
pub struct Host {
    /// `uname -r`.
    pub release: String,
    /// Its point release.
    pub version: Option<KernelVersion>,
    /// The nearest matrix column, and whether it runs the same point release.
    pub nearest: Option<(String, String, bool)>,
}

impl Host {
    /// The host's place among the matrix's columns, in one line.
    pub fn describe(&self) -> String {
        let v = self.version.map_or_else(|| self.release.clone(), |v| v.to_string());
        match &self.nearest {
            Some((id, at, true)) => format!("this host's kernel {v} is the point release column {id} runs ({at})"),
            Some((id, at, false)) => format!(
                "this host's kernel {v} corresponds to column {id} ({at}), the nearest by version; no column runs {v}, so the expectation tables answer for it too (documented, not observed)"
            ),
            None => format!("this host's kernel {v}: no matrix to compare it with"),
        }
    }
}

/// Every profile on every column.
pub struct Report<'p> {
    pub profiles: Vec<ProfileCheck<'p>>,
    pub status: i32,
    pub tally: BTreeMap<Outcome, usize>,
}

pub struct ProfileCheck<'p> {
    pub profile: &'p Profile,
    pub minimum: (Option<Since>, Vec<NeedSince>),
    pub kernels: Vec<KernelCheck<'p>>,
}

/// Checks `profiles` on `columns`; `behaviours` holds the expectation tables.
pub fn check<'p>(
    profiles: &'p [Profile],
    columns: &[Column<'_>],
    behaviours: &BTreeMap<String, Behaviour>,
) -> Report<'p> {
    let mut tally: BTreeMap<Outcome, usize> = BTreeMap::new();
    let profiles: Vec<ProfileCheck<'p>> = profiles
        .iter()
        .map(|p| {
            let kernels: Vec<KernelCheck<'p>> = columns.iter().map(|c| c.check(p, behaviours)).collect();
            for (c, k) in columns.iter().zip(&kernels) {
                if c.counts {
                    *tally.entry(k.outcome).or_default() += 1;
                }
            }
            ProfileCheck { profile: p, minimum: documented::minimum(p, behaviours), kernels }
        })
        .collect();
    let count = |o| tally.get(&o).copied().unwrap_or(0);
    let status = if count(Outcome::Violates) > 0 {
        VIOLATED
    } else if count(Outcome::NotChecked) > 0 {
        NOT_CHECKED
    } else {
        SATISFIED
    };
    Report { profiles, status, tally }
}

impl Report<'_> {
    fn count(&self, o: Outcome) -> usize {
        self.tally.get(&o).copied().unwrap_or(0)
    }

    /// The verdicts as text.
    pub fn text(&self, columns: &[Column<'_>]) -> String {
        let mut out = String::new();
        let width = columns.iter().map(|c| c.id.len()).max().unwrap_or(0);
        for p in &self.profiles {
            let profile = p.profile;
            let _ = writeln!(
                out,
                "\n{}: {}\n  ({}, {} needs)",
                profile.name,
                profile.summary,
                profile.path,
                profile.needs.len()
            );
            let _ = writeln!(
                out,
                "  minimum kernel, from the expectation tables: {}",
                documented::describe_minimum(&p.minimum.0, &p.minimum.1)
            );
            for (c, check) in columns.iter().zip(&p.kernels) {
                let label = match &c.source {
                    Source::Observed(_) => String::new(),
                    Source::Documented(_, arch) => format!(" (documented for {arch}, not observed)"),
                };
                let _ = writeln!(out, "  {:<width$}  {:<12} {}{label}", c.id, c.version, check.outcome);
                for n in check.needs.iter().filter(|n| n.status != Status::Met) {
                    let what = match (n.status, c.answer()) {
                        (Status::Violated, Answer::Observed) => format!("observed `{}`", n.observed),
                        (Status::Violated, Answer::Documented) => format!("documented `{}`", n.observed),
                        _ => "not checked".to_string(),
                    };
                    let reason = n.reason.as_deref().map_or(String::new(), |r| format!(" ({r})"));
                    let _ = writeln!(
                        out,
                        "      {}: {what}{reason}; needs `{}`",
                        n.need.behaviour, n.need.expect
                    );
                    let _ = writeln!(out, "        because {}", n.need.why);
                }
            }
        }
        let (violated, unchecked) = (self.count(Outcome::Violates), self.count(Outcome::NotChecked));
        let _ = writeln!(
            out,
            "\n{} profile(s) on {} kernel(s): {} satisfied, {violated} violated, {unchecked} not checked: exit status {} ({})",
            self.profiles.len(),
            columns.iter().filter(|c| c.counts).count(),
            self.count(Outcome::Satisfies),
            self.status,
            match self.status {
                SATISFIED => "every kernel satisfies every profile",
                VIOLATED => "some kernel violates a profile",
                _ => "nothing violated, but some needs were not checked",
            }
        );
        out
    }

    /// The verdicts as `docs/check.schema.json` describes them. `matrix`: the matrix file and its
    /// `generated` date, when one was read.
    pub fn json(&self, columns: &[Column<'_>], matrix: Option<(&str, &str)>, host: Option<&Host>) -> Value {
        let since = |s: &Since| match s {
            Since::From(v) => v.to_string(),
            Since::Any => "any".into(),
            Since::Never => "never".into(),
            Since::Undetermined => "undetermined".into(),
        };
        let profiles: Vec<Value> = self
            .profiles
            .iter()
            .map(|p| {
                let kernels: Vec<Value> = columns
                    .iter()
                    .zip(&p.kernels)
                    .map(|(c, k)| {
                        let needs: Vec<Value> = k
                            .needs
                            .iter()
                            .map(|n| {
                                json!({
                                    "behaviour": n.need.behaviour,
                                    "needed": n.need.expect,
                                    "observed": n.observed,
                                    "verdict": status_str(n.status),
                                    "cell_verdict": n.verdict.map(|v| v.as_str()),
                                    "reason": n.reason,
                                })
                            })
                            .collect();
                        json!({
                            "id": c.id,
                            "point_release": c.version,
                            "release": c.release,
                            "answer": c.answer().as_str(),
                            "counts": c.counts,
                            "verdict": k.outcome.as_str(),
                            "needs": needs,
                        })
                    })
                    .collect();
                let (overall, needs) = &p.minimum;
                json!({
                    "name": p.profile.name,
                    "path": p.profile.path,
                    "summary": p.profile.summary,
                    "source": p.profile.source,
                    "needs": p.profile.needs.iter().map(|n| json!({
                        "behaviour": n.behaviour, "expect": n.expect, "why": n.why, "line": n.line,
                    })).collect::<Vec<_>>(),
                    "minimum": {
                        "version": overall.as_ref().map(since),
                        "text": documented::describe_minimum(overall, needs),
                        "needs": needs.iter().map(|n| json!({
                            "behaviour": n.behaviour, "since": since(&n.since), "undetermined": n.undetermined,
                        })).collect::<Vec<_>>(),
                    },
                    "kernels": kernels,
                })
            })
            .collect();
        json!({
            "schema_version": SCHEMA_VERSION,
            "matrix": matrix.map(|(path, generated)| json!({"path": path, "generated": generated})),
            "host": host.map(|h| json!({
                "release": h.release,
                "point_release": h.version.map(|v| v.to_string()),
                "nearest": h.nearest.as_ref().map(|(id, at, same)| json!({"id": id, "point_release": at, "same_point_release": same})),
                "text": h.describe(),
            })),
            "profiles": profiles,
            "summary": {
                "satisfied": self.count(Outcome::Satisfies),
                "violated": self.count(Outcome::Violates),
                "not_checked": self.count(Outcome::NotChecked),
            },
            "exit_status": self.status,
        })
    }
}

fn status_str(s: Status) -> &'static str {
    match s {
        Status::Met => "met",
        Status::Violated => "violated",
        Status::NotChecked => "not checked",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;

    fn kernels(columns: &[(&str, &str, &str)]) -> BTreeMap<String, RunInfo> {
        columns
            .iter()
            .map(|(id, release, debian)| {
                let info = RunInfo {
                    release: release.to_string(),
                    version: format!("#1 SMP Debian {debian}-1"),
                    ..RunInfo::default()
                };
                (id.to_string(), info)
            })
            .collect()
    }

    #[test]
    fn the_nearest_column_counts_releases() {
        let k = kernels(&[
            ("debian-5.10-cloud", "5.10.0-46-cloud-amd64", "5.10.262"),
            ("debian-6.12-cloud", "6.12.118+deb13-cloud-amd64", "6.12.118"),
            ("debian-7.2-cloud", "7.2.13+deb14-cloud-amd64", "7.2.13"),
        ]);
        let v = |s: &str| s.parse::<KernelVersion>().unwrap();
        assert_eq!(
            nearest(&k, v("6.18.44"), Arch::X86_64),
            Some(("debian-7.2-cloud", false)),
            "6.19, 7.0, 7.1, 7.2"
        );
        assert_eq!(nearest(&k, v("6.14.2"), Arch::X86_64), Some(("debian-6.12-cloud", false)));
        assert_eq!(nearest(&k, v("6.12.118"), Arch::X86_64), Some(("debian-6.12-cloud", true)));
        assert_eq!(nearest(&k, v("5.4.1"), Arch::X86_64), Some(("debian-5.10-cloud", false)));
        assert_eq!(nearest(&BTreeMap::new(), v("5.4.1"), Arch::X86_64), None);
    }

    #[test]
    fn the_nearest_column_has_the_hosts_architecture() {
        let mut k = kernels(&[
            ("debian-6.1-cloud", "6.1.0-40-cloud-amd64", "6.1.192"),
            ("debian-6.12-cloud-arm64", "6.12.118+deb13-cloud-arm64", "6.12.118"),
            ("debian-7.2-cloud-arm64", "7.2.13+deb14-cloud-arm64", "7.2.13"),
        ]);
        for id in ["debian-6.12-cloud-arm64", "debian-7.2-cloud-arm64"] {
            k.get_mut(id).unwrap().arch = Some(Arch::Arm64);
        }
        let v = |s: &str| s.parse::<KernelVersion>().unwrap();
        assert_eq!(nearest(&k, v("6.1.192"), Arch::Arm64), Some(("debian-6.12-cloud-arm64", false)));
        assert_eq!(nearest(&k, v("7.2.13"), Arch::X86_64), Some(("debian-6.1-cloud", false)));
        assert_eq!(nearest(&k, v("7.2.13"), Arch::Arm64), Some(("debian-7.2-cloud-arm64", true)));
    }
}
