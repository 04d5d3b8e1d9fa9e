//! Options of a backfill: every knob of Geneva's `Table.backfill`.

use std::time::Duration;

use leman_applier::{ErrorPolicy, RetryBackoff, Udf};
use leman_scheduler::{AutoBatch, SkipBudget};

use crate::error::{Error, Result};

/// How to run a backfill. Start from `Default` and set what you need:
///
/// ```
/// let options = leman_engine::BackfillOptions::default()
///     .filter("category = 'news'")
///     .concurrency(4)
///     .intra_applier_concurrency(2)
///     .commit_granularity(16);
/// assert_eq!(options.concurrency, 4);
/// ```
///
/// Options are serde-serializable so that they can be submitted to a
/// cluster; the UDF override is not: UDFs are code, and a cluster resolves
/// them by name in its own registry.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BackfillOptions {
    /// SQL filter of the rows to compute (Geneva's `where`). `None` computes
    /// rows where the column is null; `"1=1"` recomputes every row. Rows not
    /// selected keep their previous value.
    pub filter: Option<String>,
    /// Overrides the UDF's input columns (not for record-batch UDFs).
    pub input_columns: Option<Vec<String>>,
    /// Overrides the column's UDF (in this process only).
    #[serde(skip)]
    pub udf: Option<Udf>,
    /// Applier actors (process-level concurrency). Default 8.
    pub concurrency: usize,
    /// Threads per applier. Default 1.
    pub intra_applier_concurrency: usize,
    /// Fragments per intermediate commit (whole multiples of it when
    /// commits fall behind writes); `None` commits once at the end. Default 64.
    pub commit_granularity: Option<usize>,
    /// Stop after filling this many fragments.
    pub num_frags: Option<usize>,
    /// Table version to read (default: latest). The result is committed on
    /// top of whatever was committed since.
    pub read_version: Option<u64>,
    /// Fragments interleaved in the task order. Default 8.
    pub task_shuffle_diversity: usize,
    /// Physical rows per task and checkpoint: a number (default 10240), or
    /// [`BatchSize::Auto`].
    pub batch_size: BatchSize,
    /// Under [`BatchSize::Auto`], the UDF time one batch aims at. Default 10 s.
    #[serde(default = "default_target_batch_secs")]
    pub target_batch_secs: f64,
    /// Under [`BatchSize::Auto`], the fewest rows a batch (each applier's
    /// first). Default 1.
    #[serde(default = "default_min_batch_size")]
    pub min_batch_size: usize,
    /// Under [`BatchSize::Auto`], the most rows a batch. Default 10240.
    #[serde(default = "default_max_batch_size")]
    pub max_batch_size: usize,
    /// Seconds between progress events. Default 2.
    pub refresh_status_secs: f64,
    /// Cancels the job when it has run this long (planning included): it
    /// stops after the batches in flight and keeps its checkpoints, so a
    /// re-run resumes. Default: none.
    pub timeout: Option<Duration>,
    /// The error policy of this run, instead of the one recorded with the
    /// column's UDF.
    pub on_error: Option<ErrorPolicy>,
    /// The wait between retries of this run, instead of the recorded one.
    pub retry_backoff: Option<RetryBackoff>,
    /// Fails the job once the `skip` policy has left more rows than this
    /// null (checkpoints are kept).
    pub max_skipped_rows: Option<u64>,
    /// Fails the job once more than this fraction (0 to 1) of the rows it
    /// computed were skipped, judged from 1,000 rows on and at its last
    /// task.
    pub max_skipped_fraction: Option<f64>,
    /// Recomputes exactly the rows that job `retry_errors` recorded as
    /// failed (a filter `_rowaddr IN (...)`, within `filter` if one is
    /// given).
    pub retry_errors: Option<String>,
    /// Waits for the column's lease while another job holds it, instead of
    /// failing with [`Error::ColumnBusy`](crate::Error::ColumnBusy), so
    /// backfills of one column run one after another. The wait counts
    /// toward `timeout` and can be cancelled. Default false.
    pub queue: bool,
    /// Computes and writes every fragment's data file but commits nothing:
    /// readers see no change, and the job is recorded `staged` until
    /// [`promote`](crate::promote) commits it (with other staged columns,
    /// in one transaction) or [`discard`](crate::discard) removes its
    /// files. Default false.
    #[serde(default)]
    pub stage: bool,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        Self {
            filter: None,
            input_columns: None,
            udf: None,
            concurrency: 8,
            intra_applier_concurrency: 1,
            commit_granularity: Some(64),
            num_frags: None,
            read_version: None,
            task_shuffle_diversity: 8,
            batch_size: BatchSize::Rows(DEFAULT_BATCH_ROWS),
            target_batch_secs: default_target_batch_secs(),
            min_batch_size: default_min_batch_size(),
            max_batch_size: default_max_batch_size(),
            refresh_status_secs: 2.0,
            timeout: None,
            on_error: None,
            retry_backoff: None,
            max_skipped_rows: None,
            max_skipped_fraction: None,
            retry_errors: None,
            queue: false,
            stage: false,
        }
    }
}

