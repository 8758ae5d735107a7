//! `cargo xtask bench --cold`: how long a new user waits. A fresh clone of HEAD (the committed
//! state) in `target/uffdc/bench/cold/`, with an empty per-user cache (`UFFDC_CACHE_DIR`) and its
//! own target dir (`CARGO_TARGET_DIR` inside the clone), runs the README's `cargo xtask matrix` as a
//! new user would. The binary cache a clone of the GitHub repository gets from Pages is stood in for
//! by this machine's built kernels and selftests, published with `cargo xtask ci binaries` and
//! served on 127.0.0.1 (`--no-binary-cache`: none, and every build compiles). Every figure is the
//! time, from the command's start, at which a line the run printed was read: cargo's `Running`
//! (xtask compiled), the preparation's lines, the progress display's plain line per change of a
//! column's stage (`done`, `failed`), and the run's summary (its own time to the first cell). Writes
//! the `cold` section of `target/bench.toml` and keeps the run's output, each line stamped, in
//! `target/uffdc/bench/cold.log`; the clone and its cache are removed at the end, whatever happened.

use super::verdict;
use crate::flags::in_range;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Issue 25's targets for a cold `cargo xtask matrix` from a fresh clone on two cores, minutes:
/// the first cell, every x86-64 Debian column, the whole matrix.
const FIRST_CELL_MIN: f64 = 12.0;
const DEBIAN_MIN: f64 = 15.0;
const WHOLE_MIN: f64 = 25.0;

/// Free space the scratch folder's filesystem must have before the clone is made, GB (the clone's
/// target dir and its cache took about 5 GB).
const FREE_GB: f64 = 10.0;

/// How long the binary cache's server has to say where it listens.
const SERVER_WINDOW: Duration = Duration::from_secs(30);

/// How often the load average is read while the run goes.
const LOAD_EVERY: Duration = Duration::from_secs(30);

/// What `--cold` passes on to the clone's `cargo xtask matrix`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub kernels: Vec<String>,
    pub jobs: Option<u64>,
    pub no_selftests: bool,
    pub binary_cache: bool,
    pub mirror: Option<String>,
    pub accel: Option<String>,
}

impl Options {
    pub fn new(b: crate::flags::Bench) -> Result<Options> {
        if b.boots.is_some() || b.host || !b.qemu.is_empty() {
            bail!(
                "--cold times `cargo xtask matrix` from a fresh clone, which has no --boots, --host or --qemu: drop them, or drop --cold"
            );
        }
        if let Some(n) = b.jobs {
            in_range("--jobs", n, 1, 64)?;
        }
        Ok(Options {
            kernels: b.kernel,
            jobs: b.jobs,
            no_selftests: b.no_selftests,
            binary_cache: !b.no_binary_cache,
            mirror: b.mirror,
            accel: b.accel,
        })
    }

    /// The arguments of `cargo` the clone runs: the README's `cargo xtask matrix` and what was passed on.
    fn matrix_args(&self) -> Vec<String> {
        let mut args = vec!["xtask".to_string(), "matrix".to_string()];
        for k in &self.kernels {
            args.extend(["--kernel".to_string(), k.clone()]);
        }
        if let Some(n) = self.jobs {
            args.extend(["--jobs".to_string(), n.to_string()]);
        }
        if self.no_selftests {
            args.push("--no-selftests".into());
        }
        if !self.binary_cache {
            args.push("--no-binary-cache".into());
        }
        if let Some(m) = &self.mirror {
            args.extend(["--mirror".to_string(), m.clone()]);
        }
        if let Some(a) = &self.accel {
            args.extend(["--accel".to_string(), a.clone()]);
        }
        args
    }
}

