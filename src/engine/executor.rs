//! Where a job's appliers and writers run, behind one interface.
//!
//! An [`ApplierRef`] is either a local `ractor` actor (the embedded default)
//! or an applier on a worker, reached through the head's node; the driver
//! runs a task on either with [`ApplierRef::run`] (a call) and stops it with
//! [`ApplierRef::stop`] (a cast), and sees the same results. A transport
//! failure is never the task's own error: tasks are idempotent, so the
//! scheduler simply runs it elsewhere.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lance_table::format::DataFile;
use leman_applier::{ApplierMsg, TaskError, TaskOutput, TaskSpec};
use leman_cluster::NodeId;
use leman_runtime::Node;
use leman_writer::{FragmentWrite, Writer, WriterContext, WriterMsg};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};

use crate::distributed::{JobSpec, WorkerRequest, WorkerResponse};

/// How long a remote task may run; a dead worker is noticed by heartbeats
/// long before.
const TASK_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// How long a remote fragment write may run.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3600);

/// An applier of the job, here or on a worker. Each start of an applier
/// index is a new incarnation, so news of an old one is told apart.
#[derive(Debug, Clone)]
pub(crate) enum ApplierRef {
    /// A local actor.
    Local { actor: ActorRef<ApplierMsg>, incarnation: u64 },
    /// Applier `index` of job `job_id` on worker `worker`.
    Remote { node: Arc<Node>, worker: NodeId, addr: SocketAddr, job_id: String, index: usize, incarnation: u64 },
}

/// Why a task did not get an outcome from its applier.
#[derive(Debug)]
pub(crate) enum Unanswered {
    /// The applier is not running: the task did not run there, and nothing
    /// more will.
    Gone(String),
    /// Its worker could not be reached; whether it lives is for heartbeats
    /// to decide.
    Unreachable(String),
}

impl ApplierRef {
    /// Runs `spec`, returning the task's own outcome, or why there is none.
    pub async fn run(&self, spec: TaskSpec) -> Result<Result<TaskOutput, TaskError>, Unanswered> {
        match self {
            ApplierRef::Local { actor, .. } => match actor.call(|reply| ApplierMsg::Run { spec, reply }, None).await {
                Ok(CallResult::Success(outcome)) => Ok(outcome),
                Ok(other) => Err(Unanswered::Gone(format!("applier stopped answering: {other:?}"))),
                Err(error) => Err(Unanswered::Gone(format!("applier is gone: {error}"))),
            },
            ApplierRef::Remote { node, addr, job_id, index, .. } => {
                let request = WorkerRequest::RunTask { job_id: job_id.clone(), index: *index, task: spec };
                match node.request_within::<_, WorkerResponse>(*addr, &request, TASK_TIMEOUT).await {
                    Ok(WorkerResponse::Task(outcome)) => Ok(outcome),
                    Ok(WorkerResponse::ApplierGone { reason }) => Err(Unanswered::Gone(format!("worker {addr}: {reason}"))),
                    Ok(other) => Err(Unanswered::Unreachable(format!("worker {addr} answered {other:?}"))),
                    Err(error) => Err(Unanswered::Unreachable(error.to_string())),
                }
            }
        }
    }

    /// Which start of its index this is.
    pub fn incarnation(&self) -> u64 {
        match self {
            ApplierRef::Local { incarnation, .. } | ApplierRef::Remote { incarnation, .. } => *incarnation,
        }
    }

    /// The worker it runs on, if remote.
    pub fn worker(&self) -> Option<NodeId> {
        match self {
            ApplierRef::Local { .. } => None,
            ApplierRef::Remote { worker, .. } => Some(*worker),
        }
    }

    /// Stops it: a local actor at once, a remote one by a cast (a worker
    /// that cannot be reached stops its appliers when it loses the head).
    pub async fn stop(&self) {
        match self {
            ApplierRef::Local { actor, .. } => actor.stop(None),
            ApplierRef::Remote { node, addr, job_id, index, incarnation, .. } => {
                let request = WorkerRequest::StopApplier { job_id: job_id.clone(), index: *index, incarnation: *incarnation };
                if let Err(error) = node.cast(*addr, &request).await {
                    tracing::debug!(%addr, %error, "could not tell a worker to stop an applier");
                }
            }
        }
    }
}

/// Why a fragment could not be written, and whether another try may work.
#[derive(Debug)]
pub(crate) struct WriteFailure {
    pub message: String,
    pub retryable: bool,
}

/// Writes a fragment with a fresh local writer actor. (Unnamed: a retry of
/// the same fragment may start before the last writer has stopped.)
pub(crate) async fn write_locally(context: WriterContext, write: FragmentWrite) -> Result<DataFile, WriteFailure> {
    let (actor, _) = Actor::spawn(None, Writer, context)
        .await
        .map_err(|e| WriteFailure { message: e.to_string(), retryable: false })?;
    let outcome = actor.call(|reply| WriterMsg::Write { write, reply }, None).await;
    actor.stop(None);
    match outcome {
        Ok(CallResult::Success(Ok(data_file))) => Ok(data_file),
        Ok(CallResult::Success(Err(message))) => Err(WriteFailure { message, retryable: false }),
        other => Err(WriteFailure { message: format!("writer stopped answering: {other:?}"), retryable: true }),
    }
}

/// Writes a fragment on a worker.
pub(crate) async fn write_remotely(node: &Node, addr: SocketAddr, job: JobSpec, write: FragmentWrite) -> Result<DataFile, WriteFailure> {
    match node.request_within::<_, WorkerResponse>(addr, &WorkerRequest::WriteFragment { job, write }, WRITE_TIMEOUT).await {
        Ok(WorkerResponse::Written(Ok(shipped))) => Ok(shipped.0),
        Ok(WorkerResponse::Written(Err(message))) => Err(WriteFailure { message, retryable: false }),
        Ok(other) => Err(WriteFailure { message: format!("worker {addr} answered {other:?}"), retryable: false }),
        Err(error) => Err(WriteFailure { message: format!("worker {addr}: {error}"), retryable: true }),
    }
}
