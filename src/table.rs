//! A Lance table: its data, its UDF columns, its backfills.

use std::sync::Arc;

use arrow_array::{RecordBatch, RecordBatchIterator};
use arrow_schema::{Field, Schema as ArrowSchema};
use lance::Dataset;
use lance::dataset::{NewColumnTransform, WriteMode, WriteParams};
use leman_engine::{
    BackfillOptions, BackfillPlan, CleanupOptions, CleanupReport, Error, Job, JobRecord, LocalExecutor, Result, RowErrorRecord,
    StorageOptions, Summary, TableLocation, TableStores, Udf, UdfRecord, UdfRegistry,
};

/// How `add_columns` goes on after declaring the columns.
#[derive(Debug, Clone, Default)]
pub struct AddColumnsOptions {
    /// Backfill each new column right away with these options.
    pub backfill: Option<BackfillOptions>,
}

/// A Lance table. Cheap to clone; every call reads the latest version.
#[derive(Debug, Clone)]
pub struct Table {
    location: TableLocation,
    registry: UdfRegistry,
}

impl Table {
    /// Opens the Lance dataset at `uri` (a directory such as pylance writes,
    /// a `file://` URI, or an `s3://` one reached with what the environment
    /// sets), resolving UDF names in `registry`.
    pub async fn open(uri: &str, registry: UdfRegistry) -> Result<Self> {
        Self::open_with(uri, StorageOptions::new(), registry).await
    }

    /// Opens the Lance dataset at `uri`, reaching its object store with
    /// `storage_options` (see [`connect_with`](crate::connect_with)).
    pub async fn open_with(uri: &str, storage_options: StorageOptions, registry: UdfRegistry) -> Result<Self> {
        Self::open_at(TableLocation::new(uri, storage_options)?, registry).await
    }

    /// Opens the table at `location`.
    pub async fn open_at(location: TableLocation, registry: UdfRegistry) -> Result<Self> {
        let table = Self { location, registry };
        table.dataset().await?;
        Ok(table)
    }

    pub(crate) fn new_unchecked(location: TableLocation, registry: UdfRegistry) -> Self {
        Self { location, registry }
    }

    /// The table's URI.
    pub fn uri(&self) -> &str {
        &self.location.uri
    }

    /// Where the table is and how its store is reached.
    pub fn location(&self) -> &TableLocation {
        &self.location
    }

    /// The UDFs this table resolves names in.
    pub fn registry(&self) -> &UdfRegistry {
        &self.registry
    }

    /// The latest version of the dataset, freshly opened.
    pub async fn dataset(&self) -> Result<Dataset> {
        self.location.open_dataset().await
    }

    /// The latest version number.
    pub async fn version(&self) -> Result<u64> {
        Ok(self.dataset().await?.version().version)
    }

    /// The table's Arrow schema.
    pub async fn schema(&self) -> Result<ArrowSchema> {
        Ok(ArrowSchema::from(self.dataset().await?.schema()))
    }

    /// Rows (optionally those matching a SQL filter).
    pub async fn count_rows(&self, filter: Option<&str>) -> Result<usize> {
        Ok(self.dataset().await?.count_rows(filter.map(str::to_string)).await?)
    }

    /// Appends rows; returns the new version.
    pub async fn append(&self, batches: Vec<RecordBatch>) -> Result<u64> {
        let mut dataset = self.dataset().await?;
        let Some(first) = batches.first() else { return Ok(dataset.version().version) };
        let reader = RecordBatchIterator::new(batches.clone().into_iter().map(Ok), first.schema());
        let params =
            WriteParams { mode: WriteMode::Append, store_params: Some(self.location.store_params()), ..WriteParams::default() };
        dataset.append(reader, Some(params)).await?;
        Ok(dataset.version().version)
    }

    /// Deletes the rows matching a SQL predicate; returns the new version.
    pub async fn delete(&self, predicate: &str) -> Result<u64> {
        let mut dataset = self.dataset().await?;
        dataset.delete(predicate).await?;
        Ok(dataset.version().version)
    }

    /// Declares a nullable column per `(name, udf)` pair, recording the UDF
    /// (name, version, inputs) in the field's metadata. No data is written,
    /// unless `options.backfill` is set: then each column is backfilled in
    /// turn and their summaries returned.
    ///
    /// The UDFs are registered in the table's registry under their names.
    pub async fn add_columns<S: Into<String>>(
        &self,
        columns: impl IntoIterator<Item = (S, Udf)>,
        options: AddColumnsOptions,
    ) -> Result<Vec<Summary>> {
        let mut dataset = self.dataset().await?;
        let columns: Vec<(String, Udf)> = columns.into_iter().map(|(name, udf)| (name.into(), udf)).collect();
        let mut fields = Vec::with_capacity(columns.len());
        for (name, udf) in &columns {
            if dataset.schema().field(name).is_some() {
                return Err(Error::ColumnExists { table: self.uri().to_string(), column: name.clone() });
            }
            for input in udf.inputs() {
                if dataset.schema().field(input).is_none() {
                    return Err(Error::InputNotFound {
                        udf: udf.name().to_string(),
                        input: input.clone(),
                        table: self.uri().to_string(),
                    });
                }
            }
            let field = Field::new(name, udf.data_type().clone(), true).with_metadata(UdfRecord::of(udf).to_metadata());
            fields.push(field);
        }
        if fields.is_empty() {
            return Ok(Vec::new());
        }
        dataset.add_columns(NewColumnTransform::AllNulls(Arc::new(ArrowSchema::new(fields))), None, None).await?;
        for (_, udf) in &columns {
            self.registry.register(udf.clone());
        }
        let mut summaries = Vec::new();
        if let Some(backfill) = options.backfill {
            for (name, _) in &columns {
                summaries.push(self.backfill(name, backfill.clone()).await?.wait().await?);
            }
        }
        Ok(summaries)
    }