/// The `cold` section of `target/bench.toml`. Times are seconds from the start of the clone's
/// `cargo xtask matrix`; NaN where the run never got there.
#[derive(Serialize, Debug)]
struct Cold {
    date: String,
    /// The commit measured (the clone's HEAD).
    rev: String,
    command: String,
    /// The binary cache the run was given: where, and what it held.
    binary_cache: String,
    cpus: usize,
    /// The 1-minute load average when the run started, and its mean and highest while it ran
    /// (read every [`LOAD_EVERY`]): the machine is shared, so the times are upper bounds.
    load_start: f64,
    load_mean: f64,
    load_max: f64,
    /// xtask compiled (cargo's `Running` line).
    xtask_s: f64,
    /// The suite's build for this machine started (xshell's echo of its `cargo build`), and
    /// ended (its binary's modification time in the clone: the build prints nothing at its end).
    suite_build_s: f64,
    suite_built_s: f64,
    /// The Go workload's build started: the suite is built and the Go toolchain fetched.
    go_build_s: f64,
    /// The run prepared (suite, Go workload, CRIU): its `go` line.
    prepared_s: f64,
    /// Another architecture's suite and Go workload made, by its first column (`suite   arm64:`).
    arm64_suite_s: f64,
    /// The first column fetching its kernel (or building it), the first boot, the first suite
    /// started (its start record), and the first cell (the run's own figure, from xtask's start).
    first_fetch_s: f64,
    first_boot_s: f64,
    first_running_s: f64,
    first_cell_s: f64,
    /// Every column of a group done or failed: the x86-64 Debian columns, the builds, arm64's.
    debian_x86_64_s: f64,
    builds_s: f64,
    arm64_s: f64,
    /// The command ended.
    whole_s: f64,
    /// Each column's end, and whether it failed.
    columns: BTreeMap<String, ColumnEnd>,
    /// The scratch folder's size at the end (the clone, its target dir and its cache), GB.
    scratch_gb: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
struct ColumnEnd {
    end_s: f64,
    failed: bool,
}

/// The columns of a run by group, as the figures name them.
#[derive(Debug, Default, PartialEq, Eq)]
struct Groups {
    debian_x86_64: Vec<String>,
    builds: Vec<String>,
    arm64: Vec<String>,
}

impl Groups {
    /// `asked` (every column of the fleet when empty), grouped.
    fn of(fleet: &crate::inputs::fleet::Fleet, asked: &[String]) -> Groups {
        let ids: Vec<String> = if asked.is_empty() {
            fleet.ids().iter().map(|i| i.to_string()).collect()
        } else {
            asked.to_vec()
        };
        let mut g = Groups::default();
        for id in ids {
            match fleet.arch(&id) {
                _ if fleet.builds.contains_key(id.as_str()) => g.builds.push(id),
                Some(model::arch::Arch::X86_64) => g.debian_x86_64.push(id),
                Some(model::arch::Arch::Arm64) => g.arm64.push(id),
                None => {}
            }
        }
        g
    }

    fn all(&self) -> BTreeSet<String> {
        self.debian_x86_64.iter().chain(&self.builds).chain(&self.arm64).cloned().collect()
    }
}

/// What the run's output said, and when (seconds from its start).
#[derive(Debug, Default)]
struct Timeline {
    xtask: Option<f64>,
    suite_build: Option<f64>,
    go_build: Option<f64>,
    prepared: Option<f64>,
    arm64_suite: Option<f64>,
    first_fetch: Option<f64>,
    first_boot: Option<f64>,
    first_running: Option<f64>,
    ends: BTreeMap<String, ColumnEnd>,
    /// The summary line's figures, from xtask's start: the first cell (none when no cell came)
    /// and the whole.
    summary: Option<(Option<f64>, f64)>,
    /// The run's last `error:` line.
    error: Option<String>,
}

impl Timeline {
    /// Takes one line the run printed at `t`; `columns` are the run's column ids.
    fn observe(&mut self, t: f64, line: &str, columns: &BTreeSet<String>) {
        let first = |slot: &mut Option<f64>| {
            slot.get_or_insert(t);
        };
        if line.trim_start().starts_with("Running `") {
            first(&mut self.xtask);
        } else if line.starts_with("$ cargo build") && line.contains("--package suite") {
            first(&mut self.suite_build);
        } else if let Some(go) = line.strip_prefix("go      ") {
            first(if go.starts_with("build ") { &mut self.go_build } else { &mut self.prepared });
        } else if line.starts_with("suite   arm64: ") {
            first(&mut self.arm64_suite);
        } else if line.starts_with("matrix  ") {
            self.summary = summary(line);
        } else if line.starts_with("error: ") {
            self.error = Some(line.to_string());
        } else {
            // The progress display's plain lines: the column's id, then its stage.
            let mut words = line.split_whitespace();
            let (Some(id), Some(stage)) = (words.next(), words.next()) else { return };
            if !columns.contains(id) {
                return;
            }
            match stage {
                "fetching" | "building" => first(&mut self.first_fetch),
                "booting" => first(&mut self.first_boot),
                "running" => first(&mut self.first_running),
                "done" | "failed" => {
                    self.ends.insert(id.to_string(), ColumnEnd { end_s: t, failed: stage == "failed" });
                }
                _ => {}
            }
        }
    }

