//! A materialized view: creating one, refreshing it, and telling what it
//! holds.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::{RecordBatch, RecordBatchIterator};
use arrow_schema::{Field, Schema as ArrowSchema};
use lance::Dataset;
use lance::dataset::transaction::Operation;
use lance::dataset::{WriteMode, WriteParams};
use leman_engine::{
    BackfillOptions, Error, Job, LocalExecutor, Result, TableLease, TableLocation, TableStores, Udf, UdfRecord, UdfRegistry,
};
use arrow_row::{RowConverter, SortField};
use serde::Serialize;

use crate::diff::changes;
use crate::hash::hash_type;
use crate::query::{INPUTS_HASH, ROWS_VERSION_KEY, SOURCE_ROW_ID, SOURCE_VERSION_KEY, VALUES_HASH, ViewQuery, ViewRecord};
use crate::read::{ReadMode, read_changes};
use crate::write::commit_changes;

/// The lease a refresh holds on its view.
const REFRESH_LEASE: &str = "__view_refresh";

/// How a refresh runs.
#[derive(Debug, Clone, Default)]
pub struct RefreshOptions {
    /// The source version to reflect (default: the latest), older than the
    /// one reflected now or newer.
    pub to_version: Option<u64>,
    /// How the UDF columns are computed: concurrency, batch size, timeout
    /// (a filter, read version, stage or fragment limit would leave the
    /// view unlike its query, and is refused).
    pub backfill: BackfillOptions,
}

/// What a refresh changed in the view's rows, before its UDF columns are
/// computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowChanges {
    /// The source version the view reflects now.
    pub source_version: u64,
    /// The one it reflected before (none: it was never refreshed).
    pub previous_version: Option<u64>,
    /// How the changes were found.
    pub mode: ReadMode,
    /// Source rows read with their values.
    pub rows_read: u64,
    /// Rows written into the view (new or changed).
    pub rows_written: u64,
    /// Rows deleted from it (gone, filtered out, or changed).
    pub rows_deleted: u64,
    /// Rows written that kept their UDF values (their inputs unchanged).
    pub rows_kept_udf_values: u64,
    /// The view's version after the change.
    pub view_version: u64,
}

/// A refresh under way: what it changed in the rows, and the backfill
/// computing the UDF values of the rows written (none without UDF
/// columns).
#[derive(Debug)]
pub struct Refresh {
    /// What changed in the rows.
    pub changes: RowChanges,
    /// The backfill of the view's UDF columns; it holds the view's refresh
    /// lease until it ends.
    pub job: Option<Job>,
}

/// A view's query, state and fill, as `leman view show` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViewInfo {
    /// The view's URI.
    pub view: String,
    /// The query.
    pub query: ViewRecord,
    /// The source version its rows reflect (none before its first refresh).
    pub source_version: Option<u64>,
    /// The source's latest version.
    pub source_latest_version: u64,
    /// Whether refreshes read only the rows changed (the source has stable
    /// row ids and version tracking).
    pub incremental: bool,
    /// The view's rows.
    pub rows: u64,
    /// Each UDF column, its UDF and how many rows hold a value.
    pub udf_columns: Vec<UdfColumnInfo>,
}

/// One UDF column of a view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UdfColumnInfo {
    /// The column.
    pub column: String,
    /// Its UDF, as recorded.
    pub udf: String,
    /// The UDF's inputs.
    pub inputs: Vec<String>,
    /// Rows holding a value.
    pub filled: u64,
}

/// A materialized view: a Lance table holding a query over a source table,
/// refreshed incrementally.
#[derive(Debug, Clone)]
pub struct View {
    location: TableLocation,
    registry: UdfRegistry,
}

impl View {
    /// Creates the view at `location` for `query`: checks the query against
    /// the source, and makes an empty table of the view's schema with the
    /// query recorded; [`refresh`](Self::refresh) builds it. The UDFs are
    /// registered in `registry`.
    pub async fn create(location: TableLocation, query: ViewQuery, registry: UdfRegistry) -> Result<Self> {
        let source_location = TableLocation::new(&query.source, location.storage_options.clone())?;
        let source = source_location.open_dataset().await?;
        let source_schema = ArrowSchema::from(source.schema());
        let (record, schema) = view_schema(&query, &source_location.uri, &source_schema)?;
        if let Some(filter) = &record.filter {
            let mut scan = source.scan();
            scan.filter(filter).map_err(|error| invalid_filter(filter, &error))?;
            scan.create_plan().await.map_err(|error| invalid_filter(filter, &error))?;
        }
        match location.open_dataset().await {
            Ok(_) => return Err(Error::TableExists { uri: location.uri.clone() }),
            Err(error @ Error::Storage { .. }) => return Err(error),
            Err(_) => {}
        }
        let schema = Arc::new(schema.with_metadata(record.to_metadata()));
        let reader = RecordBatchIterator::new(Vec::<std::result::Result<RecordBatch, _>>::new(), schema);
        let params = WriteParams { mode: WriteMode::Create, store_params: Some(location.store_params()), ..WriteParams::default() };
        Dataset::write(reader, location.uri.as_str(), Some(params)).await?;
        for (_, udf) in &query.columns {
            registry.register(udf.clone());
        }
        Ok(Self { location, registry })
    }

