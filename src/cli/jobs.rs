//! `leman jobs`: a table's jobs from the records beside it.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use leman_engine::{Error, JobRecord, JobStatus, Result};

use crate::builtins;
use crate::cli::format::utc;
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
    /// Ask the head of this cluster instead of the table (for `show` and
    /// `cancel`): HOST:PORT, dns:NAME:PORT or dns+srv:NAME.
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
    /// Cancel a running job, whichever process or cluster runs it: it stops
    /// after its batches in flight, keeps its checkpoints and is recorded
    /// cancelled; running the same backfill again resumes it.
    Cancel {
        /// Job id, as `leman jobs` lists it.
        id: String,
        /// Seconds to wait for the job to stop (0: ask and return).
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
    },
}

/// How often `cancel` looks whether the job has stopped.
const CANCEL_LOOK_EVERY: Duration = Duration::from_millis(200);

pub(crate) async fn run(args: JobsArgs) -> Result<ExitCode> {
    match &args.command {
        Some(JobsCommand::Cancel { id, wait_secs }) => cancel(&args, id, Duration::from_secs(*wait_secs)).await,
        Some(JobsCommand::Show { id }) => match (&args.cluster, &args.certs) {
            (Some(target), Some(certs)) => show_on_cluster(&args, target, certs, id).await,
            _ => show(&args, id).await,
        },
        None => list(&args).await,
    }
}

