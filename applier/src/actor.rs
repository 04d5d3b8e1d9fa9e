//! The applier actor: a thin adapter between the job's driver and a task.
//!
//! `handle` starts the task and returns at once, so one applier has as many
//! tasks in flight as the scheduler gives it; its [`Pool`] bounds how many
//! UDF calls run at once. The reply goes back on the message's port.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::pool::Pool;
use crate::task::{BackfillContext, TaskError, TaskOutput, TaskSpec, run_task};

/// Messages an applier takes.
#[derive(Debug)]
pub enum ApplierMsg {
    /// Run a task and reply with its outcome.
    Run { spec: TaskSpec, reply: RpcReplyPort<Result<TaskOutput, TaskError>> },
}

/// What an applier is started with.
#[derive(Debug, Clone)]
pub struct ApplierArgs {
    /// The job it works for.
    pub context: Arc<BackfillContext>,
    /// Its threads (`intra_applier_concurrency`).
    pub threads: usize,
    /// Its index in the job.
    pub index: usize,
    /// The GPU device ordinals its worker reserved for it.
    pub gpus: Vec<u32>,
}

/// The applier actor; see the [module docs](self).
#[derive(Debug, Default)]
pub struct Applier;

/// An applier's state.
#[derive(Debug)]
pub struct ApplierState {
    context: Arc<BackfillContext>,
    pool: Arc<Pool>,
}

impl Actor for Applier {
    type Msg = ApplierMsg;
    type State = ApplierState;
    type Arguments = ApplierArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, args: ApplierArgs) -> Result<ApplierState, ActorProcessingErr> {
        let name = myself.get_name().unwrap_or_else(|| "applier".to_string());
        let pool = Pool::start(&args.context.udfs(), args.threads, &name, args.index, &args.gpus)?;
        Ok(ApplierState { context: args.context, pool: Arc::new(pool) })
    }

    async fn handle(&self, _myself: ActorRef<Self::Msg>, message: ApplierMsg, state: &mut ApplierState) -> Result<(), ActorProcessingErr> {
        match message {
            ApplierMsg::Run { spec, reply } => {
                let context = state.context.clone();
                let pool = state.pool.clone();
                tokio::spawn(async move {
                    let outcome = run_task(&context, &pool, &spec).await;
                    // The driver may have stopped waiting; the checkpoint stays either way.
                    let _ = reply.send(outcome);
                });
            }
        }
        Ok(())
    }
}
