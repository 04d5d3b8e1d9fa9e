//! Checkpoint storage in an object store.
//!
//! Layout under the table's directory:
//! `_leman/checkpoints/batches/<key>.arrow` (the batch's output column as an
//! Arrow IPC stream), `batches/<key>.json` (its [`BatchRecord`], written after
//! the data so that a record always names complete bytes) and
//! `fragments/<key>.json` (a [`FragmentRecord`]).

use std::io::Cursor;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use lance_table::format::DataFile;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::{CheckpointError, CheckpointKey};

/// Counts a batch contributes to a job's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCounts {
    /// Rows the UDF computed.
    pub rows_computed: u64,
    /// Rows the `skip` policy left null.
    pub rows_skipped: u64,
}

/// Describes one stored batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// Physical rows of the fragment the batch covers.
    pub rows: Range<u64>,
    /// SHA-256 of the batch's IPC bytes, hex.
    pub data_sha256: String,
    /// Length of those bytes.
    pub data_len: u64,
    /// Counts at the time it was computed.
    pub counts: BatchCounts,
}

/// Describes a fragment's written, maybe not yet committed, data file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FragmentRecord {
    /// The new data file, holding only the output column.
    pub data_file: DataFile,
    /// The file the output column's previous values were read from (`None`
    /// if the column had never been written for this fragment). The record
    /// is only good while the fragment still reads the column from there.
    pub base_output_file: Option<String>,
}

/// Reads and writes checkpoints of one table.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
}

