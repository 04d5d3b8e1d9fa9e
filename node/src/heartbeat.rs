//! How often workers say they are alive, and how long the head waits.

use std::time::Duration;

/// How often a worker says it is alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// Silence after which the head declares a worker lost, and a worker gives
/// up on its head. With heartbeats every second, a dead worker is lost
/// within 5 seconds of its death.
pub const LOST_AFTER: Duration = Duration::from_millis(3500);
