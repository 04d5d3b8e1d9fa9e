//! `leman view create|refresh|show`: materialized views of a source table,
//! built and refreshed with live progress.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use leman_engine::{BackfillOptions, BatchSize, Error, Result, TableLocation, Udf};
use leman_view::{RefreshOptions, RowChanges, View, ViewInfo, ViewQuery};

use super::progress;
use crate::builtins;

#[derive(Debug, Subcommand)]
pub(crate) enum ViewCommand {
    /// Create a view of a source table and build it (unless --no-data).
    Create(CreateArgs),
    /// Make a view reflect its source's latest version (or --to-version),
    /// writing only the rows changed and computing UDFs only for rows whose
    /// inputs changed.
    Refresh(RefreshArgs),
    /// Show a view's source, query, the source version it reflects, its
    /// rows and how full its UDF columns are.
    Show {
        /// The view: a Lance dataset directory or an s3:// URI.
        #[arg(long)]
        view: String,
        #[command(flatten)]
        storage: super::storage::StorageArgs,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The source table: a Lance dataset directory or an s3:// URI.
    #[arg(long)]
    source: String,
    /// Columns to copy, comma-separated (default: every column of the
    /// source now).
    #[arg(long, value_delimiter = ',')]
    select: Vec<String>,
    /// SQL filter of the source rows the view holds.
    #[arg(long = "where")]
    filter: Option<String>,
    /// A UDF column, NAME=UDF(INPUT[,INPUT...]), of a built-in UDF
    /// (str_len, sha256, hash_embed, busy, wait, parse_int, text_stats);
    /// repeat for more. Its inputs are copied into the view.
    #[arg(long = "column", value_name = "NAME=UDF(INPUTS)", value_parser = parse_column)]
    columns: Vec<ColumnSpec>,
    /// UDF argument, `key=value`, given to every UDF column (busy and wait:
    /// micros=N).
    #[arg(long = "udf-arg", value_parser = super::parse_key_value)]
    udf_args: Vec<(String, String)>,
    #[command(flatten)]
    on_error: super::columns::OnErrorArgs,
    /// Write each refresh's new rows in an order shuffled by this seed.
    #[arg(long, value_name = "SEED")]
    shuffle_seed: Option<u64>,
    /// Rows per data file of the view.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_rows_per_file: usize,
    /// Create the view empty; `leman view refresh` builds it.
    #[arg(long)]
    no_data: bool,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RefreshArgs {
    /// The source version to reflect (default: the latest); older than the
    /// one reflected now, or newer.
    #[arg(long)]
    to_version: Option<u64>,
    #[command(flatten)]
    run: RunArgs,
}

/// Where the view is and how its UDF columns are computed.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The view: a Lance dataset directory or an s3:// URI.
    #[arg(long)]
    view: String,
    #[command(flatten)]
    storage: super::storage::StorageArgs,
    /// Applier actors.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Threads per applier.
    #[arg(long, default_value_t = 1)]
    intra_applier_concurrency: usize,
    /// Physical rows per checkpointed batch, or `auto`.
    #[arg(long, default_value = "10240")]
    batch_size: BatchSize,
    /// Fragments per intermediate commit (multiples of it when commits
    /// fall behind writes).
    #[arg(long, default_value_t = 64)]
    commit_granularity: usize,
    /// Seconds between progress updates.
    #[arg(long, default_value_t = 1.0)]
    refresh_status_secs: f64,
    /// Print what changed and the backfill's summary as one JSON object on
    /// stdout.
    #[arg(long)]
    json: bool,
}

impl RunArgs {
    fn location(&self) -> Result<TableLocation> {
        TableLocation::new(&self.view, self.storage.options())
    }

