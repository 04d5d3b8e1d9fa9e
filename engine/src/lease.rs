//! One backfill per column at a time, across processes.
//!
//! A job holds a lease object beside the table
//! (`_leman/leases/<hex of column>.json`), created with put-if-absent and
//! renewed every [`RENEW_EVERY`]. Another job for the same column is refused
//! while the lease is fresh; a lease not renewed for [`STALE_AFTER`] belongs
//! to a process that died, and is taken over.

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::clock::unix_millis;
use crate::error::{Error, Result};

/// How often a held lease is renewed.
pub(crate) const RENEW_EVERY: Duration = Duration::from_secs(2);
/// Age after which a lease is taken to be abandoned.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holder {
    job_id: String,
    pid: u32,
    host: String,
    renewed_at_ms: u64,
}

/// Whether job `job_id` holds a fresh lease on `column`.
pub(crate) async fn is_held_by(store: &dyn ObjectStore, table_dir: &Path, column: &str, job_id: &str) -> Result<bool> {
    match store.get(&lease_path(table_dir, column)).await {
        Ok(found) => {
            let holder = serde_json::from_slice::<Holder>(&found.bytes().await.map_err(lease_error)?).ok();
            Ok(holder.is_some_and(|h| h.job_id == job_id && is_fresh(&h)))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(error) => Err(lease_error(error)),
    }
}

fn lease_path(table_dir: &Path, column: &str) -> Path {
    table_dir.clone().join("_leman").join("leases").join(format!("{}.json", hex::encode(column)))
}

fn is_fresh(holder: &Holder) -> bool {
    unix_millis().saturating_sub(holder.renewed_at_ms) < STALE_AFTER.as_millis() as u64
}

/// A held lease; renewed until released or dropped.
#[derive(Debug)]
pub(crate) struct ColumnLease {
    store: Arc<dyn ObjectStore>,
    path: Path,
    renewal: tokio::task::JoinHandle<()>,
}

impl ColumnLease {
    /// Takes the lease of `column` for `job_id`, or says who holds it.
    pub async fn acquire(store: Arc<dyn ObjectStore>, table_dir: &Path, column: &str, job_id: &str) -> Result<Self> {
        let path = lease_path(table_dir, column);
        let holder = Holder { job_id: job_id.to_string(), pid: std::process::id(), host: hostname(), renewed_at_ms: 0 };
        for _ in 0..2 {
            let create = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
            match store.put_opts(&path, payload(&holder), create).await {
                Ok(_) => {
                    let renewal = tokio::spawn(renew(store.clone(), path.clone(), holder));
                    return Ok(Self { store, path, renewal });
                }
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(error) => return Err(lease_error(error)),
            }
            let current = match store.get(&path).await {
                Ok(found) => serde_json::from_slice::<Holder>(&found.bytes().await.map_err(lease_error)?).ok(),
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(error) => return Err(lease_error(error)),
            };
            match current {
                Some(other) if is_fresh(&other) => {
                    return Err(Error::ColumnBusy {
                        column: column.to_string(),
                        job_id: other.job_id,
                        pid: other.pid,
                        host: other.host,
                    });
                }
                _ => {
                    tracing::warn!(%path, "taking over an abandoned backfill lease");
                    match store.delete(&path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(error) => return Err(lease_error(error)),
                    }
                }
            }
        }
        Err(Error::Io(std::io::Error::other(format!("could not take the backfill lease {path}; try again"))))
    }

    /// Gives the lease up.
    pub async fn release(self) {
        self.renewal.abort();
        if let Err(error) = self.store.delete(&self.path).await {
            tracing::warn!(%error, path = %self.path, "could not release the backfill lease; it goes stale on its own");
        }
    }
}

impl Drop for ColumnLease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

async fn renew(store: Arc<dyn ObjectStore>, path: Path, mut holder: Holder) {
    loop {
        holder.renewed_at_ms = unix_millis();
        if let Err(error) = store.put(&path, payload(&holder)).await {
            tracing::warn!(%error, %path, "could not renew the backfill lease");
        }
        tokio::time::sleep(RENEW_EVERY).await;
    }
}

fn payload(holder: &Holder) -> PutPayload {
    let holder = Holder { renewed_at_ms: holder.renewed_at_ms.max(unix_millis()), ..holder.clone() };
    PutPayload::from(serde_json::to_vec(&holder).unwrap_or_default())
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "unknown".to_string())
}

fn lease_error(error: object_store::Error) -> Error {
    Error::Io(std::io::Error::other(format!("backfill lease: {error}")))
}
