//! Running a backfill in this process: resolve, plan, drive.
//!
//! [`resolve`] checks everything a user can get wrong (column, UDF, inputs,
//! types, filter, options) before any work starts. [`plan`] finds what is
//! already done in checkpoints and in the table. [`driver`] then pumps the
//! sans-IO [`leman_scheduler::Scheduler`] like quinn pumps quinn-proto: it
//! carries out its commands with applier and writer actors and the
//! committer, and feeds what happens back as events. No decision about the
//! job is made here.

mod driver;
mod executor;
mod placement;
mod plan;
mod resolve;

pub(crate) use executor::write_locally;
pub(crate) use placement::{ClusterEvent, ClusterView, Placement};


use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use lance::io::ObjectStore as LanceObjectStore;
use leman_checkpoint::CheckpointStore;
use tokio::sync::{mpsc, watch};

use crate::jobs::JobStore;
use crate::lease::ColumnLease;
use crate::{BackfillOptions, Error, Job, Result, Table};

/// Storage beside a table: checkpoints and job records.
#[derive(Debug, Clone)]
pub(crate) struct TableStores {
    pub checkpoints: CheckpointStore,
    pub jobs: JobStore,
    store: Arc<dyn object_store::ObjectStore>,
    dir: object_store::path::Path,
}

impl TableStores {
    pub async fn open(uri: &str) -> Result<Self> {
        let (store, dir) = LanceObjectStore::from_uri(uri)
            .await
            .map_err(|e| Error::InvalidUri { uri: uri.to_string(), reason: e.to_string() })?;
        Ok(Self {
            checkpoints: CheckpointStore::new(store.inner.clone(), &dir),
            jobs: JobStore::new(store.inner.clone(), &dir),
            store: store.inner.clone(),
            dir,
        })
    }

    /// Job records, with those of dead processes marked interrupted.
    pub async fn job_records(&self) -> Result<Vec<leman_scheduler::JobRecord>> {
        let mut records = self.jobs.list().await?;
        for record in &mut records {
            self.mark_interrupted(record).await?;
        }
        Ok(records)
    }

    /// One job record, marked interrupted if its process died.
    pub async fn job_record(&self, id: &str) -> Result<Option<leman_scheduler::JobRecord>> {
        let Some(mut record) = self.jobs.get(id).await? else { return Ok(None) };
        self.mark_interrupted(&mut record).await?;
        Ok(Some(record))
    }

    async fn mark_interrupted(&self, record: &mut leman_scheduler::JobRecord) -> Result<()> {
        if record.status == leman_scheduler::JobStatus::Running
            && !crate::lease::is_held_by(self.store.as_ref(), &self.dir, &record.column, &record.id).await?
        {
            record.status = leman_scheduler::JobStatus::Interrupted;
        }
        Ok(())
    }

    /// Takes the column's lease for job `id`.
    pub async fn lease(&self, column: &str, id: &str) -> Result<ColumnLease> {
        ColumnLease::acquire(self.store.clone(), &self.dir, column, id).await
    }
}

/// Validates, plans and starts a backfill of `column` in this process.
pub(crate) async fn start(table: &Table, column: &str, options: BackfillOptions) -> Result<Job> {
    start_on(table, column, options, Placement::Embedded).await
}

/// Validates, plans and starts a backfill of `column` with `placement`.
pub(crate) async fn start_on(table: &Table, column: &str, options: BackfillOptions, placement: Placement) -> Result<Job> {
    let resolved = resolve::resolve(table, column, &options).await?;
    let stores = TableStores::open(table.uri()).await?;
    let id = new_job_id();
    let lease = stores.lease(column, &id).await?;
    let plan = match plan::plan(&resolved, &stores.checkpoints, &options).await {
        Ok(plan) => plan,
        Err(error) => {
            lease.release().await;
            return Err(error);
        }
    };
    let (events, receiver) = mpsc::unbounded_channel();
    let (cancel, cancelled) = watch::channel(false);
    let driver = match driver::Driver::new(
        id.clone(),
        Arc::new(resolved),
        stores,
        plan,
        &options,
        placement,
        driver::JobChannels { user: events, cancelled },
    ) {
        Ok(driver) => driver,
        Err(error) => {
            lease.release().await;
            return Err(error);
        }
    };
    let outcome = tokio::spawn(async move {
        let outcome = driver.run().await;
        lease.release().await;
        outcome
    });
    Ok(Job::new(id, receiver, outcome, cancel))
}

fn new_job_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
