//! The head: accepts workers, watches their heartbeats, and runs the jobs
//! submitted to it. A job's driver runs here, its appliers and writers on
//! the workers; it keeps running when the client that submitted it goes
//! away, and any client can ask how it stands. Workers cast the exits of
//! appliers that stopped on their own here; they reach the job's driver
//! with the joins and losses of workers.
//!
//! A worker of another cluster name is refused. A worker is recorded at
//! the address it advertises, or else at the address its join came from,
//! never at an unspecified one. The head is ready (`/readyz`) as soon as
//! its endpoint is bound and its certificates loaded: it never waits for
//! workers, so the pods of a cluster can start in any order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leman_cluster::{Membership, MembershipEvent};
use leman_engine::{Canceller, Error as EngineError, JobEvent, JobStatus, TableLocation, UdfRegistry};
use leman_runtime::tls::Role;
use leman_runtime::{ClusterCerts, Node, NodeConfig, Service};
use tokio::sync::broadcast;

use crate::error::Result;
use crate::executor::ClusterExecutor;
use crate::heartbeat::LOST_AFTER;
use crate::http::{HttpServer, Readiness};
use crate::metrics::{HeadMetrics, Metrics};
use crate::protocol::{HeadRequest, HeadResponse, JobView, MemberInfo, Submission};
use crate::view::{ClusterEvent, ClusterView};

/// How a head is started.
#[derive(Debug, Clone)]
pub struct HeadConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The cluster's name; workers of another name are refused.
    pub cluster_name: String,
    /// Directory of the cluster's certificates (the head's: `head.pem`).
    pub certs: PathBuf,
    /// Certificate fingerprints to refuse, one per line, read again when
    /// the file changes.
    pub revoked: Option<PathBuf>,
    /// Address for `/livez`, `/readyz` and `/metrics`, if any.
    pub http: Option<SocketAddr>,
    /// UDFs that submitted jobs may use (the workers' too).
    pub registry: UdfRegistry,
}

impl HeadConfig {
    /// A head of cluster `leman` on `listen`, without HTTP endpoints.
    pub fn new(listen: SocketAddr, certs: PathBuf, registry: UdfRegistry) -> Self {
        Self { listen, cluster_name: leman_cluster::DEFAULT_CLUSTER_NAME.to_string(), certs, revoked: None, http: None, registry }
    }
}

/// A running head; stops when dropped.
#[derive(Debug)]
pub struct Head {
    node: Node,
    http: Option<HttpServer>,
    watcher: tokio::task::JoinHandle<()>,
}

struct HeadService {
    cluster_name: String,
    membership: Arc<Mutex<Membership>>,
    cluster: Arc<ClusterView>,
    registry: UdfRegistry,
    jobs: Arc<Mutex<HashMap<String, JobView>>>,
    /// The running jobs' cancellers.
    cancellers: Arc<Mutex<HashMap<String, Canceller>>>,
    figures: Arc<HeadMetrics>,
}

impl Service for HeadService {
    type Request = HeadRequest;
    type Response = HeadResponse;

