//! Requirement profiles (`profiles/<name>.toml`, see `model::profile`): read by name or path, with
//! one-line errors naming the file and the line; `check` and the report stand on them.

use anyhow::{bail, Context, Result};
use model::profile::Profile;
use std::path::{Path, PathBuf};

/// The directory of the shipped profiles.
pub fn dir(root: &Path) -> PathBuf {
    root.join("profiles")
}

/// Reads one profile: `arg` is a name in `profiles/` or a path to a file.
pub fn load(root: &Path, arg: &str) -> Result<Profile> {
    let path = if arg.contains('/') || arg.ends_with(".toml") {
        PathBuf::from(arg)
    } else {
        dir(root).join(format!("{arg}.toml"))
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let names: Vec<String> = all(root).unwrap_or_default().into_iter().map(|p| p.name).collect();
            bail!(
                "no profile {arg:?}{} ({} does not exist); the profiles are: {}",
                model::suggest::did_you_mean(arg, names.iter().map(String::as_str)),
                crate::util::display_path(&path),
                names.join(", ")
            )
        }
        Err(e) => bail!("{}: cannot read: {e}", crate::util::display_path(&path)),
    };
    let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
    Profile::parse(&name, &crate::util::display_path(&path), &text).map_err(anyhow::Error::msg)
}

/// Every profile in `profiles/`, by name.
pub fn all(root: &Path) -> Result<Vec<Profile>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir(root))
        .with_context(|| format!("cannot read {}", dir(root).display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files.iter().map(|f| load(root, &f.to_string_lossy())).collect()
}
