//! The command line, declared once (xflags, as rust-analyzer's xtask does): the parser, the help
//! text (`cargo xtask help`) and the README's option lists (a tidy test compares them) all come
//! from this declaration.

use std::ffi::OsString;
use std::path::PathBuf;

xflags::xflags! {
    /// uffd-conformance's tasks.
    cmd xtask {
        /// Boot each kernel of images/kernels.toml (or each --kernel, or local bzImages) in QEMU with
        /// the suite as init, write matrix/results/<id>.toml, compile matrix/compat.toml and render
        /// matrix/COMPATIBILITY.md.
        cmd matrix {
            /// Only this kernel (repeatable); ids are the tracks of images/kernels.toml.
            repeated --kernel id: String
            /// Boot a local bzImage too: PATH[=ID][,config=FILE]. Without ID its column is named by
            /// its `uname -r`; its .config is FILE, else the build tree's beside arch/x86/boot/bzImage.
            /// With only --kernel-image, only those run.
            repeated --kernel-image image: String
            /// Add a column for the host kernel (the suite run directly). It stays local (its
            /// results go to target/uffdc/runs/host/) unless --publish-host.
            optional --host
            /// With --host: put the host column into the matrix directory too (the published
            /// matrix is the kernels anyone can reproduce; a host is not one).
            optional --publish-host
            /// Guests booted at once (1 to 64; default 2).
            optional --jobs n: u64
            /// Run every behaviour N times in each guest and on the host; observations that differ
            /// make a `flaky` cell (1 to 1000).
            optional --repeat n: u64
            /// auto (default: KVM only after a probe boot proves it works, else TCG), kvm, tcg, or
            /// tcg-mt (TCG with a host thread per guest CPU: QEMU 10 or later, a core per guest CPU).
            optional --accel accel: String
            /// Debian mirror (default: the one in this machine's apt sources; also
            /// UFFDC_DEBIAN_MIRROR, UFFDC_DEBIAN_SECURITY_MIRROR).
            optional --mirror uri: String
            /// Hard limit per guest, seconds (10 to 86400; default 300, times --repeat up to 20).
            optional --timeout secs: u64
            /// A guest that sends no start record within this is a failed boot (1 to 3600; default 30).
            optional --boot-timeout secs: u64
            /// Boots tried when a guest dies or stays silent before the suite starts (1 to 10; default 3).
            optional --boot-attempts n: u64
            /// Guest CPUs (1 to 64; default 2).
            optional --cpus n: u64
            /// Guest memory, MB (256 to 65536; default 1024).
            optional --memory mb: u64
            /// [ARCH=]PATH: the QEMU of ARCH's columns (x86_64 or arm64; without ARCH=, the architecture
            /// the binary emulates, as it says); repeatable (default: qemu-system-x86_64 and
            /// qemu-system-aarch64 on PATH).
            repeated --qemu qemu: String
            /// The matrix directory (default matrix/).
            optional --out dir: PathBuf
            /// Do not run each kernel's own userfaultfd selftests after the suite.
            optional --no-selftests
            /// Build kernels and selftests here even when the binary cache has them (default: fetch
            /// and verify them first from UFFDC_BINARY_CACHE, else the published report's binaries/).
            optional --no-binary-cache
            /// After `--`: passed to the suite in every guest and on the host, e.g.
            /// `-- --window-ms 500 populate::`.
            repeated suite_args: OsString
        }
        /// The fleet's pins and cache: refresh re-resolves tracks (and the builds' source packages) to
        /// their newest point release and rewrites images/kernels.lock (and images/toolchain.lock,
        /// and the Go toolchain's images/go.lock); fetch fills the cache; build builds kernels from
        /// source (the builds of images/kernels.toml); list shows tracks, builds, pins and cache.
        cmd images {
            /// refresh, fetch, build or list.
            required verb: String
            /// Tracks or builds, `toolchain` for the kernel build toolchain, `go` for the Go
            /// toolchain, `sources` for the source packages alone (default: all).
            repeated ids: String
            /// Debian mirror (as for matrix).
            optional --mirror uri: String
            /// build: compile even when the binary cache has the kernel (as for matrix).
            optional --no-binary-cache
        }
        /// Render matrix/COMPATIBILITY.md and a self-contained target/report/index.html.
        cmd report {
            /// The matrix directory (default matrix/).
            optional --matrix dir: PathBuf
            /// Where index.html goes (default target/report/).
            optional --html dir: PathBuf
        }
        /// Whether kernels give what a piece of software needs: each PROFILE (a name in profiles/,
        /// or a file) on every kernel of the matrix (or each --kernel), or on the running kernel
        /// (--host). Exit status 0: every kernel satisfies every profile; 1: some kernel violates
        /// one; 2: error; 3: nothing violated, but some need could not be checked.
        cmd check {
            /// Profile names (profiles/NAME.toml) or files.
            repeated profiles: String
            /// Check the running kernel: run only the needed behaviours here, without QEMU and
            /// without changing any setting of the host (what would need one is not checked).
            optional --host
            /// Only this kernel of the matrix (repeatable; with --host, besides the host); a kernel
            /// version no column runs (6.6, 5.15.170) is answered from the expectation tables.
            repeated --kernel id: String
            /// The architecture a --kernel version is answered for from the expectation tables
            /// (x86_64 or arm64; default: this machine's).
            optional --arch arch: String
            /// The matrix file (default matrix/compat.toml).
            optional --matrix file: PathBuf
            /// Print the answer as JSON (schema: docs/check.schema.json).
            optional --json
        }
        /// The cells that changed between two matrix files. Exit status 0: none; 1: some; 2: error.
        cmd diff {
            required old: PathBuf
            required new: PathBuf
        }
        /// One behaviour: what it checks, its expectation with citation, what every kernel did.
        cmd explain {
            required id: String
        }
        /// The matrix in KernelCI's KCIDB format (v5.3).
        cmd export {
            /// Write the KCIDB JSON here.
            required --kcidb file: PathBuf
        }
        /// The scheduled workflow's parts and their rehearsal.
        cmd ci {
            /// The fan-out: the kernel list as JSON, after refreshing the pins with --refresh; with
            /// --builds, the builds' list with the key each caches its build under.
            cmd plan {
                optional --refresh
                optional --builds
                optional --mirror uri: String
            }
            /// The fan-in: merge per-kernel results into matrix/, compile, render the report.
            cmd compile {
                repeated artifacts: PathBuf
            }
            /// The binary cache: the built kernels and selftests the cache holds (each --kernel's,
            /// else every column's unless FROM is given) written into the folder --out by input key,
            /// with its index.toml, to be served beside the report; the published folders found
            /// under each FROM are added too.
            cmd binaries {
                required --out dir: PathBuf
                repeated --kernel id: String
                repeated from: PathBuf
            }
            /// Run both workflow files under nektos/act and Docker, from a clean clone of REV
            /// (default HEAD), with stand-ins for the third-party actions (.ci/actions). As root;
            /// the log is target/uffdc/rehearse/rehearsal.log.
            cmd rehearse {
                /// ci-push, matrix-scheduled or stale-pin (default: all).
                repeated --scenario name: String
                optional --rev rev: String
                repeated --kernel id: String
                /// allowed or forbidden (default: allowed).
                optional --pull-requests setting: String
                /// Keep the clones and act's job workspaces (target/uffdc/rehearse/) after each scenario.
                optional --keep
            }
        }
        /// Per kernel: fetch (cold and cached), bare boot, boot to init, suite, total; then the whole
        /// matrix of those kernels. Prints a table and writes target/bench.toml. With --cold,
        /// instead: `cargo xtask matrix` from a fresh clone of HEAD with an empty per-user cache.
        cmd bench {
            repeated --kernel id: String
            /// Guests booted at once (1 to 64; default 2).
            optional --jobs n: u64
            /// Also boot each kernel bare N times and count the boots that failed before init, by cause
            /// (1 to 10000).
            optional --boots n: u64
            /// Runs of each Debian kernel's suite with the clients family and as many without it,
            /// alternated, for what the family adds (0 to 20; default 3; 0 leaves it out).
            optional --clients-pairs n: u64
            /// Whole-matrix runs without the clients family, alternated with runs with it (the
            /// first is the whole-matrix run), for what the family adds to the matrix (0 to 10;
            /// default 1; 0 leaves it out).
            optional --matrix-pairs n: u64
            /// Add the host to the whole-matrix run (the suite run directly).
            optional --host
            /// The whole-matrix run without the kernels' own selftests (`matrix --no-selftests`).
            optional --no-selftests
            optional --mirror uri: String
            /// [ARCH=]PATH, as for matrix (repeatable).
            repeated --qemu qemu: String
            /// auto (default), kvm, tcg or tcg-mt, as for matrix.
            optional --accel accel: String
            /// Instead of the above: time `cargo xtask matrix` (its first cell, its columns, the whole)
            /// from a fresh clone of HEAD, with an empty per-user cache and target dir, and this
            /// machine's built kernels and selftests served as the binary cache on 127.0.0.1
            /// (tens of minutes; the clone and its cache are removed after). The cold section of
            /// target/bench.toml.
            optional --cold
            /// With --cold: serve no binary cache; the clone's run compiles every build
            /// (`matrix --no-binary-cache`).
            optional --no-binary-cache
        }
        /// The test command: format, lints, unit tests, the suite on this kernel, real guest boots.
        cmd test {}
    }
}

