//! Batches handed from an applier to a writer of the same process, in
//! memory.
//!
//! Without a handoff, every batch is encoded, stored, read back, checked and
//! decoded before its fragment's writer encodes it again for Lance. Where a
//! job's appliers and writers share a process (an embedded job), the writer
//! takes each batch from memory instead; a batch is stored only when it is
//! worth storing:
//!
//! - a batch that would cost more to compute again than to store
//!   ([`HandoffLimits::store_above`]: the applier judges by its UDF's CPU
//!   time, or its wall time where the UDF waited) is stored at once, as
//!   without a handoff, so that expensive work is durable as soon as done;
//! - a cheap batch stays in memory only, until its fragment's data file and
//!   record are stored ([`Handoff::release`]): most batches of a cheap UDF
//!   never reach the store, nor need deleting;
//! - a cheap batch that waits longer than [`HandoffLimits::flush_after`] is
//!   stored then, and every held batch is stored when the job stops before
//!   its fragment is written ([`Handoff::flush`]): a cancelled or failed job
//!   keeps all it computed.
//!
//! Once their fragment is committed, batches are deleted; the handoff says
//! which of them it released without ever storing
//! ([`Handoff::forget_unstored`]), so that those cost no request.
//!
//! A crash (the process killed) loses the cheap batches not yet stored: at
//! most [`HandoffLimits::held_work`] of work and `flush_after` of age,
//! which the re-run recomputes. Held batches that would pass
//! [`HandoffLimits::memory`] are stored at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;

use crate::error::CheckpointError;
use crate::key::CheckpointKey;
use crate::store::{BatchRecord, CheckpointStore};

/// When a batch is held in memory rather than stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandoffLimits {
    /// A batch that would cost longer to compute again is stored at once.
    pub store_above: Duration,
    /// The most work the held, unstored batches may stand for: what a
    /// crash may cost the re-run.
    pub held_work: Duration,
    /// The most bytes of held batches (stored or not).
    pub memory: usize,
    /// A held batch is stored once it has waited this long.
    pub flush_after: Duration,
}

impl Default for HandoffLimits {
    /// A local write costs about a millisecond, a PUT to S3 tens: below a
    /// millisecond of UDF work, recomputing a batch is cheaper than storing
    /// it. At most 1 s of such work (what a re-run costs to start, about;
    /// a job of a cheap UDF holds a few hundred batches of 0.1-0.3 ms as
    /// its fragments fill), 64 MiB and 2 s of age are at risk.
    fn default() -> Self {
        Self {
            store_above: Duration::from_millis(1),
            held_work: Duration::from_secs(1),
            memory: 64 << 20,
            flush_after: Duration::from_secs(2),
        }
    }
}

