//! Where a job's appliers and writers go: in this process, or on the
//! workers of a cluster (chosen by [`leman_cluster::choose_worker`]).

use std::sync::{Arc, Mutex};

use leman_cluster::{Member, Membership, MembershipEvent};
use leman_runtime::Node;
use tokio::sync::broadcast;

/// What a job's driver sees of the cluster it runs on.
#[derive(Debug)]
pub(crate) struct ClusterView {
    /// The head's node, for requests to workers.
    pub node: Arc<Node>,
    /// Live members.
    pub membership: Arc<Mutex<Membership>>,
    /// Joins and losses as they happen.
    pub events: broadcast::Sender<MembershipEvent>,
}

impl ClusterView {
    /// Live members now.
    pub fn members(&self) -> Vec<Member> {
        let membership = self.membership.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        membership.members().cloned().collect()
    }
}

/// Where a job runs.
#[derive(Debug, Clone)]
pub(crate) enum Placement {
    /// Appliers and writers are actors of this process.
    Embedded,
    /// Appliers and writers run on the cluster's workers.
    Cluster(Arc<ClusterView>),
}
