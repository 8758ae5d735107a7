//! `cargo xtask <task>`: the project's tasks, after rust-analyzer's xtask. The command line is
//! declared in `flags.rs`; this file turns it into each task's options and dispatches; each task
//! lives in its own module.

mod accel;
mod apt;
mod bench;
mod buildroot;
mod builds;
mod check;
mod ci;
mod debs;
mod diff;
mod explain;
mod export;
mod flags;
mod fleet;
mod golang;
mod images;
mod initramfs;
mod matrix;
mod packages;
mod pipeline;
mod progress;
mod qemu;
mod rehearse;
mod report;
mod runner;
mod selftests;
mod suite_bin;
mod test;
mod tidy;
mod util;

use anyhow::{bail, Result};
use std::time::Duration;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        // `diff` keeps 1 for "cells changed", `check` for "violated": their errors, usage errors
        // included, are 2.
        let two = std::env::args().nth(1).is_some_and(|a| a == "diff" || a == "check");
        std::process::exit(if two { 2 } else { 1 });
    }
}

fn run() -> Result<()> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.is_empty() || args[0] == "help" || args[0] == "-h" {
        println!("{}", flags::help());
        return Ok(());
    }
    let dashes = args.iter().any(|a| a == "--");
    let flags = match flags::parse(args) {
        Ok(f) => f,
        Err(e) if e.is_help() => {
            println!("{e}");
            return Ok(());
        }
        // One line: the parser's message and how to see the options.
        Err(e) => bail!("{} (see `cargo xtask help`)", e.to_string().lines().next().unwrap_or("")),
    };
    let sh = xshell::Shell::new()?;
    let root = util::project_root();
    match flags.subcommand {
        flags::XtaskCmd::Matrix(m) => {
            if !m.suite_args.is_empty() && !dashes {
                bail!(
                    "unexpected argument {:?} for matrix: kernels are --kernel ID; suite arguments go after `--`",
                    m.suite_args[0]
                );
            }
            matrix::run(&sh, &root, &matrix_options(&root, m)?)
        }
        flags::XtaskCmd::Images(i) => {
            let command = match i.verb.as_str() {
                "refresh" => images::Command::Refresh(i.ids),
                "fetch" => images::Command::Fetch(i.ids),
                "build" => images::Command::Build(i.ids),
                "list" if i.ids.is_empty() => images::Command::List,
                other => {
                    bail!("cargo xtask images takes refresh, fetch, build or list (and list no ids), not {other:?}")
                }
            };
            images::run(&sh, &root, command, i.mirror)
        }
        flags::XtaskCmd::Bench(b) => {
            let boots = b.boots.map(|n| in_range("--boots", n, 1, 10_000)).transpose()?.unwrap_or(0);
            let mut opts = pipeline::Options::new(&root);
            opts.kernels = b.kernel;
            opts.host = b.host;
            // The whole-matrix run is what `cargo xtask matrix` does: the selftests too.
            opts.selftests = !b.no_selftests;
            opts.mirror = b.mirror;
            if let Some(n) = b.jobs {
                opts.jobs = in_range("--jobs", n, 1, 64)? as usize;
            }
            if let Some(q) = b.qemu {
                opts.run.qemu = q;
            }
            if let Some(a) = b.accel {
                opts.accel = a.parse().map_err(anyhow::Error::msg)?;
            }
            check_tcg_mt(&opts)?;
            bench::run(&sh, &root, &opts, boots as u32)
        }
        flags::XtaskCmd::Report(r) => report::run(
            &r.matrix.unwrap_or_else(|| root.join("matrix")),
            &r.html.unwrap_or_else(|| report::default_html_dir(&root)),
        ),
        flags::XtaskCmd::Check(c) => std::process::exit(check::main(
            &sh,
            &root,
            &check::Options {
                profiles: c.profiles,
                host: c.host,
                kernels: c.kernel,
                matrix: c.matrix,
                suite: None,
            },
        )),
        flags::XtaskCmd::Diff(d) => std::process::exit(diff::main(&d.old, &d.new)),
        flags::XtaskCmd::Explain(e) => explain::run(&root.join("matrix"), &e.id),
        flags::XtaskCmd::Export(e) => export::run(&root.join("matrix"), &e.kcidb),
        flags::XtaskCmd::Ci(c) => match c.subcommand {
            flags::CiCmd::Plan(p) if p.builds => {
                if p.refresh {
                    bail!("ci plan --builds plans from the pins as they are: refresh first, with `ci plan --refresh`");
                }
                println!("{}", ci::plan_builds(&root)?);
                Ok(())
            }
            flags::CiCmd::Plan(p) => {
                println!("{}", ci::plan(&sh, &root, p.refresh, p.mirror)?);
                Ok(())
            }
            flags::CiCmd::Compile(c) => {
                ci::compile(&sh, &root, &root.join("matrix"), &c.artifacts, &report::default_html_dir(&root))
                    .map(drop)
            }
            flags::CiCmd::Rehearse(r) => rehearse::run(&sh, &root, &rehearse::Options::new(r)?),
        },
        flags::XtaskCmd::Test(_) => test::run(&sh, &root),
    }
}

