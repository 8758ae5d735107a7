//! What a probe sees (its settings) and what it returns: an observation, or why it could not make
//! one; the child's report of it; errno names as the matrix spells them.
//!
//! A probe runs in a child process of its own (see `isolate`), observes one behaviour and returns
//! an [`Observation`]: a short canonical `observed` value plus `details` (or [`Fail::Observed`],
//! the same from a helper, through `?`). When the kernel lacks a prerequisite, the probe returns
//! [`Fail::Unsupported`] naming it; when the probe itself cannot do its job, [`Fail::Error`].

use model::{Detail, Details};
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
    /// Self-test: a mistake this probe's page server makes on purpose, which its checker must
    /// catch (`--inject-fault serve-stale=ID`, `serve-zero=ID`).
    pub sabotage: Option<Sabotage>,
    /// Whether probes may change system-wide security settings (and restore them): always in a
    /// guest, which the suite owns; on a host only when asked (`--allow-sysctl-changes`).
    pub may_change_settings: bool,
}

impl Default for Ctx {
    fn default() -> Self {
        Ctx {
            window: Duration::from_millis(300),
            timeout: Duration::from_secs(10),
            sabotage: None,
            may_change_settings: false,
        }
    }
}

impl Ctx {
    /// Allowed to change `setting` (a security setting of the machine), or `skipped` saying why not.
    pub fn may_change(&self, setting: &str) -> Result<(), Fail> {
        if self.may_change_settings {
            Ok(())
        } else {
            Err(Fail::Skipped(format!(
                "the probe must change {setting}, a security setting of this host, which the suite leaves alone unless run with --allow-sysctl-changes"
            )))
        }
    }
}

/// A deliberate mistake of a probe's page server, for the self-tests of probes that check page
/// contents (stress and race probes): their checkers must report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    /// Serve one refault with the content the page had before its removal.
    StalePage,
    /// Serve one refault with a zero-filled page.
    ZeroPage,
    /// Leave out the races the probe makes on purpose: it must then report that it fell short.
    NoRace,
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
    /// The machine, not the kernel, lacks a prerequisite (not root, no huge pages reserved, a host
    /// setting the suite will not change): nothing was learnt about the kernel, for a stated reason.
    Skipped(String),
    /// The probe could not do its job; nothing was learnt about the kernel.
    Error(String),
    /// The probe ends early with what it saw (another event than the one it waits for, a thread
    /// that returned instead of blocking): an observation, like `Ok`, so that `?` can end a probe
    /// from a helper.
    Observed(Observation),
}

impl From<Observation> for Fail {
    fn from(o: Observation) -> Fail {
        Fail::Observed(o)
    }
}

impl Fail {
    pub fn unsupported(observed: impl Into<String>, reason: impl Into<String>) -> Fail {
        Fail::Unsupported { observed: observed.into(), reason: reason.into(), details: Details::new() }
    }
    pub fn error(message: impl Into<String>) -> Fail {
        Fail::Error(message.into())
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Unsupported { observed, reason, .. } => write!(f, "unsupported ({observed}): {reason}"),
            Fail::Skipped(reason) => write!(f, "skipped: {reason}"),
            Fail::Error(message) => f.write_str(message),
            Fail::Observed(o) => write!(f, "observed: {}", o.observed),
        }
    }
}

pub type ProbeResult = Result<Observation, Fail>;

/// `?` with a label: `mmap(...).ctx("mmap")?`.
pub trait Context<T> {
    fn ctx(self, what: &str) -> Result<T, Fail>;
}

impl<T> Context<T> for Result<T, Errno> {
    fn ctx(self, what: &str) -> Result<T, Fail> {
        self.map_err(|e| Fail::Error(format!("{what}: {}", errno_name(e))))
    }
}

impl<T> Context<T> for Result<T, userfaultfd::Error> {
    fn ctx(self, what: &str) -> Result<T, Fail> {
        self.map_err(|e| Fail::Error(format!("{what}: {}", error_name(&e))))
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
    Skipped { reason: String },
    Error { message: String },
}

pub const REPORT_PREFIX: &str = "uffdc-report:";

impl From<ProbeResult> for Report {
    fn from(r: ProbeResult) -> Report {
        match r {
            Ok(o) | Err(Fail::Observed(o)) => Report::Observed { observed: o.observed, details: o.details },
            Err(Fail::Unsupported { observed, reason, details }) => {
                Report::Unsupported { observed, reason, details }
            }
            Err(Fail::Skipped(reason)) => Report::Skipped { reason },
            Err(Fail::Error(message)) => Report::Error { message },
        }
    }
}

/// The name of an errno value, as the matrix shows it: `EINVAL`.
pub fn errno_name(e: Errno) -> String {
    format!("{e:?}")
}

/// Names a crate error by its errno where it has one.
pub fn error_name(e: &userfaultfd::Error) -> String {
    match e {
        userfaultfd::Error::SystemError(errno)
        | userfaultfd::Error::CopyFailed(errno)
        | userfaultfd::Error::ZeropageFailed(errno) => errno_name(Errno::from_raw(*errno as i32)),
        userfaultfd::Error::PartiallyCopied(n) => format!("EAGAIN (partial copy {n})"),
        other => other.to_string(),
    }
}
