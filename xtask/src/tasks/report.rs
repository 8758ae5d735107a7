//! `cargo xtask report`: renders `COMPATIBILITY.md` beside the matrix and the page into the
//! HTML directory (`publish`).

use anyhow::Result;
use std::path::Path;

/// Renders both from the matrix in `matrix_dir` (`COMPATIBILITY.md` beside `compat.toml`); the
/// page goes to `html_dir/index.html`.
pub fn run(matrix_dir: &Path, html_dir: &Path) -> Result<()> {
    crate::publish::write(matrix_dir, html_dir)
}