    /// The first cell, from the command's start: the run's own figure (from xtask's start) after
    /// the time xtask took to compile.
    fn first_cell(&self) -> Option<f64> {
        Some(self.xtask? + self.summary?.0?)
    }

    /// When the last column of `group` ended; none when one did not (or the group is empty).
    fn all_ended(&self, group: &[String]) -> Option<f64> {
        if group.is_empty() {
            return None;
        }
        group.iter().map(|id| self.ends.get(id).map(|e| e.end_s)).try_fold(0.0, |m: f64, e| Some(m.max(e?)))
    }
}

/// `matrix  PATH (N behaviours x M kernels; first cell after 12.3s, all after 45.6s)`: the first
/// cell (`none` when no cell came) and the whole, in seconds.
fn summary(line: &str) -> Option<(Option<f64>, f64)> {
    let secs = |after: &str| -> Option<Option<f64>> {
        let rest = &line[line.find(after)? + after.len()..];
        let figure = &rest[..rest.find([',', ')']).unwrap_or(rest.len())];
        Some(figure.strip_suffix('s').and_then(|s| s.parse().ok()))
    };
    Some((secs("first cell after ")?, secs("all after ")??))
}

/// The variables of this process that a new user's shell does not have: cargo's and rustup's for
/// the running bench (`CARGO_*` but `CARGO_HOME`, `RUSTUP_TOOLCHAIN`), compiler wrappers and
/// flags, and the project's own (`UFFDC_*`, `XDG_CACHE_HOME`: the run's are set instead).
fn not_a_new_users(name: &str) -> bool {
    (name.starts_with("CARGO") && name != "CARGO_HOME")
        || name.starts_with("UFFDC_")
        || matches!(
            name,
            "RUSTUP_TOOLCHAIN"
                | "RUST_RECURSION_COUNT"
                | "RUSTC"
                | "RUSTC_WRAPPER"
                | "RUSTC_WORKSPACE_WRAPPER"
                | "RUSTFLAGS"
                | "RUSTDOCFLAGS"
                | "XDG_CACHE_HOME"
        )
}

/// A folder of this command's, removed when it is dropped (and before it is made, when an
/// interrupted run left it): the host is left as it was found, whatever happened.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(dir: PathBuf) -> Result<Scratch> {
        remove(&dir)?;
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot make {}", dir.display()))?;
        Ok(Scratch { dir })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = remove(&self.dir) {
            eprintln!("warning: {e:#}");
        }
    }
}

/// Removes `dir` and everything in it, never across a mount point (a chroot's leftover mount would
/// take the removal into the host's files): one inside it is an error naming it.
fn remove(dir: &Path) -> Result<()> {
    let Ok(real) = dir.canonicalize() else { return Ok(()) };
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if let Some(m) =
        mounts.lines().filter_map(|l| l.split(' ').nth(4)).find(|m| Path::new(m).starts_with(&real))
    {
        bail!(
            "{} was not removed: {m} is mounted inside it (unmount it, then remove the folder)",
            dir.display()
        );
    }
    std::fs::remove_dir_all(&real).with_context(|| format!("cannot remove {}", dir.display()))
}

/// The folder's size on disk, GB.
fn size_gb(dir: &Path) -> f64 {
    fn walk(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path()),
                _ => e.metadata().map_or(0, |m| std::os::unix::fs::MetadataExt::blocks(&m) * 512),
            })
            .sum()
    }
    walk(dir) as f64 / 1e9
}