async fn list(args: &JobsArgs) -> Result<ExitCode> {
    let (_, table) = open_table(args).await?;
    let records = table.jobs().await?;
    if args.json {
        println!("{}", serde_json::to_string(&records).map_err(|e| Error::Io(e.into()))?);
    } else {
        print_list(&records);
        print_staged(&table, &records).await?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(args: &JobsArgs, id: &str) -> Result<ExitCode> {
    let (path, table) = open_table(args).await?;
    let record = table.job(id).await?.ok_or_else(|| Error::JobNotFound { table: path.to_string(), job_id: id.to_string() })?;
    if args.json {
        println!("{}", serde_json::to_string(&record).map_err(|e| Error::Io(e.into()))?);
    } else {
        print_one(&record);
    }
    Ok(ExitCode::SUCCESS)
}

async fn show_on_cluster(args: &JobsArgs, target: &leman_node::JoinTarget, certs: &std::path::Path, id: &str) -> Result<ExitCode> {
    let certs = leman_runtime::ClusterCerts::load(certs, leman_runtime::tls::Role::Client).map_err(Error::cluster)?;
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
        if let Some(reason) = &view.cancelled {
            println!("reason     {reason}");
        }
        if let Some(error) = &view.error {
            println!("error      {error}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The table of `--table`, with its path as given.
async fn open_table(args: &JobsArgs) -> Result<(&str, Table)> {
    let Some(path) = &args.table else {
        return Err(Error::InvalidOptions { reason: "pass the table with --table PATH".to_string() });
    };
    Ok((path, Table::open_with(path, args.storage.options(), builtins::registry()).await?))
}

/// `leman jobs cancel`: asks the job to stop, through the head with
/// `--cluster`, else through the table; then waits until it has.
async fn cancel(args: &JobsArgs, id: &str, wait: Duration) -> Result<ExitCode> {
    // A wait too long for the clock has no deadline.
    let deadline = tokio::time::Instant::now().checked_add(wait);
    let past_deadline = || deadline.is_some_and(|deadline| tokio::time::Instant::now() >= deadline);
    let still_running = || {
        Error::Io(std::io::Error::other(format!(
            "asked job {id} to stop, but it was still running after {} s (it stops after its batches in flight); \
             `leman jobs show {id}` tells when it has",
            wait.as_secs()
        )))
    };
    if let (Some(target), Some(certs)) = (&args.cluster, &args.certs) {
        let certs = leman_runtime::ClusterCerts::load(certs, leman_runtime::tls::Role::Client).map_err(Error::cluster)?;
        let head = super::cluster::find_head(target, args.dns_server, &certs).await?;
        leman_node::cancel_job(head, &certs, id).await?;
        let view = loop {
            let view = leman_node::job_status(head, &certs, id).await?;
            if view.status != JobStatus::Running || wait.is_zero() {
                break view;
            }
            if past_deadline() {
                return Err(still_running());
            }
            tokio::time::sleep(CANCEL_LOOK_EVERY).await;
        };
        report_cancel(id, view.status, &view.column, view.progress.rows_done, view.progress.rows_total, None);
        return Ok(ExitCode::SUCCESS);
    }
    let (path, table) = open_table(args).await?;
    let mut record = table.cancel_job(id).await?;
    while record.status == JobStatus::Running && !wait.is_zero() {
        if past_deadline() {
            return Err(still_running());
        }
        tokio::time::sleep(CANCEL_LOOK_EVERY).await;
        record = table.job(id).await?.ok_or_else(|| Error::JobNotFound { table: path.to_string(), job_id: id.to_string() })?;
    }
    report_cancel(id, record.status, &record.column, record.progress.rows_done, record.progress.rows_total, Some(path));
    Ok(ExitCode::SUCCESS)
}

fn report_cancel(id: &str, status: JobStatus, column: &str, done: u64, total: u64, table: Option<&str>) {
    let resume = match table {
        Some(table) => format!("`leman backfill --table {table} --column {column}` resumes it"),
        None => format!("the same backfill of {column} resumes it"),
    };
    match status {
        JobStatus::Running => println!("asked job {id} to stop; it stops after its batches in flight"),
        JobStatus::Cancelled => println!("job {id} cancelled with {done}/{total} rows done; its checkpoints are kept: {resume}"),
        other => println!("job {id} ended before it was cancelled (status: {other})"),
    }
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

/// The staged jobs: what they wrote, how long ago, how to promote them.
async fn print_staged(table: &Table, records: &[JobRecord]) -> Result<()> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default();
    for record in records.iter().filter(|r| r.status == JobStatus::Staged) {
        let Some(staged) = table.staged(&record.id).await? else { continue };
        let age = Duration::from_millis(now.saturating_sub(record.finished_at_ms.unwrap_or(record.started_at_ms)));
        println!(
            "staged {}: column {}, {} fragments, {:.1} MiB, {} old, written at version {}; `leman promote {} --table {}` commits it",
            record.id,
            record.column,
            staged.fragments.len(),
            staged.bytes() as f64 / (1u64 << 20) as f64,
            format_age(age),
            staged.read_version,
            record.id,
            table.uri()
        );
    }
    Ok(())
}

/// `42 s`, `7 min`, `3 h`, `2 days`.
fn format_age(age: Duration) -> String {
    match age.as_secs() {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
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
    if !r.options.is_empty() {
        let options: Vec<String> = r.options.iter().map(|(key, value)| format!("{key}={value}")).collect();
        println!("options    {}", options.join(" "));
    }
    println!("status     {}", r.status);
    match &r.started_by {
        Some(by) => println!("started    {} by {} on {} (pid {})", utc(r.started_at_ms), by.user, by.host, by.pid),
        None => println!("started    {}", utc(r.started_at_ms)),
    }
    if let Some(finished) = r.finished_at_ms {
        println!("finished   {}", utc(finished));
    }
    let p = &r.progress;
    println!("rows       {}/{} done", p.rows_done, p.rows_total);
    println!("fragments  {}/{} committed in {} commits", p.fragments_committed, p.fragments_total, p.commits);
    if let Some(s) = &r.summary {
        println!("computed   {} rows, {} skipped, {} from checkpoints", s.rows_computed, s.rows_skipped, s.rows_from_checkpoints);
    }
    let c = &r.cost;
    let secs = |ms: u64| ms as f64 / 1000.0;
    println!(
        "time       plan {:.2} s; summed over their work: compute {:.2} s, write {:.2} s, commit {:.2} s",
        secs(c.plan_ms),
        secs(c.compute_ms),
        secs(c.write_ms),
        secs(c.commit_ms)
    );
    println!("udf cpu    {:.2} s", secs(c.udf_cpu_ms));
    println!("rows       {} read, {} written", c.rows_read, c.rows_written);
    println!("store      {} requests, {} bytes read, {} bytes written", c.object_store_requests, c.bytes_read, c.bytes_written);
    println!("memory     {:.1} MiB at peak", c.peak_memory_bytes as f64 / (1u64 << 20) as f64);
    match (&r.error, r.status) {
        (Some(reason), JobStatus::Cancelled) => println!("reason     {reason}"),
        (Some(error), _) => println!("error      {error}"),
        (None, _) => {}
    }
}
