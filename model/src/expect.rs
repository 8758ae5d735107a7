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
//! | `undetermined: <why>`   | always: what this kernel does is not known from its sources |
//! | `undocumented: <what>`  | never: a documented claim that the documentation is silent |
//!
//! A rule's `kernels` is a version range (`>=5.14`, `>=6.12.29, <6.13`: point releases count),
//! optionally with a condition on the kernel's configuration: `* when CONFIG_USERFAULTFD!=y`,
//! `>=6.4 when CONFIG_PTE_MARKER_UFFD_WP=y and CONFIG_HUGETLBFS=y`, and on the architecture it
//! was built for, read from the same configuration: `<6.10 when arch=arm64`. The first rule whose range
//! holds the kernel's version and whose condition holds for its configuration applies; rows with
//! conditions come first, and rows without one must not overlap. Where the configuration is not
//! known, rows with a condition are not applied, and the grade says so.
//!
//! An `unsupported` report (the probe found a prerequisite missing) is `expected` only where the
//! applicable rule says `unsupported:`; anywhere else it is `unexpected`: a regression, or a kernel
//! built differently, which its recorded configuration tells apart.

use crate::config::{Condition, Config};
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
    /// For a documented claim: where it is made, quoted (`man page, section: "..."`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

impl Rule {
    pub fn new(kernels: &str, expect: &str) -> Rule {
        Rule { kernels: kernels.to_string(), expect: expect.to_string(), source: String::new() }
    }

    /// A documented claim: what the source says a kernel does, and the source, quoted.
    pub fn claim(kernels: &str, expect: &str, source: &str) -> Rule {
        Rule { source: source.to_string(), ..Rule::new(kernels, expect) }
    }

    pub fn range(&self) -> Result<VersionRange, String> {
        self.kernels.split(" when ").next().unwrap_or("").parse()
    }

    /// The condition on the configuration, if the rule has one (`... when CONFIG_X=y`).
    pub fn condition(&self) -> Result<Option<Condition>, String> {
        self.kernels.split_once(" when ").map(|(_, c)| c.parse()).transpose()
    }

    pub fn parsed(&self) -> Result<Expect, String> {
        Expect::parse(&self.expect)
    }

    /// "5.14 and later: fault read", "all kernels with CONFIG_USERFAULTFD!=y: unsupported: ...".
    pub fn describe(&self) -> String {
        match (self.range(), self.condition()) {
            (Ok(r), Ok(None)) => format!("{r}: {}", self.expect),
            (Ok(r), Ok(Some(c))) => format!("{r} with {c}: {}", self.expect),
            _ => format!("{}: {}", self.kernels, self.expect),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    Is(String),
    OneOf(Vec<String>),
    Includes(Vec<String>),
    Unsupported(String),
    Undetermined(String),
    /// In a behaviour's documented claims: the documentation does not describe what happens
    /// (`UFFDIO_COPY(2const) ERRORS does not list EEXIST`); every observation is a finding.
    Undocumented(String),
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
        } else if let Some(rest) = text.strip_prefix("undocumented:") {
            if rest.trim().is_empty() {
                return Err("`undocumented:` must say what the documentation leaves out".to_string());
            }
            Expect::Undocumented(rest.trim().to_string())
        } else if let Some(rest) = text.strip_prefix("undetermined:") {
            if rest.trim().is_empty() {
                return Err("`undetermined:` must say why".to_string());
            }
            Expect::Undetermined(rest.trim().to_string())
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
            Expect::Unsupported(_) | Expect::Undocumented(_) => false,
            Expect::Undetermined(_) => true,
        }
    }
}

/// Checks a whole table: every rule parses, rows with a condition come before the others, and
/// the ranges of rows without one do not overlap (so among those, "the first rule that applies" is
/// also "the only rule that applies").
pub fn validate(rules: &[Rule]) -> Result<(), String> {
    if rules.is_empty() {
        return Err("no expectation rules".to_string());
    }
    let mut ranges = Vec::new();
    let mut unconditioned_seen = false;
    for rule in rules {
        rule.parsed().map_err(|e| format!("rule {:?}: {e}", rule.kernels))?;
        let range = rule.range()?;
        match rule.condition()? {
            Some(_) if unconditioned_seen => {
                return Err(format!(
                    "rule {:?} has a condition: put it before the rows without one",
                    rule.kernels
                ))
            }
            Some(_) => {}
            None => {
                unconditioned_seen = true;
                ranges.push(range);
            }
        }
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
    /// What the grading could not take into account: rows that depend on a configuration that
    /// is not known.
    pub note: Option<String>,
}

/// The rule of `rules` that applies to a kernel of `version` built with `config` (`None`: not
/// known), and the conditioned rows passed over for want of a configuration.
pub fn applicable<'a>(
    rules: &'a [Rule],
    version: Option<KernelVersion>,
    config: Option<&Config>,
) -> (Option<&'a Rule>, Vec<&'a Rule>) {
    applicable_on(rules, version, config, None)
}

