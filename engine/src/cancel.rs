//! Stopping a running job: from its handle, from any other process, or
//! when its time is up.
//!
//! Another process cannot reach a job's handle, so it leaves a request
//! beside the table (`_leman/cancels/<job id>.json`, saying who asked and
//! when), in the same store as the job's record: a process that can see the
//! job can stop it, wherever the job runs. Each job has a watcher that looks
//! for its request every [`LOOK_EVERY`] (one GET of a small object) and
//! counts down the job's `timeout`; either one cancels the job as its
//! handle does. A cancelled job stops after the batches in flight, keeps
//! its checkpoints, and is recorded `cancelled` with its [`CancelReason`];
//! the request is deleted when the job ends.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::clock::unix_millis;
use crate::error::{Error, Result};

/// How often a job looks for a request to cancel it.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Why a job was cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// Its handle asked ([`Job::cancel`](crate::Job::cancel); Ctrl-C in the CLI).
    Asked,
    /// Another process asked (`Table::cancel_job`, `leman jobs cancel`).
    Requested {
        /// Who asked: `user@host (pid N)`.
        by: String,
    },
    /// Its `timeout` ran out.
    TimedOut {
        /// The timeout.
        after: Duration,
    },
}

impl std::fmt::Display for CancelReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CancelReason::Asked => f.write_str("cancelled"),
            CancelReason::Requested { by } => write!(f, "cancelled by {by}"),
            CancelReason::TimedOut { after } => write!(f, "cancelled: its timeout of {} s ran out", after.as_secs_f64()),
        }
    }
}

/// The cancel signal a job's driver watches; the first reason set stands.
pub(crate) type CancelSignal = watch::Sender<Option<CancelReason>>;

/// Sets `reason` unless the job was already cancelled.
pub(crate) fn cancel(signal: &CancelSignal, reason: CancelReason) {
    signal.send_if_modified(|current| {
        let unset = current.is_none();
        if unset {
            *current = Some(reason);
        }
        unset
    });
}

/// A request to cancel a job, as stored beside the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Request {
    by: String,
    requested_at_ms: u64,
}

/// The requests to cancel the jobs of one table.
#[derive(Debug, Clone)]
pub struct CancelRequests {
    store: Arc<dyn ObjectStore>,
    dir: Path,
}

impl CancelRequests {
    /// The requests of the table whose directory is `table_dir`.
    pub fn new(store: Arc<dyn ObjectStore>, table_dir: &Path) -> Self {
        Self { store, dir: table_dir.clone().join("_leman").join("cancels") }
    }

    /// Asks job `job_id` to stop, on behalf of this process's user.
    pub async fn request(&self, job_id: &str) -> Result<()> {
        let request = Request { by: requester(), requested_at_ms: unix_millis() };
        let bytes = serde_json::to_vec(&request).map_err(|e| Error::Io(e.into()))?;
        self.store.put(&self.path(job_id), PutPayload::from(bytes)).await.map_err(request_error)?;
        Ok(())
    }

    /// Who asked job `job_id` to stop, if anyone did.
    pub(crate) async fn find(&self, job_id: &str) -> Result<Option<String>> {
        match self.store.get(&self.path(job_id)).await {
            Ok(found) => {
                let bytes = found.bytes().await.map_err(request_error)?;
                let by = serde_json::from_slice::<Request>(&bytes).map(|r| r.by);
                Ok(Some(by.unwrap_or_else(|_| "another process".to_string())))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(request_error(error)),
        }
    }

    /// Forgets the request of a job that ended.
    pub(crate) async fn remove(&self, job_id: &str) {
        match self.store.delete(&self.path(job_id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => tracing::warn!(%error, job = job_id, "could not delete the job's cancel request"),
        }
    }

    /// The jobs asked to stop whose requests are still there.
    pub(crate) async fn job_ids(&self) -> Result<Vec<String>> {
        let metas: Vec<object_store::ObjectMeta> = self.store.list(Some(&self.dir)).try_collect().await.map_err(request_error)?;
        Ok(metas.iter().filter_map(|meta| meta.location.filename()?.strip_suffix(".json").map(str::to_string)).collect())
    }

    fn path(&self, job_id: &str) -> Path {
        self.dir.clone().join(format!("{job_id}.json"))
    }
}

/// When a job's `timeout` runs out: the instant and the timeout.
pub(crate) type Deadline = Option<(tokio::time::Instant, Duration)>;

/// Cancels job `job_id` when a request for it appears or at `deadline`;
/// runs until then, or until aborted when the job ends.
pub(crate) async fn watch(requests: CancelRequests, job_id: String, deadline: Deadline, signal: Arc<CancelSignal>) {
    let mut look = tokio::time::interval(LOOK_EVERY);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = sleep_until(deadline) => {
                if let Some((_, after)) = deadline {
                    cancel(&signal, CancelReason::TimedOut { after });
                }
                return;
            }
            _ = look.tick() => match requests.find(&job_id).await {
                Ok(Some(by)) => return cancel(&signal, CancelReason::Requested { by }),
                Ok(None) => {}
                // The store may be back at the next look.
                Err(error) => tracing::warn!(%error, job = %job_id, "could not look for a cancel request"),
            },
        }
    }
}

async fn sleep_until(deadline: Deadline) {
    match deadline {
        Some((at, _)) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `user@host (pid N)` of this process.
fn requester() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".to_string());
    format!("{user}@{} (pid {})", crate::lease::hostname(), std::process::id())
}

fn request_error(error: object_store::Error) -> Error {
    Error::Io(std::io::Error::other(format!("cancel requests: {error}")))
}
