//! One task: read a physical row range, choose rows, compute, checkpoint.
//!
//! Reading and checkpointing are async and run on the tokio runtime; the UDF
//! runs on one of the applier's threads ([`crate::pool`]), so a slow UDF
//! never blocks I/O and I/O never holds a UDF thread.
//!
//! The batch read covers every physical row of the range, deleted ones
//! included, so that its positions line up with the fragment's files. Rows
//! that are deleted or that the filter does not select keep their previous
//! values of the output columns (null if never computed); the UDF sees only
//! the selected rows.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{FieldRef, Schema, SchemaRef};
use futures::{StreamExt, TryStreamExt};
use lance::Dataset;
use lance::dataset::fragment::{FileFragment, FragReadConfig};
use lance_core::datatypes::Schema as LanceSchema;
use leman_checkpoint::{BatchCounts, Origin, CheckpointKey, CheckpointStore};

use crate::error::ApplierError;
use crate::filter::RowFilter;
use crate::output::OutputColumns;
use crate::pool::{ComputeJob, Pool};
use crate::udf::Udf;

/// Lance row address of physical row `offset` of fragment `fragment_id`.
pub fn row_address(fragment_id: u64, offset: u64) -> u64 {
    (fragment_id << 32) | (offset & 0xffff_ffff)
}

/// What all tasks of one job share.
#[derive(Debug)]
pub struct BackfillContext {
    dataset: Arc<Dataset>,
    udf: Udf,
    outputs: Arc<OutputColumns>,
    filter: RowFilter,
    checkpoints: CheckpointStore,
    read_schema: LanceSchema,
    output_schema: SchemaRef,
    /// The UDF's fingerprint, which each batch's record names.
    fingerprint: String,
}

impl BackfillContext {
    /// The context of a job computing `outputs` of `dataset` (opened at
    /// the job's read version) with `udf` where `filter` holds.
    pub fn new(
        dataset: Arc<Dataset>,
        udf: Udf,
        outputs: OutputColumns,
        filter: RowFilter,
        checkpoints: CheckpointStore,
    ) -> Result<Self, ApplierError> {
        let mut names: Vec<String> = udf.inputs().to_vec();
        names.extend(filter.columns().iter().cloned());
        names.extend(outputs.columns().into_iter().map(str::to_string));
        names.sort();
        names.dedup();
        let read_schema = dataset
            .schema()
            .project(&names)
            .map_err(|e| ApplierError::UnknownColumn { column: names.join(", "), reason: e.to_string() })?;
        let fields = outputs
            .fields_of(udf.data_type())
            .map_err(|reason| ApplierError::UnknownColumn { column: outputs.columns().join(", "), reason })?;
        let output_schema = Arc::new(Schema::new(fields));
        let fingerprint = udf.fingerprint();
        let outputs = Arc::new(outputs);
        Ok(Self { dataset, udf, outputs, filter, checkpoints, read_schema, output_schema, fingerprint })
    }

    /// The UDF.
    pub fn udf(&self) -> &Udf {
        &self.udf
    }

    /// The schema of a checkpointed batch: the output columns only.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }
}

/// One task as an applier receives it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskSpec {
    /// Lance fragment id.
    pub fragment_id: u64,
    /// Physical rows.
    pub rows: Range<u64>,
    /// Where its checkpoint goes.
    pub key: CheckpointKey,
    /// Computes every live row, whatever the filter (the fragment's values
    /// came from another UDF or version).
    pub all_rows: bool,
}

/// What a finished task reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskOutput {
    /// Rows the UDF computed.
    pub rows_computed: u64,
    /// Rows the `skip` policy left null.
    pub rows_skipped: u64,
    /// Each skipped row.
    pub errors: Vec<SkippedRow>,
    /// How long the UDF took on the task's batch; `None` when no row was
    /// selected and the UDF was not called.
    pub udf_time: Option<Duration>,
    /// CPU time of the UDF's thread on the batch, where the kernel keeps it.
    pub udf_cpu: Option<Duration>,
    /// Physical rows read (the task's range).
    pub rows_read: u64,
    /// Peak resident memory of the process that ran it, so far.
    pub peak_memory_bytes: Option<u64>,
}

/// A row the `skip` policy left null.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkippedRow {
    /// Lance row address.
    pub row_address: u64,
    /// What the UDF said.
    pub message: String,
    /// Calls of the UDF the row was part of.
    pub attempts: u32,
}

/// Why a task failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum TaskError {
    /// The UDF failed under the `fail` or `retry` policy: the job fails.
    /// `row_address` is the failing row's when the UDF's shape tells it
    /// (scalar UDFs), else the batch failed as a whole.
    #[error("UDF failed at row address {row_address:?} after {attempts} calls: {message}")]
    Udf { message: String, row_address: Option<u64>, attempts: u32 },
    /// Reading the table or writing the checkpoint failed: worth retrying.
    #[error("{message}")]
    Io { message: String },
}

impl TaskError {
    /// Whether running the task again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TaskError::Io { .. })
    }
}

