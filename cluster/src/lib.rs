//! Cluster membership: which nodes are in, what they offer, which are lost,
//! on which of them an applier fits ([`choose_worker`]), which GPU devices
//! of a worker each applier uses ([`GpuDevices`]), and how a worker finds
//! its head ([`JoinTarget`], [`Backoff`]).
//!
//! This crate owns the head's view of its workers as a sans-IO state machine
//! ([`Membership`]): a worker joins with the resources it offers, sends
//! heartbeats, and is declared lost when none arrives within the deadline
//! (5 seconds by default). Joins and losses come out as [`MembershipEvent`]s
//! that the scheduler consumes. Time is passed in, so tests run on a virtual
//! clock. It knows nothing of Lance, UDFs or sockets; the messages that carry
//! joins and heartbeats are plain serde types ([`Join`], [`Heartbeat`]).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use leman_cluster::{Membership, MembershipEvent, Resources};
//!
//! let start = Instant::now();
//! let mut members = Membership::new(Duration::from_secs(5));
//! let id = members.join(start, "127.0.0.1:7001".into(), Resources { cpus: 2.0, ..Resources::default() });
//! assert!(matches!(members.poll_event(), Some(MembershipEvent::Joined { .. })));
//! members.handle_timeout(start + Duration::from_secs(6));
//! assert_eq!(members.poll_event(), Some(MembershipEvent::Lost { node: id }));
//! ```

mod backoff;
mod gpus;
mod membership;
mod messages;
mod placement;
mod resources;
mod target;

pub use backoff::Backoff;
pub use gpus::{GpuDevices, GpuLease, listed_device_count, visible_device_count};
pub use membership::{Member, Membership, MembershipEvent, NodeId};
pub use messages::{DEFAULT_CLUSTER_NAME, Heartbeat, Join};
pub use placement::{Holder, Reservations, choose_worker};
pub use resources::Resources;
pub use target::{BadTarget, JoinTarget};
