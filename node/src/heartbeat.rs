//! How often workers say they are alive, and how long the head waits.
//!
//! A worker sends a heartbeat every [`HEARTBEAT_EVERY`] without waiting for
//! the previous one to be answered, so a beat stuck behind a lost packet
//! does not hold back the next. A blackout of up to 3 seconds therefore
//! leaves a silence of at most 3.5 seconds (plus a round trip), which is
//! under [`LOST_AFTER`]: nothing is lost. A dead worker is lost within 5
//! seconds of its death: its last beat left at most half a second before,
//! and the head looks every 100 ms.

use std::time::Duration;

/// How often a worker says it is alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
/// Silence after which the head declares a worker lost, and a worker gives
/// up on its head.
pub const LOST_AFTER: Duration = Duration::from_millis(4500);
