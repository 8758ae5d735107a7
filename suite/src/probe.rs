//! What a probe is and what it returns.
//!
//! A probe runs in a child process of its own (see `isolate`), observes one behaviour and returns
//! an [`Observation`]: a short canonical `observed` value plus `details`. When the kernel lacks a
//! prerequisite, the probe returns [`Fail::Unsupported`] naming it; when the probe itself cannot
//! do its job, [`Fail::Error`].

use matrix::{Detail, Details};
use nix::errno::Errno;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Settings every probe sees.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    /// How long a "nothing happens" check watches (no message arrives, a handler does not run).
    pub window: Duration,
    /// How long to wait for something that should happen (a message, a thread blocking) before
    /// recording that it did not.
    pub timeout: Duration,
}

impl Default for Ctx {
    fn default() -> Self {
        Ctx { window: Duration::from_millis(300), timeout: Duration::from_secs(10) }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub observed: String,
    pub details: Details,
}

impl Observation {
    pub fn new(observed: impl Into<String>) -> Observation {
        Observation { observed: observed.into(), details: Details::new() }
    }

    pub fn with(mut self, key: &str, value: impl Into<Detail>) -> Observation {
        self.details.insert(key.to_string(), value.into());
        self
    }

    pub fn detail(&mut self, key: &str, value: impl Into<Detail>) {
        self.details.insert(key.to_string(), value.into());
    }
}

#[derive(Debug)]
pub enum Fail {
    /// The kernel lacks a prerequisite. `observed` is what showed it (`EINVAL`, `ENOSYS`).
    Unsupported { observed: String, reason: String, details: Details },
    /// The probe could not do its job; nothing was learnt about the kernel.
    Error(String),
}

impl Fail {
    pub fn unsupported(observed: impl Into<String>, reason: impl Into<String>) -> Fail {
        Fail::Unsupported { observed: observed.into(), reason: reason.into(), details: Details::new() }
    }
    pub fn error(message: impl Into<String>) -> Fail {
        Fail::Error(message.into())
    }
}

pub type ProbeResult = Result<Observation, Fail>;

/// `?` with a label: `mmap(...).ctx("mmap")?`.
pub trait Context<T> {
    fn ctx(self, what: &str) -> Result<T, Fail>;
}

impl<T> Context<T> for Result<T, Errno> {
    fn ctx(self, what: &str) -> Result<T, Fail> {
        self.map_err(|e| Fail::Error(format!("{what}: {}", crate::sys::errno_name(e))))
    }
}

impl<T> Context<T> for Result<T, userfaultfd::Error> {
    fn ctx(self, what: &str) -> Result<T, Fail> {
        self.map_err(|e| Fail::Error(format!("{what}: {}", crate::uffd::error_name(&e))))
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx(self, what: &str) -> Result<T, Fail> {
        self.map_err(|e| Fail::Error(format!("{what}: {e}")))
    }
}

/// The child's answer to its parent, one line on stdout prefixed by [`REPORT_PREFIX`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "lowercase")]
pub enum Report {
    Observed { observed: String, details: Details },
    Unsupported { observed: String, reason: String, details: Details },
    Error { message: String },
}

pub const REPORT_PREFIX: &str = "uffdc-report:";

impl From<ProbeResult> for Report {
    fn from(r: ProbeResult) -> Report {
        match r {
            Ok(o) => Report::Observed { observed: o.observed, details: o.details },
            Err(Fail::Unsupported { observed, reason, details }) => {
                Report::Unsupported { observed, reason, details }
            }
            Err(Fail::Error(message)) => Report::Error { message },
        }
    }
}
