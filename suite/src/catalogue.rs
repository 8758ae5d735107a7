//! Behaviours as data: each family module declares its behaviours beside the probes that observe
//! them; this module collects them and turns them into the matrix's catalogue.

use crate::probe::{Ctx, ProbeResult};
use matrix::expect::Rule;
use std::collections::BTreeMap;

/// One behaviour: identity, documentation, expectation by kernel version, and its probe.
pub struct Behaviour {
    /// `<family>.<behaviour>`, stable forever: the matrix is keyed by it.
    pub id: &'static str,
    pub summary: &'static str,
    /// What the probe observes, and the values `observed` takes.
    pub observes: &'static str,
    /// `(kernel range, expectation)` rows; see `matrix::expect` for the language.
    pub expect: &'static [(&'static str, &'static str)],
    /// What the documentation claims, where that differs from `expect` (which follows the kernel
    /// source): the matrix's findings list every kernel that does not do what is documented.
    pub documented: &'static [(&'static str, &'static str)],
    pub citation: &'static str,
    pub notes: &'static str,
    pub probe: fn(&Ctx) -> ProbeResult,
}

impl Behaviour {
    pub fn family(&self) -> &'static str {
        matrix::model::family_of(self.id)
    }

    /// The libtest-mimic trial name: `populate::read_missing`.
    pub fn trial_name(&self) -> String {
        self.id.replacen('.', "::", 1)
    }

    pub fn rules(&self) -> Vec<Rule> {
        self.expect.iter().map(|(k, e)| Rule::new(k, e)).collect()
    }

    pub fn documented_rules(&self) -> Vec<Rule> {
        self.documented.iter().map(|(k, e)| Rule::new(k, e)).collect()
    }

    pub fn to_matrix(&self) -> matrix::Behaviour {
        matrix::Behaviour {
            family: self.family().to_string(),
            summary: self.summary.to_string(),
            observes: self.observes.to_string(),
            expectation: self.rules(),
            documented: self.documented_rules(),
            citation: self.citation.to_string(),
            notes: self.notes.to_string(),
            cells: BTreeMap::new(),
        }
    }
}

/// Every behaviour, in family order.
pub fn all() -> impl Iterator<Item = &'static Behaviour> {
    use crate::probes::*;
    [api::BEHAVIOURS, populate::BEHAVIOURS, remote::BEHAVIOURS, remove::BEHAVIOURS, stw::BEHAVIOURS]
        .into_iter()
        .flatten()
}

pub fn find(id: &str) -> Option<&'static Behaviour> {
    all().find(|b| b.id == id)
}

pub fn to_matrix() -> matrix::Catalogue {
    matrix::Catalogue {
        schema: matrix::model::SCHEMA,
        behaviours: all().map(|b| (b.id.to_string(), b.to_matrix())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use matrix::version::KernelVersion;

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
            matrix::expect::validate(&b.rules()).unwrap_or_else(|e| panic!("{}: {e}", b.id));
            if !b.documented.is_empty() {
                matrix::expect::validate(&b.documented_rules())
                    .unwrap_or_else(|e| panic!("{} (documented): {e}", b.id));
            }
            // Every kernel the project can meet is covered by exactly one rule.
            for (major, minor) in [(4, 3), (5, 10), (5, 14), (6, 1), (6, 12), (7, 2), (7, 3), (9, 0)] {
                let v = KernelVersion::new(major, minor, 0);
                let n = b.rules().iter().filter(|r| r.range().unwrap().contains(v)).count();
                assert_eq!(n, 1, "{}: {n} rules cover {v}", b.id);
            }
        }
    }
}
