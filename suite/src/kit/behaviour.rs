//! A behaviour as data: identity, documentation, expectation by kernel version, and the probe that
//! observes it. Each family module declares its behaviours beside its probes.

use crate::kit::outcome::{Ctx, Fail, ProbeResult};
use crate::kit::variant::{HugeSize, Variant};
use model::expect::Rule;
use std::collections::BTreeMap;

/// One behaviour: identity, documentation, expectation by kernel version, and its probe.
#[derive(Clone, Copy)]
pub struct Behaviour {
    /// `<family>.<behaviour>`, stable forever: the matrix is keyed by it.
    pub id: &'static str,
    pub summary: &'static str,
    /// What the probe observes, and the values `observed` takes.
    pub observes: &'static str,
    /// `(kernel range, expectation)` rows; see `model::expect` for the language.
    pub expect: &'static [(&'static str, &'static str)],
    /// What the documentation claims, where that differs from `expect` (which follows the kernel
    /// source): `(kernel range, expectation, source quoted)`. The matrix's findings list every
    /// kernel that does not do what is documented, with the quote.
    pub documented: &'static [(&'static str, &'static str, &'static str)],
    pub citation: &'static str,
    pub notes: &'static str,
    /// The kernel's own selftest cases this behaviour speaks about, by the start of their ids
    /// (`selftests.unit_uffdio_api`): where one and the behaviour disagree on a kernel, the report
    /// says so.
    pub selftests: &'static [&'static str],
    /// Huge pages the probe faults in at most: the harness hands them out so that probes running
    /// at once never take each other's (see `harness::HugePagePool`).
    pub huge_pages: u64,
    /// How long the probe runs beyond its work: 0 not at all, 1 it waits through a quiet
    /// window, 2 it is a stress or a race (hundreds of hand-offs between its threads, each
    /// stretched when other probes share the CPUs). The harness starts the slowest first, so that
    /// they overlap the others' work instead of ending the run late.
    pub slow: u8,
    pub probe: fn(&Ctx, Variant) -> ProbeResult,
    /// The variant the probe runs: backing and access path ([`Variant::PLAIN`] unless said).
    pub variant: Variant,
}

impl Behaviour {
    /// What a declaration leaves unsaid: no documented claims, no notes. `id`, `summary`,
    /// `observes`, `expect`, `citation` and `probe` are always given (the catalogue test checks).
    pub const DEFAULT: Behaviour = Behaviour {
        id: "",
        summary: "",
        observes: "",
        expect: &[],
        documented: &[],
        citation: "",
        notes: "",
        selftests: &[],
        huge_pages: 0,
        slow: 0,
        probe: no_probe,
        variant: Variant::PLAIN,
    };

    /// The declaration `id` in `family` (a family's `BEHAVIOURS`), at compile time: the rest of
    /// a variant of its probe, declared in one line as
    /// `Behaviour { id: "remove.hugetlb_shared_refault", variant: Variant::HUGETLB_SHARED, huge_pages: 1,
    /// ..Behaviour::like(remove::BEHAVIOURS, "remove.refault") }` (the hugetlbfs row of its
    /// expectation follows from `huge_pages`). A build fails when `family` has no `id`.
    pub const fn like(family: &[Behaviour], id: &str) -> Behaviour {
        let mut i = 0;
        while i < family.len() {
            if same(family[i].id.as_bytes(), id.as_bytes()) {
                return family[i];
            }
            i += 1;
        }
        panic!("Behaviour::like: no such behaviour in that family");
    }

    /// Whether the declaration names its probe (not [`Behaviour::DEFAULT`]'s placeholder).
    #[cfg(test)]
    pub fn has_probe(&self) -> bool {
        !std::ptr::fn_addr_eq(self.probe, no_probe as fn(&Ctx, Variant) -> ProbeResult)
    }

