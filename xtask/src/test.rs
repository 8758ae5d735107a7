//! `cargo xtask test`: the project's test command. Installs what it needs, checks formatting
//! and lints, builds the static suite, and runs every test including the end-to-end ones (real
//! probes on the host kernel, real Debian kernels booted under TCG).

use crate::deps::{self, Need};
use anyhow::{bail, Result};
use std::path::Path;
use xshell::{cmd, Shell};

pub fn run(sh: &Shell, root: &Path) -> Result<()> {
    deps::ensure(sh, &[Need::Libclang, Need::Qemu, Need::AptTools, Need::DebianKeyring])?;
    if !deps::is_root() {
        bail!("cargo xtask test runs the suite's probes on this kernel and needs root for them: run it as root (e.g. `sudo -E env PATH=$PATH cargo xtask test`)");
    }
    let _cwd = sh.push_dir(root);
    cmd!(sh, "cargo fmt --all -- --check").run()?;
    cmd!(sh, "cargo clippy --workspace --all-targets --locked -- -D warnings").run()?;
    let suite = crate::suite_bin::build(sh, root)?;
    cmd!(sh, "cargo test --workspace --locked -- --include-ignored")
        .env("UFFDC_SUITE_BIN", &suite)
        .env("RUSTFLAGS", "-D warnings")
        .run()?;
    eprintln!("test: all passed");
    Ok(())
}
