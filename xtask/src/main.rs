//! `cargo xtask <task>`: the project's tasks, after rust-analyzer's xtask. This file parses the
//! command line; each task lives in its own module.

mod accel;
mod apt;
mod bench;
mod ci;
mod container;
mod deps;
mod diff;
mod explain;
mod export;
mod fleet;
mod gha;
mod images;
mod initramfs;
mod matrix;
mod pipeline;
mod progress;
mod qemu;
mod rehearse;
mod report;
mod runner;
mod suite_bin;
mod test;
mod tidy;
mod util;
mod workflow_run;

use anyhow::{bail, Context, Result};
use std::time::Duration;

const USAGE: &str = "\
cargo xtask matrix [--kernel ID]... [--kernel-image PATH[=ID]]... [--host] [--jobs N]
                   [--repeat N] [--accel auto|kvm|tcg] [--mirror URI] [--timeout SECS]
                   [--boot-timeout SECS] [--boot-attempts N] [--cpus N] [--memory MB] [--qemu PATH]
                   (--kernel-image PATH may be followed by --config FILE, its .config)
                   [--out DIR] [-- SUITE-ARGS...]
    Boot each kernel of images/kernels.toml (or each --kernel, or local bzImages) in QEMU with the
    suite as init, write matrix/results/<id>.toml and compile matrix/compat.toml and
    matrix/COMPATIBILITY.md. --host adds the host kernel.
cargo xtask images refresh [ID]... | fetch [ID]... | list   [--mirror URI]
    Re-resolve tracks to the newest point release and rewrite images/kernels.lock; fill the cache;
    show tracks, pins and cache state.
cargo xtask report [--matrix DIR] [--html DIR]
    Render matrix/COMPATIBILITY.md and a self-contained target/report/index.html from compat.toml.
cargo xtask diff OLD NEW
    List the cells that changed between two compat.toml files; exit status 0 when none did, 1 when
    any did, 2 when the comparison failed.
cargo xtask explain ID
    One behaviour: what it checks, its expectation with citation, what every kernel did.
cargo xtask export --kcidb FILE
    The matrix in KernelCI's KCIDB format (v5.3).
cargo xtask ci plan [--refresh] | ci compile ARTIFACT-DIR...
    The scheduled workflow's fan-out (the kernel list as JSON, after refreshing the pins) and
    fan-in (merge per-kernel results into matrix/, compile, render the report).
cargo xtask ci rehearse [--scenario NAME]... [--rev REV] [--kernel ID]...
                        [--pull-requests allowed|forbidden] [--keep]
    Run both workflows here as GitHub would, from a clean checkout of REV (default HEAD), in
    fresh Debian bookworm roots (debootstrap, namespaces, chroot); scenarios matrix-plan-fails,
    ci-push, matrix-scheduled (default: all). As root; the log is target/uffdc/rehearse/rehearsal.log.
cargo xtask bench [--kernel ID]... [--jobs N] [--boots N] [matrix options]
    Per kernel: fetch (cold and cached), bare boot, boot to init, suite, total; then the whole
    matrix of those kernels. --boots N also boots each kernel bare N times and counts the boots
    that failed before init. Prints a table and writes target/bench.toml.
cargo xtask test
    The test command: format, lints, unit tests, the suite on this kernel, real guest boots.";

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let sh = xshell::Shell::new()?;
    let root = util::project_root();
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("matrix") => matrix::run(&sh, &root, &matrix_options(&root, args)?),
        Some("images") => {
            let (command, mirror) = images_command(args)?;
            images::run(&sh, &root, command, mirror)
        }
        Some("bench") => {
            let mut args: Vec<String> = args.collect();
            let boots = match args.iter().position(|a| a == "--boots") {
                Some(i) => {
                    let v = args.get(i + 1).cloned().unwrap_or_default();
                    args.drain(i..(i + 2).min(args.len()));
                    match v.parse::<u32>() {
                        Ok(n) if (1..=10_000).contains(&n) => n,
                        _ => bail!("--boots takes a whole number from 1 to 10000, not {v:?}"),
                    }
                }
                None => 0,
            };
            bench::run(&sh, &root, &matrix_options(&root, args.into_iter())?, boots)
        }
        Some("report") => {
            let (mut matrix_dir, mut html_dir) = (root.join("matrix"), report::default_html_dir(&root));
            while let Some(arg) = args.next() {
                match arg.as_str() {
                    "--matrix" => matrix_dir = args.next().context("--matrix needs a directory")?.into(),
                    "--html" => html_dir = args.next().context("--html needs a directory")?.into(),
                    _ => bail!("unknown option {arg:?} for report\n{USAGE}"),
                }
            }
            report::run(&matrix_dir, &html_dir)
        }
        Some("diff") => {
            let (Some(old), Some(new), None) = (args.next(), args.next(), args.next()) else {
                eprintln!("error: cargo xtask diff takes two matrix files: OLD NEW\n{USAGE}");
                std::process::exit(2);
            };
            std::process::exit(diff::main(old.as_ref(), new.as_ref()))
        }
        Some("explain") => {
            let (Some(id), None) = (args.next(), args.next()) else {
                bail!("cargo xtask explain takes one behaviour id\n{USAGE}");
            };
            explain::run(&root.join("matrix"), &id)
        }
        Some("export") => match (args.next().as_deref(), args.next(), args.next()) {
            (Some("--kcidb"), Some(file), None) => export::run(&root.join("matrix"), file.as_ref()),
            _ => bail!("cargo xtask export takes --kcidb FILE\n{USAGE}"),
        },
        Some("ci") => match args.next().as_deref() {
            Some("plan") => {
                let (mut refresh, mut mirror) = (false, None);
                while let Some(arg) = args.next() {
                    match arg.as_str() {
                        "--refresh" => refresh = true,
                        "--mirror" => mirror = Some(args.next().context("--mirror needs a value")?),
                        _ => bail!("unknown option {arg:?} for ci plan\n{USAGE}"),
                    }
                }
                println!("{}", ci::plan(&sh, &root, refresh, mirror)?);
                Ok(())
            }
            Some("compile") => {
                let artifacts: Vec<std::path::PathBuf> = args.map(Into::into).collect();
                ci::compile(&sh, &root, &root.join("matrix"), &artifacts, &report::default_html_dir(&root))
                    .map(drop)
            }
            Some("rehearse") => rehearse::run(&sh, &root, &rehearse::Options::parse(args)?),
            // The rehearsal's `docker run` stand-in (on its runners' PATH as `docker`).
            Some("rehearse-container") => std::process::exit(container::docker(&args.collect::<Vec<_>>())),
            _ => bail!("cargo xtask ci takes plan, compile or rehearse\n{USAGE}"),
        },
        Some("test") => {
            if let Some(extra) = args.next() {
                bail!("cargo xtask test takes no arguments (got {extra:?})\n{USAGE}");
            }
            test::run(&sh, &root)
        }
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}\n{USAGE}"),
    }
}

