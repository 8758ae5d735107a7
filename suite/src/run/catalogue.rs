//! The catalogue: every behaviour the families declare (`probes/<family>.rs`), in family order,
//! and as the matrix's catalogue.

use crate::kit::behaviour::Behaviour;

/// Every behaviour, in family order with the Go behaviours spread through it
/// (`probes::goruntime::run_order`); the harness then starts the slowest first (`Behaviour::slow`).
pub fn all() -> impl Iterator<Item = &'static Behaviour> {
    use crate::probes::*;
    let families = [
        api::BEHAVIOURS,
        populate::BEHAVIOURS,
        remote::BEHAVIOURS,
        remove::BEHAVIOURS,
        ordering::BEHAVIOURS,
        stw::BEHAVIOURS,
        hugetlb::BEHAVIOURS,
        hugetlb::SIZED,
        wp::BEHAVIOURS,
        serve::BEHAVIOURS,
        clients_crate::BEHAVIOURS,
        clients_criu::BEHAVIOURS,
    ];
    goruntime::run_order(families.into_iter().flatten().collect()).into_iter()
}

pub fn find(id: &str) -> Option<&'static Behaviour> {
    all().find(|b| b.id == id)
}

pub fn to_matrix() -> model::Catalogue {
    model::Catalogue {
        schema: model::data::SCHEMA,
        behaviours: all().map(|b| (b.id.to_string(), b.to_matrix())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::version::KernelVersion;

    #[test]
    fn stresses_and_races_are_started_first() {
        // The harness starts them by `slow`: each runs seconds under TCG, so it must overlap the rest.
        for id in ["stw.parallel_stress", "remove.stale_copy_race"] {
            assert_eq!(find(id).map(|b| b.slow), Some(2), "{id}");
        }
        let order: Vec<&str> = all().map(|b| b.id).collect();
        assert_eq!(order.len(), order.iter().collect::<std::collections::HashSet<_>>().len());
    }

    #[test]
    fn a_variant_of_an_existing_probe_is_one_declaration() {
        use crate::kit::variant::Variant;
        use crate::probes::remove;
        const SHARED: Behaviour = Behaviour {
            id: "remove.hugetlb_shared_refault",
            variant: Variant::HUGETLB_SHARED,
            huge_pages: 1,
            ..Behaviour::like(remove::BEHAVIOURS, "remove.refault")
        };
        let base = find("remove.refault").unwrap();
        assert!(std::ptr::fn_addr_eq(SHARED.probe, base.probe));
        assert_eq!((SHARED.variant, base.variant), (Variant::HUGETLB_SHARED, Variant::PLAIN));
        // The variant's expectation is the probe's, and a kernel without hugetlbfs has none of it.
        let (rules, base_rules) = (SHARED.rules(), base.rules());
        assert_eq!(rules.len(), base_rules.len() + 1);
        assert!(rules[1].kernels.contains("CONFIG_HUGETLBFS"), "{:?}", rules[1]);
    }

    #[test]
    fn declarations_are_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for b in all() {
            assert!(seen.insert(b.id), "{} declared twice", b.id);
            let (family, name) = b.id.split_once('.').expect("ids are <family>.<behaviour>");
            assert!(!family.is_empty() && !name.is_empty() && !name.contains('.'), "{}", b.id);
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                b.id
            );
            assert!(!b.summary.is_empty() && !b.observes.is_empty() && !b.citation.is_empty(), "{}", b.id);
            assert!(b.has_probe(), "{} declares no probe", b.id);
            for case in b.selftests {
                assert!(case.starts_with("selftests.") && case.len() > 10, "{}: {case}", b.id);
            }
            model::expect::validate(&b.rules()).unwrap_or_else(|e| panic!("{}: {e}", b.id));
            if !b.documented.is_empty() {
                model::expect::validate(&b.documented_rules())
                    .unwrap_or_else(|e| panic!("{} (documented): {e}", b.id));
            }
            // Every kernel the project can meet is covered by exactly one rule without a condition.
            for (major, minor) in [(4, 3), (5, 10), (5, 14), (6, 1), (6, 12), (7, 2), (7, 3), (9, 0)] {
                let v = KernelVersion::new(major, minor, 0);
                let n = b
                    .rules()
                    .iter()
                    .filter(|r| r.condition().unwrap().is_none() && r.range().unwrap().contains(v))
                    .count();
                assert_eq!(n, 1, "{}: {n} rules cover {v}", b.id);
            }
        }
    }
}