/// The batches of one job held in memory; shared by its appliers and
/// writers through their [`CheckpointStore`].
#[derive(Debug)]
pub struct Handoff {
    limits: HandoffLimits,
    held: Mutex<Held>,
    /// Held by a flush while it stores batches: [`Handoff::release`] waits
    /// for it, so that no batch is stored after its release (and its
    /// fragment's commit deleted it).
    flushing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Held {
    batches: HashMap<CheckpointKey, HeldBatch>,
    bytes: usize,
    /// Work the held batches not stored stand for.
    unstored_work: Duration,
    /// Batches released without ever being stored, until
    /// [`Handoff::forget_unstored`] is asked about them.
    released_unstored: HashSet<CheckpointKey>,
}

#[derive(Debug)]
struct HeldBatch {
    record: BatchRecord,
    batch: RecordBatch,
    bytes: usize,
    work: Duration,
    since: Instant,
    stored: bool,
}

impl Held {
    fn remove(&mut self, key: &CheckpointKey) -> Option<HeldBatch> {
        self.released_unstored.remove(key);
        let held = self.batches.remove(key)?;
        self.bytes -= held.bytes;
        if !held.stored {
            self.unstored_work = self.unstored_work.saturating_sub(held.work);
        }
        Some(held)
    }
}

impl Handoff {
    /// An empty handoff within `limits`.
    pub fn new(limits: HandoffLimits) -> Self {
        Self { limits, held: Mutex::new(Held::default()), flushing: tokio::sync::Mutex::new(()) }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds batch `key`, whose computing again would cost `work`, in
    /// memory unstored; `false` when it must be stored now (too costly, or past a
    /// limit).
    pub(crate) fn hold_unstored(&self, key: &CheckpointKey, record: &BatchRecord, batch: &RecordBatch, work: Duration) -> bool {
        if work > self.limits.store_above {
            return false;
        }
        let bytes = batch.get_array_memory_size();
        let mut held = self.held();
        held.remove(key);
        if held.bytes + bytes > self.limits.memory || held.unstored_work + work > self.limits.held_work {
            return false;
        }
        held.bytes += bytes;
        held.unstored_work += work;
        let batch = HeldBatch { record: record.clone(), batch: batch.clone(), bytes, work, since: Instant::now(), stored: false };
        held.batches.insert(key.clone(), batch);
        true
    }

    /// Holds batch `key`, just stored, for the writer to take without
    /// reading it back, where memory allows.
    pub(crate) fn hold_stored(&self, key: &CheckpointKey, record: &BatchRecord, batch: &RecordBatch) {
        let bytes = batch.get_array_memory_size();
        let mut held = self.held();
        held.remove(key);
        if held.bytes + bytes <= self.limits.memory {
            held.bytes += bytes;
            let batch =
                HeldBatch { record: record.clone(), batch: batch.clone(), bytes, work: Duration::ZERO, since: Instant::now(), stored: true };
            held.batches.insert(key.clone(), batch);
        }
    }

    /// Batch `key` with its record, if held.
    pub(crate) fn get(&self, key: &CheckpointKey) -> Option<(BatchRecord, RecordBatch)> {
        self.held().batches.get(key).map(|held| (held.record.clone(), held.batch.clone()))
    }

    /// Forgets batches `keys`, whose fragment's data file and record are
    /// stored: held ones that were never stored never will be.
    pub async fn release(&self, keys: &[CheckpointKey]) {
        {
            let mut held = self.held();
            for key in keys {
                if held.remove(key).is_some_and(|batch| !batch.stored) {
                    held.released_unstored.insert(key.clone());
                }
            }
        }
        // A flush that took some of them before they were forgotten ends
        // before this does.
        drop(self.flushing.lock().await);
    }

    /// Of `keys`, those this handoff may have stored: all but the batches
    /// it released without ever storing, which it forgets. (An object of
    /// such a key may still be in the store from before this job: the job
    /// lists those when it plans.)
    pub fn forget_unstored(&self, keys: Vec<CheckpointKey>) -> Vec<CheckpointKey> {
        let mut held = self.held();
        keys.into_iter().filter(|key| !held.released_unstored.remove(key)).collect()
    }

    /// Stores every held batch not stored yet (they stay held); returns
    /// how many it stored.
    pub async fn flush(&self, store: &CheckpointStore) -> Result<usize, CheckpointError> {
        self.flush_where(store, |_| true).await
    }

    /// Stores the held batches that have waited past `flush_after`.
    async fn flush_aged(&self, store: &CheckpointStore) -> Result<usize, CheckpointError> {
        let flush_after = self.limits.flush_after;
        self.flush_where(store, |held| held.since.elapsed() >= flush_after).await
    }

    async fn flush_where(&self, store: &CheckpointStore, due: impl Fn(&HeldBatch) -> bool) -> Result<usize, CheckpointError> {
        let _flushing = self.flushing.lock().await;
        let due: Vec<(CheckpointKey, BatchRecord, RecordBatch)> = self
            .held()
            .batches
            .iter()
            .filter(|(_, held)| !held.stored && due(held))
            .map(|(key, held)| (key.clone(), held.record.clone(), held.batch.clone()))
            .collect();
        for (key, record, batch) in &due {
            store.store_batch(key, record, batch).await?;
            let mut held = self.held();
            let held = &mut *held;
            if let Some(batch) = held.batches.get_mut(key)
                && !batch.stored
            {
                batch.stored = true;
                held.unstored_work = held.unstored_work.saturating_sub(batch.work);
            }
        }
        Ok(due.len())
    }

    /// Stores held batches as they age past `flush_after`, into `store`,
    /// until the handoff is dropped. Needs a tokio runtime.
    pub(crate) fn spawn_flusher(handoff: &Arc<Handoff>, store: CheckpointStore) {
        let every = (handoff.limits.flush_after / 4).max(Duration::from_millis(50));
        let handoff: Weak<Handoff> = Arc::downgrade(handoff);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(handoff) = handoff.upgrade() else { return };
                if let Err(error) = handoff.flush_aged(&store).await {
                    tracing::warn!(%error, "could not store held checkpoints; trying again");
                }
            }
        });
    }

    /// How many batches are held, and how many of them are not stored.
    pub fn counts(&self) -> (usize, usize) {
        let held = self.held();
        (held.batches.len(), held.batches.values().filter(|held| !held.stored).count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BatchCounts, CheckpointStore};
    use crate::KeyParts;
    use arrow_array::Int32Array;
    use object_store::local::LocalFileSystem;
    use object_store::path::Path;

    type Result = std::result::Result<(), Box<dyn std::error::Error>>;

    fn parts() -> KeyParts<'static> {
        KeyParts {
            udf_name: "f", udf_version: "1", column: "out", filter: "out IS NULL",
            table: "t", fragment_id: 0, data_files: vec!["a.lance".into()],
        }
    }

    fn batch(rows: i32) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
        RecordBatch::try_from_iter([("out", Arc::new(Int32Array::from_iter_values(0..rows)) as _)])
    }

    /// The table's checkpoints without a handoff (what another process, or
    /// a re-run, finds) and with one.
    fn stores(dir: &tempfile::TempDir, limits: HandoffLimits) -> std::result::Result<(CheckpointStore, CheckpointStore), object_store::Error> {
        let plain = CheckpointStore::new(Arc::new(LocalFileSystem::new_with_prefix(dir.path())?), &Path::from("t"));
        let handing = plain.with_handoff(limits);
        Ok((plain, handing))
    }

    const NEVER: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn a_cheap_batch_reaches_the_writer_in_memory_and_never_the_store_once_released() -> Result {
        let dir = tempfile::tempdir()?;
        let (plain, handing) = stores(&dir, HandoffLimits { flush_after: NEVER, ..HandoffLimits::default() })?;
        let key = parts().batch_key(0..3);
        let record = handing.hand_off_batch(&key, 0..3, &batch(3)?, BatchCounts::default(), parts().origin(), Duration::ZERO).await?;
        assert_eq!(plain.find_batch(&key).await?, None, "held, not stored");
        assert_eq!(handing.load_batch(&key).await?, Some((record.clone(), batch(3)?)), "the writer takes it from memory");
        assert_eq!(handing.find_batch(&key).await?, Some(record));
        handing.release_batches(std::slice::from_ref(&key)).await;
        assert_eq!(handing.handoff().map(Handoff::counts), Some((0, 0)));
        assert_eq!(handing.flush_held().await?, 0, "a released batch is never stored");
        assert_eq!(plain.find_batch(&key).await?, None);
        let handoff = handing.handoff().ok_or("no handoff")?;
        let unknown = parts().batch_key(3..6);
        assert_eq!(handoff.forget_unstored(vec![key.clone(), unknown.clone()]), vec![unknown.clone()], "its commit need not delete it");
        assert_eq!(handoff.forget_unstored(vec![key.clone()]), vec![key], "asked once, then forgotten");
        Ok(())
    }

    #[tokio::test]
    async fn held_batches_are_stored_when_the_job_stops_and_when_they_age() -> Result {
        let dir = tempfile::tempdir()?;
        let (plain, handing) = stores(&dir, HandoffLimits { flush_after: NEVER, ..HandoffLimits::default() })?;
        let keys: Vec<CheckpointKey> = (0..3).map(|i| parts().batch_key(i * 3..i * 3 + 3)).collect();
        for (i, key) in keys.iter().enumerate() {
            let rows = i as u64 * 3..i as u64 * 3 + 3;
            handing.hand_off_batch(key, rows, &batch(3)?, BatchCounts::default(), parts().origin(), Duration::ZERO).await?;
        }
        handing.release_batches(&keys[..1]).await;
        assert_eq!(handing.flush_held().await?, 2, "the job stops: what is still held is stored");
        handing.release_batches(&keys[1..2]).await;
        let handoff = handing.handoff().ok_or("no handoff")?;
        assert_eq!(handoff.forget_unstored(keys[..2].to_vec()), keys[1..2].to_vec(), "a batch stored before its release is deleted");
        assert_eq!(plain.find_batch(&keys[0]).await?, None);
        assert_eq!(plain.load_batch(&keys[1]).await?.map(|(_, batch)| batch), Some(batch(3)?));
        assert!(plain.find_batch(&keys[2]).await?.is_some());
        assert_eq!(handing.flush_held().await?, 0, "stored once");

        let (plain, handing) = stores(&dir, HandoffLimits { flush_after: Duration::from_millis(100), ..HandoffLimits::default() })?;
        let key = parts().batch_key(100..103);
        handing.hand_off_batch(&key, 100..103, &batch(3)?, BatchCounts::default(), parts().origin(), Duration::ZERO).await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while plain.find_batch(&key).await?.is_none() {
            assert!(Instant::now() < deadline, "a held batch past flush_after was never stored");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(handing.handoff().map(Handoff::counts), Some((1, 0)), "stored, and still held for the writer");
        Ok(())
    }

    #[tokio::test]
    async fn costly_batches_and_batches_past_a_limit_are_stored_at_once() -> Result {
        let dir = tempfile::tempdir()?;
        let limits = HandoffLimits { flush_after: NEVER, held_work: Duration::from_millis(1), ..HandoffLimits::default() };
        let (plain, handing) = stores(&dir, limits)?;
        let keys: Vec<CheckpointKey> = (0..3).map(|i| parts().batch_key(i * 3..i * 3 + 3)).collect();
        let put = |i: usize, work: Duration| {
            let (handing, key) = (handing.clone(), keys[i].clone());
            async move {
                let rows = i as u64 * 3..i as u64 * 3 + 3;
                handing.hand_off_batch(&key, rows, &batch(3)?, BatchCounts::default(), parts().origin(), work).await?;
                Ok::<_, Box<dyn std::error::Error>>(())
            }
        };
        put(0, Duration::from_millis(5)).await?;
        assert!(plain.find_batch(&keys[0]).await?.is_some(), "5 ms of work is worth storing at once");
        put(1, Duration::from_micros(800)).await?;
        assert_eq!(plain.find_batch(&keys[1]).await?, None, "0.8 ms is not");
        put(2, Duration::from_micros(800)).await?;
        assert!(plain.find_batch(&keys[2]).await?.is_some(), "past 1 ms of held work, batches are stored");
        assert_eq!(handing.handoff().map(Handoff::counts), Some((3, 1)), "all three are held for the writer");

        let (plain, handing) = stores(&dir, HandoffLimits { memory: 1, ..limits })?;
        let key = parts().batch_key(50..53);
        handing.hand_off_batch(&key, 50..53, &batch(3)?, BatchCounts::default(), parts().origin(), Duration::ZERO).await?;
        assert!(plain.find_batch(&key).await?.is_some(), "past the memory limit, batches are stored");
        assert_eq!(handing.handoff().map(Handoff::counts), Some((0, 0)), "and not held");
        Ok(())
    }
}
