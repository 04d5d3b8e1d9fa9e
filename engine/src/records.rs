//! Job records beside the table (`_leman/jobs/<id>.json`), so that any
//! process can list a table's jobs and see how they went.

use std::sync::Arc;

use futures::TryStreamExt;
use leman_scheduler::JobRecord;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Error, Result};

/// Reads and writes the job records of one table.
#[derive(Debug, Clone)]
pub struct JobStore {
    store: Arc<dyn ObjectStore>,
    dir: Path,
}

impl JobStore {
    /// The job records of the table whose directory is `table_dir`.
    pub fn new(store: Arc<dyn ObjectStore>, table_dir: &Path) -> Self {
        Self { store, dir: table_dir.clone().join("_leman").join("jobs") }
    }

    /// Writes `record`, replacing an older one of the same job.
    pub async fn put(&self, record: &JobRecord) -> Result<()> {
        let path = self.dir.clone().join(format!("{}.json", record.id));
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| Error::Io(e.into()))?;
        self.store.put(&path, PutPayload::from(bytes)).await.map_err(store_error)?;
        Ok(())
    }

    /// The record of job `id`.
    pub async fn get(&self, id: &str) -> Result<Option<JobRecord>> {
        let path = self.dir.clone().join(format!("{id}.json"));
        match self.store.get(&path).await {
            Ok(found) => {
                let bytes = found.bytes().await.map_err(store_error)?;
                Ok(serde_json::from_slice(&bytes).ok())
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(store_error(error)),
        }
    }

    /// Every readable record, oldest first.
    pub async fn list(&self) -> Result<Vec<JobRecord>> {
        let metas: Vec<_> = self.store.list(Some(&self.dir)).try_collect().await.map_err(store_error)?;
        let mut records = Vec::new();
        for meta in metas {
            let Some(id) = meta.location.filename().and_then(|f| f.strip_suffix(".json")) else { continue };
            if let Some(record) = self.get(id).await? {
                records.push(record);
            }
        }
        records.sort_by_key(|r| (r.started_at_ms, r.id.clone()));
        Ok(records)
    }
}

fn store_error(error: object_store::Error) -> Error {
    Error::Io(std::io::Error::other(format!("job records: {error}")))
}