/// The same for a kernel of `arch` (when known): without its configuration, a row conditioned on
/// the architecture alone (`* when arch!=arm64`) is still applied (the architecture is known from
/// the running machine or the run's record, whether or not the package shipped its `.config`).
pub fn applicable_on<'a>(
    rules: &'a [Rule],
    version: Option<KernelVersion>,
    config: Option<&Config>,
    arch: Option<crate::arch::Arch>,
) -> (Option<&'a Rule>, Vec<&'a Rule>) {
    let mut passed_over = Vec::new();
    let Some(v) = version else { return (None, passed_over) };
    for rule in rules {
        if !rule.range().is_ok_and(|range| range.contains(v)) {
            continue;
        }
        match (rule.condition(), config) {
            (Ok(None), _) => return (Some(rule), passed_over),
            (Ok(Some(c)), Some(config)) if c.holds(config) => return (Some(rule), passed_over),
            (Ok(Some(c)), None) => match arch.and_then(|a| c.on_arch(a)) {
                Some(true) => return (Some(rule), passed_over),
                Some(false) => {}
                None => passed_over.push(rule),
            },
            _ => {}
        }
    }
    (None, passed_over)
}

/// Grades one observation against a table for the running kernel's version and configuration.
pub fn grade(
    rules: &[Rule],
    version: Option<KernelVersion>,
    config: Option<&Config>,
    reported: Reported<'_>,
) -> Grade {
    grade_on(rules, version, config, None, reported)
}

