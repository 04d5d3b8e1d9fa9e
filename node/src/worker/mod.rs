//! A worker: joins the head, keeps saying it is alive, and hosts the
//! appliers and writers that jobs' drivers ask it for.
//!
//! A job's context (dataset at the job's version, UDF, filter, checkpoint
//! store) is built once per job from its [`JobSpec`], on the first request
//! that needs it; the UDF comes from the worker's own registry and must have
//! the job's version, so every node runs the same code. Appliers are local
//! `ractor` actors, exactly as in an embedded job, linked to one supervisor
//! actor: an applier that stops without being asked to (it failed, or was
//! killed) is forgotten and the head that spawned it is told, by a cast, so
//! its driver places it again. A worker that loses its head (silent past
//! [`LOST_AFTER`](crate::LOST_AFTER), or told it was lost) stops every job
//! it hosts: their drivers have given them up.

mod service;
mod supervisor;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leman_cluster::{Heartbeat, Join, NodeId, Resources};
use leman_engine::UdfRegistry;
use leman_runtime::{ClusterCerts, Node, NodeConfig};
use ractor::{Actor, ActorRef};
use tokio::sync::mpsc;

use crate::error::{NodeError, Result};
use crate::heartbeat::{HEARTBEAT_EVERY, LOST_AFTER};
use crate::protocol::{HeadRequest, HeadResponse};
use service::WorkerService;
use supervisor::{ApplierSupervisor, report_exits};

/// How long a join or heartbeat waits for the head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// UDFs this worker can run (the same as the driver's).
    pub registry: UdfRegistry,
}

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    node: Arc<Node>,
    service: Arc<WorkerService>,
    head: SocketAddr,
    id: NodeId,
    join: Join,
    supervisor: ActorRef<()>,
    forwarder: tokio::task::JoinHandle<()>,
}

impl Worker {
    /// Starts a worker and joins the head, retrying until `join_timeout`.
    pub async fn start(config: &WorkerConfig) -> Result<Self> {
        let certs = ClusterCerts::load(&config.certs)?;
        let service = Arc::new(WorkerService::new(config.registry.clone()));
        let node = Arc::new(Node::serve(config.listen, &certs, NodeConfig::default(), service.clone())?);
        let addr = node.local_addr()?.to_string();
        let (exits, exits_in) = mpsc::unbounded_channel();
        let (supervisor, _) = Actor::spawn(None, ApplierSupervisor, exits)
            .await
            .map_err(|e| NodeError::Actor { actor: "applier supervisor".into(), reason: e.to_string() })?;
        service.supervise_with(supervisor.clone());
        let forwarder = tokio::spawn(report_exits(service.clone(), node.clone(), config.head, addr.clone(), exits_in));
        let join = Join { addr, resources: config.resources };
        let deadline = Instant::now() + config.join_timeout;
        loop {
            match node.request_within::<_, HeadResponse>(config.head, &HeadRequest::Join(join.clone()), HEAD_TIMEOUT).await {
                Ok(HeadResponse::Joined { node: id }) => {
                    tracing::info!(%id, head = %config.head, "joined the cluster");
                    return Ok(Self { node, service, head: config.head, id, join, supervisor, forwarder });
                }
                Ok(other) => return Err(unexpected(config.head, other)),
                Err(source) if Instant::now() >= deadline => {
                    supervisor.stop(None);
                    forwarder.abort();
                    return Err(NodeError::JoinTimeout { head: config.head, after: config.join_timeout, source });
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

    /// The address it serves on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.node.local_addr()?)
    }

    /// Sends heartbeats until the process ends; joins again if the head
    /// declared it lost. Jobs are stopped when the head is unreachable for
    /// longer than [`LOST_AFTER`] or lost this worker: their drivers have
    /// given them up.
    pub async fn run(mut self) -> Result<()> {
        let mut last_heard = Instant::now();
        loop {
            tokio::time::sleep(HEARTBEAT_EVERY).await;
            let beat = HeadRequest::Heartbeat(Heartbeat { node: self.id });
            match self.node.request_within::<_, HeadResponse>(self.head, &beat, HEAD_TIMEOUT).await {
                Ok(HeadResponse::Alive { known: true }) => last_heard = Instant::now(),
                Ok(HeadResponse::Alive { known: false }) => {
                    last_heard = Instant::now();
                    tracing::warn!(id = %self.id, "the head lost this worker; joining again");
                    self.stop_orphans("the head lost this worker").await;
                    let join = HeadRequest::Join(self.join.clone());
                    match self.node.request_within::<_, HeadResponse>(self.head, &join, HEAD_TIMEOUT).await {
                        Ok(HeadResponse::Joined { node }) => self.id = node,
                        Ok(other) => return Err(unexpected(self.head, other)),
                        Err(error) => tracing::warn!(%error, "joining again failed; will retry"),
                    }
                }
                Ok(other) => return Err(unexpected(self.head, other)),
                Err(error) => {
                    tracing::warn!(%error, "heartbeat failed; the head may be down");
                    if last_heard.elapsed() > LOST_AFTER {
                        self.stop_orphans("the head is unreachable").await;
                    }
                }
            }
        }
    }

    async fn stop_orphans(&self, why: &str) {
        let stopped = self.service.stop_jobs(|_| true).await;
        if stopped > 0 {
            tracing::warn!(jobs = stopped, "{why}: stopped the jobs it ran here");
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.forwarder.abort();
        self.supervisor.stop(None);
        self.node.close();
    }
}

fn unexpected(head: SocketAddr, answer: HeadResponse) -> NodeError {
    NodeError::Unexpected { peer: head, answer: format!("{answer:?}") }
}
