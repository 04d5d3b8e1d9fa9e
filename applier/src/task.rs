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
//! the selected rows. A job of several parts (columns computed in one pass)
//! reads the batch once; each part selects its own rows with its own filter,
//! and the checkpoint holds every part's columns, part after part.
//!
//! A fragment that none of the output columns has a data file in (a new
//! column, never computed there) holds only nulls of them: its batches are
//! read without them (lance would build null arrays, zeroed memory for
//! every batch), and a filter of those columns alone, the default
//! `IS NULL`, is decided once for all its rows ([`RowFilter::on_null_row`]).

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, BooleanArray, RecordBatch, new_null_array};
use arrow::buffer::BooleanBuffer;
use arrow_schema::{FieldRef, Schema, SchemaRef};
use futures::{StreamExt, TryStreamExt};
use lance::Dataset;
use lance::dataset::fragment::FileFragment;
use lance_core::datatypes::Schema as LanceSchema;
use leman_checkpoint::{BatchCounts, Origin, CheckpointKey, CheckpointStore};

use crate::error::ApplierError;
use crate::filter::RowFilter;
use crate::output::OutputColumns;
use crate::pool::{ComputeJob, PartFailure, PartJob, Pool};
use crate::readers::FragmentReaders;
use crate::udf::Udf;

/// Lance row address of physical row `offset` of fragment `fragment_id`.
pub fn row_address(fragment_id: u64, offset: u64) -> u64 {
    (fragment_id << 32) | (offset & 0xffff_ffff)
}

/// One UDF of a job, the columns it fills and the rows it computes. A
/// backfill of several columns in one pass has one part per column (or
/// group of unpacked siblings); each keeps its own filter.
#[derive(Debug, Clone)]
pub struct JobPart {
    /// The UDF.
    pub udf: Udf,
    /// The columns its values fill.
    pub outputs: OutputColumns,
    /// The rows it computes.
    pub filter: RowFilter,
}

#[derive(Debug)]
struct ContextPart {
    udf: Udf,
    outputs: Arc<OutputColumns>,
    filter: RowFilter,
    /// How it selects rows of a fragment read without the output columns.
    on_unwritten: UnwrittenSelection,
}

/// How a part selects the rows of a fragment that holds no values of the
/// job's output columns, read without them.
#[derive(Debug, Clone, Copy)]
enum UnwrittenSelection {
    /// Its filter names none of the columns left unread: evaluated as
    /// usual.
    Evaluate,
    /// Its filter names only columns left unread, all null: it holds for
    /// every row or for none.
    Every(bool),
}

/// How the job reads a fragment that holds no values of its output
/// columns: without them.
#[derive(Debug)]
struct UnwrittenRead {
    /// The job's read schema less the output columns no UDF reads.
    schema: LanceSchema,
    /// Field ids of those output columns, nested ones included.
    field_ids: HashSet<i32>,
}

impl UnwrittenRead {
    /// Whether no data file of `fragment` holds one of the columns.
    fn applies_to(&self, fragment: &FileFragment) -> bool {
        !fragment.metadata().files.iter().flat_map(|file| file.fields.iter()).any(|id| self.field_ids.contains(id))
    }
}

/// How a job names itself in its checkpoints' keys and records: a job of
/// one part by its column, UDF name and fingerprint (so its checkpoints are
/// those of any earlier run), a job of several by JSON lists of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobNames {
    /// The lead column, or the list of the parts' lead columns.
    pub column: String,
    /// The UDF's name, or the list of the parts' UDF names.
    pub udf_name: String,
    /// The UDF's fingerprint, or the list of the parts' fingerprints.
    pub udf_version: String,
}

impl JobNames {
    /// The names of a job of `parts`: (lead column, UDF name, UDF
    /// fingerprint) each, in order.
    pub fn of(mut parts: Vec<(String, String, String)>) -> Self {
        if parts.len() == 1
            && let Some((column, udf_name, udf_version)) = parts.pop()
        {
            return Self { column, udf_name, udf_version };
        }
        let list = |values: Vec<&String>| serde_json::to_string(&values).unwrap_or_default();
        Self {
            column: list(parts.iter().map(|p| &p.0).collect()),
            udf_name: list(parts.iter().map(|p| &p.1).collect()),
            udf_version: list(parts.iter().map(|p| &p.2).collect()),
        }
    }

