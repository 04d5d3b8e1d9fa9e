//! A worker: joins the head and keeps saying it is alive.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use leman_cluster::{Heartbeat, Join, NodeId, Resources};
use leman_runtime::{ClusterCerts, Node, NodeConfig, Service};

use super::HEARTBEAT_EVERY;
use super::protocol::{HeadRequest, HeadResponse};
use crate::{Error, Result};

/// How a worker is started.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The head's address.
    pub head: SocketAddr,
    /// Address to listen on for the head and drivers.
    pub listen: SocketAddr,
    /// Directory of the cluster's certificates.
    pub certs: PathBuf,
    /// What it offers.
    pub resources: Resources,
    /// How long to keep trying to reach the head before giving up.
    pub join_timeout: Duration,
}

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    node: Node,
    head: SocketAddr,
    id: NodeId,
    join: Join,
}

/// What a worker serves (nothing yet but liveness).
struct WorkerService;

impl Service for WorkerService {
    type Request = ();
    type Response = ();
    async fn call(&self, _peer: SocketAddr, (): ()) {}
}

impl Worker {
    /// Starts a worker and joins the head, retrying until `join_timeout`.
    pub async fn start(config: &WorkerConfig) -> Result<Self> {
        let certs = ClusterCerts::load(&config.certs)?;
        let node = Node::serve(config.listen, &certs, NodeConfig::default(), std::sync::Arc::new(WorkerService))?;
        let join = Join { addr: node.local_addr()?.to_string(), resources: config.resources };
        let deadline = Instant::now() + config.join_timeout;
        loop {
            match node.request::<_, HeadResponse>(config.head, &HeadRequest::Join(join.clone())).await {
                Ok(HeadResponse::Joined { node: id }) => {
                    tracing::info!(%id, head = %config.head, "joined the cluster");
                    return Ok(Self { node, head: config.head, id, join });
                }
                Ok(other) => return Err(unexpected(other)),
                Err(error) if Instant::now() >= deadline => {
                    return Err(Error::Io(std::io::Error::other(format!(
                        "could not join the head at {} within {:?}: {error}",
                        config.head, config.join_timeout
                    ))));
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot reach the head yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Its id in the cluster.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Sends heartbeats until the process ends; joins again if the head
    /// declared it lost.
    pub async fn run(mut self) -> Result<()> {
        loop {
            tokio::time::sleep(HEARTBEAT_EVERY).await;
            match self.node.request::<_, HeadResponse>(self.head, &HeadRequest::Heartbeat(Heartbeat { node: self.id })).await {
                Ok(HeadResponse::Alive { known: true }) => {}
                Ok(HeadResponse::Alive { known: false }) => {
                    tracing::warn!(id = %self.id, "the head lost this worker; joining again");
                    match self.node.request::<_, HeadResponse>(self.head, &HeadRequest::Join(self.join.clone())).await? {
                        HeadResponse::Joined { node } => self.id = node,
                        other => return Err(unexpected(other)),
                    }
                }
                Ok(other) => return Err(unexpected(other)),
                Err(error) => tracing::warn!(%error, "heartbeat failed; the head may be down"),
            }
        }
    }
}

fn unexpected(response: HeadResponse) -> Error {
    Error::Io(std::io::Error::other(format!("unexpected answer from the head: {response:?}")))
}
