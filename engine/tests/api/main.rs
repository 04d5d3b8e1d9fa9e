//! Tests of the engine through its public seams, on real Lance tables in
//! temporary directories: one binary, so the library is not compiled again
//! in test mode (its `[lib]` has `test = false`; add tests here).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod driver;
mod handles;
mod location;
mod row_errors;
mod storage;
mod udf_record;
mod uri;
