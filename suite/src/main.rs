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
    // CRIU's action script, which the CRIU probes name (`probes::clients_criu::hook`).
    if let Some(code) = probes::clients_criu::hook::main() {
        return code;
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

#[cfg(test)]
mod tests {
    /// The layout's direction (ARCHITECTURE.md): `kit/` stands on neither `probes/` nor `run/`,
    /// and `probes/` not on `run/`.
    #[test]
    fn the_kit_and_the_probes_do_not_import_what_stands_on_them() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for (dir, banned) in [("kit", &["crate::run", "crate::probes"][..]), ("probes", &["crate::run"][..])]
        {
            let mut files = vec![src.join(dir)];
            while let Some(path) = files.pop() {
                if path.is_dir() {
                    files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for b in banned {
                    assert!(!text.contains(b), "{} uses {b}", path.display());
                }
            }
        }
    }
}
