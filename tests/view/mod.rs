//! Materialized views on real tables: created, refreshed after appends,
//! deletes, updates and compaction, forwards and backwards, and compared
//! each time with their query computed from scratch on the source.

mod refresh;
mod refusals;
mod support;
