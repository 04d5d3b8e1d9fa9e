//! What workers tell the head about themselves: plain serde types that the
//! runtime frames.

use serde::{Deserialize, Serialize};

use crate::membership::NodeId;
use crate::resources::Resources;

/// The cluster name of heads and workers not given another.
pub const DEFAULT_CLUSTER_NAME: &str = "leman";

/// A worker asks to join: of which cluster, where it serves, what it offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Join {
    /// The cluster it belongs to (`--cluster-name`); a head of another
    /// cluster refuses it.
    pub cluster: String,
    /// The address it advertises (`--advertise`). Without one the head
    /// records the address the join came from.
    pub advertise: Option<String>,
    /// What it offers.
    pub resources: Resources,
}

/// A worker says it is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The id the head gave it at join.
    pub node: NodeId,
}
