//! `leman promote` and `leman discard`: commit what staged backfills
//! (`backfill --stage`) wrote, several columns in one version, or remove it.

use std::process::ExitCode;

use clap::Args;

use leman_engine::Result;

use crate::builtins;
use crate::table::Table;

#[derive(Debug, Args)]
pub(crate) struct PromoteArgs {
    /// Staged jobs, as `leman jobs` lists them: one per column, committed
    /// together in one transaction.
    #[arg(required = true)]
    jobs: Vec<String>,
    /// The table: a Lance dataset directory or an s3:// URI.
    #[arg(long)]
    table: String,
    #[command(flatten)]
    storage: super::storage::StorageArgs,
    /// Where a staged fragment changed since staging (compacted, updated,
    /// deleted), stage its column again on the newest version (reusing
    /// what still holds) and promote that, instead of refusing.
    #[arg(long)]
    recompute: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DiscardArgs {
    /// A staged job, as `leman jobs` lists it.
    job: String,
    /// The table: a Lance dataset directory or an s3:// URI.
    #[arg(long)]
    table: String,
    #[command(flatten)]
    storage: super::storage::StorageArgs,
}

pub(crate) async fn promote(args: PromoteArgs) -> Result<ExitCode> {
    let table = Table::open_with(&args.table, args.storage.options(), builtins::registry()).await?;
    let promoted = table.promote(&args.jobs, args.recompute).await?;
    println!(
        "promoted job(s) {}: columns {} in {} fragments, now version {} of {}",
        promoted.jobs.join(", "),
        promoted.columns.join(", "),
        promoted.fragments,
        promoted.version,
        table.uri()
    );
    if !promoted.left_out.is_empty() {
        println!(
            "fragments {:?} changed while promoting and were left out; a backfill of the columns computes them",
            promoted.left_out
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn discard(args: DiscardArgs) -> Result<ExitCode> {
    let table = Table::open_with(&args.table, args.storage.options(), builtins::registry()).await?;
    let bytes = table.discard(&args.job).await?;
    println!("discarded job {}: removed its staged files ({bytes} bytes) from {}", args.job, table.uri());
    Ok(ExitCode::SUCCESS)
}
