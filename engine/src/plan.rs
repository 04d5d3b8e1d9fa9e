//! Finding what is already done, fragment by fragment.
//!
//! A fragment is *done* when its fragment checkpoint's data file is the one
//! the table reads the column from (committed), or when no live row matches
//! the filter. It is *written* when its checkpoint is good but not committed
//! (the table still reads the column from the file the checkpoint's values
//! were merged with). Otherwise its batches are looked up one by one; those
//! with a good checkpoint are not recomputed.
//!
//! The fragment key leaves out the column's own data file, so that it
//! survives the commit of that very fragment; batch keys include it, so that
//! a batch whose kept values were read from an older file is recomputed.
//!
//! Batches are found whatever size they were computed at: the batch
//! checkpoints beside the table are listed once, and a stored batch counts
//! for a fragment where its key is the one this job would give its rows.
//! The fragment's tasks are those batches and the gaps between them, so a
//! re-run with another batch size recomputes no row already checkpointed.
//!
//! Under the default filter, a fragment whose values the column's fills
//! say another UDF or version computed is *stale*: all its live rows are
//! computed, not only the null ones, and its keys say so (their filter part
//! is [`ALL_ROWS`]), so that a re-run finds what it checkpointed.
//!
//! A job of several columns in one pass keys its checkpoints by all of
//! them: columns, UDFs and each column's filter in force as JSON lists
//! ([`leman_applier::JobNames`]), its fragment key leaving out every
//! column's file. A one-column job's keys are what they always were.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use futures::{StreamExt, TryStreamExt};
use lance::dataset::fragment::FileFragment;
use lance_table::format::DataFile;
use leman_checkpoint::{BatchCounts, BatchKeys, CheckpointKey, CheckpointStore, KeyParts, Origin};
use leman_scheduler::plan::fragment_ranges;
use leman_scheduler::{FragmentInput, FragmentStart};

use crate::error::{Error, Result};
use crate::options::BackfillOptions;
use crate::resolve::Resolved;

/// Fragments inspected at once.
const INSPECT_PARALLELISM: usize = 8;

/// The filter part of the keys of a stale fragment: every live row.
pub(crate) const ALL_ROWS: &str = "1=1";

/// What the driver needs to know of one fragment of the plan.
#[derive(Debug, Clone)]
pub(crate) struct FragmentPlan {
    pub fragment_key: CheckpointKey,
    /// What the fragment key hashed, for the fragment's record.
    pub origin: Origin,
    /// Batch checkpoint keys in physical row order: as planned, then as
    /// the tasks that ran cut them (with `--batch-size auto`).
    pub batches: Vec<(Range<u64>, CheckpointKey)>,
    /// The key of any of its batches.
    pub batch_keys: BatchKeys,
    /// The file the column's current values are read from (for several
    /// columns, the JSON list of each's).
    pub base_output_file: Option<String>,
    /// Its data file, when written by an earlier run and not committed.
    pub written: Option<DataFile>,
    /// For each part, whether every live row is computed, whatever the
    /// filter: its values came from another UDF or version.
    pub all_rows: Vec<bool>,
    /// The fills of the data file it writes, by lead field id.
    pub fill_tags: Vec<(i32, String)>,
}

/// The job's plan: scheduler inputs and the driver's view of each fragment.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub inputs: Vec<FragmentInput>,
    pub fragments: HashMap<u64, FragmentPlan>,
    /// Every batch object in the store when the pass planned, whether or
    /// not its record could be read: a commit deletes these even where the
    /// job recomputed them in memory.
    pub stored_before: HashSet<CheckpointKey>,
}

pub(crate) async fn plan(resolved: &Resolved, store: &CheckpointStore, options: &BackfillOptions) -> Result<Plan> {
    let stored = StoredBatches::list(store, &resolved.names().column).await?;
    let left = inspect_all(resolved, store, options, &stored).await?.into_iter().flatten();
    let mut plan = Plan { stored_before: stored.keys, ..Plan::default() };
    for (input, fragment) in left.take(options.num_frags.unwrap_or(usize::MAX)) {
        plan.fragments.insert(input.id, fragment);
        plan.inputs.push(input);
    }
    Ok(plan)
}

