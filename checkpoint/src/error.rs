//! The one error type of this crate.

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
