//! What a refresh reads: the view's rows (ids, hashes and addresses only),
//! the source rows that may have changed since the version the view
//! reflects, with the values it copies, and the ids of every source row it
//! must hold.
//!
//! A source with stable row ids and row version tracking is read
//! incrementally: the candidates are the rows whose
//! `_row_last_updated_at_version` is past the version reflected (Lance
//! advances it on every append, update and column rewrite of a row), read
//! with their values; every other row is only listed by id, to find the
//! rows deleted or filtered out. A fragment without version metadata is
//! read whole. Any other source, or a refresh to an older version, reads
//! every row at the target version: the hashes still keep unchanged rows
//! as they are and their UDF values uncomputed.

use std::collections::{HashMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{Array, RecordBatch, UInt32Array};
use futures::TryStreamExt;
use lance::Dataset;
use lance_core::{ROW_ADDR, ROW_ID, ROW_LAST_UPDATED_AT_VERSION};
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
    /// For each candidate, its row in `changed` (counted across batches).
    pub changed_row: Vec<Option<u32>>,
    /// Ids of every row the view must hold, when the candidates are not.
    pub present: Option<HashSet<u64>>,
}

/// The view's rows.
pub async fn view_rows(view: &Dataset) -> Result<Vec<ViewRow>> {
    let mut scan = view.scan();
    scan.project(&[SOURCE_ROW_ID, VALUES_HASH, INPUTS_HASH])?.with_row_address();
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

/// The candidates of `source` (at the target version) for a view that
/// reflects `since` (`None`: read every row), given its rows `view`.
pub async fn source_rows(source: &Dataset, record: &ViewRecord, view: &[ViewRow], since: Option<u64>) -> Result<SourceRows> {
    let held: HashMap<u64, [u8; 16]> = view.iter().map(|row| (row.source_row_id, row.values_hash)).collect();
    let mut rows = SourceRows::default();
    let Some(since) = since else {
        read_candidates(source, record, None, None, &held, &mut rows).await?;
        return Ok(rows);
    };
    let (tracked, untracked): (Vec<_>, Vec<_>) =
        source.get_fragments().into_iter().map(|f| f.metadata().clone()).partition(|f| f.last_updated_at_version_meta.is_some());
    if !tracked.is_empty() {
        let updated = format!("{ROW_LAST_UPDATED_AT_VERSION} > {since}");
        read_candidates(source, record, Some(tracked), Some(&updated), &held, &mut rows).await?;
    }
    if !untracked.is_empty() {
        read_candidates(source, record, Some(untracked), None, &held, &mut rows).await?;
    }
    rows.present = Some(present_ids(source, record).await?);
    Ok(rows)
}

async fn read_candidates(
    source: &Dataset,
    record: &ViewRecord,
    fragments: Option<Vec<lance_table::format::Fragment>>,
    updated_since: Option<&str>,
    held: &HashMap<u64, [u8; 16]>,
    rows: &mut SourceRows,
) -> Result<()> {
    let mut scan = source.scan();
    scan.project(&record.copies)?.with_row_id();
    if let Some(fragments) = fragments {
        scan.with_fragments(fragments);
    }
    if let Some(filter) = combined_filter(record.filter.as_deref(), updated_since) {
        scan.filter(&filter).map_err(|error| bad_filter(record, error))?;
    }
    let mut stream = scan.try_into_stream().await.map_err(|error| bad_filter(record, error))?;
    let mut changed_rows = rows.changed.iter().map(RecordBatch::num_rows).sum::<usize>() as u32;
    while let Some(batch) = stream.try_next().await? {
        let ids = u64_column(&batch, ROW_ID)?.clone();
        let values = row_hashes(&batch, &record.copies)?;
        let inputs = row_hashes(&batch, &record.inputs)?;
        let mut keep = Vec::new();
        for i in 0..batch.num_rows() {
            let id = ids.value(i);
            let unchanged = held.get(&id) == Some(&values[i]);
            rows.candidates.push(Candidate { source_row_id: id, values_hash: values[i], inputs_hash: inputs[i] });
            rows.changed_row.push((!unchanged).then(|| changed_rows + keep.len() as u32));
            if !unchanged {
                keep.push(i as u32);
            }
        }
        if !keep.is_empty() {
            changed_rows += keep.len() as u32;
            let indices = UInt32Array::from(keep);
            let columns = batch.columns().iter().map(|c| arrow_select::take::take(c, &indices, None)).collect::<Result<_, _>>()?;
            rows.changed.push(RecordBatch::try_new(batch.schema(), columns)?);
        }
    }
    Ok(())
}

/// Ids of the rows of `source` the view must hold (matching its filter).
async fn present_ids(source: &Dataset, record: &ViewRecord) -> Result<HashSet<u64>> {
    let mut scan = source.scan();
    scan.project::<&str>(&[])?.with_row_id();
    if let Some(filter) = &record.filter {
        scan.filter(filter).map_err(|error| bad_filter(record, error))?;
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

fn bad_filter(record: &ViewRecord, error: lance::Error) -> Error {
    match &record.filter {
        Some(filter) if error.to_string().contains("filter") || error.to_string().contains("parse") => Error::InvalidOptions {
            reason: format!("the view's filter {filter:?} does not compile against source {}: {error}", record.source),
        },
        _ => Error::Lance(error),
    }
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
    Ok((0..column.len())
        .map(|i| {
            let mut hash = [0u8; 16];
            if column.is_valid(i) && column.value(i).len() == 16 {
                hash.copy_from_slice(column.value(i));
            }
            hash
        })
        .collect())
}
