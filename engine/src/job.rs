//! The handle of a running backfill.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use leman_scheduler::{JobFailure, Progress, Summary};

use crate::cancel::{CancelReason, CancelSignal, cancel};
use crate::error::{Error, Result};
use crate::lease::TableLease;

/// What a job reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// The job waits for the column's lease, held by job `behind`
    /// ([`BackfillOptions::queue`](crate::BackfillOptions::queue)).
    Queued {
        /// The job that holds the lease now.
        behind: String,
    },
    /// The plan is made.
    Planned {
        /// Fragments to fill.
        fragments: u64,
        /// Tasks to run, checkpointed ones included.
        tasks: u64,
        /// Physical rows covered.
        rows: u64,
    },
    /// Counts, every `refresh_status_secs`.
    Progress(Progress),
    /// A group of fragments is committed and visible to readers.
    Committed {
        /// The fragments.
        fragments: Vec<u64>,
        /// The table version that holds them.
        version: u64,
    },
    /// The job succeeded.
    Finished(Summary),
    /// The job failed.
    Failed(JobFailure),
}

/// A running backfill: its id, its events, its outcome.
///
/// Dropping the handle does not stop the job; [`Job::cancel`] does, and so
/// do a [`Canceller`] of it, a request from another process
/// (`Table::cancel_job`) and the `timeout` option.
#[derive(Debug)]
pub struct Job {
    id: String,
    events: Mutex<mpsc::UnboundedReceiver<JobEvent>>,
    outcome: JoinHandle<Result<Summary>>,
    cancel: Arc<CancelSignal>,
}

/// Cancels one job; kept by whoever follows the job's events elsewhere
/// (a cluster's head keeps one per job it runs).
#[derive(Debug, Clone)]
pub struct Canceller(Arc<CancelSignal>);

impl Canceller {
    /// Asks the job to stop, as [`Job::cancel`] does.
    pub fn cancel(&self) {
        cancel(&self.0, CancelReason::Asked);
    }
}

impl Job {
    pub(crate) fn new(
        id: String,
        events: mpsc::UnboundedReceiver<JobEvent>,
        outcome: JoinHandle<Result<Summary>>,
        cancel: Arc<CancelSignal>,
    ) -> Self {
        Self { id, events: Mutex::new(events), outcome, cancel }
    }

    /// The job id, as `leman jobs` lists it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next event; `None` once the job has ended and every event was read.
    pub async fn next_event(&self) -> Option<JobEvent> {
        self.events.lock().await.recv().await
    }

    /// Asks the job to stop after the batches in flight. What is committed
    /// stays, its checkpoints are kept, and a re-run resumes.
    pub fn cancel(&self) {
        cancel(&self.cancel, CancelReason::Asked);
    }

    /// A handle that cancels this job from elsewhere.
    pub fn canceller(&self) -> Canceller {
        Canceller(self.cancel.clone())
    }

    /// Waits for the job to end.
    pub async fn wait(self) -> Result<Summary> {
        match self.outcome.await {
            Ok(outcome) => outcome,
            Err(join) => Err(Error::Actor { actor: format!("driver of job {}", self.id), reason: join.to_string() }),
        }
    }

    /// This job, keeping `lease` until the job ends, then giving it up: for
    /// work that wraps a backfill (a view's refresh) and must stay the only
    /// one of its kind while the backfill runs.
    pub fn holding(self, lease: TableLease) -> Job {
        let Job { id, events, outcome, cancel } = self;
        let driver = format!("driver of job {id}");
        let outcome = tokio::spawn(async move {
            let result = match outcome.await {
                Ok(result) => result,
                Err(join) => Err(Error::Actor { actor: driver, reason: join.to_string() }),
            };
            lease.release().await;
            result
        });
        Job { id, events, outcome, cancel }
    }
}
