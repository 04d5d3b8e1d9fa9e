//! Fragment writers and the committer.
//!
//! This crate owns the last two steps of a backfill. A [`Writer`] actor per
//! fragment waits until every batch of its fragment is checkpointed, then
//! streams the checkpoints in row order into one new Lance data file that
//! holds only the new column (`FileFragment::write_columns`), and records a
//! fragment checkpoint. Writers of different fragments run in parallel. The
//! [`commit`] module then commits groups of written fragments as one
//! `DataReplacement` transaction against the job's read version, which lance
//! rebases over concurrent appends. It never runs UDFs.
//!
//! ```no_run
//! # async fn demo(ds: std::sync::Arc<lance::Dataset>, groups: Vec<lance::dataset::transaction::DataReplacementGroup>)
//! # -> Result<(), leman_writer::WriterError> {
//! let committed = leman_writer::commit::commit_replacements(ds, groups).await?;
//! println!("table is now at version {}", committed.version().version);
//! # Ok(()) }
//! ```

mod actor;
pub mod commit;
mod fragment;

pub use actor::{FragmentWrite, Writer, WriterArgs, WriterMsg};
pub use fragment::{WriterContext, write_fragment};

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
    /// Lance failed to write or commit.
    #[error("lance: {0}")]
    Lance(#[from] lance::Error),
}
