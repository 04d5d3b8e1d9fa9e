//! The `leman` command line: argument definitions and the commands behind
//! them. `main.rs` only parses and calls [`run`].
//!
//! Every command prints a one-line error that says what to do and exits
//! non-zero when something is wrong; nothing is written to the table before
//! the arguments, names and types have been checked.

mod backfill;
mod cleanup;
mod cluster;
mod columns;
mod errors;
pub mod format;
mod inspect;
mod jobs;
mod machine;
mod progress;
mod stage;
mod storage;
mod view;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use leman_engine::{BackfillOptions, Error, Result};

use crate::{bench, demo};

/// `leman`: compute new columns of Lance tables with user functions.
#[derive(Debug, Parser)]
#[command(name = "leman", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a sample table, add UDF columns and backfill them, with progress.
    Demo {
        /// Database directory.
        #[arg(long, default_value = "./leman-demo")]
        dir: String,
        /// Rows of the sample table.
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
    },
    /// Declare a column computed by a built-in UDF (metadata only).
    AddColumn(columns::AddColumnArgs),
    /// Replace the UDF of a column (metadata only): the next backfill
    /// without --where recomputes the rows another UDF or version computed.
    AlterColumn(columns::AlterColumnArgs),
    /// Drop a column, or every column of an unpacked group, from the schema.
    DropColumn(columns::DropColumnArgs),
    /// Compute a UDF column.
    Backfill(backfill::BackfillArgs),
    /// Commit staged backfills (`backfill --stage`), several columns in one
    /// transaction.
    Promote(stage::PromoteArgs),
    /// Remove what a staged backfill wrote.
    Discard(stage::DiscardArgs),
    /// List a table's jobs, show one, or cancel one.
    Jobs(jobs::JobsArgs),
    /// List the rows UDFs failed on (skipped or failing a job).
    Errors(errors::ErrorsArgs),
    /// Remove the checkpoints beside a table that no job can reuse.
    Cleanup(cleanup::CleanupArgs),
    /// Cluster set-up and status.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Run a cluster head: workers join it.
    Head(cluster::HeadArgs),
    /// Run a worker that joins a head and hosts appliers and writers.
    Worker(cluster::WorkerArgs),
    /// Run the benchmark suite and print its figures against their baselines.
    Bench {
        /// Directory for its tables (default: a temporary one, removed after).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Small tables: a check that the suite runs, in seconds.
        #[arg(long)]
        quick: bool,
        /// Print the figures as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Only these measurements (1 to 13, comma-separated).
        #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=13))]
        only: Vec<u8>,
        /// Also measure peak memory at 100M rows (a table of several GiB,
        /// made and dropped in the run).
        #[arg(long)]
        large: bool,
    },
    /// The benchmark's raw lance pipeline as a process of its own (what
    /// `leman bench` times `add-column` and `backfill` against): declare
    /// OUTPUT, an int32 column, then fill it with str_len(INPUT), no Leman
    /// between.
    #[command(name = "bench-raw", hide = true)]
    BenchRaw {
        /// The table: a Lance dataset directory.
        #[arg(long)]
        table: String,
        /// The text column str_len reads.
        #[arg(long, default_value = "text")]
        input: String,
        /// The new column.
        #[arg(long)]
        output: String,
        /// Fragments filled at once (default: one per core).
        #[arg(long)]
        parallelism: Option<usize>,
    },
    /// Materialized views: create, refresh, show.
    #[command(subcommand)]
    View(view::ViewCommand),
    /// Show a table's versions, fragments and columns.
    Inspect {
        /// The table: a Lance dataset directory or an s3:// URI.
        #[arg(long)]
        table: String,
        #[command(flatten)]
        storage: storage::StorageArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Create a cluster CA in DIR and a certificate per role beside it
    /// (`head.pem`, `worker.pem`, `client.pem`, with their keys): DIR serves
    /// as `--certs` for every process of a local cluster.
    Init {
        /// Directory for the cluster's certificates.
        #[arg(long)]
        dir: std::path::PathBuf,
    },
    /// Issue a certificate for one node from the CA in `--ca`: its role and
    /// name, valid for `--days`; written to `--out` (`ca.pem`, `ROLE.pem`,
    /// `ROLE.key`), the directory that node takes as `--certs`.
    Issue {
        /// Directory of the cluster CA (`ca.pem`, `ca.key`).
        #[arg(long)]
        ca: std::path::PathBuf,
        /// What the node may do: head, worker or client.
        #[arg(long)]
        role: leman_runtime::tls::Role,
        /// The node's name, logged by the nodes it talks to.
        #[arg(long)]
        name: String,
        /// Directory to write the certificate to.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Days it is valid for, from now.
        #[arg(long, default_value_t = leman_runtime::tls::DEFAULT_DAYS)]
        days: u32,
    },
    /// Render the Kubernetes manifests of a cluster spec (TOML), in apply
    /// order; see kubernetes/README.md for the keys.
    Manifests {
        /// The cluster spec.
        #[arg(long)]
        spec: std::path::PathBuf,
        /// Also render the certificates Secret from this directory
        /// (`ca.pem`, `head.*`, `worker.*`; the CA's and the client's keys are never read).
        #[arg(long)]
        embed_certs: Option<std::path::PathBuf>,
        /// Write to this file instead of stdout.
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
    },
    /// List the live members of a running cluster.
    Members {
        /// The head: HOST:PORT, dns:NAME:PORT or dns+srv:NAME.
        #[arg(long, visible_alias = "head")]
        cluster: leman_node::JoinTarget,
        /// DNS server for the head's name, instead of the system's.
        #[arg(long, env = "LEMAN_DNS_SERVER")]
        dns_server: Option<std::net::SocketAddr>,
        /// Directory of the cluster's certificates.
        #[arg(long)]
        certs: std::path::PathBuf,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// Exit status of a command whose job was cancelled (by `leman jobs
/// cancel`, `--timeout` or Ctrl-C): it kept its checkpoints, and running it
/// again resumes it. Other errors exit with 1.
pub const EXIT_CANCELLED: u8 = 3;

/// Runs a parsed command line; the exit code is 0 only on success, and
/// an error is one line on stderr.
pub async fn run(cli: Cli) -> ExitCode {
    let outcome = match cli.command {
        Command::Demo { dir, rows } => demo(dir, rows).await,
        Command::AddColumn(args) => columns::add(args).await,
        Command::AlterColumn(args) => columns::alter(args).await,
        Command::DropColumn(args) => columns::drop(args).await,
        Command::Errors(args) => errors::run(args).await,
        Command::Backfill(args) => backfill::run(args).await,
        Command::Jobs(args) => jobs::run(args).await,
        Command::Promote(args) => stage::promote(args).await,
        Command::Discard(args) => stage::discard(args).await,
        Command::Cleanup(args) => cleanup::run(args).await,
        Command::View(command) => view::run(command).await,
        Command::Inspect { table, storage } => inspect::run(&table, storage.options()).await,
        Command::Bench { dir, quick, json, only, large } => bench(dir, quick, large, json, only).await,
        Command::BenchRaw { table, input, output, parallelism } => bench_raw(&table, &input, &output, parallelism).await,
        Command::Cluster(ClusterCommand::Init { dir }) => cluster_init(&dir),
        Command::Cluster(ClusterCommand::Issue { ca, role, name, out, days }) => cluster_issue(&ca, role, &name, &out, days),
        Command::Cluster(ClusterCommand::Manifests { spec, embed_certs, output }) => {
            cluster::manifests(&spec, embed_certs.as_deref(), output.as_deref())
        }
        Command::Cluster(ClusterCommand::Members { cluster, dns_server, certs, json }) => {
            cluster::members(&cluster, dns_server, &certs, json).await
        }
        Command::Head(args) => cluster::head(args).await,
        Command::Worker(args) => cluster::worker(args).await,
    };
    match outcome {
        Ok(code) => code,
        Err(error @ Error::Cancelled { .. }) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_CANCELLED)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_key_value(arg: &str) -> std::result::Result<(String, String), String> {
    arg.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected key=value, got {arg:?}"))
}

fn cluster_init(dir: &std::path::Path) -> Result<ExitCode> {
    leman_runtime::tls::init_cluster(dir).map_err(Error::cluster)?;
    println!("created a cluster CA and a head, a worker and a client certificate in {}", dir.display());
    println!("on one machine, pass it as --certs to every process; across machines, give each node only its own");
    println!("certificate from `leman cluster issue --ca {} --role ROLE --name NAME --out DIR`; keep ca.key safe", dir.display());
    Ok(ExitCode::SUCCESS)
}

fn cluster_issue(ca: &std::path::Path, role: leman_runtime::tls::Role, name: &str, out: &std::path::Path, days: u32) -> Result<ExitCode> {
    let identity = leman_runtime::tls::issue(ca, role, name, out, days).map_err(Error::cluster)?;
    println!(
        "issued a {role} certificate for {name:?} in {}, valid until {}",
        out.display(),
        leman_runtime::tls::date(identity.not_after)
    );
    println!("fingerprint {} (list it in a --revoked file to refuse this node)", identity.fingerprint);
    Ok(ExitCode::SUCCESS)
}

async fn bench(dir: Option<std::path::PathBuf>, quick: bool, large: bool, json: bool, only: Vec<u8>) -> Result<ExitCode> {
    let scratch;
    let dir = match dir {
        Some(dir) => dir,
        None => {
            scratch = tempfile::tempdir()?;
            scratch.path().to_path_buf()
        }
    };
    let options = bench::BenchOptions { dir, exe: std::env::current_exe()?, quick, large, only };
    eprintln!(
        "leman bench{}: {} cores, {:.0} GiB; tables in {}",
        if quick { " --quick" } else { "" },
        machine::cpus(),
        machine::memory() as f64 / (1u64 << 30) as f64,
        options.dir.display()
    );
    let figures = bench::run(&options, |figure| {
        if !json {
            eprintln!("  measured {}: {} ({:.2}x {})", figure.what, figure.measured, figure.ratio, figure.ratio_of);
        }
    })
    .await?;
    if json {
        println!("{}", serde_json::to_string(&figures).map_err(|e| Error::Io(e.into()))?);
    } else {
        print!("{}", bench::render(&figures));
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench_raw(table: &str, input: &str, output: &str, parallelism: Option<usize>) -> Result<ExitCode> {
    bench::raw::declare(table, output).await?;
    let rows = bench::raw::str_len(table, input, output, parallelism.unwrap_or_else(bench::cores)).await?;
    println!("{rows}");
    Ok(ExitCode::SUCCESS)
}

async fn demo(dir: String, rows: usize) -> Result<ExitCode> {
    let options = demo::DemoOptions { dir, rows, ..Default::default() };
    let started = std::time::Instant::now();
    let table = demo::prepare(&options).await?;
    let fragments = table.dataset().await?.get_fragments().len();
    println!("made {} with {rows} rows in {fragments} fragments", table.uri());
    let mut values = 0;
    for (column, udf) in demo::COLUMNS {
        let job_started = std::time::Instant::now();
        let job = table.backfill(column, BackfillOptions::default().concurrency(2).refresh_status_secs(0.5)).await?;
        progress::follow(&job, column).await;
        let summary = job.wait().await?;
        let seconds = job_started.elapsed().as_secs_f64().max(f64::EPSILON);
        println!(
            "{column:<15} = {udf}(text): {} rows in {seconds:.2} s ({:.0} rows/s), {} commit(s)",
            summary.rows_computed,
            summary.rows_computed as f64 / seconds,
            summary.commits
        );
        values += summary.rows_computed;
    }
    for line in demo::sample_rows(&table, 3).await? {
        println!("  {line}");
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("demo done: {values} values computed in {seconds:.2} s ({:.0} values/s)", values as f64 / seconds.max(f64::EPSILON));
    Ok(ExitCode::SUCCESS)
}
