//! The architectures columns run on, named as the kernel names them (`arch/x86`'s `x86_64`,
//! `arch/arm64`'s `arm64`), with each one's other names: `uname -m`, Debian's, Rust's, Go's.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    #[default]
    #[serde(rename = "x86_64")]
    X86_64,
    Arm64,
}

pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Arm64];

impl Arch {
    /// The kernel's name (`CONFIG_X86_64`, `CONFIG_ARM64`), as files and column ids write it.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The Kconfig symbol every kernel of this architecture sets.
    pub fn kconfig(self) -> &'static str {
        match self {
            Arch::X86_64 => "CONFIG_X86_64",
            Arch::Arm64 => "CONFIG_ARM64",
        }
    }

    /// `uname -m`.
    pub fn machine(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// Debian's architecture (`APT::Architecture`).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// Go's `GOARCH`.
    pub fn goarch(self) -> &'static str {
        self.debian()
    }

    /// From `uname -m` (or the kernel's name).
    pub fn from_machine(machine: &str) -> Option<Arch> {
        ALL.into_iter().find(|a| a.machine() == machine || a.name() == machine)
    }

    /// The architecture this program was built for.
    pub fn native() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Arm64
        } else {
            Arch::X86_64
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Arch, String> {
        ALL.into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| format!("unknown architecture {s:?}: use {}", ALL.map(Arch::name).join(" or ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in ALL {
            assert_eq!(a.name().parse::<Arch>(), Ok(a));
            assert_eq!(Arch::from_machine(a.machine()), Some(a));
        }
        assert_eq!(Arch::from_machine("aarch64"), Some(Arch::Arm64));
        assert!("amd64".parse::<Arch>().unwrap_err().contains("x86_64 or arm64"));
        #[derive(Serialize, Deserialize)]
        struct T {
            arch: Arch,
        }
        assert_eq!(toml::to_string(&T { arch: Arch::Arm64 }).unwrap(), "arch = \"arm64\"\n");
        assert_eq!(toml::from_str::<T>("arch = \"x86_64\"").unwrap().arch, Arch::X86_64);
    }
}
