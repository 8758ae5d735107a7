//! Compiling per-kernel results and the suite's catalogue into the matrix.

use crate::data::{Catalogue, Cell, Compat, Results, RunStatus, SCHEMA};
use std::collections::BTreeMap;

/// The reason of a selftest case's cell on a kernel whose own selftests ran and have no such case
/// (their cases differ by version): the report shows it as "not in this kernel's selftests".
pub const NO_SUCH_SELFTEST: &str =
    "this kernel's own selftests have no such case (their cases differ by version)";

/// Builds the matrix: every catalogue behaviour gets a cell for every kernel. A behaviour a
/// kernel's results lack becomes `missing`, with the run's own reason when the run was cut short;
/// a selftest case a complete run's own selftests do not have is `absent` (nothing to observe).
/// Results for behaviours the catalogue no longer has are dropped (and listed in the return value).
pub fn compile(
    catalogue: &Catalogue,
    runs: &BTreeMap<String, Results>,
    generated: String,
) -> (Compat, Vec<String>) {
    let mut dropped = Vec::new();
    let mut behaviours = catalogue.behaviours.clone();
    // A row for every selftest case some column ran (they are not in the catalogue).
    for id in runs.values().flat_map(|r| r.cells.keys()) {
        if crate::data::family_of(id) == crate::data::SELFTESTS && !behaviours.contains_key(id) {
            behaviours.insert(id.clone(), crate::data::selftest_behaviour(id));
        }
    }
    for (kernel, run) in runs {
        for (id, behaviour) in behaviours.iter_mut() {
            let cell = match run.cells.get(id) {
                Some(cell) => cell.clone(),
                None if behaviour.family == crate::data::SELFTESTS
                    && run.kernel.status == RunStatus::Complete
                    && run.kernel.selftests.as_deref().is_some_and(|s| !s.starts_with("not run")) =>
                {
                    Cell::absent(NO_SUCH_SELFTEST)
                }
                None => Cell::missing(match (&run.kernel.status, &run.kernel.reason) {
                    (RunStatus::Incomplete, Some(reason)) => reason.clone(),
                    (RunStatus::Incomplete, None) => "the run was cut short".to_string(),
                    (RunStatus::Complete, _) if behaviour.family == crate::data::SELFTESTS => {
                        match &run.kernel.selftests {
                            Some(s) => format!("its own selftests were {s}"),
                            None => "its own selftests were not run (a run without them, or before them)"
                                .to_string(),
                        }
                    }
                    (RunStatus::Complete, _) => {
                        "not run on this kernel (its results predate this behaviour, or a filter skipped it)"
                            .to_string()
                    }
                }),
            };
            behaviour.cells.insert(kernel.clone(), cell);
        }
        dropped.extend(
            run.cells.keys().filter(|id| !behaviours.contains_key(*id)).map(|id| format!("{kernel}: {id}")),
        );
    }
    let kernels = runs.iter().map(|(k, r)| (k.clone(), r.kernel.clone())).collect();
    (Compat { schema: SCHEMA, generated, kernels, behaviours }, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Behaviour, RunInfo, Verdict};
    use crate::expect::Rule;

    fn behaviour() -> Behaviour {
        Behaviour {
            family: "api".into(),
            summary: "s".into(),
            observes: "o".into(),
            expectation: vec![Rule::new("*", "x")],
            documented: Vec::new(),
            citation: "c".into(),
            notes: String::new(),
            selftests: Vec::new(),
            cells: BTreeMap::new(),
        }
    }

    fn run(status: RunStatus, reason: Option<&str>, cells: &[(&str, &str)]) -> Results {
        Results {
            schema: SCHEMA,
            kernel: RunInfo {
                release: "r".into(),
                version: String::new(),
                machine: String::new(),
                source: "s".into(),
                accel: "tcg".into(),
                date: "d".into(),
                suite: "0".into(),
                status,
                reason: reason.map(String::from),
                console_log: None,
                duration_ms: None,
                init_ms: None,
                suite_ms: None,
                ..RunInfo::default()
            },
            cells: cells
                .iter()
                .map(|(id, obs)| {
                    let mut c = Cell::missing("");
                    c.observed = obs.to_string();
                    c.verdict = Verdict::Expected;
                    c.reason = None;
                    (id.to_string(), c)
                })
                .collect(),
        }
    }

    #[test]
    fn every_behaviour_gets_a_cell_for_every_kernel() {
        let catalogue = Catalogue {
            schema: SCHEMA,
            behaviours: [("api.a".to_string(), behaviour()), ("api.b".to_string(), behaviour())]
                .into_iter()
                .collect(),
        };
        let mut runs = BTreeMap::new();
        runs.insert(
            "k1".to_string(),
            run(RunStatus::Complete, None, &[("api.a", "1"), ("api.b", "2"), ("api.gone", "3")]),
        );
        runs.insert(
            "k2".to_string(),
            run(RunStatus::Incomplete, Some("kernel panic: boom"), &[("api.a", "1")]),
        );
        let (compat, dropped) = compile(&catalogue, &runs, "now".into());
        assert_eq!(dropped, vec!["k1: api.gone".to_string()]);
        assert_eq!(compat.behaviours["api.b"].cells["k1"].observed, "2");
        let lost = &compat.behaviours["api.b"].cells["k2"];
        assert_eq!(lost.verdict, Verdict::Missing);
        assert_eq!(lost.reason.as_deref(), Some("kernel panic: boom"));
        assert_eq!(compat.kernels.len(), 2);
        for b in compat.behaviours.values() {
            assert_eq!(b.cells.len(), 2);
        }
    }

    #[test]
    fn selftest_cases_get_rows_of_their_own_and_say_why_a_kernel_lacks_one() {
        let catalogue = Catalogue { schema: SCHEMA, behaviours: [("api.a".to_string(), behaviour())].into() };
        let mut runs = BTreeMap::new();
        let mut new = run(RunStatus::Complete, None, &[("api.a", "1"), ("selftests.unit_move_anon", "pass")]);
        new.kernel.selftests = Some("linux-source-6.12 6.12.118-1".into());
        runs.insert("new".to_string(), new);
        let mut old =
            run(RunStatus::Complete, None, &[("api.a", "1"), ("selftests.userfaultfd_anon", "pass")]);
        old.kernel.selftests = Some("linux-source-5.10 5.10.262-1".into());
        runs.insert("old".to_string(), old);
        let mut unbuilt = run(RunStatus::Complete, None, &[("api.a", "1")]);
        unbuilt.kernel.selftests = Some("not run: no source package is pinned for it".into());
        runs.insert("unbuilt".to_string(), unbuilt);
        runs.insert("without".to_string(), run(RunStatus::Complete, None, &[("api.a", "1")]));
        let (compat, dropped) = compile(&catalogue, &runs, "now".into());
        assert!(dropped.is_empty(), "{dropped:?}");
        let row = &compat.behaviours["selftests.unit_move_anon"];
        assert_eq!(row.family, "selftests");
        assert_eq!(row.cells["new"].observed, "pass");
        let reason = |k: &str| row.cells[k].reason.clone().unwrap();
        assert!(reason("old").contains("no such case"), "{}", reason("old"));
        assert!(reason("unbuilt").contains("not run: no source package"), "{}", reason("unbuilt"));
        assert!(reason("without").contains("were not run"), "{}", reason("without"));
        assert_eq!(row.cells["old"].verdict, Verdict::Absent);
        assert_eq!(row.cells["unbuilt"].verdict, Verdict::Missing);
        assert_eq!(row.cells["without"].verdict, Verdict::Missing);
        assert_eq!(compat.behaviours["selftests.userfaultfd_anon"].cells["new"].verdict, Verdict::Absent);
    }

    #[test]
    fn selftest_cases_are_graded_by_the_kernel_configuration() {
        use crate::expect::{grade, Reported};
        let v = crate::version::KernelVersion::from_uname("6.12.118", "");
        let no_hugetlbfs =
            crate::config::Config::parse("t", "CONFIG_USERFAULTFD=y\n# CONFIG_HUGETLBFS is not set\n");
        let no_uffd =
            crate::config::Config::parse("t", "# CONFIG_USERFAULTFD is not set\nCONFIG_HUGETLBFS=y\n");
        let rules = |id: &str| crate::data::selftest_rules(id);
        let hugetlb = "selftests.stress_hugetlb";
        let g = grade(&rules(hugetlb), v, Some(&no_hugetlbfs), Reported::Unsupported);
        assert_eq!(g.verdict, Verdict::Unsupported);
        // The other cases still have to pass there.
        let g = grade(&rules("selftests.stress_anon"), v, Some(&no_hugetlbfs), Reported::Observed("pass"));
        assert_eq!(g.verdict, Verdict::Expected);
        let g = grade(&rules("selftests.stress_anon"), v, Some(&no_hugetlbfs), Reported::Unsupported);
        assert_eq!(g.verdict, Verdict::Unexpected);
        let g = grade(&rules(hugetlb), v, Some(&no_uffd), Reported::Unsupported);
        assert_eq!(g.verdict, Verdict::Unsupported);
        let g = grade(&rules("selftests.unit_move_anon"), v, None, Reported::Observed("fail"));
        assert_eq!(g.verdict, Verdict::Unexpected);
    }
}
