//! The head: accepts workers and watches their heartbeats.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leman_cluster::{Membership, MembershipEvent};
use leman_runtime::{ClusterCerts, Node, NodeConfig, Service};

use super::LOST_AFTER;
use super::protocol::{HeadRequest, HeadResponse, MemberInfo};
use crate::Result;

/// How a head is started.
#[derive(Debug, Clone)]
pub struct HeadConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory of the cluster's certificates.
    pub certs: PathBuf,
}

/// A running head; stops when dropped.
#[derive(Debug)]
pub struct Head {
    node: Node,
    watcher: tokio::task::JoinHandle<()>,
}

struct HeadService {
    membership: Arc<Mutex<Membership>>,
}

impl Service for HeadService {
    type Request = HeadRequest;
    type Response = HeadResponse;

    async fn call(&self, peer: SocketAddr, request: HeadRequest) -> HeadResponse {
        let mut membership = self.membership.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        match request {
            HeadRequest::Join(join) => {
                let node = membership.join(now, join.addr, join.resources);
                tracing::debug!(%peer, %node, "join");
                HeadResponse::Joined { node }
            }
            HeadRequest::Heartbeat(beat) => HeadResponse::Alive { known: membership.heartbeat(now, beat.node) },
            HeadRequest::Members => HeadResponse::Members(
                membership
                    .members()
                    .map(|m| MemberInfo { node: m.id, addr: m.addr.clone(), resources: m.resources })
                    .collect(),
            ),
        }
    }
}

impl Head {
    /// Starts a head.
    pub fn start(config: &HeadConfig) -> Result<Self> {
        let certs = ClusterCerts::load(&config.certs)?;
        let membership = Arc::new(Mutex::new(Membership::new(LOST_AFTER)));
        let service = Arc::new(HeadService { membership: membership.clone() });
        let node = Node::serve(config.listen, &certs, NodeConfig::default(), service)?;
        let watcher = tokio::spawn(watch(membership));
        Ok(Self { node, watcher })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.node.local_addr()?)
    }
}

impl Drop for Head {
    fn drop(&mut self) {
        self.watcher.abort();
        self.node.close();
    }
}

/// Declares silent workers lost, and logs joins and losses.
async fn watch(membership: Arc<Mutex<Membership>>) {
    let tick = Duration::from_millis(100);
    loop {
        tokio::time::sleep(tick).await;
        let mut membership = membership.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        membership.handle_timeout(Instant::now());
        while let Some(event) = membership.poll_event() {
            match event {
                MembershipEvent::Joined { node, addr, resources } => {
                    tracing::info!(%node, %addr, cpus = resources.cpus, gpus = resources.gpus, memory = resources.memory, "worker joined");
                }
                MembershipEvent::Lost { node } => tracing::warn!(%node, "worker lost: no heartbeat within {LOST_AFTER:?}"),
            }
        }
    }
}
