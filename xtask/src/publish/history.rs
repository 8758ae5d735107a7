//! How a compile updates the matrix's history (`matrix/history.toml`, see `model::history`).

use super::HISTORY;
use anyhow::Result;
use model::Compat;
use std::path::Path;

/// Records a compiled matrix in the history beside it (`model::history::History::record`: its new
/// observations and point releases, stamped with its `generated` date); returns the entries added.
pub fn record(matrix_dir: &Path, compat: &Compat) -> Result<usize> {
    let path = matrix_dir.join(HISTORY);
    let mut history = model::history::load(&path)?;
    let added = history.record(compat);
    if added > 0 || !path.exists() {
        crate::util::write_atomic(&path, history.to_toml().as_bytes())?;
    }
    Ok(added)
}
