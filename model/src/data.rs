//! The data model: verdicts, cells, per-kernel results files and the compiled matrix.

use crate::expect::Rule;
pub use crate::verdict::Verdict;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// Version of the on-disk formats ([`Results`], [`Catalogue`], [`Compat`]). Bump on any change
/// that an older reader would misread.
pub const SCHEMA: u32 = 1;

/// One value in a cell's `details`: an errno name, a flag, a count, a duration in microseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Detail {
    Bool(bool),
    Int(i64),
    Text(String),
}

impl From<bool> for Detail {
    fn from(v: bool) -> Self {
        Detail::Bool(v)
    }
}
impl From<i64> for Detail {
    fn from(v: i64) -> Self {
        Detail::Int(v)
    }
}
impl From<u64> for Detail {
    fn from(v: u64) -> Self {
        Detail::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<i32> for Detail {
    fn from(v: i32) -> Self {
        Detail::Int(v.into())
    }
}
impl From<usize> for Detail {
    fn from(v: usize) -> Self {
        Detail::from(v as u64)
    }
}
impl From<&str> for Detail {
    fn from(v: &str) -> Self {
        Detail::Text(v.to_string())
    }
}
impl From<String> for Detail {
    fn from(v: String) -> Self {
        Detail::Text(v)
    }
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detail::Bool(b) => write!(f, "{b}"),
            Detail::Int(i) => write!(f, "{i}"),
            Detail::Text(s) => f.write_str(s),
        }
    }
}

pub type Details = BTreeMap<String, Detail>;

/// What one kernel did for one behaviour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    /// A short canonical value: an errno name, `fault read`, `REMOVE pages [1,3)`. Identical
    /// across runs on the same kernel; everything that varies goes into `details`.
    pub observed: String,
    pub verdict: Verdict,
    /// Why the verdict is what it is, when it is not `expected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The expectation rule the cell was graded against ("5.14 and later: fault read").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// Supporting facts: errno, message flags, thread state while blocked, timings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: Details,
}

impl Cell {
    /// A cell for which no result arrived.
    pub fn missing(reason: impl Into<String>) -> Cell {
        Cell {
            observed: "-".to_string(),
            verdict: Verdict::Missing,
            reason: Some(reason.into()),
            expected: None,
            details: Details::new(),
        }
    }
    /// A selftest case this kernel's own selftests (which ran) do not have: nothing to observe.
    pub fn absent(reason: impl Into<String>) -> Cell {
        Cell { verdict: Verdict::Absent, ..Cell::missing(reason) }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// The suite ran to its end-of-results record.
    #[default]
    Complete,
    /// The run was cut short; `reason` says how. Behaviours without a cell are `missing`.
    Incomplete,
}

/// How a kernel's column was produced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunInfo {
    /// `uname -r` inside the guest (or on the host).
    pub release: String,
    /// `uname -v`: for distribution kernels it names the upstream point release.
    #[serde(default)]
    pub version: String,
    /// `uname -m`.
    #[serde(default)]
    pub machine: String,
    /// The architecture the kernel runs on (from `uname -m` in the guest, else the column's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<crate::arch::Arch>,
    /// Where the kernel came from: the Debian package, version and .deb sha256, or `host`.
    pub source: String,
    /// `kvm`, `tcg`, or `none` when the suite ran directly on the host.
    pub accel: String,
    /// When the run finished (RFC 3339, UTC).
    pub date: String,
    /// The suite build that ran (`<version>`, `<version>+<git rev>`).
    pub suite: String,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The guest's serial console log, kept under `target/` on the machine that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_log: Option<String>,
    /// Wall time of the whole run, as the host saw it (QEMU start to exit, or the suite process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Kernel uptime when the suite started (in a guest: boot to init).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_ms: Option<u64>,
    /// Kernel time from the suite's start to its end record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite_ms: Option<u64>,
    /// The arguments the suite ran with (filters, `--repeat`, `--allow-sysctl-changes`, self-test
    /// faults), when there were any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suite_args: Vec<String>,
    /// How many times each behaviour ran (`--repeat`), when more than once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// The QEMU that ran a guest (`qemu-system-x86_64 --version`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub qemu: String,
    /// Boots this run took: a guest that dies or stays silent before the suite starts is booted
    /// again (a stated number of times).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_attempts: Option<u32>,
    /// Each failed boot: why, and where its logs are kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_boots: Vec<String>,
    /// The kernel's configuration, as far as expectations condition on it; absent when it is not
    /// known (a kernel image without one, no `/proc/config.gz`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<crate::config::Config>,
    /// The Go release of the Go workload the `stw.go_*` behaviours ran (its `runtime.Version()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go: Option<String>,
    /// The CPUs online in the guest (or on the host) when the suite started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// How the kernel was built, for a column the project builds from a Debian source package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    /// Where the kernel's own selftests that ran after the suite were built from (the family
    /// `selftests`): `linux-source-6.12 6.12.118-1 (trixie-security, deb sha256 ...)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selftests: Option<String>,
}