/// A static file server on 127.0.0.1 (Python's `http.server`, on a port the kernel picks), stopped
/// when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(dir: &Path) -> Result<Server> {
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start `python3 -m http.server` to serve the binary cache (install python3, or pass --no-binary-cache)")?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = Server { child, url: String::new() };
        let line = rx.recv_timeout(SERVER_WINDOW).unwrap_or_default();
        match serving_port(&line) {
            Some(port) => server.url = format!("http://127.0.0.1:{port}/"),
            None => bail!(
                "`python3 -m http.server` did not say where it serves within {}s (it said {:?})",
                SERVER_WINDOW.as_secs(),
                line.trim()
            ),
        }
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `Serving HTTP on 127.0.0.1 port 34743 (http://127.0.0.1:34743/) ...`: the port.
fn serving_port(line: &str) -> Option<u16> {
    line.strip_prefix("Serving HTTP on 127.0.0.1 port ")?.split_whitespace().next()?.parse().ok()
}

/// The 1-minute load average.
fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|f| f.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).stderr(Stdio::inherit()).output()?;
    anyhow::ensure!(out.status.success(), "`git {}` failed ({})", args.join(" "), out.status);
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn run(root: &Path, o: &Options) -> Result<()> {
    let bench = root.join("target/uffdc/bench");
    std::fs::create_dir_all(&bench)?;
    let free = nix::sys::statvfs::statvfs(&bench)?;
    let free_gb = (free.blocks_available() as f64) * (free.fragment_size() as f64) / 1e9;
    if free_gb < FREE_GB {
        bail!(
            "--cold needs {FREE_GB} GB free under {} for its clone and cache, and {free_gb:.1} GB are",
            bench.display()
        );
    }
    let rev = git(root, &["rev-parse", "HEAD"])?;
    if !git(root, &["status", "--porcelain", "--untracked-files=no"])?.is_empty() {
        eprintln!("note: uncommitted changes are not measured: the clone is HEAD ({})", &rev[..12]);
    }
    let mut cold = Cold {
        date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        rev,
        command: format!("cargo {}", o.matrix_args().join(" ")),
        binary_cache: "none (--no-binary-cache): every build compiles".into(),
        cpus: crate::util::cores(),
        load_start: load(),
        load_mean: f64::NAN,
        load_max: f64::NAN,
        xtask_s: f64::NAN,
        suite_build_s: f64::NAN,
        suite_built_s: f64::NAN,
        go_build_s: f64::NAN,
        prepared_s: f64::NAN,
        arm64_suite_s: f64::NAN,
        first_fetch_s: f64::NAN,
        first_boot_s: f64::NAN,
        first_running_s: f64::NAN,
        first_cell_s: f64::NAN,
        debian_x86_64_s: f64::NAN,
        builds_s: f64::NAN,
        arm64_s: f64::NAN,
        whole_s: f64::NAN,
        columns: BTreeMap::new(),
        scratch_gb: f64::NAN,
        error: None,
    };
    let scratch = Scratch::new(bench.join("cold"))?;
    let result = measure(root, o, &scratch.dir, &bench.join("cold.log"), &mut cold);
    cold.scratch_gb = size_gb(&scratch.dir);
    drop(scratch);
    if let Err(e) = &result {
        cold.error = Some(format!("{e:#}"));
    }
    print(&cold);
    let table = toml::Table::try_from(&cold)?;
    super::save(&root.join("target/bench.toml"), Some(super::COLD), table)?;
    println!("wrote the cold section of target/bench.toml; the run's output: target/uffdc/bench/cold.log");
    result
}

