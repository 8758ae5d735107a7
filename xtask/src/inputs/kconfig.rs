//! A build's configuration (the configuration axis of `images/kernels.toml`): the fragment a
//! build asks for (`images/configs/base.config` and the track's options, as `KCONFIG_ALLCONFIG`
//! reads them), and the `.config` that `make allnoconfig` resolved from it, checked against what
//! was asked: an option the source does not know (no `config` symbol in its Kconfig files), or one
//! whose dependencies turned it off, is named with what it depends on.

use crate::inputs::fleet::{BuildTrack, SourcePin, TRACKS};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

/// The base configuration every build starts from.
pub const BASE: &str = "images/configs/base.config";

/// The base configuration and the track's options, as `KCONFIG_ALLCONFIG` reads them (a later
/// line wins).
pub fn fragment(base: &str, id: &str, track: &BuildTrack) -> String {
    let mut text = base.to_string();
    text += &format!("\n# {id}: what differs from the base configuration ({})\n", TRACKS);
    for (k, v) in &track.options {
        text += &match v.as_str() {
            "n" => format!("# {k} is not set\n"),
            v if v == "y" || v == "m" || v.parse::<i64>().is_ok() => format!("{k}={v}\n"),
            v => format!("{k}=\"{v}\"\n"),
        };
    }
    text
}

/// The lines of a `.config` that set an option (`CONFIG_X=y`), in order.
pub fn set_options(config: &str) -> Vec<String> {
    config.lines().filter(|l| l.starts_with("CONFIG_") && l.contains('=')).map(String::from).collect()
}

/// An option's value in a `.config` (`y`, `m`, a value without quotes, or `n` when not set).
pub fn value_of(config: &str, option: &str) -> String {
    let prefix = format!("{option}=");
    config
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or_else(|| "n".to_string(), |v| v.trim_matches('"').to_string())
}

/// What the fragment asks for: option -> value (`n` for `# CONFIG_X is not set`); a later line wins.
pub fn asked(fragment: &str) -> BTreeMap<String, String> {
    let mut asked = BTreeMap::new();
    for line in fragment.lines().map(str::trim) {
        if let Some(option) = line.strip_prefix("# ").and_then(|l| l.strip_suffix(" is not set")) {
            asked.insert(option.to_string(), "n".to_string());
        } else if let Some((k, v)) = line.split_once('=').filter(|(k, _)| k.starts_with("CONFIG_")) {
            asked.insert(k.to_string(), v.trim_matches('"').to_string());
        }
    }
    asked
}

/// Every option the resolved configuration was asked for has that value: an option the source
/// does not know, or one its dependencies turned off (or forced on), is an error that names it.
pub fn check_resolved(
    id: &str,
    track: &BuildTrack,
    fragment: &str,
    resolved: &str,
    tree: &Path,
    pin: &SourcePin,
) -> Result<()> {
    let asked = asked(fragment);
    let wrong: Vec<(&String, &String, String)> = asked
        .iter()
        .filter_map(|(k, v)| {
            let got = value_of(resolved, k);
            (got != *v).then_some((k, v, got))
        })
        .collect();
    if wrong.is_empty() {
        return Ok(());
    }
    let known = kconfig_symbols(tree)?;
    // An option of the base that depends on one the build turns off goes with it (the base's
    // CONFIG_PTE_MARKER_UFFD_WP=y in a build without CONFIG_USERFAULTFD): that is what was asked.
    let mut off: BTreeSet<String> = track
        .options
        .iter()
        .filter(|(_, v)| v.as_str() == "n")
        .map(|(k, _)| k.trim_start_matches("CONFIG_").to_string())
        .collect();
    let mut wrong = wrong;
    loop {
        let before = wrong.len();
        wrong.retain(|(k, _, got)| {
            let name = k.trim_start_matches("CONFIG_");
            let follows = !track.options.contains_key(*k)
                && got == "n"
                && known.get(name).is_some_and(|deps| {
                    deps.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|w| off.contains(w))
                });
            if follows {
                off.insert(name.to_string());
            }
            !follows
        });
        if wrong.len() == before {
            break;
        }
    }
    if wrong.is_empty() {
        return Ok(());
    }
    let whence = |k: &str| {
        if track.options.contains_key(k) {
            format!("the options of build {id} in {}", TRACKS)
        } else {
            BASE.to_string()
        }
    };
    let source = format!("{} {}", track.source, pin.version);
    if let Some((k, _, _)) =
        wrong.iter().find(|(k, _, _)| !known.contains_key(k.trim_start_matches("CONFIG_")))
    {
        bail!(
            "build {id}: {k} (in {}) is not an option {source} knows (no `config {}` in its Kconfig files): fix its name or remove it",
            whence(k),
            k.trim_start_matches("CONFIG_")
        );
    }
    let lines: Vec<String> = wrong
        .iter()
        .map(|(k, v, got)| {
            let deps = known.get(k.trim_start_matches("CONFIG_")).filter(|d| !d.is_empty());
            format!(
                "{k}={v} (in {}) resolved to {k}={got}{}",
                whence(k),
                deps.map_or(String::new(), |d| format!(" (it depends on {d})"))
            )
        })
        .collect();
    bail!(
        "build {id}: {source}'s configuration does not hold what was asked: {}: set what it depends on too, or drop it",
        lines.join("; ")
    )
}

