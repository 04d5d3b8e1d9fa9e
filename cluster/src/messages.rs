//! What workers tell the head about themselves: plain serde types that the
//! runtime frames.

use serde::{Deserialize, Serialize};

use crate::membership::NodeId;
use crate::resources::Resources;

/// A worker asks to join: where it serves, what it offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Join {
    /// Address the worker's node listens on.
    pub addr: String,
    /// What it offers.
    pub resources: Resources,
}

/// A worker says it is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The id the head gave it at join.
    pub node: NodeId,
}
