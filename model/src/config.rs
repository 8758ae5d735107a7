//! A kernel's build configuration, as far as the expectations need it: the options that decide
//! what userfaultfd can do (the feature bits they gate, huge pages, the preemption model), read
//! from a `.config` (Debian's `/boot/config-<release>`, a host's `/proc/config.gz`, a build's own),
//! and conditions on them (`CONFIG_USERFAULTFD=y`, `CONFIG_PTE_MARKER_UFFD_WP!=y`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The options recorded with every run and that expectation rows may condition on.
pub const RELEVANT: &[&str] = &[
    "CONFIG_USERFAULTFD",
    "CONFIG_HAVE_ARCH_USERFAULTFD_WP",
    "CONFIG_HAVE_ARCH_USERFAULTFD_MINOR",
    "CONFIG_PTE_MARKER_UFFD_WP",
    "CONFIG_HUGETLBFS",
    "CONFIG_HUGETLB_PAGE",
    "CONFIG_TRANSPARENT_HUGEPAGE",
    "CONFIG_SHMEM",
    "CONFIG_MEMFD_CREATE",
    "CONFIG_PREEMPT_NONE",
    "CONFIG_PREEMPT_VOLUNTARY",
    "CONFIG_PREEMPT",
    "CONFIG_PREEMPT_RT",
    "CONFIG_PREEMPT_DYNAMIC",
    "CONFIG_SECCOMP",
    "CONFIG_SYSCTL",
    // CRIU (`clients.criu_*`) needs it: kcmp, map_files, PR_SET_MM, ns_last_pid.
    "CONFIG_CHECKPOINT_RESTORE",
    // arm64's base page size: 64 KiB huge pages (contiguous PTEs) exist only with 4 KiB pages.
    "CONFIG_ARM64_4K_PAGES",
    // ... and 32 MiB ones (contiguous PMDs with 4 KiB pages, a PMD with 16 KiB) not with 64 KiB pages.
    "CONFIG_ARM64_64K_PAGES",
    // The architecture (`arch=arm64` in a condition reads these: `crate::arch`).
    "CONFIG_X86_64",
    "CONFIG_ARM64",
];

/// A kernel's configuration: where it was read, and the [`RELEVANT`] options that are set (an
/// option absent here is not set: `n`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where it came from: `/boot/config-6.1.0-56-cloud-amd64 (the Debian package)`,
    /// `/proc/config.gz`, `--config FILE`.
    pub source: String,
    pub options: BTreeMap<String, String>,
}

impl Config {
    /// The relevant options of a `.config` text (`CONFIG_X=y`, `# CONFIG_X is not set`).
    pub fn parse(source: &str, text: &str) -> Config {
        let options = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| RELEVANT.contains(k))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .filter(|(_, v)| v != "n")
            .collect();
        Config { source: source.to_string(), options }
    }

    /// `y`, `m`, a value, or `n` when not set.
    pub fn value(&self, option: &str) -> &str {
        self.options.get(option).map_or("n", String::as_str)
    }

    /// The architecture the kernel was built for (`CONFIG_ARM64=y`, `CONFIG_X86_64=y`), when the
    /// configuration says.
    pub fn arch(&self) -> Option<crate::arch::Arch> {
        crate::arch::ALL.into_iter().find(|a| self.value(a.kconfig()) == "y")
    }

    /// The preemption model, as the report names it: `PREEMPT_RT`, `PREEMPT`, `PREEMPT_DYNAMIC`
    /// (chosen at boot), `VOLUNTARY`, `NONE`.
    pub fn preemption(&self) -> &'static str {
        let set = |o: &str| self.value(o) == "y";
        if set("CONFIG_PREEMPT_RT") {
            "PREEMPT_RT"
        } else if set("CONFIG_PREEMPT_DYNAMIC") {
            "PREEMPT_DYNAMIC"
        } else if set("CONFIG_PREEMPT") {
            "PREEMPT"
        } else if set("CONFIG_PREEMPT_VOLUNTARY") {
            "VOLUNTARY"
        } else {
            "NONE"
        }
    }
}

/// A condition on the configuration: terms joined by ` and `, each `CONFIG_X=V` or `CONFIG_X!=V`
/// (V is `y`, `m`, `n` or a value; an option that is not set reads `n`), or `arch=A` / `arch!=A`
/// (A is `x86_64` or `arm64`: the architecture the configuration is for, from its `CONFIG_X86_64`
/// or `CONFIG_ARM64`; a configuration that names neither is of no known architecture).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    terms: Vec<(String, bool, String)>,
}

/// The pseudo-option of a condition on the architecture (`arch=arm64`).
const ARCH: &str = "arch";

