//! The `clients` family as the report shows it: one row per real client and version (CRIU of
//! each Debian release, the `userfaultfd` crate), works or fails on each kernel, and why.

use super::*;

/// The family whose behaviours run real userfaultfd clients (CRIU, the `userfaultfd` crate).
pub const CLIENTS: &str = "clients";

/// One client and version of the `clients` family, and what it did on each kernel.
pub struct ClientRow<'a> {
    /// `CRIU 3.17.1 (Debian 12)`, `the userfaultfd crate 0.9.0` (see [`client_name`]).
    pub name: String,
    /// Its behaviours, in the matrix's order.
    pub behaviours: Vec<&'a str>,
    /// Per kernel column (version order); a kernel none of its behaviours has a cell on is absent.
    pub cells: BTreeMap<&'a str, ClientCell<'a>>,
    /// The project's write-ups of findings (`docs/findings/*.md`) that name one of its behaviours.
    pub writeups: Vec<String>,
}

/// How a client came out on one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientState {
    /// Every behaviour of the client observed the kernel and none says the client failed.
    Works,
    /// One or more say it failed (a CRIU command stopped, the crate disagreed with the kernel).
    Fails,
    /// None failed, none worked: the kernel lacks a prerequisite (`unsupported`).
    Unsupported,
    /// Nothing was learnt on that kernel (skipped, error, hung, crashed, missing, flaky).
    NotChecked,
}

impl ClientState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Works => "works",
            ClientState::Fails => "fails",
            ClientState::Unsupported => "unsupported",
            ClientState::NotChecked => "not checked",
        }
    }
}

pub struct ClientCell<'a> {
    pub state: ClientState,
    /// One short line: `works`, `fails`, `agrees on all 10`, `disagrees on 2 of 10`.
    pub text: String,
    /// Why, short: the failing observation of a one-behaviour client (CRIU's error line), the
    /// failing behaviours' names of a many-behaviour one (`copy_eagain, into_raw_fd`), or the
    /// reason nothing was learnt.
    pub why: String,
    /// The behaviours that failed there.
    pub failing: Vec<&'a str>,
    /// The cell whose details say the most: the first failing one, else the first.
    pub link: &'a str,
}

/// Whether a `clients` observation says the client failed. The family's values say it in words
/// (the probes' `observes`): the crate's `disagrees: ...`; CRIU's `dump fails: E`, `restore fails:
/// E`, `restored process failed: ...`, `restores, N pages wrong` and `restores, pages right, none
/// served lazily` (a lazy restore that served nothing lazily did not do what it is for).
/// An `agrees: ...` never fails, whatever error of the kernel's it reports.
pub fn client_fails(observed: &str) -> bool {
    let o = observed.trim();
    // An `agrees: ...` may quote a failure the crate reported faithfully.
    !o.starts_with("agrees")
        && (o.starts_with("disagrees")
            || o.contains("fails:")
            || o.contains("failed")
            || o.contains("pages wrong")
            || o.contains("none served lazily"))
}

/// The short name of a behaviour within its client's row: the id after `clients.` and the
/// client's word (`clients.crate_copy_eagain` reads `copy_eagain`).
pub fn client_part(id: &str) -> &str {
    let rest = id.strip_prefix("clients.").unwrap_or(id);
    rest.split_once('_').map_or(rest, |(_, r)| r)
}

/// The client a `clients` behaviour runs, by a naming rule on its declaration (so that nothing
/// here knows which clients there are):
/// - a summary that names the client and its version before a colon (`CRIU 3.17 (Debian 12): ...`,
///   a word of that part starts with a digit): that part, its version made exact by what ran where
///   the cells' details carry the client's package under the client's first word, lower case
///   (`criu = "criu 3.17.1-2+deb12u2 (bookworm)"`: `3.17.1`, without the Debian revision);
/// - a summary about "The NAME KIND ..." or "The NAME KIND's ..." whose citation starts with
///   `NAME VERSION` (`The userfaultfd crate decodes ...`, `userfaultfd 0.9.0 src/event.rs ...`):
///   `the NAME KIND VERSION`;
/// - else the id's word after `clients.`.
pub fn client_name(id: &str, b: &model::Behaviour) -> String {
    let versioned = |w: &str| w.starts_with(|c: char| c.is_ascii_digit());
    if let Some((lead, _)) = b.summary.split_once(": ") {
        let words: Vec<&str> = lead.split_whitespace().collect();
        if let Some(at) = words.iter().position(|w| versioned(w)) {
            let key = words[0].to_lowercase();
            let ran = b.cells.values().find_map(|c| {
                let d = c.details.get(&key)?.to_string();
                let d = d.trim_matches('"');
                let mut w = d.split_whitespace();
                (w.next()? == key).then(|| w.next().map(|v| v.split('-').next().unwrap_or(v).to_string()))?
            });
            let mut words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
            if let Some(v) = ran.filter(|v| v.starts_with(words[at].as_str())) {
                words[at] = v;
            }
            return words.join(" ");
        }
    }
    let mut cite = b.citation.split_whitespace();
    if let (Some(name), Some(version), Some(rest)) =
        (cite.next(), cite.next(), b.summary.strip_prefix("The "))
    {
        let mut words = rest.split_whitespace();
        if let (true, Some(first), Some(kind)) = (versioned(version), words.next(), words.next()) {
            if first == name {
                return format!("the {name} {} {version}", kind.trim_end_matches("'s"));
            }
        }
    }
    id.strip_prefix("clients.").unwrap_or(id).split('_').next().unwrap_or(id).to_string()
}

