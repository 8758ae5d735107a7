//! `cargo xtask explain ID`: one behaviour in full: what it checks, its expectation table with
//! the citation, what the documentation claims where that differs, and what every kernel in the
//! matrix did.

use anyhow::{bail, Result};
use model::version::KernelVersion;
use model::Compat;
use std::fmt::Write;
use std::path::Path;

pub fn text(compat: &Compat, id: &str) -> Result<String> {
    let Some(b) = compat.behaviours.get(id) else {
        let hint = model::suggest::did_you_mean(id, compat.behaviours.keys().map(String::as_str));
        bail!("no behaviour {id:?} in the matrix{hint} (see `cargo run -p suite -- --list`)");
    };
    let mut t = String::new();
    let _ = writeln!(t, "{id} ({})\n  {}\n", b.family, b.summary);
    let _ = writeln!(t, "Observes:\n  {}\n", b.observes);
    let _ = writeln!(t, "Expected:");
    for r in &b.expectation {
        let _ = writeln!(t, "  {}", r.describe());
    }
    if !b.documented.is_empty() {
        let _ = writeln!(t, "Documented (differs from the kernel source):");
        for r in &b.documented {
            let _ = writeln!(t, "  {}", r.describe());
        }
    }
    let _ = writeln!(t, "\nCitation:\n  {}", b.citation);
    if !b.notes.is_empty() {
        let _ = writeln!(t, "Notes:\n  {}", b.notes);
    }
    let _ = writeln!(t, "\nObserved:");
    let mut kernels: Vec<(&String, &model::RunInfo)> = compat.kernels.iter().collect();
    kernels.sort_by_key(|(_, k)| KernelVersion::from_release(&k.release));
    for (k, info) in kernels {
        match b.cells.get(k) {
            Some(c) => {
                let _ =
                    writeln!(t, "  {k:<20} {:<28} {:<11} {}", info.release, c.verdict.as_str(), c.observed);
                if let Some(r) = &c.reason {
                    let _ = writeln!(t, "  {:<20} {:<28} {:<11} reason: {r}", "", "", "");
                }
                if !c.details.is_empty() {
                    let d: Vec<String> = c.details.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let _ = writeln!(t, "  {:<20} {:<28} {:<11} {}", "", "", "", d.join(" "));
                }
            }
            None => {
                let _ = writeln!(t, "  {k:<20} {:<28} (no cell)", info.release);
            }
        }
    }
    Ok(t)
}

pub fn run(matrix_dir: &Path, id: &str) -> Result<()> {
    let compat: Compat = model::data::load(&matrix_dir.join("compat.toml"))?;
    print!("{}", text(&compat, id)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn explains_a_behaviour_with_every_kernel() {
        let compat = crate::util::fixture();
        let t = super::text(&compat, "api.handshake_twice").unwrap();
        assert!(t.contains("Expected:\n  all kernels: EINVAL"), "{t}");
        assert!(t.contains("Documented (differs from the kernel source):\n  all kernels: ok"), "{t}");
        for kernel in compat.kernels.keys() {
            assert!(t.contains(kernel.as_str()), "{kernel} missing from\n{t}");
        }
        let err = super::text(&compat, "read_missing").unwrap_err().to_string();
        assert!(err.contains("(did you mean \"populate.read_missing\""), "{err}");
    }
}
