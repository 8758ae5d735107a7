//! Verdicts: how an observation compares with the expectation for the kernel it was made on.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How an observation compares with the expectation for the kernel it was made on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Observed what the expectation for this kernel version says.
    Expected,
    /// Observed something else: a finding (or a bug in the expectation).
    Unexpected,
    /// A prerequisite is missing on this kernel (the advice, the feature, the config option).
    Unsupported,
    /// A prerequisite of the machine is missing, not of the kernel (not root, no huge pages
    /// reserved, a host setting the suite will not change): nothing was learnt about the kernel.
    Skipped,
    /// Repeated runs observed different things (`--repeat`): every distinct observation is in the
    /// details with its count.
    Flaky,
    /// The harness or the probe failed; nothing was learnt about the kernel.
    Error,
    /// The probe did not finish before its watchdog fired.
    Hung,
    /// The probe process died from a signal it did not expect.
    Crashed,
    /// No result arrived: the guest died, hung or the behaviour was not run there.
    Missing,
    /// Nothing to observe: a case of the kernels' own selftests that this kernel's selftests,
    /// which ran, do not have (their cases differ by version). Not a result that went missing.
    Absent,
}

impl Verdict {
    pub const ALL: [Verdict; 10] = [
        Verdict::Expected,
        Verdict::Unexpected,
        Verdict::Unsupported,
        Verdict::Skipped,
        Verdict::Flaky,
        Verdict::Error,
        Verdict::Hung,
        Verdict::Crashed,
        Verdict::Missing,
        Verdict::Absent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Expected => "expected",
            Verdict::Unexpected => "unexpected",
            Verdict::Unsupported => "unsupported",
            Verdict::Skipped => "skipped",
            Verdict::Flaky => "flaky",
            Verdict::Error => "error",
            Verdict::Hung => "hung",
            Verdict::Crashed => "crashed",
            Verdict::Missing => "missing",
            Verdict::Absent => "absent",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
