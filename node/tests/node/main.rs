//! Tests of the cluster's processes with real QUIC nodes on 127.0.0.1 and
//! real Lance tables: one binary, so the library is not compiled again in
//! test mode (its `[lib]` has `test = false`; add tests here).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod errors;
mod head;
mod properties;
mod protocol;
mod worker;
