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
    use crate::kit::variant::HugeSize;
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
    fn a_size_variant_is_one_line_and_unsupported_where_the_size_is_missing() {
        use model::config::Config;
        use model::expect::{applicable, grade, Reported};
        assert!(!crate::probes::hugetlb::SIZED.is_empty());
        let config = |text: &str| Config::parse("test", text);
        let x86 = config("CONFIG_X86_64=y\nCONFIG_USERFAULTFD=y\nCONFIG_HUGETLBFS=y\n");
        let arm64 =
            config("CONFIG_ARM64=y\nCONFIG_ARM64_4K_PAGES=y\nCONFIG_USERFAULTFD=y\nCONFIG_HUGETLBFS=y\n");
        let arm64_64k =
            config("CONFIG_ARM64=y\nCONFIG_ARM64_64K_PAGES=y\nCONFIG_USERFAULTFD=y\nCONFIG_HUGETLBFS=y\n");
        let v612 = Some(KernelVersion::new(6, 12, 0));
        for sized in crate::probes::hugetlb::SIZED {
            assert_eq!(sized.variant.huge, HugeSize::Cont64K, "{}", sized.id);
            let base_id = sized.id.strip_suffix("_64k").expect("a 64 KiB variant's id ends in _64k");
            let base = find(base_id).unwrap_or_else(|| panic!("{}: no base {base_id}", sized.id));
            // The base's probe, backing and expectation; only the size differs.
            assert!(std::ptr::fn_addr_eq(sized.probe, base.probe), "{}", sized.id);
            assert_eq!(sized.variant, base.variant.sized(HugeSize::Cont64K));
            assert_eq!((sized.huge_pages, sized.expect), (base.huge_pages, base.expect));
            let (rules, base_rules) = (sized.rules(), base.rules());
            assert_eq!(rules.len(), base_rules.len() + 2, "{}", sized.id);
            let m = sized.to_matrix();
            assert!(m.summary.starts_with(base.summary) && m.summary.contains("64 KiB"), "{}", m.summary);
            assert!(m.citation.contains("arch/arm64/mm/hugetlbpage.c"), "{}", m.citation);
            // On arm64 with 4 KiB pages the base's row applies; elsewhere the size is missing.
            let on = |c: &Config| applicable(&rules, v612, Some(c)).0.map(|r| r.expect.clone());
            assert_eq!(on(&arm64), applicable(&base_rules, v612, Some(&arm64)).0.map(|r| r.expect.clone()));
            for lacking in [&x86, &arm64_64k] {
                assert!(on(lacking).is_some_and(|e| e.starts_with("unsupported: ")), "{}", sized.id);
                // A missing size is expected there and nowhere else: never a hard-coded observation.
                let g = |c: &Config| grade(&rules, v612, Some(c), Reported::Unsupported).verdict;
                assert_eq!(g(lacking), model::verdict::Verdict::Unsupported);
                assert_eq!(g(&arm64), model::verdict::Verdict::Unexpected, "{}", sized.id);
            }
        }
    }

    #[test]
    #[should_panic(expected = "sized: the base is not a hugetlb variant")]
    fn a_size_variant_of_a_behaviour_that_maps_no_huge_pages_is_refused() {
        // In a `const` declaration this panic fails the build.
        use crate::kit::behaviour::sized;
        let _ = sized(
            crate::probes::remove::BEHAVIOURS,
            "remove.refault",
            HugeSize::Cont64K,
            "remove.refault_64k",
        );
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
