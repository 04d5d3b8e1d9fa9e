//! Promoting staged jobs: committing what they wrote, one or several
//! columns in one transaction.
//!
//! Each staged fragment is judged on the table's newest version first: one
//! whose rows or files changed since its job read the table (a compaction,
//! an update, a delete) cannot take its file. The promote is then refused
//! naming those fragments, or, with `recompute`, each job with changed
//! fragments is staged again on the newest version (its checkpoints that
//! still hold are reused, so only the changed fragments, and any appended
//! since, are computed) and the new job promoted in its place.
//!
//! With the columns' leases held, one job commits its files as they are in
//! one `DataReplacement`, rebased over appends made since. Several jobs
//! (several columns) are joined: for each fragment one data file holding
//! every promoted column is written by reading the jobs' files (and, for a
//! fragment a job did not stage, the column's current values), and the
//! files are committed in one `DataReplacement`, so readers see every
//! column change in one version. (No fill is recorded for a joined file:
//! a later `alter-column` takes its values as of unknown origin and keeps
//! them, where it would recompute a staged file's of another UDF.)

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::Schema as ArrowSchema;
use futures::{StreamExt, TryStreamExt};
use lance::Dataset;
use lance::dataset::fragment::{FileFragment, FragReadConfig};
use lance::dataset::transaction::DataReplacementGroup;
use lance_core::datatypes::Schema as LanceSchema;
use lance_table::format::DataFile;
use leman_scheduler::JobStatus;
use leman_scheduler::plan::row_ranges;
use leman_writer::commit::{commit_replacements, still_fits};

use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::lease::JobFence;
use crate::location::TableLocation;
use crate::options::BackfillOptions;
use crate::registry::UdfRegistry;
use crate::resolve::output_columns;
use crate::stage::{StagedJob, staged_job};
use crate::stores::TableStores;

/// Rows read from each file at once when joining files.
const JOIN_ROWS: u64 = 8192;

/// What a promote did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promoted {
    /// The table version that holds the promoted columns.
    pub version: u64,
    /// The columns committed.
    pub columns: Vec<String>,
    /// Fragments committed.
    pub fragments: u64,
    /// The jobs promoted: those asked for, or the jobs that staged their
    /// changed fragments again in their place.
    pub jobs: Vec<String>,
    /// Fragments that a commit made meanwhile left out (gone or rewritten
    /// between the check and the commit); a backfill computes them.
    pub left_out: Vec<u64>,
}

