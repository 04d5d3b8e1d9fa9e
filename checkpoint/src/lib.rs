//! Content-addressed checkpoints of a backfill.
//!
//! This crate owns what survives a crash: the key of each batch and fragment
//! checkpoint, the records that describe them, and their storage in an
//! `object_store` under the table's directory (`_leman/checkpoints/`). The
//! applier writes batch checkpoints, the writer reads them and writes the
//! fragment checkpoint; the driver looks both up when planning so that a
//! re-run recomputes nothing already done. It knows Arrow and Lance's
//! `DataFile`, not UDFs or actors.
//!
//! A key is the SHA-256 of everything that determines a result ([`KeyParts`]):
//! UDF name and version, column, filter, table, fragment, the fragment's data
//! files and the row range. A batch's data is an Arrow IPC stream of its
//! output column; its record carries the SHA-256 of those bytes, and a
//! checkpoint whose bytes do not match is treated as absent, so it is
//! recomputed rather than trusted. Where a job's writers share its
//! appliers' process, batches pass from one to the other in memory, and
//! only those worth it are stored ([`handoff`]).
//!
//! ```no_run
//! # async fn demo(store: leman_checkpoint::CheckpointStore, batch: arrow_array::RecordBatch)
//! # -> Result<(), leman_checkpoint::CheckpointError> {
//! use leman_checkpoint::KeyParts;
//! let parts = KeyParts {
//!     udf_name: "str_len", udf_version: "1", column: "len", filter: "len IS NULL",
//!     table: "file:///data/t.lance", fragment_id: 0, data_files: vec!["a.lance".into()],
//! };
//! let key = parts.batch_key(0..1024);
//! store.put_batch(&key, 0..1024, &batch, Default::default(), parts.origin()).await?;
//! assert!(store.find_batch(&key).await?.is_some());
//! # Ok(()) }
//! ```

mod error;
mod fills;
pub mod handoff;
mod key;
mod store;

pub use error::CheckpointError;
pub use fills::{Fill, FillIndex, fill_tag};
pub use handoff::{Handoff, HandoffLimits};
pub use key::{BatchKeys, CheckpointKey, KeyParts};
pub use store::{BatchCounts, BatchRecord, CheckpointStore, FragmentRecord, ObjectKind, Origin, StoredObject};
