//! The `leman` command: argument parsing only; the work is in the library.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "leman", version, about = "Compute new columns of Lance tables with user functions")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a sample table, add three UDF columns and backfill them.
    Demo {
        /// Database directory.
        #[arg(long, default_value = "./leman-demo")]
        dir: String,
        /// Rows of the sample table.
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { dir, rows } => {
            let options = leman::demo::DemoOptions { dir, rows, ..Default::default() };
            let started = std::time::Instant::now();
            leman::demo::run(&options, |line| println!("{line}")).await.map(|summaries| {
                let rows: u64 = summaries.iter().map(|(_, s)| s.rows_computed).sum();
                let seconds = started.elapsed().as_secs_f64();
                println!("demo done: {rows} values computed in {seconds:.2} s ({:.0} values/s)", rows as f64 / seconds.max(f64::EPSILON));
            })
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
