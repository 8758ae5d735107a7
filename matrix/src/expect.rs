//! Expectation tables and grading.
//!
//! A behaviour's expectation is a list of [`Rule`]s, each a kernel-version range and what a
//! kernel in that range is documented (or, by its source, known) to do. The `expect` text is a
//! small language, kept as text so the same string is declared in the suite, stored in the
//! matrix and shown in the report:
//!
//! | form                    | passes when the observed value ...                         |
//! |-------------------------|------------------------------------------------------------|
//! | `fault read`            | is exactly this string                                     |
//! | `one of: a \| b`        | is exactly one of the alternatives                         |
//! | `includes: A B C`       | is a space-separated list that contains every listed word  |
//! | `unsupported: <why>`    | never: the probe must find the prerequisite missing        |
//!
//! The first rule whose range holds the running kernel's version applies.

use crate::verdict::Verdict;
use crate::version::{KernelVersion, VersionRange};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A [`VersionRange`]: `*`, `>=5.14`, `<5.14`, `>=5.11, <6.1`.
    pub kernels: String,
    /// What is expected there, in the language above.
    pub expect: String,
}

impl Rule {
    pub fn new(kernels: &str, expect: &str) -> Rule {
        Rule { kernels: kernels.to_string(), expect: expect.to_string() }
    }

    pub fn range(&self) -> Result<VersionRange, String> {
        self.kernels.parse()
    }

    pub fn parsed(&self) -> Result<Expect, String> {
        Expect::parse(&self.expect)
    }

    /// "5.14 and later: fault read".
    pub fn describe(&self) -> String {
        match self.range() {
            Ok(r) => format!("{r}: {}", self.expect),
            Err(_) => format!("{}: {}", self.kernels, self.expect),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    Is(String),
    OneOf(Vec<String>),
    Includes(Vec<String>),
    Unsupported(String),
}

impl Expect {
    pub fn parse(text: &str) -> Result<Expect, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty expectation".to_string());
        }
        let words = |s: &str, sep: char| -> Result<Vec<String>, String> {
            let v: Vec<String> =
                s.split(sep).map(str::trim).filter(|w| !w.is_empty()).map(String::from).collect();
            if v.is_empty() {
                Err(format!("expectation {text:?} lists nothing"))
            } else {
                Ok(v)
            }
        };
        Ok(if let Some(rest) = text.strip_prefix("unsupported:") {
            Expect::Unsupported(rest.trim().to_string())
        } else if let Some(rest) = text.strip_prefix("one of:") {
            Expect::OneOf(words(rest, '|')?)
        } else if let Some(rest) = text.strip_prefix("includes:") {
            Expect::Includes(words(rest, ' ')?)
        } else {
            Expect::Is(text.to_string())
        })
    }

    pub fn matches(&self, observed: &str) -> bool {
        match self {
            Expect::Is(v) => observed == v,
            Expect::OneOf(vs) => vs.iter().any(|v| v == observed),
            Expect::Includes(ws) => {
                let have: Vec<&str> = observed.split_whitespace().collect();
                ws.iter().all(|w| have.contains(&w.as_str()))
            }
            Expect::Unsupported(_) => false,
        }
    }
}

/// Checks a whole table: every rule parses, and the ranges do not overlap (so "the first rule
/// that applies" is also "the only rule that applies").
pub fn validate(rules: &[Rule]) -> Result<(), String> {
    if rules.is_empty() {
        return Err("no expectation rules".to_string());
    }
    let mut ranges = Vec::new();
    for rule in rules {
        rule.parsed().map_err(|e| format!("rule {:?}: {e}", rule.kernels))?;
        ranges.push(rule.range()?);
    }
    for (i, a) in ranges.iter().enumerate() {
        for b in &ranges[i + 1..] {
            let lo = a.from.max(b.from);
            let hi = match (a.before, b.before) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
            if hi.is_none_or(|hi| lo.is_none_or(|lo| lo < hi)) {
                return Err(format!("expectation ranges {a} and {b} overlap"));
            }
        }
    }
    Ok(())
}

