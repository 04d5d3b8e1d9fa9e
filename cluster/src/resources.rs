//! What a node offers, and what an applier reserves of it.

use serde::{Deserialize, Serialize};

/// What a node offers to appliers.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Resources {
    /// CPU cores.
    pub cpus: f64,
    /// GPUs.
    pub gpus: f64,
    /// Bytes of memory.
    pub memory: u64,
}
