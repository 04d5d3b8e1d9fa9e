//! What a worker serves: the jobs' appliers and fragment writes.
//!
//! A job's context is built on the first request that needs it, outside
//! the jobs lock (opening a table takes a while, and the tasks of other
//! jobs must not wait for it). An applier is started linked to the
//! worker's supervisor, so that its exit is seen; one stopped on request is
//! forgotten first, so that its stop is not reported as an exit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use leman_applier::{Applier, ApplierArgs, ApplierMsg, BackfillContext, TaskError, TaskOutput};
use leman_engine::{JobSpec, StoreMeter, UdfRegistry, write_locally};
use leman_runtime::Service;
use leman_runtime::tls::Role;
use leman_writer::WriterContext;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorId, ActorRef};
use tokio::sync::Mutex;

use crate::metrics::WorkerMetrics;
use crate::protocol::{HostedApplier, ShippedDataFile, WorkerRequest, WorkerResponse};

/// One job's work on this worker.
struct HostedJob {
    spec: JobSpec,
    context: Arc<BackfillContext>,
    writer: WriterContext,
    appliers: HashMap<usize, RunningApplier>,
    /// Counts what the job's work here asks of the table's object store.
    meter: StoreMeter,
}

struct RunningApplier {
    incarnation: u64,
    actor: ActorRef<ApplierMsg>,
}

/// What a worker serves: the jobs' appliers and writers.
pub(super) struct WorkerService {
    registry: UdfRegistry,
    figures: Arc<WorkerMetrics>,
    jobs: Mutex<HashMap<String, HostedJob>>,
    /// Parent of every applier, set once the supervisor runs.
    supervisor: OnceLock<ActorRef<()>>,
}

impl std::fmt::Debug for WorkerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerService").finish_non_exhaustive()
    }
}

impl Service for WorkerService {
    type Request = WorkerRequest;
    type Response = WorkerResponse;

