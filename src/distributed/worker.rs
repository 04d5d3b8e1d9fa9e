//! A worker: joins the head, keeps saying it is alive, and hosts the
//! appliers and writers that jobs' drivers ask it for.
//!
//! A job's context (dataset at the job's version, UDF, filter, checkpoint
//! store) is built once per job from its [`JobSpec`], on the first request
//! that needs it; the UDF comes from the worker's own registry and must have
//! the job's version, so every node runs the same code. Appliers are local
//! `ractor` actors, exactly as in an embedded job.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_schema::Schema as ArrowSchema;
use lance::Dataset;
use leman_applier::{Applier, ApplierArgs, ApplierMsg, BackfillContext, RowFilter};
use leman_cluster::{Heartbeat, Join, NodeId, Resources};
use leman_runtime::{ClusterCerts, Node, NodeConfig, Service};
use leman_writer::WriterContext;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use tokio::sync::Mutex;

use super::HEARTBEAT_EVERY;

/// How long a join or heartbeat waits for the head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
use super::protocol::{HeadRequest, HeadResponse, JobSpec, ShippedDataFile, WorkerRequest, WorkerResponse};
use crate::engine::{TableStores, write_locally};
use crate::{Error, Result, UdfRegistry};

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
    node: Node,
    head: SocketAddr,
    id: NodeId,
    join: Join,
}

/// One job's work on this worker.
struct HostedJob {
    spec: JobSpec,
    context: Arc<BackfillContext>,
    writer: WriterContext,
    appliers: HashMap<usize, ActorRef<ApplierMsg>>,
}

/// What a worker serves: the jobs' appliers and writers.
struct WorkerService {
    registry: UdfRegistry,
    jobs: Mutex<HashMap<String, HostedJob>>,
}

impl Service for WorkerService {
    type Request = WorkerRequest;
    type Response = WorkerResponse;

    async fn call(&self, _peer: SocketAddr, request: WorkerRequest) -> WorkerResponse {
        match request {
            WorkerRequest::SpawnApplier { job, index } => match self.spawn_applier(job, index).await {
                Ok(()) => WorkerResponse::Spawned,
                Err(reason) => WorkerResponse::Refused { reason },
            },
            WorkerRequest::RunTask { job_id, index, task } => {
                let applier = self.jobs.lock().await.get(&job_id).and_then(|job| job.appliers.get(&index).cloned());
                let Some(applier) = applier else {
                    return WorkerResponse::Refused { reason: format!("no applier {index} of job {job_id} here") };
                };
                match applier.call(|reply| ApplierMsg::Run { spec: task, reply }, None).await {
                    Ok(CallResult::Success(outcome)) => WorkerResponse::Task(outcome),
                    other => WorkerResponse::Refused { reason: format!("applier stopped answering: {other:?}") },
                }
            }
            WorkerRequest::WriteFragment { job, write } => {
                let writer = match self.hosted(&job).await {
                    Ok(writer) => writer,
                    Err(reason) => return WorkerResponse::Written(Err(reason)),
                };
                WorkerResponse::Written(write_locally(writer, write).await.map(ShippedDataFile).map_err(|f| f.message))
            }
            WorkerRequest::StopJob { job_id } => {
                if let Some(job) = self.jobs.lock().await.remove(&job_id) {
                    for applier in job.appliers.values() {
                        applier.stop(None);
                    }
                }
                WorkerResponse::Stopped
            }
        }
    }
}

impl WorkerService {
    /// The writer context of `spec`'s job, building the job's context first
    /// if this worker has not seen the job yet.
    async fn hosted(&self, spec: &JobSpec) -> std::result::Result<WriterContext, String> {
        let mut jobs = self.jobs.lock().await;
        if let Some(job) = jobs.get(&spec.job_id) {
            return Ok(job.writer.clone());
        }
        let (context, writer) = build(&self.registry, spec).await?;
        jobs.insert(
            spec.job_id.clone(),
            HostedJob { spec: spec.clone(), context, writer: writer.clone(), appliers: HashMap::new() },
        );
        Ok(writer)
    }

