//! The embedded executor: a job's appliers and writers are `ractor` actors
//! of this process.
//!
//! Each applier is an actor named `applier-<job>-<index>.<incarnation>`
//! running its own thread pool; each fragment is written by a fresh writer
//! actor. Nothing here can be lost without the process, so it reports no
//! events of its own: an applier that stops is found out by the next task
//! sent to it ([`Unanswered::Gone`]). Batches pass from appliers to
//! writers in memory ([`leman_checkpoint::handoff`]); those held unstored
//! are stored when the job stops, and those never stored are not deleted
//! once their fragment is committed.

use std::sync::Arc;

use futures::future::BoxFuture;
use lance_table::format::DataFile;
use leman_applier::{Applier, ApplierArgs, ApplierMsg, BackfillContext, TaskSpec};
use leman_checkpoint::{CheckpointKey, CheckpointStore, HandoffLimits};
use leman_writer::{FragmentWrite, Writer, WriterContext, WriterMsg};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};

use crate::error::{Error, Result};
use crate::executor::{
    ApplierHandle, ApplierOutcome, Executor, ExecutorEvent, JobExecutor, JobSetup, Unanswered, WriteFailure,
};
use crate::metering::StoreTally;

/// Runs jobs' appliers and writers as actors of this process: what
/// `Table::backfill` uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalExecutor;

impl Executor for LocalExecutor {
    fn open(&self, job: &JobSetup) -> Result<Box<dyn JobExecutor>> {
        // Appliers and writers share this process: batches pass between
        // them in memory, and only those worth it are stored.
        let checkpoints = job.checkpoints.with_handoff(HandoffLimits::default());
        Ok(Box::new(LocalJob {
            job_id: job.spec.job_id.clone(),
            threads: job.spec.threads,
            applier: Arc::new(job.applier_context(checkpoints.clone())?),
            writer: job.writer_context(checkpoints.clone())?,
            checkpoints,
        }))
    }
}

/// One job's contexts, shared by its appliers and writers.
#[derive(Debug)]
struct LocalJob {
    job_id: String,
    threads: usize,
    applier: Arc<BackfillContext>,
    writer: WriterContext,
    /// The job's checkpoints, with its handoff.
    checkpoints: CheckpointStore,
}

impl JobExecutor for LocalJob {
    fn start_applier(&mut self, index: usize, incarnation: u64) -> BoxFuture<'static, Result<Option<Arc<dyn ApplierHandle>>>> {
        let name = format!("applier-{}-{index}.{incarnation}", self.job_id);
        // Embedded appliers share this process's devices: no ordinals.
        let args = ApplierArgs { context: self.applier.clone(), threads: self.threads, index, gpus: Vec::new() };
        Box::pin(async move {
            let (actor, _) = Actor::spawn(Some(name.clone()), Applier, args)
                .await
                .map_err(|e| Error::Actor { actor: name, reason: e.to_string() })?;
            Ok(Some(Arc::new(LocalApplier { actor }) as Arc<dyn ApplierHandle>))
        })
    }

    fn applier_gone(&mut self, _index: usize) {}

    fn write_fragment(&mut self, write: FragmentWrite) -> BoxFuture<'static, Result<DataFile, WriteFailure>> {
        Box::pin(write_locally(self.writer.clone(), write))
    }

    fn maybe_stored(&mut self, keys: Vec<CheckpointKey>) -> Vec<CheckpointKey> {
        match self.checkpoints.handoff() {
            Some(handoff) => handoff.forget_unstored(keys),
            None => keys,
        }
    }

    fn next_events(&mut self) -> BoxFuture<'_, Vec<ExecutorEvent>> {
        Box::pin(std::future::pending())
    }

    fn stop(&mut self) -> BoxFuture<'_, StoreTally> {
        Box::pin(async move {
            // Batches of fragments not written stay for the next run.
            if let Err(error) = self.checkpoints.flush_held().await {
                tracing::warn!(%error, job = %self.job_id, "could not store the batches held in memory; a re-run computes them again");
            }
            // Its work used the driver's stores, which the driver counts.
            StoreTally::default()
        })
    }
}

/// An applier actor of this process.
#[derive(Debug)]
struct LocalApplier {
    actor: ActorRef<ApplierMsg>,
}

impl ApplierHandle for LocalApplier {
    fn run(&self, spec: TaskSpec) -> BoxFuture<'static, ApplierOutcome> {
        let actor = self.actor.clone();
        Box::pin(async move {
            match actor.call(|reply| ApplierMsg::Run { spec, reply }, None).await {
                Ok(CallResult::Success(outcome)) => Ok(outcome),
                Ok(other) => Err(Unanswered::Gone(format!("applier stopped answering: {other:?}"))),
                Err(error) => Err(Unanswered::Gone(format!("applier is gone: {error}"))),
            }
        })
    }

    fn stop(&self) -> BoxFuture<'static, ()> {
        self.actor.stop(None);
        Box::pin(std::future::ready(()))
    }
}

/// Writes a fragment with a fresh writer actor of this process. (Unnamed: a
/// retry of the same fragment may start before the last writer has
/// stopped.) Workers of a cluster write the fragments they are sent with it.
pub async fn write_locally(context: WriterContext, write: FragmentWrite) -> Result<DataFile, WriteFailure> {
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
