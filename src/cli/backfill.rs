//! `leman backfill`: run a job with live progress; `--json` prints its
//! summary as one JSON object on stdout (with this process's peak memory).

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use leman_engine::{BackfillOptions, BatchSize, CancelReason, Error, JobStatus, Result, Summary, TableLocation};
use leman_node::{JobView, JoinTarget, LocalCluster, Submission};
use leman_runtime::ClusterCerts;

use super::progress;
use crate::builtins;
use crate::table::Table;

#[derive(Debug, Args)]
pub(crate) struct BackfillArgs {
    /// The table: a Lance dataset directory or an s3:// URI (on a cluster,
    /// one that the head and every worker reach).
    #[arg(long)]
    table: String,
    #[command(flatten)]
    storage: super::storage::StorageArgs,
    /// UDF column to compute; several, comma-separated (`--column a,b`),
    /// are computed in one pass: each batch is read once, each column
    /// computes its own null rows (or --where), and each fragment gets one
    /// data file holding them all, committed together.
    #[arg(long = "column", value_name = "COLUMN[,COLUMN...]", value_delimiter = ',', required = true)]
    columns: Vec<String>,
    /// SQL filter of the rows to compute (default: rows where the column is null).
    #[arg(long = "where")]
    filter: Option<String>,
    /// Applier actors.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Threads per applier.
    #[arg(long, default_value_t = 1)]
    intra_applier_concurrency: usize,
    /// Fill at most this many fragments.
    #[arg(long)]
    num_frags: Option<usize>,
    /// Fragments per intermediate commit (multiples of it when commits
    /// fall behind writes).
    #[arg(long, default_value_t = 64)]
    commit_granularity: usize,
    /// Physical rows per checkpointed batch, or `auto`: each applier starts
    /// at --min-batch-size rows and sizes its next batch for about
    /// --target-batch-secs of UDF time, up to --max-batch-size.
    #[arg(long, default_value = "10240")]
    batch_size: BatchSize,
    /// With --batch-size auto: the UDF time one batch aims at.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    target_batch_secs: f64,
    /// With --batch-size auto: the fewest rows a batch.
    #[arg(long, value_name = "ROWS", default_value_t = 1)]
    min_batch_size: usize,
    /// With --batch-size auto: the most rows a batch.
    #[arg(long, value_name = "ROWS", default_value_t = 10_240)]
    max_batch_size: usize,
    /// Table version to read (default: latest).
    #[arg(long)]
    read_version: Option<u64>,
    /// Fragments interleaved in the task order.
    #[arg(long, default_value_t = 8)]
    task_shuffle_diversity: usize,
    /// Seconds between progress updates.
    #[arg(long, default_value_t = 1.0)]
    refresh_status_secs: f64,
    /// Cancel the job after this many seconds (planning included): it stops
    /// after the batches in flight, keeps its checkpoints and exits with
    /// status 3; run the same command again to resume.
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    timeout: Option<std::time::Duration>,
    #[command(flatten)]
    on_error: super::columns::OnErrorArgs,
    /// Fail the job once the skip policy has left more rows than this null
    /// (its checkpoints are kept).
    #[arg(long, value_name = "N")]
    max_skipped_rows: Option<u64>,
    /// Fail the job once more than this fraction (0 to 1) of its rows were
    /// skipped, judged from 1,000 rows on and at its last batch.
    #[arg(long, value_name = "F")]
    max_skipped_fraction: Option<f64>,
    /// Recompute exactly the rows job JOB recorded as failed (`leman
    /// errors` lists them), within --where if given.
    #[arg(long, value_name = "JOB")]
    retry_errors: Option<String>,
    /// Wait while another job backfills this column, then run (backfills
    /// of one column run one after another), instead of failing at once.
    #[arg(long)]
    queue: bool,
    /// Compute and write every fragment's data file but commit nothing
    /// (readers see no change); `leman promote JOB` commits it, with other
    /// staged columns in one transaction, `leman discard JOB` removes it.
    #[arg(long)]
    stage: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Print what the backfill would do (fragments, tasks, rows to compute
    /// and from checkpoints, whether the UDF changed) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Run on the cluster whose head is at HOST:PORT, dns:NAME:PORT or
    /// dns+srv:NAME (default: in this process).
    #[arg(long, requires = "certs")]
    cluster: Option<JoinTarget>,
    /// DNS server for --cluster names, instead of the system's.
    #[arg(long, env = "LEMAN_DNS_SERVER")]
    dns_server: Option<std::net::SocketAddr>,
    /// Directory of the cluster's certificates.
    #[arg(long)]
    certs: Option<std::path::PathBuf>,
    /// Start a head and this many worker processes on 127.0.0.1 for this
    /// job, and stop them after it.
    #[arg(long, conflicts_with = "cluster")]
    local_workers: Option<usize>,
}

impl BackfillArgs {
    fn options(&self) -> BackfillOptions {
        BackfillOptions {
            filter: self.filter.clone(),
            concurrency: self.concurrency,
            intra_applier_concurrency: self.intra_applier_concurrency,
            num_frags: self.num_frags,
            commit_granularity: Some(self.commit_granularity),
            batch_size: self.batch_size,
            target_batch_secs: self.target_batch_secs,
            min_batch_size: self.min_batch_size,
            max_batch_size: self.max_batch_size,
            read_version: self.read_version,
            task_shuffle_diversity: self.task_shuffle_diversity,
            refresh_status_secs: self.refresh_status_secs,
            timeout: self.timeout,
            on_error: self.on_error.on_error,
            retry_backoff: self.on_error.retry_backoff_ms,
            max_skipped_rows: self.max_skipped_rows,
            max_skipped_fraction: self.max_skipped_fraction,
            retry_errors: self.retry_errors.clone(),
            queue: self.queue,
            stage: self.stage,
            ..BackfillOptions::default()
        }
    }
}

pub(crate) async fn run(args: BackfillArgs) -> Result<ExitCode> {
    if args.dry_run {
        return dry_run(&args).await;
    }
    if let (Some(target), Some(certs)) = (&args.cluster, &args.certs) {
        let certs = ClusterCerts::load(certs, leman_runtime::tls::Role::Client).map_err(Error::cluster)?;
        let head = super::cluster::find_head(target, args.dns_server, &certs).await?;
        return run_on_cluster(&args, head, &certs).await;
    }
    if let Some(workers) = args.local_workers {
        let cluster = LocalCluster::start(&std::env::current_exe()?, workers)?;
        let outcome = match ClusterCerts::load(cluster.certs(), leman_runtime::tls::Role::Client) {
            Ok(certs) => run_on_cluster(&args, cluster.head(), &certs).await,
            Err(error) => Err(Error::cluster(error)),
        };
        cluster.stop();
        return outcome;
    }
    let table = Table::open_with(&args.table, args.storage.options(), builtins::registry()).await?;
    for column in &args.columns {
        if let Some(record) = table.udf_record(column).await?
            && builtins::NAMES.contains(&record.name.as_str())
        {
            let schema = table.schema().await?;
            for input in &record.inputs {
                if let Ok(field) = schema.field_with_name(input) {
                    builtins::check_input(&record.name, input, field.data_type())?;
                }
            }
        }
    }
    let job = table.backfill_many(args.columns.clone(), args.options()).await?;
    let job_id = job.id().to_string();
    eprintln!("job {job_id}: backfilling {} of {} (Ctrl-C cancels; run again to resume)", args.columns.join(","), table.uri());
    if progress::follow_until_ctrl_c(&job).await == progress::Followed::Abandoned {
        return Ok(ExitCode::from(130));
    }
    let outcome = job.wait().await;
    if args.json {
        println!("{}", summary_json(&job_id, &args.columns.join(","), &outcome));
    } else if let Ok(summary) = &outcome
        && summary.fragments_staged > 0
    {
        println!(
            "job {job_id} staged: {} rows computed, {} skipped, {} from checkpoints, {} fragments written and not committed, {:.2} s; \
             `leman promote {job_id} --table {}` commits them, `leman discard {job_id} --table {}` removes them",
            summary.rows_computed,
            summary.rows_skipped,
            summary.rows_from_checkpoints,
            summary.fragments_staged,
            summary.elapsed.as_secs_f64(),
            args.table,
            args.table,
        );
    } else if let Ok(summary) = &outcome {
        println!(
            "job {job_id} succeeded: {} rows computed, {} skipped, {} from checkpoints, {} fragments in {} commits{}, {:.2} s",
            summary.rows_computed,
            summary.rows_skipped,
            summary.rows_from_checkpoints,
            summary.fragments_committed,
            summary.commits,
            summary.version.map(|v| format!(" (now version {v})")).unwrap_or_default(),
            summary.elapsed.as_secs_f64(),
        );
    }
    match outcome {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(error) => Err(error),
    }
}

/// `--dry-run`: the plan, from this process (wherever the job would run,
/// its plan is the table's and its checkpoints').
async fn dry_run(args: &BackfillArgs) -> Result<ExitCode> {
    let table = Table::open_with(&args.table, args.storage.options(), builtins::registry()).await?;
    let plan = table.plan_backfill_many(args.columns.clone(), &args.options()).await?;
    if args.json {
        let mut value = serde_json::to_value(&plan).map_err(|e| Error::Io(e.into()))?;
        value["udf_version_changed"] = json!(plan.udf_version_changed());
        println!("{value}");
        return Ok(ExitCode::SUCCESS);
    }
    let last = match (&plan.last_filled_with, plan.udf_version_changed()) {
        (Some(last), Some(true)) => format!("changed: the column was last filled with version {last}"),
        (Some(_), _) => "unchanged since the column was last filled".to_string(),
        (None, _) => "no job has filled the column yet".to_string(),
    };
    println!("dry run: backfill of {} in {} at version {} (nothing changed)", plan.column, table.uri(), plan.read_version);
    println!("udf        {} version {} ({last})", plan.udf, plan.udf_version);
    println!("filter     {}", plan.filter);
    println!(
        "fragments  {} in all: {} done, {} to commit, {} to compute, {} left for a later run",
        plan.fragments_total, plan.fragments_done, plan.fragments_to_commit, plan.fragments_to_compute, plan.fragments_left
    );
    if plan.fragments_recomputed_whole > 0 {
        println!(
            "           {} of them recomputed whole: another UDF or version computed their values",
            plan.fragments_recomputed_whole
        );
    }
    println!("tasks      {} to run, {} from checkpoints", plan.tasks, plan.tasks_checkpointed);
    println!("rows       {} to compute, {} from checkpoints", plan.rows_to_compute, plan.rows_from_checkpoints);
    Ok(ExitCode::SUCCESS)
}

/// Submits the job to the head and follows it until it ends.
async fn run_on_cluster(args: &BackfillArgs, head: std::net::SocketAddr, certs: &ClusterCerts) -> Result<ExitCode> {
    let submission = Submission {
        table: TableLocation::new(&args.table, args.storage.options())?,
        columns: args.columns.clone(),
        options: args.options(),
    };
    let job_id = leman_node::submit(head, certs, &submission).await?;
    eprintln!(
        "job {job_id}: running on the cluster at {head}; it goes on if this command stops (`leman jobs show {job_id} --cluster {head} --certs DIR` shows it)"
    );
    let view = follow_remote(head, certs, &job_id, args.refresh_status_secs).await?;
    let outcome = match (view.status, view.summary) {
        (JobStatus::Succeeded | JobStatus::Staged, Some(summary)) => Ok(summary),
        (JobStatus::Cancelled, _) => {
            Err(Error::Cancelled { job_id: job_id.clone(), reason: view.cancelled.unwrap_or(CancelReason::Asked) })
        }
        (status, _) => Err(Error::Io(std::io::Error::other(format!(
            "job {job_id} {status}: {}",
            view.error.unwrap_or_default()
        )))),
    };
    if args.json {
        println!("{}", summary_json(&job_id, &args.columns.join(","), &outcome));
    } else if let Ok(summary) = &outcome {
        println!("job {job_id} succeeded on the cluster: {} rows computed in {} commits", summary.rows_computed, summary.commits);
    }
    outcome.map(|_| ExitCode::SUCCESS)
}

/// Polls the head for job `job_id` until it ends, drawing its progress.
pub(crate) async fn follow_remote(
    head: std::net::SocketAddr,
    certs: &ClusterCerts,
    job_id: &str,
    refresh_secs: f64,
) -> Result<JobView> {
    let mut view = progress::View::new(&format!("job {job_id}"));
    // Short jobs end long before the first refresh: start polling fast.
    let refresh = std::time::Duration::from_secs_f64(refresh_secs.clamp(0.05, 60.0));
    let mut every = std::time::Duration::from_millis(20).min(refresh);
    loop {
        let state = leman_node::job_status(head, certs, job_id).await?;
        view.progress(&state.progress);
        if state.status != JobStatus::Running {
            view.done();
            return Ok(state);
        }
        tokio::time::sleep(every).await;
        every = (every * 2).min(refresh);
    }
}

/// A timeout in seconds: a positive, finite number.
fn parse_timeout(arg: &str) -> std::result::Result<std::time::Duration, String> {
    match arg.parse::<f64>().ok().filter(|secs| *secs > 0.0).map(std::time::Duration::try_from_secs_f64) {
        Some(Ok(timeout)) => Ok(timeout),
        _ => Err(format!("{arg:?} is not a positive number of seconds")),
    }
}


pub(crate) fn summary_json(job_id: &str, column: &str, outcome: &Result<Summary>) -> serde_json::Value {
    match outcome {
        Ok(s) => json!({
            "job_id": job_id,
            "column": column,
            "status": if s.fragments_staged > 0 { "staged" } else { "succeeded" },
            "rows_computed": s.rows_computed,
            "rows_skipped": s.rows_skipped,
            "rows_from_checkpoints": s.rows_from_checkpoints,
            "fragments_committed": s.fragments_committed,
            "fragments_staged": s.fragments_staged,
            "commits": s.commits,
            "version": s.version,
            "elapsed_secs": s.elapsed.as_secs_f64(),
            "peak_memory_bytes": leman_engine::peak_memory(),
            "errors": s.errors.iter().map(|e| json!({"row_address": e.row_address, "message": e.message})).collect::<Vec<_>>(),
        }),
        Err(error) => json!({
            "job_id": job_id,
            "column": column,
            "status": if matches!(error, Error::Cancelled { .. }) { "cancelled" } else { "failed" },
            "error": error.to_string(),
        }),
    }
}