impl BackfillOptions {
    /// Sets the SQL filter (Geneva's `where`).
    pub fn filter(mut self, sql: impl Into<String>) -> Self {
        self.filter = Some(sql.into());
        self
    }

    /// Overrides the input columns.
    pub fn input_columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.input_columns = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// Overrides the UDF.
    pub fn udf(mut self, udf: Udf) -> Self {
        self.udf = Some(udf);
        self
    }

    /// Sets the number of applier actors.
    pub fn concurrency(mut self, appliers: usize) -> Self {
        self.concurrency = appliers;
        self
    }

    /// Sets the threads per applier.
    pub fn intra_applier_concurrency(mut self, threads: usize) -> Self {
        self.intra_applier_concurrency = threads;
        self
    }

    /// Commits every `fragments` fragments (or every whole multiple of it
    /// written while the commit before ran).
    pub fn commit_granularity(mut self, fragments: usize) -> Self {
        self.commit_granularity = Some(fragments);
        self
    }

    /// Commits once, at the end.
    pub fn commit_at_end(mut self) -> Self {
        self.commit_granularity = None;
        self
    }

    /// Fills at most `fragments` fragments.
    pub fn num_frags(mut self, fragments: usize) -> Self {
        self.num_frags = Some(fragments);
        self
    }

    /// Reads table version `version`.
    pub fn read_version(mut self, version: u64) -> Self {
        self.read_version = Some(version);
        self
    }

    /// Sets how many fragments are interleaved.
    pub fn task_shuffle_diversity(mut self, fragments: usize) -> Self {
        self.task_shuffle_diversity = fragments;
        self
    }

    /// Writes and commits nothing (see [`stage`](Self::stage)).
    pub fn stage(mut self, stage: bool) -> Self {
        self.stage = stage;
        self
    }

