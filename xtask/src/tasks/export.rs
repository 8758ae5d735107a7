//! `cargo xtask export --kcidb FILE`: the matrix in KernelCI's KCIDB format (schema v5.3), for
//! submission to the common kernel-test database. One checkout and one build per kernel column,
//! one test per cell, at path `uffd.<family>.<behaviour>`. Verdicts map honestly: expected → PASS,
//! unexpected → FAIL, flaky → FAIL (repeats disagreed), unsupported and skipped → SKIP, missing →
//! MISS, absent (a selftest case this kernel's selftests do not have) → SKIP, error / hung / crashed → ERROR (the test did not complete, so nothing is known about the
//! kernel).

use anyhow::Result;
use model::{Compat, Verdict};
use serde_json::{json, Value};
use std::path::Path;

pub const ORIGIN: &str = "uffdc";

pub fn kcidb_status(v: Verdict) -> &'static str {
    match v {
        Verdict::Expected => "PASS",
        Verdict::Unexpected => "FAIL",
        Verdict::Unsupported | Verdict::Skipped | Verdict::Absent => "SKIP",
        Verdict::Flaky => "FAIL",
        Verdict::Missing => "MISS",
        Verdict::Error | Verdict::Hung | Verdict::Crashed => "ERROR",
    }
}

/// KCIDB ids are `origin:anything`; keep ours readable and free of spaces.
fn id(parts: &[&str]) -> String {
    let rest: Vec<String> = parts.iter().map(|p| p.replace(|c: char| c.is_whitespace(), "_")).collect();
    format!("{ORIGIN}:{}", rest.join(":"))
}

pub fn kcidb(compat: &Compat) -> Value {
    let mut checkouts = Vec::new();
    let mut builds = Vec::new();
    let mut tests = Vec::new();
    for (kernel, info) in &compat.kernels {
        let checkout = id(&[kernel, &info.release]);
        checkouts.push(json!({
            "id": checkout,
            "origin": ORIGIN,
            "tree_name": kernel,
            "comment": format!("{} ({})", info.release, info.source),
            "start_time": info.date,
            "valid": true,
            "misc": {"release": info.release, "version": info.version, "source": info.source},
        }));
        builds.push(json!({
            "id": checkout,
            "checkout_id": checkout,
            "origin": ORIGIN,
            "architecture": if info.machine.is_empty() { "x86_64" } else { info.machine.as_str() },
            "comment": info.source,
            "start_time": info.date,
            "status": "PASS",
            "misc": {"accel": info.accel, "suite": info.suite, "status": info.status, "reason": info.reason},
        }));
        for (behaviour, b) in &compat.behaviours {
            let Some(cell) = b.cells.get(kernel) else { continue };
            let mut test = json!({
                "id": id(&[kernel, &info.release, behaviour]),
                "build_id": checkout,
                "origin": ORIGIN,
                "path": format!("uffd.{behaviour}"),
                "status": kcidb_status(cell.verdict),
                "comment": format!("{}: {}", cell.verdict, cell.observed),
                "start_time": info.date,
                "environment": {"comment": format!("{} accel={}", kernel, info.accel)},
                "misc": {
                    "observed": cell.observed,
                    "verdict": cell.verdict,
                    "expected": cell.expected,
                    "reason": cell.reason,
                    "details": cell.details,
                    "citation": b.citation,
                },
            });
            if let Some(ms) = cell.details.get("probe_ms").and_then(|d| match d {
                model::Detail::Int(i) => Some(*i),
                _ => None,
            }) {
                test["duration"] = json!(ms as f64 / 1000.0);
            }
            tests.push(test);
        }
    }
    json!({"version": {"major": 5, "minor": 3}, "checkouts": checkouts, "builds": builds, "tests": tests})
}

pub fn run(matrix_dir: &Path, file: &Path) -> Result<()> {
    write(&model::data::load(&matrix_dir.join("compat.toml"))?, file)
}

/// Writes the export of `compat` to `file`.
fn write(compat: &Compat, file: &Path) -> Result<()> {
    let data = kcidb(compat);
    crate::util::write_atomic(file, serde_json::to_string_pretty(&data)?.as_bytes())?;
    println!("wrote {} ({} tests)", file.display(), data["tests"].as_array().map_or(0, Vec::len));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_verdict_honestly() {
        let mapped: Vec<(Verdict, &str)> = Verdict::ALL.iter().map(|v| (*v, kcidb_status(*v))).collect();
        assert_eq!(
            mapped,
            [
                (Verdict::Expected, "PASS"),
                (Verdict::Unexpected, "FAIL"),
                (Verdict::Unsupported, "SKIP"),
                (Verdict::Skipped, "SKIP"),
                (Verdict::Flaky, "FAIL"),
                (Verdict::Error, "ERROR"),
                (Verdict::Hung, "ERROR"),
                (Verdict::Crashed, "ERROR"),
                (Verdict::Missing, "MISS"),
                (Verdict::Absent, "SKIP"),
            ]
        );
    }

    #[test]
    #[ignore = "needs Python with kcidb-io: run through `cargo xtask test`"]
    fn the_export_validates_against_kcidb_io() {
        let root = crate::util::project_root();
        let compat = crate::util::fixture();
        let file = root.join("target/uffdc/tests/kcidb.json");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        write(&compat, &file).unwrap();
        let python =
            std::env::var("UFFDC_PYTHON").expect("UFFDC_PYTHON is unset: run through `cargo xtask test`");
        let out = std::process::Command::new(python)
            .args([
                "-c",
                "import json, sys, kcidb_io; d = json.load(open(sys.argv[1])); kcidb_io.schema.LATEST.validate(d); \
                 print(kcidb_io.schema.LATEST.major, kcidb_io.schema.LATEST.minor, len(d['tests']))",
            ])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kcidb-io rejected the export: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cells: usize = compat.behaviours.values().map(|b| b.cells.len()).sum();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("5 3 {cells}"));
        let data: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let skips = data["tests"].as_array().unwrap().iter().filter(|t| t["status"] == "SKIP").count();
        let unsupported = compat
            .behaviours
            .values()
            .flat_map(|b| b.cells.values())
            .filter(|c| matches!(c.verdict, Verdict::Unsupported | Verdict::Skipped))
            .count();
        assert_eq!(skips, unsupported);
    }
}
