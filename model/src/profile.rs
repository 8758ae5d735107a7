//! Requirement profiles: what a piece of software relies on, as observations of behaviours, and
//! whether a kernel's cells give it that.
//!
//! A profile is `profiles/<name>.toml`, written by hand:
//!
//! ```toml
//! summary = "A snapshot-restore page server that pre-faults with MADV_POPULATE_*"
//! source = "e2b-dev/infra pull request 2542"     # optional: where the requirements come from
//!
//! [[need]]
//! behaviour = "populate.read_missing"
//! expect = "fault read"                           # the expectation language: exact, `one of:`, `includes:`
//! why = "pre-faulting with MADV_POPULATE_READ must reach the page server"
//! ```
//!
//! A need is met when the kernel observed what `expect` accepts. A kernel *violates* a profile
//! when it observed something else for any need (a missing prerequisite, `unsupported`, is such an
//! observation; so are runs that disagreed, `flaky`, unless every run gave what is needed); it
//! *satisfies* it when every need is met; otherwise, where a cell says nothing about the kernel
//! (`skipped`, `error`, `hung`, `crashed`, `missing`, or no cell at all), the profile was *not
//! checked* there.

use crate::data::{Behaviour, Cell, Verdict};
use crate::expect::Expect;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// One profile, as read from its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The file's stem: `snapshot-page-server`.
    pub name: String,
    /// The file, as messages show it.
    pub path: String,
    pub summary: String,
    pub source: String,
    pub needs: Vec<Need>,
}

