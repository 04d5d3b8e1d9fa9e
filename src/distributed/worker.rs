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
//! [`LOST_AFTER`](super::LOST_AFTER), or told it was lost) stops every job it
//! hosts: their drivers have given them up.

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
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::{Mutex, mpsc};

use super::protocol::{
    ApplierExit, HeadRequest, HeadResponse, HostedApplier, JobSpec, ShippedDataFile, WorkerRequest, WorkerResponse,
};
use super::{HEARTBEAT_EVERY, LOST_AFTER};
use crate::engine::{TableStores, write_locally};
use crate::{Error, Result, UdfRegistry};

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

/// One job's work on this worker.
struct HostedJob {
    spec: JobSpec,
    context: Arc<BackfillContext>,
    writer: WriterContext,
    appliers: HashMap<usize, RunningApplier>,
}

struct RunningApplier {
    incarnation: u64,
    actor: ActorRef<ApplierMsg>,
}

/// What a worker serves: the jobs' appliers and writers.
struct WorkerService {
    registry: UdfRegistry,
    jobs: Mutex<HashMap<String, HostedJob>>,
    /// Parent of every applier, set once the supervisor runs.
    supervisor: std::sync::OnceLock<ActorRef<()>>,
}

impl std::fmt::Debug for WorkerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerService").finish_non_exhaustive()
    }
}

impl Service for WorkerService {
    type Request = WorkerRequest;
    type Response = WorkerResponse;

    async fn call(&self, _peer: SocketAddr, request: WorkerRequest) -> WorkerResponse {
        match request {
            WorkerRequest::SpawnApplier { job, index, incarnation } => match self.spawn_applier(job, index, incarnation).await {
                Ok(()) => WorkerResponse::Spawned,
                Err(reason) => WorkerResponse::Refused { reason },
            },
            WorkerRequest::RunTask { job_id, index, task } => {
                let applier = self.jobs.lock().await.get(&job_id).and_then(|job| job.appliers.get(&index)).map(|a| a.actor.clone());
                let Some(applier) = applier else {
                    return WorkerResponse::ApplierGone { reason: format!("no applier {index} of job {job_id} runs here") };
                };
                match applier.call(|reply| ApplierMsg::Run { spec: task, reply }, None).await {
                    Ok(CallResult::Success(outcome)) => WorkerResponse::Task(outcome),
                    other => WorkerResponse::ApplierGone { reason: format!("applier {index} stopped answering: {other:?}") },
                }
            }
            WorkerRequest::WriteFragment { job, write } => {
                let writer = match self.job_writer(&job).await {
                    Ok(writer) => writer,
                    Err(reason) => return WorkerResponse::Written(Err(reason)),
                };
                WorkerResponse::Written(write_locally(writer, write).await.map(ShippedDataFile).map_err(|f| f.message))
            }
            WorkerRequest::StopApplier { job_id, index, incarnation } => {
                let mut jobs = self.jobs.lock().await;
                if let Some(job) = jobs.get_mut(&job_id)
                    && job.appliers.get(&index).is_some_and(|a| a.incarnation == incarnation)
                    && let Some(applier) = job.appliers.remove(&index)
                {
                    applier.actor.stop(None);
                }
                WorkerResponse::Stopped
            }
            WorkerRequest::StopJob { job_id } => {
                self.stop_jobs(|id| id == job_id).await;
                WorkerResponse::Stopped
            }
            WorkerRequest::Hosted => {
                let jobs = self.jobs.lock().await;
                let mut hosted: Vec<HostedApplier> = jobs
                    .iter()
                    .flat_map(|(job_id, job)| {
                        job.appliers.iter().map(|(index, applier)| HostedApplier {
                            job_id: job_id.clone(),
                            index: *index,
                            incarnation: applier.incarnation,
                        })
                    })
                    .collect();
                hosted.sort_by(|a, b| (&a.job_id, a.index).cmp(&(&b.job_id, b.index)));
                WorkerResponse::Hosted(hosted)
            }
        }
    }
}

