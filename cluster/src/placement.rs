//! Placing appliers on workers by free resources.
//!
//! Each applier reserves its UDF's `cpus` times its threads, and its `gpus`
//! (and memory, when both sides state it), on one worker; [`choose_worker`]
//! picks the member with the most free CPUs on which that fits. An applier
//! that fits nowhere waits for capacity: a worker joining, or another
//! applier released. [`Reservations`] is the cluster's ledger of what every
//! running job's appliers hold, so concurrent jobs share workers without
//! oversubscribing them.

use std::collections::HashMap;

use crate::membership::{Member, NodeId};
use crate::resources::Resources;

/// The worker with the most free CPUs on which `need` fits, given what is
/// already reserved on each (`used`, as [`Reservations::used`] gives it).
pub fn choose_worker(members: &[Member], used: &HashMap<NodeId, Resources>, need: Resources) -> Option<NodeId> {
    members
        .iter()
        .filter_map(|member| {
            let taken = used.get(&member.id).copied().unwrap_or_default();
            let free_cpus = member.resources.cpus - taken.cpus;
            let free_gpus = member.resources.gpus - taken.gpus;
            let free_memory = member.resources.memory.saturating_sub(taken.memory);
            let fits = free_cpus + 1e-9 >= need.cpus
                && free_gpus + 1e-9 >= need.gpus
                && (need.memory == 0 || member.resources.memory == 0 || free_memory >= need.memory);
            fits.then_some((member.id, free_cpus))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(id, _)| id)
}

/// Who holds a reservation: applier `index` of job `job`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Holder {
    /// The job's id.
    pub job: String,
    /// The applier's index in its job.
    pub index: usize,
}

/// What every applier of every job holds, worker by worker.
#[derive(Debug, Default)]
pub struct Reservations {
    held: HashMap<Holder, (NodeId, Resources)>,
}

impl Reservations {
    /// Resources reserved on each worker.
    pub fn used(&self) -> HashMap<NodeId, Resources> {
        let mut used: HashMap<NodeId, Resources> = HashMap::new();
        for (node, need) in self.held.values() {
            let taken = used.entry(*node).or_default();
            taken.cpus += need.cpus;
            taken.gpus += need.gpus;
            taken.memory += need.memory;
        }
        used
    }

    /// Picks a worker for `holder` with [`choose_worker`] and reserves
    /// `need` on it; `None` when it fits nowhere. A holder has one
    /// reservation: an older one is released first.
    pub fn reserve(&mut self, members: &[Member], holder: Holder, need: Resources) -> Option<NodeId> {
        self.held.remove(&holder);
        let node = choose_worker(members, &self.used(), need)?;
        self.held.insert(holder, (node, need));
        Some(node)
    }

    /// Releases what `holder` reserved; true if it held anything.
    pub fn release(&mut self, holder: &Holder) -> bool {
        self.held.remove(holder).is_some()
    }

    /// Releases everything of job `job`; true if it held anything.
    pub fn release_job(&mut self, job: &str) -> bool {
        let before = self.held.len();
        self.held.retain(|holder, _| holder.job != job);
        self.held.len() != before
    }

    /// Releases everything reserved on `node` (it was lost).
    pub fn release_node(&mut self, node: NodeId) {
        self.held.retain(|_, (on, _)| *on != node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Membership;
    use std::time::{Duration, Instant};

    fn members(cpus: &[f64], gpus: &[f64]) -> Vec<Member> {
        let mut membership = Membership::new(Duration::from_secs(5));
        for (i, (&c, &g)) in cpus.iter().zip(gpus).enumerate() {
            membership.join(Instant::now(), format!("w{i}"), Resources { cpus: c, gpus: g, memory: 0 });
        }
        membership.members().cloned().collect()
    }

    fn need(cpus: f64, gpus: f64) -> Resources {
        Resources { cpus, gpus, memory: 0 }
    }

    #[test]
    fn appliers_spread_by_free_cpus_and_wait_when_nothing_fits() {
        let m = members(&[2.0, 4.0], &[0.0, 0.0]);
        let mut used: HashMap<NodeId, Resources> = HashMap::new();
        let mut placed = Vec::new();
        while let Some(node) = choose_worker(&m, &used, need(1.0, 0.0)) {
            used.entry(node).or_default().cpus += 1.0;
            placed.push(node.0);
        }
        assert_eq!(placed.len(), 6, "2 + 4 cores of 1-cpu appliers");
        assert_eq!(&placed[..3], &[2, 2, 1], "the freest worker first: {placed:?}");
        assert_eq!(choose_worker(&m, &used, need(1.0, 0.0)), None, "the seventh waits");
    }

    #[test]
    fn gpus_are_reserved_too() {
        let m = members(&[8.0, 8.0], &[0.0, 1.0]);
        let mut used: HashMap<NodeId, Resources> = HashMap::new();
        assert_eq!(choose_worker(&m, &used, need(1.0, 1.0)), Some(NodeId(2)));
        used.entry(NodeId(2)).or_default().gpus = 1.0;
        assert_eq!(choose_worker(&m, &used, need(1.0, 1.0)), None);
        assert_eq!(choose_worker(&m, &used, need(2.0, 0.0)), Some(NodeId(1)));
    }

    #[test]
    fn concurrent_jobs_share_the_ledger_and_releases_make_room() {
        let m = members(&[2.0], &[0.0]);
        let mut ledger = Reservations::default();
        let holder = |job: &str, index| Holder { job: job.into(), index };
        assert!(ledger.reserve(&m, holder("a", 0), need(1.0, 0.0)).is_some());
        assert!(ledger.reserve(&m, holder("a", 1), need(1.0, 0.0)).is_some());
        assert_eq!(ledger.reserve(&m, holder("b", 0), need(1.0, 0.0)), None, "job a holds both cores");
        assert!(ledger.reserve(&m, holder("a", 1), need(1.0, 0.0)).is_some(), "re-reserving replaces, not adds");
        assert!(ledger.release(&holder("a", 1)));
        assert!(ledger.reserve(&m, holder("b", 0), need(1.0, 0.0)).is_some(), "a release makes room for another job");
        assert!(ledger.release_job("a"));
        assert!(!ledger.release_job("a"));
        assert_eq!(ledger.used().get(&NodeId(1)).map(|r| r.cpus), Some(1.0));
        ledger.release_node(NodeId(1));
        assert!(ledger.used().is_empty());
    }
}
