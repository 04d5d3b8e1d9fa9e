//! Messages between workers and the head. Plain serde types; the runtime
//! frames them.

use leman_cluster::{Heartbeat, Join, NodeId, Resources};
use serde::{Deserialize, Serialize};

/// What the head is asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HeadRequest {
    /// A worker joins.
    Join(Join),
    /// A worker is alive.
    Heartbeat(Heartbeat),
    /// Who is in the cluster?
    Members,
}

/// What the head answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HeadResponse {
    /// Welcome; this is your id.
    Joined { node: NodeId },
    /// Heartbeat noted; `known: false` means the worker was lost and must join again.
    Alive { known: bool },
    /// The live members.
    Members(Vec<MemberInfo>),
    /// The request could not be served.
    Refused { reason: String },
}

/// A live member as the head reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Its id.
    pub node: NodeId,
    /// Where it serves.
    pub addr: String,
    /// What it offers.
    pub resources: Resources,
}
