//! What a job costs, counted as it runs and kept in its record: the time
//! of each phase, the UDF's CPU time, rows and bytes read and written,
//! object store requests and peak memory. The driver's spawned futures add
//! to the counts as their work ends; the record takes a snapshot at each
//! progress report and at the end.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use leman_applier::{TaskOutput, peak_memory};
use leman_scheduler::{JobCost, Starter};

use crate::lease::hostname;
use crate::metering::{StoreMeter, StoreTally};
use crate::options::{BackfillOptions, BatchSize};

/// The counts of one job; shared by its driver and the futures it spawns.
#[derive(Debug)]
pub(crate) struct JobCosts {
    plan: Duration,
    compute_ns: AtomicU64,
    write_ns: AtomicU64,
    commit_ns: AtomicU64,
    udf_cpu_ns: AtomicU64,
    rows_read: AtomicU64,
    rows_written: AtomicU64,
    peak_memory: AtomicU64,
    /// Counts the object store requests of this process's work.
    meter: StoreMeter,
    /// What the meter and other processes counted so far.
    store: Mutex<StoreTally>,
}

fn nanos(took: Duration) -> u64 {
    u64::try_from(took.as_nanos()).unwrap_or(u64::MAX)
}

impl JobCosts {
    /// The counts of a job planned in `plan`, whose stores `meter` counts.
    pub fn new(plan: Duration, meter: StoreMeter) -> Self {
        Self {
            plan,
            compute_ns: AtomicU64::new(0),
            write_ns: AtomicU64::new(0),
            commit_ns: AtomicU64::new(0),
            udf_cpu_ns: AtomicU64::new(0),
            rows_read: AtomicU64::new(0),
            rows_written: AtomicU64::new(0),
            peak_memory: AtomicU64::new(0),
            meter,
            store: Mutex::new(StoreTally::default()),
        }
    }

    /// A task that took `took` and reported `output`.
    pub fn task(&self, took: Duration, output: &TaskOutput) {
        self.compute_ns.fetch_add(nanos(took), Ordering::Relaxed);
        self.udf_cpu_ns.fetch_add(output.udf_cpu.map_or(0, nanos), Ordering::Relaxed);
        self.rows_read.fetch_add(output.rows_read, Ordering::Relaxed);
        self.peak_memory.fetch_max(output.peak_memory_bytes.unwrap_or(0), Ordering::Relaxed);
    }

    /// A fragment write that took `took`.
    pub fn write(&self, took: Duration) {
        self.write_ns.fetch_add(nanos(took), Ordering::Relaxed);
    }

    /// A commit that took `took` and put `rows` rows in the table.
    pub fn commit(&self, took: Duration, rows: u64) {
        self.commit_ns.fetch_add(nanos(took), Ordering::Relaxed);
        self.rows_written.fetch_add(rows, Ordering::Relaxed);
    }

    /// What other processes counted of the job's requests.
    pub fn add_store(&self, tally: StoreTally) {
        *self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += tally;
    }

    /// The counts so far.
    pub fn snapshot(&self) -> JobCost {
        self.add_store(self.meter.take());
        self.peak_memory.fetch_max(peak_memory().unwrap_or(0), Ordering::Relaxed);
        let store = *self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let millis = |counter: &AtomicU64| counter.load(Ordering::Relaxed) / 1_000_000;
        JobCost {
            plan_ms: u64::try_from(self.plan.as_millis()).unwrap_or(u64::MAX),
            compute_ms: millis(&self.compute_ns),
            write_ms: millis(&self.write_ns),
            commit_ms: millis(&self.commit_ns),
            udf_cpu_ms: millis(&self.udf_cpu_ns),
            rows_read: self.rows_read.load(Ordering::Relaxed),
            rows_written: self.rows_written.load(Ordering::Relaxed),
            bytes_read: store.bytes_read,
            bytes_written: store.bytes_written,
            object_store_requests: store.requests,
            peak_memory_bytes: self.peak_memory.load(Ordering::Relaxed),
        }
    }
}

/// This process, as the starter of a job.
pub(crate) fn starter() -> Starter {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|user| !user.is_empty())
        .unwrap_or_else(uid);
    Starter { user, host: hostname(), pid: std::process::id() }
}

/// `uid N`, from `/proc/self/status`.
fn uid() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find_map(|line| line.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().next());
    format!("uid {}", uid.unwrap_or("unknown"))
}

/// The options a job ran with, as text, for its record (its filter and
/// read version are recorded on their own).
pub(crate) fn describe(options: &BackfillOptions, policy: &str, backoff: &str) -> BTreeMap<String, String> {
    let mut text = BTreeMap::from([
        ("concurrency".to_string(), options.concurrency.to_string()),
        ("intra_applier_concurrency".to_string(), options.intra_applier_concurrency.to_string()),
        ("batch_size".to_string(), match options.batch_size {
            BatchSize::Rows(rows) => rows.to_string(),
            BatchSize::Auto => format!(
                "auto ({}..={} rows, {} s of UDF time a batch)",
                options.min_batch_size, options.max_batch_size, options.target_batch_secs
            ),
        }),
        ("task_shuffle_diversity".to_string(), options.task_shuffle_diversity.to_string()),
        ("commit_granularity".to_string(), options.commit_granularity.map_or("at end".to_string(), |g| g.to_string())),
        ("refresh_status_secs".to_string(), options.refresh_status_secs.to_string()),
        ("on_error".to_string(), policy.to_string()),
        ("retry_backoff_ms".to_string(), backoff.to_string()),
    ]);
    let mut optional = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            text.insert(key.to_string(), value);
        }
    };
    optional("input_columns", options.input_columns.as_ref().map(|columns| columns.join(",")));
    optional("num_frags", options.num_frags.map(|n| n.to_string()));
    optional("timeout_secs", options.timeout.map(|t| t.as_secs_f64().to_string()));
    optional("max_skipped_rows", options.max_skipped_rows.map(|n| n.to_string()));
    optional("max_skipped_fraction", options.max_skipped_fraction.map(|f| f.to_string()));
    optional("retry_errors", options.retry_errors.clone());
    optional("udf_override", options.udf.as_ref().map(|udf| udf.name().to_string()));
    text
}
