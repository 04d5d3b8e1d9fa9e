//! Applier actors: where UDFs run.
//!
//! This crate owns the [`Udf`] type and its four call shapes, the `where`
//! filter ([`RowFilter`]), and the applier actor ([`Applier`]) that runs a
//! job's tasks: read a physical row range of a fragment, choose the rows to
//! compute, call the UDF on a pool of `intra_applier_concurrency` threads,
//! merge the results with the column's previous values and write the batch's
//! checkpoint. It never commits to the table; writers do that.
//!
//! ```
//! use std::sync::Arc;
//! use arrow_array::{ArrayRef, Int64Array, cast::AsArray, types::Int64Type};
//! use arrow_schema::{DataType, Field};
//! use leman_applier::{ErrorPolicy, Udf};
//!
//! let plus_one = Udf::array("plus_one", Field::new("y", DataType::Int64, true), &["x"], |cols| {
//!     let x = cols[0].as_primitive::<Int64Type>();
//!     Ok(Arc::new(x.unary::<_, Int64Type>(|v| v + 1)) as ArrayRef)
//! })
//! .with_version("1")
//! .with_error_policy(ErrorPolicy::Skip);
//! assert_eq!(plus_one.inputs(), ["x"]);
//! ```

mod actor;
mod error;
mod filter;
mod invoke;
mod output;
mod policy;
mod pool;
mod readers;
mod task;
mod udf;
mod usage;

pub use actor::{Applier, ApplierArgs, ApplierMsg, ApplierState};
pub use error::ApplierError;
pub use filter::{ROW_ADDRESS, RowFilter, default_filter, quote_identifier};
pub use output::OutputColumns;
pub use pool::Pool;
pub use task::{BackfillContext, JobNames, JobPart, SkippedRow, TaskError, TaskOutput, TaskSpec, row_address, run_task};
pub use usage::{peak_memory, process_cpu_time};
pub use udf::{fingerprint, ErrorPolicy, InstanceContext, Resources, RetryBackoff, StatefulUdf, Udf, UdfError};