impl std::str::FromStr for Condition {
    type Err = String;
    fn from_str(s: &str) -> Result<Condition, String> {
        let mut terms = Vec::new();
        for term in s.split(" and ").map(str::trim) {
            let (option, equal, value) = match term.split_once("!=") {
                Some((o, v)) => (o, false, v),
                None => match term.split_once('=') {
                    Some((o, v)) => (o, true, v),
                    None => {
                        return Err(format!("bad config condition {term:?}: use CONFIG_X=y or CONFIG_X!=y"))
                    }
                },
            };
            let option = option.trim();
            if option == ARCH {
                value.trim().parse::<crate::arch::Arch>().map_err(|e| format!("condition {term:?}: {e}"))?;
                terms.push((option.to_string(), equal, value.trim().to_string()));
                continue;
            }
            if !RELEVANT.contains(&option) {
                return Err(format!(
                    "config condition on {option:?}, which runs do not record (model::config::RELEVANT)"
                ));
            }
            if value.trim().is_empty() {
                return Err(format!("config condition {term:?} has no value"));
            }
            terms.push((option.to_string(), equal, value.trim().to_string()));
        }
        Ok(Condition { terms })
    }
}

impl Condition {
    /// Whether a kernel of `arch`, built as the distributions build it, meets it, where its
    /// architecture decides: `Some(false)` when a term on the architecture fails (whatever the
    /// options), `Some(true)` when it names the architecture alone and holds, `None` when it
    /// holds on the architecture but names an option (which only the configuration tells).
    pub fn on_arch(&self, arch: crate::arch::Arch) -> Option<bool> {
        let on_arch = |(option, _, _): &&(String, bool, String)| option == ARCH;
        if !self.terms.iter().filter(on_arch).all(|(_, equal, value)| (arch.name() == value) == *equal) {
            return Some(false);
        }
        self.terms.iter().all(|t| on_arch(&t)).then_some(true)
    }

    /// Whether `config` meets it.
    pub fn holds(&self, config: &Config) -> bool {
        self.terms.iter().all(|(option, equal, value)| {
            let actual =
                if option == ARCH { config.arch().map_or("", |a| a.name()) } else { config.value(option) };
            (actual == value) == *equal
        })
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let terms: Vec<String> =
            self.terms.iter().map(|(o, eq, v)| format!("{o}{}{v}", if *eq { "=" } else { "!=" })).collect();
        f.write_str(&terms.join(" and "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_config_and_checks_conditions() {
        let text = "# comment\nCONFIG_USERFAULTFD=y\n# CONFIG_PTE_MARKER_UFFD_WP is not set\nCONFIG_HUGETLBFS=y\nCONFIG_PREEMPT_DYNAMIC=y\nCONFIG_OTHER=y\n";
        let c = Config::parse("/boot/config-x", text);
        assert_eq!(c.options.len(), 3, "{c:?}");
        assert_eq!((c.value("CONFIG_USERFAULTFD"), c.value("CONFIG_PTE_MARKER_UFFD_WP")), ("y", "n"));
        assert_eq!(c.preemption(), "PREEMPT_DYNAMIC");
        let cond = |s: &str| s.parse::<Condition>().unwrap().holds(&c);
        assert!(cond("CONFIG_USERFAULTFD=y"));
        assert!(!cond("CONFIG_USERFAULTFD!=y"));
        assert!(cond("CONFIG_PTE_MARKER_UFFD_WP!=y and CONFIG_HUGETLBFS=y"));
        assert!(cond("CONFIG_PTE_MARKER_UFFD_WP=n"));
        assert!(!cond("CONFIG_PTE_MARKER_UFFD_WP=n and CONFIG_HUGETLBFS=n"));
        assert!("CONFIG_FOO=y".parse::<Condition>().unwrap_err().contains("not record"));
        assert!("CONFIG_USERFAULTFD".parse::<Condition>().is_err());
        assert_eq!(
            "CONFIG_USERFAULTFD!=y".parse::<Condition>().unwrap().to_string(),
            "CONFIG_USERFAULTFD!=y"
        );
        // The architecture, from the configuration's own symbols.
        assert_eq!(c.arch(), None);
        assert!(!cond("arch=x86_64") && cond("arch!=arm64"), "a configuration of no known architecture");
        let arm = Config::parse("/boot/config-a", "CONFIG_ARM64=y\nCONFIG_USERFAULTFD=y\n");
        assert_eq!(arm.arch(), Some(crate::arch::Arch::Arm64));
        let on_arm = |s: &str| s.parse::<Condition>().unwrap().holds(&arm);
        assert!(on_arm("arch=arm64 and CONFIG_USERFAULTFD=y") && !on_arm("arch!=arm64"));
        assert!(on_arm("arch=arm64 and CONFIG_HAVE_ARCH_USERFAULTFD_WP!=y"));
        assert!("arch=sparc".parse::<Condition>().unwrap_err().contains("x86_64 or arm64"));
        let on = |s: &str, a| s.parse::<Condition>().unwrap().on_arch(a);
        use crate::arch::Arch::{Arm64, X86_64};
        assert_eq!((on("arch=arm64", Arm64), on("arch=arm64", X86_64)), (Some(true), Some(false)));
        assert_eq!(on("arch!=arm64", X86_64), Some(true));
        assert_eq!(
            on("arch=arm64 and CONFIG_USERFAULTFD=y", Arm64),
            None,
            "an option: not for a documented answer"
        );
        assert_eq!(
            on("arch=arm64 and CONFIG_ARM64_4K_PAGES!=y", X86_64),
            Some(false),
            "its architecture fails it"
        );
    }
}
