//! Writing a refresh's changes into the view in one Lance `Update`
//! transaction: deletion vectors for the rows that go, new fragments for
//! the rows that come (their copied values in one data file, and the UDF
//! values they keep, each UDF column in a data file of its own, as a
//! backfill would have written it), so that a reader sees the view at the
//! old source version or at the new one, never between. The UDF values
//! not kept are left null, for the refresh's backfill to compute.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchIterator, UInt32Array};
use arrow_schema::Schema as ArrowSchema;
use lance::Dataset;
use lance::dataset::fragment::write::FragmentCreateBuilder;
use lance::dataset::transaction::{Operation, Transaction, UpdateMode};
use lance::dataset::{CommitBuilder, ProjectionRequest, WriteParams};
use lance_core::ROW_ID;
use lance_table::format::Fragment;
use leman_engine::{Result, TableLocation};
use sha2::{Digest, Sha256};

use crate::diff::{Changes, Insert};
use crate::hash::hash_column;
use crate::query::{INPUTS_HASH, META_COLUMNS, SOURCE_ROW_ID, VALUES_HASH, ViewRecord};
use crate::read::SourceRows;

/// Rows per batch handed to the file writer.
const WRITE_BATCH_ROWS: usize = 64 * 1024;

/// Commits `changes` to `view` (opened at `location`); returns the view
/// after the commit (as it was, when there is nothing to change).
pub async fn commit_changes(
    view: Dataset,
    location: &TableLocation,
    record: &ViewRecord,
    changes: &Changes,
    source: &SourceRows,
) -> Result<Dataset> {
    if changes.is_empty() {
        return Ok(view);
    }
    let (updated_fragments, removed_fragment_ids) = delete_rows(&view, &changes.delete).await?;
    let inserts = ordered(&changes.insert, source, record.shuffle_seed);
    let new_fragments = write_rows(&view, location, record, &inserts, source).await?;
    let operation = Operation::Update {
        removed_fragment_ids,
        updated_fragments,
        new_fragments,
        fields_modified: Vec::new(),
        compacted_sstables: Vec::new(),
        fields_for_preserving_frag_bitmap: Vec::new(),
        update_mode: Some(UpdateMode::RewriteRows),
        inserted_rows_filter: None,
        updated_fragment_offsets: None,
    };
    let transaction = Transaction::new(view.version().version, operation, None);
    Ok(CommitBuilder::new(Arc::new(view)).execute(transaction).await?)
}

/// The fragments of `view` with the rows at `addresses` deleted, and those
/// left with no row.
async fn delete_rows(view: &Dataset, addresses: &[u64]) -> Result<(Vec<Fragment>, Vec<u64>)> {
    let mut by_fragment: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    for address in addresses {
        by_fragment.entry(address >> 32).or_default().push(*address as u32);
    }
    let (mut updated, mut removed) = (Vec::new(), Vec::new());
    for (id, offsets) in by_fragment {
        let Some(fragment) = view.get_fragment(id as usize) else { continue };
        match fragment.extend_deletions(offsets).await? {
            Some(fragment) => updated.push(fragment.metadata().clone()),
            None => removed.push(id),
        }
    }
    Ok((updated, removed))
}

/// The rows to write in the order to write them: as read, or shuffled by
/// `seed` (ordered by a hash of the seed and the source row id).
fn ordered(inserts: &[Insert], source: &SourceRows, seed: Option<u64>) -> Vec<Insert> {
    let mut inserts = inserts.to_vec();
    if let Some(seed) = seed {
        inserts.sort_by_cached_key(|insert| {
            let id = source.candidates[insert.candidate].source_row_id;
            let digest = Sha256::new().chain_update(seed.to_le_bytes()).chain_update(id.to_le_bytes()).finalize();
            u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
        });
    }
    inserts
}

