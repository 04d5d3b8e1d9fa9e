//! Leman computes new columns of Lance tables with user functions (UDFs),
//! in this process or on a cluster, without Ray.
//!
//! Declare a column with the UDF that computes it, then backfill it. A
//! backfill reads the table in batches of physical rows, runs the UDF on
//! `concurrency` applier actors of `intra_applier_concurrency` threads each,
//! checkpoints every batch, writes one data file per fragment, and commits
//! fragments in groups as Lance `DataReplacement` transactions. A re-run
//! computes only what is missing.
//!
//! ```no_run
//! use std::sync::Arc;
//! use arrow_array::{ArrayRef, Int32Array, RecordBatch, StringArray, cast::AsArray};
//! use arrow_schema::{DataType, Field};
//! use leman::{AddColumnsOptions, BackfillOptions, CreateTableOptions, Udf};
//!
//! # async fn demo() -> leman::Result<()> {
//! let db = leman::connect("/tmp/leman-example").await?;
//! let text: ArrayRef = Arc::new(StringArray::from(vec!["a", "bb", "ccc"]));
//! let batch = RecordBatch::try_from_iter([("text", text)])?;
//! let table = db.create_table("docs", vec![batch], CreateTableOptions::default()).await?;
//!
//! let len = Udf::array("text_len", Field::new("len", DataType::Int32, true), &["text"], |cols| {
//!     let lengths: Int32Array = cols[0].as_string::<i32>().iter().map(|s| s.map(|s| s.len() as i32)).collect();
//!     Ok(Arc::new(lengths) as ArrayRef)
//! });
//! table.add_columns([("len", len)], AddColumnsOptions::default()).await?;
//! let job = table.backfill("len", BackfillOptions::default().concurrency(2)).await?;
//! let summary = job.wait().await?;
//! println!("{} rows computed in {} commits", summary.rows_computed, summary.commits);
//! # Ok(()) }
//! ```
//!
//! # How it is built
//! This crate is the face: the public API, the `leman` command line, the
//! built-in UDFs, the demo and the benchmark suite. The engine that runs a
//! backfill is `leman-engine` (its types are re-exported here); the
//! cluster's head and worker processes are `leman-node`, re-exported as
//! [`distributed`]; materialized views ([`Database::create_materialized_view`],
//! [`View`]) are `leman-view`.
//!
//! # Features
//! - `aws` (on by default): `s3://` tables, on Amazon S3 or any
//!   S3-compatible store (MinIO, Ceph, R2).
//! - `gcp`: `gs://` tables.
//! - `azure`: `az://` tables.

pub mod bench;
pub mod builtins;
pub mod cli;
pub mod demo;
mod db;
mod table;

pub use db::{CreateTableOptions, Database, connect, connect_with};
pub use leman_engine::{
    BackfillOptions, BackfillPlan, CancelReason, Canceller, CleanupOptions, CleanupReport, Error, ErrorPolicy,
    InstanceContext, Job, JobCost, JobEvent, JobFailure, JobRecord, JobStatus, Progress, Resources, Result, RetryBackoff,
    RowError, RowErrorRecord, RowOutcome, Starter, StatefulUdf, StorageOptions, Summary, TableLocation, Tally, Udf,
    UdfError, UdfRecord, UdfRegistry, Unreachable,
};
pub use leman_view::{ReadMode, Refresh, RefreshOptions, RowChanges, UdfColumnInfo, View, ViewInfo, ViewQuery, ViewRecord};
pub use table::{AddColumnsOptions, Table, Unpack};

/// Leman on a cluster of processes: the head, the workers, their protocol,
/// and the client calls that submit and follow jobs (the `leman-node`
/// crate). A Rust service runs either role in its own binary with its own
/// registered UDFs.
pub mod distributed {
    pub use leman_node::*;
}

/// Re-exports of the Arrow and Lance crates this API speaks in.
pub mod deps {
    pub use arrow_array;
    pub use arrow_schema;
    pub use lance;
}
