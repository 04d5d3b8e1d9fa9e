//! Materialized views of Lance tables: a query over a source table (columns
//! to copy, a SQL filter, UDF columns, a shuffle) kept as a Lance table of
//! its own, which any Lance reader reads, and refreshed incrementally.
//!
//! A view row keeps its source row's id and hashes of the values it copies
//! and of its UDF inputs; the view's schema metadata keeps the query and
//! the source version its rows reflect. A refresh reads the source rows
//! that may have changed since (with stable row ids, those Lance's row
//! version tracking says were updated; else every row), compares hashes,
//! and commits in one transaction the rows gone and the rows new or
//! changed, where a row whose UDF inputs did not change keeps its UDF
//! values, and records with the source version the view version of those
//! rows: a refresh that finds a commit after it that changed rows (one cut
//! off before recording, or another writer's) reads its source whole. Then
//! a backfill of the view ([`leman_engine::start_many`])
//! computes the UDF columns of the rows left null, with checkpoints, so
//! that an interrupted refresh resumes. Refreshing to an older source
//! version works the same way. Arrows point down: `leman` -> `leman-view`
//! -> `leman-engine`.

mod diff;
mod hash;
mod query;
mod read;
mod view;
mod write;

pub use diff::{Candidate, Changes, Insert, ViewRow, changes};
pub use query::{
    INPUTS_HASH, META_COLUMNS, ROWS_VERSION_KEY, SOURCE_ROW_ID, SOURCE_VERSION_KEY, VALUES_HASH, VIEW_KEY, ViewQuery, ViewRecord,
};
pub use read::ReadMode;
pub use view::{Refresh, RefreshOptions, RowChanges, UdfColumnInfo, View, ViewInfo, has_stable_row_ids};