/// How a built column's kernel was made (`cargo xtask images build`): columns with the same
/// `source` differ only in `differs` (the configuration axis of the report).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// The Debian source package: `linux-source-6.12 6.12.118-1 (trixie-security, deb sha256 ...)`.
    pub source: String,
    /// The base configuration it starts from (`images/configs/base.config`, with its sha256).
    pub base: String,
    /// What differs from the base configuration, as set in the resolved configuration:
    /// `CONFIG_USERFAULTFD=n`. Empty for the base configuration itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differs: Vec<String>,
    /// The compiler that built it: `gcc-12 12.2.0-14 (images/toolchain.lock <key>)`.
    pub toolchain: String,
    /// sha256 of the resolved `.config`.
    pub config_sha256: String,
    /// The resolved `.config`: every option it sets (`CONFIG_X=y`), in its order.
    pub config: Vec<String>,
}

impl RunInfo {
    /// The version expectations are graded against (the point release a distribution names).
    pub fn kernel_version(&self) -> Option<crate::version::KernelVersion> {
        crate::version::KernelVersion::from_uname(&self.release, &self.version)
    }
}

/// One kernel's results: `matrix/results/<kernel-id>.toml`, and what `suite --results` writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Results {
    pub schema: u32,
    pub kernel: RunInfo,
    #[serde(default)]
    pub cells: BTreeMap<String, Cell>,
}

/// A behaviour as the suite declares it, and as the matrix carries it beside its cells.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    pub family: String,
    /// One line: what the behaviour is.
    pub summary: String,
    /// What the probe observes, and the values `observed` takes.
    pub observes: String,
    /// The expectation table (see [`crate::expect`]), from the kernel source where the
    /// documentation is wrong or silent.
    pub expectation: Vec<Rule>,
    /// What the documentation claims, where it differs from `expectation`. Cells whose observation
    /// does not match it are the matrix's findings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub documented: Vec<Rule>,
    /// Where the expectation comes from: man page section, kernel source file at a version.
    pub citation: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
    /// The kernel's own selftest cases this behaviour speaks about, as case ids by their start
    /// (`selftests.unit_uffdio_api` is every case whose id starts so): where one and the behaviour
    /// disagree on a kernel, the report says so. Empty for most.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selftests: Vec<String>,
    /// Per kernel id; present in the compiled matrix only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cells: BTreeMap<String, Cell>,
}

/// The family of the kernel's own userfaultfd selftests (`tools/testing/selftests/mm`
/// `uffd-unit-tests` and `uffd-stress`, or `vm/userfaultfd` before 6.3), built from each column's
/// own source and run in its guest after the suite: one cell per selftest case, `selftests.<case>`.
/// Their cases differ by kernel version, so they are not in the suite's catalogue: the matrix
/// gets a row for every case some column ran ([`selftest_behaviour`]).
pub const SELFTESTS: &str = "selftests";

/// The most one selftest program may run in an x86_64 guest before it is killed (and its case,
/// or the case it was in, recorded as failed: timed out); see [`selftest_limit_s`].
pub const SELFTEST_LIMIT_S: u64 = 60;

