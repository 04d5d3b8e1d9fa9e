//! Checkpoint storage in an object store.
//!
//! Layout under the table's directory:
//! `_leman/checkpoints/batches/<key>.ckpt`, one object per batch, and
//! `fragments/<key>.json` (a [`FragmentRecord`]).
//!
//! A batch object is its record and its data in one put (so a record always
//! names complete bytes, and a batch costs one object, not two):
//! `u64 LE record length | record JSON | Arrow IPC stream of the output
//! column | SHA-256 of everything before`. An object whose hash does not
//! match (truncated, corrupted) is not trusted and is recomputed.
//!
//! Keys are hashes, so an object does not say by its name what it belongs
//! to; its record does ([`Origin`]), and
//! the record leads the object, so that clean-up reads a few hundred bytes
//! of each, not its data ([`CheckpointStore::batch_record`]).

use std::io::Cursor;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use lance_table::format::DataFile;
use object_store::path::Path;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::CheckpointError;
use crate::fills::FillIndex;
use crate::handoff::{Handoff, HandoffLimits};
use crate::key::CheckpointKey;

/// Counts a batch contributes to a job's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCounts {
    /// Rows the UDF computed.
    pub rows_computed: u64,
    /// Rows the `skip` policy left null.
    pub rows_skipped: u64,
}

/// What a checkpoint was computed from: the parts of its key that say
/// whether any later plan can still reach it (all but the filter and the
/// table). A batch's `data_files` are all its fragment's files; a fragment
/// record's, the fragment's input files (all but the column's own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The output column.
    pub column: String,
    /// The UDF's name.
    pub udf_name: String,
    /// The UDF's version as keys see it: its fingerprint (version, inputs
    /// and parameters).
    pub udf_version: String,
    /// The Lance fragment.
    pub fragment_id: u64,
    /// The fragment's data files it hashed, in fragment order.
    pub data_files: Vec<String>,
}

/// Describes one stored batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// Physical rows of the fragment the batch covers.
    pub rows: Range<u64>,
    /// Counts at the time it was computed.
    pub counts: BatchCounts,
    /// What it was computed from (absent in checkpoints of older versions).
    #[serde(default)]
    pub origin: Option<Origin>,
}

/// One object of the store, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// What it is.
    pub kind: ObjectKind,
    /// Its key, from its name.
    pub key: CheckpointKey,
    /// Its path in the table's store.
    pub path: Path,
    /// Bytes.
    pub size: u64,
    /// When it was last written.
    pub last_modified: std::time::SystemTime,
}

/// The kinds of checkpoint objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// A batch: its record and values.
    Batch,
    /// A fragment's record.
    Fragment,
}

/// Length of the hash that ends a batch object.
const HASH_LEN: usize = 32;

/// A batch object whose hash matched, read whole.
struct StoredBatch {
    record: BatchRecord,
    bytes: Vec<u8>,
    /// Where the Arrow IPC stream lies in `bytes`.
    ipc: Range<usize>,
}

impl StoredBatch {
    fn ipc(&self) -> &[u8] {
        &self.bytes[self.ipc.clone()]
    }
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
    /// What its key hashed: column, UDF version, fragment and the
    /// fragment's input files (absent in records of older versions).
    #[serde(default)]
    pub origin: Option<Origin>,
}

/// Reads and writes checkpoints of one table.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
    fills: FillIndex,
    /// Batches held in memory for writers of this process, if the job's
    /// writers share it ([`CheckpointStore::with_handoff`]).
    handoff: Option<Arc<Handoff>>,
}