/// What a probe reported, before grading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reported<'a> {
    /// The behaviour was observed; `observed` is its canonical value.
    Observed(&'a str),
    /// A prerequisite is missing on this kernel (the probe says which).
    Unsupported,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grade {
    pub verdict: Verdict,
    /// The rule the kernel was graded against, described ("5.14 and later: fault read").
    pub rule: Option<String>,
    /// Why the verdict is not `expected`, when the grading itself knows.
    pub reason: Option<String>,
}

/// Grades one observation against a table for the running kernel's version.
pub fn grade(rules: &[Rule], version: Option<KernelVersion>, reported: Reported<'_>) -> Grade {
    let rule = version.and_then(|v| rules.iter().find(|r| r.range().is_ok_and(|range| range.contains(v))));
    let described = rule.map(Rule::describe);
    let expect = rule.map(|r| r.parsed());
    match (reported, expect) {
        (Reported::Unsupported, _) => Grade { verdict: Verdict::Unsupported, rule: described, reason: None },
        (Reported::Observed(_), None) => Grade {
            verdict: Verdict::Unexpected,
            rule: None,
            reason: Some(match version {
                Some(v) => format!("no expectation covers kernel {v}"),
                None => "the kernel version could not be read, so no expectation applies".into(),
            }),
        },
        (Reported::Observed(_), Some(Err(e))) => Grade {
            verdict: Verdict::Error,
            rule: described,
            reason: Some(format!("malformed expectation: {e}")),
        },
        (Reported::Observed(observed), Some(Ok(expect))) => {
            if expect.matches(observed) {
                Grade { verdict: Verdict::Expected, rule: described, reason: None }
            } else {
                let reason = match &expect {
                    Expect::Unsupported(why) => format!(
                        "expected the prerequisite to be missing ({why}), but the probe observed {observed:?}"
                    ),
                    _ => {
                        format!("observed {observed:?}, expected {}", rule.map_or("", |r| r.expect.as_str()))
                    }
                };
                Grade { verdict: Verdict::Unexpected, rule: described, reason: Some(reason) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Vec<Rule> {
        vec![
            Rule::new("<5.14", "unsupported: MADV_POPULATE_READ is new in 5.14"),
            Rule::new(">=5.14", "fault read"),
        ]
    }

    #[test]
    fn grades_by_version() {
        let v514 = Some(KernelVersion::new(5, 14, 0));
        let v510 = Some(KernelVersion::new(5, 10, 0));
        assert_eq!(grade(&table(), v514, Reported::Observed("fault read")).verdict, Verdict::Expected);
        let g = grade(&table(), v514, Reported::Observed("EINVAL"));
        assert_eq!(g.verdict, Verdict::Unexpected);
        assert_eq!(g.rule.as_deref(), Some("5.14 and later: fault read"));
        assert_eq!(grade(&table(), v510, Reported::Unsupported).verdict, Verdict::Unsupported);
        // A backport on an old kernel is a finding, not a pass.
        assert_eq!(grade(&table(), v510, Reported::Observed("fault read")).verdict, Verdict::Unexpected);
        assert_eq!(grade(&table(), None, Reported::Observed("fault read")).verdict, Verdict::Unexpected);
    }

    #[test]
    fn languages() {
        assert!(Expect::parse("includes: A B").unwrap().matches("C B A"));
        assert!(!Expect::parse("includes: A B").unwrap().matches("A"));
        assert!(Expect::parse("one of: x | y z").unwrap().matches("y z"));
        assert!(!Expect::parse("one of: x | y z").unwrap().matches("y"));
        assert!(Expect::parse("includes:").is_err());
        assert!(Expect::parse("  ").is_err());
    }

    #[test]
    fn validation() {
        assert!(validate(&table()).is_ok());
        assert!(validate(&[Rule::new("*", "a"), Rule::new(">=5.1", "b")]).is_err());
        assert!(validate(&[Rule::new(">=5.1, <6.1", "a"), Rule::new(">=6.0", "b")]).is_err());
        assert!(validate(&[Rule::new(">=5.1, <6.1", "a"), Rule::new(">=6.1", "b")]).is_ok());
        assert!(validate(&[Rule::new("5.1", "a")]).is_err());
        assert!(validate(&[]).is_err());
    }
}