/// The most one selftest program may run in a guest of `arch`: [`SELFTEST_LIMIT_S`], three times
/// that on arm64, which QEMU emulates several times more slowly on the x86 machines that run it
/// under TCG (measured on a 2-core machine: `uffd-unit-tests` of 6.12 and 7.2 took 11 s in the
/// x86 guests, 46 to 60 s in the arm64 ones, where 60 s killed it). Only a bound: a faster guest
/// (KVM) finishes sooner.
pub fn selftest_limit_s(arch: crate::arch::Arch) -> u64 {
    match arch {
        crate::arch::Arch::X86_64 => SELFTEST_LIMIT_S,
        crate::arch::Arch::Arm64 => 3 * SELFTEST_LIMIT_S,
    }
}
/// How many more times a selftest program that failed or died is run in the same guest before its
/// cases are recorded (a case that passes on a rerun is `flaky`, with both observations; the
/// cases after a crash are observed by the reruns). Each run has [`selftest_limit_s`]; a program
/// with its reruns has twice that, from its start.
pub const SELFTEST_RERUNS: u32 = 2;
/// The kinds of memory the stress programs (`uffd-stress`, the old `userfaultfd`) run on, once
/// each; `uffd-unit-tests` runs once and covers them all itself.
pub const SELFTEST_MEMORIES: [&str; 3] = ["anon", "shmem", "hugetlb"];

/// The most time a guest of `arch` takes for its selftests, given the programs it was given (file
/// names under `/selftests/`): each program, with its reruns, within twice [`selftest_limit_s`].
/// A guest with selftests gets this much more time on top of its hard limit.
pub fn selftest_time_s<'a>(files: impl IntoIterator<Item = &'a str>, arch: crate::arch::Arch) -> u64 {
    let runs: u64 = files
        .into_iter()
        .map(|f| if f == "uffd-unit-tests" { 1 } else { SELFTEST_MEMORIES.len() as u64 })
        .sum();
    runs * 2 * selftest_limit_s(arch)
}

/// The expectation of selftest case `id`: it passes (`skip` is `skipped`, with the selftest's
/// reason); a kernel without userfaultfd cannot run them, and one without hugetlbfs cannot run the
/// hugetlb cases.
pub fn selftest_rules(id: &str) -> Vec<Rule> {
    let mut rules = vec![Rule::new(
        "* when CONFIG_USERFAULTFD!=y",
        "unsupported: the kernel is built without CONFIG_USERFAULTFD",
    )];
    if id.contains("hugetlb") {
        rules.push(Rule::new(
            "* when CONFIG_HUGETLBFS!=y",
            "unsupported: the kernel is built without CONFIG_HUGETLBFS (no huge pages to map)",
        ));
    }
    rules.push(Rule::new("*", "pass"));
    rules
}

/// The row of selftest case `id` (`selftests.unit_move_anon`), as the matrix carries it.
pub fn selftest_behaviour(id: &str) -> Behaviour {
    let case = id.strip_prefix("selftests.").unwrap_or(id);
    Behaviour {
        family: SELFTESTS.to_string(),
        summary: format!("the kernel's own userfaultfd selftest case {case}, from its own source package"),
        observes: "pass, fail or skip, as the selftest reports it (its reason in the cell)".to_string(),
        expectation: selftest_rules(id),
        documented: Vec::new(),
        citation: "tools/testing/selftests/mm/uffd-unit-tests.c and uffd-stress.c (vm/userfaultfd.c before 6.3) of \
                   each kernel's own Debian source package; built and run by cargo xtask (xtask/src/inputs/selftests.rs, \
                   suite/src/run/selftests.rs)"
            .to_string(),
        notes: "Cases differ by kernel version: a kernel whose selftests have no such case shows it as not in this kernel's selftests."
            .to_string(),
        selftests: Vec::new(),
        cells: BTreeMap::new(),
    }
}

/// The behaviours a suite build knows (`suite --catalogue`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    pub schema: u32,
    pub behaviours: BTreeMap<String, Behaviour>,
}

/// The compiled compatibility matrix, `matrix/compat.toml`.
///
/// ```toml
/// schema = 1
/// generated = "2026-11-25T16:00:00Z"
///
/// [kernels."debian-6.1-cloud"]          # one per column: RunInfo
/// release = "6.1.0-50-cloud-amd64"
/// source = "debian bookworm linux-image-6.1.0-50-cloud-amd64 6.1.176-1 (sha256 efe1…)"
/// accel = "tcg"
/// status = "complete"
/// ...
///
/// [behaviours."populate.read_missing"]  # one per row: Behaviour
/// family = "populate"
/// summary = "..."
/// expectation = [{ kernels = "<5.14", expect = "unsupported: ..." }, ...]
///
/// [behaviours."populate.read_missing".cells."debian-6.1-cloud"]   # Cell
/// observed = "fault read"
/// verdict = "expected"
/// details = { madvise = "0", state = "S" }
/// ```
///
/// Every behaviour has a cell for every kernel; a cell without a result is `missing` with its
/// reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compat {
    pub schema: u32,
    pub generated: String,
    pub kernels: BTreeMap<String, RunInfo>,
    pub behaviours: BTreeMap<String, Behaviour>,
}