impl CheckpointStore {
    /// Checkpoints of the table whose directory is `table_dir` in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, table_dir: &Path) -> Self {
        Self {
            fills: FillIndex::new(store.clone(), table_dir),
            store,
            root: table_dir.clone().join("_leman").join("checkpoints"),
            handoff: None,
        }
    }

    /// The same checkpoints, with a handoff of batches in memory from
    /// appliers to writers within `limits` (see [`crate::handoff`]): for
    /// a job whose every writer runs in this process and uses this store
    /// (or a clone). Spawns the task that stores held batches as they age
    /// on the current tokio runtime; without one, batches are stored at
    /// once. Call [`flush_held`](Self::flush_held) when the job stops.
    pub fn with_handoff(&self, limits: HandoffLimits) -> Self {
        let plain = Self { handoff: None, ..self.clone() };
        if tokio::runtime::Handle::try_current().is_err() {
            return plain;
        }
        let handoff = Arc::new(Handoff::new(limits));
        Handoff::spawn_flusher(&handoff, plain.clone());
        Self { handoff: Some(handoff), ..plain }
    }

    /// The handoff of this store, if it has one.
    pub fn handoff(&self) -> Option<&Handoff> {
        self.handoff.as_deref()
    }

    /// Which UDF filled each data file, in the same store.
    pub fn fills(&self) -> &FillIndex {
        &self.fills
    }

    /// Stores `batch` (one column: the output) as the checkpoint `key`.
    pub async fn put_batch(
        &self,
        key: &CheckpointKey,
        rows: Range<u64>,
        batch: &RecordBatch,
        counts: BatchCounts,
        origin: Origin,
    ) -> Result<BatchRecord, CheckpointError> {
        self.hand_off_batch(key, rows, batch, counts, origin, Duration::MAX).await
    }

    /// Checkpoints `batch`, whose computing again would cost `work`, as
    /// `key`: with a handoff, a cheap batch is only held in memory for the
    /// writer (see [`crate::handoff`]); otherwise it is stored, as
    /// [`put_batch`](Self::put_batch) does.
    pub async fn hand_off_batch(
        &self,
        key: &CheckpointKey,
        rows: Range<u64>,
        batch: &RecordBatch,
        counts: BatchCounts,
        origin: Origin,
        work: Duration,
    ) -> Result<BatchRecord, CheckpointError> {
        let record = BatchRecord { rows, counts, origin: Some(origin) };
        if let Some(handoff) = &self.handoff
            && handoff.hold_unstored(key, &record, batch, work)
        {
            return Ok(record);
        }
        self.store_batch(key, &record, batch).await?;
        if let Some(handoff) = &self.handoff {
            handoff.hold_stored(key, &record, batch);
        }
        Ok(record)
    }

    /// Stores batch `key` and its record as one object.
    pub(crate) async fn store_batch(&self, key: &CheckpointKey, record: &BatchRecord, batch: &RecordBatch) -> Result<(), CheckpointError> {
        let path = self.batch_path(key);
        let json = serde_json::to_vec(record).map_err(|source| CheckpointError::Record { path: path.clone(), source })?;
        let mut bytes = Vec::with_capacity(8 + json.len() + batch.get_array_memory_size() + 1024);
        bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&json);
        let mut bytes = encode_ipc(bytes, batch).map_err(|source| CheckpointError::Ipc { path: path.clone(), source })?;
        let hash = Sha256::digest(&bytes);
        bytes.extend_from_slice(&hash);
        self.put(&path, bytes).await
    }

    /// Batches `keys` are in a stored data file whose fragment record is
    /// stored: the handoff forgets them (those it never stored never will
    /// be). Without a handoff, nothing to do.
    pub async fn release_batches(&self, keys: &[CheckpointKey]) {
        if let Some(handoff) = &self.handoff {
            handoff.release(keys).await;
        }
    }

    /// Stores every batch the handoff holds unstored (the job stops, and
    /// keeps what it computed); returns how many.
    pub async fn flush_held(&self) -> Result<usize, CheckpointError> {
        match &self.handoff {
            Some(handoff) => handoff.flush(&Self { handoff: None, ..self.clone() }).await,
            None => Ok(0),
        }
    }

    /// The record of batch `key` if it is stored whole (or held).
    pub async fn find_batch(&self, key: &CheckpointKey) -> Result<Option<BatchRecord>, CheckpointError> {
        if let Some((record, _)) = self.handoff.as_ref().and_then(|handoff| handoff.get(key)) {
            return Ok(Some(record));
        }
        match self.read_object(key).await {
            Ok(Some(stored)) => Ok(Some(stored.record)),
            Ok(None) | Err(CheckpointError::HashMismatch { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Reads batch `key` with its record, checking its bytes; `None` if absent.
    /// A batch the handoff holds is taken from memory.
    pub async fn load_batch(&self, key: &CheckpointKey) -> Result<Option<(BatchRecord, RecordBatch)>, CheckpointError> {
        if let Some(held) = self.handoff.as_ref().and_then(|handoff| handoff.get(key)) {
            return Ok(Some(held));
        }
        let Some(stored) = self.read_object(key).await? else { return Ok(None) };
        let batch = decode_ipc(stored.ipc()).map_err(|source| CheckpointError::Ipc { path: self.batch_path(key), source })?;
        Ok(Some((stored.record, batch)))
    }

    /// Stores the fragment checkpoint `key`.
    pub async fn put_fragment(&self, key: &CheckpointKey, record: &FragmentRecord) -> Result<(), CheckpointError> {
        self.put_json(&self.fragment_path(key), record).await
    }

    /// The fragment checkpoint `key`, if stored.
    pub async fn find_fragment(&self, key: &CheckpointKey) -> Result<Option<FragmentRecord>, CheckpointError> {
        self.get_json(&self.fragment_path(key)).await
    }

    /// Deletes the batch checkpoints `keys` (those already gone are not an
    /// error); returns how many were deleted. The store deletes in bulk
    /// where it can (S3: a thousand keys a request).
    pub async fn delete_batches(&self, keys: &[CheckpointKey]) -> Result<u64, CheckpointError> {
        let paths: Vec<Path> = keys.iter().map(|key| self.batch_path(key)).collect();
        self.delete(paths).await
    }

    /// Deletes the fragment checkpoints `keys` (those already gone are not
    /// an error); returns how many were deleted.
    pub async fn delete_fragments(&self, keys: &[CheckpointKey]) -> Result<u64, CheckpointError> {
        let paths: Vec<Path> = keys.iter().map(|key| self.fragment_path(key)).collect();
        self.delete(paths).await
    }

    /// Deletes the objects at `paths` (as [`list`](Self::list) gives them);
    /// returns how many were there.
    pub async fn delete(&self, paths: Vec<Path>) -> Result<u64, CheckpointError> {
        let first = paths.first().cloned().unwrap_or_else(|| self.root.clone());
        let locations = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let mut deleted = 0;
        let mut results = self.store.delete_stream(locations);
        while let Some(result) = results.next().await {
            match result {
                Ok(_) => deleted += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(CheckpointError::Store { path: first, source }),
            }
        }
        Ok(deleted)
    }

    /// Every batch and fragment object of the table.
    pub async fn list(&self) -> Result<Vec<StoredObject>, CheckpointError> {
        self.list_under(&self.root).await
    }

    /// Every batch object of the table.
    pub async fn list_batches(&self) -> Result<Vec<StoredObject>, CheckpointError> {
        let batches = self.root.clone().join("batches");
        Ok(self.list_under(&batches).await?.into_iter().filter(|object| object.kind == ObjectKind::Batch).collect())
    }

    async fn list_under(&self, prefix: &Path) -> Result<Vec<StoredObject>, CheckpointError> {
        let store_error = |source| CheckpointError::Store { path: prefix.clone(), source };
        let metas: Vec<object_store::ObjectMeta> = self.store.list(Some(prefix)).try_collect().await.map_err(store_error)?;
        let objects = metas.into_iter().filter_map(|meta| {
            let name = meta.location.filename()?;
            let (kind, key) = match (name.strip_suffix(".ckpt"), name.strip_suffix(".json")) {
                (Some(key), _) => (ObjectKind::Batch, key),
                (_, Some(key)) => (ObjectKind::Fragment, key),
                _ => return None,
            };
            Some(StoredObject {
                kind,
                key: CheckpointKey::from_hex(key)?,
                size: meta.size,
                last_modified: meta.last_modified.into(),
                path: meta.location,
            })
        });
        Ok(objects.collect())
    }

    /// The record at the head of batch `key`, read without its values (one
    /// ranged read, two for a record of more than 4 KiB); `None` if absent
    /// or unreadable. The hash is not checked: that needs the whole object.
    pub async fn batch_record(&self, key: &CheckpointKey) -> Result<Option<BatchRecord>, CheckpointError> {
        const HEAD: u64 = 4096;
        let path = self.batch_path(key);
        let store_error = |source| CheckpointError::Store { path: path.clone(), source };
        let head = match self.store.get_range(&path, 0..HEAD).await {
            Ok(bytes) => bytes,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(store_error(source)),
        };
        let Some(len) = head.first_chunk::<8>().map(|len| u64::from_le_bytes(*len)) else { return Ok(None) };
        let Some(end) = len.checked_add(8) else { return Ok(None) };
        let json = if end <= head.len() as u64 {
            head.slice(8..end as usize)
        } else {
            match self.store.get_range(&path, 8..end).await {
                Ok(bytes) => bytes,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(source) => return Err(store_error(source)),
            }
        };
        Ok(serde_json::from_slice(&json).ok())
    }

    /// Path of a batch's object, for tests and tools that inspect checkpoints.
    pub fn batch_path(&self, key: &CheckpointKey) -> Path {
        self.root.clone().join("batches").join(format!("{key}.ckpt"))
    }

    fn fragment_path(&self, key: &CheckpointKey) -> Path {
        self.root.clone().join("fragments").join(format!("{key}.json"))
    }

    /// Batch `key`'s object, if stored; one whose hash does not match is an
    /// error.
    async fn read_object(&self, key: &CheckpointKey) -> Result<Option<StoredBatch>, CheckpointError> {
        let path = self.batch_path(key);
        let Some(bytes) = self.get(&path).await? else { return Ok(None) };
        let mismatch = || {
            tracing::warn!(%path, "checkpoint does not match its hash; recomputing it");
            CheckpointError::HashMismatch { path: path.clone() }
        };
        let Some(body_len) = bytes.len().checked_sub(HASH_LEN) else { return Err(mismatch()) };
        if Sha256::digest(&bytes[..body_len]).as_slice() != &bytes[body_len..] {
            return Err(mismatch());
        }
        let json_len = match bytes.first_chunk::<8>() {
            Some(len) => usize::try_from(u64::from_le_bytes(*len)).map_err(|_| mismatch())?,
            None => return Err(mismatch()),
        };
        let json_end = 8usize.checked_add(json_len).filter(|end| *end <= body_len).ok_or_else(mismatch)?;
        let record: BatchRecord = serde_json::from_slice(&bytes[8..json_end])
            .map_err(|source| CheckpointError::Record { path: path.clone(), source })?;
        Ok(Some(StoredBatch { record, bytes, ipc: json_end..body_len }))
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
            // No copy when the store handed over the only reference.
            Ok(result) => Ok(Some(Vec::from(result.bytes().await.map_err(store_error)?))),
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

/// Appends `batch` as an Arrow IPC stream to `out`.
fn encode_ipc(out: Vec<u8>, batch: &RecordBatch) -> Result<Vec<u8>, arrow_schema::ArrowError> {
    let mut writer = StreamWriter::try_new(out, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    writer.into_inner()
}

/// The one batch of an Arrow IPC stream (an empty one if it has none).
fn decode_ipc(bytes: &[u8]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let mut reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    let schema = reader.schema();
    let batch = reader.next().transpose()?.unwrap_or_else(|| RecordBatch::new_empty(schema));
    if reader.next().is_some() {
        return Err(arrow_schema::ArrowError::IpcError("expected one batch in a checkpoint, found more".to_string()));
    }
    Ok(batch)
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

    fn parts() -> KeyParts<'static> {
        KeyParts {
            udf_name: "f", udf_version: "1", column: "out", filter: "out IS NULL",
            table: "t", fragment_id: 0, data_files: vec!["a.lance".into()],
        }
    }

    fn key() -> CheckpointKey {
        parts().batch_key(0..3)
    }

    #[tokio::test]
    async fn batches_round_trip_and_corruption_reads_as_absent() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = CheckpointStore::new(Arc::new(LocalFileSystem::new_with_prefix(dir.path())?), &Path::from("t"));
        let key = key();
        assert_eq!(store.find_batch(&key).await?, None);
        let counts = BatchCounts { rows_computed: 2, rows_skipped: 0 };
        let record = store.put_batch(&key, 0..3, &batch(), counts, parts().origin()).await?;
        assert_eq!(store.find_batch(&key).await?, Some(record.clone()));
        assert_eq!(store.load_batch(&key).await?, Some((record.clone(), batch())));
        assert_eq!(store.batch_record(&key).await?, Some(record.clone()), "the record alone, from the object's head");
        assert_eq!(record.origin.as_ref().map(|o| o.data_files.clone()), Some(vec!["a.lance".to_string()]));

        let data = dir.path().join(store.batch_path(&key).to_string());
        let good = std::fs::read(&data)?;
        for damage in [good.len() / 2, good.len() - 1] {
            let mut bytes = good.clone();
            bytes[damage] ^= 0xff;
            std::fs::write(&data, bytes)?;
            assert_eq!(store.find_batch(&key).await?, None, "a corrupt checkpoint is not trusted");
            assert!(matches!(store.load_batch(&key).await, Err(CheckpointError::HashMismatch { .. })));
        }
        std::fs::write(&data, &good[..good.len() / 3])?;
        assert_eq!(store.find_batch(&key).await?, None, "nor is a truncated one");
        std::fs::write(&data, &good[..3])?;
        assert_eq!(store.find_batch(&key).await?, None, "nor a stub");
        Ok(())
    }
}

#[cfg(test)]
mod listing {
    use super::*;
    use crate::KeyParts;
    use arrow_array::{Int32Array, RecordBatch};
    use object_store::local::LocalFileSystem;

    #[tokio::test]
    async fn objects_are_listed_by_kind_and_deleted_in_bulk() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = CheckpointStore::new(Arc::new(LocalFileSystem::new_with_prefix(dir.path())?), &Path::from("t"));
        let parts = KeyParts {
            udf_name: "f", udf_version: "1", column: "out", filter: "out IS NULL",
            table: "t", fragment_id: 7, data_files: vec![],
        };
        let batch = RecordBatch::try_from_iter([("out", Arc::new(Int32Array::from(vec![1, 2])) as _)])?;
        let keys: Vec<CheckpointKey> = (0..3).map(|i| parts.batch_key(i * 2..i * 2 + 2)).collect();
        for (i, key) in keys.iter().enumerate() {
            let rows = i as u64 * 2..i as u64 * 2 + 2;
            store.put_batch(key, rows, &batch, BatchCounts::default(), parts.origin()).await?;
        }
        let data_file = lance_table::format::DataFile::new_legacy_from_fields("d.lance", vec![0], None);
        let record = FragmentRecord { data_file, base_output_file: None, origin: Some(parts.origin()) };
        store.put_fragment(&parts.fragment_key(), &record).await?;
        assert_eq!(store.find_fragment(&parts.fragment_key()).await?, Some(record));

        let mut listed = store.list().await?;
        listed.sort_by_key(|o| (o.kind, o.key.as_str().to_string()));
        let kinds: Vec<ObjectKind> = listed.iter().map(|o| o.kind).collect();
        assert_eq!(kinds, [ObjectKind::Batch, ObjectKind::Batch, ObjectKind::Batch, ObjectKind::Fragment]);
        assert!(listed.iter().all(|o| o.size > 0));
        assert_eq!(store.batch_record(&keys[1]).await?.map(|r| r.rows), Some(2..4));

        assert_eq!(store.delete_batches(&keys[..2]).await?, 2);
        assert_eq!(store.delete_batches(&keys[..2]).await?, 0, "deleting what is gone is no error");
        assert_eq!(store.find_batch(&keys[0]).await?, None);
        assert!(store.find_batch(&keys[2]).await?.is_some());
        assert_eq!(store.list().await?.len(), 2);
        assert_eq!(store.batch_record(&keys[0]).await?, None);
        Ok(())
    }
}