/// Every `config`/`menuconfig` symbol in the tree's Kconfig files, with its `depends on` lines.
fn kconfig_symbols(tree: &Path) -> Result<BTreeMap<String, String>> {
    let mut symbols = BTreeMap::new();
    let mut dirs = vec![tree.to_path_buf()];
    let skip: BTreeSet<&str> = ["Documentation", "tools", "samples", ".git"].into();
    while let Some(dir) = dirs.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?.flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() && !skip.contains(name.as_str()) {
                dirs.push(path);
            } else if kind.is_file() && name.starts_with("Kconfig") {
                let mut text = String::new();
                std::fs::File::open(&path)?.read_to_string(&mut text)?;
                let mut current: Option<String> = None;
                // The conditions of the `if` blocks around a symbol are its dependencies too
                // (mm/Kconfig: `if USERFAULTFD` ... `config PTE_MARKER_UFFD_WP`).
                let mut ifs: Vec<String> = Vec::new();
                for line in text.lines().map(str::trim) {
                    let mut words = line.split_whitespace();
                    match (words.next(), words.next()) {
                        (Some("config" | "menuconfig"), Some(sym)) => {
                            let deps = symbols.entry(sym.to_string()).or_insert_with(String::new);
                            for cond in &ifs {
                                if deps.is_empty() {
                                    *deps = cond.clone();
                                } else if !deps.contains(cond.as_str()) {
                                    *deps = format!("{deps} && {cond}");
                                }
                            }
                            current = Some(sym.to_string());
                        }
                        (Some("if"), Some(_)) => {
                            ifs.push(line.trim_start_matches("if").trim().to_string());
                            current = None;
                        }
                        (Some("endif"), _) => {
                            ifs.pop();
                            current = None;
                        }
                        (Some("depends"), Some("on")) => {
                            if let Some(sym) = &current {
                                let deps = symbols.entry(sym.clone()).or_insert_with(String::new);
                                let dep =
                                    line.trim_start_matches("depends").trim().trim_start_matches("on").trim();
                                if deps.is_empty() {
                                    *deps = dep.to_string();
                                } else if !deps.contains(dep) {
                                    *deps = format!("{deps} && {dep}");
                                }
                            }
                        }
                        (
                            Some("choice" | "endchoice" | "menu" | "endmenu" | "if" | "source" | "comment"),
                            _,
                        ) => current = None,
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(symbols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn a_fragment_says_what_it_asks_and_later_lines_win() {
        let track = BuildTrack {
            suites: vec!["trixie".into()],
            source: "linux-source-6.12".into(),
            options: [
                ("CONFIG_USERFAULTFD".to_string(), "n".to_string()),
                ("CONFIG_NR_CPUS".into(), "4".into()),
            ]
            .into(),
            why: String::new(),
        };
        let text = fragment("CONFIG_USERFAULTFD=y\nCONFIG_NR_CPUS=8\n# a comment\n", "b", &track);
        let asked = asked(&text);
        assert_eq!(asked["CONFIG_USERFAULTFD"], "n");
        assert_eq!(asked["CONFIG_NR_CPUS"], "4");
        assert_eq!(value_of("CONFIG_A=y\nCONFIG_B=\"x\"\n", "CONFIG_B"), "x");
        assert_eq!(value_of("# CONFIG_A is not set\n", "CONFIG_A"), "n");
    }

    #[test]
    fn a_base_option_that_depends_on_one_the_build_turns_off_goes_with_it() {
        // mm/Kconfig's shape: PTE_MARKER_UFFD_WP sits inside `if USERFAULTFD`.
        let tree = scratch("kconfig-if");
        std::fs::write(
            tree.join("Kconfig"),
            "menuconfig USERFAULTFD\n\tbool \"uffd\"\nif USERFAULTFD\nconfig PTE_MARKER_UFFD_WP\n\tbool \"wp\"\n\tdepends on HAVE_ARCH_USERFAULTFD_WP\nendif\nconfig SERIAL_8250_PCI\n\tbool \"pci\"\n\tdepends on PCI\n",
        )
        .unwrap();
        let symbols = kconfig_symbols(&tree).unwrap();
        assert_eq!(symbols["PTE_MARKER_UFFD_WP"], "USERFAULTFD && HAVE_ARCH_USERFAULTFD_WP");
        assert_eq!(symbols["SERIAL_8250_PCI"], "PCI");
        let track = BuildTrack {
            suites: vec!["trixie".into()],
            source: "linux-source-6.12".into(),
            options: [("CONFIG_USERFAULTFD".to_string(), "n".to_string())].into(),
            why: String::new(),
        };
        let pin = SourcePin {
            suite: "trixie".into(),
            version: "6.12.118-1".into(),
            sha256: "0".repeat(64),
            size: 1,
        };
        let resolved = "# CONFIG_USERFAULTFD is not set\n";
        let base = "CONFIG_USERFAULTFD=y\nCONFIG_PTE_MARKER_UFFD_WP=y\n";
        let fragment = |base: &str| fragment(base, "t", &track);
        check_resolved("t", &track, &fragment(base), resolved, &tree, &pin).unwrap();
        // An option of the base that went off for another reason is still named.
        let err = check_resolved(
            "t",
            &track,
            &fragment(&format!("{base}CONFIG_SERIAL_8250_PCI=y\n")),
            resolved,
            &tree,
            &pin,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("CONFIG_SERIAL_8250_PCI=y") && !err.contains("PTE_MARKER"), "{err}");
        // And so is one the build itself asks for.
        let mut track = track.clone();
        track.options.insert("CONFIG_PTE_MARKER_UFFD_WP".into(), "y".into());
        let err =
            check_resolved("t", &track, &fragment(base), resolved, &tree, &pin).unwrap_err().to_string();
        assert!(err.contains("CONFIG_PTE_MARKER_UFFD_WP=y (in the options of build t"), "{err}");
    }

    /// A fresh directory under target/ for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = crate::util::project_root().join("target/uffdc/tests").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