/// The same for a kernel of `arch` (when known: see [`applicable_on`]).
pub fn grade_on(
    rules: &[Rule],
    version: Option<KernelVersion>,
    config: Option<&Config>,
    arch: Option<crate::arch::Arch>,
    reported: Reported<'_>,
) -> Grade {
    let (rule, passed_over) = applicable_on(rules, version, config, arch);
    let note = (!passed_over.is_empty()).then(|| {
        let rows: Vec<String> = passed_over.iter().map(|r| r.describe()).collect();
        format!(
            "the kernel's configuration is not known, so these rows were not applied: {}",
            rows.join("; ")
        )
    });
    let described = rule.map(Rule::describe);
    let expect = rule.map(|r| r.parsed());
    let grade = |verdict, reason| Grade { verdict, rule: described.clone(), reason, note: note.clone() };
    match (reported, expect) {
        (Reported::Unsupported, Some(Ok(Expect::Unsupported(_) | Expect::Undetermined(_)))) => {
            grade(Verdict::Unsupported, None)
        }
        (Reported::Unsupported, Some(Ok(_))) => grade(
            Verdict::Unexpected,
            Some(
                "the probe found a prerequisite missing where this kernel's expectation has it: a regression, or a kernel built differently (its recorded configuration tells)"
                    .to_string(),
            ),
        ),
        (Reported::Unsupported, Some(Err(e))) => grade(Verdict::Error, Some(format!("malformed expectation: {e}"))),
        (Reported::Unsupported, None) => grade(
            Verdict::Unexpected,
            Some(match version {
                Some(v) => format!("no expectation covers kernel {v}, and the probe found a prerequisite missing"),
                None => "the kernel version could not be read, so no expectation applies".into(),
            }),
        ),
        (Reported::Observed(_), None) => grade(
            Verdict::Unexpected,
            Some(match version {
                Some(v) => format!("no expectation covers kernel {v}"),
                None => "the kernel version could not be read, so no expectation applies".into(),
            }),
        ),
        (Reported::Observed(_), Some(Err(e))) => grade(Verdict::Error, Some(format!("malformed expectation: {e}"))),
        (Reported::Observed(observed), Some(Ok(expect))) => {
            if expect.matches(observed) {
                grade(Verdict::Expected, None)
            } else {
                let reason = match &expect {
                    Expect::Unsupported(why) => format!(
                        "expected the prerequisite to be missing ({why}), but the probe observed {observed:?}"
                    ),
                    _ => {
                        format!("observed {observed:?}, expected {}", rule.map_or("", |r| r.expect.as_str()))
                    }
                };
                grade(Verdict::Unexpected, Some(reason))
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
        let g = |v, r| grade(&table(), v, None, r);
        assert_eq!(g(v514, Reported::Observed("fault read")).verdict, Verdict::Expected);
        let e = g(v514, Reported::Observed("EINVAL"));
        assert_eq!(e.verdict, Verdict::Unexpected);
        assert_eq!(e.rule.as_deref(), Some("5.14 and later: fault read"));
        assert_eq!(g(v510, Reported::Unsupported).verdict, Verdict::Unsupported);
        // A backport on an old kernel is a finding, not a pass.
        assert_eq!(g(v510, Reported::Observed("fault read")).verdict, Verdict::Unexpected);
        assert_eq!(g(None, Reported::Observed("fault read")).verdict, Verdict::Unexpected);
        // A prerequisite missing where the kernel should have it: a regression, not a grey cell.
        let lost = g(v514, Reported::Unsupported);
        assert_eq!(lost.verdict, Verdict::Unexpected);
        assert!(lost.reason.unwrap().contains("a regression, or a kernel built differently"));
    }

    #[test]
    fn grades_by_configuration() {
        let rules = vec![
            Rule::new("* when CONFIG_USERFAULTFD!=y", "unsupported: built without CONFIG_USERFAULTFD"),
            Rule::new(">=6.4 when CONFIG_PTE_MARKER_UFFD_WP=n", "includes: A"),
            Rule::new("<6.4", "includes: A"),
            Rule::new(">=6.4", "includes: A B"),
        ];
        validate(&rules).unwrap();
        let v = Some(KernelVersion::new(6, 12, 0));
        let config = |text: &str| Config::parse("test", text);
        let full = config("CONFIG_USERFAULTFD=y\nCONFIG_PTE_MARKER_UFFD_WP=y\n");
        let no_marker = config("CONFIG_USERFAULTFD=y\n");
        let none = config("");
        assert_eq!(grade(&rules, v, Some(&full), Reported::Observed("A")).verdict, Verdict::Unexpected);
        assert_eq!(grade(&rules, v, Some(&full), Reported::Observed("A B")).verdict, Verdict::Expected);
        assert_eq!(grade(&rules, v, Some(&no_marker), Reported::Observed("A")).verdict, Verdict::Expected);
        assert_eq!(grade(&rules, v, Some(&none), Reported::Unsupported).verdict, Verdict::Unsupported);
        assert_eq!(grade(&rules, v, Some(&full), Reported::Unsupported).verdict, Verdict::Unexpected);
        // Not known: the conditioned rows are passed over, and the grade says so.
        let unknown = grade(&rules, v, None, Reported::Observed("A B"));
        assert_eq!(unknown.verdict, Verdict::Expected);
        assert!(unknown.note.unwrap().contains("configuration is not known"));
        assert!(validate(&[Rule::new("*", "a"), Rule::new("* when CONFIG_SHMEM=y", "b")]).is_err(), "order");
        assert!(validate(&[Rule::new("* when CONFIG_NOPE=y", "b"), Rule::new("*", "a")]).is_err());
        assert_eq!(
            Expect::parse("undetermined: not verified").unwrap(),
            Expect::Undetermined("not verified".into())
        );
        assert!(Expect::parse("undetermined:").is_err());
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

    /// A kernel whose package ships no `.config` (Debian's 7.x `linux-binary` packages): rows on
    /// the architecture alone still apply when the architecture is known; rows on an option are
    /// passed over, and named.
    #[test]
    fn rows_on_the_architecture_apply_without_a_configuration() {
        use crate::arch::Arch::{Arm64, X86_64};
        let rules = vec![
            Rule::new("* when arch=arm64 and CONFIG_ARM64_4K_PAGES!=y", "unsupported: no 64 KiB pages"),
            Rule::new("* when arch!=arm64", "unsupported: no 64 KiB pages"),
            Rule::new("* when CONFIG_HUGETLBFS!=y", "unsupported: no hugetlbfs"),
            Rule::new("*", "served"),
        ];
        let v = Some(KernelVersion::new(7, 2, 0));
        let x86 = grade_on(&rules, v, None, Some(X86_64), Reported::Unsupported);
        assert_eq!(x86.verdict, Verdict::Unsupported);
        assert_eq!(x86.rule.as_deref(), Some(rules[1].describe().as_str()));
        let arm = grade_on(&rules, v, None, Some(Arm64), Reported::Observed("served"));
        assert_eq!(arm.verdict, Verdict::Expected);
        let note = arm.note.expect("the rows on options are named");
        assert!(note.contains("CONFIG_ARM64_4K_PAGES") && note.contains("CONFIG_HUGETLBFS"), "{note}");
        assert_eq!(
            grade_on(&rules, v, None, Some(Arm64), Reported::Unsupported).verdict,
            Verdict::Unexpected
        );
        // Without the architecture either, nothing conditioned applies (as before).
        assert_eq!(grade(&rules, v, None, Reported::Unsupported).verdict, Verdict::Unexpected);
    }
}
