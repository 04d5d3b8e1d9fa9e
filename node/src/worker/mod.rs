//! A worker: finds its head, joins it, keeps saying it is alive, and hosts
//! the appliers and writers that jobs' drivers ask it for.
//!
//! The head is found through [`Discovery`] on every attempt, with jittered
//! exponential backoff between attempts, so a worker started before its
//! head, or whose head came back at a new address behind the same name,
//! joins by itself. A job's context (dataset at the job's version, UDF,
//! filter, checkpoint store) is built once per job from its [`JobSpec`], on
//! the first request that needs it; the UDF comes from the worker's own
//! registry and must have the job's version, so every node runs the same
//! code. Appliers are local `ractor` actors, exactly as in an embedded job,
//! linked to one supervisor actor: an applier that stops without being
//! asked to (it failed, or was killed) is forgotten and the head that
//! spawned it is told, by a cast, so its driver places it again. A worker
//! that loses its head (silent past [`LOST_AFTER`](crate::LOST_AFTER), or
//! told it was lost) stops every job it hosts, since their drivers have
//! given them up, and joins again through discovery.

mod service;
mod supervisor;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leman_cluster::{Backoff, Heartbeat, Join, JoinTarget, NodeId, Resources};
use leman_engine::UdfRegistry;
use leman_runtime::tls::Role;
use leman_runtime::{ClusterCerts, Node, NodeConfig};
use ractor::{Actor, ActorRef};
use tokio::sync::{mpsc, watch};

use crate::discovery::Discovery;
use crate::error::{NodeError, Result};
use crate::heartbeat::{HEARTBEAT_EVERY, LOST_AFTER};
use crate::http::{HttpServer, Readiness};
use crate::metrics::{Metrics, WorkerMetrics};
use crate::protocol::{HeadRequest, HeadResponse};
use service::WorkerService;
use supervisor::{ApplierSupervisor, report_exits};

/// How long a join or heartbeat waits for the head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// How a worker is started.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Where the head is: an address, or a name resolved on every attempt.
    pub head: JoinTarget,
    /// A DNS server to ask instead of the system's (`IP:PORT`).
    pub dns_server: Option<SocketAddr>,
    /// Address to listen on for the head and drivers.
    pub listen: SocketAddr,
    /// Address to give the head; without it the head records the address
    /// the join came from.
    pub advertise: Option<SocketAddr>,
    /// The cluster it joins; a head of another name refuses it.
    pub cluster_name: String,
    /// Directory of the cluster's certificates (the worker's: `worker.pem`).
    pub certs: PathBuf,
    /// Certificate fingerprints to refuse, one per line, read again when
    /// the file changes.
    pub revoked: Option<PathBuf>,
    /// What it offers.
    pub resources: Resources,
    /// How long to keep trying to join at start; `None` keeps trying.
    pub join_timeout: Option<Duration>,
    /// Address for `/livez`, `/readyz` and `/metrics`, if any.
    pub http: Option<SocketAddr>,
    /// UDFs this worker can run (the same as the driver's).
    pub registry: UdfRegistry,
}

impl WorkerConfig {
    /// A worker of cluster `leman` joining `head`, listening on an
    /// ephemeral port of 127.0.0.1, trying to join for 30 seconds.
    pub fn new(head: impl Into<JoinTarget>, certs: PathBuf, resources: Resources, registry: UdfRegistry) -> Self {
        Self {
            head: head.into(),
            dns_server: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            cluster_name: leman_cluster::DEFAULT_CLUSTER_NAME.to_string(),
            certs,
            revoked: None,
            resources,
            join_timeout: Some(Duration::from_secs(30)),
            http: None,
            registry,
        }
    }
}

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    node: Arc<Node>,
    service: Arc<WorkerService>,
    discovery: Discovery,
    head: watch::Sender<SocketAddr>,
    id: NodeId,
    join: Join,
    readiness: Arc<Readiness>,
    http: Option<HttpServer>,
    supervisor: ActorRef<()>,
    forwarder: tokio::task::JoinHandle<()>,
}

