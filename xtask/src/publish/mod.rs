//! The matrix as people read it, rendered from `matrix/compat.toml`, the history beside it
//! (`matrix/history.toml`) and the requirement profiles (`profiles/`): `COMPATIBILITY.md` (checked
//! in, the text version) and one self-contained `index.html` (no external assets) for publishing.
//! Both answer "can I run my software on this kernel?" first: the profiles' verdicts per kernel;
//! then the findings, grouped by behaviour with the kernels as ranges; what changed since the
//! previous matrix and between which point releases; the features and ioctls by kernel; and every
//! cell. The page adds a "pick the behaviours you rely on" control (a verdict per kernel and the
//! minimum version from the expectation tables), an overview of all behaviours × all kernels
//! coloured by verdict (a letter on a kernel that observed something else than most of its row),
//! the kernels' own selftest cases folded under their counts, permalinks (`#ID/KERNEL`, whose
//! details give the command that observes the cell again) and search.
//!
//! Kernel columns are in version order everywhere (`model::columns`). Nothing here assumes which
//! behaviours or kernels there are. `view` computes what is shown once; `markdown` and `page`
//! render it; `history` records a compiled matrix in the history.

pub mod history;
pub mod markdown;
pub mod page;
pub mod view;

#[cfg(test)]
mod browser;
#[cfg(test)]
mod tests;

use anyhow::Result;
use model::history::History;
use model::profile::Profile;
use model::Compat;
use std::path::{Path, PathBuf};
use view::View;

pub const COMPATIBILITY: &str = "COMPATIBILITY.md";
/// The history file beside `compat.toml` (see `model::history`).
pub const HISTORY: &str = "history.toml";

/// Renders both from the matrix in `matrix_dir` (`COMPATIBILITY.md` beside `compat.toml`); the
/// page goes to `html_dir/index.html`.
pub fn write(matrix_dir: &Path, html_dir: &Path) -> Result<()> {
    let compat: Compat = model::data::load(&matrix_dir.join("compat.toml"))?;
    let (profiles, history) = inputs(matrix_dir)?;
    let view = View::new(&compat, &profiles, &history);
    crate::util::write_atomic(&matrix_dir.join(COMPATIBILITY), markdown::markdown(&view).as_bytes())?;
    let page = html_dir.join("index.html");
    crate::util::write_atomic(&page, page::html(&view)?.as_bytes())?;
    println!(
        "wrote {} and {}",
        crate::util::display_path(&matrix_dir.join(COMPATIBILITY)),
        crate::util::display_path(&page)
    );
    Ok(())
}

/// The profiles (`profiles/`) and the matrix's history, which the report reads besides the matrix.
fn inputs(matrix_dir: &Path) -> Result<(Vec<Profile>, History)> {
    let profiles = crate::inputs::profiles::all(&crate::util::project_root())?;
    let history = model::history::load(&matrix_dir.join(HISTORY))?;
    Ok((profiles, history))
}

pub fn write_markdown(matrix_dir: &Path, compat: &Compat) -> Result<()> {
    let (profiles, history) = inputs(matrix_dir)?;
    let view = View::new(compat, &profiles, &history);
    crate::util::write_atomic(&matrix_dir.join(COMPATIBILITY), markdown::markdown(&view).as_bytes())
}

pub fn default_html_dir(root: &Path) -> PathBuf {
    root.join("target/report")
}
