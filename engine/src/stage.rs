//! Staged backfills: written, not committed.
//!
//! A job run with [`BackfillOptions::stage`](crate::BackfillOptions::stage)
//! computes and writes each fragment's data file as any job does, then,
//! where another would commit, keeps the file aside: its [`StagedJob`]
//! (`_leman/staged/<job>.json`) lists each fragment's data file and the
//! fragment checkpoint that names it. Readers see no change. The job ends
//! `staged`; [`promote`](crate::promote) commits it, [`discard`] removes
//! its files.

use std::sync::Arc;

use lance_table::format::DataFile;
use leman_checkpoint::CheckpointKey;
use leman_scheduler::{JobRecord, JobStatus};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Error, Result};
use crate::location::TableLocation;
use crate::stores::TableStores;

/// One fragment's data file, written and not committed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StagedFragment {
    /// Lance fragment id.
    pub fragment_id: u64,
    /// The file written, as the table's manifest would name it.
    pub data_file: DataFile,
    /// The fragment checkpoint that names the file.
    pub fragment_key: CheckpointKey,
}

/// What a staged job wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StagedJob {
    /// Job id.
    pub job_id: String,
    /// The column (the lead of unpacked siblings) it computed.
    pub column: String,
    /// The table version its files were written against.
    pub read_version: u64,
    /// Its fragments, by id.
    pub fragments: Vec<StagedFragment>,
}

impl StagedJob {
    /// Bytes of its data files.
    pub fn bytes(&self) -> u64 {
        self.fragments.iter().filter_map(|f| f.data_file.file_size_bytes.get()).map(std::num::NonZero::get).sum()
    }
}

/// The staged jobs of one table.
#[derive(Debug, Clone)]
pub struct StagedStore {
    store: Arc<dyn ObjectStore>,
    dir: Path,
}

impl StagedStore {
    /// The staged jobs of the table whose directory is `table_dir`.
    pub fn new(store: Arc<dyn ObjectStore>, table_dir: &Path) -> Self {
        Self { store, dir: table_dir.clone().join("_leman").join("staged") }
    }

    fn path(&self, job_id: &str) -> Path {
        self.dir.clone().join(format!("{job_id}.json"))
    }

    /// Keeps `job`.
    pub async fn put(&self, job: &StagedJob) -> Result<()> {
        let bytes = serde_json::to_vec(job).map_err(|e| Error::Io(e.into()))?;
        self.store.put(&self.path(&job.job_id), PutPayload::from(bytes)).await.map_err(store_error)?;
        Ok(())
    }

    /// What job `job_id` staged, if it staged anything.
    pub async fn get(&self, job_id: &str) -> Result<Option<StagedJob>> {
        match self.store.get(&self.path(job_id)).await {
            Ok(found) => {
                let bytes = found.bytes().await.map_err(store_error)?;
                let job = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Io(std::io::Error::other(format!("staged job {job_id}: unreadable record ({e})")))
                })?;
                Ok(Some(job))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(store_error(error)),
        }
    }

    /// Forgets job `job_id` (its files stay).
    pub async fn remove(&self, job_id: &str) -> Result<()> {
        match self.store.delete(&self.path(job_id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(store_error(error)),
        }
    }
}

fn store_error(error: object_store::Error) -> Error {
    Error::Io(std::io::Error::other(format!("staged jobs: {error}")))
}

/// The record and staged files of `job_id`, which must be staged.
pub(crate) async fn staged_job(table: &TableLocation, stores: &TableStores, job_id: &str) -> Result<(JobRecord, StagedJob)> {
    let record = stores
        .job_record(job_id)
        .await?
        .ok_or_else(|| Error::JobNotFound { table: table.uri.clone(), job_id: job_id.to_string() })?;
    if record.status != JobStatus::Staged {
        return Err(Error::NotStaged { job_id: job_id.to_string(), status: record.status });
    }
    let staged = stores.staged.get(job_id).await?.ok_or_else(|| Error::NotStaged { job_id: job_id.to_string(), status: record.status })?;
    Ok((record, staged))
}

/// Removes what staged job `job_id` wrote: its data files and the fragment
/// checkpoints naming them (a later backfill computes those fragments
/// again). The job is recorded `discarded`. Returns the bytes removed.
pub async fn discard(table: &TableLocation, job_id: &str) -> Result<u64> {
    let stores = TableStores::open(table).await?;
    let (mut record, staged) = staged_job(table, &stores, job_id).await?;
    let dataset = table.open_dataset().await?;
    let data_dir = dataset.data_dir();
    let files: Vec<Path> = staged.fragments.iter().map(|f| data_dir.clone().join(f.data_file.path.as_str())).collect();
    let keys: Vec<CheckpointKey> = staged.fragments.iter().map(|f| f.fragment_key.clone()).collect();
    // The checkpoints first: one left naming a removed file would make a
    // later backfill commit a file that is gone.
    stores.checkpoints.delete_fragments(&keys).await?;
    let object_store = dataset.object_store(None).await?;
    for file in &files {
        match object_store.delete(file).await {
            Ok(()) => {}
            Err(lance::Error::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    record.status = JobStatus::Discarded;
    stores.jobs.put(&record).await?;
    stores.staged.remove(job_id).await?;
    Ok(staged.bytes())
}