    fn options(&self) -> BackfillOptions {
        BackfillOptions {
            concurrency: self.concurrency,
            intra_applier_concurrency: self.intra_applier_concurrency,
            batch_size: self.batch_size,
            commit_granularity: Some(self.commit_granularity),
            refresh_status_secs: self.refresh_status_secs,
            ..BackfillOptions::default()
        }
    }
}

/// `NAME=UDF(INPUT[,INPUT...])`.
#[derive(Debug, Clone)]
pub(crate) struct ColumnSpec {
    name: String,
    udf: String,
    inputs: Vec<String>,
}

fn parse_column(arg: &str) -> std::result::Result<ColumnSpec, String> {
    let bad = || format!("{arg:?} is not NAME=UDF(INPUT[,INPUT...]), e.g. len=str_len(text)");
    let (name, call) = arg.split_once('=').ok_or_else(bad)?;
    let (udf, rest) = call.split_once('(').ok_or_else(bad)?;
    let inputs = rest.strip_suffix(')').ok_or_else(bad)?;
    let inputs: Vec<String> = inputs.split(',').map(|i| i.trim().to_string()).filter(|i| !i.is_empty()).collect();
    if name.trim().is_empty() || udf.trim().is_empty() || inputs.is_empty() {
        return Err(bad());
    }
    Ok(ColumnSpec { name: name.trim().to_string(), udf: udf.trim().to_string(), inputs })
}

pub(crate) async fn run(command: ViewCommand) -> Result<ExitCode> {
    match command {
        ViewCommand::Create(args) => create(args).await,
        ViewCommand::Refresh(args) => {
            let view = View::open(args.run.location()?, builtins::registry()).await?;
            refresh(&view, &args.run, args.to_version).await
        }
        ViewCommand::Show { view, storage, json } => {
            let view = View::open(TableLocation::new(&view, storage.options())?, builtins::registry()).await?;
            let info = view.info().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info).map_err(std::io::Error::other)?);
            } else {
                print!("{}", describe(&info));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn create(args: CreateArgs) -> Result<ExitCode> {
    let source = TableLocation::new(&args.source, args.run.storage.options())?;
    let schema = arrow_schema::Schema::from(source.open_dataset().await?.schema());
    let mut query = ViewQuery::new(source.uri.clone()).select(args.select.clone());
    query.filter = args.filter.clone();
    query.shuffle_seed = args.shuffle_seed;
    query.max_rows_per_file = args.max_rows_per_file;
    for column in &args.columns {
        query = query.column(column.name.clone(), builtin(column, &args, &schema, &source.uri)?);
    }
    let view = View::create(args.run.location()?, query, builtins::registry()).await?;
    let info = view.info().await?;
    eprintln!(
        "created view {} of {}: {} rows of the source's columns {}{}, UDF columns {}",
        view.uri(),
        info.query.source,
        info.query.filter.as_deref().map(|f| format!("where {f}")).unwrap_or_else(|| "all".to_string()),
        info.query.copies.join(", "),
        if info.query.shuffle_seed.is_some() { " (shuffled)" } else { "" },
        if info.query.udf_columns.is_empty() { "none".to_string() } else { info.query.udf_columns.join(", ") },
    );
    if !info.incremental {
        eprintln!(
            "note: source {} has no stable row ids, so each refresh reads every source row to find what changed \
             (unchanged rows are still neither rewritten nor recomputed); a source created with stable row ids \
             (pylance: enable_stable_row_ids=True) is refreshed by reading only the rows changed",
            info.query.source
        );
    }
    if args.no_data {
        return Ok(ExitCode::SUCCESS);
    }
    refresh(&view, &args.run, None).await
}

fn builtin(column: &ColumnSpec, args: &CreateArgs, schema: &arrow_schema::Schema, source: &str) -> Result<Udf> {
    let inputs: Vec<&str> = column.inputs.iter().map(String::as_str).collect();
    let udf = builtins::get(&column.udf, &inputs, &args.udf_args).map_err(|e| Error::InvalidOptions { reason: e.to_string() })?;
    for input in &inputs {
        let field = schema.field_with_name(input).map_err(|_| Error::InputNotFound {
            udf: udf.name().to_string(),
            input: input.to_string(),
            table: source.to_string(),
        })?;
        builtins::check_input(udf.name(), input, field.data_type())?;
    }
    Ok(args.on_error.apply(udf))
}

async fn refresh(view: &View, run: &RunArgs, to_version: Option<u64>) -> Result<ExitCode> {
    let refresh = view.refresh(RefreshOptions { to_version, backfill: run.options() }).await?;
    let changes = refresh.changes;
    eprintln!("{}", describe_changes(view.uri(), &changes));
    let Some(job) = refresh.job else {
        if run.json {
            println!("{}", json!({ "changes": changes, "job": null }));
        }
        return Ok(ExitCode::SUCCESS);
    };
    let job_id = job.id().to_string();
    if progress::follow_until_ctrl_c(&job).await == progress::Followed::Abandoned {
        return Ok(ExitCode::from(130));
    }
    let outcome = job.wait().await;
    if run.json {
        let columns = view.record().await.map(|(record, _)| record.udf_columns.join(",")).unwrap_or_default();
        println!("{}", json!({ "changes": changes, "job": super::backfill::summary_json(&job_id, &columns, &outcome) }));
    } else if let Ok(summary) = &outcome {
        println!(
            "view {} refreshed to source version {}: {} rows computed, {} skipped, {} from checkpoints, {:.2} s",
            view.uri(),
            changes.source_version,
            summary.rows_computed,
            summary.rows_skipped,
            summary.rows_from_checkpoints,
            summary.elapsed.as_secs_f64()
        );
    }
    outcome.map(|_| ExitCode::SUCCESS)
}

fn describe_changes(view: &str, changes: &RowChanges) -> String {
    let from = changes.previous_version.map(|v| format!("source version {v}")).unwrap_or_else(|| "empty".to_string());
    format!(
        "view {view}: {from} -> source version {} ({} read of {} rows): {} rows written ({} kept their UDF values), {} deleted; view version {}",
        changes.source_version,
        changes.mode,
        changes.rows_read,
        changes.rows_written,
        changes.rows_kept_udf_values,
        changes.rows_deleted,
        changes.view_version,
    )
}

fn describe(info: &ViewInfo) -> String {
    let query = &info.query;
    let mut text = format!("view      {}\nsource    {}\n", info.view, query.source);
    text += &format!("select    {}\n", query.select.join(", "));
    if query.copies.len() > query.select.len() {
        text += &format!("copies    {} (UDF inputs)\n", query.copies[query.select.len()..].join(", "));
    }
    text += &format!("where     {}\n", query.filter.as_deref().unwrap_or("(all rows)"));
    if let Some(seed) = query.shuffle_seed {
        text += &format!("shuffle   seed {seed}\n");
    }
    let reflects = info.source_version.map(|v| v.to_string()).unwrap_or_else(|| "none (never refreshed)".to_string());
    text += &format!("reflects  source version {reflects} (latest {})\n", info.source_latest_version);
    text += &format!(
        "refresh   {}\n",
        if info.incremental { "incremental (stable row ids)" } else { "full read (the source has no stable row ids)" }
    );
    text += &format!("rows      {}\n", info.rows);
    for column in &info.udf_columns {
        text += &format!(
            "column    {} = {}({}): {} of {} rows filled\n",
            column.column,
            column.udf,
            column.inputs.join(", "),
            column.filled,
            info.rows
        );
    }
    text
}
