//! The engine's executor over the cluster: a job's appliers on the
//! workers with room for them, its fragment writes spread over the workers.
//!
//! Each applier reserves what it needs in the head's ledger on the freest
//! worker it fits on, and is started there by a request; the worker answers
//! its tasks. A task or a write sent to a worker ends when that worker is
//! declared lost, not at a timeout, and its loss is reported to the driver
//! as the loss of every applier of the job it hosted. An applier that a
//! worker's supervisor saw stop on its own is reported the same way. When
//! the job ends, its reservations are released and every worker that did
//! any of its work is told to drop it, answering what the job asked of the
//! table's object store there.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use lance_table::format::DataFile;
use leman_cluster::{Holder, MembershipEvent, NodeId, Resources};
use leman_engine::{
    ApplierHandle, ApplierOutcome, Executor, ExecutorEvent, FragmentWrite, JobExecutor, JobSetup, JobSpec, StoreTally,
    TaskSpec, Unanswered, WriteFailure, write_locally,
};
use leman_writer::WriterContext;
use tokio::sync::broadcast;

use crate::protocol::{WorkerRequest, WorkerResponse};
use crate::view::{ClusterEvent, ClusterView};

/// How long a remote task may run; a dead worker is noticed by heartbeats
/// long before.
const TASK_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// How long a remote fragment write may run.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long a worker may take to stop a job and say what it cost there.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the jobs a head was submitted on its workers.
#[derive(Debug, Clone)]
pub(crate) struct ClusterExecutor {
    pub view: Arc<ClusterView>,
}

impl Executor for ClusterExecutor {
    fn open(&self, job: &JobSetup) -> leman_engine::Result<Box<dyn JobExecutor>> {
        let hints = job.applier_needs();
        Ok(Box::new(ClusterJob {
            view: self.view.clone(),
            events: self.view.events.subscribe(),
            spec: job.spec.clone(),
            needs: Resources { cpus: hints.cpus, gpus: hints.gpus, memory: hints.memory },
            // For a cluster without workers, the head writes itself.
            head_writer: job.writer_context(job.checkpoints.clone())?,
            placed: HashMap::new(),
            hosts: BTreeSet::new(),
            next_writer: 0,
        }))
    }
}

/// One job's work on the cluster.
#[derive(Debug)]
struct ClusterJob {
    view: Arc<ClusterView>,
    events: broadcast::Receiver<ClusterEvent>,
    spec: JobSpec,
    /// What each applier reserves.
    needs: Resources,
    head_writer: WriterContext,
    /// Where each started applier runs, and which start of its index it is.
    placed: HashMap<usize, (NodeId, u64)>,
    /// Workers that did any of the job's work, told to drop it at the end.
    hosts: BTreeSet<SocketAddr>,
    next_writer: usize,
}

impl ClusterJob {
    fn holder(&self, index: usize) -> Holder {
        Holder { job: self.spec.job_id.clone(), index }
    }

    /// The appliers of this job on `lost` workers, as gone.
    fn gone_with(&mut self, lost: &[NodeId], why: &str) -> Vec<ExecutorEvent> {
        let gone: Vec<(usize, NodeId, u64)> = self
            .placed
            .iter()
            .filter(|(_, (worker, _))| lost.contains(worker))
            .map(|(index, (worker, incarnation))| (*index, *worker, *incarnation))
            .collect();
        gone.into_iter()
            .map(|(index, worker, incarnation)| {
                self.placed.remove(&index);
                ExecutorEvent::ApplierGone { index, incarnation, reason: format!("worker {worker} {why}") }
            })
            .collect()
    }

