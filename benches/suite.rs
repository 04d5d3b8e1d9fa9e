//! The benchmark suite under `cargo bench`: the same figures as
//! `leman bench`, on tables in a temporary directory.
//!
//! `cargo bench --bench suite` runs it in full; `-- --quick` runs it on
//! small tables (a check that it works; its figures mean little).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let scratch = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("error: no temporary directory: {error}");
            return ExitCode::FAILURE;
        }
    };
    let options = leman::bench::BenchOptions {
        dir: scratch.path().to_path_buf(),
        exe: env!("CARGO_BIN_EXE_leman").into(),
        quick,
        large: false,
        only: Vec::new(),
    };
    match leman::bench::run(&options, |figure| eprintln!("  measured {}: {}", figure.what, figure.measured)).await {
        Ok(figures) => {
            print!("{}", leman::bench::render(&figures));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
