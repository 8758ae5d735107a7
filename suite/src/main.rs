//! uffd-conformance suite. See ARCHITECTURE.md for the map; `suite --help` for usage.

mod kit;
mod probes;
mod run;

use run::{catalogue, cli, guest, harness, isolate};
use std::process::ExitCode;

fn main() -> ExitCode {
    if std::process::id() == 1 {
        guest::main();
    }
    let cli = match cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("suite: {e}");
            return ExitCode::from(2);
        }
    };
    match &cli.mode {
        cli::Mode::Probe(id) => isolate::child_main(id, &cli),
        cli::Mode::Zygote(fd) => isolate::zygote_main(*fd),
        cli::Mode::Catalogue => {
            print!("{}", toml::to_string(&catalogue::to_matrix()).expect("the catalogue serialises"));
            ExitCode::SUCCESS
        }
        cli::Mode::Run => harness::host(cli),
    }
}
