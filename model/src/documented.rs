//! What the expectation tables say a profile gets, for kernels nobody observed: the answer of one
//! need on one kernel version (labelled *documented*, never *observed*), the version from which
//! each need is documented to hold, and so the minimum kernel version of a profile ("needs 6.7: 5.14
//! for populate.read_missing, 6.7 for wp.async_pagemap").
//!
//! Only the rows without a configuration condition, and those whose condition is on the
//! architecture alone (`<6.10 when arch=arm64`) for the architecture asked about, are read: a
//! documented answer is for a kernel of one architecture built as the distributions build it
//! (userfaultfd, hugetlbfs and the uffd-wp PTE markers on).
//! A row's answer to a need is:
//! - an exact value (`fault read`): met when the need accepts it, else violated;
//! - `one of: a | b`: met when the need accepts every alternative, violated when it accepts none,
//!   else not determined;
//! - `includes: A B`: met when the need is `includes:` of words the row lists, else not determined
//!   (the kernel may offer more than the row names);
//! - `unsupported:`: violated, unless the need accepts what every kernel the matrix graded against
//!   that row observed (`api.dev_userfaultfd`'s `absent`);
//! - `undetermined:`, or no row: not determined.

use crate::arch::Arch;
use crate::data::{Behaviour, Cell, Verdict};
use crate::expect::{Expect, Rule};
use crate::profile::{Checked, KernelCheck, Need, Profile, Status};
use crate::version::KernelVersion;
use std::collections::BTreeMap;
use std::fmt;

/// What a table row says about one need on one version: the status, the row (`None`: no row
/// covers the version) and what the row expects.
pub fn answer<'a>(
    need: &Need,
    behaviour: &'a Behaviour,
    version: KernelVersion,
    arch: Arch,
) -> (Status, Option<&'a Rule>) {
    // The first row for the version, of those read (see the module's documentation): rows with
    // conditions come first in a table, so an architecture's own row wins over the general one.
    let read = |r: &&Rule| match r.condition() {
        Ok(None) => true,
        Ok(Some(c)) => c.on_arch(arch) == Some(true),
        Err(_) => false,
    };
    let Some(rule) = behaviour
        .expectation
        .iter()
        .filter(read)
        .find(|r| r.range().is_ok_and(|range| range.contains(version)))
    else {
        return (Status::NotChecked, None);
    };
    let Ok(wanted) = Expect::parse(&need.expect) else { return (Status::NotChecked, Some(rule)) };
    let status = match rule.parsed() {
        Ok(Expect::Is(v)) => met_if(wanted.matches(&v)),
        Ok(Expect::OneOf(vs)) => match vs.iter().filter(|v| wanted.matches(v)).count() {
            n if n == vs.len() => Status::Met,
            0 => Status::Violated,
            _ => Status::NotChecked,
        },
        Ok(Expect::Includes(ws)) => match &wanted {
            Expect::Includes(need) if need.iter().all(|w| ws.contains(w)) => Status::Met,
            _ => Status::NotChecked,
        },
        Ok(Expect::Unsupported(_)) => {
            let described = rule.describe();
            let seen: Vec<&Cell> = behaviour
                .cells
                .values()
                .filter(|c| {
                    c.verdict == Verdict::Unsupported && c.expected.as_deref() == Some(described.as_str())
                })
                .collect();
            met_if(!seen.is_empty() && seen.iter().all(|c| wanted.matches(&c.observed)))
        }
        Ok(Expect::Undetermined(_) | Expect::Undocumented(_)) | Err(_) => Status::NotChecked,
    };
    (status, Some(rule))
}

/// A row's kernels in words (`before 5.14`), else as written.
fn range_of(r: &Rule) -> String {
    r.range().map_or_else(|_| r.kernels.clone(), |range| range.to_string())
}

fn met_if(yes: bool) -> Status {
    if yes {
        Status::Met
    } else {
        Status::Violated
    }
}