/// The help text, as `cargo xtask help` prints it.
pub fn help() -> &'static str {
    Xtask::HELP_
}

/// Parses the command line (without the program name). `--flag=value` is taken as
/// `--flag value`, up to a `--`.
pub fn parse(args: Vec<OsString>) -> xflags::Result<Xtask> {
    let mut out = Vec::new();
    let mut rest = false;
    for arg in args {
        match arg.to_str() {
            Some("--") => {
                rest = true;
                out.push(arg);
            }
            Some(a) if !rest && a.starts_with("--") && a.contains('=') => {
                let (flag, value) = a.split_once('=').expect("it contains '='");
                out.push(flag.into());
                out.push(value.into());
            }
            _ => out.push(arg),
        }
    }
    Xtask::from_vec(out)
}

/// `n` when it lies in `lo..=hi`, else a one-line error naming the flag and the range.
pub fn in_range(flag: &str, n: u64, lo: u64, hi: u64) -> anyhow::Result<u64> {
    if (lo..=hi).contains(&n) {
        Ok(n)
    } else {
        anyhow::bail!("{flag} takes a whole number from {lo} to {hi}, not {n}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The flags the help text gives a command (`xtask matrix`, `xtask ci rehearse`).
    fn declared(command: &str) -> BTreeSet<String> {
        let help = super::help();
        let start =
            help.find(&format!("\n{command}\n")).unwrap_or_else(|| panic!("no {command} in the help"));
        help[start + 1..]
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("xtask "))
            .filter_map(|l| l.trim().strip_prefix("--"))
            .map(|f| format!("--{}", f.split_whitespace().next().unwrap_or("")))
            .filter(|f| f != "--help")
            .collect()
    }

    /// Every `--flag` in a text.
    fn flags_in(text: &str) -> BTreeSet<String> {
        text.split(|c: char| c.is_whitespace() || c == '`' || c == '(' || c == ',')
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| w.split(['=', ')', '.', ';']).next().unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn the_readme_lists_the_declared_options() {
        let readme = std::fs::read_to_string(crate::util::project_root().join("README.md")).unwrap();
        let block = readme
            .split("`cargo xtask matrix` options:")
            .nth(1)
            .and_then(|rest| rest.split("```").nth(1))
            .expect("README.md has a block of `cargo xtask matrix` options");
        // One option a line, at its start (`-- ARGS...` is the suite's).
        let listed: BTreeSet<String> = block
            .lines()
            .filter(|l| l.starts_with("--") && !l.starts_with("-- "))
            .filter_map(|l| l.split_whitespace().next().map(String::from))
            .collect();
        assert_eq!(listed, declared("xtask matrix"), "README.md's matrix options and flags.rs differ");
        // Every `cargo xtask <task> ... --flag` the README shows is a flag that task has.
        for line in readme.lines().filter(|l| l.contains("cargo xtask ")) {
            for part in line.split("cargo xtask ").skip(1) {
                let words: Vec<&str> = part.split_whitespace().collect();
                let Some(task) = words.first() else { continue };
                let task = task.trim_matches(|c: char| !c.is_alphanumeric() && c != '-');
                let command = match (task, words.get(1)) {
                    ("ci", Some(sub)) => format!("xtask ci {}", sub.trim_matches('`')),
                    _ => format!("xtask {task}"),
                };
                if !super::help().contains(&format!("\n{command}\n")) {
                    continue;
                }
                let shown: String = part.split(['`', '#']).next().unwrap_or("").to_string();
                let shown = shown.split(" -- ").next().unwrap_or("");
                for flag in flags_in(shown) {
                    assert!(
                        declared(&command).contains(&flag),
                        "README.md shows `{command} {flag}`, which flags.rs does not declare"
                    );
                }
            }
        }
    }

    #[test]
    fn the_check_can_fail() {
        assert!(!declared("xtask matrix").contains("--no-such-flag"));
        assert!(declared("xtask matrix").contains("--boot-attempts"));
        assert_eq!(
            flags_in("--cpus N (2)   --memory MB (1024)"),
            ["--cpus", "--memory"].map(String::from).into()
        );
    }
}