    /// Opens the view at `location`, resolving its UDFs in `registry`.
    pub async fn open(location: TableLocation, registry: UdfRegistry) -> Result<Self> {
        let view = Self { location, registry };
        view.record().await?;
        Ok(view)
    }

    /// The view's URI.
    pub fn uri(&self) -> &str {
        &self.location.uri
    }

    /// Where the view is.
    pub fn location(&self) -> &TableLocation {
        &self.location
    }

    /// The query and the source version the rows reflect.
    pub async fn record(&self) -> Result<(ViewRecord, Option<u64>)> {
        let dataset = self.location.open_dataset().await?;
        ViewRecord::from_metadata(&self.location.uri, &dataset.schema().metadata)
    }

    /// The source table, reached with the view's storage options.
    fn source_location(&self, record: &ViewRecord) -> Result<TableLocation> {
        TableLocation::new(&record.source, self.location.storage_options.clone())
    }

    /// Makes the view's rows those of its query on the source at
    /// `options.to_version` (default: the latest), writing only rows new or
    /// changed since the version it reflects (in one commit), then starts
    /// the backfill of its UDF columns for the rows written whose inputs
    /// changed. Another refresh of the view under way refuses this one,
    /// naming it. A refresh stopped half way resumes where it stopped when
    /// run again: its rows are committed whole or not at all, and its
    /// backfill resumes from its checkpoints.
    pub async fn refresh(&self, options: RefreshOptions) -> Result<Refresh> {
        refuse_partial(&options.backfill)?;
        let holder = format!("refresh {}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let stores = TableStores::open(&self.location).await?;
        let lease = stores.lease(REFRESH_LEASE, &holder).await.map_err(|error| match error {
            Error::ColumnBusy { job_id, pid, host, .. } => Error::ViewBusy { view: self.uri().to_string(), holder: job_id, pid, host },
            other => other,
        })?;
        let outcome = self.refresh_rows(&options, &lease).await;
        let (changes, record) = match outcome {
            Ok(done) => done,
            Err(error) => {
                lease.release().await;
                return Err(error);
            }
        };
        if record.udf_columns.is_empty() {
            lease.release().await;
            return Ok(Refresh { changes, job: None });
        }
        let job = leman_engine::start_many(
            &self.location,
            &record.udf_columns,
            options.backfill.clone(),
            &self.registry,
            Arc::new(LocalExecutor),
        )
        .await;
        match job {
            Ok(job) => Ok(Refresh { changes, job: Some(job.holding(lease)) }),
            Err(error) => {
                lease.release().await;
                Err(error)
            }
        }
    }

    /// The first half of a refresh: the rows, written while `lease` is
    /// still this refresh's.
    async fn refresh_rows(&self, options: &RefreshOptions, lease: &TableLease) -> Result<(RowChanges, ViewRecord)> {
        let mut view = self.location.open_dataset().await?;
        let (record, previous) = ViewRecord::from_metadata(&self.location.uri, &view.schema().metadata)?;
        let interrupted = previous.is_some() && !rows_as_recorded(&view).await;
        let source_location = self.source_location(&record)?;
        let latest = source_location.open_dataset().await?;
        let source = match options.to_version {
            Some(version) if version != latest.version().version => latest.checkout_version(version).await.map_err(|error| match error {
                lance::Error::VersionNotFound { .. } | lance::Error::DatasetNotFound { .. } | lance::Error::NotFound { .. } => {
                    Error::VersionNotFound { table: record.source.clone(), version, source: error }
                }
                other => Error::Lance(other),
            })?,
            _ => latest,
        };
        let target = source.version().version;
        // Forwards from a version the rows reflect exactly, a source with
        // stable row ids is read incrementally; else whole.
        let since = previous.filter(|&previous| previous <= target && !interrupted && has_stable_row_ids(&source));
        let started = std::time::Instant::now();
        let (mode, held, read) = read_changes(&view, &source, &record, since).await?;
        let read_at = started.elapsed();
        let planned = changes(&held, &read.candidates, read.present.as_ref(), !has_stable_row_ids(&source));
        let (rows_read, rows_written, rows_deleted, rows_kept) =
            (read.candidates.len(), planned.insert.len(), planned.delete.len(), planned.carried());
        if !planned.is_empty() {
            lease.check().await?;
            view = commit_changes(view, &self.location, &record, planned, read).await?;
        }
        if previous != Some(target) || interrupted || rows_written + rows_deleted > 0 {
            // Cut off before this commit, the next refresh finds the rows'
            // commit after the rows version recorded, and reads whole.
            lease.check().await?;
            let (target, rows_version) = (target.to_string(), view.version().version.to_string());
            view.update_schema_metadata([(SOURCE_VERSION_KEY, target.as_str()), (ROWS_VERSION_KEY, rows_version.as_str())]).await?;
        }
        tracing::debug!(view = %self.location.uri, %mode, ?read_at, done = ?started.elapsed(), "refreshed the view's rows");
        let changes = RowChanges {
            source_version: target,
            previous_version: previous,
            mode,
            rows_read: rows_read as u64,
            rows_written: rows_written as u64,
            rows_deleted: rows_deleted as u64,
            rows_kept_udf_values: rows_kept as u64,
            view_version: view.version().version,
        };
        Ok((changes, record))
    }

    /// The view's query, the source version it reflects, its rows and how
    /// full its UDF columns are.
    pub async fn info(&self) -> Result<ViewInfo> {
        let dataset = self.location.open_dataset().await?;
        let (record, source_version) = ViewRecord::from_metadata(&self.location.uri, &dataset.schema().metadata)?;
        let source = self.source_location(&record)?.open_dataset().await?;
        let mut udf_columns = Vec::with_capacity(record.udf_columns.len());
        for column in &record.udf_columns {
            let recorded = dataset.schema().field(column).and_then(|field| UdfRecord::from_metadata(&field.metadata));
            let filled = dataset.count_rows(Some(format!("{} IS NOT NULL", leman_engine::quote_identifier(column)))).await?;
            udf_columns.push(UdfColumnInfo {
                column: column.clone(),
                udf: recorded.as_ref().map(|r| format!("{} v{}", r.name, r.version)).unwrap_or_default(),
                inputs: recorded.map(|r| r.inputs).unwrap_or_default(),
                filled: filled as u64,
            });
        }
        Ok(ViewInfo {
            view: self.location.uri.clone(),
            rows: dataset.count_rows(None).await? as u64,
            incremental: has_stable_row_ids(&source),
            source_latest_version: source.version().version,
            source_version,
            query: record,
            udf_columns,
        })
    }
}

/// Whether refreshes of a view of `source` can read only the rows
/// changed: the source has stable row ids (and with them, row version
/// tracking).
pub fn has_stable_row_ids(source: &Dataset) -> bool {
    source.manifest().uses_stable_row_ids()
}

/// The view's record and Arrow schema for `query` over a source of
/// `source_schema`, or the first thing wrong with the query.
fn view_schema(query: &ViewQuery, source_uri: &str, source_schema: &ArrowSchema) -> Result<(ViewRecord, ArrowSchema)> {
    let select: Vec<String> = if query.select.is_empty() {
        source_schema.fields().iter().map(|f| f.name().clone()).collect()
    } else {
        query.select.clone()
    };
    let mut inputs: Vec<String> = Vec::new();
    for (name, udf) in &query.columns {
        for input in udf.inputs() {
            if source_schema.field_with_name(input).is_err() {
                return Err(Error::InputNotFound { udf: udf.name().to_string(), input: input.clone(), table: source_uri.to_string() });
            }
            if !inputs.contains(input) {
                inputs.push(input.clone());
            }
        }
        if name.is_empty() {
            return Err(Error::InvalidOptions { reason: format!("UDF {} needs a column name", udf.name()) });
        }
    }
    let mut copies: Vec<String> = Vec::new();
    for column in select.iter().chain(&inputs) {
        if source_schema.field_with_name(column).is_err() {
            return Err(Error::ColumnNotFound { table: source_uri.to_string(), column: column.clone() });
        }
        if !copies.contains(column) {
            copies.push(column.clone());
        }
    }
    let mut names: HashSet<&str> = copies.iter().map(String::as_str).collect();
    for name in query.columns.iter().map(|(name, _)| name.as_str()).chain(copies.iter().map(String::as_str)) {
        if name.starts_with("__") {
            return Err(Error::InvalidOptions { reason: format!("column {name} of the view: names starting with __ are the view's own; pick another name") });
        }
        if lance_core::is_system_column(name) {
            return Err(Error::InvalidOptions { reason: format!("column {name} of the view: {name} is a Lance system column; pick another name") });
        }
    }
    for (name, _) in &query.columns {
        if !names.insert(name) {
            return Err(Error::InvalidOptions {
                reason: format!("column {name} of the view is named twice (or is also copied from the source); pick another name"),
            });
        }
    }
    let compared: Vec<SortField> = copies
        .iter()
        .filter_map(|column| source_schema.field_with_name(column).ok())
        .map(|field| SortField::new(field.data_type().clone()))
        .collect();
    if !RowConverter::supports_fields(&compared) {
        let unsupported = copies
            .iter()
            .filter_map(|column| source_schema.field_with_name(column).ok())
            .find(|field| !RowConverter::supports_fields(&[SortField::new(field.data_type().clone())]));
        let what = unsupported.map(|f| format!("column {} ({})", f.name(), f.data_type())).unwrap_or_else(|| "a column".to_string());
        return Err(Error::InvalidOptions {
            reason: format!("{what} cannot be compared row by row, as a view must to refresh; leave it out of the selected columns"),
        });
    }
    let mut fields = vec![
        Field::new(SOURCE_ROW_ID, arrow_schema::DataType::UInt64, false),
        Field::new(VALUES_HASH, hash_type(), false),
        Field::new(INPUTS_HASH, hash_type(), false),
    ];
    for column in &copies {
        let field = source_schema.field_with_name(column)?;
        let metadata = field.metadata().iter().filter(|(key, _)| !key.starts_with("leman.")).map(|(k, v)| (k.clone(), v.clone())).collect();
        fields.push(field.clone().with_metadata(metadata));
    }
    for (name, udf) in &query.columns {
        fields.push(udf_field(name, udf));
    }
    let record = ViewRecord {
        source: source_uri.to_string(),
        select,
        copies,
        filter: query.filter.clone(),
        udf_columns: query.columns.iter().map(|(name, _)| name.clone()).collect(),
        inputs,
        shuffle_seed: query.shuffle_seed,
        max_rows_per_file: query.max_rows_per_file,
    };
    Ok((record, ArrowSchema::new(fields)))
}

/// Whether the view's rows are still those the source version it records
/// describes: every commit after its rows version is one that leaves rows
/// as they are (recording the version, filling UDF columns, compacting,
/// indexing). A refresh cut off between committing its rows and recording
/// their version leaves a commit that does not, as does any other writer;
/// a commit that cannot be read any more (cleaned up) counts as one.
async fn rows_as_recorded(view: &Dataset) -> bool {
    let Some(rows_version) = ViewRecord::rows_version(&view.schema().metadata) else { return false };
    for version in rows_version + 1..=view.version().version {
        let operation = match view.read_transaction_by_version(version).await {
            Ok(Some(transaction)) => transaction.operation,
            Ok(None) | Err(_) => return false,
        };
        let keeps_rows = matches!(
            operation,
            Operation::UpdateConfig { .. }
                | Operation::DataReplacement { .. }
                | Operation::Rewrite { .. }
                | Operation::ReserveFragments { .. }
                | Operation::CreateIndex { .. }
        );
        if !keeps_rows {
            tracing::debug!(version, %operation, "the view's rows changed after the version they were recorded at: the refresh reads its source whole");
            return false;
        }
    }
    true
}

fn udf_field(name: &str, udf: &Udf) -> Field {
    Field::new(name, udf.data_type().clone(), true).with_metadata(UdfRecord::of(udf).to_metadata())
}

fn invalid_filter(filter: &str, error: &lance::Error) -> Error {
    Error::InvalidOptions { reason: format!("the view's filter {filter:?} does not compile against its source: {error}") }
}

/// What a refresh's backfill cannot take: options that would leave the
/// view unlike its query.
fn refuse_partial(options: &BackfillOptions) -> Result<()> {
    let refused = [
        (options.filter.is_some(), "filter (--where)"),
        (options.read_version.is_some(), "read version (use --to-version)"),
        (options.num_frags.is_some(), "fragment limit"),
        (options.stage, "stage"),
        (options.retry_errors.is_some(), "retry of a job's failed rows"),
        (options.udf.is_some() || options.input_columns.is_some(), "UDF or input override"),
    ];
    match refused.iter().find(|(set, _)| *set) {
        Some((_, what)) => Err(Error::InvalidOptions {
            reason: format!("a view refresh takes no {what}: it would leave the view unlike its query"),
        }),
        None => Ok(()),
    }
}