    /// Starts a backfill of `column`. Everything that can be checked is
    /// checked before this returns: an unknown column, a bad filter or a
    /// UDF of the wrong type is an `Err` here and the table is untouched.
    pub async fn backfill(&self, column: &str, options: BackfillOptions) -> Result<Job> {
        leman_engine::start(&self.location, column, options, &self.registry, Arc::new(LocalExecutor)).await
    }

    /// What [`backfill`](Self::backfill) would do with these options,
    /// without doing it: the same checks, and the fragments, tasks and rows
    /// it would compute or take from checkpoints. Changes nothing.
    pub async fn plan_backfill(&self, column: &str, options: &BackfillOptions) -> Result<BackfillPlan> {
        leman_engine::plan_backfill(&self.location, column, options, &self.registry).await
    }

    /// Removes the checkpoints beside the table that no job can reuse
    /// (see [`leman_engine::cleanup`]) and says what it removed and kept.
    pub async fn cleanup(&self, options: &CleanupOptions) -> Result<CleanupReport> {
        leman_engine::cleanup(&self.location, options).await
    }

    /// The table's jobs, oldest first. A job recorded as running whose
    /// process stopped renewing its lease is reported as interrupted.
    pub async fn jobs(&self) -> Result<Vec<JobRecord>> {
        TableStores::open(&self.location).await?.job_records().await
    }

    /// The record of one job.
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        TableStores::open(&self.location).await?.job_record(id).await
    }

    /// Asks running job `id` to stop, whichever process or cluster runs it:
    /// it stops after its batches in flight (within about a second of the
    /// ask, plus those batches), keeps its checkpoints, and is recorded
    /// `cancelled`; running the same backfill again resumes it. Returns the
    /// job's record as it stood when asked. A job that is not running is an
    /// error.
    pub async fn cancel_job(&self, id: &str) -> Result<JobRecord> {
        TableStores::open(&self.location).await?.request_cancel(self.uri(), id).await
    }

    /// The rows UDFs failed on, of job `job_id` or of every job: those the
    /// `skip` policy left null and those that failed a job. A backfill with
    /// [`BackfillOptions::retry_errors`] recomputes exactly the rows of one
    /// job.
    pub async fn errors(&self, job_id: Option<&str>) -> Result<Vec<RowErrorRecord>> {
        TableStores::open(&self.location).await?.row_errors.list(job_id).await
    }

    /// Replaces the UDF recorded for `column` with `udf` (same output type;
    /// its inputs must be columns of the table) and registers it. Nothing
    /// is computed: the next backfill without a filter recomputes every row
    /// whose value came from another UDF or version, not only the null
    /// ones, and a dry run says how many. Returns the record replaced.
    pub async fn alter_udf(&self, column: &str, udf: Udf) -> Result<UdfRecord> {
        let mut dataset = self.dataset().await?;
        let field = dataset
            .schema()
            .field(column)
            .ok_or_else(|| Error::ColumnNotFound { table: self.uri().to_string(), column: column.to_string() })?;
        let old = UdfRecord::from_metadata(&field.metadata).ok_or_else(|| Error::NoUdf { column: column.to_string() })?;
        if &field.data_type() != udf.data_type() {
            return Err(Error::TypeMismatch {
                udf: udf.name().to_string(),
                column: column.to_string(),
                expected: field.data_type().to_string(),
                actual: udf.data_type().to_string(),
            });
        }
        for input in udf.inputs() {
            if input == column {
                return Err(Error::InvalidOptions { reason: format!("UDF {} cannot read column {column}, which it computes", udf.name()) });
            }
            if dataset.schema().field(input).is_none() {
                return Err(Error::InputNotFound { udf: udf.name().to_string(), input: input.clone(), table: self.uri().to_string() });
            }
        }
        dataset.update_field_metadata().update(column, UdfRecord::of(&udf).to_metadata())?.await?;
        self.registry.register(udf);
        Ok(old)
    }

    /// The UDF recorded for `column`, if it is a UDF column.
    pub async fn udf_record(&self, column: &str) -> Result<Option<UdfRecord>> {
        let dataset = self.dataset().await?;
        let field = dataset
            .schema()
            .field(column)
            .ok_or_else(|| Error::ColumnNotFound { table: self.uri().to_string(), column: column.to_string() })?;
        Ok(UdfRecord::from_metadata(&field.metadata))
    }
}