    async fn spawn_applier(&self, spec: JobSpec, index: usize) -> std::result::Result<(), String> {
        self.hosted(&spec).await?;
        let mut jobs = self.jobs.lock().await;
        let job = jobs.get_mut(&spec.job_id).ok_or("the job was stopped")?;
        if job.appliers.contains_key(&index) {
            return Ok(());
        }
        let name = format!("applier-{}-{index}", spec.job_id);
        let args = ApplierArgs { context: job.context.clone(), threads: job.spec.threads };
        let (actor, _) = Actor::spawn(Some(name), Applier, args).await.map_err(|e| e.to_string())?;
        job.appliers.insert(index, actor);
        tracing::info!(job = %spec.job_id, index, "applier started");
        Ok(())
    }
}

/// Builds a job's applier and writer contexts from its spec.
async fn build(registry: &UdfRegistry, spec: &JobSpec) -> std::result::Result<(Arc<BackfillContext>, WriterContext), String> {
    let dataset = Dataset::open(&spec.table_uri)
        .await
        .map_err(|e| format!("cannot open {} from this worker: {e}", spec.table_uri))?
        .checkout_version(spec.read_version)
        .await
        .map_err(|e| format!("cannot read version {} of {}: {e}", spec.read_version, spec.table_uri))?;
    let record = &spec.udf;
    let udf = registry
        .build(&record.name, &record.params)
        .ok_or_else(|| format!("UDF {} is not registered on this worker; run the same binary everywhere", record.name))?
        .map_err(|e| format!("UDF {} cannot be built here: {e}", record.name))?;
    let udf = if udf.takes_record_batch() { udf } else { udf.with_inputs(&record.inputs) };
    if udf.version() != record.version {
        return Err(format!(
            "UDF {} is version {} on this worker but {} in the job; run the same binary everywhere",
            record.name,
            udf.version(),
            record.version
        ));
    }
    let filter = RowFilter::compile(&spec.filter, &ArrowSchema::from(dataset.schema())).map_err(|e| e.to_string())?;
    let checkpoints = TableStores::open(&spec.table_uri).await.map_err(|e| e.to_string())?.checkpoints;
    let dataset = Arc::new(dataset);
    let writer = WriterContext::new(dataset.clone(), &spec.column, checkpoints.clone()).map_err(|e| e.to_string())?;
    let context = BackfillContext::new(dataset, udf, &spec.column, filter, checkpoints).map_err(|e| e.to_string())?;
    Ok((Arc::new(context), writer))
}

impl Worker {
    /// Starts a worker and joins the head, retrying until `join_timeout`.
    pub async fn start(config: &WorkerConfig) -> Result<Self> {
        let certs = ClusterCerts::load(&config.certs)?;
        let service = Arc::new(WorkerService { registry: config.registry.clone(), jobs: Mutex::new(HashMap::new()) });
        let node = Node::serve(config.listen, &certs, NodeConfig::default(), service)?;
        let join = Join { addr: node.local_addr()?.to_string(), resources: config.resources };
        let deadline = Instant::now() + config.join_timeout;
        loop {
            match node.request_within::<_, HeadResponse>(config.head, &HeadRequest::Join(join.clone()), HEAD_TIMEOUT).await {
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
            let beat = HeadRequest::Heartbeat(Heartbeat { node: self.id });
            match self.node.request_within::<_, HeadResponse>(self.head, &beat, HEAD_TIMEOUT).await {
                Ok(HeadResponse::Alive { known: true }) => {}
                Ok(HeadResponse::Alive { known: false }) => {
                    tracing::warn!(id = %self.id, "the head lost this worker; joining again");
                    let join = HeadRequest::Join(self.join.clone());
                    match self.node.request_within::<_, HeadResponse>(self.head, &join, HEAD_TIMEOUT).await {
                        Ok(HeadResponse::Joined { node }) => self.id = node,
                        Ok(other) => return Err(unexpected(other)),
                        Err(error) => tracing::warn!(%error, "joining again failed; will retry"),
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
