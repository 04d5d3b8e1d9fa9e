//! What a refresh reads: the view's rows (ids, hashes and addresses only),
//! the source rows that may have changed since the version the view
//! reflects, with the values it copies, and the ids of every source row it
//! must hold.
//!
//! A source with stable row ids and row version tracking is read
//! incrementally, from the fragments that differ from those of the version
//! reflected (new, rewritten, or with rows deleted) only: the candidates are
//! their rows whose `_row_last_updated_at_version` is past the version
//! reflected (Lance advances it on every append, update and column rewrite
//! of a row), read with their values; the rows of the fragments changed or
//! removed are listed by id, at both versions, to find the rows deleted or
//! filtered out; and of the view, only the rows of these ids are read. A
//! fragment without version metadata is read whole. Any other source, a
//! refresh to an older version, or one after a commit that version
//! tracking does not follow, reads every row at the target version: the
//! hashes still keep unchanged rows as they are and their UDF values
//! uncomputed.

use std::collections::{HashMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{Array, RecordBatch, UInt32Array};
use datafusion::logical_expr::{Expr, col, lit};
use futures::TryStreamExt;
use lance::Dataset;
use lance::dataset::transaction::{Operation, UpdateMode};
use lance_core::{ROW_ADDR, ROW_CREATED_AT_VERSION, ROW_ID, ROW_LAST_UPDATED_AT_VERSION};
use lance_table::format::Fragment;
use leman_engine::{Error, Result};

use crate::diff::{Candidate, ViewRow};
use crate::hash::row_hashes;
use crate::query::{INPUTS_HASH, SOURCE_ROW_ID, VALUES_HASH, ViewRecord};

/// How a refresh finds what changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadMode {
    /// Only rows updated since the version reflected are read with their
    /// values (stable row ids and version tracking, refreshing forwards).
    Incremental,
    /// Every source row is read and hashed.
    Full,
}

impl std::fmt::Display for ReadMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReadMode::Incremental => "incremental",
            ReadMode::Full => "full",
        })
    }
}

/// The source rows read, ready for [`crate::diff::changes`].
#[derive(Debug, Default)]
pub struct SourceRows {
    /// Every candidate, in read order.
    pub candidates: Vec<Candidate>,
    /// The values of the candidates the view does not hold as they are
    /// (`source row id` as `_rowid`, then the copied columns), in order.
    pub changed: Vec<RecordBatch>,
    /// For each candidate that the view does not hold as it is, its batch
    /// and row in `changed`.
    pub changed_row: Vec<Option<(usize, usize)>>,
    /// For each candidate, whether it was created after the version
    /// reflected.
    pub created_since: Vec<bool>,
    /// Ids of the rows the view must hold, when the candidates are not all
    /// of them: of every row of the fragments changed since (the view rows
    /// read are the candidates' and those of rows that may be gone).
    pub present: Option<HashSet<u64>>,
}

/// The view's rows and the source rows of the target version that may
/// differ from them, read incrementally from `since` (the version the
/// view's rows reflect, exactly) where every commit since is one that row
/// version tracking follows, else whole.
pub async fn read_changes(view: &Dataset, source: &Dataset, record: &ViewRecord, since: Option<u64>) -> Result<(ReadMode, Vec<ViewRow>, SourceRows)> {
    if let Some(since) = since {
        match read_incrementally(view, source, record, since).await {
            Ok(Some((held, rows))) => return Ok((ReadMode::Incremental, held, rows)),
            Ok(None) => {}
            Err(error) => tracing::warn!(
                %error,
                source = %record.source,
                since,
                "could not read the source's changes since the version the view reflects (cleaned up?); reading it whole"
            ),
        }
    }
    let held = view_rows(view, None).await?;
    let by_id: HashMap<u64, [u8; 16]> = held.iter().map(|row| (row.source_row_id, row.values_hash)).collect();
    let mut rows = SourceRows::default();
    read_candidates(source, record, None, None, &by_id, &mut rows).await?;
    Ok((ReadMode::Full, held, rows))
}

