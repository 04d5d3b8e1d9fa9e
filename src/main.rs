//! The `leman` command: parses arguments and hands them to the library.

use clap::Parser;

/// Logging when `RUST_LOG` is not set: warnings, but not lance's throttle
/// backing off from a store that fails, since the error that follows says
/// what failed and what to set.
const DEFAULT_LOG: &str = "warn,lance::object_store::throttle=error";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| DEFAULT_LOG.into()))
        .with_writer(std::io::stderr)
        .init();
    leman::cli::run(leman::cli::Cli::parse()).await
}