    /// Only a head may ask a worker for anything.
    fn roles_for(&self, _request: &WorkerRequest) -> &'static [Role] {
        &[Role::Head]
    }

    async fn call(&self, _peer: SocketAddr, request: WorkerRequest) -> WorkerResponse {
        match request {
            WorkerRequest::SpawnApplier { job, index, incarnation, gpus } => match self.spawn_applier(job, index, incarnation, gpus).await {
                Ok(()) => WorkerResponse::Spawned,
                Err(reason) => WorkerResponse::Refused { reason },
            },
            WorkerRequest::RunTask { job_id, index, task } => {
                let applier = self.jobs.lock().await.get(&job_id).and_then(|job| job.appliers.get(&index)).map(|a| a.actor.clone());
                let Some(applier) = applier else {
                    return WorkerResponse::ApplierGone { reason: format!("no applier {index} of job {job_id} runs here") };
                };
                match applier.call(|reply| ApplierMsg::Run { spec: task, reply }, None).await {
                    Ok(CallResult::Success(outcome)) => {
                        self.count_task(&outcome);
                        WorkerResponse::Task(outcome)
                    }
                    other => WorkerResponse::ApplierGone { reason: format!("applier {index} stopped answering: {other:?}") },
                }
            }
            WorkerRequest::WriteFragment { job, write } => {
                let writer = match self.job_writer(&job).await {
                    Ok(writer) => writer,
                    Err(reason) => return WorkerResponse::Written(Err(reason)),
                };
                let written = write_locally(writer, write).await;
                if let Ok(file) = &written {
                    // Lance records the size of the files it writes.
                    self.figures.bytes_written.inc_by(file.file_size_bytes.get().map_or(0, |size| size.get()));
                }
                WorkerResponse::Written(written.map(ShippedDataFile).map_err(|f| f.message))
            }
            WorkerRequest::StopApplier { job_id, index, incarnation } => {
                let mut jobs = self.jobs.lock().await;
                if let Some(job) = jobs.get_mut(&job_id)
                    && job.appliers.get(&index).is_some_and(|a| a.incarnation == incarnation)
                    && let Some(applier) = job.appliers.remove(&index)
                {
                    applier.actor.stop(None);
                }
                self.recount(&jobs);
                WorkerResponse::Stopped
            }
            WorkerRequest::StopJob { job_id } => {
                let meter = self.jobs.lock().await.get(&job_id).map(|job| job.meter.clone());
                self.stop_jobs(|id| id == job_id).await;
                WorkerResponse::JobStopped { store: meter.map(|meter| meter.take()).unwrap_or_default() }
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
    pub(super) fn new(registry: UdfRegistry, figures: Arc<WorkerMetrics>) -> Self {
        Self { registry, figures, jobs: Mutex::new(HashMap::new()), supervisor: OnceLock::new() }
    }

    fn count_task(&self, outcome: &Result<TaskOutput, TaskError>) {
        match outcome {
            Ok(output) => {
                self.figures.tasks_done.inc();
                self.figures.rows_computed.inc_by(output.rows_computed);
                self.figures.rows_skipped.inc_by(output.rows_skipped);
                if let Some(took) = output.udf_time {
                    self.figures.udf_batch_seconds.observe(took.as_secs_f64());
                }
            }
            Err(_) => {
                self.figures.tasks_failed.inc();
            }
        }
    }

    /// Sets the parent of every applier this worker starts.
    pub(super) fn supervise_with(&self, supervisor: ActorRef<()>) {
        let _ = self.supervisor.set(supervisor);
    }

    /// The writer context of `spec`'s job, building the job's context first
    /// if this worker has not seen the job yet.
    async fn job_writer(&self, spec: &JobSpec) -> std::result::Result<WriterContext, String> {
        if let Some(job) = self.jobs.lock().await.get(&spec.job_id) {
            return Ok(job.writer.clone());
        }
        // Built without the lock: opening a table can take a while, and the
        // tasks of jobs already here must not wait for it. Of two requests
        // that race here, the first to finish is kept.
        let meter = StoreMeter::new();
        let (context, writer) = build(&self.registry, spec, &meter).await?;
        let mut jobs = self.jobs.lock().await;
        let job = jobs
            .entry(spec.job_id.clone())
            .or_insert_with(|| HostedJob { spec: spec.clone(), context, writer, appliers: HashMap::new(), meter });
        let writer = job.writer.clone();
        self.recount(&jobs);
        Ok(writer)
    }

    async fn spawn_applier(&self, spec: JobSpec, index: usize, incarnation: u64, gpus: Vec<u32>) -> std::result::Result<(), String> {
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
        let args = ApplierArgs { context: job.context.clone(), threads: job.spec.threads, index, gpus: gpus.clone() };
        let (actor, _) = Actor::spawn_linked(Some(name), Applier, args, supervisor).await.map_err(|e| e.to_string())?;
        job.appliers.insert(index, RunningApplier { incarnation, actor });
        self.recount(&jobs);
        tracing::info!(job = %spec.job_id, index, incarnation, ?gpus, "applier started");
        Ok(())
    }

    /// Stops and forgets every job whose id `which` picks; returns how many.
    pub(super) async fn stop_jobs(&self, which: impl Fn(&str) -> bool) -> usize {
        let mut jobs = self.jobs.lock().await;
        let ids: Vec<String> = jobs.keys().filter(|id| which(id)).cloned().collect();
        for id in &ids {
            if let Some(job) = jobs.remove(id) {
                for applier in job.appliers.values() {
                    applier.actor.stop(None);
                }
            }
        }
        self.recount(&jobs);
        ids.len()
    }

    /// Forgets the applier that was actor `actor`, if it still counted as
    /// running: it stopped without being asked to.
    pub(super) async fn forget(&self, actor: ActorId) -> Option<HostedApplier> {
        let mut jobs = self.jobs.lock().await;
        for (job_id, job) in jobs.iter_mut() {
            let found = job.appliers.iter().find(|(_, a)| a.actor.get_id() == actor).map(|(index, a)| (*index, a.incarnation));
            if let Some((index, incarnation)) = found {
                job.appliers.remove(&index);
                let exited = HostedApplier { job_id: job_id.clone(), index, incarnation };
                self.recount(&jobs);
                return Some(exited);
            }
        }
        None
    }

    /// Sets the gauges of what is hosted here from `jobs`, after a change.
    fn recount(&self, jobs: &HashMap<String, HostedJob>) {
        self.figures.jobs_hosted.set(i64::try_from(jobs.len()).unwrap_or(i64::MAX));
        let appliers: usize = jobs.values().map(|job| job.appliers.len()).sum();
        self.figures.appliers_running.set(i64::try_from(appliers).unwrap_or(i64::MAX));
    }
}

/// Builds a job's applier and writer contexts from its spec, their object
/// stores counted by `meter`.
async fn build(
    registry: &UdfRegistry,
    spec: &JobSpec,
    meter: &StoreMeter,
) -> std::result::Result<(Arc<BackfillContext>, WriterContext), String> {
    let mut metered = spec.clone();
    metered.table = metered.table.with_store_wrapper(meter.around(spec.table.store_wrapper.clone()));
    let contexts = async {
        let setup = metered.open(registry).await?;
        Ok::<_, leman_engine::Error>((Arc::new(setup.applier_context(setup.checkpoints.clone())?), setup.writer_context(setup.checkpoints.clone())?))
    };
    contexts.await.map_err(|e| format!("this worker cannot run job {}: {e}", spec.job_id))
}