impl Worker {
    /// Starts a worker and joins the head, retrying until `join_timeout`.
    pub async fn start(config: &WorkerConfig) -> Result<Self> {
        let certs = ClusterCerts::load_revoking(&config.certs, Role::Worker, config.revoked.as_deref())?;
        tokio::task::spawn_blocking(leman_engine::warm_up);
        let discovery = Discovery::new(config.head.clone(), config.dns_server)?;
        let figures = Arc::new(WorkerMetrics::default());
        let service = Arc::new(WorkerService::new(config.registry.clone(), figures.clone()));
        let node = Arc::new(Node::serve(config.listen, &certs, NodeConfig::default(), service.clone())?);
        let advertise = advertised(config.advertise, node.local_addr()?)?;
        let readiness = Arc::new(Readiness::default());
        let http = config.http.map(|addr| HttpServer::start(addr, readiness.clone(), Metrics::worker(&figures))).transpose()?;
        // Ready to host appliers before joining: the head may place one
        // the moment it counts this worker in.
        let (exits, exits_in) = mpsc::unbounded_channel();
        let (supervisor, _) = Actor::spawn(None, ApplierSupervisor, exits)
            .await
            .map_err(|e| NodeError::Actor { actor: "applier supervisor".into(), reason: e.to_string() })?;
        service.supervise_with(supervisor.clone());
        let join = Join { cluster: config.cluster_name.clone(), advertise: advertise.map(|a| a.to_string()), resources: config.resources };
        let (head, id) = match find_and_join(&node, &discovery, &join, config.join_timeout).await {
            Ok(joined) => joined,
            Err(error) => {
                supervisor.stop(None);
                return Err(error);
            }
        };
        readiness.set(true);
        let (head, current_head) = watch::channel(head);
        let name = advertise.unwrap_or(node.local_addr()?).to_string();
        let forwarder = tokio::spawn(report_exits(service.clone(), node.clone(), current_head, name, exits_in));
        Ok(Self { node, service, discovery, head, id, join, readiness, http, supervisor, forwarder })
    }

    /// Its id in the cluster (a new one after each join).
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The head it last joined.
    pub fn head(&self) -> SocketAddr {
        *self.head.borrow()
    }

    /// The address it serves on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.node.local_addr()?)
    }

    /// The address of its HTTP endpoints, if it serves them.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(HttpServer::local_addr)
    }

    /// Sends heartbeats until the process ends, each on its own task (one
    /// waiting on a lost packet does not hold back the next). When the head
    /// is silent for longer than [`LOST_AFTER`], or says it lost this
    /// worker, the jobs it ran here are stopped (their drivers have given
    /// them up) and the worker joins again through discovery, for as long as
    /// it takes. Returns only if a head refuses it.
    pub async fn run(mut self) -> Result<()> {
        let mut last_heard = Instant::now();
        let (answered, mut answers) = mpsc::unbounded_channel();
        let mut beats = tokio::time::interval(HEARTBEAT_EVERY);
        beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = beats.tick() => {
                    if last_heard.elapsed() > LOST_AFTER {
                        self.join_again("the head is unreachable").await?;
                        last_heard = Instant::now();
                    }
                    let (node, head, id, answered) = (self.node.clone(), self.head(), self.id, answered.clone());
                    tokio::spawn(async move {
                        let beat = HeadRequest::Heartbeat(Heartbeat { node: id });
                        let answer = node.request_within::<_, HeadResponse>(head, &beat, HEAD_TIMEOUT).await;
                        let _ = answered.send((id, head, answer));
                    });
                }
                Some((id, head, answer)) = answers.recv() => {
                    if id != self.id {
                        continue; // a beat of an earlier membership
                    }
                    match answer {
                        Ok(HeadResponse::Alive { known: true }) => last_heard = Instant::now(),
                        Ok(HeadResponse::Alive { known: false }) => {
                            self.join_again("the head lost this worker").await?;
                            last_heard = Instant::now();
                        }
                        Ok(other) => return Err(unexpected(head, other)),
                        Err(error) => tracing::warn!(%error, %head, "heartbeat failed; the head may be down"),
                    }
                }
            }
        }
    }

    /// Stops the jobs it ran for its old head and joins through discovery.
    async fn join_again(&mut self, why: &str) -> Result<()> {
        self.readiness.set(false);
        let stopped = self.service.stop_jobs(|_| true).await;
        tracing::warn!(id = %self.id, jobs_stopped = stopped, "{why}: finding the head again through {}", self.discovery.target());
        let (head, id) = find_and_join(&self.node, &self.discovery, &self.join, None).await?;
        self.id = id;
        self.head.send_replace(head);
        self.readiness.set(true);
        Ok(())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.forwarder.abort();
        self.supervisor.stop(None);
        self.node.close();
    }
}