/// The incremental read, or `None` where a commit since `since` is one
/// that row version tracking does not follow.
async fn read_incrementally(view: &Dataset, source: &Dataset, record: &ViewRecord, since: u64) -> Result<Option<(Vec<ViewRow>, SourceRows)>> {
    if !tracked_since(source, since).await? {
        return Ok(None);
    }
    // Only fragments that changed since can hold rows that changed: new
    // ones, rewritten ones, ones with rows deleted. Rows gone are among the
    // rows of the fragments changed or removed since.
    let before = source.checkout_version(since).await?;
    let then: HashMap<u64, &Fragment> = before.manifest().fragments.iter().map(|f| (f.id, f)).collect();
    let now: HashMap<u64, &Fragment> = source.manifest().fragments.iter().map(|f| (f.id, f)).collect();
    let changed: Vec<Fragment> = source.manifest().fragments.iter().filter(|f| then.get(&f.id) != Some(f)).cloned().collect();
    let left: Vec<Fragment> = before.manifest().fragments.iter().filter(|f| now.get(&f.id) != Some(f)).cloned().collect();
    let (tracked, untracked): (Vec<_>, Vec<_>) = changed.iter().cloned().partition(|f| f.last_updated_at_version_meta.is_some());
    let mut rows = SourceRows::default();
    let nothing_held = HashMap::new();
    if !tracked.is_empty() {
        read_candidates(source, record, Some(tracked), Some(since), &nothing_held, &mut rows).await?;
    }
    if !untracked.is_empty() {
        read_candidates(source, record, Some(untracked), None, &nothing_held, &mut rows).await?;
    }
    let present = if changed.is_empty() { HashSet::new() } else { row_ids(source, Some(changed), record).await? };
    let mut wanted = if left.is_empty() { HashSet::new() } else { row_ids(&before, Some(left), record).await? };
    // A row created since cannot be in the view, which reflects `since`.
    let searched = rows.candidates.iter().zip(&rows.created_since).filter(|(_, new)| !**new);
    wanted.extend(searched.map(|(c, _)| c.source_row_id));
    rows.present = Some(present);
    let held = if wanted.is_empty() { Vec::new() } else { view_rows(view, Some(&wanted)).await? };
    Ok(Some((held, rows)))
}

/// Whether every commit of `source` after `since` is one whose changed
/// rows Lance marks with a newer `_row_last_updated_at_version`: appends,
/// deletes, updates that rewrite rows, column rewrites, compactions (and
/// the fragment ids they reserve), schema and config changes, indexes. A restore, an overwrite, or
/// anything else is read whole.
async fn tracked_since(source: &Dataset, since: u64) -> Result<bool> {
    for version in since + 1..=source.version().version {
        let Some(transaction) = source.read_transaction_by_version(version).await? else { return Ok(false) };
        let followed = match &transaction.operation {
            Operation::Update { update_mode, updated_fragment_offsets, .. } => {
                !matches!(update_mode, Some(UpdateMode::RewriteColumns)) || updated_fragment_offsets.is_some()
            }
            Operation::Append { .. }
            | Operation::Delete { .. }
            | Operation::DataReplacement { .. }
            | Operation::Rewrite { .. }
            | Operation::Project { .. }
            | Operation::UpdateConfig { .. }
            | Operation::CreateIndex { .. }
            | Operation::ReserveFragments { .. } => true,
            _ => false,
        };
        if !followed {
            tracing::debug!(version, operation = %transaction.operation, "a commit row version tracking does not follow: the view reads its source whole");
            return Ok(false);
        }
    }
    Ok(true)
}

/// The rows of `view`, or of those of its rows whose source row is one of
/// `ids` (a filter Lance evaluates on the id column, reading the hashes of
/// the rows it keeps only).
async fn view_rows(view: &Dataset, ids: Option<&HashSet<u64>>) -> Result<Vec<ViewRow>> {
    let mut scan = view.scan();
    scan.project(&[SOURCE_ROW_ID, VALUES_HASH, INPUTS_HASH])?.with_row_address();
    if let Some(ids) = ids {
        let list: Vec<Expr> = ids.iter().map(|id| lit(*id)).collect();
        scan.filter_expr(col(SOURCE_ROW_ID).in_list(list, false));
    }
    let batches: Vec<RecordBatch> = scan.try_into_stream().await?.try_collect().await?;
    let mut rows = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for batch in &batches {
        let ids = u64_column(batch, SOURCE_ROW_ID)?;
        let addresses = u64_column(batch, ROW_ADDR)?;
        let values = hash_column(batch, VALUES_HASH)?;
        let inputs = hash_column(batch, INPUTS_HASH)?;
        for i in 0..batch.num_rows() {
            rows.push(ViewRow {
                source_row_id: ids.value(i),
                address: addresses.value(i),
                values_hash: values[i],
                inputs_hash: inputs[i],
            });
        }
    }
    Ok(rows)
}