/// Every fragment of the table in id order: `None` for those with nothing
/// to do, else what is left of it (before `num_frags` is applied).
pub(crate) async fn inspect_all(
    resolved: &Resolved,
    store: &CheckpointStore,
    options: &BackfillOptions,
    stored: &StoredBatches,
) -> Result<Vec<Option<(FragmentInput, FragmentPlan)>>> {
    let batch_size = options.planned_batch_rows();
    let mut fragments = resolved.dataset.get_fragments();
    fragments.sort_by_key(|f| f.id());
    futures::stream::iter(fragments)
        .map(|fragment| inspect(resolved, store, fragment, batch_size, &stored.by_fragment))
        .buffered(INSPECT_PARALLELISM)
        .try_collect()
        .await
}

/// The batch checkpoints in the store, listed once as a pass plans.
#[derive(Debug, Default)]
pub(crate) struct StoredBatches {
    /// Those of the job's column, by fragment: their rows and keys, as
    /// their records say (a key still has to match the job's own).
    by_fragment: HashMap<u64, Vec<(Range<u64>, CheckpointKey)>>,
    /// Every one listed.
    keys: HashSet<CheckpointKey>,
}

impl StoredBatches {
    /// Lists the store's batch objects and reads each one's record.
    pub(crate) async fn list(store: &CheckpointStore, column: &str) -> Result<Self> {
        let batches = store.list_batches().await?;
        let keys = batches.iter().map(|object| object.key.clone()).collect();
        let records: Vec<_> = futures::stream::iter(batches)
            .map(|object| async move { Ok::<_, Error>(store.batch_record(&object.key).await?.map(|record| (object.key, record))) })
            .buffered(INSPECT_PARALLELISM)
            .try_collect()
            .await?;
        let mut by_fragment: HashMap<u64, Vec<(Range<u64>, CheckpointKey)>> = HashMap::new();
        for (key, record) in records.into_iter().flatten() {
            if let Some(origin) = record.origin.filter(|origin| origin.column == column) {
                by_fragment.entry(origin.fragment_id).or_default().push((record.rows, key));
            }
        }
        Ok(Self { by_fragment, keys })
    }
}