/// Runs one task to its checkpoint.
pub async fn run_task(context: &BackfillContext, pool: &Pool, spec: &TaskSpec) -> Result<TaskOutput, TaskError> {
    let io = |what: &str, e: &dyn std::fmt::Display| TaskError::Io {
        message: format!("{what} fragment {} rows {}..{}: {e}", spec.fragment_id, spec.rows.start, spec.rows.end),
    };
    let fragment = context
        .dataset
        .get_fragment(spec.fragment_id as usize)
        .ok_or_else(|| io("reading", &ApplierError::MissingFragment { fragment_id: spec.fragment_id }))?;
    let batch = read_rows(context, &fragment, spec).await.map_err(|e| io("reading", &e))?;
    let selection = select_rows(context, &fragment, spec, &batch).await.map_err(|e| io("filtering", &e))?;
    let old: Vec<ArrayRef> = context
        .outputs
        .columns()
        .into_iter()
        .map(|column| batch.column_by_name(column).cloned().ok_or_else(|| io("reading", &format!("column {column} was not read"))))
        .collect::<Result<_, _>>()?;
    let selected_count = selection.true_count();
    let read = TaskOutput { rows_read: spec.rows.end - spec.rows.start, ..TaskOutput::default() };
    let (values, mut output) = if selected_count == 0 {
        (old, read)
    } else {
        let inputs = project(&batch, context.udf.inputs()).map_err(|e| io("projecting", &e))?;
        let inputs = if selected_count == batch.num_rows() {
            inputs
        } else {
            arrow_select::filter::filter_record_batch(&inputs, &selection).map_err(|e| io("selecting", &e))?
        };
        let job = ComputeJob { inputs, old, outputs: context.outputs.clone(), selection: selection.clone() };
        let merged = pool.compute(job).await.map_err(|failure| {
            let row_address = failure
                .row
                .and_then(|j| nth_selected(&selection, j))
                .map(|offset| row_address(spec.fragment_id, spec.rows.start + offset as u64));
            TaskError::Udf { message: failure.message, row_address, attempts: failure.attempts }
        })?;
        let errors: Vec<SkippedRow> = merged
            .skipped
            .into_iter()
            .filter_map(|skipped| {
                let offset = nth_selected(&selection, skipped.row)?;
                let row_address = row_address(spec.fragment_id, spec.rows.start + offset as u64);
                Some(SkippedRow { row_address, message: skipped.message, attempts: skipped.attempts })
            })
            .collect();
        let output = TaskOutput {
            rows_computed: (selected_count - errors.len()) as u64,
            rows_skipped: errors.len() as u64,
            errors,
            udf_time: Some(merged.udf_time),
            udf_cpu: merged.udf_cpu,
            ..read
        };
        (merged.values, output)
    };
    let checkpoint = RecordBatch::try_new(context.output_schema.clone(), values).map_err(|e| io("assembling", &e))?;
    output.peak_memory_bytes = crate::usage::peak_memory();
    let counts = BatchCounts { rows_computed: output.rows_computed, rows_skipped: output.rows_skipped };
    let origin = Origin {
        column: context.outputs.lead().to_string(),
        udf_name: context.udf.name().to_string(),
        udf_version: context.fingerprint.clone(),
        fragment_id: spec.fragment_id,
        data_files: fragment.metadata().files.iter().map(|file| file.path.clone()).collect(),
    };
    context
        .checkpoints
        .put_batch(&spec.key, spec.rows.clone(), &checkpoint, counts, origin)
        .await
        .map_err(|e| io("checkpointing", &e))?;
    Ok(output)
}

/// The task's physical rows, deleted ones included (so the new column
/// stays aligned with the fragment's files). A fragment reader of the rows'
/// range, not a scan: a scan plans a query per task, which costs more than
/// reading a batch of a cheap column.
async fn read_rows(context: &BackfillContext, fragment: &FileFragment, spec: &TaskSpec) -> Result<RecordBatch, ApplierError> {
    let len = u32::try_from(spec.rows.end - spec.rows.start).unwrap_or(u32::MAX).max(1);
    let reader = fragment
        .open(&context.read_schema, FragReadConfig::default().with_ignore_deletions(true))
        .await?;
    let batches: Vec<RecordBatch> = reader
        .read_ranges(Arc::from([spec.rows.clone()]), len)
        .await?
        .buffered(2)
        .try_collect()
        .await?;
    let schema: SchemaRef = Arc::new(Schema::from(&context.read_schema));
    Ok(arrow_select::concat::concat_batches(&schema, &batches)?)
}

/// Rows to compute: the filter holds and the row is not deleted.
async fn select_rows(
    context: &BackfillContext,
    fragment: &FileFragment,
    spec: &TaskSpec,
    batch: &RecordBatch,
) -> Result<BooleanArray, ApplierError> {
    let matches = if spec.all_rows {
        BooleanArray::from(vec![true; batch.num_rows()])
    } else {
        context.filter.evaluate(batch, row_address(spec.fragment_id, spec.rows.start))?
    };
    let Some(deletions) = fragment.get_deletion_vector().await? else { return Ok(matches) };
    let live: BooleanArray = (spec.rows.start..spec.rows.end)
        .map(|offset| Some(!deletions.contains(offset as u32)))
        .collect();
    Ok(arrow::compute::kernels::boolean::and(&matches, &live)?)
}

fn project(batch: &RecordBatch, columns: &[String]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let fields: Vec<FieldRef> = columns
        .iter()
        .map(|name| batch.schema().field_with_name(name).map(|f| Arc::new(f.clone())))
        .collect::<Result<_, _>>()?;
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .filter_map(|name| batch.column_by_name(name).cloned())
        .collect();
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
}

/// Position in the batch of the `n`th selected row.
fn nth_selected(selection: &BooleanArray, n: usize) -> Option<usize> {
    selection.values().set_indices().nth(n)
}
