//! What a job reports: progress while it runs, a summary when it ends, and
//! the record kept in the table's directory so that other processes can list
//! jobs. Pure data, serde-serializable.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A UDF error that the `skip` policy turned into a null.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// Lance row address: fragment id in the high 32 bits, physical offset in the low.
    pub row_address: u64,
    /// What the UDF said.
    pub message: String,
    /// Calls of the UDF the row was part of.
    #[serde(default = "one")]
    pub attempts: u32,
}

fn one() -> u32 {
    1
}

/// Counts at one moment of a running job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Physical rows whose task is done (computed or found checkpointed).
    pub rows_done: u64,
    /// Physical rows the job covers.
    pub rows_total: u64,
    /// Tasks done, including those found checkpointed.
    pub tasks_done: u64,
    /// Tasks in the plan.
    pub tasks_total: u64,
    /// Fragments whose data file is written.
    pub fragments_written: u64,
    /// Fragments committed to the table.
    pub fragments_committed: u64,
    /// Fragments in the plan.
    pub fragments_total: u64,
    /// Commits made so far.
    pub commits: u64,
    /// Time since the job started.
    pub elapsed: Duration,
}

/// Errors kept in a summary; the count of skipped rows is always exact.
pub const MAX_SUMMARY_ERRORS: usize = 1000;

/// How a finished job went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Rows the UDF computed a value for.
    pub rows_computed: u64,
    /// Rows whose UDF call failed under the `skip` policy and were left null.
    pub rows_skipped: u64,
    /// Physical rows covered by checkpoints (batches or written fragments)
    /// of an earlier run, not computed again.
    pub rows_from_checkpoints: u64,
    /// Fragments committed by this job.
    pub fragments_committed: u64,
    /// Fragments a concurrent commit removed or rewrote before this job
    /// could commit them; their rows, where any were left, were planned
    /// again on the table's newest version.
    #[serde(default)]
    pub fragments_replanned: u64,
    /// Fragments written and left for a promote (a staged job).
    #[serde(default)]
    pub fragments_staged: u64,
    /// Commits this job made.
    pub commits: u64,
    /// Table version after the job's last commit, if it committed.
    pub version: Option<u64>,
    /// Errors recorded under the `skip` policy (the first 1,000).
    pub errors: Vec<RowError>,
    /// Wall time of the job.
    pub elapsed: Duration,
}

impl Summary {
    /// Adds what a later pass of the same job did.
    pub fn absorb(&mut self, later: Summary) {
        self.rows_computed += later.rows_computed;
        self.rows_skipped += later.rows_skipped;
        self.rows_from_checkpoints += later.rows_from_checkpoints;
        self.fragments_committed += later.fragments_committed;
        self.fragments_replanned += later.fragments_replanned;
        self.fragments_staged += later.fragments_staged;
        self.commits += later.commits;
        self.version = later.version.or(self.version);
        let room = MAX_SUMMARY_ERRORS.saturating_sub(self.errors.len());
        self.errors.extend(later.errors.into_iter().take(room));
        self.elapsed += later.elapsed;
    }
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailure {
    /// What went wrong, with what to do about it.
    pub message: String,
    /// The fragment being computed, written or committed, when known.
    pub fragment_id: Option<u64>,
    /// Its physical rows, when the failure was in one task.
    pub rows: Option<Range<u64>>,
}

impl std::fmt::Display for JobFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.fragment_id, &self.rows) {
            (Some(fragment), Some(rows)) => {
                write!(f, "fragment {fragment}, rows {}..{}: {}", rows.start, rows.end, self.message)
            }
            (Some(fragment), None) => write!(f, "fragment {fragment}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for its column's lease, held by another job (`--queue`).
    Queued,
    /// Planned or computing.
    Running,
    /// Every planned fragment committed.
    Succeeded,
    /// Stopped on an error; committed groups stay committed.
    Failed,
    /// Stopped by its owner; committed groups stay committed.
    Cancelled,
    /// Recorded as running, but the process running it stopped renewing its
    /// lease: it died. Run the backfill again to resume.
    Interrupted,
    /// Every planned fragment written and nothing committed: waiting to be
    /// promoted or discarded.
    Staged,
    /// Staged, then committed by a promote.
    Promoted,
    /// Staged, then its files removed.
    Discarded,
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Interrupted => "interrupted",
            JobStatus::Staged => "staged",
            JobStatus::Promoted => "promoted",
            JobStatus::Discarded => "discarded",
        })
    }
}

/// Who started a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Starter {
    /// The user (`$USER`, else `$LOGNAME`, else `uid N`).
    pub user: String,
    /// The host's name.
    pub host: String,
    /// The process that drove the job.
    pub pid: u32,
}

/// What a job cost, as it went. Times per phase are summed over the
/// phase's work: tasks, fragment writes and commits run side by side, so
/// they overlap and may add up to more than the job's wall time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobCost {
    /// Resolving, taking the column's lease and planning, before any task.
    pub plan_ms: u64,
    /// Tasks (reading, computing and checkpointing batches), summed.
    pub compute_ms: u64,
    /// Fragment writes, summed.
    pub write_ms: u64,
    /// Commits, summed.
    pub commit_ms: u64,
    /// CPU time of the UDF's threads, where the kernel keeps it.
    pub udf_cpu_ms: u64,
    /// Physical rows the tasks read.
    pub rows_read: u64,
    /// Rows of the fragments the job committed.
    pub rows_written: u64,
    /// Bytes read through the table's object store (data, checkpoints,
    /// records), by every process of the job.
    pub bytes_read: u64,
    /// Bytes written through it.
    pub bytes_written: u64,
    /// Requests to it.
    pub object_store_requests: u64,
    /// The largest peak resident memory of the processes that ran the job
    /// (its driver's and its workers').
    pub peak_memory_bytes: u64,
}

/// The record of one job, kept beside the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job id.
    pub id: String,
    /// Column being backfilled.
    pub column: String,
    /// UDF name and version.
    pub udf: String,
    /// UDF version.
    pub udf_version: String,
    /// The filter in force (the default `col IS NULL` included).
    pub filter: String,
    /// Table version the job read.
    pub read_version: u64,
    /// The storage options the job reached the table with, every secret
    /// shown as `***` (a record never holds one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_options: BTreeMap<String, String>,
    /// Where the job stands.
    pub status: JobStatus,
    /// Unix time in milliseconds.
    pub started_at_ms: u64,
    /// Unix time in milliseconds, once the job ended.
    pub finished_at_ms: Option<u64>,
    /// Latest progress.
    pub progress: Progress,
    /// Final counts, once the job ended.
    pub summary: Option<Summary>,
    /// Why it failed.
    pub error: Option<JobFailure>,
    /// The options it ran with, as text (the filter and read version are
    /// above).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Who started it (absent in records of older versions).
    #[serde(default)]
    pub started_by: Option<Starter>,
    /// What it cost so far.
    #[serde(default)]
    pub cost: JobCost,
    /// Unix time in milliseconds when a queued job last said it still
    /// waits; a queued record not renewed for a while is of a dead process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed_at_ms: Option<u64>,
}
