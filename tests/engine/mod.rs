//! End-to-end tests of the engine library on real Lance datasets in temp
//! directories, embedded and on an in-process cluster: one test binary, one
//! module per behaviour of a backfill.

mod alter;
mod cancel;
mod checkpoints;
mod cleanup;
mod cluster;
mod commits;
mod concurrency;
mod conflicts;
mod dry_run;
mod errors;
mod filters;
mod full;
mod many;
mod incremental;
mod readme;
mod shapes;
mod stage;
mod storage_faults;
mod unpack;
pub(crate) mod support;
