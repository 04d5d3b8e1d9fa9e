//! `leman cleanup`: removes the checkpoints beside a table that no job can
//! reuse, and reports objects and bytes removed and kept.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use leman_engine::{CleanupOptions, Error, Result};

use crate::builtins;
use crate::table::Table;

#[derive(Debug, Args)]
pub(crate) struct CleanupArgs {
    /// The table: a Lance dataset directory or an s3:// URI.
    #[arg(long)]
    table: String,
    #[command(flatten)]
    storage: super::storage::StorageArgs,
    /// Checkpoints a re-run could still resume from are removed once older
    /// than this: a number with s, m, h or d (default 7d).
    #[arg(long, value_name = "AGE", default_value = "7d", value_parser = parse_age)]
    older_than: Duration,
    /// Report what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: CleanupArgs) -> Result<ExitCode> {
    let table = Table::open_with(&args.table, args.storage.options(), builtins::registry()).await?;
    let report = table.cleanup(&CleanupOptions { dry_run: args.dry_run, older_than: args.older_than }).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report).map_err(|e| Error::Io(e.into()))?);
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if report.dry_run { "would remove" } else { "removed" };
    println!(
        "{verb} {} of {} checkpoint objects ({} of {} bytes) of {}; kept {} ({} bytes)",
        report.removed.objects,
        report.examined.objects,
        report.removed.bytes,
        report.examined.bytes,
        table.uri(),
        report.kept.objects,
        report.kept.bytes,
    );
    for (reason, tally) in &report.by_reason {
        println!("  {reason}: {} objects, {} bytes", tally.objects, tally.bytes);
    }
    println!(
        "{verb} {} of {} fills (which UDF wrote each data file) of data files no fragment reads",
        report.fills_removed.objects, report.fills_examined.objects
    );
    if report.stale_cancel_requests > 0 {
        println!("{verb} {} requests to cancel jobs that no longer run", report.stale_cancel_requests);
    }
    Ok(ExitCode::SUCCESS)
}

/// An age: a whole number followed by `s`, `m`, `h` or `d`.
fn parse_age(arg: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("{arg:?} is not an age such as 90s, 30m, 12h or 7d");
    let unit = arg.chars().last().ok_or_else(bad)?;
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    let count: u64 = arg[..arg.len() - 1].parse().map_err(|_| bad())?;
    count.checked_mul(seconds).map(Duration::from_secs).ok_or_else(bad)
}