/// The address to advertise: `advertise` as given (port 0 meaning the
/// bound port), never an unspecified one.
fn advertised(advertise: Option<SocketAddr>, bound: SocketAddr) -> Result<Option<SocketAddr>> {
    let Some(mut addr) = advertise else { return Ok(None) };
    if addr.ip().is_unspecified() {
        return Err(NodeError::BadAdvertise {
            addr,
            reason: "no peer can reach an unspecified address; give this node's own IP (in Kubernetes, $(POD_IP))".into(),
        });
    }
    if addr.port() == 0 {
        addr.set_port(bound.port());
    }
    Ok(Some(addr))
}

/// Finds the head and joins it, with backoff between attempts, until
/// `timeout` (`None`: until it works). A refusal ends the search: asking
/// again would be refused again.
async fn find_and_join(node: &Node, discovery: &Discovery, join: &Join, timeout: Option<Duration>) -> Result<(SocketAddr, NodeId)> {
    let started = Instant::now();
    let mut backoff = Backoff::joining();
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let error = match try_join(node, discovery, join).await {
            Ok((head, id)) => {
                tracing::info!(%id, %head, target = %discovery.target(), "joined the cluster");
                return Ok((head, id));
            }
            Err(fatal @ (NodeError::Refused { .. } | NodeError::Unexpected { .. })) => return Err(fatal),
            Err(error) => error,
        };
        let mut delay = backoff.next_delay();
        if let Some(timeout) = timeout {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(NodeError::JoinTimeout { target: discovery.target().to_string(), after: timeout, last: error.to_string() });
            }
            delay = delay.min(left);
        }
        tracing::warn!(attempt, %error, retry_in = ?delay, "cannot join the head yet");
        tokio::time::sleep(delay).await;
    }
}

/// One attempt: every address discovery gives now, in order.
async fn try_join(node: &Node, discovery: &Discovery, join: &Join) -> Result<(SocketAddr, NodeId)> {
    let mut last = None;
    for head in discovery.addresses().await? {
        match node.request_within::<_, HeadResponse>(head, &HeadRequest::Join(join.clone()), HEAD_TIMEOUT).await {
            Ok(HeadResponse::Joined { node: id }) => return Ok((head, id)),
            Ok(HeadResponse::Refused { reason }) => return Err(NodeError::Refused { peer: head, reason }),
            Ok(other) => return Err(unexpected(head, other)),
            Err(error) => last = Some(NodeError::Unreachable { peer: head, source: error }),
        }
    }
    Err(last.unwrap_or_else(|| NodeError::Discovery { target: discovery.target().to_string(), reason: "no address".into() }))
}

fn unexpected(head: SocketAddr, answer: HeadResponse) -> NodeError {
    NodeError::Unexpected { peer: head, answer: format!("{answer:?}") }
}
