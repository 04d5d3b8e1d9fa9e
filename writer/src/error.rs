//! The one error type of this crate.

/// What went wrong writing or committing.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The fragment is not in the dataset version being written.
    #[error("fragment {fragment_id} is not in the dataset version being written")]
    MissingFragment { fragment_id: u64 },
    /// A batch checkpoint the fragment needs is missing.
    #[error("fragment {fragment_id}: the checkpoint of rows {rows:?} is missing; run the backfill again to recompute it")]
    MissingCheckpoint { fragment_id: u64, rows: std::ops::Range<u64> },
    /// Reading a checkpoint failed.
    #[error("fragment {fragment_id}: {source}")]
    Checkpoint {
        fragment_id: u64,
        #[source]
        source: leman_checkpoint::CheckpointError,
    },
    /// A concurrent commit dropped the column being written.
    #[error("column {column} was dropped from the table by a concurrent commit (it is gone at version {version}); the job stops: add the column again to compute it")]
    ColumnDropped { column: String, version: u64 },
    /// Lance failed to write or commit.
    #[error("lance: {0}")]
    Lance(#[from] lance::Error),
}