    /// What one cluster event means for this job.
    fn translate(&mut self, event: Result<ClusterEvent, broadcast::error::RecvError>) -> Option<Vec<ExecutorEvent>> {
        match event {
            Ok(ClusterEvent::Member(MembershipEvent::Lost { node })) => Some(self.gone_with(&[node], "was lost")),
            Ok(ClusterEvent::ApplierExited(exit)) if exit.applier.job_id == self.spec.job_id => {
                Some(vec![ExecutorEvent::ApplierGone {
                    index: exit.applier.index,
                    incarnation: exit.applier.incarnation,
                    reason: format!("stopped on worker {}: {}", exit.worker, exit.reason),
                }])
            }
            Ok(ClusterEvent::ApplierExited(_)) => None,
            Ok(ClusterEvent::Member(MembershipEvent::Joined { .. }) | ClusterEvent::CapacityFreed) => {
                Some(vec![ExecutorEvent::Room])
            }
            // Missed events: every applier whose worker is no longer a
            // member is gone, and there may be room.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let live: Vec<NodeId> = self.view.members().iter().map(|m| m.id).collect();
                let lost: Vec<NodeId> =
                    self.placed.values().map(|(worker, _)| *worker).filter(|w| !live.contains(w)).collect();
                let mut events = self.gone_with(&lost, "is no longer a member");
                events.push(ExecutorEvent::Room);
                Some(events)
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl JobExecutor for ClusterJob {
    fn start_applier(&mut self, index: usize, incarnation: u64) -> BoxFuture<'static, leman_engine::Result<Option<Arc<dyn ApplierHandle>>>> {
        let holder = self.holder(index);
        let Some((member, gpus)) = self.view.reserve(holder.clone(), self.needs) else {
            return Box::pin(async { Ok(None) });
        };
        let Ok(addr) = member.addr.parse::<SocketAddr>() else {
            tracing::warn!(addr = %member.addr, "worker address does not parse");
            self.view.cancel(&holder);
            return Box::pin(async { Ok(None) });
        };
        // Counted as placed before the worker answers. If it refuses, news
        // of this incarnation is stale to the driver, and the worker is told
        // to drop the job at its end like the others.
        self.hosts.insert(addr);
        self.placed.insert(index, (member.id, incarnation));
        let request = WorkerRequest::SpawnApplier { job: self.spec.clone(), index, incarnation, gpus };
        let applier =
            RemoteApplier { view: self.view.clone(), worker: member.id, addr, job_id: self.spec.job_id.clone(), index, incarnation };
        Box::pin(async move {
            let refused = match applier.view.node.request::<_, WorkerResponse>(addr, &request).await {
                Ok(WorkerResponse::Spawned) => None,
                Ok(other) => Some(format!("{other:?}")),
                Err(error) => Some(error.to_string()),
            };
            if let Some(reason) = refused {
                // Remote starts do not fail the job: it waits for the next
                // change in the cluster.
                tracing::warn!(worker = %member.id, %reason, "worker could not start an applier; it waits for the next change in the cluster");
                applier.view.cancel(&holder);
                return Ok(None);
            }
            Ok(Some(Arc::new(applier) as Arc<dyn ApplierHandle>))
        })
    }

    fn applier_gone(&mut self, index: usize) {
        self.placed.remove(&index);
        self.view.release(&self.holder(index));
    }

    fn write_fragment(&mut self, write: FragmentWrite) -> BoxFuture<'static, Result<DataFile, WriteFailure>> {
        let members = self.view.members();
        self.next_writer = self.next_writer.wrapping_add(1);
        let chosen = members.get(self.next_writer % members.len().max(1));
        let Some((worker, addr)) = chosen.and_then(|m| Some((m.id, m.addr.parse::<SocketAddr>().ok()?))) else {
            return Box::pin(write_locally(self.head_writer.clone(), write));
        };
        self.hosts.insert(addr);
        let (view, job) = (self.view.clone(), self.spec.clone());
        Box::pin(async move {
            let request = WorkerRequest::WriteFragment { job, write };
            tokio::select! {
                written = view.node.request_within::<_, WorkerResponse>(addr, &request, WRITE_TIMEOUT) => match written {
                    Ok(WorkerResponse::Written(Ok(shipped))) => Ok(shipped.0),
                    Ok(WorkerResponse::Written(Err(message))) => Err(WriteFailure { message, retryable: false }),
                    Ok(other) => Err(WriteFailure { message: format!("worker {addr} answered {other:?}"), retryable: false }),
                    Err(error) => Err(WriteFailure { message: format!("worker {addr}: {error}"), retryable: true }),
                },
                () = view.lost(worker) => Err(WriteFailure { message: format!("worker {addr} was lost"), retryable: true }),
            }
        })
    }

    fn next_events(&mut self) -> BoxFuture<'_, Vec<ExecutorEvent>> {
        Box::pin(async move {
            loop {
                // `recv` is cancel-safe and nothing after it awaits.
                let event = self.events.recv().await;
                let closed = matches!(event, Err(broadcast::error::RecvError::Closed));
                if let Some(events) = self.translate(event) {
                    return events;
                }
                if closed {
                    return std::future::pending().await;
                }
            }
        })
    }