    /// Workers join and report; clients (and heads) run jobs.
    fn roles_for(&self, request: &HeadRequest) -> &'static [Role] {
        match request {
            HeadRequest::Join(_) | HeadRequest::Heartbeat(_) | HeadRequest::ApplierExited(_) => &[Role::Worker],
            HeadRequest::Members | HeadRequest::Submit(_) | HeadRequest::JobStatus { .. } | HeadRequest::CancelJob { .. } => {
                &[Role::Client, Role::Head]
            }
        }
    }

    async fn call(&self, peer: SocketAddr, request: HeadRequest) -> HeadResponse {
        match request {
            HeadRequest::Join(join) if join.cluster != self.cluster_name => {
                tracing::warn!(%peer, theirs = %join.cluster, ours = %self.cluster_name, "refused a worker of another cluster");
                HeadResponse::Refused {
                    reason: format!(
                        "this head runs cluster {:?}, the worker belongs to cluster {:?}; give both the same --cluster-name",
                        self.cluster_name, join.cluster
                    ),
                }
            }
            HeadRequest::Join(join) => {
                let addr = match advertised_or_seen(join.advertise.as_deref(), peer) {
                    Ok(addr) => addr,
                    Err(reason) => return HeadResponse::Refused { reason },
                };
                let mut members = self.members();
                let node = members.join(Instant::now(), addr, join.resources);
                self.figures.workers_live.set(members.members().count() as i64);
                drop(members);
                tracing::debug!(%peer, %node, "join");
                HeadResponse::Joined { node }
            }
            HeadRequest::Heartbeat(beat) => HeadResponse::Alive { known: self.members().heartbeat(Instant::now(), beat.node) },
            HeadRequest::Members => {
                let reserved = self.cluster.reservations.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).used();
                HeadResponse::Members(
                    self.members()
                        .members()
                        .map(|m| MemberInfo {
                            node: m.id,
                            addr: m.addr.clone(),
                            resources: m.resources,
                            reserved: reserved.get(&m.id).copied().unwrap_or_default(),
                        })
                        .collect(),
                )
            }
            HeadRequest::Submit(submission) => match self.submit(*submission).await {
                Ok(job_id) => HeadResponse::Submitted { job_id },
                Err(error) => HeadResponse::Refused { reason: error.to_string() },
            },
            HeadRequest::ApplierExited(exit) => {
                tracing::warn!(job = %exit.applier.job_id, index = exit.applier.index, worker = %exit.worker, reason = %exit.reason, "an applier stopped on its own");
                self.figures.applier_restarts.inc();
                // No driver listening means its job has ended.
                let _ = self.cluster.events.send(ClusterEvent::ApplierExited(exit));
                HeadResponse::Noted
            }
            HeadRequest::JobStatus { job_id } => {
                let jobs = self.jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                match jobs.get(&job_id) {
                    Some(view) => HeadResponse::Job(Box::new(view.clone())),
                    None => HeadResponse::Refused { reason: format!("this head runs no job {job_id}") },
                }
            }
            HeadRequest::CancelJob { job_id } => {
                let cancellers = self.cancellers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                match cancellers.get(&job_id) {
                    Some(canceller) => {
                        tracing::info!(job = %job_id, "cancelling on a client's request");
                        canceller.cancel();
                        HeadResponse::Noted
                    }
                    None => HeadResponse::Refused { reason: format!("this head runs no job {job_id} (it may have ended)") },
                }
            }
        }
    }
}

/// Where a joining worker is reached: the address it advertises, which
/// must be one a peer can reach, or else the one its join came from.
fn advertised_or_seen(advertise: Option<&str>, peer: SocketAddr) -> std::result::Result<String, String> {
    let Some(advertise) = advertise else { return Ok(peer.to_string()) };
    match advertise.parse::<SocketAddr>() {
        Ok(addr) if !addr.ip().is_unspecified() && addr.port() != 0 => Ok(addr.to_string()),
        _ => Err(format!("the worker advertises {advertise:?}, which no peer can reach; give --advertise IP:PORT of this worker")),
    }
}

impl HeadService {
    fn members(&self) -> std::sync::MutexGuard<'_, Membership> {
        self.membership.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a submitted job on the cluster and follows it.
    async fn submit(&self, submission: Submission) -> leman_engine::Result<String> {
        let table = TableLocation::new(&submission.table.uri, submission.table.storage_options)?;
        let executor = Arc::new(ClusterExecutor { view: self.cluster.clone() });
        let job = leman_engine::start_many(&table, &submission.columns, submission.options, &self.registry, executor).await?;
        let job_id = job.id().to_string();
        let view = JobView {
            job_id: job_id.clone(),
            column: submission.columns.join(","),
            status: JobStatus::Running,
            progress: Default::default(),
            summary: None,
            error: None,
            cancelled: None,
        };
        self.jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(job_id.clone(), view);
        self.cancellers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(job_id.clone(), job.canceller());
        let cancellers = self.cancellers.clone();
        let jobs = self.jobs.clone();
        let id = job_id.clone();
        let figures = self.figures.clone();
        figures.jobs_running.inc();
        tokio::spawn(async move {
            let mut commits = 0;
            let update = |f: &dyn Fn(&mut JobView)| {
                if let Some(view) = jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get_mut(&id) {
                    f(view);
                }
            };
            while let Some(event) = job.next_event().await {
                if let JobEvent::Progress(progress) = event {
                    figures.commits.inc_by(progress.commits.saturating_sub(commits));
                    commits = commits.max(progress.commits);
                    update(&|view| view.progress = progress.clone());
                }
            }
            let outcome = job.wait().await;
            cancellers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&id);
            if let Ok(summary) = &outcome {
                figures.commits.inc_by(summary.commits.saturating_sub(commits));
            }
            figures.jobs_running.dec();
            update(&|view| match &outcome {
                Ok(summary) => {
                    view.status = if summary.fragments_staged > 0 { JobStatus::Staged } else { JobStatus::Succeeded };
                    view.summary = Some(summary.clone());
                }
                Err(EngineError::Cancelled { reason, .. }) => {
                    view.status = JobStatus::Cancelled;
                    view.cancelled = Some(reason.clone());
                }
                Err(error) => {
                    view.status = JobStatus::Failed;
                    view.error = Some(error.to_string());
                }
            });
        });
        Ok(job_id)
    }
}

