//! Where x86-64 and arm64 differ: the columns of one Debian kernel on the two architectures
//! (paired by id, `ID` and `ID-arm64`), and each behaviour both observed differently, with the row
//! that applies on each side.

use super::*;

/// One column's side of an architecture difference: what it observed, its verdict, and the
/// expectation row that applies to it (`model::expect::applicable` on its version and
/// configuration, `arch=` conditions included), described.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchSide {
    pub kernel: String,
    pub arch: model::arch::Arch,
    pub version: String,
    pub observed: String,
    pub verdict: Verdict,
    /// Why the verdict is what it is (`unsupported`: what the kernel lacks).
    pub reason: Option<String>,
    /// The applicable row (`5.10 to before 5.13 with arch=arm64: includes: ...`), or why none.
    pub row: String,
}

/// A behaviour observed differently by the two columns of one kernel on two architectures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchDifference<'a> {
    pub behaviour: &'a str,
    pub x86: ArchSide,
    pub other: ArchSide,
}

/// A pair of columns of the same kernel on two architectures (`model::columns::arch_pairs`), the
/// behaviours they observed differently, and how many behaviours both observed (the rest, a cell
/// that learnt nothing about the kernel on either side, cannot be compared).
pub struct ArchPair<'a> {
    pub x86: &'a str,
    pub other: &'a str,
    pub compared: usize,
    pub differences: Vec<ArchDifference<'a>>,
}

/// Where x86-64 and another architecture differ on the same kernel: for each pair of columns, each
/// behaviour whose cells both observed the kernel (`expected`, `unexpected`, `unsupported`) and
/// whose observations differ. Selftest cases are left out: they are the kernels' tests, not our
/// behaviours, and have no expectation rows.
pub fn arch_differences(compat: &Compat) -> Vec<ArchPair<'_>> {
    let side = |b: &model::Behaviour, kernel: &str, c: &Cell| {
        let info = &compat.kernels[kernel];
        let (rule, passed_over) =
            applicable_on(&b.expectation, info.kernel_version(), info.config.as_ref(), info.arch);
        let row = match rule {
            Some(r) => r.describe(),
            None if !passed_over.is_empty() => {
                "none known: the kernel's configuration is not recorded, which its rows depend on".to_string()
            }
            None => "no row covers this version".to_string(),
        };
        ArchSide {
            kernel: kernel.to_string(),
            arch: model::columns::arch(info),
            version: version_label(info),
            observed: c.observed.clone(),
            verdict: c.verdict,
            reason: c.reason.clone(),
            row,
        }
    };
    model::columns::arch_pairs(&compat.kernels)
        .into_iter()
        .map(|(x86, other)| {
            let mut compared = 0;
            let mut differences = Vec::new();
            for (id, b) in compat.behaviours.iter().filter(|(_, b)| b.family != model::data::SELFTESTS) {
                let (Some(a), Some(o)) = (b.cells.get(x86), b.cells.get(other)) else { continue };
                if !(observes_the_kernel(a.verdict) && observes_the_kernel(o.verdict)) {
                    continue;
                }
                compared += 1;
                if a.observed != o.observed {
                    differences.push(ArchDifference {
                        behaviour: id.as_str(),
                        x86: side(b, x86, a),
                        other: side(b, other, o),
                    });
                }
            }
            ArchPair { x86, other, compared, differences }
        })
        .collect()
}
