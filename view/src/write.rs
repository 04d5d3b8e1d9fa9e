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
use arrow_schema::{ArrowError, Schema as ArrowSchema};
use arrow_select::interleave::interleave;
use lance::Dataset;
use lance::dataset::fragment::write::FragmentCreateBuilder;
use lance::dataset::transaction::{Operation, Transaction, UpdateMode};
use lance::dataset::{CommitBuilder, ProjectionRequest, WriteParams};
use lance_table::format::Fragment;
use leman_engine::{Result, TableLocation};
use sha2::{Digest, Sha256};

use crate::diff::{Changes, Insert};
use crate::hash::hash_column;
use crate::query::{META_COLUMNS, ViewRecord};
use crate::read::SourceRows;

/// Rows per batch handed to the file writer.
const WRITE_BATCH_ROWS: usize = 64 * 1024;

/// Commits `changes` to `view` (opened at `location`), with the rows
/// written taken from `source`; returns the view after the commit (as it
/// was, when there is nothing to change).
pub async fn commit_changes(
    view: Dataset,
    location: &TableLocation,
    record: &ViewRecord,
    changes: Changes,
    source: SourceRows,
) -> Result<Dataset> {
    if changes.is_empty() {
        return Ok(view);
    }
    let (updated_fragments, removed_fragment_ids) = delete_rows(&view, &changes.delete).await?;
    let inserts = ordered(changes.insert, &source, record.shuffle_seed);
    let new_fragments = write_rows(&view, location, record, inserts, source).await?;
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
fn ordered(mut inserts: Vec<Insert>, source: &SourceRows, seed: Option<u64>) -> Vec<Insert> {
    if let Some(seed) = seed {
        inserts.sort_by_cached_key(|insert| {
            let id = source.candidates[insert.candidate].source_row_id;
            let digest = Sha256::new().chain_update(seed.to_le_bytes()).chain_update(id.to_le_bytes()).finalize();
            let mut key = [0u8; 8];
            key.copy_from_slice(&digest[..8]);
            u64::from_le_bytes(key)
        });
    }
    inserts
}

/// Writes `inserts` as new fragments of `view` (ids assigned at commit),
/// `WRITE_BATCH_ROWS` rows at a time.
async fn write_rows(
    view: &Dataset,
    location: &TableLocation,
    record: &ViewRecord,
    inserts: Vec<Insert>,
    source: SourceRows,
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
    let (inserts, source) = (Arc::new(inserts), Arc::new(source));
    let chunks = {
        let (inserts, source, schema) = (inserts.clone(), source.clone(), base_arrow.clone());
        (0..inserts.len()).step_by(WRITE_BATCH_ROWS).map(move |start| {
            let chunk = &inserts[start..(start + WRITE_BATCH_ROWS).min(inserts.len())];
            base_rows(chunk, &source, schema.clone()).map_err(|error| ArrowError::ExternalError(Box::new(error)))
        })
    };
    let reader = RecordBatchIterator::new(chunks, base_arrow);
    let mut fragments =
        FragmentCreateBuilder::new(&location.uri).schema(&base_schema).write_params(&params).write_fragments(reader).await?;
    add_kept_udf_values(view, location, record, &inserts, &params, &mut fragments).await?;
    Ok(fragments)
}

/// The view's own columns and the copied values of `inserts`, in order.
fn base_rows(inserts: &[Insert], source: &SourceRows, schema: Arc<ArrowSchema>) -> Result<RecordBatch> {
    let positions: Vec<(usize, usize)> =
        inserts.iter().map(|insert| source.changed_row[insert.candidate].ok_or_else(|| missing("a written row"))).collect::<Result<_>>()?;
    let candidates = || inserts.iter().map(|insert| &source.candidates[insert.candidate]);
    // `changed` holds `_rowid`, then the copied columns: the view's
    // `__source_row_id`, then the same columns, with the two hashes between.
    let column = |index: usize| -> Result<ArrayRef> {
        let arrays: Vec<&dyn Array> = source.changed.iter().map(|batch| batch.column(index).as_ref()).collect();
        Ok(interleave(&arrays, &positions)?)
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    columns.push(column(0)?);
    columns.push(hash_column(&candidates().map(|c| c.values_hash).collect::<Vec<_>>())?);
    columns.push(hash_column(&candidates().map(|c| c.inputs_hash).collect::<Vec<_>>())?);
    for index in 1..schema.fields().len() - 2 {
        columns.push(column(index)?);
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Adds to each new fragment, for each UDF column, a data file of the
/// values its rows keep (null where the backfill is to compute them),
/// where it keeps any; one fragment's kept values at a time.
async fn add_kept_udf_values(
    view: &Dataset,
    location: &TableLocation,
    record: &ViewRecord,
    inserts: &[Insert],
    params: &WriteParams,
    fragments: &mut [Fragment],
) -> Result<()> {
    if record.udf_columns.is_empty() {
        return Ok(());
    }
    let mut start = 0usize;
    for fragment in fragments.iter_mut() {
        let rows = fragment.physical_rows.ok_or_else(|| missing("the row count of a fragment written"))?;
        let written = &inserts[start..start + rows];
        start += rows;
        let mut sources: Vec<u64> = written.iter().filter_map(|insert| insert.carry_from).collect();
        if sources.is_empty() {
            continue;
        }
        sources.sort_unstable();
        sources.dedup();
        // The view has no stable row ids: its row ids are its addresses.
        let projection = ProjectionRequest::from_columns(record.udf_columns.iter().map(String::as_str), view.schema());
        let kept = view.take_rows(&sources, projection).await?;
        let row_of: HashMap<u64, u32> = sources.iter().enumerate().map(|(i, address)| (*address, i as u32)).collect();
        let indices: UInt32Array = written.iter().map(|insert| insert.carry_from.and_then(|a| row_of.get(&a).copied())).collect();
        for column in &record.udf_columns {
            let schema = view.schema().project(&[column.as_str()])?;
            let arrow = Arc::new(ArrowSchema::from(&schema));
            let values = arrow_select::take::take(kept.column_by_name(column).ok_or_else(|| missing(column))?, &indices, None)?;
            let batch = RecordBatch::try_new(arrow.clone(), vec![values])?;
            let reader = RecordBatchIterator::new([Ok(batch)], arrow);
            let file = FragmentCreateBuilder::new(&location.uri).schema(&schema).write_params(params).write(reader, None).await?;
            fragment.files.extend(file.files);
        }
    }
    Ok(())
}

fn missing(what: &str) -> leman_engine::Error {
    leman_engine::Error::Arrow(ArrowError::SchemaError(format!("a refresh lost track of {what}; run it again")))
}