/// The `clients` family as rows of client and version (in the order first met), each kernel's
/// outcome derived from its behaviours' cells.
pub fn clients<'a>(compat: &'a Compat, order: &[&'a str]) -> Vec<ClientRow<'a>> {
    let mut rows: Vec<ClientRow<'a>> = Vec::new();
    for (id, b) in compat.behaviours.iter().filter(|(_, b)| b.family == CLIENTS) {
        let name = client_name(id, b);
        match rows.iter_mut().find(|r| r.name == name) {
            Some(r) => r.behaviours.push(id),
            None => rows.push(ClientRow {
                name,
                behaviours: vec![id],
                cells: BTreeMap::new(),
                writeups: Vec::new(),
            }),
        }
    }
    for row in &mut rows {
        for k in order {
            let cells: Vec<(&str, &Cell)> = row
                .behaviours
                .iter()
                .filter_map(|id| compat.behaviours[*id].cells.get(*k).map(|c| (*id, c)))
                .collect();
            if let Some(cell) = client_cell(&cells, row.behaviours.len()) {
                row.cells.insert(k, cell);
            }
        }
    }
    rows
}

/// One kernel's outcome of a client from its behaviours' cells there (`total` behaviours in all).
fn client_cell<'a>(cells: &[(&'a str, &Cell)], total: usize) -> Option<ClientCell<'a>> {
    let first = cells.first()?.0;
    let observed: Vec<&(&str, &Cell)> = cells.iter().filter(|(_, c)| lists_names(c)).collect();
    let failing: Vec<&str> =
        observed.iter().filter(|(_, c)| client_fails(&c.observed)).map(|(id, _)| *id).collect();
    let unsupported = cells.iter().find(|(_, c)| c.verdict == Verdict::Unsupported);
    let one = total == 1;
    let reason = |c: &Cell| c.reason.clone().unwrap_or_else(|| c.observed.clone());
    let (state, text, why) = if !failing.is_empty() {
        let disagree = failing
            .iter()
            .all(|id| cells.iter().any(|(i, c)| i == id && c.observed.trim_start().starts_with("disagrees")));
        // Out of the behaviours that observed the kernel there.
        let of = if observed.len() < total {
            format!("{} checked", observed.len())
        } else {
            observed.len().to_string()
        };
        let text = match (one, disagree) {
            (true, true) => "disagrees".to_string(),
            (true, false) => "fails".to_string(),
            (false, true) => format!("disagrees on {} of {of}", failing.len()),
            (false, false) => format!("fails {} of {of}", failing.len()),
        };
        let why = if one {
            cells[0].1.observed.clone()
        } else {
            failing.iter().map(|id| client_part(id)).collect::<Vec<_>>().join(", ")
        };
        (ClientState::Fails, text, why)
    } else if observed.len() == cells.len() {
        let agree = observed.iter().all(|(_, c)| c.observed.trim_start().starts_with("agrees"));
        let text = match (one, agree) {
            (true, true) => "agrees".to_string(),
            (true, false) => "works".to_string(),
            (false, true) => format!("agrees on all {}", observed.len()),
            (false, false) => format!("works on all {}", observed.len()),
        };
        (ClientState::Works, text, if one { cells[0].1.observed.clone() } else { String::new() })
    } else if !observed.is_empty() {
        // Some observed and agreed, the others learnt nothing or found a prerequisite missing.
        let rest: Vec<&str> =
            cells.iter().filter(|(_, c)| !lists_names(c)).map(|(id, _)| client_part(id)).collect();
        (
            ClientState::Works,
            format!("works on the {} checked", observed.len()),
            format!("not checked: {}", rest.join(", ")),
        )
    } else if let Some((_, c)) = unsupported {
        (ClientState::Unsupported, "unsupported".to_string(), reason(c))
    } else {
        let c = cells[0].1;
        (ClientState::NotChecked, format!("not checked ({})", c.verdict), reason(c))
    };
    Some(ClientCell { state, text, why, link: failing.first().copied().unwrap_or(first), failing })
}
