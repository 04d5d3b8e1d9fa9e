//! What a node counts, in the Prometheus text format.
//!
//! Each figure has one owner, so that summing a family over every pod of a
//! cluster counts each event once: the head owns the cluster's figures
//! (workers live, jobs running, commits, applier restarts), each worker
//! owns the work it did (tasks, rows, bytes written, UDF batch latency).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The head's figures.
#[derive(Debug, Default)]
pub struct HeadMetrics {
    /// Workers that are members now.
    pub workers_live: Gauge,
    /// Jobs whose driver runs on this head.
    pub jobs_running: Gauge,
    /// Commits of new column data to tables.
    pub commits: Counter,
    /// Appliers that stopped on their own (each is placed again while its
    /// job runs).
    pub applier_restarts: Counter,
}

/// A worker's figures.
#[derive(Debug)]
pub struct WorkerMetrics {
    /// Tasks run to their checkpoint.
    pub tasks_done: Counter,
    /// Tasks that failed (and may be retried elsewhere).
    pub tasks_failed: Counter,
    /// Rows the UDF computed.
    pub rows_computed: Counter,
    /// Rows the `skip` policy left null.
    pub rows_skipped: Counter,
    /// Bytes of the data files written here.
    pub bytes_written: Counter,
    /// Seconds the UDF took per batch.
    pub udf_batch_seconds: Histogram,
    /// Jobs whose context this worker holds now.
    pub jobs_hosted: Gauge,
    /// Appliers running here now.
    pub appliers_running: Gauge,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self {
            tasks_done: Counter::default(),
            tasks_failed: Counter::default(),
            rows_computed: Counter::default(),
            rows_skipped: Counter::default(),
            bytes_written: Counter::default(),
            // 100 µs to about 100 s.
            udf_batch_seconds: Histogram::new(exponential_buckets(0.0001, 4.0, 11)),
            jobs_hosted: Gauge::default(),
            appliers_running: Gauge::default(),
        }
    }
}

/// A node's figures, registered once, encoded on every scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// The head's families.
    pub fn head(figures: &HeadMetrics) -> Self {
        let mut registry = Registry::with_prefix("leman");
        registry.register("workers_live", "Workers that are members of the cluster", figures.workers_live.clone());
        registry.register("jobs_running", "Jobs whose driver runs on this head", figures.jobs_running.clone());
        registry.register("commits", "Commits of new column data to tables", figures.commits.clone());
        registry.register("applier_restarts", "Appliers that stopped on their own; each is placed again while its job runs", figures.applier_restarts.clone());
        Self { registry }
    }

    /// A worker's families.
    pub fn worker(figures: &WorkerMetrics) -> Self {
        let mut registry = Registry::with_prefix("leman");
        registry.register("tasks_done", "Tasks run to their checkpoint on this worker", figures.tasks_done.clone());
        registry.register("tasks_failed", "Tasks that failed on this worker", figures.tasks_failed.clone());
        registry.register("rows_computed", "Rows the UDF computed on this worker", figures.rows_computed.clone());
        registry.register("rows_skipped", "Rows the skip policy left null on this worker", figures.rows_skipped.clone());
        registry.register("bytes_written", "Bytes of the data files this worker wrote", figures.bytes_written.clone());
        registry.register("udf_batch_seconds", "Seconds the UDF took per batch", figures.udf_batch_seconds.clone());
        registry.register("jobs_hosted", "Jobs whose context this worker holds; 0 once its jobs ended", figures.jobs_hosted.clone());
        registry.register("appliers_running", "Appliers running on this worker; 0 once its jobs ended", figures.appliers_running.clone());
        Self { registry }
    }

    /// The text exposition of every family.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
