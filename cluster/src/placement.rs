//! Placing appliers on workers by free resources.
//!
//! Each applier reserves its UDF's `cpus` times its threads, and its `gpus`
//! (and memory, when both sides state it), on one worker; [`choose_worker`]
//! picks the member with the most free CPUs on which that fits. An applier
//! that fits nowhere waits for capacity: a worker joining, or another
//! applier released. [`Reservations`] is the cluster's ledger of what every
//! running job's appliers hold, so concurrent jobs share workers without
//! oversubscribing them. It also leases each applier's GPU device ordinals
//! on its worker ([`GpuDevices`]): one ledger decides both whether a GPU
//! applier fits and on which devices it runs, so the worker never has to
//! refuse what the head placed.

use std::collections::HashMap;

use crate::gpus::{GpuDevices, GpuLease};
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

/// One applier's reservation.
#[derive(Debug)]
struct Held {
    node: NodeId,
    need: Resources,
    gpus: GpuLease,
}

/// What every applier of every job holds, worker by worker.
#[derive(Debug, Default)]
pub struct Reservations {
    held: HashMap<Holder, Held>,
    /// The GPU devices of each worker that has any, leased or free.
    devices: HashMap<NodeId, GpuDevices>,
}

impl Reservations {
    /// Resources reserved on each worker.
    pub fn used(&self) -> HashMap<NodeId, Resources> {
        let mut used: HashMap<NodeId, Resources> = HashMap::new();
        for held in self.held.values() {
            let taken = used.entry(held.node).or_default();
            taken.cpus += held.need.cpus;
            taken.gpus += held.need.gpus;
            taken.memory += held.need.memory;
        }
        used
    }

    /// Picks a worker for `holder` with [`choose_worker`], among those
    /// whose free GPU devices can hold `need.gpus`, and reserves `need` on
    /// it; returns the worker and the device ordinals leased there, or
    /// `None` when it fits nowhere. A holder has one reservation: an older
    /// one is released first.
    pub fn reserve(&mut self, members: &[Member], holder: Holder, need: Resources) -> Option<(NodeId, Vec<u32>)> {
        self.release(&holder);
        let eligible: Vec<Member> =
            members.iter().filter(|member| self.devices_of(member).clone().reserve(need.gpus).is_some()).cloned().collect();
        let node = choose_worker(&eligible, &self.used(), need)?;
        let member = eligible.iter().find(|m| m.id == node)?;
        let gpus = self.devices.entry(node).or_insert_with(|| GpuDevices::new(whole_gpus(member))).reserve(need.gpus)?;
        let ordinals = gpus.ordinals().to_vec();
        self.held.insert(holder, Held { node, need, gpus });
        Some((node, ordinals))
    }

    /// Releases what `holder` reserved; true if it held anything.
    pub fn release(&mut self, holder: &Holder) -> bool {
        match self.held.remove(holder) {
            Some(held) => {
                self.give_back(&held);
                true
            }
            None => false,
        }
    }

    /// Releases everything of job `job`; true if it held anything.
    pub fn release_job(&mut self, job: &str) -> bool {
        let holders: Vec<Holder> = self.held.keys().filter(|holder| holder.job == job).cloned().collect();
        for holder in &holders {
            self.release(holder);
        }
        !holders.is_empty()
    }

    /// Releases everything reserved on `node` (it was lost).
    pub fn release_node(&mut self, node: NodeId) {
        self.held.retain(|_, held| held.node != node);
        self.devices.remove(&node);
    }

    /// The devices of `member` as leased now.
    fn devices_of(&self, member: &Member) -> GpuDevices {
        self.devices.get(&member.id).cloned().unwrap_or_else(|| GpuDevices::new(whole_gpus(member)))
    }

    fn give_back(&mut self, held: &Held) {
        if let Some(devices) = self.devices.get_mut(&held.node) {
            devices.release(&held.gpus);
        }
    }
}

/// A worker's GPU devices: only whole ones are devices.
fn whole_gpus(member: &Member) -> u32 {
    member.resources.gpus.max(0.0).floor() as u32
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

    #[test]
    fn gpu_appliers_lease_distinct_devices_and_reuse_released_ones() {
        let m = members(&[8.0, 8.0], &[2.0, 0.0]);
        let mut ledger = Reservations::default();
        let holder = |index| Holder { job: "gpu".into(), index };
        assert_eq!(ledger.reserve(&m, holder(0), need(1.0, 1.0)), Some((NodeId(1), vec![0])));
        assert_eq!(ledger.reserve(&m, holder(1), need(1.0, 1.0)), Some((NodeId(1), vec![1])));
        assert_eq!(ledger.reserve(&m, holder(2), need(1.0, 1.0)), None, "both devices are leased");
        assert_eq!(ledger.reserve(&m, holder(3), need(1.0, 0.0)).map(|(_, gpus)| gpus), Some(vec![]), "CPU appliers lease none");
        assert!(ledger.release(&holder(0)));
        assert_eq!(ledger.reserve(&m, holder(2), need(1.0, 1.0)), Some((NodeId(1), vec![0])), "device 0 is reused");
    }

    #[test]
    fn fractions_that_fit_by_sum_but_not_by_device_wait() {
        // 0.6 + 0.6 + 0.6 is under 2 GPUs, but no device holds two of them.
        let m = members(&[8.0], &[2.0]);
        let mut ledger = Reservations::default();
        let holder = |index| Holder { job: "f".into(), index };
        assert_eq!(ledger.reserve(&m, holder(0), need(1.0, 0.6)), Some((NodeId(1), vec![0])));
        assert_eq!(ledger.reserve(&m, holder(1), need(1.0, 0.6)), Some((NodeId(1), vec![1])));
        assert_eq!(ledger.reserve(&m, holder(2), need(1.0, 0.6)), None);
        assert_eq!(ledger.reserve(&m, holder(3), need(1.0, 0.4)), Some((NodeId(1), vec![0])));
        ledger.release_job("f");
        assert_eq!(ledger.reserve(&m, holder(4), need(1.0, 2.0)), Some((NodeId(1), vec![0, 1])), "all released");
    }
}