/// What the software needs one behaviour to have observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    pub behaviour: String,
    /// In the expectation language ([`crate::expect`]): `fault read`, `one of: a | b`,
    /// `includes: A B`.
    pub expect: String,
    /// Why the software needs it, in one line.
    pub why: String,
    /// The line of the file the need's `behaviour` is on.
    pub line: usize,
    /// The line its `expect` is on.
    pub expect_line: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    summary: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    need: Vec<RawNeed>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeed {
    behaviour: toml::Spanned<String>,
    expect: toml::Spanned<String>,
    why: toml::Spanned<String>,
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

impl Profile {
    /// Reads a profile: `path` is how messages name the file, `name` the profile's name. Errors
    /// are one line, `PATH:LINE: what is wrong`.
    pub fn parse(name: &str, path: &str, text: &str) -> Result<Profile, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(text, s.start));
            format!("{path}:{line}: {}", e.message().trim().replace('\n', " "))
        })?;
        if raw.summary.trim().is_empty() {
            return Err(format!("{path}:1: `summary` is empty: say in one line what software this is"));
        }
        if raw.need.is_empty() {
            return Err(format!(
                "{path}:1: no `[[need]]`: a profile lists the behaviours the software relies on"
            ));
        }
        let mut needs: Vec<Need> = Vec::new();
        for n in raw.need {
            let line = line_of(text, n.behaviour.span().start);
            let at = |s: &toml::Spanned<String>| line_of(text, s.span().start);
            let behaviour = n.behaviour.into_inner();
            if !behaviour.contains('.') || behaviour.contains(char::is_whitespace) {
                return Err(format!(
                    "{path}:{line}: {behaviour:?} is not a behaviour id (`family.name`, as `cargo run -p suite -- --list` shows them)"
                ));
            }
            if let Some(first) = needs.iter().find(|m| m.behaviour == behaviour) {
                return Err(format!(
                    "{path}:{line}: {behaviour} is needed twice (also on line {}): say it once",
                    first.line
                ));
            }
            let expect_line = at(&n.expect);
            let expect = n.expect.into_inner();
            match Expect::parse(&expect) {
                Err(e) => return Err(format!("{path}:{expect_line}: malformed expectation {expect:?}: {e}")),
                Ok(Expect::Unsupported(_) | Expect::Undetermined(_) | Expect::Undocumented(_)) => {
                    return Err(format!(
                        "{path}:{expect_line}: expectation {expect:?}: a profile needs an observation (exact, `one of:` or `includes:`); `unsupported:`, `undetermined:` and `undocumented:` belong in expectation tables"
                    ))
                }
                Ok(_) => {}
            }
            let why_line = at(&n.why);
            let why = n.why.into_inner();
            if why.trim().is_empty() || why.contains('\n') {
                return Err(format!(
                    "{path}:{why_line}: `why` must say in one line why the software needs this"
                ));
            }
            needs.push(Need { behaviour, expect, why, line, expect_line });
        }
        Ok(Profile {
            name: name.to_string(),
            path: path.to_string(),
            summary: raw.summary,
            source: raw.source,
            needs,
        })
    }

    /// Checks that every need names a behaviour of `known`; the error names the file and line, and
    /// the closest ids.
    pub fn check_ids(&self, known: &[&str], against: &str) -> Result<(), String> {
        match self.needs.iter().find(|n| !known.contains(&n.behaviour.as_str())) {
            Some(n) => Err(format!(
                "{}:{}: unknown behaviour id {:?}{} ({against} has no such behaviour; `cargo run -p suite -- --list` lists them)",
                self.path,
                n.line,
                n.behaviour,
                crate::suggest::did_you_mean(&n.behaviour, known.iter().copied())
            )),
            None => Ok(()),
        }
    }

    /// Checks that every value a need accepts is one the behaviour can take: named by a row of its
    /// expectation table or observed by some kernel of the matrix (for `includes:`, each word). A
    /// value that is neither is a typo in the profile (`"fault reed"`), which would otherwise blame
    /// every kernel: the error is one line with the file, the line of `expect`, the value and the
    /// closest valid values. Needs of behaviours `behaviours` lacks are left to [`Self::check_ids`].
    pub fn check_values(&self, behaviours: &BTreeMap<String, Behaviour>) -> Result<(), String> {
        for need in &self.needs {
            let (Some(b), Ok(expect)) = (behaviours.get(&need.behaviour), Expect::parse(&need.expect)) else {
                continue;
            };
            let (exact, words) = vocabulary(b);
            let (wanted, known) = match &expect {
                Expect::Is(v) => (vec![v.clone()], &exact),
                Expect::OneOf(vs) => (vs.clone(), &exact),
                Expect::Includes(ws) => (ws.clone(), &words),
                _ => continue,
            };
            if let Some(wrong) = wanted.iter().find(|w| !known.contains(w)) {
                let near = crate::suggest::closest(wrong, known.iter().map(String::as_str), 3);
                return Err(format!(
                    "{}:{}: {} never takes the value {wrong:?}: no row of its expectation table names it and no kernel observed it; {} (`cargo xtask explain {}` lists its values)",
                    self.path,
                    need.expect_line,
                    need.behaviour,
                    match near.as_slice() {
                        [] => "nothing is close to it".to_string(),
                        near => format!(
                            "the closest valid values are {}",
                            near.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ")
                        ),
                    },
                    need.behaviour
                ));
            }
        }
        Ok(())
    }

    /// How one kernel fares: `cell` gives the kernel's cell of a behaviour, if it has one.
    pub fn check<'c>(&self, cell: impl Fn(&str) -> Option<&'c Cell>) -> KernelCheck<'_> {
        KernelCheck::of(self.needs.iter().map(|n| Checked::of(n, cell(&n.behaviour))).collect())
    }

    /// The behaviours the profile needs, in its order.
    pub fn behaviours(&self) -> impl Iterator<Item = &str> {
        self.needs.iter().map(|n| n.behaviour.as_str())
    }
}

/// Whether one need is met on one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Met,
    Violated,
    /// The cell says nothing about the kernel (the machine lacked something, the harness failed,
    /// no result arrived) or there is no cell.
    NotChecked,
}

/// A need and what the kernel's cell says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked<'a> {
    pub need: &'a Need,
    pub status: Status,
    /// The cell's verdict (`None`: no cell).
    pub verdict: Option<Verdict>,
    /// What was observed (`-` without a cell).
    pub observed: String,
    /// Why it is not met or not checked, when the cell says more than its observation.
    pub reason: Option<String>,
}