/// The family of a behaviour id: `populate` for `populate.read_missing`.
pub fn family_of(id: &str) -> &str {
    id.split_once('.').map_or(id, |(family, _)| family)
}

/// A file that could not be read, with the place and a hint. Displays on one line.
#[derive(Debug)]
pub struct LoadError(pub String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for LoadError {}

/// Reads one of the TOML formats above, checking its schema version first.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LoadError(format!("{}: cannot read: {e}", path.display())))?;
    parse(&text).map_err(|e| LoadError(format!("{}:{e}", path.display())))
}

/// Parses one of the TOML formats; errors read `LINE:COL: message (hint)`.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    let place = |span: Option<std::ops::Range<usize>>| {
        let at = span.map_or(0, |s| s.start).min(text.len());
        let line = text[..at].matches('\n').count() + 1;
        let col = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("{line}:{col}")
    };
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        format!("{}: malformed TOML: {} (fix or regenerate the file)", place(e.span()), e.message())
    })?;
    match table.get("schema").and_then(toml::Value::as_integer) {
        Some(v) if v == i64::from(SCHEMA) => {}
        Some(v) => {
            return Err(format!(
                "1:1: schema version {v}, but this build reads version {SCHEMA} (regenerate it with `cargo xtask matrix`)"
            ))
        }
        None => return Err("1:1: no `schema = N` version line (not a uffd-conformance file?)".into()),
    }
    toml::from_str(text)
        .map_err(|e| format!("{}: {} (fix or regenerate the file)", place(e.span()), e.message().trim()))
}

/// Writes one of the formats as TOML (to a temporary file first, so no reader sees half a file).
pub fn save<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let text = toml::to_string(value).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("toml.tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results() -> Results {
        let mut cells = BTreeMap::new();
        cells.insert(
            "populate.read_missing".to_string(),
            Cell {
                observed: "fault read".into(),
                verdict: Verdict::Expected,
                reason: None,
                expected: Some("5.14 and later: fault read".into()),
                details: [("state".to_string(), Detail::from("S")), ("madvise".into(), Detail::from(0))]
                    .into_iter()
                    .collect(),
            },
        );
        Results {
            schema: SCHEMA,
            kernel: RunInfo {
                release: "6.1.0-50-cloud-amd64".into(),
                version: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1".into(),
                machine: "x86_64".into(),
                source: "debian".into(),
                accel: "tcg".into(),
                date: "2026-11-25T00:00:00Z".into(),
                suite: "0.1.0".into(),
                status: RunStatus::Complete,
                reason: None,
                console_log: None,
                duration_ms: Some(1200),
                init_ms: None,
                suite_ms: None,
                ..RunInfo::default()
            },
            cells,
        }
    }

    #[test]
    fn round_trip() {
        let r = results();
        let text = toml::to_string(&r).unwrap();
        assert_eq!(parse::<Results>(&text).unwrap(), r);
    }

    #[test]
    fn errors_name_the_line() {
        let text = toml::to_string(&results()).unwrap();
        let broken = text.replace("verdict = \"expected\"", "verdict = \"sideways\"");
        let line = broken.lines().position(|l| l.contains("sideways")).unwrap() + 1;
        let err = parse::<Results>(&broken).unwrap_err();
        assert!(err.starts_with(&format!("{line}:")), "{err}");
        assert!(err.contains("sideways"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");

        let err = parse::<Results>(&text.replace("schema = 1", "schema = 99")).unwrap_err();
        assert!(err.contains("schema version 99"), "{err}");
        let err = parse::<Results>("schema = 1\n[kernel\n").unwrap_err();
        assert!(err.starts_with("2:"), "{err}");
        assert!(parse::<Results>("cells = 3").unwrap_err().contains("no `schema"));
    }

    #[test]
    fn family() {
        assert_eq!(family_of("populate.read_missing"), "populate");
        assert_eq!(family_of("odd"), "odd");
    }
}
