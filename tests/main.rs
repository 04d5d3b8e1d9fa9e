//! Tests of the `leman` crate on real Lance datasets: the binary and its
//! commands (`cli/`, real processes, including tables written by pylance
//! and on a real S3 server), the library end to end (`engine/`) and the
//! face's own pieces (`face/`: built-ins, formatting, auto traits). One
//! test binary, so that it is linked once (each link of lance is most of a
//! minute of a warm test run).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod cli;
mod engine;
mod face;
mod view;

/// The crate's directory, as `cargo test` sets it when it runs the tests
/// (the compiled-in path names wherever the binary was built, which a
/// target directory shared by two checkouts makes another one).
pub(crate) fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), std::path::PathBuf::from)
}
