//! Kernel versions and version ranges, as used by expectation tables.

use std::fmt;
use std::str::FromStr;

/// An upstream kernel version, `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl KernelVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        KernelVersion { major, minor, patch }
    }

    /// Reads the leading `major.minor[.patch]` of a `uname -r` release string such as
    /// `5.10.0-32-cloud-amd64` or `6.18.44-fc-v669`. Distribution ABI numbers (Debian's `5.10.0`)
    /// carry no patch level; that is fine, expectations are stated per minor release.
    pub fn from_release(release: &str) -> Option<KernelVersion> {
        let end = release.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(release.len());
        release[..end].trim_end_matches('.').parse().ok()
    }

    /// The version a kernel reports with `uname -r` and `uname -v`: the upstream point release
    /// that a distribution names in `uname -v` (Debian's `... Debian 6.1.192-2 (...)`, whose
    /// `uname -r` is only the ABI, `6.1.0-56-cloud-amd64`), else what `uname -r` says. Point
    /// releases matter: a fix reaches a stable series at one (`>=6.12.29, <6.13`).
    pub fn from_uname(release: &str, version: &str) -> Option<KernelVersion> {
        let from_release = KernelVersion::from_release(release);
        let debian = version
            .split("Debian ")
            .nth(1)
            .and_then(|v| KernelVersion::from_release(v.split(['-', ' ', '+', '~']).next().unwrap_or("")))
            .filter(|v| from_release.is_none_or(|r| (r.major, r.minor) == (v.major, v.minor)));
        debian.or(from_release)
    }
}

impl FromStr for KernelVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split('.');
        let mut next = |what: &str, required: bool| -> Result<u32, String> {
            match parts.next() {
                Some(p) => p.parse().map_err(|_| format!("bad {what} number {p:?} in kernel version {s:?}")),
                None if required => Err(format!("kernel version {s:?} lacks a {what} number")),
                None => Ok(0),
            }
        };
        let v = KernelVersion::new(next("major", true)?, next("minor", true)?, next("patch", false)?);
        if parts.next().is_some() {
            return Err(format!("kernel version {s:?} has more than three parts"));
        }
        Ok(v)
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.patch == 0 {
            write!(f, "{}.{}", self.major, self.minor)
        } else {
            write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
        }
    }
}

/// A half-open range of kernel versions: `*`, `>=5.14`, `<5.14` or `>=5.11, <6.1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionRange {
    pub from: Option<KernelVersion>,
    pub before: Option<KernelVersion>,
}

impl VersionRange {
    pub fn contains(&self, v: KernelVersion) -> bool {
        self.from.is_none_or(|from| v >= from) && self.before.is_none_or(|before| v < before)
    }
}

impl FromStr for VersionRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut range = VersionRange { from: None, before: None };
        if s.trim() == "*" {
            return Ok(range);
        }
        for part in s.split(',').map(str::trim) {
            if let Some(v) = part.strip_prefix(">=") {
                if range.from.replace(v.trim().parse()?).is_some() {
                    return Err(format!("version range {s:?} has two lower bounds"));
                }
            } else if let Some(v) = part.strip_prefix('<') {
                if range.before.replace(v.trim().parse()?).is_some() {
                    return Err(format!("version range {s:?} has two upper bounds"));
                }
            } else {
                return Err(format!("bad version range {s:?}: use `*`, `>=X.Y`, `<X.Y` or `>=X.Y, <X.Z`"));
            }
        }
        if let (Some(from), Some(before)) = (range.from, range.before) {
            if from >= before {
                return Err(format!("version range {s:?} is empty"));
            }
        }
        Ok(range)
    }
}

impl fmt::Display for VersionRange {
    /// Human wording, as the report shows it: "5.14 and later", "before 5.14", "5.11 to 6.0".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.from, self.before) {
            (None, None) => write!(f, "all kernels"),
            (Some(a), None) => write!(f, "{a} and later"),
            (None, Some(b)) => write!(f, "before {b}"),
            (Some(a), Some(b)) => write!(f, "{a} up to (not incl.) {b}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_strings() {
        let v = |s| KernelVersion::from_release(s).unwrap();
        assert_eq!(v("5.10.0-32-cloud-amd64"), KernelVersion::new(5, 10, 0));
        assert_eq!(v("6.18.44-fc-v669"), KernelVersion::new(6, 18, 44));
        assert_eq!(v("7.3.0-rc7-cloud-amd64"), KernelVersion::new(7, 3, 0));
        assert_eq!(v("6.1"), KernelVersion::new(6, 1, 0));
        assert_eq!(KernelVersion::from_release("linux"), None);
        let u = |r, v| KernelVersion::from_uname(r, v).unwrap();
        assert_eq!(
            u("6.1.0-56-cloud-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-10-01)"),
            KernelVersion::new(6, 1, 192)
        );
        assert_eq!(
            u("5.10.0-46-cloud-amd64", "#1 SMP Debian 5.10.262-1 (2026-09-01)"),
            KernelVersion::new(5, 10, 262)
        );
        assert_eq!(
            u("7.3-cloud-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 7.3~rc7-1~exp1 (2026-11-20)"),
            KernelVersion::new(7, 3, 0)
        );
        assert_eq!(u("6.18.44-fc-v669", "#1 SMP PREEMPT_DYNAMIC @0"), KernelVersion::new(6, 18, 44));
        assert_eq!(
            u("6.12.118+deb13-cloud-amd64", "#1 SMP Debian 6.12.118-1"),
            KernelVersion::new(6, 12, 118)
        );
    }

    #[test]
    fn ranges() {
        let r: VersionRange = ">=5.11, <6.1".parse().unwrap();
        assert!(!r.contains(KernelVersion::new(5, 10, 200)));
        assert!(r.contains(KernelVersion::new(5, 11, 0)));
        assert!(r.contains(KernelVersion::new(6, 0, 19)));
        assert!(!r.contains(KernelVersion::new(6, 1, 0)));
        assert!("*".parse::<VersionRange>().unwrap().contains(KernelVersion::new(2, 6, 0)));
        assert!("<5.14".parse::<VersionRange>().unwrap().contains(KernelVersion::new(5, 13, 9)));
        for bad in ["5.14", ">=6.1, <5.10", ">=a.b", ">=5.1, >=5.2", ""] {
            assert!(bad.parse::<VersionRange>().is_err(), "{bad:?} should not parse");
        }
        assert_eq!(r.to_string(), "5.11 up to (not incl.) 6.1");
    }
}