impl Head {
    /// Starts a head (within a tokio runtime).
    pub fn start(config: &HeadConfig) -> Result<Self> {
        let certs = ClusterCerts::load_revoking(&config.certs, Role::Head, config.revoked.as_deref())?;
        tokio::task::spawn_blocking(leman_engine::warm_up);
        let membership = Arc::new(Mutex::new(Membership::with_first_id(LOST_AFTER, first_node_id())));
        let (events, _) = broadcast::channel(1024);
        // Requests to workers leave from the listening address's IP, so
        // they take the same route as the workers' own traffic.
        let outgoing = Node::client(SocketAddr::new(config.listen.ip(), 0), &certs, NodeConfig::default())?;
        let cluster = Arc::new(ClusterView {
            node: Arc::new(outgoing),
            membership: membership.clone(),
            reservations: Default::default(),
            events: events.clone(),
        });
        let service_cluster = cluster.clone();
        let figures = Arc::new(HeadMetrics::default());
        let service = Arc::new(HeadService {
            cluster_name: config.cluster_name.clone(),
            membership: membership.clone(),
            cluster,
            registry: config.registry.clone(),
            jobs: Arc::default(),
            cancellers: Arc::default(),
            figures: figures.clone(),
        });
        let node = Node::serve(config.listen, &certs, NodeConfig::default(), service)?;
        let readiness = Arc::new(Readiness::default());
        readiness.set(true);
        let http = config.http.map(|addr| HttpServer::start(addr, readiness, Metrics::head(&figures))).transpose()?;
        let watcher = tokio::spawn(watch(membership, service_cluster, figures));
        Ok(Self { node, http, watcher })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.node.local_addr()?)
    }

    /// The address of its HTTP endpoints, if it serves them.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(HttpServer::local_addr)
    }
}

impl Drop for Head {
    fn drop(&mut self) {
        self.watcher.abort();
        self.node.close();
    }
}

/// Where this head's node ids start: 2^32 ids from a random multiple of
/// 2^32, so that no two incarnations of a head (restarted at the same
/// address) hand out the same id.
fn first_node_id() -> u64 {
    use std::hash::BuildHasher;
    let random = std::hash::RandomState::new().hash_one(std::time::SystemTime::now());
    (random & !0xffff_ffff) | 1
}

/// Connects to a worker that joined, so that the first job placed there
/// does not wait for a handshake (the connection's keep-alive holds it).
fn connect_ahead(cluster: &ClusterView, addr: &str) {
    let Ok(addr) = addr.parse::<std::net::SocketAddr>() else { return };
    let node = cluster.node.clone();
    tokio::spawn(async move {
        if let Err(error) = node.connection(addr).await {
            tracing::debug!(%addr, %error, "could not connect ahead to a worker that joined; its first request connects");
        }
    });
}

/// Declares silent workers lost, logs joins and losses, frees what lost
/// workers held, and tells running jobs.
async fn watch(membership: Arc<Mutex<Membership>>, cluster: Arc<ClusterView>, figures: Arc<HeadMetrics>) {
    let tick = Duration::from_millis(100);
    loop {
        tokio::time::sleep(tick).await;
        let events: Vec<MembershipEvent> = {
            let mut membership = membership.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            membership.handle_timeout(Instant::now());
            figures.workers_live.set(membership.members().count() as i64);
            std::iter::from_fn(|| membership.poll_event()).collect()
        };
        for event in events {
            if let MembershipEvent::Lost { node } = &event {
                cluster.reservations.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).release_node(*node);
            }
            // No job listening is fine.
            let _ = cluster.events.send(ClusterEvent::Member(event.clone()));
            match event {
                MembershipEvent::Joined { node, addr, resources } => {
                    tracing::info!(%node, %addr, cpus = resources.cpus, gpus = resources.gpus, memory = resources.memory, "worker joined");
                    connect_ahead(&cluster, &addr);
                }
                MembershipEvent::Lost { node } => tracing::warn!(%node, "worker lost: no heartbeat within {LOST_AFTER:?}"),
            }
        }
    }
}