/// The clone, the binary cache and the run, measured into `cold`; an error names what failed and
/// leaves what was measured in `cold`.
fn measure(root: &Path, o: &Options, scratch: &Path, log: &Path, cold: &mut Cold) -> Result<()> {
    let clone = scratch.join("clone");
    let status = Command::new("git").arg("clone").arg("--quiet").arg(root).arg(&clone).status()?;
    anyhow::ensure!(status.success(), "`git clone` of {} failed ({status})", root.display());
    git(&clone, &["checkout", "--quiet", "--detach", &cold.rev])?;
    let fleet = crate::inputs::fleet::Fleet::load(&clone)?;
    let groups = Groups::of(&fleet, &o.kernels);
    let server = match o.binary_cache {
        true => {
            let (server, entries) = serve_binaries(root, &scratch.join("binaries"))?;
            cold.binary_cache = format!(
                "{} ({entries} entries: this machine's built kernels and selftests, published with `cargo xtask ci binaries`, standing in for Pages')",
                server.url
            );
            Some(server)
        }
        false => None,
    };
    eprintln!(
        "cold: {} in a fresh clone of {} ({}), binary cache {}",
        cold.command,
        &cold.rev[..12],
        clone.display(),
        cold.binary_cache
    );
    let mut cmd = Command::new("cargo");
    cmd.args(o.matrix_args())
        .current_dir(&clone)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        if not_a_new_users(&name.to_string_lossy()) {
            cmd.env_remove(name);
        }
    }
    cmd.env("UFFDC_CACHE_DIR", scratch.join("cache")).env("CARGO_TARGET_DIR", clone.join("target"));
    cmd.env("UFFDC_BINARY_CACHE", server.as_ref().map_or("off", |s| s.url.as_str()));
    let started = std::time::SystemTime::now();
    let (timeline, whole, status) = follow(cmd, &groups.all(), log, cold)?;
    drop(server);
    let native = crate::boot::suite_bin::target(model::arch::Arch::native());
    let suite = clone.join("target").join(native).join("guest/suite");
    cold.suite_built_s = std::fs::metadata(suite)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(started).ok())
        .map_or(f64::NAN, |d| d.as_secs_f64());
    cold.whole_s = whole;
    let opt = |t: Option<f64>| t.unwrap_or(f64::NAN);
    cold.xtask_s = opt(timeline.xtask);
    cold.suite_build_s = opt(timeline.suite_build);
    cold.go_build_s = opt(timeline.go_build);
    cold.prepared_s = opt(timeline.prepared);
    cold.arm64_suite_s = opt(timeline.arm64_suite);
    cold.first_fetch_s = opt(timeline.first_fetch);
    cold.first_boot_s = opt(timeline.first_boot);
    cold.first_running_s = opt(timeline.first_running);
    cold.first_cell_s = opt(timeline.first_cell());
    cold.debian_x86_64_s = opt(timeline.all_ended(&groups.debian_x86_64));
    cold.builds_s = opt(timeline.all_ended(&groups.builds));
    cold.arm64_s = opt(timeline.all_ended(&groups.arm64));
    cold.columns = timeline.ends.clone();
    if !status.success() {
        bail!(
            "the clone's `cargo xtask matrix` ended with {status} after {:.1} min: {}",
            whole / 60.0,
            timeline.error.as_deref().unwrap_or("it printed no error line (see target/uffdc/bench/cold.log)")
        );
    }
    Ok(())
}

/// Publishes this machine's cache into `out` (`cargo xtask ci binaries --out`, run by this very
/// xtask) and serves it; returns the server and how many entries the index holds.
fn serve_binaries(root: &Path, out: &Path) -> Result<(Server, usize)> {
    let exe = std::env::current_exe()?;
    let published =
        Command::new(exe).args(["ci", "binaries", "--out"]).arg(out).current_dir(root).output()?;
    let said =
        String::from_utf8_lossy(&published.stdout).into_owned() + &String::from_utf8_lossy(&published.stderr);
    anyhow::ensure!(
        published.status.success(),
        "publishing this machine's binary cache failed: {}",
        said.lines().last().unwrap_or("")
    );
    for line in said.lines().filter(|l| l.starts_with("not published")) {
        eprintln!("cold: {line}");
    }
    let index = std::fs::read_to_string(out.join("index.toml"))
        .context("the published binary cache has no index.toml")?;
    let index: crate::inputs::bincache::Index = toml::from_str(&index)?;
    Ok((Server::start(out)?, index.artifacts.len()))
}