/// Commits staged jobs `job_ids` of `table` in one transaction. A changed
/// fragment refuses the promote, naming it, unless `recompute`: then the
/// job is staged again on the newest version (building its UDF from
/// `registry`, running on `executor`) and that job promoted.
pub async fn promote(
    table: &TableLocation,
    job_ids: &[String],
    recompute: bool,
    registry: &UdfRegistry,
    executor: Arc<dyn Executor>,
) -> Result<Promoted> {
    let stores = TableStores::open(table).await?;
    let mut jobs = Vec::new();
    for job_id in job_ids {
        let (record, staged) = staged_job(table, &stores, job_id).await?;
        if let Some((other, _)) = jobs.iter().find(|(_, s): &&(String, StagedJob)| s.column == staged.column) {
            return Err(Error::InvalidOptions {
                reason: format!("jobs {other} and {job_id} both staged column {}; promote one of them", staged.column),
            });
        }
        jobs.push((record.filter, staged));
    }
    if jobs.is_empty() {
        return Err(Error::InvalidOptions { reason: "name at least one staged job to promote".into() });
    }
    let latest = table.open_dataset().await?;
    let mut staged = Vec::new();
    for (filter, job) in jobs {
        let changed = changed_fragments(&latest, &job).await?;
        if changed.is_empty() {
            staged.push(job);
        } else if recompute {
            tracing::info!(job = %job.job_id, ?changed, "fragments changed since staging; staging the column again");
            staged.push(stage_again(table, &stores, &job, filter, registry, executor.clone()).await?);
        } else {
            return Err(stale(&job, &changed));
        }
    }
    let promote_id = format!("promote-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let columns: Vec<String> = staged.iter().map(|job| job.column.clone()).collect();
    let leases = stores.leases(&columns, &promote_id).await?;
    let outcome = commit_staged(table, &staged, &leases.fence()).await;
    leases.release().await;
    let promoted = outcome?;
    for job in &staged {
        if let Some(mut record) = stores.jobs.get(&job.job_id).await? {
            record.status = JobStatus::Promoted;
            if let Some(summary) = &mut record.summary {
                summary.version = Some(promoted.version);
                summary.commits = 1;
            }
            stores.jobs.put(&record).await?;
        }
        stores.staged.remove(&job.job_id).await?;
    }
    Ok(promoted)
}

/// The refusal of a promote whose `changed` fragments of `job` changed.
fn stale(job: &StagedJob, changed: &[u64]) -> Error {
    let ids: Vec<String> = changed.iter().map(u64::to_string).collect();
    Error::StagedStale {
        reason: format!(
            "fragment(s) {} of job {} (column {}) changed since it was staged at version {}",
            ids.join(", "),
            job.job_id,
            job.column,
            job.read_version
        ),
    }
}

/// The fragments of `job` whose rows or files changed since it read the
/// table (gone, compacted, updated, their column rewritten).
async fn changed_fragments(latest: &Dataset, job: &StagedJob) -> Result<Vec<u64>> {
    let read = latest.checkout_version(job.read_version).await?;
    let field_id = read
        .schema()
        .field(&job.column)
        .filter(|_| latest.schema().field(&job.column).is_some())
        .map(|field| field.id)
        .ok_or_else(|| Error::ColumnNotFound { table: latest.uri().to_string(), column: job.column.clone() })?;
    Ok(job
        .fragments
        .iter()
        .map(|f| f.fragment_id)
        .filter(|id| !still_fits(read.fragments(), latest.fragments(), *id, field_id))
        .collect())
}

/// Stages `job`'s column again on the newest version, reusing what still
/// holds; the old job is recorded discarded, and its files that the new
/// one does not reuse are removed.
async fn stage_again(
    table: &TableLocation,
    stores: &TableStores,
    job: &StagedJob,
    filter: String,
    registry: &UdfRegistry,
    executor: Arc<dyn Executor>,
) -> Result<StagedJob> {
    let options = BackfillOptions { filter: Some(filter), stage: true, ..BackfillOptions::default() };
    let again = crate::start(table, &job.column, options, registry, executor).await?;
    let new_id = again.id().to_string();
    again.wait().await?;
    let new = stores.staged.get(&new_id).await?.ok_or_else(|| Error::StagedStale {
        reason: format!("staging column {} again (job {new_id}) wrote nothing", job.column),
    })?;
    let kept: BTreeSet<&str> = new.fragments.iter().map(|f| f.data_file.path.as_str()).collect();
    let dataset = table.open_dataset().await?;
    let object_store = dataset.object_store(None).await?;
    for fragment in job.fragments.iter().filter(|f| !kept.contains(f.data_file.path.as_str())) {
        let path = dataset.data_dir().join(fragment.data_file.path.as_str());
        if let Err(error) = object_store.delete(&path).await {
            tracing::warn!(%error, %path, "could not remove a replaced staged file");
        }
    }
    if let Some(mut record) = stores.jobs.get(&job.job_id).await? {
        record.status = JobStatus::Discarded;
        stores.jobs.put(&record).await?;
    }
    stores.staged.remove(&job.job_id).await?;
    Ok(new)
}

/// Commits `staged` (whose fragments all fit the newest version) in one
/// transaction, unless one of the columns' leases (`fence`) was taken over.
async fn commit_staged(table: &TableLocation, staged: &[StagedJob], fence: &JobFence) -> Result<Promoted> {
    let latest = Arc::new(table.open_dataset().await?);
    for job in staged {
        let changed = changed_fragments(&latest, job).await?;
        if !changed.is_empty() {
            return Err(stale(job, &changed));
        }
    }
    let mut columns: Vec<String> = Vec::new();
    for job in staged {
        let outputs = output_columns(&latest, &job.column)
            .ok_or_else(|| Error::ColumnNotFound { table: table.uri.clone(), column: job.column.clone() })?;
        columns.extend(outputs.columns().into_iter().map(str::to_string));
    }
    let jobs: Vec<String> = staged.iter().map(|job| job.job_id.clone()).collect();
    let (read, lead, groups) = match staged {
        [one] => {
            let read = Arc::new(latest.checkout_version(one.read_version).await?);
            let groups = one.fragments.iter().map(|f| DataReplacementGroup(f.fragment_id, f.data_file.clone())).collect();
            (read, one.column.clone(), groups)
        }
        several => (latest.clone(), several[0].column.clone(), joined_files(&latest, several, &columns).await?),
    };
    fence.check().await?;
    let committed = commit_replacements(read, latest, &lead, groups).await?;
    let version = committed.dataset.version().version;
    Ok(Promoted { version, columns, fragments: committed.fragments.len() as u64, jobs, left_out: committed.left_out })
}

/// One data file per fragment staged by any of `jobs`, holding `columns`
/// (every job's, in job order): each job's values from its staged file,
/// or, where it staged nothing for the fragment, the column's values now.
async fn joined_files(latest: &Arc<Dataset>, jobs: &[StagedJob], columns: &[String]) -> Result<Vec<DataReplacementGroup>> {
    let joined = latest.schema().project(columns)?;
    let field_ids: BTreeSet<i32> = joined.fields.iter().map(|f| f.id).collect();
    let mut by_fragment: HashMap<u64, Vec<Option<DataFile>>> = HashMap::new();
    for (i, job) in jobs.iter().enumerate() {
        for staged in &job.fragments {
            by_fragment.entry(staged.fragment_id).or_insert_with(|| vec![None; jobs.len()])[i] = Some(staged.data_file.clone());
        }
    }
    let mut ids: Vec<u64> = by_fragment.keys().copied().collect();
    ids.sort_unstable();
    let mut groups = Vec::with_capacity(ids.len());
    for id in ids {
        let fragment = latest
            .get_fragment(id as usize)
            .ok_or_else(|| Error::StagedStale { reason: format!("fragment {id} is gone from the table") })?;
        let covered: BTreeSet<i32> =
            fragment.metadata().files.iter().flat_map(|f| f.fields.iter().copied()).filter(|id| field_ids.contains(id)).collect();
        if !covered.is_empty() && covered != field_ids {
            return Err(Error::InvalidOptions {
                reason: format!(
                    "fragment {id} holds values of some of columns {} and not of the others; Lance 14 cannot replace them in one commit: promote the jobs one at a time",
                    columns.join(", ")
                ),
            });
        }
        let mut sources = Vec::with_capacity(jobs.len());
        for (job, file) in jobs.iter().zip(&by_fragment[&id]) {
            let outputs = output_columns(latest, &job.column)
                .ok_or_else(|| Error::ColumnNotFound { table: latest.uri().to_string(), column: job.column.clone() })?;
            let schema = latest.schema().project(&outputs.columns())?;
            let source = match file {
                Some(file) => {
                    let mut metadata = fragment.metadata().clone();
                    metadata.files = vec![file.clone()];
                    metadata.deletion_file = None;
                    FileFragment::new(latest.clone(), metadata)
                }
                None => fragment.clone(),
            };
            sources.push((source, schema));
        }
        let physical_rows = fragment.physical_rows().await? as u64;
        let arrow_schema = Arc::new(ArrowSchema::from(&joined));
        let sources = Arc::new(sources);
        let chunks = futures::stream::iter(row_ranges(physical_rows, JOIN_ROWS)).then(move |rows| {
            let (sources, schema) = (sources.clone(), arrow_schema.clone());
            async move { read_joined(&sources, rows, schema).await }
        });
        groups.push(fragment.write_columns(chunks, &joined).await?);
    }
    Ok(groups)
}

/// Physical `rows` of every source's columns, side by side.
async fn read_joined(sources: &[(FileFragment, LanceSchema)], rows: Range<u64>, schema: Arc<ArrowSchema>) -> lance::Result<RecordBatch> {
    let len = u32::try_from(rows.end - rows.start).unwrap_or(u32::MAX).max(1);
    let mut columns = Vec::new();
    for (source, projection) in sources {
        let reader = source.open(projection, FragReadConfig::default().with_ignore_deletions(true)).await?;
        let batches: Vec<RecordBatch> =
            reader.read_ranges(Arc::from([rows.clone()]), len).await?.buffered(2).try_collect().await?;
        let part = arrow_select::concat::concat_batches(&Arc::new(ArrowSchema::from(projection)), &batches)?;
        columns.extend(part.columns().iter().cloned());
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}