    /// Sets the rows per task.
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = BatchSize::Rows(rows);
        self
    }

    /// Sizes each applier's tasks from the UDF's time ([`BatchSize::Auto`]).
    pub fn auto_batch_size(mut self) -> Self {
        self.batch_size = BatchSize::Auto;
        self
    }

    /// Sets the UDF time an automatic batch aims at.
    pub fn target_batch_secs(mut self, seconds: f64) -> Self {
        self.target_batch_secs = seconds;
        self
    }

    /// Bounds automatic batches to `min..=max` rows.
    pub fn batch_size_bounds(mut self, min: usize, max: usize) -> Self {
        self.min_batch_size = min;
        self.max_batch_size = max;
        self
    }

    /// Sets the progress cadence.
    pub fn refresh_status_secs(mut self, seconds: f64) -> Self {
        self.refresh_status_secs = seconds;
        self
    }

    /// Cancels the job after `limit`.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Handles UDF errors with `policy` in this run.
    pub fn on_error(mut self, policy: ErrorPolicy) -> Self {
        self.on_error = Some(policy);
        self
    }

    /// Waits `backoff` between retries in this run.
    pub fn retry_backoff(mut self, backoff: RetryBackoff) -> Self {
        self.retry_backoff = Some(backoff);
        self
    }

    /// Fails the job past `rows` skipped rows.
    pub fn max_skipped_rows(mut self, rows: u64) -> Self {
        self.max_skipped_rows = Some(rows);
        self
    }

    /// Fails the job past `fraction` of its rows skipped.
    pub fn max_skipped_fraction(mut self, fraction: f64) -> Self {
        self.max_skipped_fraction = Some(fraction);
        self
    }

    /// Recomputes the rows job `job_id` failed on.
    pub fn retry_errors(mut self, job_id: impl Into<String>) -> Self {
        self.retry_errors = Some(job_id.into());
        self
    }

    /// The size of the tasks the plan cuts: the fixed size, or under
    /// `auto` the largest (each applier cuts them smaller as it goes).
    pub(crate) fn planned_batch_rows(&self) -> u64 {
        match self.batch_size {
            BatchSize::Rows(rows) => rows as u64,
            BatchSize::Auto => self.max_batch_size as u64,
        }
    }

    /// How the scheduler sizes tasks under `auto`.
    pub(crate) fn auto_batch(&self) -> Option<AutoBatch> {
        (self.batch_size == BatchSize::Auto).then(|| AutoBatch {
            target: Duration::from_secs_f64(self.target_batch_secs),
            min: self.min_batch_size as u64,
            max: self.max_batch_size as u64,
        })
    }

    pub(crate) fn skip_budget(&self) -> SkipBudget {
        SkipBudget { max_rows: self.max_skipped_rows, max_fraction: self.max_skipped_fraction }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let invalid = |reason: &str| Err(Error::InvalidOptions { reason: reason.to_string() });
        if self.concurrency == 0 {
            return invalid("concurrency must be at least 1 applier");
        }
        if self.intra_applier_concurrency == 0 {
            return invalid("intra_applier_concurrency must be at least 1 thread");
        }
        if self.batch_size == BatchSize::Rows(0) {
            return invalid("batch_size must be at least 1 row");
        }
        if self.batch_size == BatchSize::Auto {
            if self.min_batch_size == 0 {
                return invalid("min_batch_size must be at least 1 row");
            }
            if self.max_batch_size < self.min_batch_size {
                return invalid("max_batch_size must be at least min_batch_size");
            }
            if !(self.target_batch_secs.is_finite() && self.target_batch_secs > 0.0) {
                return invalid("target_batch_secs must be a positive number of seconds");
            }
        }
        if self.commit_granularity == Some(0) {
            return invalid("commit_granularity must be at least 1 fragment");
        }
        if self.num_frags == Some(0) {
            return invalid("num_frags must be at least 1 fragment");
        }
        if !(self.refresh_status_secs.is_finite() && self.refresh_status_secs > 0.0) {
            return invalid("refresh_status_secs must be a positive number of seconds");
        }
        if self.timeout == Some(Duration::ZERO) {
            return invalid("timeout must be longer than 0 s");
        }
        if self.max_skipped_fraction.is_some_and(|f| !(0.0..=1.0).contains(&f)) {
            return invalid("max_skipped_fraction must be a fraction from 0 to 1");
        }
        Ok(())
    }

    pub(crate) fn refresh_status(&self) -> Duration {
        Duration::from_secs_f64(self.refresh_status_secs)
    }
}

/// The default rows per task.
const DEFAULT_BATCH_ROWS: usize = 10_240;

fn default_target_batch_secs() -> f64 {
    10.0
}

fn default_min_batch_size() -> usize {
    1
}

fn default_max_batch_size() -> usize {
    DEFAULT_BATCH_ROWS
}

/// Rows per task and checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BatchSize {
    /// This many physical rows each.
    Rows(usize),
    /// Sized as the job runs: each applier starts at `min_batch_size` rows
    /// and sizes its next batch for about `target_batch_secs` of UDF time,
    /// up to `max_batch_size` (see `leman_scheduler::batch`). A UDF taking
    /// a second a row checkpoints every few rows, a cheap one uses full
    /// batches.
    Auto,
}

impl std::fmt::Display for BatchSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchSize::Rows(rows) => write!(f, "{rows}"),
            BatchSize::Auto => f.write_str("auto"),
        }
    }
}

impl std::str::FromStr for BatchSize {
    type Err = String;

    /// `auto` or a number of rows.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text.trim() {
            "auto" => Ok(BatchSize::Auto),
            rows => match rows.parse::<usize>() {
                Ok(0) | Err(_) => Err(format!("`{text}` is not a batch size: give a number of rows (1 or more) or `auto`")),
                Ok(rows) => Ok(BatchSize::Rows(rows)),
            },
        }
    }
}