/// Writes `inserts` as new fragments of `view` (ids assigned at commit).
async fn write_rows(
    view: &Dataset,
    location: &TableLocation,
    record: &ViewRecord,
    inserts: &[Insert],
    source: &SourceRows,
) -> Result<Vec<Fragment>> {
    if inserts.is_empty() {
        return Ok(Vec::new());
    }
    let params = WriteParams {
        max_rows_per_file: record.max_rows_per_file,
        store_params: Some(location.store_params()),
        data_storage_version: Some(view.manifest().data_storage_format.lance_file_format().to_selector()),
        ..WriteParams::default()
    };
    let base_columns: Vec<&str> = META_COLUMNS.iter().copied().chain(record.copies.iter().map(String::as_str)).collect();
    let base_schema = view.schema().project(&base_columns)?;
    let base_arrow = Arc::new(ArrowSchema::from(&base_schema));
    let rows = base_rows(inserts, source, record, base_arrow.clone())?;
    let batches: Vec<RecordBatch> = (0..rows.num_rows())
        .step_by(WRITE_BATCH_ROWS)
        .map(|start| rows.slice(start, WRITE_BATCH_ROWS.min(rows.num_rows() - start)))
        .collect();
    let reader = RecordBatchIterator::new(batches.into_iter().map(Ok), base_arrow);
    let mut fragments =
        FragmentCreateBuilder::new(&location.uri).schema(&base_schema).write_params(&params).write_fragments(reader).await?;
    add_kept_udf_values(view, location, record, inserts, &params, &mut fragments).await?;
    Ok(fragments)
}

/// The view's own columns and the copied values of `inserts`, in order.
fn base_rows(inserts: &[Insert], source: &SourceRows, record: &ViewRecord, schema: Arc<ArrowSchema>) -> Result<RecordBatch> {
    let changed = arrow_select::concat::concat_batches(
        &source.changed.first().map(RecordBatch::schema).unwrap_or_else(|| schema.clone()),
        &source.changed,
    )?;
    let indices: UInt32Array = inserts.iter().map(|insert| source.changed_row[insert.candidate]).collect();
    let candidates = || inserts.iter().map(|insert| &source.candidates[insert.candidate]);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    columns.push(arrow_select::take::take(changed.column_by_name(ROW_ID).ok_or_else(no_row_id)?, &indices, None)?);
    columns.push(hash_column(&candidates().map(|c| c.values_hash).collect::<Vec<_>>())?);
    columns.push(hash_column(&candidates().map(|c| c.inputs_hash).collect::<Vec<_>>())?);
    for name in &record.copies {
        let column = changed.column_by_name(name).ok_or_else(|| missing(name))?;
        columns.push(arrow_select::take::take(column, &indices, None)?);
    }
    debug_assert_eq!([SOURCE_ROW_ID, VALUES_HASH, INPUTS_HASH], META_COLUMNS);
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Adds to each new fragment, for each UDF column, a data file of the
/// values its rows keep (null where the backfill is to compute them),
/// where it keeps any.
async fn add_kept_udf_values(
    view: &Dataset,
    location: &TableLocation,
    record: &ViewRecord,
    inserts: &[Insert],
    params: &WriteParams,
    fragments: &mut [Fragment],
) -> Result<()> {
    let mut sources: Vec<u64> = inserts.iter().filter_map(|insert| insert.carry_from).collect();
    if sources.is_empty() || record.udf_columns.is_empty() {
        return Ok(());
    }
    sources.sort_unstable();
    sources.dedup();
    let projection = ProjectionRequest::from_columns(record.udf_columns.iter().map(String::as_str), view.schema());
    let kept = view.take_rows(&sources, projection).await?;
    let row_of: HashMap<u64, u32> = sources.iter().enumerate().map(|(i, address)| (*address, i as u32)).collect();
    let indices: UInt32Array = inserts.iter().map(|insert| insert.carry_from.and_then(|a| row_of.get(&a).copied())).collect();
    let mut start = 0usize;
    for fragment in fragments.iter_mut() {
        let rows = fragment.physical_rows.unwrap_or_default();
        let slice = indices.slice(start, rows);
        start += rows;
        if slice.null_count() == rows {
            continue;
        }
        for column in &record.udf_columns {
            let schema = view.schema().project(&[column.as_str()])?;
            let arrow = Arc::new(ArrowSchema::from(&schema));
            let values = arrow_select::take::take(kept.column_by_name(column).ok_or_else(|| missing(column))?, &slice, None)?;
            let batch = RecordBatch::try_new(arrow.clone(), vec![values])?;
            let reader = RecordBatchIterator::new([Ok(batch)], arrow);
            let written = FragmentCreateBuilder::new(&location.uri).schema(&schema).write_params(params).write(reader, None).await?;
            fragment.files.extend(written.files);
        }
    }
    Ok(())
}

fn no_row_id() -> leman_engine::Error {
    missing(ROW_ID)
}

fn missing(column: &str) -> leman_engine::Error {
    leman_engine::Error::Arrow(arrow_schema::ArrowError::SchemaError(format!("a refresh read no column {column}")))
}