    /// The (column, UDF name, fingerprint) of each part these names stand
    /// for: the inverse of [`JobNames::of`].
    pub fn parts(&self) -> Vec<(String, String, String)> {
        let list = |text: &str| serde_json::from_str::<Vec<String>>(text).ok();
        match (list(&self.column), list(&self.udf_name), list(&self.udf_version)) {
            (Some(columns), Some(names), Some(versions)) if columns.len() == names.len() && names.len() == versions.len() => {
                columns.into_iter().zip(names).zip(versions).map(|((c, n), v)| (c, n, v)).collect()
            }
            _ => vec![(self.column.clone(), self.udf_name.clone(), self.udf_version.clone())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::JobNames;

    #[test]
    fn one_part_is_named_as_it_always_was_and_several_read_back() {
        let owned = |parts: &[(&str, &str, &str)]| parts.iter().map(|(c, n, v)| (c.to_string(), n.to_string(), v.to_string())).collect();
        let one = JobNames::of(owned(&[("a", "f", "v1")]));
        assert_eq!((one.column.as_str(), one.udf_name.as_str(), one.udf_version.as_str()), ("a", "f", "v1"));
        assert_eq!(one.parts(), [("a".into(), "f".into(), "v1".into())]);
        let several = JobNames::of(owned(&[("a", "f", "v1"), ("b,c", "g", "v2")]));
        assert_eq!(several.column, r#"["a","b,c"]"#);
        let parts: Vec<(String, String, String)> = vec![("a".into(), "f".into(), "v1".into()), ("b,c".into(), "g".into(), "v2".into())];
        assert_eq!(several.parts(), parts);
    }
}

/// What all tasks of one job share.
#[derive(Debug)]
pub struct BackfillContext {
    dataset: Arc<Dataset>,
    parts: Vec<ContextPart>,
    checkpoints: CheckpointStore,
    read_schema: LanceSchema,
    output_schema: SchemaRef,
    /// What each batch's record names.
    names: JobNames,
    /// How fragments that hold no output values are read; `None` where a
    /// filter needs their nulls or nothing else would be read.
    unwritten: Option<UnwrittenRead>,
    /// Readers of `read_schema` (or of `unwritten`'s schema, for the
    /// fragments it applies to), kept open across tasks.
    readers: FragmentReaders,
}

impl BackfillContext {
    /// The context of a job computing `parts` of `dataset` (opened at the
    /// job's read version), each with its UDF where its filter holds.
    pub fn new(dataset: Arc<Dataset>, parts: Vec<JobPart>, checkpoints: CheckpointStore) -> Result<Self, ApplierError> {
        let mut names: Vec<String> = Vec::new();
        let mut fields = Vec::new();
        let mut keyed = Vec::new();
        for part in &parts {
            names.extend(part.udf.inputs().iter().cloned());
            names.extend(part.filter.columns().iter().cloned());
            names.extend(part.outputs.columns().into_iter().map(str::to_string));
            let part_fields = part.outputs.fields_of(part.udf.data_type()).map_err(|reason| ApplierError::UnknownColumn {
                column: part.outputs.columns().join(", "),
                reason,
            })?;
            fields.extend(part_fields);
            keyed.push((part.outputs.lead().to_string(), part.udf.name().to_string(), part.udf.fingerprint()));
        }
        names.sort();
        names.dedup();
        let read_schema = dataset
            .schema()
            .project(&names)
            .map_err(|e| ApplierError::UnknownColumn { column: names.join(", "), reason: e.to_string() })?;
        let output_schema = Arc::new(Schema::new(fields));
        let (unwritten, on_unwritten) = unwritten_read(&dataset, &parts, &names)?;
        let names = JobNames::of(keyed);
        let parts = parts
            .into_iter()
            .zip(on_unwritten)
            .map(|(part, on_unwritten)| ContextPart {
                udf: part.udf,
                outputs: Arc::new(part.outputs),
                filter: part.filter,
                on_unwritten,
            })
            .collect();
        Ok(Self { dataset, parts, checkpoints, read_schema, output_schema, names, unwritten, readers: FragmentReaders::default() })
    }

    /// The UDFs, one a part.
    pub fn udfs(&self) -> Vec<Udf> {
        self.parts.iter().map(|part| part.udf.clone()).collect()
    }

    /// The schema of a checkpointed batch: the output columns only, part
    /// after part.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }
}

/// How a job of `parts`, reading `read_columns`, reads the fragments that
/// hold no values of its output columns, and how each part selects their
/// rows; no such read where a filter names both an output column and
/// another (it would need the nulls), where a filter of output columns
/// alone is not decided by a row of nulls, or where nothing else would be
/// read.
fn unwritten_read(
    dataset: &Dataset,
    parts: &[JobPart],
    read_columns: &[String],
) -> Result<(Option<UnwrittenRead>, Vec<UnwrittenSelection>), ApplierError> {
    let inputs: HashSet<&str> = parts.iter().flat_map(|part| part.udf.inputs()).map(String::as_str).collect();
    let unread: HashSet<&str> = parts.iter().flat_map(|part| part.outputs.columns()).filter(|column| !inputs.contains(column)).collect();
    let selections: Option<Vec<UnwrittenSelection>> = parts
        .iter()
        .map(|part| {
            let columns = part.filter.columns();
            match columns.iter().filter(|column| unread.contains(column.as_str())).count() {
                0 => Some(UnwrittenSelection::Evaluate),
                n if n == columns.len() => part.filter.on_null_row().map(UnwrittenSelection::Every),
                _ => None,
            }
        })
        .collect();
    let kept: Vec<&str> = read_columns.iter().map(String::as_str).filter(|column| !unread.contains(column)).collect();
    let (Some(selections), false, false) = (selections, kept.is_empty(), unread.is_empty()) else {
        return Ok((None, vec![UnwrittenSelection::Evaluate; parts.len()]));
    };
    let project = |columns: &[&str]| {
        dataset
            .schema()
            .project(columns)
            .map_err(|e| ApplierError::UnknownColumn { column: columns.join(", "), reason: e.to_string() })
    };
    let unread: Vec<&str> = unread.into_iter().collect();
    let read = UnwrittenRead { schema: project(&kept)?, field_ids: project(&unread)?.field_ids().into_iter().collect() };
    Ok((Some(read), selections))
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
    /// For each part of the job, whether it computes every live row,
    /// whatever its filter (the fragment's values came from another UDF or
    /// version); a part left out computes where its filter holds.
    pub all_rows: Vec<bool>,
}

/// What a finished task reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskOutput {
    /// Rows the UDF computed (for several parts, rows some part computed
    /// and none skipped).
    pub rows_computed: u64,
    /// Rows the `skip` policy left null (in some part).
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
    let unwritten = context.unwritten.as_ref().filter(|read| read.applies_to(&fragment));
    let schema = unwritten.map_or(&context.read_schema, |read| &read.schema);
    let batch = read_rows(context, &fragment, schema, spec).await.map_err(|e| io("reading", &e))?;
    let live = live_rows(&fragment, spec).await.map_err(|e| io("filtering", &e))?;
    let mut parts = Vec::with_capacity(context.parts.len());
    for (index, part) in context.parts.iter().enumerate() {
        let all_rows = spec.all_rows.get(index).copied().unwrap_or(false);
        let selection =
            select_rows(part, all_rows, unwritten.is_some(), spec, &batch, live.as_ref()).map_err(|e| io("filtering", &e))?;
        let old = old_values(context, part, &batch, &selection, unwritten.is_some()).map_err(|e| io("reading", &e))?;
        let inputs = if selection.true_count() == 0 {
            RecordBatch::new_empty(Arc::new(Schema::empty()))
        } else {
            let inputs = project(&batch, part.udf.inputs()).map_err(|e| io("projecting", &e))?;
            if selection.true_count() == batch.num_rows() {
                inputs
            } else {
                arrow_select::filter::filter_record_batch(&inputs, &selection).map_err(|e| io("selecting", &e))?
            }
        };
        parts.push(PartJob { inputs, old, outputs: part.outputs.clone(), selection });
    }
    let selections: Vec<BooleanArray> = parts.iter().map(|part| part.selection.clone()).collect();
    // Rows some part computes: one part's own count, or the union's.
    let selected_count = match selections.as_slice() {
        [one] => one.true_count(),
        several => several.iter().map(|s| s.values().clone()).reduce(|any, s| &any | &s).map_or(0, |any| any.count_set_bits()),
    };
    let read = TaskOutput { rows_read: spec.rows.end - spec.rows.start, ..TaskOutput::default() };
    let (values, mut output) = if selected_count == 0 {
        (parts.into_iter().flat_map(|part| part.old).collect(), read)
    } else {
        let merged = pool.compute(ComputeJob { parts }).await.map_err(|PartFailure { part, failure }| {
            let row_address = failure
                .row
                .and_then(|j| selections.get(part).and_then(|selection| nth_selected(selection, j)))
                .map(|offset| row_address(spec.fragment_id, spec.rows.start + offset as u64));
            let message = match (context.parts.len(), context.parts.get(part)) {
                (2.., Some(part)) => format!("column {}: {}", part.outputs.lead(), failure.message),
                _ => failure.message,
            };
            TaskError::Udf { message, row_address, attempts: failure.attempts }
        })?;
        let mut errors: Vec<SkippedRow> = merged
            .skipped
            .into_iter()
            .filter_map(|(part, skipped)| {
                let offset = nth_selected(selections.get(part)?, skipped.row)?;
                let row_address = row_address(spec.fragment_id, spec.rows.start + offset as u64);
                let message = match context.parts.len() {
                    1 => skipped.message,
                    _ => format!("{}: {}", context.parts.get(part)?.outputs.lead(), skipped.message),
                };
                Some(SkippedRow { row_address, message, attempts: skipped.attempts })
            })
            .collect();
        errors.sort_by_key(|row| row.row_address);
        // A row one part skipped counts once, as skipped.
        let rows_skipped = {
            let mut addresses: Vec<u64> = errors.iter().map(|row| row.row_address).collect();
            addresses.dedup();
            addresses.len()
        };
        let output = TaskOutput {
            rows_computed: (selected_count - rows_skipped) as u64,
            rows_skipped: rows_skipped as u64,
            errors,
            udf_time: Some(merged.udf_time),
            udf_cpu: merged.udf_cpu,
            ..read
        };
        (merged.values, output)
    };
    let checkpoint = RecordBatch::try_new(context.output_schema.clone(), values).map_err(|e| io("assembling", &e))?;
    output.peak_memory_bytes = crate::usage::recent_peak_memory();
    let counts = BatchCounts { rows_computed: output.rows_computed, rows_skipped: output.rows_skipped };
    let origin = Origin {
        column: context.names.column.clone(),
        udf_name: context.names.udf_name.clone(),
        udf_version: context.names.udf_version.clone(),
        fragment_id: spec.fragment_id,
        data_files: fragment.metadata().files.iter().map(|file| file.path.clone()).collect(),
    };
    let work = recompute_cost(&output);
    context
        .checkpoints
        .hand_off_batch(&spec.key, spec.rows.clone(), &checkpoint, counts, origin, work)
        .await
        .map_err(|e| io("checkpointing", &e))?;
    Ok(output)
}

/// A call of the UDF this short in wall time is taken to have waited only
/// for a CPU (the machine's other threads preempting it).
const PREEMPTED_AT_MOST: Duration = Duration::from_millis(20);

/// What computing a task's batch again would cost, for the handoff to
/// judge whether storing it is worth it: the UDF's CPU time where its call
/// was short (its wall time then mostly says how busy the machine was), its
/// wall time where it was not (a UDF waiting on a device or a service).
fn recompute_cost(output: &TaskOutput) -> Duration {
    match (output.udf_time, output.udf_cpu) {
        (Some(wall), Some(cpu)) if wall <= PREEMPTED_AT_MOST => cpu,
        (wall, _) => wall.unwrap_or_default(),
    }
}

/// The task's physical rows, deleted ones included (so the new column
/// stays aligned with the fragment's files). A fragment reader of the rows'
/// range, not a scan: a scan plans a query per task, which costs more than
/// reading a batch of a cheap column; and the fragment's reader is opened
/// once for all its tasks.
async fn read_rows(
    context: &BackfillContext,
    fragment: &FileFragment,
    schema: &LanceSchema,
    spec: &TaskSpec,
) -> Result<RecordBatch, ApplierError> {
    let len = u32::try_from(spec.rows.end - spec.rows.start).unwrap_or(u32::MAX).max(1);
    let reader = context.readers.reader(fragment, schema).await?;
    let mut batches: Vec<RecordBatch> = reader
        .read_ranges(Arc::from([spec.rows.clone()]), len)
        .await?
        .buffered(2)
        .try_collect()
        .await?;
    // One batch of the whole range, as a rule: no copy.
    if batches.len() == 1
        && let Some(batch) = batches.pop()
    {
        return Ok(batch);
    }
    let schema: SchemaRef = Arc::new(Schema::from(schema));
    Ok(arrow_select::concat::concat_batches(&schema, &batches)?)
}

/// Which of the task's rows are not deleted; `None` when none is.
async fn live_rows(fragment: &FileFragment, spec: &TaskSpec) -> Result<Option<BooleanArray>, ApplierError> {
    let Some(deletions) = fragment.get_deletion_vector().await? else { return Ok(None) };
    Ok(Some((spec.rows.start..spec.rows.end).map(|offset| Some(!deletions.contains(offset as u32))).collect()))
}

/// A part's output columns' values before the task, every row of `batch`:
/// as read, or, where `unwritten` (the batch was read without them), nulls;
/// none where every row is selected, as none would be kept.
fn old_values(
    context: &BackfillContext,
    part: &ContextPart,
    batch: &RecordBatch,
    selection: &BooleanArray,
    unwritten: bool,
) -> Result<Vec<ArrayRef>, String> {
    let columns = part.outputs.columns();
    if !unwritten {
        return columns
            .into_iter()
            .map(|column| batch.column_by_name(column).cloned().ok_or_else(|| format!("column {column} was not read")))
            .collect();
    }
    if selection.true_count() == batch.num_rows() {
        return Ok(Vec::new());
    }
    columns
        .into_iter()
        .map(|column| {
            let field = context.output_schema.field_with_name(column).map_err(|e| e.to_string())?;
            Ok(new_null_array(field.data_type(), batch.num_rows()))
        })
        .collect()
}

/// Rows a part computes: its filter holds (or `all_rows`) and the row is
/// not deleted. `unwritten`: the batch was read without the output
/// columns, which hold only nulls.
fn select_rows(
    part: &ContextPart,
    all_rows: bool,
    unwritten: bool,
    spec: &TaskSpec,
    batch: &RecordBatch,
    live: Option<&BooleanArray>,
) -> Result<BooleanArray, ApplierError> {
    let matches = match (all_rows, unwritten, part.on_unwritten) {
        (true, ..) => every_row(batch.num_rows(), true),
        (false, true, UnwrittenSelection::Every(holds)) => every_row(batch.num_rows(), holds),
        _ => part.filter.evaluate(batch, row_address(spec.fragment_id, spec.rows.start))?,
    };
    match live {
        Some(live) => Ok(arrow::compute::kernels::boolean::and(&matches, live)?),
        None => Ok(matches),
    }
}

/// `rows` selections all `holds`, set a byte at a time (from a `Vec<bool>`
/// they are set a bit at a time: about 9 us a batch of 10,240 rows).
fn every_row(rows: usize, holds: bool) -> BooleanArray {
    let bits = if holds { BooleanBuffer::new_set(rows) } else { BooleanBuffer::new_unset(rows) };
    BooleanArray::new(bits, None)
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