/// `None` when the fragment has nothing to do.
async fn inspect(
    resolved: &Resolved,
    store: &CheckpointStore,
    fragment: FileFragment,
    batch_size: u64,
    stored: &HashMap<u64, Vec<(Range<u64>, CheckpointKey)>>,
) -> Result<Option<(FragmentInput, FragmentPlan)>> {
    let id = fragment.id() as u64;
    let files = &fragment.metadata().files;
    // Where each part's values are read from now, and whether they are
    // stale (another UDF or version computed them).
    let output_files: Vec<Option<String>> = resolved
        .parts()
        .map(|part| files.iter().find(|f| f.fields.contains(&part.field_id)).map(|f| f.path.clone()))
        .collect();
    let all_rows: Vec<bool> = resolved.parts().zip(&output_files).map(|(part, file)| part.fills.is_stale(file.as_ref())).collect();
    let filters: Vec<&str> =
        resolved.parts().zip(&all_rows).map(|(part, all)| if *all { ALL_ROWS } else { part.filter.sql() }).collect();
    let filter = joined(&filters);
    let names = resolved.names();
    let parts = |data_files: Vec<String>| KeyParts {
        udf_name: &names.udf_name,
        udf_version: &names.udf_version,
        column: &names.column,
        filter: &filter,
        table: &resolved.table.uri,
        fragment_id: id,
        data_files,
    };
    let is_output = |path: &String| output_files.iter().flatten().any(|output| output == path);
    let input_files = files.iter().filter(|f| !is_output(&f.path)).map(|f| f.path.clone()).collect();
    let fragment_parts = parts(input_files);
    let fragment_key = fragment_parts.fragment_key();
    let origin = fragment_parts.origin();
    let output_file = base_output_key(&output_files);
    let physical_rows = fragment.physical_rows().await? as u64;
    let mut input = FragmentInput::new(id, physical_rows);
    let mut written = None;
    match store.find_fragment(&fragment_key).await? {
        Some(record) if output_files.iter().all(|file| file.as_ref() == Some(&record.data_file.path)) => return Ok(None),
        Some(record) if record.base_output_file == output_file => {
            input.start = FragmentStart::Written;
            written = Some(record.data_file);
        }
        _ => {
            // A part whose column has no values in this fragment (no data
            // file: all null) selects every live row under its default
            // filter: counting them needs no scan.
            let every_live_row: Vec<bool> = resolved
                .parts()
                .zip(all_rows.iter().zip(&output_files))
                .map(|(part, (all, file))| *all || (file.is_none() && part.has_default_filter()))
                .collect();
            if fragment.count_rows(resolved.selection_sql(&every_live_row)).await? == 0 {
                return Ok(None);
            }
        }
    }
    let batch_parts = parts(files.iter().map(|f| f.path.clone()).collect());
    // This job's batches among those stored, each checked whole (a torn
    // one is computed again).
    let ours: Vec<(Range<u64>, CheckpointKey)> = match (&written, stored.get(&id)) {
        (None, Some(stored)) => stored.iter().filter(|(rows, key)| batch_parts.batch_key(rows.clone()) == *key).cloned().collect(),
        _ => Vec::new(),
    };
    let found: Vec<Option<(Range<u64>, BatchCounts)>> = futures::stream::iter(ours)
        .map(|(rows, key)| async move { Ok::<_, Error>(store.find_batch(&key).await?.map(|record| (rows, record.counts))) })
        .buffered(INSPECT_PARALLELISM)
        .try_collect()
        .await?;
    let checkpointed: Vec<Range<u64>> = found.iter().flatten().map(|(rows, _)| rows.clone()).collect();
    let batch_keys = batch_parts.batch_keys();
    let batches: Vec<(Range<u64>, CheckpointKey)> = fragment_ranges(physical_rows, &checkpointed, batch_size)
        .into_iter()
        .map(|rows| (rows.clone(), batch_keys.key(rows)))
        .collect();
    if written.is_none() {
        // Overlapping stored batches: only those the tasks use count.
        for (rows, counts) in found.into_iter().flatten().filter(|(rows, _)| batches.iter().any(|(r, _)| r == rows)) {
            input.checkpointed.push(rows);
            input.checkpointed_counts.0 += counts.rows_computed;
            input.checkpointed_counts.1 += counts.rows_skipped;
        }
    }
    let fill_tags = resolved
        .parts()
        .zip(output_files.iter().zip(&all_rows))
        .filter_map(|(part, (file, all))| Some((part.field_id, part.fills.tag_after(file.as_ref(), *all)?)))
        .collect();
    let plan =
        FragmentPlan { fragment_key, origin, batches, batch_keys, base_output_file: output_file, written, all_rows, fill_tags };
    Ok(Some((input, plan)))
}

/// What a fragment record keeps as the file its job's values were merged
/// with: the file of the only part, or the JSON list of each part's file
/// (`None` where no part has one).
pub(crate) fn base_output_key(files: &[Option<String>]) -> Option<String> {
    match files {
        [one] => one.clone(),
        several if several.iter().all(Option::is_none) => None,
        several => Some(serde_json::to_string(several).unwrap_or_default()),
    }
}

/// One key part of several: the only one as it is (so that the keys of a
/// one-column job are those it always had), several as a JSON list.
fn joined(parts: &[&str]) -> String {
    match parts {
        [one] => one.to_string(),
        several => serde_json::to_string(several).unwrap_or_default(),
    }
}
