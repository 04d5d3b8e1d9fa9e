//! One backfill per column at a time, across processes, fenced.
//!
//! A column's lease is a sequence of numbered objects beside the table
//! (`_leman/leases/<hex of column>/<generation>.json`); the highest number
//! is the lease, and whoever wrote it holds it. Every step that changes
//! hands is a put-if-absent of the next number, which every object store
//! (the local file system included) does atomically, so of two jobs that
//! take a lease over at once one wins. A holder renews its own object only
//! (every [`RENEW_EVERY`]); a lease not renewed for [`STALE_AFTER`], or
//! given up, may be taken over by writing the next number.
//!
//! A paused holder that wakes up after a takeover cannot overwrite its
//! successor: it writes its own, lower number. Before each commit a job
//! checks its [`LeaseFence`]: if a higher number exists, the column was
//! taken over and the job commits nothing more. (The check and the commit
//! are two steps: a holder paused between them for longer than
//! [`STALE_AFTER`] could still commit once, into a table whose rows its
//! successor then finds filled by the same UDF.)

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::clock::unix_millis;
use crate::error::{Error, Result};

/// How often a held lease is renewed.
pub(crate) const RENEW_EVERY: Duration = Duration::from_secs(2);
/// Age after which a lease is taken to be abandoned.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(15);
/// Tries of taking a lease that others race for.
const ACQUIRE_TRIES: usize = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holder {
    job_id: String,
    pid: u32,
    host: String,
    renewed_at_ms: u64,
    /// Given up by its job: free to take at once.
    #[serde(default)]
    released: bool,
}

impl Holder {
    fn is_live(&self) -> bool {
        !self.released && unix_millis().saturating_sub(self.renewed_at_ms) < STALE_AFTER.as_millis() as u64
    }
}

/// Where one column's lease objects are.
#[derive(Debug, Clone)]
struct LeaseDir {
    store: Arc<dyn ObjectStore>,
    dir: Path,
}

impl LeaseDir {
    fn new(store: Arc<dyn ObjectStore>, table_dir: &Path, column: &str) -> Self {
        Self { store, dir: table_dir.clone().join("_leman").join("leases").join(hex::encode(column)) }
    }

    fn path(&self, generation: u64) -> Path {
        self.dir.clone().join(format!("{generation:020}.json"))
    }

    /// The lease's generations, highest first.
    async fn generations(&self) -> Result<Vec<u64>> {
        let objects: Vec<_> = self.store.list(Some(&self.dir)).try_collect().await.map_err(lease_error)?;
        let mut generations: Vec<u64> = objects
            .iter()
            .filter_map(|o| o.location.filename()?.strip_suffix(".json")?.parse().ok())
            .collect();
        generations.sort_unstable_by(|a, b| b.cmp(a));
        Ok(generations)
    }

    /// The highest generation and its holder, if any. (One being written
    /// or removed while read is passed over for the next lower.)
    async fn current(&self) -> Result<Option<(u64, Holder)>> {
        for generation in self.generations().await? {
            match self.store.get(&self.path(generation)).await {
                Ok(found) => {
                    let bytes = found.bytes().await.map_err(lease_error)?;
                    if let Ok(holder) = serde_json::from_slice::<Holder>(&bytes) {
                        return Ok(Some((generation, holder)));
                    }
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(lease_error(error)),
            }
        }
        Ok(None)
    }

    async fn write(&self, generation: u64, holder: &Holder, mode: PutMode) -> object_store::Result<()> {
        let holder = Holder { renewed_at_ms: unix_millis(), ..holder.clone() };
        let payload = PutPayload::from(serde_json::to_vec(&holder).unwrap_or_default());
        self.store.put_opts(&self.path(generation), payload, PutOptions { mode, ..PutOptions::default() }).await.map(drop)
    }
}

/// Whether job `job_id` holds a live lease on `column`.
pub(crate) async fn is_held_by(store: Arc<dyn ObjectStore>, table_dir: &Path, column: &str, job_id: &str) -> Result<bool> {
    let current = LeaseDir::new(store, table_dir, column).current().await?;
    Ok(current.is_some_and(|(_, holder)| holder.job_id == job_id && holder.is_live()))
}

/// A held lease; renewed until released or dropped.
#[derive(Debug)]
pub(crate) struct ColumnLease {
    fence: LeaseFence,
    renewal: tokio::task::JoinHandle<()>,
}

impl ColumnLease {
    /// Takes the lease of `column` for `job_id`, or says who holds it.
    pub async fn acquire(store: Arc<dyn ObjectStore>, table_dir: &Path, column: &str, job_id: &str) -> Result<Self> {
        let leases = LeaseDir::new(store, table_dir, column);
        let holder = Holder {
            job_id: job_id.to_string(),
            pid: std::process::id(),
            host: hostname(),
            renewed_at_ms: 0,
            released: false,
        };
        for _ in 0..ACQUIRE_TRIES {
            let next = match leases.current().await? {
                Some((_, other)) if other.is_live() => {
                    return Err(Error::ColumnBusy { column: column.to_string(), job_id: other.job_id, pid: other.pid, host: other.host });
                }
                Some((generation, other)) => {
                    if !other.released {
                        tracing::warn!(column, job = %other.job_id, "taking over an abandoned lease");
                    }
                    generation + 1
                }
                None => 1,
            };
            match leases.write(next, &holder, PutMode::Create).await {
                Ok(()) => {
                    remove_below(&leases, next).await;
                    let fence = LeaseFence { leases, generation: next, column: column.to_string() };
                    let renewal = tokio::spawn(renew(fence.clone(), holder));
                    return Ok(Self { fence, renewal });
                }
                // Someone else took this number first: look again.
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(error) => return Err(lease_error(error)),
            }
        }
        Err(Error::Io(std::io::Error::other(format!(
            "could not take the lease {column}: other jobs raced for it; try again"
        ))))
    }