/// Reads the candidates of `source` (of `fragments`, where given; updated
/// after `updated_since`, where given) into `rows`, keeping the values of
/// those the view does not hold as they are (`held`: its rows' value
/// hashes by source row id).
async fn read_candidates(
    source: &Dataset,
    record: &ViewRecord,
    fragments: Option<Vec<Fragment>>,
    updated_since: Option<u64>,
    held: &HashMap<u64, [u8; 16]>,
    rows: &mut SourceRows,
) -> Result<()> {
    let mut scan = source.scan();
    let mut columns: Vec<&str> = record.copies.iter().map(String::as_str).collect();
    if updated_since.is_some() {
        columns.push(ROW_CREATED_AT_VERSION);
    }
    scan.project(&columns)?.with_row_id();
    if let Some(fragments) = fragments {
        scan.with_fragments(fragments);
    }
    let updated = updated_since.map(|since| format!("{ROW_LAST_UPDATED_AT_VERSION} > {since}"));
    if let Some(filter) = combined_filter(record.filter.as_deref(), updated.as_deref()) {
        scan.filter(&filter).map_err(|error| bad_filter(record, &filter, &error))?;
    }
    let mut stream = scan.try_into_stream().await?;
    while let Some(batch) = stream.try_next().await? {
        let ids = u64_column(&batch, ROW_ID)?.clone();
        match updated_since {
            Some(since) => rows.created_since.extend(u64_column(&batch, ROW_CREATED_AT_VERSION)?.values().iter().map(|v| *v > since)),
            None => rows.created_since.extend(std::iter::repeat_n(false, batch.num_rows())),
        }
        let values = row_hashes(&batch, &record.copies)?;
        let inputs = row_hashes(&batch, &record.inputs)?;
        let batch_index = rows.changed.len();
        let mut keep = Vec::new();
        for i in 0..batch.num_rows() {
            let id = ids.value(i);
            let unchanged = held.get(&id) == Some(&values[i]);
            rows.candidates.push(Candidate { source_row_id: id, values_hash: values[i], inputs_hash: inputs[i] });
            rows.changed_row.push((!unchanged).then_some((batch_index, keep.len())));
            if !unchanged {
                keep.push(i as u32);
            }
        }
        if !keep.is_empty() {
            // Only `_rowid` and the copied columns, whichever way it was read.
            let batch = batch.project(&kept_columns(&batch, &record.copies)?)?;
            let indices = UInt32Array::from(keep);
            let columns = batch.columns().iter().map(|c| arrow_select::take::take(c, &indices, None)).collect::<Result<_, _>>()?;
            rows.changed.push(RecordBatch::try_new(batch.schema(), columns)?);
        }
    }
    Ok(())
}

/// Ids of the rows of `dataset` (of `fragments`, where given) matching
/// the view's filter.
async fn row_ids(dataset: &Dataset, fragments: Option<Vec<Fragment>>, record: &ViewRecord) -> Result<HashSet<u64>> {
    let mut scan = dataset.scan();
    scan.project::<&str>(&[])?.with_row_id();
    if let Some(fragments) = fragments {
        scan.with_fragments(fragments);
    }
    if let Some(filter) = &record.filter {
        scan.filter(filter).map_err(|error| bad_filter(record, filter, &error))?;
    }
    let batches: Vec<RecordBatch> = scan.try_into_stream().await?.try_collect().await?;
    let mut ids = HashSet::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for batch in &batches {
        ids.extend(u64_column(batch, ROW_ID)?.values().iter().copied());
    }
    Ok(ids)
}

fn combined_filter(filter: Option<&str>, updated_since: Option<&str>) -> Option<String> {
    match (filter, updated_since) {
        (Some(filter), Some(updated)) => Some(format!("({filter}) AND {updated}")),
        (Some(filter), None) => Some(filter.to_string()),
        (None, Some(updated)) => Some(updated.to_string()),
        (None, None) => None,
    }
}

fn bad_filter(record: &ViewRecord, filter: &str, error: &lance::Error) -> Error {
    Error::InvalidOptions { reason: format!("the view's filter {filter:?} does not compile against source {}: {error}", record.source) }
}

/// Positions in `batch` of `_rowid` and `copies`, in that order.
fn kept_columns(batch: &RecordBatch, copies: &[String]) -> Result<Vec<usize>> {
    std::iter::once(ROW_ID)
        .chain(copies.iter().map(String::as_str))
        .map(|name| Ok(batch.schema().index_of(name)?))
        .collect()
}

fn u64_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a arrow_array::PrimitiveArray<UInt64Type>> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<UInt64Type>())
        .ok_or_else(|| Error::Arrow(arrow_schema::ArrowError::SchemaError(format!("no UInt64 column {name} in a view read"))))
}

fn hash_column(batch: &RecordBatch, name: &str) -> Result<Vec<[u8; 16]>> {
    let column = batch
        .column_by_name(name)
        .and_then(|c| c.as_fixed_size_binary_opt().cloned())
        .ok_or_else(|| Error::Arrow(arrow_schema::ArrowError::SchemaError(format!("no hash column {name} in the view"))))?;
    (0..column.len())
        .map(|i| {
            let value = if column.is_valid(i) { column.value(i) } else { &[] };
            <[u8; 16]>::try_from(value).map_err(|_| {
                Error::Arrow(arrow_schema::ArrowError::InvalidArgumentError(format!(
                    "row {i} of a read of the view has a damaged {name}; the view was written by something else than leman: create it again"
                )))
            })
        })
        .collect()
}