impl WorkerService {
    /// The writer context of `spec`'s job, building the job's context first
    /// if this worker has not seen the job yet.
    async fn job_writer(&self, spec: &JobSpec) -> std::result::Result<WriterContext, String> {
        if let Some(job) = self.jobs.lock().await.get(&spec.job_id) {
            return Ok(job.writer.clone());
        }
        // Built without the lock: opening a table can take a while, and the
        // tasks of jobs already here must not wait for it. Of two requests
        // that race here, the first to finish is kept.
        let (context, writer) = build(&self.registry, spec).await?;
        let mut jobs = self.jobs.lock().await;
        let job = jobs
            .entry(spec.job_id.clone())
            .or_insert_with(|| HostedJob { spec: spec.clone(), context, writer, appliers: HashMap::new() });
        Ok(job.writer.clone())
    }

    async fn spawn_applier(&self, spec: JobSpec, index: usize, incarnation: u64) -> std::result::Result<(), String> {
        self.job_writer(&spec).await?;
        let supervisor = self.supervisor.get().ok_or("the worker is still starting")?.get_cell();
        let mut jobs = self.jobs.lock().await;
        let job = jobs.get_mut(&spec.job_id).ok_or("the job was stopped")?;
        match job.appliers.get(&index) {
            Some(running) if running.incarnation == incarnation => return Ok(()),
            Some(_) => {
                // Forgotten first, so its stop is not reported as an exit.
                if let Some(older) = job.appliers.remove(&index) {
                    older.actor.stop(None);
                }
            }
            None => {}
        }
        let name = format!("applier-{}-{index}.{incarnation}", spec.job_id);
        let args = ApplierArgs { context: job.context.clone(), threads: job.spec.threads };
        let (actor, _) = Actor::spawn_linked(Some(name), Applier, args, supervisor).await.map_err(|e| e.to_string())?;
        job.appliers.insert(index, RunningApplier { incarnation, actor });
        tracing::info!(job = %spec.job_id, index, incarnation, "applier started");
        Ok(())
    }

    /// Stops and forgets every job whose id `which` picks; returns how many.
    async fn stop_jobs(&self, which: impl Fn(&str) -> bool) -> usize {
        let mut jobs = self.jobs.lock().await;
        let ids: Vec<String> = jobs.keys().filter(|id| which(id)).cloned().collect();
        for id in &ids {
            if let Some(job) = jobs.remove(id) {
                for applier in job.appliers.values() {
                    applier.actor.stop(None);
                }
            }
        }
        ids.len()
    }

    /// Forgets the applier that was actor `actor`, if it still counted as
    /// running: it stopped without being asked to.
    async fn forget(&self, actor: ActorId) -> Option<HostedApplier> {
        let mut jobs = self.jobs.lock().await;
        for (job_id, job) in jobs.iter_mut() {
            let found = job.appliers.iter().find(|(_, a)| a.actor.get_id() == actor).map(|(index, a)| (*index, a.incarnation));
            if let Some((index, incarnation)) = found {
                job.appliers.remove(&index);
                return Some(HostedApplier { job_id: job_id.clone(), index, incarnation });
            }
        }
        None
    }
}

/// The parent of a worker's appliers: passes on the exit of each, which
/// the worker reports to the head if it was not asked for.
struct ApplierSupervisor;

impl Actor for ApplierSupervisor {
    type Msg = ();
    type State = mpsc::UnboundedSender<(ActorId, String)>;
    type Arguments = mpsc::UnboundedSender<(ActorId, String)>;

    async fn pre_start(&self, _myself: ActorRef<()>, exits: Self::Arguments) -> std::result::Result<Self::State, ActorProcessingErr> {
        Ok(exits)
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<()>,
        event: SupervisionEvent,
        exits: &mut Self::State,
    ) -> std::result::Result<(), ActorProcessingErr> {
        // Unlike the default, a child's end never stops the supervisor.
        let exit = match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => (cell.get_id(), reason.unwrap_or_else(|| "stopped".to_string())),
            SupervisionEvent::ActorFailed(cell, error) => (cell.get_id(), format!("failed: {error}")),
            _ => return Ok(()),
        };
        let _ = exits.send(exit);
        Ok(())
    }
}