impl<'a> Checked<'a> {
    fn of(need: &'a Need, cell: Option<&Cell>) -> Checked<'a> {
        let Some(cell) = cell else {
            return Checked {
                need,
                status: Status::NotChecked,
                verdict: None,
                observed: "-".into(),
                reason: Some("no cell for this behaviour: it was not run on this kernel".into()),
            };
        };
        let expect = Expect::parse(&need.expect).ok();
        let accepts = |observed: &str| expect.as_ref().is_some_and(|e| e.matches(observed));
        let (status, reason) = match cell.verdict {
            Verdict::Expected | Verdict::Unexpected => {
                (if accepts(&cell.observed) { Status::Met } else { Status::Violated }, None)
            }
            // A prerequisite the kernel lacks is an observation too: what the probe found.
            Verdict::Unsupported => (
                if accepts(&cell.observed) { Status::Met } else { Status::Violated },
                Some(format!(
                    "unsupported: {}",
                    cell.reason.as_deref().unwrap_or("a prerequisite is missing")
                )),
            ),
            Verdict::Flaky => {
                let seen = flaky_observations(cell);
                let all = !seen.is_empty() && seen.iter().all(|o| accepts(o));
                (
                    if all { Status::Met } else { Status::Violated },
                    Some(format!(
                        "flaky: runs observed {}",
                        cell.details
                            .get("observations")
                            .map_or_else(|| "different things".into(), |d| d.to_string())
                    )),
                )
            }
            v @ (Verdict::Skipped
            | Verdict::Error
            | Verdict::Hung
            | Verdict::Crashed
            | Verdict::Missing
            | Verdict::Absent) => (
                Status::NotChecked,
                Some(format!(
                    "{v}: {}",
                    cell.reason.as_deref().unwrap_or("nothing was learnt about the kernel")
                )),
            ),
        };
        Checked { need, status, verdict: Some(cell.verdict), observed: cell.observed.clone(), reason }
    }
}

/// The values a behaviour takes: the exact values its expectation table names and its cells
/// observed (`unsupported` ones included: a missing prerequisite is an observation), and every word
/// of those (what `includes:` may name).
pub fn vocabulary(b: &Behaviour) -> (Vec<String>, Vec<String>) {
    let mut exact: Vec<String> = Vec::new();
    for rule in b.expectation.iter().chain(&b.documented) {
        match rule.parsed() {
            Ok(Expect::Is(v)) => exact.push(v),
            Ok(Expect::OneOf(vs)) | Ok(Expect::Includes(vs)) => exact.extend(vs),
            _ => {}
        }
    }
    for c in b.cells.values() {
        if matches!(
            c.verdict,
            Verdict::Expected | Verdict::Unexpected | Verdict::Unsupported | Verdict::Flaky
        ) {
            exact.push(c.observed.clone());
            if c.verdict == Verdict::Flaky {
                exact.extend(flaky_observations(c));
            }
        }
    }
    exact.sort();
    exact.dedup();
    let mut words: Vec<String> = exact.iter().flat_map(|v| v.split_whitespace()).map(String::from).collect();
    words.sort();
    words.dedup();
    (exact, words)
}

/// The observations of a flaky cell's runs, from its `observations` detail
/// (`2x expected "EINVAL"; 1x unexpected "ok"`).
fn flaky_observations(cell: &Cell) -> Vec<String> {
    let Some(text) = cell.details.get("observations").map(ToString::to_string) else { return Vec::new() };
    text.split("; ")
        .filter_map(|part| {
            let quoted = &part[part.find('"')?..];
            serde_json::from_str::<String>(quoted).ok()
        })
        .collect()
}

/// A profile on one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Satisfies,
    Violates,
    NotChecked,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Satisfies => "satisfies",
            Outcome::Violates => "violates",
            Outcome::NotChecked => "not checked",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A profile checked on one kernel: the outcome and every need's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelCheck<'a> {
    pub outcome: Outcome,
    pub needs: Vec<Checked<'a>>,
}

impl<'a> KernelCheck<'a> {
    /// The outcome of these needs: violated if any is, else not checked if any is, else satisfied.
    pub fn of(needs: Vec<Checked<'a>>) -> KernelCheck<'a> {
        let outcome = if needs.iter().any(|c| c.status == Status::Violated) {
            Outcome::Violates
        } else if needs.iter().any(|c| c.status == Status::NotChecked) {
            Outcome::NotChecked
        } else {
            Outcome::Satisfies
        };
        KernelCheck { outcome, needs }
    }

    /// The needs with this status.
    pub fn with(&self, status: Status) -> impl Iterator<Item = &Checked<'_>> {
        self.needs.iter().filter(move |c| c.status == status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Details;

    const GOOD: &str = r#"summary = "a page server"

[[need]]
behaviour = "populate.read_missing"
expect = "fault read"
why = "pre-faults with MADV_POPULATE_READ"

[[need]]
behaviour = "api.ioctls"
expect = "includes: COPY WAKE"
why = "serves with UFFDIO_COPY"
"#;

    fn cell(observed: &str, verdict: Verdict) -> Cell {
        Cell { observed: observed.into(), verdict, reason: None, expected: None, details: Details::new() }
    }

    #[test]
    fn reads_a_profile() {
        let p = Profile::parse("server", "profiles/server.toml", GOOD).unwrap();
        assert_eq!(p.needs.len(), 2);
        assert_eq!((p.needs[0].line, p.needs[1].line), (4, 9));
        assert!(p
            .check_ids(&["populate.read_missing", "api.ioctl"], "the matrix")
            .unwrap_err()
            .starts_with(
            "profiles/server.toml:9: unknown behaviour id \"api.ioctls\" (did you mean \"api.ioctl\"?) (the matrix has no such behaviour"
        ));
        assert!(p.check_ids(&["populate.read_missing", "api.ioctls"], "x").is_ok());
    }

    #[test]
    fn errors_are_one_line_with_file_and_line() {
        let err = |text: &str| Profile::parse("p", "profiles/p.toml", text).unwrap_err();
        let cases = [
            (GOOD.replace("\"fault read\"", "\"one of:\""), "profiles/p.toml:5: malformed expectation"),
            (GOOD.replace("\"fault read\"", "\"unsupported: no\""), "profiles/p.toml:5: expectation"),
            (
                GOOD.replace("api.ioctls", "populate.read_missing"),
                "profiles/p.toml:9: populate.read_missing is needed twice (also on line 4)",
            ),
            (
                GOOD.replace("why = \"serves", "wherefore = \"serves"),
                "profiles/p.toml:11: unknown field `wherefore`",
            ),
            (GOOD.replace("api.ioctls", "ioctls"), "profiles/p.toml:9: \"ioctls\" is not a behaviour id"),
            (GOOD.replace("[[need]]\nbehaviour = \"api", "[[need]\nbehaviour = \"api"), "profiles/p.toml:8:"),
            ("summary = \"x\"\n".to_string(), "profiles/p.toml:1: no `[[need]]`"),
        ];
        for (text, want) in cases {
            let e = err(&text);
            assert!(e.starts_with(want), "{e:?} should start with {want:?}");
            assert!(!e.contains('\n'), "one line: {e:?}");
        }
    }

    #[test]
    fn a_value_the_behaviour_never_takes_is_a_profile_error_naming_the_closest() {
        use crate::documented::tests::behaviour;
        let behaviours: BTreeMap<String, Behaviour> = [
            (
                "populate.read_missing".to_string(),
                behaviour(
                    &[("<5.14", "unsupported: new in 5.14"), (">=5.14", "fault read")],
                    &[("k0", "EINVAL", Verdict::Unsupported, ""), ("k1", "skipped", Verdict::Skipped, "")],
                ),
            ),
            (
                "api.ioctls".to_string(),
                behaviour(&[("*", "WAKE COPY ZEROPAGE")], &[("k0", "WAKE COPY MOVE", Verdict::Expected, "")]),
            ),
        ]
        .into();
        let p = |text: String| Profile::parse("p", "profiles/p.toml", &text).unwrap();
        assert_eq!(p(GOOD.to_string()).check_values(&behaviours), Ok(()));
        // An unsupported observation and a word only a kernel observed are values too.
        let ok =
            GOOD.replace("\"fault read\"", "\"one of: fault read | EINVAL\"").replace("COPY WAKE", "MOVE");
        assert_eq!(p(ok).check_values(&behaviours), Ok(()));
        let typo = p(GOOD.replace("\"fault read\"", "\"fault reed\"")).check_values(&behaviours).unwrap_err();
        assert_eq!(
            typo,
            "profiles/p.toml:5: populate.read_missing never takes the value \"fault reed\": no row of its expectation table names it and no kernel observed it; the closest valid values are \"fault read\" (`cargo xtask explain populate.read_missing` lists its values)"
        );
        let word = p(GOOD.replace("COPY WAKE", "COPY WAEK")).check_values(&behaviours).unwrap_err();
        assert!(word.starts_with("profiles/p.toml:10: api.ioctls never takes the value \"WAEK\""), "{word}");
        assert!(word.contains("the closest valid values are \"WAKE\""), "{word}");
        let skipped =
            p(GOOD.replace("\"fault read\"", "\"one of: fault read | skipped\"")).check_values(&behaviours);
        assert!(skipped.unwrap_err().contains("the value \"skipped\""), "not an observation of the kernel");
    }

    #[test]
    fn a_kernel_satisfies_violates_or_was_not_checked() {
        let p = Profile::parse("server", "p.toml", GOOD).unwrap();
        let on = |cells: Vec<(&str, Cell)>| {
            let cells: std::collections::BTreeMap<String, Cell> =
                cells.into_iter().map(|(k, c)| (k.to_string(), c)).collect();
            let check = p.check(|id| cells.get(id));
            (check.outcome, check.needs.iter().map(|c| c.status).collect::<Vec<_>>())
        };
        let ioctls = ("api.ioctls", cell("WAKE COPY ZEROPAGE", Verdict::Expected));
        assert_eq!(
            on(vec![("populate.read_missing", cell("fault read", Verdict::Expected)), ioctls.clone()]),
            (Outcome::Satisfies, vec![Status::Met, Status::Met])
        );
        // A kernel without the advice: unsupported is an observation, and not the one needed.
        assert_eq!(
            on(vec![("populate.read_missing", cell("EINVAL", Verdict::Unsupported)), ioctls.clone()]).0,
            Outcome::Violates
        );
        // Unexpected is still an observation: what matters is whether it is the one needed.
        assert_eq!(
            on(vec![("populate.read_missing", cell("fault read", Verdict::Unexpected)), ioctls.clone()]).0,
            Outcome::Satisfies
        );
        // Nothing learnt: skipped, or no cell.
        assert_eq!(
            on(vec![("populate.read_missing", cell("skipped", Verdict::Skipped)), ioctls.clone()]),
            (Outcome::NotChecked, vec![Status::NotChecked, Status::Met])
        );
        assert_eq!(on(vec![ioctls.clone()]).0, Outcome::NotChecked);
        // A violation wins over what was not checked.
        assert_eq!(
            on(vec![
                ("populate.read_missing", Cell::missing("gone")),
                ("api.ioctls", cell("WAKE", Verdict::Expected))
            ])
            .0,
            Outcome::Violates
        );
        // Flaky: met only when every run gave what is needed.
        let mut flaky = cell("fault read", Verdict::Flaky);
        flaky
            .details
            .insert("observations".into(), "2x expected \"fault read\"; 1x unexpected \"EINVAL\"".into());
        assert_eq!(on(vec![("populate.read_missing", flaky.clone()), ioctls.clone()]).0, Outcome::Violates);
        flaky
            .details
            .insert("observations".into(), "2x expected \"fault read\"; 1x unexpected \"fault read\"".into());
        assert_eq!(on(vec![("populate.read_missing", flaky), ioctls]).0, Outcome::Satisfies);
    }
}
