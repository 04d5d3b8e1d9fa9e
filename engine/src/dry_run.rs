//! What a backfill would do, without doing it: [`plan_backfill`].
//!
//! A dry run resolves and plans exactly as [`start`](crate::start) does
//! (the same checks, the same checkpoint look-ups) and then stops: it takes
//! no lease, writes no record and touches neither the table nor its stores.
//! Its row counts are those the job's summary would report: the rows the
//! UDF would be called on (live rows the filter selects, outside the
//! batches already checkpointed), and the physical rows whose results come
//! from checkpoints.

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use futures::{StreamExt, TryStreamExt};
use leman_scheduler::plan::fragment_ranges;
use leman_scheduler::{FragmentInput, FragmentStart, JobStatus};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::location::TableLocation;
use crate::options::BackfillOptions;
use crate::plan::{StoredBatches, inspect_all};
use crate::registry::UdfRegistry;
use crate::resolve::{Resolved, resolve};
use crate::stores::TableStores;

/// Fragments whose selected rows are counted at once.
const SCAN_PARALLELISM: usize = 8;

/// The plan of a backfill, as a dry run finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillPlan {
    /// The column, or its unpacked siblings, comma-separated.
    pub column: String,
    /// Its UDF.
    pub udf: String,
    /// The UDF's version now.
    pub udf_version: String,
    /// The UDF version of the last job that filled the column, if one
    /// succeeded.
    pub last_filled_with: Option<String>,
    /// The filter in force.
    pub filter: String,
    /// The table version the job would read.
    pub read_version: u64,
    /// Fragments of the table.
    pub fragments_total: u64,
    /// Fragments with nothing to do (committed, or no row selected).
    pub fragments_done: u64,
    /// Fragments whose data file an earlier job wrote: only a commit left.
    pub fragments_to_commit: u64,
    /// Fragments with rows to compute.
    pub fragments_to_compute: u64,
    /// Of those, fragments whose values another UDF or version computed:
    /// every live row of them is computed again (after `alter-column`).
    pub fragments_recomputed_whole: u64,
    /// Fragments left for a later run by `num_frags`.
    pub fragments_left: u64,
    /// Tasks to run (batches without a checkpoint); under `--batch-size
    /// auto`, as cut at the largest size (the job cuts them smaller).
    pub tasks: u64,
    /// Tasks whose checkpoint is reused.
    pub tasks_checkpointed: u64,
    /// Rows the UDF would be called on.
    pub rows_to_compute: u64,
    /// Physical rows whose results come from checkpoints.
    pub rows_from_checkpoints: u64,
}

impl BackfillPlan {
    /// Whether the UDF's version differs from the one that last filled the
    /// column (`None` if no job filled it yet).
    pub fn udf_version_changed(&self) -> Option<bool> {
        self.last_filled_with.as_ref().map(|last| *last != self.udf_version)
    }
}

/// Plans a backfill of `columns` of `table` (one, or several in one pass)
/// as [`start_many`](crate::start_many) would, and reports the plan;
/// changes nothing.
pub async fn plan_backfill(
    table: &TableLocation,
    columns: &[String],
    options: &BackfillOptions,
    registry: &UdfRegistry,
) -> Result<BackfillPlan> {
    let stores = TableStores::open(table).await?;
    let resolved = resolve(table, registry, columns, options, &stores).await?;
    let label = resolved.columns_label();
    let stored = StoredBatches::list(&stores.checkpoints, &resolved.names().column).await?;
    let inspected = inspect_all(&resolved, &stores.checkpoints, options, &stored).await?;
    let last_filled_with = stores
        .job_records()
        .await?
        .into_iter()
        .rev()
        .find(|r| r.column == label && r.status == JobStatus::Succeeded)
        .map(|r| r.udf_version);
    let mut plan = BackfillPlan {
        column: resolved.parts().flat_map(|part| part.outputs.columns()).collect::<Vec<_>>().join(","),
        udf: resolved.parts().map(|part| part.udf.name()).collect::<Vec<_>>().join(","),
        udf_version: resolved.parts().map(|part| part.udf.version()).collect::<Vec<_>>().join(","),
        last_filled_with,
        filter: resolved.filters_label(),
        read_version: resolved.dataset.version().version,
        fragments_total: inspected.len() as u64,
        fragments_done: inspected.iter().filter(|f| f.is_none()).count() as u64,
        fragments_to_commit: 0,
        fragments_to_compute: 0,
        fragments_recomputed_whole: 0,
        fragments_left: 0,
        tasks: 0,
        tasks_checkpointed: 0,
        rows_to_compute: 0,
        rows_from_checkpoints: 0,
    };
    let batch_size = options.planned_batch_rows();
    let limit = options.num_frags.unwrap_or(usize::MAX);
    let mut to_compute = Vec::new();
    for (index, (input, fragment)) in inspected.into_iter().flatten().enumerate() {
        if index >= limit {
            plan.fragments_left += 1;
        } else if input.start == FragmentStart::Written {
            plan.fragments_to_commit += 1;
            plan.rows_from_checkpoints += input.physical_rows;
        } else {
            plan.fragments_to_compute += 1;
            plan.fragments_recomputed_whole += u64::from(fragment.all_rows.iter().any(|all| *all));
            let tasks = fragment_ranges(input.physical_rows, &input.checkpointed, batch_size).len() as u64;
            let checkpointed = input.checkpointed.len() as u64;
            plan.tasks += tasks - checkpointed;
            plan.tasks_checkpointed += checkpointed;
            plan.rows_from_checkpoints += input.checkpointed.iter().map(|rows| rows.end - rows.start).sum::<u64>();
            to_compute.push((input, fragment.all_rows));
        }
    }
    let selected: Vec<u64> = futures::stream::iter(&to_compute)
        .map(|(input, all_rows)| selected_rows_to_compute(&resolved, input, all_rows))
        .buffered(SCAN_PARALLELISM)
        .try_collect()
        .await?;
    plan.rows_to_compute = selected.iter().sum();
    Ok(plan)
}

/// Live rows of the fragment that some part's filter selects (all of them
/// if a part computes all rows), outside its checkpointed batches.
async fn selected_rows_to_compute(resolved: &Resolved, input: &FragmentInput, all_rows: &[bool]) -> Result<u64> {
    let Some(fragment) = resolved.dataset.get_fragment(input.id as usize) else { return Ok(0) };
    let mut scan = fragment.scan();
    scan.project(&Vec::<String>::new())?.with_row_address();
    if let Some(sql) = resolved.selection_sql(all_rows) {
        scan.filter(&sql)?;
    }
    let batches: Vec<_> = scan.try_into_stream().await?.try_collect().await?;
    let mut rows = 0;
    for batch in &batches {
        let Some(addresses) = batch.column_by_name("_rowaddr").and_then(|c| c.as_primitive_opt::<UInt64Type>()) else {
            continue;
        };
        let offsets = addresses.values().iter().map(|address| address & 0xffff_ffff);
        rows += offsets.filter(|offset| !input.checkpointed.iter().any(|range| range.contains(offset))).count() as u64;
    }
    Ok(rows)
}
