//! Records of the rows a UDF failed on, beside the table
//! (`_leman/errors/<job>/<fragment>-<first row>.json`, one object per task
//! that had any), so that `leman errors` can list them and a later backfill
//! can recompute exactly those rows (`--retry-errors JOB`, which becomes
//! `_rowaddr IN (...)`).
//!
//! A row the `skip` policy left null is recorded when its task is
//! checkpointed; the row (or batch) that failed a job under `fail` or
//! `retry:N` is recorded when the job fails. The summary of a job keeps only
//! its first thousand errors; these records keep them all.

use std::ops::Range;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use leman_applier::{ROW_ADDRESS, row_address};

use crate::error::{Error, Result};

/// Objects read at once when listing.
const READ_PARALLELISM: usize = 16;

/// What became of a failed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowOutcome {
    /// Left null by the `skip` policy; the job went on.
    Skipped,
    /// Failed the job (`fail`, or `retry:N` with every try spent).
    Failed,
}

impl std::fmt::Display for RowOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RowOutcome::Skipped => "skipped",
            RowOutcome::Failed => "failed",
        })
    }
}

/// One row (or, where the UDF's shape cannot tell the row, one batch) that
/// a UDF failed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowErrorRecord {
    /// The job that met it.
    pub job_id: String,
    /// The column it computed.
    pub column: String,
    /// The fragment.
    pub fragment_id: u64,
    /// The row's Lance address; `None` when the batch failed as a whole.
    pub row_address: Option<u64>,
    /// The physical rows of the task it was in.
    pub task_rows: Range<u64>,
    /// UDF name.
    pub udf_name: String,
    /// UDF version.
    pub udf_version: String,
    /// Skipped or failed.
    pub outcome: RowOutcome,
    /// Calls of the UDF the row was part of.
    pub attempts: u32,
    /// What the UDF said.
    pub message: String,
    /// Unix time in milliseconds.
    pub at_ms: u64,
}

/// Reads and writes the row error records of one table.
#[derive(Debug, Clone)]
pub struct RowErrorStore {
    store: Arc<dyn ObjectStore>,
    dir: Path,
}

impl RowErrorStore {
    /// The records of the table whose directory is `table_dir`.
    pub fn new(store: Arc<dyn ObjectStore>, table_dir: &Path) -> Self {
        Self { store, dir: table_dir.clone().join("_leman").join("errors") }
    }

    /// Records the errors of one task: `records` share their job, fragment
    /// and task rows, and replace what an earlier try of the task recorded.
    pub async fn put(&self, records: &[RowErrorRecord]) -> Result<()> {
        let Some(first) = records.first() else { return Ok(()) };
        let name = format!("{}-{}.json", first.fragment_id, first.task_rows.start);
        let path = self.dir.clone().join(first.job_id.as_str()).join(name);
        let bytes = serde_json::to_vec(records).map_err(|e| Error::Io(e.into()))?;
        self.store.put(&path, PutPayload::from(bytes)).await.map_err(store_error)?;
        Ok(())
    }

    /// Every record of job `job_id`, or of every job, oldest first (then by
    /// job, fragment and row).
    pub async fn list(&self, job_id: Option<&str>) -> Result<Vec<RowErrorRecord>> {
        let prefix = match job_id {
            Some(id) => self.dir.clone().join(id),
            None => self.dir.clone(),
        };
        let paths: Vec<Path> = self.store.list(Some(&prefix)).map_ok(|meta| meta.location).try_collect().await.map_err(store_error)?;
        let store = self.store.clone();
        let batches: Vec<Vec<RowErrorRecord>> = futures::stream::iter(paths)
            .map(|path| {
                let store = store.clone();
                async move {
                    let bytes = store.get(&path).await.map_err(store_error)?.bytes().await.map_err(store_error)?;
                    // A record this build cannot read is left out, not fatal.
                    Ok::<_, Error>(serde_json::from_slice::<Vec<RowErrorRecord>>(&bytes).unwrap_or_default())
                }
            })
            .buffer_unordered(READ_PARALLELISM)
            .try_collect()
            .await?;
        let mut records: Vec<RowErrorRecord> = batches.into_iter().flatten().collect();
        records.sort_by(|a, b| {
            let key = |r: &RowErrorRecord| (r.at_ms, r.job_id.clone(), r.fragment_id, r.task_rows.start, r.row_address);
            key(a).cmp(&key(b))
        });
        Ok(records)
    }

    /// Removes every record of job `job_id`; returns the objects removed.
    pub async fn delete_job(&self, job_id: &str) -> Result<u64> {
        let prefix = self.dir.clone().join(job_id);
        let paths: Vec<Path> = self.store.list(Some(&prefix)).map_ok(|meta| meta.location).try_collect().await.map_err(store_error)?;
        let deleted: Vec<Path> = self
            .store
            .delete_stream(futures::stream::iter(paths.into_iter().map(Ok)).boxed())
            .try_collect()
            .await
            .map_err(store_error)?;
        Ok(deleted.len() as u64)
    }
}

/// The filter that selects exactly the rows of `records`: the rows named,
/// and every row of a batch that failed as a whole; `None` if there are
/// none.
pub fn retry_filter(records: &[RowErrorRecord]) -> Option<String> {
    let mut addresses: Vec<u64> = records.iter().filter_map(|r| r.row_address).collect();
    addresses.sort_unstable();
    addresses.dedup();
    let mut batches: Vec<(u64, Range<u64>)> =
        records.iter().filter(|r| r.row_address.is_none()).map(|r| (r.fragment_id, r.task_rows.clone())).collect();
    batches.sort_by_key(|(fragment, rows)| (*fragment, rows.start));
    batches.dedup();
    let mut parts = Vec::new();
    if !addresses.is_empty() {
        let list: Vec<String> = addresses.iter().map(u64::to_string).collect();
        parts.push(format!("{ROW_ADDRESS} IN ({})", list.join(", ")));
    }
    for (fragment, rows) in batches {
        let start = row_address(fragment, rows.start);
        let end = row_address(fragment, rows.end.saturating_sub(1));
        parts.push(format!("({ROW_ADDRESS} >= {start} AND {ROW_ADDRESS} <= {end})"));
    }
    (!parts.is_empty()).then(|| parts.join(" OR "))
}

fn store_error(error: object_store::Error) -> Error {
    Error::Io(std::io::Error::other(format!("row error records: {error}")))
}
