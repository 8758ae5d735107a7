//! `cargo xtask diff OLD NEW`: the cells that changed between two matrices (an observation or a
//! verdict), kernels and behaviours that appeared or went away. Exit status 0 when nothing
//! changed, 1 when something did, 2 when the comparison failed: the scheduled runs open a pull
//! request on 1 only.

use anyhow::Result;
use model::Compat;
use std::collections::BTreeSet;
use std::path::Path;

/// One line per change, in a stable order.
pub fn changes(old: &Compat, new: &Compat) -> Vec<String> {
    let mut out = Vec::new();
    let kernels: BTreeSet<&String> = old.kernels.keys().chain(new.kernels.keys()).collect();
    for k in &kernels {
        match (old.kernels.get(*k), new.kernels.get(*k)) {
            (None, Some(n)) => out.push(format!("kernel {k}: added ({})", n.release)),
            (Some(o), None) => out.push(format!("kernel {k}: removed (was {})", o.release)),
            (Some(o), Some(n)) if o.release != n.release => {
                out.push(format!("kernel {k}: release {} -> {}", o.release, n.release))
            }
            _ => {}
        }
    }
    let ids: BTreeSet<&String> = old.behaviours.keys().chain(new.behaviours.keys()).collect();
    for id in ids {
        let (o, n) = (old.behaviours.get(id), new.behaviours.get(id));
        match (o, n) {
            (None, Some(_)) => out.push(format!("{id}: behaviour added")),
            (Some(_), None) => out.push(format!("{id}: behaviour removed")),
            (Some(o), Some(n)) => {
                for k in &kernels {
                    let (oc, nc) = (o.cells.get(*k), n.cells.get(*k));
                    match (oc, nc) {
                        (Some(oc), Some(nc)) if oc.observed != nc.observed || oc.verdict != nc.verdict => out
                            .push(format!(
                                "{id} on {k}: {} `{}` -> {} `{}`",
                                oc.verdict, oc.observed, nc.verdict, nc.observed
                            )),
                        (Some(oc), None) if old.kernels.contains_key(*k) && new.kernels.contains_key(*k) => {
                            out.push(format!("{id} on {k}: {} `{}` -> no cell", oc.verdict, oc.observed))
                        }
                        _ => {}
                    }
                }
            }
            (None, None) => {}
        }
    }
    out
}

/// Prints the changes; `Ok(true)` when there were any.
pub fn run(old: &Path, new: &Path) -> Result<bool> {
    let old: Compat = model::data::load(old)?;
    let new: Compat = model::data::load(new)?;
    let changes = changes(&old, &new);
    for c in &changes {
        println!("{c}");
    }
    if changes.is_empty() {
        println!("no cell changed");
    } else {
        println!("{} change(s)", changes.len());
    }
    Ok(!changes.is_empty())
}

/// `cargo xtask diff`'s exit status: 0 nothing changed, 1 something changed, 2 the comparison
/// failed (a missing or unreadable file), so that a script can tell a change from an error.
pub fn main(old: &Path, new: &Path) -> i32 {
    match run(old, new) {
        Ok(false) => 0,
        Ok(true) => 1,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Verdict;

    #[test]
    fn reports_flipped_cells_and_new_kernels() {
        let root = crate::util::project_root();
        let old: Compat = model::data::load(&root.join("matrix/compat.toml")).unwrap();
        assert!(changes(&old, &old).is_empty());
        let mut new = old.clone();
        let (kernel, _) = new.kernels.iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap();
        let cell = new.behaviours.get_mut("populate.read_missing").unwrap().cells.get_mut(&kernel).unwrap();
        cell.observed = "fault write".into();
        cell.verdict = Verdict::Unexpected;
        let mut extra = new.kernels[&kernel].clone();
        extra.release = "9.9.9".into();
        new.kernels.insert("zz-new".into(), extra);
        let c = changes(&old, &new);
        assert!(
            c.iter().any(|l| l.starts_with(&format!("populate.read_missing on {kernel}: "))
                && l.contains("-> unexpected `fault write`")),
            "{c:?}"
        );
        assert!(c.contains(&"kernel zz-new: added (9.9.9)".to_string()), "{c:?}");
        assert_eq!(c.len(), 2, "{c:?}");
    }

    /// Issue 16, defect 5: an error exited 1, like a change, and opened a pull request.
    #[test]
    fn exit_status_tells_same_changed_and_error_apart() {
        let root = crate::util::project_root();
        let committed = root.join("matrix/compat.toml");
        let dir = root.join("target/uffdc/tests/diff-status");
        std::fs::create_dir_all(&dir).unwrap();
        let mut changed: Compat = model::data::load(&committed).unwrap();
        changed.behaviours.remove("populate.read_missing");
        model::data::save(&dir.join("changed.toml"), &changed).unwrap();
        assert_eq!(main(&committed, &committed), 0);
        assert_eq!(main(&committed, &dir.join("changed.toml")), 1);
        assert_eq!(main(&dir.join("no-such.toml"), &committed), 2);
    }
}