    pub fn family(&self) -> &'static str {
        model::data::family_of(self.id)
    }

    /// The libtest-mimic trial name: `populate::read_missing`.
    pub fn trial_name(&self) -> String {
        self.id.replacen('.', "::", 1)
    }

    /// The expectation table: the declared rows after the one every behaviour shares (a kernel
    /// built without userfaultfd has none of it) and, for a behaviour that faults in huge pages,
    /// the one for a kernel built without hugetlbfs and those of the kernels that lack its huge
    /// page size.
    pub fn rules(&self) -> Vec<Rule> {
        let hugetlb = (self.huge_pages > 0).then_some(&crate::kit::rows::NO_HUGETLBFS);
        std::iter::once(&crate::kit::rows::NO_USERFAULTFD)
            .chain(hugetlb)
            .chain(self.variant.huge.rows())
            .chain(self.expect)
            .map(|(k, e)| Rule::new(k, e))
            .collect()
    }

    pub fn documented_rules(&self) -> Vec<Rule> {
        self.documented.iter().map(|(k, e, source)| Rule::claim(k, e, source)).collect()
    }

    pub fn to_matrix(self) -> model::Behaviour {
        let (summary, observes, citation) = match self.variant.huge {
            HugeSize::Default => {
                (self.summary.to_string(), self.observes.to_string(), self.citation.to_string())
            }
            huge => (
                format!("{} (on {} huge pages)", self.summary, huge.label()),
                format!("On {} huge pages instead of the default size: {}", huge.label(), self.observes),
                format!("{}; {}", self.citation, huge.citation()),
            ),
        };
        model::Behaviour {
            family: self.family().to_string(),
            summary,
            observes,
            expectation: self.rules(),
            documented: self.documented_rules(),
            citation,
            notes: self.notes.to_string(),
            selftests: self.selftests.iter().map(|s| s.to_string()).collect(),
            cells: BTreeMap::new(),
        }
    }
}

/// The hugetlb behaviour `base` of `family` on huge pages of `huge` instead of the default size,
/// as `id`: a size variant in one line, `sized(BEHAVIOURS, "remove.hugetlb_refault", Cont64K,
/// "remove.hugetlb_refault_64k")`. Its probe, backing, huge page count and expectation are the
/// base's; its summary, observations and citation name the size (`Behaviour::to_matrix`), and its
/// expectation starts with the rows of the kernels that lack the size (`Behaviour::rules`). A build
/// fails when the base's variant is not hugetlb (its probe would not map huge pages of that size),
/// is sized already, or carries documented claims (they would be graded on kernels without it), and
/// when `id` is not the base's with the size's suffix (`HugeSize::suffix`).
pub const fn sized(family: &[Behaviour], base: &str, huge: HugeSize, id: &'static str) -> Behaviour {
    assert!(
        is_sized_id(id.as_bytes(), base.as_bytes(), huge.suffix().as_bytes()),
        "sized: the id is not the base's with the size's suffix"
    );
    let base = Behaviour::like(family, base);
    assert!(base.variant.is_hugetlb() && base.huge_pages > 0, "sized: the base is not a hugetlb variant");
    assert!(matches!(base.variant.huge, HugeSize::Default), "sized: the base is sized already");
    assert!(base.documented.is_empty(), "sized: the base carries documented claims");
    Behaviour { id, variant: base.variant.sized(huge), ..base }
}

/// `a == b`, in a const fn.
const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether `id` is `base` followed by a non-empty `suffix`, in a const fn.
const fn is_sized_id(id: &[u8], base: &[u8], suffix: &[u8]) -> bool {
    if suffix.is_empty() || id.len() != base.len() + suffix.len() {
        return false;
    }
    let (head, tail) = id.split_at(base.len());
    same(head, base) && same(tail, suffix)
}

/// The placeholder probe of [`Behaviour::DEFAULT`].
fn no_probe(_: &Ctx, _: Variant) -> ProbeResult {
    Err(Fail::error("this behaviour declares no probe"))
}
