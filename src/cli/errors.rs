//! `leman errors`: the rows UDFs failed on, from the records beside the
//! table; `leman backfill --retry-errors JOB` recomputes those of one job.

use std::process::ExitCode;

use clap::Args;

use leman_engine::{Error, Result};

use crate::builtins;
use crate::cli::format::utc;
use crate::table::Table;

#[derive(Debug, Args)]
pub(crate) struct ErrorsArgs {
    /// The table: a Lance dataset directory or an s3:// URI.
    #[arg(long)]
    table: String,
    #[command(flatten)]
    storage: super::storage::StorageArgs,
    /// Only this job's.
    #[arg(long)]
    job: Option<String>,
    /// Print them as a JSON array on stdout.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: ErrorsArgs) -> Result<ExitCode> {
    let table = Table::open_with(&args.table, args.storage.options(), builtins::registry()).await?;
    let errors = table.errors(args.job.as_deref()).await?;
    if args.json {
        println!("{}", serde_json::to_string(&errors).map_err(|e| Error::Io(e.into()))?);
        return Ok(ExitCode::SUCCESS);
    }
    if errors.is_empty() {
        let whose = args.job.as_ref().map(|job| format!(" of job {job}")).unwrap_or_default();
        println!("no failed rows recorded{whose} on {}", table.uri());
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<12}  {:<20}  {:<12}  {:>8}  {:>12}  {:<8}  {:>8}  {:<20}  MESSAGE", "JOB", "AT (UTC)", "COLUMN", "FRAGMENT", "ROW", "OUTCOME", "ATTEMPTS", "UDF");
    for error in &errors {
        let row = match error.row_address {
            Some(address) => (address & 0xffff_ffff).to_string(),
            None => format!("{}..{}", error.task_rows.start, error.task_rows.end),
        };
        let udf = format!("{}@{}", error.udf_name, error.udf_version);
        let message = error.message.replace('\n', " ");
        println!(
            "{:<12}  {:<20}  {:<12}  {:>8}  {:>12}  {:<8}  {:>8}  {:<20}  {message}",
            error.job_id, utc(error.at_ms), error.column, error.fragment_id, row, error.outcome.to_string(), error.attempts, udf
        );
    }
    let jobs: std::collections::BTreeSet<&str> = errors.iter().map(|e| e.job_id.as_str()).collect();
    println!("{} rows in {} jobs; `leman backfill --table {} --column COLUMN --retry-errors JOB` recomputes a job's", errors.len(), jobs.len(), table.uri());
    Ok(ExitCode::SUCCESS)
}