/// `n` when it lies in `lo..=hi`, else a one-line error naming the flag and the range.
fn in_range(flag: &str, n: u64, lo: u64, hi: u64) -> Result<u64> {
    if (lo..=hi).contains(&n) {
        Ok(n)
    } else {
        bail!("{flag} takes a whole number from {lo} to {hi}, not {n}")
    }
}

/// `--accel tcg-mt` only with a QEMU measured to run it safely.
fn check_tcg_mt(opts: &pipeline::Options) -> Result<()> {
    if opts.accel == accel::Choice::TcgMulti {
        let version = qemu::version(&opts.run.qemu);
        if !qemu::multi_threaded_tcg_is_safe(&version) {
            bail!(
                "--accel tcg-mt needs QEMU 10 or later (QEMU 7.2 with a host thread per guest CPU kills guests early in boot on 'Oops: int3'), and {} is {}: use --accel tcg, or a newer QEMU with --qemu",
                opts.run.qemu.display(),
                if version.is_empty() { "not a QEMU that answers --version".to_string() } else { version }
            );
        }
    }
    Ok(())
}

fn matrix_options(root: &std::path::Path, m: flags::Matrix) -> Result<pipeline::Options> {
    let mut opts = pipeline::Options::new(root);
    opts.selftests = !m.no_selftests;
    opts.kernels = m.kernel;
    for image in m.kernel_image {
        let (rest, config) = match image.split_once(",config=") {
            Some((r, c)) => (r.to_string(), Some(std::path::PathBuf::from(c))),
            None => (image, None),
        };
        let (path, id) = match rest.split_once('=') {
            Some((p, id)) => (p.to_string(), Some(id.to_string())),
            None => (rest, None),
        };
        opts.images.push((std::path::PathBuf::from(path), id, config));
    }
    opts.host = m.host;
    if let Some(n) = m.jobs {
        opts.jobs = in_range("--jobs", n, 1, 64)? as usize;
    }
    let repeat = m.repeat.map(|n| in_range("--repeat", n, 1, 1000)).transpose()?.unwrap_or(1);
    if let Some(a) = m.accel {
        opts.accel = a.parse().map_err(anyhow::Error::msg)?;
    }
    opts.mirror = m.mirror;
    if let Some(n) = m.boot_timeout {
        opts.run.boot_timeout = Duration::from_secs(in_range("--boot-timeout", n, 1, 3600)?);
    }
    if let Some(n) = m.boot_attempts {
        opts.run.boot_attempts = in_range("--boot-attempts", n, 1, 10)? as u32;
    }
    if let Some(n) = m.cpus {
        opts.run.cpus = in_range("--cpus", n, 1, 64)? as u32;
    }
    if let Some(n) = m.memory {
        opts.run.mem_mb = in_range("--memory", n, 256, 65_536)? as u32;
    }
    if let Some(q) = m.qemu {
        opts.run.qemu = q;
    }
    if let Some(o) = m.out {
        opts.out = o;
    }
    check_tcg_mt(&opts)?;
    opts.run.suite_args.extend(m.suite_args.iter().map(|a| a.to_string_lossy().into_owned()));
    if repeat > 1 {
        opts.run.suite_args.push(format!("--repeat={repeat}"));
    }
    // Each repeat of the suite takes its time: the default hard limit grows with them.
    opts.run.timeout = match m.timeout {
        Some(n) => Duration::from_secs(in_range("--timeout", n, 10, 86_400)?),
        None => opts.run.timeout * repeat.min(20) as u32,
    };
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(args: &[&str]) -> Result<pipeline::Options> {
        let args = std::iter::once("matrix").chain(args.iter().copied()).map(Into::into).collect();
        match flags::parse(args).map_err(|e| anyhow::anyhow!("{e}"))?.subcommand {
            flags::XtaskCmd::Matrix(m) => matrix_options(&util::project_root(), m),
            _ => unreachable!(),
        }
    }

    #[test]
    fn matrix_flags_are_read_and_their_ranges_checked() {
        let o =
            matrix(&["--kernel", "a", "--kernel=b", "--jobs", "3", "--repeat=10", "--", "--window-ms", "5"])
                .unwrap();
        assert_eq!(o.kernels, ["a", "b"]);
        assert_eq!(o.jobs, 3);
        assert_eq!(o.run.suite_args, ["--window-ms", "5", "--repeat=10"]);
        assert_eq!(o.run.timeout, Duration::from_secs(3000));
        let o = matrix(&["--kernel-image", "/k/bzImage=mine,config=/k/.config"]).unwrap();
        assert_eq!(o.images[0].1.as_deref(), Some("mine"));
        assert_eq!(o.images[0].2.as_deref(), Some(std::path::Path::new("/k/.config")));
        for (flag, value) in
            [("--jobs", "0"), ("--cpus", "0"), ("--memory", "64"), ("--repeat", "0"), ("--timeout", "1")]
        {
            let err = matrix(&[flag, value]).unwrap_err().to_string();
            assert!(
                err.contains(&format!("{flag} takes a whole number from")) && !err.contains('\n'),
                "{err}"
            );
        }
        assert!(matrix(&["--jobs", "many"]).is_err());
        assert!(matrix(&["--accel", "fast"]).unwrap_err().to_string().contains("auto, kvm, tcg or tcg-mt"));
    }

    /// `--accel tcg-mt` is refused, in one line, with a QEMU before 10 or one that does not answer.
    #[test]
    fn tcg_mt_needs_qemu_10() {
        let dir = util::project_root().join("target/uffdc/tests/tcg-mt");
        std::fs::create_dir_all(&dir).unwrap();
        let qemu = |name: &str, version: &str| {
            let path = dir.join(name);
            std::fs::write(&path, format!("#!/bin/sh\necho 'QEMU emulator version {version}'\n")).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            path.display().to_string()
        };
        let (old, new) = (qemu("qemu-7.2", "7.2.22 (Debian)"), qemu("qemu-10", "10.0.2 (Debian)"));
        let o = matrix(&["--accel", "tcg-mt", "--qemu", &new]).unwrap();
        assert_eq!(o.accel, accel::Choice::TcgMulti);
        for q in [old.as_str(), "/nonexistent/qemu"] {
            let err = matrix(&["--accel", "tcg-mt", "--qemu", q]).unwrap_err().to_string();
            assert!(err.starts_with("--accel tcg-mt needs QEMU 10 or later") && !err.contains('\n'), "{err}");
        }
        assert!(matrix(&["--accel", "tcg", "--qemu", &old]).is_ok());
    }
}
