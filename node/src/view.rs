//! The cluster as the head's jobs see it: its live members, the one ledger
//! in which every job's appliers reserve their resources
//! ([`Reservations`]), so concurrent jobs share the workers without
//! oversubscribing them, and the events that jobs' executors follow.

use std::sync::{Arc, Mutex, MutexGuard};

use leman_cluster::{Holder, Member, Membership, MembershipEvent, NodeId, Reservations, Resources};
use leman_runtime::Node;
use tokio::sync::broadcast;

use crate::protocol::ApplierExit;

/// What a job's executor hears from the cluster.
#[derive(Debug, Clone)]
pub(crate) enum ClusterEvent {
    /// A worker joined or was lost.
    Member(MembershipEvent),
    /// An applier stopped on its own (a supervision event from its worker).
    ApplierExited(ApplierExit),
    /// Some job released resources: appliers waiting for room may fit now.
    CapacityFreed,
}

/// What a job's executor sees of the cluster it runs on.
#[derive(Debug)]
pub(crate) struct ClusterView {
    /// The head's node, for requests to workers.
    pub node: Arc<Node>,
    /// Live members.
    pub membership: Arc<Mutex<Membership>>,
    /// What every job's appliers hold.
    pub reservations: Mutex<Reservations>,
    /// Joins, losses, applier exits and releases as they happen.
    pub events: broadcast::Sender<ClusterEvent>,
}

impl ClusterView {
    /// Live members now.
    pub fn members(&self) -> Vec<Member> {
        let membership = self.membership.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        membership.members().cloned().collect()
    }

    /// Whether `node` is a live member.
    pub fn is_member(&self, node: NodeId) -> bool {
        self.members().iter().any(|m| m.id == node)
    }

    /// Reserves `need` for `holder` on the freest worker it fits on;
    /// returns the worker and the GPU device ordinals leased there.
    pub fn reserve(&self, holder: Holder, need: Resources) -> Option<(Member, Vec<u32>)> {
        let members = self.members();
        let (node, gpus) = self.ledger().reserve(&members, holder, need)?;
        members.into_iter().find(|m| m.id == node).map(|member| (member, gpus))
    }

    /// Releases what `holder` holds, and says so to waiting jobs.
    pub fn release(&self, holder: &Holder) {
        if self.ledger().release(holder) {
            let _ = self.events.send(ClusterEvent::CapacityFreed);
        }
    }

    /// Takes back a reservation that was never used (its applier did not
    /// start), without telling waiting jobs: a worker that refuses would
    /// otherwise be asked again at once, forever.
    pub fn cancel(&self, holder: &Holder) {
        self.ledger().release(holder);
    }

    /// Releases all that job `job` holds, and says so to waiting jobs.
    pub fn release_job(&self, job: &str) {
        if self.ledger().release_job(job) {
            let _ = self.events.send(ClusterEvent::CapacityFreed);
        }
    }

    /// Resolves once `worker` is lost (at once if it is not a member now).
    pub async fn lost(&self, worker: NodeId) {
        let mut events = self.events.subscribe();
        if !self.is_member(worker) {
            return;
        }
        loop {
            match events.recv().await {
                Ok(ClusterEvent::Member(MembershipEvent::Lost { node })) if node == worker => return,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) if !self.is_member(worker) => return,
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
            }
        }
    }

    fn ledger(&self) -> MutexGuard<'_, Reservations> {
        self.reservations.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

