//! The backfill engine: one backfill of a Lance table, end to end.
//!
//! This crate owns everything that runs one backfill and knows Lance:
//! resolving the column, its UDF and the `where` filter against the table,
//! finding what earlier runs already did (the plan), the driver that pumps
//! the sans-IO [`leman_scheduler::Scheduler`], the table's stores beside it
//! ([`TableStores`]: checkpoints, job records, failed rows and the column's lease), and
//! the [`UdfRegistry`] that every process of one binary shares. [`start`]
//! is its entry point; the [`Job`] it returns reports events and the
//! outcome. Around it: [`plan_backfill`] makes a job's plan and stops
//! there (a dry run), [`TableStores::request_cancel`] stops a running job
//! from any process, [`cleanup`] removes the checkpoints no job can reuse,
//! [`RowErrorStore`] keeps the rows UDFs failed on (which
//! [`BackfillOptions::retry_errors`] recomputes), and each job's record
//! says what it cost ([`JobCost`], counted with a [`StoreMeter`]).
//!
//! Where a job's appliers run and its fragments are written is not its
//! business: it asks an [`Executor`], the way Ballista's scheduler core asks
//! a `TaskLauncher`. [`LocalExecutor`] runs them as actors of this process
//! (an embedded backfill); `leman-node` implements the trait over the
//! cluster's wire. This crate must not know the wire: it depends on neither
//! `leman-runtime` nor quinn, and no type of it is a protocol message.
//! Arrows point down: `leman` -> `leman-node` -> `leman-engine` ->
//! scheduler, applier, writer, checkpoint.
//!
//! ```no_run
//! # async fn demo(registry: leman_engine::UdfRegistry) -> leman_engine::Result<()> {
//! use leman_engine::{BackfillOptions, LocalExecutor};
//!
//! // The column `len` was declared with its UDF (pylance or `leman add-column`);
//! // its UDF is registered in `registry` by name.
//! let options = BackfillOptions::default().filter("text IS NOT NULL").concurrency(4);
//! let table = leman_engine::TableLocation::new("/data/docs.lance", Default::default())?;
//! let job = leman_engine::start(&table, "len", options, &registry, std::sync::Arc::new(LocalExecutor)).await?;
//! let summary = job.wait().await?;
//! println!("{} rows computed in {} commits", summary.rows_computed, summary.commits);
//! # Ok(()) }
//! ```
//!
//! # Features
//! - `aws`: `s3://` tables (the `leman` crate turns it on by default).
//! - `gcp`: `gs://` tables.
//! - `azure`: `az://` tables.
//! - `testing`: the `testing` module, real tables for the tests of the
//!   crates above.

mod backfill;
mod cancel;
mod cleanup;
mod clock;
mod cost;
mod driver;
mod dry_run;
mod error;
mod executor;
mod job;
mod lease;
mod local;
mod location;
mod metering;
mod options;
mod plan;
mod promote;
mod records;
mod registry;
mod resolve;
mod row_errors;
mod stage;
mod storage;
mod stores;
#[cfg(feature = "testing")]
pub mod testing;
mod udf_record;

pub use backfill::{start, start_many};
pub use cancel::{CancelReason, CancelRequests};
pub use cleanup::{CleanupOptions, CleanupReport, Tally, Unreachable, cleanup};
pub use dry_run::{BackfillPlan, plan_backfill};
pub use error::{Error, Result};
pub use executor::{
    ApplierHandle, ApplierOutcome, Executor, ExecutorEvent, JobExecutor, JobSetup, JobSpec, PartSpec, Unanswered, WriteFailure,
    warm_up,
};
pub use job::{Canceller, Job, JobEvent};
pub use lease::TableLease;
pub use leman_applier::{
    ErrorPolicy, InstanceContext, OutputColumns, ROW_ADDRESS, Resources, RetryBackoff, SkippedRow, StatefulUdf, TaskError, TaskOutput,
    TaskSpec, Udf, UdfError, default_filter, peak_memory, process_cpu_time, quote_identifier, row_address,
};
pub use leman_scheduler::{JobCost, JobFailure, JobRecord, JobStatus, Progress, Starter, Summary, record::RowError};
pub use leman_writer::FragmentWrite;
pub use local::{LocalExecutor, write_locally};
pub use options::{BackfillOptions, BatchSize};
pub use location::{TableLocation, normalize_uri};
pub use metering::{StoreMeter, StoreTally};
pub use records::JobStore;
pub use promote::{Promoted, promote};
pub use registry::UdfRegistry;
pub use resolve::{check_fills, output_columns};
pub use row_errors::{RowErrorRecord, RowErrorStore, RowOutcome, retry_filter};
pub use storage::{REDACTED, StorageOptions, StorageProblem, is_secret};
pub use stage::{StagedFragment, StagedJob, StagedStore, discard};
pub use stores::TableStores;
pub use udf_record::{UdfRecord, Unpacked};
