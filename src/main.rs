//! The `leman` command: parses arguments and hands them to the library.

use clap::Parser;

/// jemalloc, with one arena (`.cargo/config.toml`): under glibc's malloc the
/// resident set of a 100M-row backfill grew to 1.55x that of a 2M-row one,
/// though the heap itself stays near 30 MB; what grew was freed memory kept
/// in per-thread arenas. Only the binary picks it: a service that links the
/// library keeps its own allocator.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