    /// What checks, before a commit, that the lease is still this job's.
    pub fn fence(&self) -> LeaseFence {
        self.fence.clone()
    }

    /// Gives the lease up (if it is still this job's).
    pub async fn release(self) {
        self.renewal.abort();
        let fence = &self.fence;
        match fence.leases.current().await {
            Ok(Some((generation, mut holder))) if generation == fence.generation => {
                holder.released = true;
                if let Err(error) = fence.leases.write(generation, &holder, PutMode::Overwrite).await {
                    tracing::warn!(%error, column = %fence.column, "could not release the backfill lease; it goes stale on its own");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, column = %fence.column, "could not release the backfill lease; it goes stale on its own"),
        }
    }
}

impl Drop for ColumnLease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// Proof of holding a column's lease, checked before each commit.
#[derive(Debug, Clone)]
pub(crate) struct LeaseFence {
    leases: LeaseDir,
    generation: u64,
    column: String,
}

impl LeaseFence {
    /// `Ok` while no other job has taken the lease over; else says who did.
    pub async fn check(&self) -> Result<()> {
        match self.leases.current().await? {
            Some((generation, _)) if generation == self.generation => Ok(()),
            Some((_, holder)) => Err(Error::ColumnTakenOver {
                column: self.column.clone(),
                job_id: holder.job_id,
                pid: holder.pid,
                host: holder.host,
            }),
            None => Err(Error::ColumnTakenOver {
                column: self.column.clone(),
                job_id: "unknown (the lease was removed)".to_string(),
                pid: 0,
                host: "unknown".to_string(),
            }),
        }
    }
}

/// The leases of every column one job writes (several for a backfill of
/// several columns in one pass, or a promote of several staged jobs).
#[derive(Debug)]
pub(crate) struct JobLeases(Vec<ColumnLease>);

impl JobLeases {
    /// Takes the lease of each of `columns` for job `id`, in name order (so
    /// that two jobs after the same columns cannot each hold one the other
    /// waits for); gives those taken back if one is held by another job.
    pub async fn acquire(store: Arc<dyn ObjectStore>, dir: &Path, columns: &[String], id: &str) -> Result<Self> {
        let mut columns: Vec<&String> = columns.iter().collect();
        columns.sort();
        columns.dedup();
        let mut leases = Vec::with_capacity(columns.len());
        for column in columns {
            match ColumnLease::acquire(store.clone(), dir, column, id).await {
                Ok(lease) => leases.push(lease),
                Err(error) => {
                    Self(leases).release().await;
                    return Err(error);
                }
            }
        }
        Ok(Self(leases))
    }

    /// What checks, before a commit, that every lease is still this job's.
    pub fn fence(&self) -> JobFence {
        JobFence(self.0.iter().map(ColumnLease::fence).collect())
    }

    /// Gives every lease up.
    pub async fn release(self) {
        for lease in self.0 {
            lease.release().await;
        }
    }
}

/// A lease on a table's task that is not a column's backfill (a view's
/// refresh), taken with [`TableStores::lease`](crate::TableStores::lease):
/// one holder at a time, renewed while held, taken over once its holder
/// gives no sign of life for 15 s.
#[derive(Debug)]
pub struct TableLease(ColumnLease);

impl TableLease {
    pub(crate) async fn acquire(store: Arc<dyn ObjectStore>, dir: &Path, name: &str, holder: &str) -> Result<Self> {
        ColumnLease::acquire(store, dir, name, holder).await.map(Self)
    }

    /// `Ok` while the lease is still this holder's; else says who took it.
    pub async fn check(&self) -> Result<()> {
        self.0.fence().check().await
    }

    /// Gives the lease up.
    pub async fn release(self) {
        self.0.release().await;
    }
}

/// The fences of a job's leases, checked before each commit.
#[derive(Debug, Clone)]
pub(crate) struct JobFence(Vec<LeaseFence>);

impl JobFence {
    /// `Ok` while no other job has taken any of the leases over; else says
    /// who took which.
    pub async fn check(&self) -> Result<()> {
        for fence in &self.0 {
            fence.check().await?;
        }
        Ok(())
    }
}

/// Renews the lease while it is this job's; stops once it was taken over.
async fn renew(fence: LeaseFence, holder: Holder) {
    loop {
        match fence.check().await {
            Ok(()) => {
                if let Err(error) = fence.leases.write(fence.generation, &holder, PutMode::Overwrite).await {
                    tracing::warn!(%error, column = %fence.column, "could not renew the backfill lease");
                }
            }
            Err(error @ Error::ColumnTakenOver { .. }) => {
                tracing::warn!(%error, "the backfill lease was taken over; this job commits nothing more");
                return;
            }
            Err(error) => tracing::warn!(%error, column = %fence.column, "could not read the backfill lease"),
        }
        tokio::time::sleep(RENEW_EVERY).await;
    }
}

/// Removes the generations below `generation` (best effort: a leftover is
/// never the highest, so it holds nothing).
async fn remove_below(leases: &LeaseDir, generation: u64) {
    let Ok(generations) = leases.generations().await else { return };
    for older in generations.into_iter().filter(|g| *g < generation) {
        if let Err(error) = leases.store.delete(&leases.path(older)).await {
            tracing::debug!(%error, older, "could not remove an old lease generation");
        }
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "unknown".to_string())
}

fn lease_error(error: object_store::Error) -> Error {
    Error::Io(std::io::Error::other(format!("backfill lease: {error}")))
}
