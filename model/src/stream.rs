//! The results stream: how a guest reports to the host, one self-contained line per record, over
//! the second serial port.
//!
//! Every record is a line `uffdc:{json}`. A line cut short by a dying guest fails to parse and
//! costs only itself; the run counts as complete only when the `end` record arrived and agrees
//! with the number of cells received.

use crate::data::Cell;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const PREFIX: &str = "uffdc:";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "lowercase", deny_unknown_fields)]
pub enum Record {
    /// The suite started: what kernel it runs on and which behaviours it is about to run.
    /// `uptime_ms`: the kernel's uptime at that moment (in a guest: how long boot to init took).
    Start {
        release: String,
        version: String,
        machine: String,
        planned: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uptime_ms: Option<u64>,
        /// The suite build (`0.1.0+abc1234`).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        suite: String,
        /// The kernel's configuration, where the suite could read it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        config: Option<crate::config::Config>,
        /// The Go release of the suite's Go workload (`go1.27.3`), where it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        go: Option<String>,
        /// The CPUs online when the suite started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpus: Option<u32>,
    },
    /// One behaviour's result.
    Cell { id: String, cell: Cell },
    /// The suite finished after `count` cells, at kernel uptime `uptime_ms`.
    End {
        count: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uptime_ms: Option<u64>,
    },
    /// The suite could not go on (the guest harness failed); the message says why.
    Fatal { message: String },
}

impl Record {
    pub fn encode(&self) -> String {
        let json = serde_json::to_string(self).expect("records always serialise");
        format!("{PREFIX}{json}\n")
    }
}

/// Everything recovered from a (possibly cut-short) stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    pub start: Option<Record>,
    pub cells: BTreeMap<String, Cell>,
    pub end: Option<usize>,
    /// Kernel uptime at the end record.
    pub end_uptime_ms: Option<u64>,
    pub fatal: Option<String>,
    /// Lines that carried the prefix but did not parse (a record cut mid-line).
    pub damaged: usize,
}

impl Decoded {
    /// The planned behaviour ids from the start record.
    pub fn planned(&self) -> &[String] {
        match &self.start {
            Some(Record::Start { planned, .. }) => planned,
            _ => &[],
        }
    }

    /// Kernel uptime at the start record.
    pub fn start_uptime_ms(&self) -> Option<u64> {
        match &self.start {
            Some(Record::Start { uptime_ms, .. }) => *uptime_ms,
            _ => None,
        }
    }

    /// True when the stream ended with an end record that accounts for every cell.
    pub fn is_complete(&self) -> bool {
        self.end == Some(self.cells.len()) && self.fatal.is_none()
    }
}

impl Decoded {
    /// Takes one line of the stream: `Some(record)` when it carried a whole record (added here
    /// too), `None` for other lines (console noise) and for damaged records (counted).
    pub fn feed(&mut self, line: &str) -> Option<Record> {
        let line = line.trim_end_matches(['\r', '\n']);
        let at = line.find(PREFIX)?;
        match serde_json::from_str::<Record>(&line[at + PREFIX.len()..]) {
            Ok(record) => {
                match &record {
                    Record::Start { .. } => self.start = Some(record.clone()),
                    Record::Cell { id, cell } => {
                        self.cells.insert(id.clone(), cell.clone());
                    }
                    Record::End { count, uptime_ms } => {
                        self.end = Some(*count);
                        self.end_uptime_ms = *uptime_ms;
                    }
                    Record::Fatal { message } => self.fatal = Some(message.clone()),
                }
                Some(record)
            }
            Err(_) => {
                self.damaged += 1;
                None
            }
        }
    }
}

pub fn decode(text: &str) -> Decoded {
    let mut out = Decoded::default();
    for line in text.lines() {
        out.feed(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Verdict;

    #[test]
    fn survives_truncation() {
        let start = Record::Start {
            release: "6.1.0".into(),
            version: "#1".into(),
            machine: "x86_64".into(),
            planned: vec!["a.b".into(), "a.c".into()],
            uptime_ms: Some(1500),
            suite: String::new(),
            config: None,
            go: Some("go1.27.3".into()),
            cpus: None,
        };
        let cell = Cell::missing("x");
        let mut text = start.encode();
        text += &Record::Cell { id: "a.b".into(), cell: cell.clone() }.encode();
        text += "[    1.234] some console noise\r\n";
        let whole = Record::Cell { id: "a.c".into(), cell: cell.clone() }.encode();
        text += &whole[..whole.len() / 2];

        let d = decode(&text);
        assert_eq!(d.start, Some(start));
        assert_eq!(d.cells.len(), 1);
        assert_eq!(d.cells["a.b"].verdict, Verdict::Missing);
        assert_eq!(d.damaged, 1);
        assert!(!d.is_complete());
        assert_eq!(d.planned().len(), 2);

        let full = text[..text.rfind('\n').unwrap() + 1].to_string()
            + &whole
            + &Record::End { count: 2, uptime_ms: None }.encode();
        assert!(decode(&full).is_complete());
        let lying = text[..text.rfind('\n').unwrap() + 1].to_string()
            + &Record::End { count: 2, uptime_ms: None }.encode();
        assert!(!decode(&lying).is_complete(), "an end record that disagrees is not complete");
    }
}
