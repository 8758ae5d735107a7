//! `cargo xtask test`: the project's test command. Installs what it needs, checks formatting
//! and lints, builds the static suite, and runs every test including the end-to-end ones (real
//! probes on the host kernel, real Debian kernels booted under TCG).

use crate::deps::{self, Need};
use anyhow::{bail, Result};
use std::path::Path;
use xshell::{cmd, Shell};

pub fn run(sh: &Shell, root: &Path) -> Result<()> {
    deps::ensure(
        sh,
        &[Need::Libclang, Need::Qemu, Need::AptTools, Need::DebianKeyring, Need::Chromium, Need::PythonVenv],
    )?;
    if !deps::is_root() {
        bail!("cargo xtask test runs the suite's probes on this kernel and needs root for them: run it as root (e.g. `sudo -E env PATH=$PATH cargo xtask test`)");
    }
    let _cwd = sh.push_dir(root);
    cmd!(sh, "cargo fmt --all -- --check").run()?;
    cmd!(sh, "cargo clippy --workspace --all-targets --locked -- -D warnings").run()?;
    let suite = crate::suite_bin::build(sh, root)?;
    let python = kcidb_python(sh, root)?;
    cmd!(sh, "cargo test --workspace --locked -- --include-ignored")
        .env("UFFDC_SUITE_BIN", &suite)
        .env("UFFDC_PYTHON", &python)
        .env("UFFDC_CHROMIUM", "chromium")
        .env("RUSTFLAGS", "-D warnings")
        .run()?;
    eprintln!("test: all passed");
    Ok(())
}

/// The version of PyPI's kcidb-io the KCIDB export is validated with (schema v5.3).
const KCIDB_IO: &str = "kcidb-io==141";

/// A Python with kcidb-io, in a virtual environment under target/ (nothing installed system-wide).
fn kcidb_python(sh: &Shell, root: &Path) -> Result<std::path::PathBuf> {
    let venv = root.join("target/uffdc/venv");
    let python = venv.join("bin/python");
    let ready = cmd!(sh, "{python} -c 'import kcidb_io'").quiet().ignore_stderr().run().is_ok();
    if !ready {
        cmd!(sh, "python3 -m venv {venv}").run()?;
        cmd!(sh, "{python} -m pip install --quiet {KCIDB_IO}").run()?;
    }
    Ok(python)
}