fn matrix_options(
    root: &std::path::Path,
    mut args: impl Iterator<Item = String>,
) -> Result<pipeline::Options> {
    let mut opts = pipeline::Options::new(root);
    let mut repeat = 1;
    let mut timeout = None;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value =
            || inline.clone().or_else(|| args.next()).with_context(|| format!("{flag} needs a value"));
        // A whole number in `lo..=hi`: anything else is refused with the range.
        let number = |v: String, lo: u64, hi: u64| -> Result<u64> {
            match v.parse::<u64>() {
                Ok(n) if (lo..=hi).contains(&n) => Ok(n),
                _ => bail!("{flag} takes a whole number from {lo} to {hi}, not {v:?}"),
            }
        };
        match flag.as_str() {
            "--kernel" => opts.kernels.push(value()?),
            "--kernel-image" => {
                let v = value()?;
                let (path, id) = match v.split_once('=') {
                    Some((p, id)) => (p.to_string(), Some(id.to_string())),
                    None => (v, None),
                };
                opts.images.push((std::path::PathBuf::from(path), id, None));
            }
            "--config" => match opts.images.last_mut() {
                Some((_, _, config)) => *config = Some(std::path::PathBuf::from(value()?)),
                None => bail!(
                    "--config FILE names the configuration of the --kernel-image before it: give that first"
                ),
            },
            "--jobs" => opts.jobs = number(value()?, 1, 64)? as usize,
            "--repeat" => repeat = number(value()?, 1, 1000)?,
            "--host" => opts.host = true,
            "--accel" => opts.accel = value()?.parse().map_err(anyhow::Error::msg)?,
            "--mirror" => opts.mirror = Some(value()?),
            "--timeout" => timeout = Some(Duration::from_secs(number(value()?, 10, 86_400)?)),
            "--boot-timeout" => opts.run.boot_timeout = Duration::from_secs(number(value()?, 1, 3600)?),
            "--boot-attempts" => opts.run.boot_attempts = number(value()?, 1, 10)? as u32,
            "--cpus" => opts.run.cpus = number(value()?, 1, 64)? as u32,
            "--qemu" => opts.run.qemu = std::path::PathBuf::from(value()?),
            "--memory" => opts.run.mem_mb = number(value()?, 256, 65_536)? as u32,
            "--out" => opts.out = std::path::PathBuf::from(value()?),
            "--" => opts.run.suite_args.extend(args.by_ref()),
            _ => bail!("unknown option {arg:?} for matrix\n{USAGE}"),
        }
    }
    if repeat > 1 {
        opts.run.suite_args.push(format!("--repeat={repeat}"));
    }
    // Each repeat of the suite takes its time: the default hard limit grows with them.
    opts.run.timeout = timeout.unwrap_or(opts.run.timeout * repeat.min(20) as u32);
    Ok(opts)
}

fn images_command(mut args: impl Iterator<Item = String>) -> Result<(images::Command, Option<String>)> {
    let verb = args.next();
    let (mut ids, mut mirror) = (Vec::new(), None);
    while let Some(arg) = args.next() {
        match arg.split_once('=') {
            Some(("--mirror", v)) => mirror = Some(v.to_string()),
            _ if arg == "--mirror" => mirror = Some(args.next().context("--mirror needs a value")?),
            _ if arg.starts_with('-') => bail!("unknown option {arg:?} for images\n{USAGE}"),
            _ => ids.push(arg),
        }
    }
    let command = match verb.as_deref() {
        Some("refresh") => images::Command::Refresh(ids),
        Some("fetch") => images::Command::Fetch(ids),
        Some("list") if ids.is_empty() => images::Command::List,
        _ => bail!("cargo xtask images takes refresh, fetch or list\n{USAGE}"),
    };
    Ok((command, mirror))
}
