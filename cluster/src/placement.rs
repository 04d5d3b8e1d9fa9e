//! Placing appliers on workers by free resources.
//!
//! Each applier reserves its UDF's `cpus` times its threads, and its `gpus`
//! (and memory, when both sides state it), on one worker; [`choose_worker`]
//! picks the member with the most free CPUs on which that fits. An applier
//! that fits nowhere waits for capacity: a worker joining. Reservations are
//! those of one job.

use std::collections::HashMap;

use crate::{Member, NodeId, Resources};

/// The worker with the most free CPUs on which `need` fits, given what this
/// job already reserved (`used`).
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
}
