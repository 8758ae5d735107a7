//! `cargo xtask diff OLD NEW`: the cells that changed between two matrices (an observation or a
//! verdict), kernels and behaviours that appeared or went away. Exit status 1 when anything
//! changed: the scheduled runs use it to flag regressions.

use anyhow::Result;
use matrix::Compat;
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
    let old: Compat = matrix::model::load(old)?;
    let new: Compat = matrix::model::load(new)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use matrix::Verdict;

    #[test]
    fn reports_flipped_cells_and_new_kernels() {
        let root = crate::util::project_root();
        let old: Compat = matrix::model::load(&root.join("matrix/compat.toml")).unwrap();
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
}