/// Reports appliers that stopped on their own to the head.
async fn report_exits(
    service: Arc<WorkerService>,
    node: Arc<Node>,
    head: SocketAddr,
    worker: String,
    mut exits: mpsc::UnboundedReceiver<(ActorId, String)>,
) {
    while let Some((actor, reason)) = exits.recv().await {
        let Some(applier) = service.forget(actor).await else { continue };
        tracing::warn!(job = %applier.job_id, index = applier.index, %reason, "applier stopped on its own; telling the head");
        let exit = HeadRequest::ApplierExited(ApplierExit { applier, worker: worker.clone(), reason });
        if let Err(error) = node.cast(head, &exit).await {
            tracing::warn!(%error, "could not tell the head; it will find out when the task fails");
        }
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
        let service = Arc::new(WorkerService {
            registry: config.registry.clone(),
            jobs: Mutex::new(HashMap::new()),
            supervisor: std::sync::OnceLock::new(),
        });
        let node = Arc::new(Node::serve(config.listen, &certs, NodeConfig::default(), service.clone())?);
        let addr = node.local_addr()?.to_string();
        let (exits, exits_in) = mpsc::unbounded_channel();
        let (supervisor, _) = Actor::spawn(None, ApplierSupervisor, exits)
            .await
            .map_err(|e| Error::Actor { actor: "applier supervisor".into(), reason: e.to_string() })?;
        let _ = service.supervisor.set(supervisor.clone());
        let forwarder = tokio::spawn(report_exits(service.clone(), node.clone(), config.head, addr.clone(), exits_in));
        let join = Join { addr, resources: config.resources };
        let deadline = Instant::now() + config.join_timeout;
        loop {
            match node.request_within::<_, HeadResponse>(config.head, &HeadRequest::Join(join.clone()), HEAD_TIMEOUT).await {
                Ok(HeadResponse::Joined { node: id }) => {
                    tracing::info!(%id, head = %config.head, "joined the cluster");
                    return Ok(Self { node, service, head: config.head, id, join, supervisor, forwarder });
                }
                Ok(other) => return Err(unexpected(other)),
                Err(error) if Instant::now() >= deadline => {
                    supervisor.stop(None);
                    forwarder.abort();
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
                        Ok(other) => return Err(unexpected(other)),
                        Err(error) => tracing::warn!(%error, "joining again failed; will retry"),
                    }
                }
                Ok(other) => return Err(unexpected(other)),
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

fn unexpected(response: HeadResponse) -> Error {
    Error::Io(std::io::Error::other(format!("unexpected answer from the head: {response:?}")))
}

#[cfg(test)]
mod tests {
    //! A real worker against a head played by the test: its own QUIC node
    //! that records what the worker tells it and answers heartbeats as told.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;
    use crate::udf_record::UdfRecord;

    #[derive(Default)]
    struct TestHead {
        joins: AtomicU64,
        forgets_workers: AtomicBool,
        exits: std::sync::Mutex<Vec<ApplierExit>>,
    }

    impl Service for TestHead {
        type Request = HeadRequest;
        type Response = HeadResponse;
        async fn call(&self, _peer: SocketAddr, request: HeadRequest) -> HeadResponse {
            match request {
                HeadRequest::Join(_) => HeadResponse::Joined { node: NodeId(self.joins.fetch_add(1, Ordering::SeqCst) + 1) },
                HeadRequest::Heartbeat(_) => HeadResponse::Alive { known: !self.forgets_workers.load(Ordering::SeqCst) },
                HeadRequest::ApplierExited(exit) => {
                    self.exits.lock().unwrap().push(exit);
                    HeadResponse::Noted
                }
                other => HeadResponse::Refused { reason: format!("not played by this test: {other:?}") },
            }
        }
    }

    struct Setup {
        _dir: tempfile::TempDir,
        head: Node,
        state: Arc<TestHead>,
        client: Node,
        worker: SocketAddr,
        spec: JobSpec,
    }

    async fn setup(job_id: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let certs_dir = dir.path().join("certs");
        leman_runtime::tls::init_cluster(&certs_dir).unwrap();
        let certs = ClusterCerts::load(&certs_dir).unwrap();
        let db = crate::connect(dir.path().to_str().unwrap()).await.unwrap();
        crate::builtins::register_all(db.registry());
        let batches = vec![crate::demo::sample_batch(0, 100).unwrap()];
        let table = db.create_table("t", batches, crate::CreateTableOptions::default()).await.unwrap();
        let udf = crate::builtins::get("str_len", &["text"], &[]).unwrap();
        table.add_columns([("n", udf.clone())], crate::AddColumnsOptions::default()).await.unwrap();
        let spec = JobSpec {
            job_id: job_id.into(),
            table_uri: table.uri().to_string(),
            read_version: table.version().await.unwrap(),
            column: "n".into(),
            udf: UdfRecord::of(&udf),
            filter: "id >= 0".into(),
            threads: 1,
        };
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let state = Arc::new(TestHead::default());
        let head = Node::serve(loopback, &certs, NodeConfig::default(), state.clone()).unwrap();
        let config = WorkerConfig {
            head: head.local_addr().unwrap(),
            listen: loopback,
            certs: certs_dir,
            resources: Resources { cpus: 2.0, ..Resources::default() },
            join_timeout: Duration::from_secs(10),
            registry: db.registry().clone(),
        };
        let worker = Worker::start(&config).await.unwrap();
        let addr = worker.local_addr().unwrap();
        tokio::spawn(worker.run());
        let client = Node::client(loopback, &certs, NodeConfig::default()).unwrap();
        Setup { _dir: dir, head, state, client, worker: addr, spec }
    }

    impl Setup {
        async fn ask(&self, request: WorkerRequest) -> WorkerResponse {
            self.client.request(self.worker, &request).await.unwrap()
        }

        async fn spawn(&self, index: usize, incarnation: u64) {
            let request = WorkerRequest::SpawnApplier { job: self.spec.clone(), index, incarnation };
            assert_eq!(self.ask(request).await, WorkerResponse::Spawned);
        }

        async fn hosted(&self) -> Vec<(usize, u64)> {
            match self.ask(WorkerRequest::Hosted).await {
                WorkerResponse::Hosted(hosted) => hosted.into_iter().map(|h| (h.index, h.incarnation)).collect(),
                other => panic!("{other:?}"),
            }
        }

        async fn eventually_hosts(&self, expected: &[(usize, u64)], limit: Duration) {
            let deadline = Instant::now() + limit;
            loop {
                let hosted = self.hosted().await;
                if hosted == expected {
                    return;
                }
                assert!(Instant::now() < deadline, "hosts {hosted:?}, not {expected:?}, after {limit:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_applier_that_stops_on_its_own_is_reported_to_its_spawner_and_one_stopped_on_request_is_not() {
        let s = setup("j").await;
        s.spawn(0, 1).await;
        s.spawn(1, 1).await;
        s.spawn(1, 1).await; // the same incarnation again: nothing new
        assert_eq!(s.hosted().await, [(0, 1), (1, 1)]);

        let stop = WorkerRequest::StopApplier { job_id: "j".into(), index: 0, incarnation: 1 };
        assert_eq!(s.ask(stop).await, WorkerResponse::Stopped);
        ractor::registry::where_is("applier-j-1.1").expect("applier 1 runs").kill();
        s.eventually_hosts(&[], Duration::from_secs(10)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.state.exits.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the kill never reached the head");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Supervision events come in order: had the requested stop been
        // reported, it would be first.
        let exits = s.state.exits.lock().unwrap().clone();
        assert_eq!(exits.len(), 1, "{exits:?}");
        assert_eq!(exits[0].applier, HostedApplier { job_id: "j".into(), index: 1, incarnation: 1 });
        assert_eq!(exits[0].worker, s.worker.to_string());

        let key = leman_checkpoint::KeyParts {
            udf_name: "str_len",
            udf_version: "1",
            column: "n",
            filter: "id >= 0",
            table: "t",
            fragment_id: 0,
            data_files: Vec::new(),
        };
        let task = leman_applier::TaskSpec { fragment_id: 0, rows: 0..10, key: key.batch_key(0..10) };
        let gone = s.ask(WorkerRequest::RunTask { job_id: "j".into(), index: 1, task }).await;
        assert!(matches!(gone, WorkerResponse::ApplierGone { .. }), "{gone:?}");
        s.spawn(1, 2).await;
        assert_eq!(s.hosted().await, [(1, 2)], "a new incarnation starts in its place");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_that_loses_its_head_stops_the_jobs_it_hosts() {
        let s = setup("orphaned").await;
        s.spawn(0, 1).await;
        s.state.forgets_workers.store(true, Ordering::SeqCst);
        s.eventually_hosts(&[], Duration::from_secs(5)).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.state.joins.load(Ordering::SeqCst) < 2 {
            assert!(Instant::now() < deadline, "the worker did not join again");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        s.state.forgets_workers.store(false, Ordering::SeqCst);

        s.spawn(0, 2).await;
        s.head.close(); // the head is gone for good
        s.eventually_hosts(&[], LOST_AFTER + Duration::from_secs(5)).await;
    }
}