/// A profile on a kernel version nobody observed, from the tables: every need's status, with the
/// row's expectation as what the kernel "observed" and the row, described, as the reason.
pub fn check<'p>(
    profile: &'p Profile,
    behaviours: &BTreeMap<String, Behaviour>,
    version: KernelVersion,
    arch: Arch,
) -> KernelCheck<'p> {
    let needs = profile
        .needs
        .iter()
        .map(|need| {
            let Some(b) = behaviours.get(&need.behaviour) else {
                return Checked {
                    need,
                    status: Status::NotChecked,
                    verdict: None,
                    observed: "-".into(),
                    reason: Some("documented: the catalogue has no such behaviour".into()),
                };
            };
            let (status, rule) = answer(need, b, version, arch);
            Checked {
                need,
                status,
                verdict: None,
                observed: rule.map_or_else(|| "-".into(), |r| r.expect.clone()),
                reason: Some(match rule {
                    Some(r) if status == Status::NotChecked => format!(
                        "expectation table, {}: `{}`, which does not say whether the need holds",
                        range_of(r),
                        r.expect
                    ),
                    Some(r) => format!("expectation table, {}", range_of(r)),
                    None => format!("no row of the expectation table covers {version}"),
                }),
            }
        })
        .collect();
    KernelCheck::of(needs)
}

/// From which kernel version a need is documented to hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Since {
    /// Every version the table covers.
    Any,
    /// This version and every later one (except the `undetermined` stretches).
    From(KernelVersion),
    /// The newest kernels the table covers are documented not to give it.
    Never,
    /// The table does not say for the newest kernels.
    Undetermined,
}

impl fmt::Display for Since {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Since::Any => f.write_str("any kernel"),
            Since::From(v) => write!(f, "{v}"),
            Since::Never => f.write_str("no kernel"),
            Since::Undetermined => f.write_str("not documented"),
        }
    }
}

/// One need's minimum version, and the stretches after it the table does not determine
/// (`5.15 up to (not incl.) 5.16`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeedSince {
    pub behaviour: String,
    pub expect: String,
    pub since: Since,
    pub undetermined: Vec<String>,
}

