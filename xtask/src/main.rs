//! `cargo xtask <task>`: the project's tasks, after rust-analyzer's xtask. The command line is
//! declared in `flags.rs`; this file parses it and dispatches to the task (`tasks/`), which turns
//! its flags into its options.

mod boot;
mod flags;
mod inputs;
mod publish;
mod rehearse;
mod tasks;
mod tidy;
mod util;

use anyhow::{bail, Result};

fn main() {
    // A closed pipe (`cargo xtask diff ... | head`) ends the process as it ends any Unix tool, with
    // SIGPIPE's status and nothing printed, instead of a panic on the failed write. Children xtask
    // starts get the default disposition anyway, and xtask writes to no child's stdin.
    // SAFETY: setting a signal's disposition before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
            let mirror = m.mirror.clone();
            tasks::matrix::run(&sh, &root, &tasks::matrix::options(&root, m, dashes)?, mirror)
        }
        flags::XtaskCmd::Images(i) => tasks::images::run(
            &sh,
            &root,
            tasks::images::Command::parse(&i.verb, i.ids)?,
            i.mirror,
            !i.no_binary_cache,
        ),
        flags::XtaskCmd::Bench(b) if b.cold => {
            tasks::bench::cold::run(&root, &tasks::bench::cold::Options::new(b)?)
        }
        flags::XtaskCmd::Bench(b) => {
            let mirror = b.mirror.clone();
            let (opts, counts) = tasks::bench::options(&root, b)?;
            tasks::bench::run(&sh, &root, &opts, counts, mirror)
        }
        flags::XtaskCmd::Report(r) => tasks::report::run(
            &r.matrix.unwrap_or_else(|| root.join("matrix")),
            &r.html.unwrap_or_else(|| publish::default_html_dir(&root)),
        ),
        flags::XtaskCmd::Check(c) => std::process::exit(tasks::check::main(&sh, &root, &c.into())),
        flags::XtaskCmd::Diff(d) => std::process::exit(tasks::diff::main(&d.old, &d.new)),
        flags::XtaskCmd::Explain(e) => tasks::explain::run(&root.join("matrix"), &e.id),
        flags::XtaskCmd::Export(e) => tasks::export::run(&root.join("matrix"), &e.kcidb),
        flags::XtaskCmd::Ci(c) => match c.subcommand {
            flags::CiCmd::Plan(p) => tasks::ci::run_plan(&sh, &root, p),
            flags::CiCmd::Compile(c) => tasks::ci::run_compile(&sh, &root, c),
            flags::CiCmd::Binaries(b) => tasks::ci::run_binaries(&root, b),
            flags::CiCmd::Rehearse(r) => rehearse::run(&sh, &root, &rehearse::Options::new(r)?),
        },
        flags::XtaskCmd::Test(_) => tasks::test::run(&sh, &root),
    }
}
