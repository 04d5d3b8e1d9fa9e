//! Fragment readers kept open across a job's tasks.
//!
//! Opening a fragment reader opens its data files and reads their
//! metadata; a fragment has tens of tasks (250k rows in batches of 10k),
//! and a task of a cheap UDF costs about as much as the opening. The
//! appliers of one job (in one process) share the readers they open, a
//! bounded number of them, the oldest dropped first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use lance::dataset::fragment::{FileFragment, FragReadConfig, FragmentReader};
use lance_core::datatypes::Schema as LanceSchema;

use crate::error::ApplierError;

/// Fragments whose readers stay open: more than the fragments a job has in
/// flight (its shuffle diversity, 8 by default, and the appliers').
const OPEN_READERS: usize = 64;

/// Open readers of one projection, by fragment.
#[derive(Debug)]
pub(crate) struct FragmentReaders {
    open: Mutex<Opened>,
    /// Readers kept open at most.
    capacity: usize,
}

impl Default for FragmentReaders {
    fn default() -> Self {
        Self::with_capacity(OPEN_READERS)
    }
}

#[derive(Debug, Default)]
struct Opened {
    readers: HashMap<u64, Arc<FragmentReader>>,
    /// Fragment ids, oldest opened first.
    order: VecDeque<u64>,
}

impl FragmentReaders {
    /// Readers of at most `capacity` fragments open at once (at least one).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self { open: Mutex::default(), capacity: capacity.max(1) }
    }

    fn opened(&self) -> std::sync::MutexGuard<'_, Opened> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A reader of `schema`'s columns of `fragment`, every physical row
    /// (deleted ones included): the one open, or a new one.
    pub(crate) async fn reader(&self, fragment: &FileFragment, schema: &LanceSchema) -> Result<Arc<FragmentReader>, ApplierError> {
        let id = fragment.id() as u64;
        if let Some(reader) = self.opened().readers.get(&id) {
            return Ok(reader.clone());
        }
        let reader = Arc::new(fragment.open(schema, FragReadConfig::default().with_ignore_deletions(true)).await?);
        let mut opened = self.opened();
        if opened.readers.insert(id, reader.clone()).is_none() {
            opened.order.push_back(id);
        }
        while opened.order.len() > self.capacity {
            if let Some(oldest) = opened.order.pop_front() {
                opened.readers.remove(&oldest);
            }
        }
        Ok(reader)
    }

    /// How many readers are open.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.opened().readers.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch, RecordBatchIterator};
    use arrow_schema::{DataType, Field, Schema};
    use lance::Dataset;
    use lance::dataset::WriteParams;

    use super::FragmentReaders;

    /// A Lance table of three fragments of ten rows, in a temp dir.
    async fn three_fragments(dir: &std::path::Path) -> Dataset {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from_iter_values(0..30))]).expect("batch");
        let params = WriteParams { max_rows_per_file: 10, ..Default::default() };
        let uri = dir.join("t.lance");
        let reader = RecordBatchIterator::new([Ok(batch)], schema);
        Dataset::write(reader, uri.to_str().expect("utf-8 path"), Some(params)).await.expect("write table")
    }

    #[tokio::test]
    async fn a_fragment_is_opened_once_for_its_tasks_and_the_oldest_is_dropped_past_capacity() {
        let dir = tempfile::tempdir().expect("temp dir");
        let dataset = three_fragments(dir.path()).await;
        let fragments = dataset.get_fragments();
        assert_eq!(fragments.len(), 3);
        let schema = dataset.schema().clone();
        let readers = FragmentReaders::with_capacity(2);

        let first = readers.reader(&fragments[0], &schema).await.expect("open 0");
        let again = readers.reader(&fragments[0], &schema).await.expect("reuse 0");
        assert!(Arc::ptr_eq(&first, &again), "a second task of a fragment reuses its reader");
        assert_eq!(readers.len(), 1);

        readers.reader(&fragments[1], &schema).await.expect("open 1");
        readers.reader(&fragments[2], &schema).await.expect("open 2");
        assert_eq!(readers.len(), 2, "at most `capacity` readers stay open");
        let reopened = readers.reader(&fragments[0], &schema).await.expect("reopen 0");
        assert!(!Arc::ptr_eq(&first, &reopened), "the oldest reader was dropped and is opened anew");
        assert_eq!(readers.len(), 2);
    }
}
