//! The membership state machine; see the [crate docs](crate).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::resources::Resources;

/// A node's id, given by the head at join; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node-{}", self.0)
    }
}

/// A live member.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Its id.
    pub id: NodeId,
    /// Where it serves.
    pub addr: String,
    /// What it offers.
    pub resources: Resources,
    last_seen: Instant,
}

/// A change of membership.
#[derive(Debug, Clone, PartialEq)]
pub enum MembershipEvent {
    /// A node joined.
    Joined { node: NodeId, addr: String, resources: Resources },
    /// A node missed its heartbeat deadline (or left); it is gone for good.
    Lost { node: NodeId },
}

/// The head's view of its nodes.
#[derive(Debug)]
pub struct Membership {
    deadline: Duration,
    members: BTreeMap<NodeId, Member>,
    events: VecDeque<MembershipEvent>,
    next_id: u64,
}

impl Membership {
    /// Nodes are lost when silent for longer than `deadline`; ids count
    /// from 1.
    pub fn new(deadline: Duration) -> Self {
        Self::with_first_id(deadline, 1)
    }

    /// As [`Membership::new`], ids counting from `first`. A head gives each
    /// of its incarnations another start, so that a worker that still
    /// carries the id its previous incarnation gave it is not taken for the
    /// member now holding that id: it is told it is unknown and joins again.
    pub fn with_first_id(deadline: Duration, first: u64) -> Self {
        Self { deadline, members: BTreeMap::new(), events: VecDeque::new(), next_id: first }
    }

    /// A node joins at `now`; returns its new id.
    pub fn join(&mut self, now: Instant, addr: String, resources: Resources) -> NodeId {
        let id = NodeId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        self.members.insert(id, Member { id, addr: addr.clone(), resources, last_seen: now });
        self.events.push_back(MembershipEvent::Joined { node: id, addr, resources });
        id
    }

    /// A heartbeat from `node` at `now`. `false` when the node is not a
    /// member (lost already): it must join again.
    pub fn heartbeat(&mut self, now: Instant, node: NodeId) -> bool {
        match self.members.get_mut(&node) {
            Some(member) => {
                member.last_seen = member.last_seen.max(now);
                true
            }
            None => false,
        }
    }

    /// `node` leaves (or is known dead): lost now.
    pub fn remove(&mut self, node: NodeId) {
        if self.members.remove(&node).is_some() {
            self.events.push_back(MembershipEvent::Lost { node });
        }
    }

    /// Declares lost every node silent for longer than the deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        let silent: Vec<NodeId> = self
            .members
            .values()
            .filter(|m| now.saturating_duration_since(m.last_seen) > self.deadline)
            .map(|m| m.id)
            .collect();
        for node in silent {
            self.remove(node);
        }
    }

    /// When the next node would be lost if it stays silent.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.members.values().map(|m| m.last_seen + self.deadline).min()
    }

    /// The next change, if any.
    pub fn poll_event(&mut self) -> Option<MembershipEvent> {
        self.events.pop_front()
    }

    /// Live members, by id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(n: f64) -> Resources {
        Resources { cpus: n, ..Resources::default() }
    }

    #[test]
    fn silent_nodes_are_lost_after_the_deadline_and_only_then() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut m = Membership::new(5 * s);
        let a = m.join(t0, "a".into(), cpus(2.0));
        let b = m.join(t0, "b".into(), cpus(4.0));
        assert!(matches!(m.poll_event(), Some(MembershipEvent::Joined { node, .. }) if node == a));
        assert!(matches!(m.poll_event(), Some(MembershipEvent::Joined { node, resources, .. }) if node == b && resources.cpus == 4.0));
        for tick in 1..=4 {
            assert!(m.heartbeat(t0 + tick * s, a));
        }
        assert_eq!(m.poll_timeout(), Some(t0 + 5 * s), "b is due first");
        m.handle_timeout(t0 + 5 * s);
        assert_eq!(m.poll_event(), None, "exactly at the deadline is not late");
        m.handle_timeout(t0 + 5 * s + Duration::from_millis(1));
        assert_eq!(m.poll_event(), Some(MembershipEvent::Lost { node: b }));
        assert_eq!(m.members().map(|x| x.id).collect::<Vec<_>>(), vec![a]);
        assert!(!m.heartbeat(t0 + 6 * s, b), "a lost node must join again");
        m.handle_timeout(t0 + 9 * s + Duration::from_millis(1));
        assert_eq!(m.poll_event(), Some(MembershipEvent::Lost { node: a }));
    }

    #[test]
    fn rejoining_gets_a_new_id_and_removal_is_an_event() {
        let t0 = Instant::now();
        let mut m = Membership::new(Duration::from_secs(5));
        let first = m.join(t0, "a".into(), cpus(1.0));
        m.remove(first);
        m.remove(first);
        let second = m.join(t0, "a".into(), cpus(1.0));
        assert_ne!(first, second);
        let events: Vec<_> = std::iter::from_fn(|| m.poll_event()).collect();
        assert_eq!(events.len(), 3, "joined, lost once, joined: {events:?}");
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    }
}
