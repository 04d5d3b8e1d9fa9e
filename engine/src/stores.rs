//! The stores beside a table, in its object store under `_leman/`:
//! checkpoints, job records, records of failed rows, requests to cancel
//! jobs, staged jobs and the columns' leases.

use std::sync::Arc;

use lance::io::{ObjectStore as LanceObjectStore, ObjectStoreRegistry};
use leman_checkpoint::CheckpointStore;
use leman_scheduler::{JobRecord, JobStatus};

use crate::cancel::CancelRequests;
use crate::clock::unix_millis;
use crate::error::{Error, Result};
use crate::lease::{self, JobLeases, TableLease};
use crate::location::TableLocation;
use crate::records::JobStore;
use crate::row_errors::RowErrorStore;
use crate::stage::StagedStore;
use crate::storage::storage_error;

/// How long a queued job's record may go unrenewed before its process is
/// taken for dead (it renews it every [`QUEUED_RENEW_EVERY`]).
const QUEUED_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(15);

/// How often a queued job renews its record.
pub(crate) const QUEUED_RENEW_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Storage beside a table: checkpoints, job records and leases.
#[derive(Debug, Clone)]
pub struct TableStores {
    /// Batch and fragment checkpoints.
    pub checkpoints: CheckpointStore,
    /// Job records.
    pub jobs: JobStore,
    /// Requests to cancel running jobs.
    pub cancels: CancelRequests,
    /// Rows UDFs failed on.
    pub row_errors: RowErrorStore,
    /// What staged jobs wrote.
    pub staged: StagedStore,
    store: Arc<dyn object_store::ObjectStore>,
    dir: object_store::path::Path,
}

impl TableStores {
    /// The stores of the table at `table`, in its object store.
    pub async fn open(table: &TableLocation) -> Result<Self> {
        let registry = Arc::new(ObjectStoreRegistry::default());
        let (store, dir) = LanceObjectStore::from_uri_and_params(registry, &table.uri, &table.store_params())
            .await
            .map_err(|error| {
                storage_error(&table.uri, &error)
                    .unwrap_or_else(|| Error::InvalidUri { uri: table.uri.clone(), reason: error.to_string() })
            })?;
        Ok(Self {
            checkpoints: CheckpointStore::new(store.inner.clone(), &dir),
            jobs: JobStore::new(store.inner.clone(), &dir),
            cancels: CancelRequests::new(store.inner.clone(), &dir),
            row_errors: RowErrorStore::new(store.inner.clone(), &dir),
            staged: StagedStore::new(store.inner.clone(), &dir),
            store: store.inner.clone(),
            dir,
        })
    }

    /// Job records, with those of dead processes marked interrupted.
    pub async fn job_records(&self) -> Result<Vec<JobRecord>> {
        let mut records = self.jobs.list().await?;
        for record in &mut records {
            self.mark_interrupted(record).await?;
        }
        Ok(records)
    }

    /// One job record, marked interrupted if its process died.
    pub async fn job_record(&self, id: &str) -> Result<Option<JobRecord>> {
        let Some(mut record) = self.jobs.get(id).await? else { return Ok(None) };
        self.mark_interrupted(&mut record).await?;
        Ok(Some(record))
    }

    /// Asks running job `id` to stop, from any process that reaches the
    /// table: the job stops after its batches in flight, keeps its
    /// checkpoints and is recorded `cancelled`. Returns its record as it
    /// stood when asked.
    pub async fn request_cancel(&self, table: &str, id: &str) -> Result<JobRecord> {
        let record = self
            .job_record(id)
            .await?
            .ok_or_else(|| Error::JobNotFound { table: table.to_string(), job_id: id.to_string() })?;
        if !matches!(record.status, JobStatus::Running | JobStatus::Queued) {
            return Err(Error::JobNotRunning { job_id: id.to_string(), status: record.status });
        }
        self.cancels.request(id).await?;
        Ok(record)
    }

    async fn mark_interrupted(&self, record: &mut JobRecord) -> Result<()> {
        let dead = match record.status {
            JobStatus::Running => !lease::is_held_by(self.store.clone(), &self.dir, &record.column, &record.id).await?,
            JobStatus::Queued => {
                let renewed = record.renewed_at_ms.unwrap_or(record.started_at_ms);
                unix_millis().saturating_sub(renewed) > QUEUED_STALE_AFTER.as_millis() as u64
            }
            _ => false,
        };
        if dead {
            record.status = JobStatus::Interrupted;
        }
        Ok(())
    }

    /// Takes the columns' leases for job `id`, or says which job holds
    /// one of them.
    pub(crate) async fn leases(&self, columns: &[String], id: &str) -> Result<JobLeases> {
        JobLeases::acquire(self.store.clone(), &self.dir, columns, id).await
    }

    /// Takes the lease `name` (a name no column has, such as
    /// `__view_refresh`) for `holder`, or says who holds it
    /// ([`Error::ColumnBusy`], naming `name`).
    pub async fn lease(&self, name: &str, holder: &str) -> Result<TableLease> {
        TableLease::acquire(self.store.clone(), &self.dir, name, holder).await
    }
}