    fn stop(&mut self) -> BoxFuture<'_, StoreTally> {
        Box::pin(async move {
            self.view.release_job(&self.spec.job_id);
            // Also drops the job's context on workers that only wrote.
            let request = WorkerRequest::StopJob { job_id: self.spec.job_id.clone() };
            let stops = self.hosts.iter().map(|addr| {
                let (view, request) = (self.view.clone(), request.clone());
                async move {
                    match view.node.request_within::<_, WorkerResponse>(*addr, &request, STOP_TIMEOUT).await {
                        Ok(WorkerResponse::JobStopped { store }) => store,
                        other => {
                            // A worker lost mid-job takes its share of the count with it.
                            tracing::debug!(%addr, ?other, "a worker did not say what the job cost there");
                            StoreTally::default()
                        }
                    }
                }
            });
            let mut total = StoreTally::default();
            for tally in futures::future::join_all(stops).await {
                total += tally;
            }
            total
        })
    }
}

/// Applier `index` of job `job_id` on worker `worker`.
#[derive(Debug)]
struct RemoteApplier {
    view: Arc<ClusterView>,
    worker: NodeId,
    addr: SocketAddr,
    job_id: String,
    index: usize,
    incarnation: u64,
}

impl ApplierHandle for RemoteApplier {
    fn run(&self, task: TaskSpec) -> BoxFuture<'static, ApplierOutcome> {
        let (view, worker, addr) = (self.view.clone(), self.worker, self.addr);
        let request = WorkerRequest::RunTask { job_id: self.job_id.clone(), index: self.index, task };
        Box::pin(async move {
            tokio::select! {
                answer = view.node.request_within::<_, WorkerResponse>(addr, &request, TASK_TIMEOUT) => match answer {
                    Ok(WorkerResponse::Task(outcome)) => Ok(outcome),
                    Ok(WorkerResponse::ApplierGone { reason }) => Err(Unanswered::Gone(format!("worker {addr}: {reason}"))),
                    Ok(other) => Err(Unanswered::Unreachable(format!("worker {addr} answered {other:?}"))),
                    Err(error) => Err(Unanswered::Unreachable(error.to_string())),
                },
                // A request to a dead worker ends with its loss, not a timeout.
                () = view.lost(worker) => Err(Unanswered::Unreachable("its worker was lost".to_string())),
            }
        })
    }

    /// A cast: a worker that cannot be reached stops its appliers when it
    /// loses the head.
    fn stop(&self) -> BoxFuture<'static, ()> {
        let (view, addr) = (self.view.clone(), self.addr);
        let request = WorkerRequest::StopApplier { job_id: self.job_id.clone(), index: self.index, incarnation: self.incarnation };
        Box::pin(async move {
            if let Err(error) = view.node.cast(addr, &request).await {
                tracing::debug!(%addr, %error, "could not tell a worker to stop an applier");
            }
        })
    }
}
