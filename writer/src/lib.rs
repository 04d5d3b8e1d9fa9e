//! Fragment writers and the committer.
//!
//! This crate owns the last two steps of a backfill. A [`Writer`] actor per
//! fragment waits until every batch of its fragment is checkpointed, then
//! streams the checkpoints in row order into one new Lance data file that
//! holds only the new column (`FileFragment::write_columns`), and records a
//! fragment checkpoint. Writers of different fragments run in parallel. The
//! [`commit`] module then commits groups of written fragments as one
//! `DataReplacement` transaction, rebased by lance over compatible
//! concurrent commits and re-planned over conflicting ones. It never runs
//! UDFs.
//!
//! ```no_run
//! # async fn demo(ds: std::sync::Arc<lance::Dataset>, groups: Vec<lance::dataset::transaction::DataReplacementGroup>)
//! # -> Result<(), leman_writer::WriterError> {
//! let committed = leman_writer::commit::commit_replacements(ds.clone(), ds, "len", groups).await?;
//! println!("table is now at version {:?}; left out: {:?}", committed.version(), committed.left_out);
//! # Ok(()) }
//! ```

mod actor;
pub mod commit;
mod error;
mod fragment;

pub use actor::{FragmentWrite, Writer, WriterArgs, WriterMsg};
pub use error::WriterError;
pub use fragment::{WriterContext, write_fragment};
