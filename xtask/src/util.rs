//! Plumbing shared by the tasks: the project root, file locks, atomic writes, signal names and
//! displayed paths. (Supervising a guest or suite process is `runner.rs`'s.)

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// The machine's cores (what one build uses outside a run).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What a build says while another holds the machine's build lock (one build at a time).
pub const BUILD_WAIT: &str = "waiting: another build (one at a time)";

/// An exclusive lock on a file, held until dropped (flock(2): between processes and threads).
pub fn lock(path: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    lock_or_wait(path, || {})
}

/// [`lock`], calling `waiting` first when someone else holds it (a display says what waits on what).
pub fn lock_or_wait(path: &Path, waiting: impl FnOnce()) -> Result<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(held) => return Ok(held),
        Err((file, nix::errno::Errno::EWOULDBLOCK)) => file,
        Err((_, e)) => anyhow::bail!("cannot lock {}: {e}", path.display()),
    };
    waiting();
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("cannot lock {}: {e}", path.display()))
}

/// Writes a file so that no reader ever sees it half-written.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// `Signal N` spelled as its name.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string())
}

/// The small matrix the report, diff, explain and export tests read (`xtask/testdata/compat.toml`:
/// every verdict, a documented mismatch, a flaky cell), not the committed one, which every
/// scheduled run rewrites.
#[cfg(test)]
pub fn fixture() -> model::Compat {
    model::data::load(&project_root().join("xtask/testdata/compat.toml")).expect("the test fixture loads")
}

/// A path as shown in files and messages: relative to the project root when inside it.
pub fn display_path(path: &Path) -> String {
    let root = project_root();
    path.strip_prefix(&root).unwrap_or(path).display().to_string()
}

/// The sha256 of a file, in hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

/// The first 16 hex digits of a sha256.
pub fn short_hash(data: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(data)[..8])
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
