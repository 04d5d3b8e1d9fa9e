//! `leman jobs`: a table's jobs from the records beside it.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use leman_engine::{Error, JobRecord, Result};

use crate::builtins;
use crate::table::Table;

#[derive(Debug, Args)]
pub(crate) struct JobsArgs {
    /// The table: a Lance dataset directory or an s3:// URI.
    #[arg(long, global = true)]
    table: Option<String>,
    #[command(flatten)]
    storage: super::storage::StorageArgs,
    /// Print JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Ask the head of this cluster instead of the table (for `show`):
    /// HOST:PORT, dns:NAME:PORT or dns+srv:NAME.
    #[arg(long, global = true, requires = "certs")]
    cluster: Option<leman_node::JoinTarget>,
    /// DNS server for --cluster names, instead of the system's.
    #[arg(long, global = true, env = "LEMAN_DNS_SERVER")]
    dns_server: Option<std::net::SocketAddr>,
    /// Directory of the cluster's certificates.
    #[arg(long, global = true)]
    certs: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Option<JobsCommand>,
}

#[derive(Debug, Subcommand)]
enum JobsCommand {
    /// Show one job.
    Show {
        /// Job id, as `leman jobs` lists it.
        id: String,
    },
}

pub(crate) async fn run(args: JobsArgs) -> Result<ExitCode> {
    if let (Some(target), Some(certs), Some(JobsCommand::Show { id })) = (&args.cluster, &args.certs, &args.command) {
        let certs = leman_runtime::ClusterCerts::load(certs).map_err(Error::cluster)?;
        let head = super::cluster::find_head(target, args.dns_server, &certs).await?;
        let view = leman_node::job_status(head, &certs, id).await?;
        if args.json {
            println!("{}", serde_json::to_string(&view).map_err(|e| Error::Io(e.into()))?);
        } else {
            println!("job        {}", view.job_id);
            println!("column     {}", view.column);
            println!("status     {}", view.status);
            println!("rows       {}/{} done", view.progress.rows_done, view.progress.rows_total);
            println!("fragments  {}/{} committed", view.progress.fragments_committed, view.progress.fragments_total);
            if let Some(error) = &view.error {
                println!("error      {error}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(path) = &args.table else {
        return Err(Error::InvalidOptions { reason: "pass the table with --table PATH".to_string() });
    };
    let table = Table::open_with(path, args.storage.options(), builtins::registry()).await?;
    match args.command {
        None => {
            let records = table.jobs().await?;
            if args.json {
                println!("{}", serde_json::to_string(&records).map_err(|e| Error::Io(e.into()))?);
            } else {
                print_list(&records);
            }
        }
        Some(JobsCommand::Show { id }) => {
            let record = table.job(&id).await?.ok_or_else(|| Error::InvalidOptions {
                reason: format!("table {} has no job {id}; list its jobs with `leman jobs --table {path}`", table.uri()),
            })?;
            if args.json {
                println!("{}", serde_json::to_string(&record).map_err(|e| Error::Io(e.into()))?);
            } else {
                print_one(&record);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_list(records: &[JobRecord]) {
    println!("{:<12}  {:<20}  {:<9}  {:>21}  {:<20}  {:<20}  ERROR", "ID", "COLUMN", "STATUS", "ROWS DONE", "STARTED", "FINISHED");
    for r in records {
        println!(
            "{:<12}  {:<20}  {:<9}  {:>21}  {:<20}  {:<20}  {}",
            r.id,
            r.column,
            r.status.to_string(),
            format!("{}/{}", r.progress.rows_done, r.progress.rows_total),
            utc(r.started_at_ms),
            r.finished_at_ms.map(utc).unwrap_or_default(),
            r.error.as_ref().map(|e| e.to_string()).unwrap_or_default(),
        );
    }
}

fn print_one(r: &JobRecord) {
    println!("job        {}", r.id);
    println!("column     {}", r.column);
    println!("udf        {} (version {})", r.udf, r.udf_version);
    println!("filter     {}", r.filter);
    println!("read       version {}", r.read_version);
    for (key, value) in &r.storage_options {
        println!("storage    {key}={value}");
    }
    println!("status     {}", r.status);
    println!("started    {}", utc(r.started_at_ms));
    if let Some(finished) = r.finished_at_ms {
        println!("finished   {}", utc(finished));
    }
    let p = &r.progress;
    println!("rows       {}/{} done", p.rows_done, p.rows_total);
    println!("fragments  {}/{} committed in {} commits", p.fragments_committed, p.fragments_total, p.commits);
    if let Some(s) = &r.summary {
        println!("computed   {} rows, {} skipped, {} from checkpoints", s.rows_computed, s.rows_skipped, s.rows_from_checkpoints);
    }
    if let Some(error) = &r.error {
        println!("error      {error}");
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC from Unix milliseconds.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm), for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_795_000_000_000), "2026-11-18 11:06:40");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}
