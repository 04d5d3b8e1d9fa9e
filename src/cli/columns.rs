//! `leman add-column`, `leman alter-column` and `leman drop-column`:
//! declare a column computed by a built-in UDF (or, unpacked, one column per
//! field of its struct), replace the UDF of one, with its error policy, or
//! drop one with its siblings. Metadata only: nothing is computed until a
//! backfill.

use std::process::ExitCode;

use clap::Args;

use leman_engine::{Error, ErrorPolicy, Result, RetryBackoff, Udf};

use crate::builtins;
use crate::table::{AddColumnsOptions, Table, Unpack};

/// What a failing UDF call does; recorded with the column's UDF by
/// `add-column` and `alter-column`, for one run by `backfill`.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct OnErrorArgs {
    /// What a failing UDF call does: fail (the job fails, naming the rows),
    /// retry:N (N more calls with backoff, then fail) or skip (the row is
    /// left null and recorded; `leman errors` lists them).
    #[arg(long, value_name = "fail|retry:N|skip")]
    pub on_error: Option<ErrorPolicy>,
    /// Wait before the first retry and the longest wait, in milliseconds
    /// (default 200,20000); each wait doubles, with jitter.
    #[arg(long, value_name = "FIRST,MAX")]
    pub retry_backoff_ms: Option<RetryBackoff>,
}

impl OnErrorArgs {
    /// `udf` with the policy and backoff given, if given.
    pub(crate) fn apply(&self, udf: Udf) -> Udf {
        let udf = match self.on_error {
            Some(policy) => udf.with_error_policy(policy),
            None => udf,
        };
        match self.retry_backoff_ms {
            Some(backoff) => udf.with_retry_backoff(backoff),
            None => udf,
        }
    }
}

/// A table and the built-in UDF to compute a column with: what
/// `add-column` and `alter-column` share.
#[derive(Debug, Args)]
pub(crate) struct ColumnUdfArgs {
    /// The table: a Lance dataset directory or an s3:// URI.
    #[arg(long)]
    table: String,
    #[command(flatten)]
    storage: super::storage::StorageArgs,
    /// Built-in UDF: str_len, sha256, hash_embed, busy, wait, parse_int or
    /// text_stats (a struct: declare it with --unpack).
    #[arg(long)]
    udf: String,
    /// UDF argument, `key=value` (busy: micros=N).
    #[arg(long = "udf-arg", value_parser = super::parse_key_value)]
    udf_args: Vec<(String, String)>,
    #[command(flatten)]
    on_error: OnErrorArgs,
}

impl ColumnUdfArgs {
    async fn open(&self) -> Result<Table> {
        Table::open_with(&self.table, self.storage.options(), builtins::registry()).await
    }
}

#[derive(Debug, Args)]
pub(crate) struct AddColumnArgs {
    #[command(flatten)]
    target: ColumnUdfArgs,
    /// The new column; with --unpack, the name of the group of columns
    /// (default: the UDF's name), by which `backfill --column` and
    /// `drop-column` also know them.
    #[arg(long, required_unless_present = "unpack")]
    column: Option<String>,
    /// Input column(s), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    input: Vec<String>,
    /// The UDF returns a struct: declare one column per field, named as
    /// the field, filled together by one backfill.
    #[arg(long)]
    unpack: bool,
    /// With --unpack, put this before each column's name.
    #[arg(long, requires = "unpack", default_value = "")]
    prefix: String,
}

#[derive(Debug, Args)]
pub(crate) struct AlterColumnArgs {
    #[command(flatten)]
    target: ColumnUdfArgs,
    /// The column.
    #[arg(long)]
    column: String,
    /// Input column(s), comma-separated (default: the column's inputs now).
    #[arg(long, value_delimiter = ',')]
    input: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DropColumnArgs {
    /// The table: a Lance dataset directory or an s3:// URI.
    #[arg(long)]
    table: String,
    #[command(flatten)]
    storage: super::storage::StorageArgs,
    /// The column(s), comma-separated; a column of an unpacked group (or
    /// the group's name) drops every column of the group.
    #[arg(long, value_delimiter = ',', required = true)]
    column: Vec<String>,
}

pub(crate) async fn add(args: AddColumnArgs) -> Result<ExitCode> {
    let target = &args.target;
    let table = target.open().await?;
    let udf = target.on_error.apply(builtin(&table, &target.udf, &args.input, &target.udf_args).await?);
    let name = args.column.clone().unwrap_or_else(|| udf.name().to_string());
    let unpack = args.unpack.then(|| Unpack { prefix: args.prefix.clone() });
    let options = AddColumnsOptions { unpack: unpack.clone(), ..AddColumnsOptions::default() };
    let before = table.schema().await?;
    table.add_columns([(name.as_str(), udf.clone())], options).await?;
    let added: Vec<String> = match unpack {
        None => vec![name.clone()],
        Some(_) => {
            let after = table.schema().await?;
            after.fields().iter().filter(|f| before.field_with_name(f.name()).is_err()).map(|f| f.name().clone()).collect()
        }
    };
    let what = if args.unpack { format!("columns {} (group {name})", added.join(", ")) } else { format!("column {name}") };
    println!(
        "added {what} computed by {}({}) to {}, on error: {}",
        udf.name(),
        args.input.join(", "),
        table.uri(),
        udf.error_policy()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn drop(args: DropColumnArgs) -> Result<ExitCode> {
    let table = Table::open_with(&args.table, args.storage.options(), builtins::registry()).await?;
    let columns: Vec<&str> = args.column.iter().map(String::as_str).collect();
    let dropped = table.drop_columns(&columns).await?;
    println!("dropped columns {} from {}", dropped.join(", "), table.uri());
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn alter(args: AlterColumnArgs) -> Result<ExitCode> {
    let target = &args.target;
    let table = target.open().await?;
    let recorded = table.udf_record(&args.column).await?.ok_or_else(|| Error::NoUdf { column: args.column.clone() })?;
    let inputs = if args.input.is_empty() { recorded.inputs.clone() } else { args.input.clone() };
    // The column keeps its error policy unless one is given.
    let kept = OnErrorArgs {
        on_error: target.on_error.on_error.or(recorded.on_error),
        retry_backoff_ms: target.on_error.retry_backoff_ms.or(recorded.retry_backoff),
    };
    let udf = kept.apply(builtin(&table, &target.udf, &inputs, &target.udf_args).await?);
    let old = table.alter_udf(&args.column, udf.clone()).await?;
    println!(
        "column {} of {} is now computed by {}({}) version {}, on error: {} (was {} version {}); \
         the next backfill without --where recomputes the rows another UDF or version computed",
        args.column,
        table.uri(),
        udf.name(),
        inputs.join(", "),
        udf.version(),
        udf.error_policy(),
        old.name,
        old.version,
    );
    Ok(ExitCode::SUCCESS)
}

/// Built-in `name` over `inputs`, each checked against the table's schema.
async fn builtin(table: &Table, name: &str, inputs: &[String], args: &[(String, String)]) -> Result<Udf> {
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let udf = builtins::get(name, &inputs, args).map_err(|e| Error::InvalidOptions { reason: e.to_string() })?;
    let schema = table.schema().await?;
    for input in &inputs {
        let field = schema.field_with_name(input).map_err(|_| Error::InputNotFound {
            udf: udf.name().to_string(),
            input: input.to_string(),
            table: table.uri().to_string(),
        })?;
        builtins::check_input(udf.name(), input, field.data_type())?;
    }
    Ok(udf)
}
