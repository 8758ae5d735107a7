//! Findings: the cells where a kernel does not do what is documented, or not what its
//! expectation says. Computed from the observations, never written by hand.

use crate::data::{Compat, Verdict};
use crate::expect::{applicable, Expect};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The observation contradicts what the documentation claims for this kernel version.
    Documentation,
    /// The observation contradicts the behaviour's expectation (verdict `unexpected`).
    Expectation,
    /// Repeated runs on the kernel observed different things (verdict `flaky`).
    Flaky,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub behaviour: String,
    pub kernel: String,
    pub release: String,
    pub observed: String,
    /// The claim that does not hold, described ("all kernels: ok").
    pub claim: String,
    /// Where a documented claim is made, quoted (empty for other kinds).
    pub source: String,
    pub kind: Kind,
}

pub fn findings(compat: &Compat) -> Vec<Finding> {
    let mut out = Vec::new();
    for (id, behaviour) in &compat.behaviours {
        for (kernel, cell) in &behaviour.cells {
            if cell.verdict == Verdict::Flaky {
                let release = compat.kernels.get(kernel).map(|k| k.release.clone()).unwrap_or_default();
                let seen = cell.details.get("observations").map(ToString::to_string).unwrap_or_default();
                out.push(Finding {
                    behaviour: id.clone(),
                    kernel: kernel.clone(),
                    release,
                    observed: seen,
                    claim: "the same observation on every run".to_string(),
                    source: String::new(),
                    kind: Kind::Flaky,
                });
                continue;
            }
            if !matches!(cell.verdict, Verdict::Expected | Verdict::Unexpected) {
                continue;
            }
            let info = compat.kernels.get(kernel);
            let release = info.map(|k| k.release.clone()).unwrap_or_default();
            let version = info.and_then(|k| k.kernel_version());
            let mut push = |claim: String, source: &str, kind| {
                out.push(Finding {
                    behaviour: id.clone(),
                    kernel: kernel.clone(),
                    release: release.clone(),
                    observed: cell.observed.clone(),
                    claim,
                    source: source.to_string(),
                    kind,
                })
            };
            if let (Some(rule), _) =
                applicable(&behaviour.documented, version, info.and_then(|k| k.config.as_ref()))
            {
                if rule
                    .parsed()
                    .is_ok_and(|e| !matches!(e, Expect::Unsupported(_)) && !e.matches(&cell.observed))
                {
                    push(rule.describe(), &rule.source, Kind::Documentation);
                }
            }
            if cell.verdict == Verdict::Unexpected {
                push(cell.expected.clone().unwrap_or_else(|| "(no rule)".into()), "", Kind::Expectation);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Behaviour, Cell, RunInfo, RunStatus, SCHEMA};
    use crate::expect::Rule;
    use std::collections::BTreeMap;

    #[test]
    fn lists_documentation_mismatches_and_unexpected_cells() {
        let cell = |observed: &str, verdict| Cell {
            observed: observed.into(),
            verdict,
            reason: None,
            expected: Some("all kernels: EINVAL".into()),
            details: BTreeMap::new(),
        };
        let kernel = |release: &str| RunInfo {
            release: release.into(),
            version: String::new(),
            machine: String::new(),
            source: String::new(),
            accel: "tcg".into(),
            date: String::new(),
            suite: String::new(),
            status: RunStatus::Complete,
            reason: None,
            console_log: None,
            duration_ms: None,
            init_ms: None,
            suite_ms: None,
            ..RunInfo::default()
        };
        let b = Behaviour {
            family: "api".into(),
            summary: "s".into(),
            observes: "o".into(),
            expectation: vec![Rule::new("*", "EINVAL")],
            documented: vec![Rule::new(">=6.0", "ok")],
            citation: "c".into(),
            notes: String::new(),
            selftests: Vec::new(),
            cells: [
                ("old".to_string(), cell("EINVAL", Verdict::Expected)),
                ("new".to_string(), cell("EINVAL", Verdict::Expected)),
                ("odd".to_string(), cell("ok", Verdict::Unexpected)),
                ("lost".to_string(), Cell::missing("gone")),
                ("shaky".to_string(), {
                    let mut c = cell("EINVAL", Verdict::Flaky);
                    c.details
                        .insert("observations".into(), "2x expected \"EINVAL\"; 1x unexpected \"ok\"".into());
                    c
                }),
            ]
            .into_iter()
            .collect(),
        };
        let compat = Compat {
            schema: SCHEMA,
            generated: String::new(),
            kernels: [
                ("old", "5.10.0-32-cloud-amd64"),
                ("new", "6.1.0-50"),
                ("odd", "6.2.0"),
                ("lost", "6.3.0"),
                ("shaky", "6.4.0"),
            ]
            .into_iter()
            .map(|(k, r)| (k.to_string(), kernel(r)))
            .collect(),
            behaviours: [("api.x".to_string(), b)].into_iter().collect(),
        };
        let f = findings(&compat);
        let got: Vec<(&str, &Kind)> = f.iter().map(|f| (f.kernel.as_str(), &f.kind)).collect();
        assert_eq!(
            got,
            [("new", &Kind::Documentation), ("odd", &Kind::Expectation), ("shaky", &Kind::Flaky)]
        );
        assert_eq!(f[0].claim, "6.0 and later: ok");
        assert!(f[2].observed.contains("1x unexpected"), "{:?}", f[2]);
    }
}
