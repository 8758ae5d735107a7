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
        use std::collections::{BTreeMap, BTreeSet};
        let config = |text: &str| Config::parse("test", text);
        let kernel = "CONFIG_USERFAULTFD=y\nCONFIG_HUGETLBFS=y\n";
        let x86 = config(&format!("CONFIG_X86_64=y\n{kernel}"));
        let arm64 = |pages: &str| config(&format!("CONFIG_ARM64=y\nCONFIG_ARM64_{pages}_PAGES=y\n{kernel}"));
        let (arm64_4k, arm64_16k, arm64_64k) = (arm64("4K"), arm64("16K"), arm64("64K"));
        // Which sizes each base page size has (arch/arm64/mm/hugetlbpage.c hugetlbpage_init, with
        // arch/arm64/Kconfig ARM64_CONT_PTE_SHIFT / ARM64_CONT_PMD_SHIFT): 64 KiB is CONT_PTE_SIZE
        // only with 4 KiB pages; 32 MiB is CONT_PMD_SIZE with 4 KiB pages and PMD_SIZE with 16 KiB.
        let offered = |size: HugeSize| -> (Vec<&Config>, Vec<&Config>) {
            match size {
                HugeSize::Cont64K => (vec![&arm64_4k], vec![&x86, &arm64_16k, &arm64_64k]),
                HugeSize::Cont32M => (vec![&arm64_4k, &arm64_16k], vec![&x86, &arm64_64k]),
                HugeSize::Default => unreachable!("a size variant is never of the default size"),
            }
        };
        let v612 = Some(KernelVersion::new(6, 12, 0));
        let mut bases: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for sized in crate::probes::hugetlb::SIZED {
            let size = sized.variant.huge;
            let base_id =
                sized.id.strip_suffix(size.suffix()).expect("a size variant's id ends in its suffix");
            bases.entry(size.suffix()).or_default().insert(base_id);
            let base = find(base_id).unwrap_or_else(|| panic!("{}: no base {base_id}", sized.id));
            // The base's probe, backing and expectation; only the size differs.
            assert!(std::ptr::fn_addr_eq(sized.probe, base.probe), "{}", sized.id);
            assert_eq!(sized.variant, base.variant.sized(size));
            assert_eq!((sized.huge_pages, sized.expect), (base.huge_pages, base.expect));
            let (rules, base_rules) = (sized.rules(), base.rules());
            assert_eq!(rules.len(), base_rules.len() + size.rows().len(), "{}", sized.id);
            let m = sized.to_matrix();
            assert!(m.summary.starts_with(base.summary) && m.summary.contains(size.label()), "{}", m.summary);
            assert!(m.citation.contains("arch/arm64/mm/hugetlbpage.c"), "{}", m.citation);
            // Where the size exists the base's row applies; elsewhere the size is missing.
            let on = |c: &Config| applicable(&rules, v612, Some(c)).0.map(|r| r.expect.clone());
            let g = |c: &Config| grade(&rules, v612, Some(c), Reported::Unsupported).verdict;
            let (having, lacking) = offered(size);
            for c in having {
                assert_eq!(on(c), applicable(&base_rules, v612, Some(c)).0.map(|r| r.expect.clone()));
                // A missing size is expected where the kernel lacks it and nowhere else: never a
                // hard-coded observation.
                assert_eq!(g(c), model::verdict::Verdict::Unexpected, "{} {c:?}", sized.id);
            }
            for c in lacking {
                assert!(on(c).is_some_and(|e| e.starts_with("unsupported: ")), "{} {c:?}", sized.id);
                assert_eq!(g(c), model::verdict::Verdict::Unsupported, "{} {c:?}", sized.id);
            }
        }
        // Both sizes, on the same bases.
        assert_eq!(bases.keys().copied().collect::<Vec<_>>(), ["_32m", "_64k"]);
        assert_eq!(bases["_32m"], bases["_64k"]);
    }

    #[test]
    #[should_panic(expected = "sized: the id is not the base's with the size's suffix")]
    fn a_size_variant_named_otherwise_is_refused() {
        // In a `const` declaration this panic fails the build.
        let _ = crate::kit::behaviour::sized(
            crate::probes::hugetlb::BEHAVIOURS,
            "remove.hugetlb_refault",
            HugeSize::Cont32M,
            "remove.hugetlb_refault_64k",
        );
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