/// Runs `cmd`, each line of its output stamped with the time it was read (from its start), shown,
/// logged to `log` and read into a timeline; the load average read as it goes into `cold`.
/// Returns the timeline, the whole time and how it ended.
fn follow(
    mut cmd: Command,
    columns: &BTreeSet<String>,
    log: &Path,
    cold: &mut Cold,
) -> Result<(Timeline, f64, std::process::ExitStatus)> {
    let mut file = std::fs::File::create(log).with_context(|| format!("cannot write {}", log.display()))?;
    let start = Instant::now();
    let mut child = cmd.spawn().context("cannot start cargo (is it on PATH?)")?;
    let (tx, rx) = mpsc::channel::<(f64, String)>();
    for stream in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as _),
    ] {
        let (tx, stream) = (tx.clone(), stream.expect("piped"));
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut buf = Vec::new();
            while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                if tx.send((start.elapsed().as_secs_f64(), line)).is_err() {
                    break;
                }
                buf.clear();
            }
        });
    }
    drop(tx);
    let mut timeline = Timeline::default();
    let (mut loads, mut sampled) = (vec![cold.load_start], Instant::now());
    loop {
        match rx.recv_timeout(LOAD_EVERY) {
            Ok((t, line)) => {
                eprintln!("{:>6.1}m {line}", t / 60.0);
                // The log is for reading afterwards; a full disk does not stop the measurement.
                let _ = writeln!(file, "{t:>8.1} {line}");
                timeline.observe(t, &line, columns);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if sampled.elapsed() >= LOAD_EVERY {
            loads.push(load());
            sampled = Instant::now();
        }
    }
    let status = child.wait()?;
    let whole = start.elapsed().as_secs_f64();
    cold.load_mean = loads.iter().sum::<f64>() / loads.len() as f64;
    cold.load_max = loads.iter().copied().fold(f64::NAN, f64::max);
    Ok((timeline, whole, status))
}

fn print(c: &Cold) {
    let min = |s: f64| if s.is_nan() { "-".to_string() } else { format!("{:.1} min", s / 60.0) };
    println!(
        "cold `{}` from a fresh clone of {} ({} cpus)",
        c.command,
        &c.rev[..12.min(c.rev.len())],
        c.cpus
    );
    println!("  binary cache: {}", c.binary_cache);
    println!(
        "  load average {:.1} at the start, {:.1} mean, {:.1} highest: a shared machine, so these times are upper bounds",
        c.load_start, c.load_mean, c.load_max
    );
    let rows: [(&str, f64, Option<f64>); 14] = [
        ("xtask compiled", c.xtask_s, None),
        ("suite build started", c.suite_build_s, None),
        ("suite built (its binary written)", c.suite_built_s, None),
        ("Go workload build started (Go toolchain fetched)", c.go_build_s, None),
        ("prepared (suite, Go workload, CRIU)", c.prepared_s, None),
        ("arm64 suite and Go workload made", c.arm64_suite_s, None),
        ("first column fetching or building", c.first_fetch_s, None),
        ("first boot", c.first_boot_s, None),
        ("first suite started", c.first_running_s, None),
        ("first cell", c.first_cell_s, Some(FIRST_CELL_MIN)),
        ("x86-64 Debian columns finished", c.debian_x86_64_s, Some(DEBIAN_MIN)),
        ("builds finished", c.builds_s, None),
        ("arm64 columns finished", c.arm64_s, None),
        ("whole matrix", c.whole_s, Some(WHOLE_MIN)),
    ];
    for (what, s, target) in rows {
        let target =
            target.map_or(String::new(), |m| format!("  target <= {m} min: {}", verdict(s / 60.0, m)));
        println!("  {what:<52} {:>10}{target}", min(s));
    }
    for (id, e) in c.columns.iter().filter(|(_, e)| e.failed) {
        println!("  {id} failed after {}", min(e.end_s));
    }
    println!("  scratch used: {:.1} GB (removed)", c.scratch_gb);
    if let Some(e) = &c.error {
        println!("  the run did not complete: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench(args: &[&str]) -> Result<Options> {
        let mut argv: Vec<std::ffi::OsString> = vec!["bench".into()];
        argv.extend(args.iter().map(Into::into));
        match crate::flags::parse(argv).map_err(|e| anyhow::anyhow!("{e}"))?.subcommand {
            crate::flags::XtaskCmd::Bench(b) => Options::new(b),
            _ => unreachable!("a bench command line"),
        }
    }

    /// What --cold passes on becomes the clone's `cargo xtask matrix` command line; the warm
    /// bench's own flags are refused, naming them.
    #[test]
    fn the_cold_flags_become_the_matrix_command() {
        let o = bench(&[
            "--cold",
            "--kernel",
            "debian-6.1-cloud",
            "--kernel",
            "build-6.12",
            "--jobs=3",
            "--no-binary-cache",
        ])
        .unwrap();
        assert_eq!(
            o.matrix_args().join(" "),
            "xtask matrix --kernel debian-6.1-cloud --kernel build-6.12 --jobs 3 --no-binary-cache"
        );
        assert_eq!(bench(&["--cold"]).unwrap().matrix_args().join(" "), "xtask matrix");
        let o =
            bench(&["--cold", "--no-selftests", "--mirror", "http://m/debian", "--accel", "tcg"]).unwrap();
        assert_eq!(
            o.matrix_args().join(" "),
            "xtask matrix --no-selftests --mirror http://m/debian --accel tcg"
        );
        assert!(o.binary_cache);
        for refused in [&["--cold", "--boots", "3"][..], &["--cold", "--host"], &["--cold", "--qemu", "/q"]] {
            let e = bench(refused).unwrap_err().to_string();
            assert!(e.contains("--boots, --host or --qemu") && !e.contains('\n'), "{e}");
        }
        let e = bench(&["--cold", "--jobs", "0"]).unwrap_err().to_string();
        assert!(e.contains("--jobs takes a whole number from 1 to 64"), "{e}");
    }

    /// Lines as a cold run prints them (cargo, xshell's echo, the preparation, the progress
    /// display's plain lines, the summary), read into the figures.
    #[test]
    fn a_runs_output_gives_its_timeline() {
        let columns: BTreeSet<String> =
            ["debian-6.1-cloud", "debian-7.2-cloud", "build-6.12", "debian-6.1-cloud-arm64"]
                .map(String::from)
                .into();
        let lines = [
            (10.0, "   Compiling xtask v0.1.0 (/tmp/clone/xtask)"),
            (200.0, "     Running `target/debug/xtask matrix`"),
            (201.0, "$ cargo build --quiet --package suite --profile guest --target x86_64-unknown-linux-gnu"),
            (520.0, "go      build suite/go with go1.24.4 (~/.cache/uffd-conformance/go/1.24.4)"),
            (540.0, "go      go1.24.4 (target/uffdc/go/uffdc-go-abc)"),
            (541.0, "debian-6.1-cloud     fetching   0.0s"),
            (541.5, "build-6.12           building   0.0s binary cache: kernels/8232e067c9d6ca3b"),
            (560.0, "debian-6.1-cloud     booting    0.0s (pid 4242)"),
            (562.0, "debian-6.1-cloud     running 0/140    0.0s"),
            (563.0, "debian-6.1-cloud     boot failed before the suite started, booting again: silent"),
            (564.0, "someone-else         done     not a column of this run"),
            (600.0, "debian-6.1-cloud     done     140 cells (3 unexpected) in 38.2s; logs: target/uffdc/runs/debian-6.1-cloud"),
            (700.0, "$ cargo build --quiet --package suite --profile guest --target aarch64-unknown-linux-musl"),
            (710.0, "go      build suite/go with go1.24.4 (arm64)"),
            (720.0, "suite   arm64: target/aarch64-unknown-linux-musl/guest/suite (go target/uffdc/go/build/uffdc-go-arm64-abc)"),
            (900.0, "build-6.12           failed   its selftests could not be built: ... (--no-selftests)"),
            (950.0, "debian-7.2-cloud     done     140 cells in 40.0s"),
            (960.0, "error: 1 kernel(s) did not complete:"),
            (1000.0, "matrix  matrix/compat.toml (140 behaviours x 17 kernels; first cell after 362.5s, all after 800.0s)"),
        ];
        let mut t = Timeline::default();
        for (at, line) in lines {
            t.observe(at, line, &columns);
        }
        assert_eq!(
            (t.xtask, t.suite_build, t.go_build, t.prepared),
            (Some(200.0), Some(201.0), Some(520.0), Some(540.0))
        );
        assert_eq!((t.first_fetch, t.first_boot, t.first_running), (Some(541.0), Some(560.0), Some(562.0)));
        assert_eq!(t.arm64_suite, Some(720.0));
        assert_eq!(t.summary, Some((Some(362.5), 800.0)));
        assert_eq!(t.first_cell(), Some(562.5), "the run's own figure counts from xtask's start");
        assert_eq!(t.error.as_deref(), Some("error: 1 kernel(s) did not complete:"));
        assert_eq!(t.ends.len(), 3, "{:?}", t.ends);
        assert_eq!(t.ends["build-6.12"], ColumnEnd { end_s: 900.0, failed: true });
        assert!(!t.ends["debian-6.1-cloud"].failed);
        let g = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(t.all_ended(&g(&["debian-6.1-cloud", "debian-7.2-cloud"])), Some(950.0));
        assert_eq!(t.all_ended(&g(&["debian-6.1-cloud-arm64"])), None, "a column that never ended");
        assert_eq!(t.all_ended(&g(&["debian-6.1-cloud", "debian-6.1-cloud-arm64"])), None);
        assert_eq!(t.all_ended(&[]), None, "an empty group has no time");
    }

    /// A run with no cell says `none`; a line that is not the summary gives nothing.
    #[test]
    fn the_summary_line_is_read_as_the_run_prints_it() {
        let none =
            "matrix  matrix/compat.toml (140 behaviours x 1 kernels; first cell after none, all after 12.0s)";
        assert_eq!(summary(none), Some((None, 12.0)));
        assert_eq!(summary("matrix  something else"), None);
        let mut t = Timeline { summary: summary(none), ..Timeline::default() };
        assert_eq!(t.first_cell(), None, "no xtask line");
        t.xtask = Some(5.0);
        assert_eq!(t.first_cell(), None, "no cell came");
    }

    /// The fleet's columns in the figures' groups; `--kernel` narrows them.
    #[test]
    fn columns_are_grouped_by_architecture_and_origin() {
        let fleet = crate::inputs::fleet::Fleet::load(&crate::util::project_root()).unwrap();
        let g = Groups::of(&fleet, &[]);
        assert!(g.debian_x86_64.contains(&"debian-6.1-cloud".to_string()), "{g:?}");
        assert!(
            g.builds.contains(&"build-6.12".to_string())
                && !g.debian_x86_64.iter().any(|i| i.starts_with("build-"))
        );
        assert!(g.arm64.iter().all(|i| i.ends_with("-arm64")) && !g.arm64.is_empty(), "{g:?}");
        assert_eq!(g.all().len(), fleet.ids().len());
        let g = Groups::of(&fleet, &["debian-6.1-cloud-arm64".to_string()]);
        assert_eq!(g, Groups { arm64: vec!["debian-6.1-cloud-arm64".into()], ..Groups::default() });
    }

    /// The bench's own environment does not reach the clone's run; a user's does.
    #[test]
    fn the_clone_runs_in_a_new_users_environment() {
        for gone in [
            "CARGO",
            "CARGO_MANIFEST_DIR",
            "CARGO_TARGET_DIR",
            "RUSTUP_TOOLCHAIN",
            "RUSTC_WRAPPER",
            "UFFDC_BINARY_CACHE",
            "UFFDC_CACHE_DIR",
            "XDG_CACHE_HOME",
        ] {
            assert!(not_a_new_users(gone), "{gone}");
        }
        for kept in ["PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME", "https_proxy", "LANG"] {
            assert!(!not_a_new_users(kept), "{kept}");
        }
    }

    /// The scratch folder goes when dropped, and a leftover of an interrupted run goes before it
    /// is made; the server is stopped (its process reaped) when dropped.
    #[test]
    fn the_scratch_and_the_server_are_gone_afterwards() {
        let dir = crate::util::project_root().join("target/uffdc/test/cold-scratch");
        std::fs::create_dir_all(dir.join("left/over")).unwrap();
        std::fs::write(dir.join("left/over/file"), "x").unwrap();
        let scratch = Scratch::new(dir.clone()).unwrap();
        assert!(dir.is_dir() && !dir.join("left").exists(), "the leftover is removed first");
        std::fs::create_dir_all(dir.join("clone/target")).unwrap();
        std::fs::write(dir.join("clone/target/x"), vec![0u8; 8192]).unwrap();
        assert!(size_gb(&dir) > 0.0);
        drop(scratch);
        assert!(!dir.exists(), "the scratch folder is removed when dropped");

        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.toml"), "format = 1\n").unwrap();
        let server = Server::start(&dir).unwrap();
        let port = server.url.trim_end_matches('/').rsplit(':').next().unwrap().to_string();
        let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        write!(s, "GET /index.toml HTTP/1.0\r\n\r\n").unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.0 200") && answer.ends_with("format = 1\n"), "{answer}");
        let pid = server.child.id() as i32;
        drop(server);
        assert!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err(),
            "the server's process is gone (killed and reaped)"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            serving_port("Serving HTTP on 127.0.0.1 port 34743 (http://127.0.0.1:34743/) ..."),
            Some(34743)
        );
        assert_eq!(serving_port("OSError: [Errno 98] Address already in use"), None);
    }
}