impl CheckpointStore {
    /// Checkpoints of the table whose directory is `table_dir` in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, table_dir: &Path) -> Self {
        Self { store, root: table_dir.clone().join("_leman").join("checkpoints") }
    }

    /// Stores `batch` (one column: the output) as the checkpoint `key`.
    pub async fn put_batch(
        &self,
        key: &CheckpointKey,
        rows: Range<u64>,
        batch: &RecordBatch,
        counts: BatchCounts,
    ) -> Result<BatchRecord, CheckpointError> {
        let data_path = self.batch_data_path(key);
        let bytes = encode_ipc(batch).map_err(|source| CheckpointError::Ipc { path: data_path.clone(), source })?;
        let record = BatchRecord {
            rows,
            data_sha256: hex::encode(Sha256::digest(&bytes)),
            data_len: bytes.len() as u64,
            counts,
        };
        self.put(&data_path, bytes).await?;
        self.put_json(&self.batch_record_path(key), &record).await?;
        Ok(record)
    }

    /// The record of batch `key` if it is stored and its bytes match its hash.
    pub async fn find_batch(&self, key: &CheckpointKey) -> Result<Option<BatchRecord>, CheckpointError> {
        let Some(record) = self.get_json::<BatchRecord>(&self.batch_record_path(key)).await? else {
            return Ok(None);
        };
        match self.read_verified(key, &record).await {
            Ok(Some(_)) => Ok(Some(record)),
            Ok(None) | Err(CheckpointError::HashMismatch { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Reads batch `key`, checking its bytes against `record`.
    pub async fn read_batch(&self, key: &CheckpointKey, record: &BatchRecord) -> Result<RecordBatch, CheckpointError> {
        let path = self.batch_data_path(key);
        let bytes = self.read_verified(key, record).await?.ok_or_else(|| CheckpointError::Store {
            path: path.clone(),
            source: object_store::Error::NotFound { path: path.to_string(), source: "checkpoint data is missing".into() },
        })?;
        decode_ipc(&bytes).map_err(|source| CheckpointError::Ipc { path, source })
    }

    /// Reads batch `key` with its record, checking its bytes; `None` if absent.
    pub async fn load_batch(&self, key: &CheckpointKey) -> Result<Option<(BatchRecord, RecordBatch)>, CheckpointError> {
        let Some(record) = self.get_json::<BatchRecord>(&self.batch_record_path(key)).await? else {
            return Ok(None);
        };
        let batch = self.read_batch(key, &record).await?;
        Ok(Some((record, batch)))
    }

    /// Stores the fragment checkpoint `key`.
    pub async fn put_fragment(&self, key: &CheckpointKey, record: &FragmentRecord) -> Result<(), CheckpointError> {
        self.put_json(&self.fragment_path(key), record).await
    }

    /// The fragment checkpoint `key`, if stored.
    pub async fn find_fragment(&self, key: &CheckpointKey) -> Result<Option<FragmentRecord>, CheckpointError> {
        self.get_json(&self.fragment_path(key)).await
    }

    /// Path of a batch's data, for tests and tools that inspect checkpoints.
    pub fn batch_data_path(&self, key: &CheckpointKey) -> Path {
        self.root.clone().join("batches").join(format!("{key}.arrow"))
    }

    fn batch_record_path(&self, key: &CheckpointKey) -> Path {
        self.root.clone().join("batches").join(format!("{key}.json"))
    }

    fn fragment_path(&self, key: &CheckpointKey) -> Path {
        self.root.clone().join("fragments").join(format!("{key}.json"))
    }

    async fn read_verified(&self, key: &CheckpointKey, record: &BatchRecord) -> Result<Option<Vec<u8>>, CheckpointError> {
        let path = self.batch_data_path(key);
        let Some(bytes) = self.get(&path).await? else { return Ok(None) };
        if bytes.len() as u64 != record.data_len || hex::encode(Sha256::digest(&bytes)) != record.data_sha256 {
            tracing::warn!(%path, "checkpoint does not match its recorded hash; recomputing it");
            return Err(CheckpointError::HashMismatch { path });
        }
        Ok(Some(bytes))
    }

    async fn put(&self, path: &Path, bytes: Vec<u8>) -> Result<(), CheckpointError> {
        self.store
            .put(path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|source| CheckpointError::Store { path: path.clone(), source })
    }

    async fn get(&self, path: &Path) -> Result<Option<Vec<u8>>, CheckpointError> {
        let store_error = |source| CheckpointError::Store { path: path.clone(), source };
        match self.store.get(path).await {
            Ok(result) => Ok(Some(result.bytes().await.map_err(store_error)?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(store_error(source)),
        }
    }

    async fn put_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), CheckpointError> {
        let bytes = serde_json::to_vec(value).map_err(|source| CheckpointError::Record { path: path.clone(), source })?;
        self.put(path, bytes).await
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &Path) -> Result<Option<T>, CheckpointError> {
        let Some(bytes) = self.get(path).await? else { return Ok(None) };
        match serde_json::from_slice(&bytes) {
            Ok(value) => Ok(Some(value)),
            Err(error) => {
                tracing::warn!(%path, %error, "unreadable checkpoint record; treating it as absent");
                Ok(None)
            }
        }
    }
}

fn encode_ipc(batch: &RecordBatch) -> Result<Vec<u8>, arrow_schema::ArrowError> {
    let mut writer = StreamWriter::try_new(Vec::new(), &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    writer.into_inner()
}

fn decode_ipc(bytes: &[u8]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    arrow_select_concat(&schema, &batches)
}

fn arrow_select_concat(schema: &arrow_schema::SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    match batches {
        [one] => Ok(one.clone()),
        [] => Ok(RecordBatch::new_empty(schema.clone())),
        _ => Err(arrow_schema::ArrowError::IpcError(format!(
            "expected one batch in a checkpoint, found {}",
            batches.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyParts;
    use arrow_array::{Int32Array, RecordBatch};
    use object_store::local::LocalFileSystem;

    fn batch() -> RecordBatch {
        let column = Arc::new(Int32Array::from(vec![Some(1), None, Some(3)]));
        match RecordBatch::try_from_iter([("out", column as _)]) {
            Ok(batch) => batch,
            Err(error) => panic!("{error}"),
        }
    }

    fn key() -> CheckpointKey {
        KeyParts {
            udf_name: "f", udf_version: "1", column: "out", filter: "out IS NULL",
            table: "t", fragment_id: 0, data_files: vec![],
        }
        .batch_key(0..3)
    }

    #[tokio::test]
    async fn batches_round_trip_and_corruption_reads_as_absent() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = CheckpointStore::new(Arc::new(LocalFileSystem::new_with_prefix(dir.path())?), &Path::from("t"));
        let key = key();
        assert_eq!(store.find_batch(&key).await?, None);
        let counts = BatchCounts { rows_computed: 2, rows_skipped: 0 };
        let record = store.put_batch(&key, 0..3, &batch(), counts).await?;
        assert_eq!(store.find_batch(&key).await?, Some(record.clone()));
        assert_eq!(store.read_batch(&key, &record).await?, batch());

        let data = dir.path().join(store.batch_data_path(&key).to_string());
        let mut bytes = std::fs::read(&data)?;
        let last = bytes.len() - 9;
        bytes[last] ^= 0xff;
        std::fs::write(&data, bytes)?;
        assert_eq!(store.find_batch(&key).await?, None, "a corrupt checkpoint is not trusted");
        assert!(matches!(store.read_batch(&key, &record).await, Err(CheckpointError::HashMismatch { .. })));
        Ok(())
    }
}
