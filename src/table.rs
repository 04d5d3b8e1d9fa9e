//! A Lance table: its data, its UDF columns, its backfills.

use std::sync::Arc;

use arrow_array::{RecordBatch, RecordBatchIterator};
use arrow_schema::{DataType, Field, Schema as ArrowSchema};
use lance::Dataset;
use lance::dataset::{NewColumnTransform, WriteMode, WriteParams};
use leman_engine::{
    BackfillOptions, BackfillPlan, CleanupOptions, CleanupReport, Error, Job, JobRecord, LocalExecutor, Result, RowErrorRecord,
    StorageOptions, Summary, TableLocation, TableStores, Udf, UdfRecord, UdfRegistry, Unpacked,
};

/// How `add_columns` declares the columns, and goes on after.
#[derive(Debug, Clone, Default)]
pub struct AddColumnsOptions {
    /// Backfill each new column right away with these options.
    pub backfill: Option<BackfillOptions>,
    /// Each UDF returns a struct whose fields fill sibling columns, one per
    /// field, instead of one column of the struct.
    pub unpack: Option<Unpack>,
}

/// How the siblings of an unpacked UDF are named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unpack {
    /// Put before each struct field's name (`p_` makes `n_words`
    /// `p_n_words`).
    pub prefix: String,
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
    /// With `options.unpack`, each UDF returns a struct and `name` names a
    /// group of sibling columns, one per struct field (named by the field,
    /// after the prefix): one backfill of the group (by its name or any
    /// sibling's) calls the UDF once per row and fills them all, in one data
    /// file per fragment. The UDF is recorded once, on the first sibling;
    /// [`drop_columns`](Self::drop_columns) drops the siblings together.
    ///
    /// The UDFs are registered in the table's registry under their names.
    pub async fn add_columns<S: Into<String>>(
        &self,
        columns: impl IntoIterator<Item = (S, Udf)>,
        options: AddColumnsOptions,
    ) -> Result<Vec<Summary>> {
        let mut dataset = self.dataset().await?;
        let columns: Vec<(String, Udf)> = columns.into_iter().map(|(name, udf)| (name.into(), udf)).collect();
        let mut fields: Vec<Field> = Vec::with_capacity(columns.len());
        for (name, udf) in &columns {
            for input in udf.inputs() {
                if dataset.schema().field(input).is_none() {
                    return Err(Error::InputNotFound {
                        udf: udf.name().to_string(),
                        input: input.clone(),
                        table: self.uri().to_string(),
                    });
                }
            }
            let record = UdfRecord::of(udf).to_metadata();
            match &options.unpack {
                None => fields.push(Field::new(name, udf.data_type().clone(), true).with_metadata(record)),
                Some(unpack) => fields.extend(self.siblings(&dataset, name, udf, unpack)?),
            }
        }
        for (i, field) in fields.iter().enumerate() {
            if dataset.schema().field(field.name()).is_some() || fields[..i].iter().any(|f| f.name() == field.name()) {
                return Err(Error::ColumnExists { table: self.uri().to_string(), column: field.name().clone() });
            }
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

    /// The sibling columns of group `group`, filled by the fields of
    /// `udf`'s struct; the first records the UDF.
    fn siblings(&self, dataset: &Dataset, group: &str, udf: &Udf, unpack: &Unpack) -> Result<Vec<Field>> {
        let DataType::Struct(children) = udf.data_type() else {
            return Err(Error::InvalidOptions {
                reason: format!("UDF {} returns {}, not a struct: only a struct unpacks into columns", udf.name(), udf.data_type()),
            });
        };
        let taken = dataset.schema().field(group).is_some()
            || dataset.schema().fields.iter().any(|f| Unpacked::from_metadata(&f.metadata).is_some_and(|u| u.group == group));
        if taken || children.is_empty() {
            return Err(Error::InvalidOptions {
                reason: format!("group {group} of unpacked columns names a column or group of the table already, or has no fields; pick another name"),
            });
        }
        Ok(children
            .iter()
            .enumerate()
            .map(|(i, child)| {
                let mut metadata = Unpacked { group: group.to_string(), field: child.name().clone() }.to_metadata();
                if i == 0 {
                    metadata.extend(UdfRecord::of(udf).to_metadata());
                }
                Field::new(format!("{}{}", unpack.prefix, child.name()), child.data_type().clone(), true).with_metadata(metadata)
            })
            .collect())
    }

    /// Drops `columns` from the table's schema (a new version; the data
    /// stays in older versions until they are cleaned up). A column of an
    /// unpacked group, or the group's name, drops every sibling. Returns
    /// the columns dropped.
    pub async fn drop_columns(&self, columns: &[&str]) -> Result<Vec<String>> {
        let mut dataset = self.dataset().await?;
        let mut dropped: Vec<String> = Vec::new();
        for column in columns {
            let outputs = leman_engine::output_columns(&dataset, column)
                .ok_or_else(|| Error::ColumnNotFound { table: self.uri().to_string(), column: column.to_string() })?;
            for name in outputs.columns() {
                if !dropped.iter().any(|d| d == name) {
                    dropped.push(name.to_string());
                }
            }
        }
        let names: Vec<&str> = dropped.iter().map(String::as_str).collect();
        dataset.drop_columns(&names).await?;
        Ok(dropped)
    }

    /// Starts a backfill of `column`. Everything that can be checked is
    /// checked before this returns: an unknown column, a bad filter or a
    /// UDF of the wrong type is an `Err` here and the table is untouched.
    pub async fn backfill(&self, column: &str, options: BackfillOptions) -> Result<Job> {
        leman_engine::start(&self.location, column, options, &self.registry, Arc::new(LocalExecutor)).await
    }

    /// Backfills several columns in one pass: each batch is read once for
    /// all their UDFs, each column computes the rows of its own filter (by
    /// default, where it is null; `options.filter` applies to every one),
    /// and each fragment gets one data file holding them all, committed
    /// together. Lance writes several columns into one file only where a
    /// fragment holds all of them or none, so a fragment that holds some
    /// and not others refuses the backfill, naming it.
    ///
    /// ```no_run
    /// # async fn demo(table: leman::Table) -> leman::Result<()> {
    /// let summary = table.backfill_many(["a", "b"], leman::BackfillOptions::default()).await?.wait().await?;
    /// println!("{} rows computed, {} commits", summary.rows_computed, summary.commits);
    /// # Ok(()) }
    /// ```
    pub async fn backfill_many<S: Into<String>>(
        &self,
        columns: impl IntoIterator<Item = S>,
        options: BackfillOptions,
    ) -> Result<Job> {
        let columns: Vec<String> = columns.into_iter().map(Into::into).collect();
        leman_engine::start_many(&self.location, &columns, options, &self.registry, Arc::new(LocalExecutor)).await
    }

    /// What [`backfill`](Self::backfill) would do with these options,
    /// without doing it: the same checks, and the fragments, tasks and rows
    /// it would compute or take from checkpoints. Changes nothing.
    pub async fn plan_backfill(&self, column: &str, options: &BackfillOptions) -> Result<BackfillPlan> {
        self.plan_backfill_many([column], options).await
    }

    /// What [`backfill_many`](Self::backfill_many) would do; changes nothing.
    pub async fn plan_backfill_many<S: Into<String>>(
        &self,
        columns: impl IntoIterator<Item = S>,
        options: &BackfillOptions,
    ) -> Result<BackfillPlan> {
        let columns: Vec<String> = columns.into_iter().map(Into::into).collect();
        leman_engine::plan_backfill(&self.location, &columns, options, &self.registry).await
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

    /// Commits what staged jobs `job_ids` wrote (see
    /// [`BackfillOptions::stage`]), several columns in one transaction,
    /// rebased over appends made since. A fragment that changed since
    /// staging refuses the promote, naming it, unless `recompute`: then its
    /// job is staged again on the newest version (reusing what still holds)
    /// and promoted in its place.
    pub async fn promote(&self, job_ids: &[String], recompute: bool) -> Result<leman_engine::Promoted> {
        leman_engine::promote(&self.location, job_ids, recompute, &self.registry, Arc::new(LocalExecutor)).await
    }

    /// Removes what staged job `job_id` wrote; returns the bytes removed.
    pub async fn discard(&self, job_id: &str) -> Result<u64> {
        leman_engine::discard(&self.location, job_id).await
    }

    /// What staged job `job_id` wrote, if it is staged.
    pub async fn staged(&self, job_id: &str) -> Result<Option<leman_engine::StagedJob>> {
        TableStores::open(&self.location).await?.staged.get(job_id).await
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
        let not_found = || Error::ColumnNotFound { table: self.uri().to_string(), column: column.to_string() };
        let outputs = leman_engine::output_columns(&dataset, column).ok_or_else(not_found)?;
        let lead = outputs.lead().to_string();
        let field = dataset.schema().field(&lead).ok_or_else(not_found)?;
        let old = UdfRecord::from_metadata(&field.metadata).ok_or_else(|| Error::NoUdf { column: column.to_string() })?;
        leman_engine::check_fills(&dataset, &outputs, &udf)?;
        for input in udf.inputs() {
            if outputs.columns().contains(&input.as_str()) {
                return Err(Error::InvalidOptions { reason: format!("UDF {} cannot read column {input}, which it computes", udf.name()) });
            }
            if dataset.schema().field(input).is_none() {
                return Err(Error::InputNotFound { udf: udf.name().to_string(), input: input.clone(), table: self.uri().to_string() });
            }
        }
        let mut metadata = field.metadata.clone();
        metadata.extend(UdfRecord::of(&udf).to_metadata());
        dataset.update_field_metadata().update(&lead, metadata)?.await?;
        self.registry.register(udf);
        Ok(old)
    }

    /// The UDF recorded for `column` (or for the unpacked group it is one
    /// of, or names), if it is a UDF column.
    pub async fn udf_record(&self, column: &str) -> Result<Option<UdfRecord>> {
        let dataset = self.dataset().await?;
        let not_found = || Error::ColumnNotFound { table: self.uri().to_string(), column: column.to_string() };
        let outputs = leman_engine::output_columns(&dataset, column).ok_or_else(not_found)?;
        let field = dataset.schema().field(outputs.lead()).ok_or_else(not_found)?;
        Ok(UdfRecord::from_metadata(&field.metadata))
    }
}
