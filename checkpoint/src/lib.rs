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
//! recomputed rather than trusted.
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
//! store.put_batch(&key, 0..1024, &batch, Default::default()).await?;
//! assert!(store.find_batch(&key).await?.is_some());
//! # Ok(()) }
//! ```

mod key;
mod store;

pub use key::{CheckpointKey, KeyParts};
pub use store::{BatchCounts, BatchRecord, CheckpointStore, FragmentRecord};

use object_store::path::Path;

/// What went wrong reading or writing a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The object store failed.
    #[error("checkpoint storage failed at {path}: {source}; check that the table directory is writable")]
    Store {
        path: Path,
        #[source]
        source: object_store::Error,
    },
    /// A record could not be encoded or decoded.
    #[error("checkpoint record {path} is not valid JSON: {source}")]
    Record {
        path: Path,
        #[source]
        source: serde_json::Error,
    },
    /// A batch's bytes could not be encoded or decoded as Arrow IPC.
    #[error("checkpoint data {path} is not a valid Arrow IPC stream: {source}")]
    Ipc {
        path: Path,
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// A batch's bytes differ from the hash in its record.
    #[error("checkpoint data {path} does not match its recorded hash; it will be recomputed on the next run")]
    HashMismatch { path: Path },
}
