//! End-to-end tests of the embedded engine on real Lance datasets in temp
//! directories: one test binary, one module per behaviour of a backfill.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod checkpoints;
mod commits;
mod concurrency;
mod errors;
mod filters;
mod full;
mod incremental;
mod shapes;
mod support;