/// The versions at which a table's answer can change: 0.0 and every bound of its rows.
fn boundaries(rules: &[Rule]) -> Vec<KernelVersion> {
    let mut out = vec![KernelVersion::new(0, 0, 0)];
    for r in rules.iter().filter(|r| matches!(r.condition(), Ok(None))) {
        if let Ok(range) = r.range() {
            out.extend(range.from);
            out.extend(range.before);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The minimum version of one need, from its behaviour's table, for an x86-64 kernel (the rows
/// conditioned on another architecture are not read).
pub fn need_since(need: &Need, behaviour: &Behaviour) -> NeedSince {
    let points = boundaries(&behaviour.expectation);
    let answers: Vec<(KernelVersion, Status, Option<&Rule>)> = points
        .iter()
        .map(|v| {
            let (s, r) = answer(need, behaviour, *v, Arch::X86_64);
            (*v, s, r)
        })
        .collect();
    // The last stretch with no violation, starting at its first met point.
    let start = answers.iter().rposition(|a| a.1 == Status::Violated).map_or(0, |i| i + 1);
    let first_met = answers[start..].iter().position(|a| a.1 == Status::Met).map(|i| start + i);
    let since = match first_met {
        None if start == answers.len() => Since::Never,
        None => Since::Undetermined,
        Some(0) => Since::Any,
        Some(i) => Since::From(answers[i].0),
    };
    let undetermined = match first_met {
        Some(i) => answers[i..]
            .iter()
            .filter(|a| a.1 == Status::NotChecked)
            .filter_map(|a| a.2.and_then(|r| r.range().ok()).map(|r| r.to_string()))
            .collect(),
        None => Vec::new(),
    };
    NeedSince { behaviour: need.behaviour.clone(), expect: need.expect.clone(), since, undetermined }
}

/// A profile's minimum kernel version: the newest of its needs' (`None` when some need holds on
/// no documented kernel or is not documented), and every need's.
pub fn minimum(
    profile: &Profile,
    behaviours: &BTreeMap<String, Behaviour>,
) -> (Option<Since>, Vec<NeedSince>) {
    let needs: Vec<NeedSince> =
        profile.needs.iter().filter_map(|n| behaviours.get(&n.behaviour).map(|b| need_since(n, b))).collect();
    let mut overall = Some(Since::Any);
    for n in &needs {
        overall = match (overall, &n.since) {
            (_, Since::Never) | (Some(Since::Never), _) => Some(Since::Never),
            (o, Since::Any) => o,
            (Some(Since::From(a)), Since::From(b)) => Some(Since::From(a.max(*b))),
            (Some(Since::Any) | None, Since::From(b)) => Some(Since::From(*b)),
            (o, Since::Undetermined) => o,
            (Some(Since::Undetermined), _) => unreachable!("never accumulated"),
        };
    }
    (overall, needs)
}

/// The minimum in words, as `check` prints it: `6.7 (5.14 for populate.read_missing; 6.7 for
/// wp.async_pagemap, wp.async_remove)`, with the needs the tables do not determine after it.
pub fn describe_minimum(overall: &Option<Since>, needs: &[NeedSince]) -> String {
    let mut by: BTreeMap<KernelVersion, Vec<&str>> = BTreeMap::new();
    for n in needs {
        if let Since::From(v) = n.since {
            by.entry(v).or_default().push(&n.behaviour);
        }
    }
    let parts: Vec<String> = by.iter().map(|(v, ids)| format!("{v} for {}", ids.join(", "))).collect();
    let mut out = match overall {
        Some(Since::Never) => {
            let never: Vec<&str> =
                needs.iter().filter(|n| n.since == Since::Never).map(|n| n.behaviour.as_str()).collect();
            format!("no kernel is documented to give {}", never.join(", "))
        }
        Some(Since::From(v)) => format!("{v} ({})", parts.join("; ")),
        _ => "any kernel".to_string(),
    };
    let open: Vec<String> = needs
        .iter()
        .filter(|n| n.since == Since::Undetermined)
        .map(|n| format!("{} (`{}`)", n.behaviour, n.expect))
        .collect();
    if !open.is_empty() {
        out += &format!("; the tables do not say for {}", open.join(", "));
    }
    let gaps: Vec<String> = needs
        .iter()
        .filter(|n| !n.undetermined.is_empty())
        .map(|n| format!("{} on {}", n.behaviour, n.undetermined.join(", ")))
        .collect();
    if !gaps.is_empty() {
        out += &format!("; undetermined: {}", gaps.join("; "));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A behaviour with these expectation rows and cells `(kernel, observed, verdict, graded
    /// against)`, for the tests.
    pub(crate) fn behaviour(rows: &[(&str, &str)], cells: &[(&str, &str, Verdict, &str)]) -> Behaviour {
        Behaviour {
            family: "populate".into(),
            summary: String::new(),
            observes: String::new(),
            expectation: rows.iter().map(|(k, e)| Rule::new(k, e)).collect(),
            documented: Vec::new(),
            citation: String::new(),
            notes: String::new(),
            selftests: Vec::new(),
            cells: cells
                .iter()
                .map(|(k, o, v, expected)| {
                    let mut c = Cell::missing("");
                    c.observed = o.to_string();
                    c.verdict = *v;
                    c.expected = Some(expected.to_string());
                    (k.to_string(), c)
                })
                .collect(),
        }
    }

    fn profile(needs: &[(&str, &str)]) -> Profile {
        let mut text = String::from("summary = \"s\"\n");
        for (b, e) in needs {
            text += &format!("[[need]]\nbehaviour = \"{b}\"\nexpect = \"{e}\"\nwhy = \"w\"\n");
        }
        Profile::parse("p", "p.toml", &text).unwrap()
    }

    fn v(s: &str) -> KernelVersion {
        s.parse().unwrap()
    }

    const NO_UFFD: (&str, &str) = ("* when CONFIG_USERFAULTFD!=y", "unsupported: no userfaultfd");

    #[test]
    fn the_minimum_version_is_read_from_the_tables() {
        let populate = behaviour(
            &[
                NO_UFFD,
                ("<5.14", "unsupported: MADV_POPULATE_* is new in Linux 5.14"),
                (">=5.14", "fault read"),
            ],
            &[],
        );
        let field = behaviour(
            &[
                ("<4.18", "4096"),
                (">=4.18, <5.15", "untouched"),
                (">=5.15, <5.16", "undetermined: not verified"),
                (">=5.16, <6.12.29", "untouched"),
                (">=6.12.29", "-EAGAIN"),
            ],
            &[],
        );
        let wp = behaviour(&[(">=5.7", "includes: COPY WRITEPROTECT")], &[]);
        let behaviours: BTreeMap<String, Behaviour> = [
            ("populate.read_missing".to_string(), populate),
            ("remove.copy_field".to_string(), field),
            ("wp.register".to_string(), wp),
        ]
        .into();
        let p = profile(&[
            ("populate.read_missing", "fault read"),
            ("remove.copy_field", "one of: untouched | -EAGAIN"),
            ("wp.register", "includes: WRITEPROTECT"),
        ]);
        let (overall, needs) = minimum(&p, &behaviours);
        assert_eq!(overall, Some(Since::From(v("5.14"))));
        assert_eq!(needs[0].since, Since::From(v("5.14")), "the unconditioned rows only");
        assert_eq!(needs[1].since, Since::From(v("4.18")));
        assert_eq!(needs[1].undetermined, ["5.15 up to (not incl.) 5.16"]);
        assert_eq!(needs[2].since, Since::From(v("5.7")), "below 5.7 no row: not a violation");
        assert_eq!(
            describe_minimum(&overall, &needs),
            "5.14 (4.18 for remove.copy_field; 5.7 for wp.register; 5.14 for populate.read_missing); \
             undetermined: remove.copy_field on 5.15 up to (not incl.) 5.16"
        );
        // A need only the newest kernels lack, and one the tables cannot answer.
        let p = profile(&[("remove.copy_field", "untouched"), ("wp.register", "includes: MOVE")]);
        let (overall, needs) = minimum(&p, &behaviours);
        assert_eq!((needs[0].since.clone(), needs[1].since.clone()), (Since::Never, Since::Undetermined));
        assert_eq!(overall, Some(Since::Never));
        assert!(describe_minimum(&overall, &needs)
            .starts_with("no kernel is documented to give remove.copy_field"));

        // Documented answers on versions nobody observed.
        let p = profile(&[("populate.read_missing", "fault read"), ("remove.copy_field", "untouched")]);
        let c = check(&p, &behaviours, v("5.10.200"), Arch::X86_64);
        assert_eq!(c.outcome, crate::profile::Outcome::Violates);
        assert_eq!(c.needs[0].observed, "unsupported: MADV_POPULATE_* is new in Linux 5.14");
        assert_eq!(c.needs[1].status, Status::Met);
        assert_eq!(c.needs[1].reason.as_deref(), Some("expectation table, 4.18 up to (not incl.) 5.15"));
        let c = check(&p, &behaviours, v("5.15.3"), Arch::X86_64);
        assert_eq!((c.outcome, c.needs[1].status), (crate::profile::Outcome::NotChecked, Status::NotChecked));
    }

    #[test]
    fn an_unsupported_row_is_met_only_by_what_its_kernels_observed_and_the_need_accepts() {
        let rows = [("<6.1", "absent"), (">=6.1", "works")];
        let dev = behaviour(&rows, &[]);
        let need = &profile(&[("api.dev_userfaultfd", "one of: works | absent")]).needs[0];
        assert_eq!(need_since(need, &dev).since, Since::Any);
        let rows = [("<6.1", "unsupported: new in 6.1"), (">=6.1", "works")];
        let graded = "before 6.1: unsupported: new in 6.1";
        let dev = behaviour(&rows, &[("k", "absent", Verdict::Unsupported, graded)]);
        assert_eq!(answer(need, &dev, v("5.10"), Arch::X86_64).0, Status::Met);
        let dev = behaviour(&rows, &[("k", "ENOENT", Verdict::Unsupported, graded)]);
        assert_eq!(answer(need, &dev, v("5.10"), Arch::X86_64).0, Status::Violated);
        assert_eq!(need_since(need, &dev).since, Since::From(v("6.1")));
    }

    #[test]
    fn an_architecture_reads_its_own_rows_and_no_configurations() {
        let rows = [
            ("<6.10 when arch=arm64", "unsupported: no uffd-wp on arm64 before 6.10"),
            (">=5.7 when CONFIG_PTE_MARKER_UFFD_WP!=y", "no marker"),
            ("<5.7", "unsupported: new in 5.7"),
            (">=5.7", "protects"),
        ];
        let wp = behaviour(&rows, &[]);
        let need = &profile(&[("wp.toggle", "protects")]).needs[0];
        let at = |version, arch| {
            let (status, rule) = answer(need, &wp, v(version), arch);
            (status, rule.map(|r| r.kernels.as_str()))
        };
        assert_eq!(at("6.1", Arch::X86_64), (Status::Met, Some(">=5.7")));
        assert_eq!(at("6.1", Arch::Arm64), (Status::Violated, Some("<6.10 when arch=arm64")));
        assert_eq!(at("6.12", Arch::Arm64), (Status::Met, Some(">=5.7")));
        assert_eq!(at("5.4", Arch::X86_64), (Status::Violated, Some("<5.7")));
    }
}
