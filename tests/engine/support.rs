//! Helpers shared by the engine tests: sample tables, UDFs that count their
//! calls, column readers and bounded waits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field};
use futures::TryStreamExt;
use leman::{CreateTableOptions, Job, JobEvent, Table, Udf};

/// A table in a temp dir: `fragments` fragments of `rows` rows, columns
/// `id` (0..n), `text` and `grp` (id % 10).
pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub table: Table,
}

pub async fn fixture(fragments: usize, rows: usize) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = leman::connect(dir.path().to_str().expect("utf-8 path")).await.expect("connect");
    let table = db
        .create_table("t", vec![batch(0, fragments * rows)], CreateTableOptions { max_rows_per_file: rows, ..Default::default() })
        .await
        .expect("create table");
    assert_eq!(table.dataset().await.expect("open").get_fragments().len(), fragments);
    Fixture { _dir: dir, table }
}

/// Rows `first..first + n` of the sample schema.
pub fn batch(first: usize, n: usize) -> RecordBatch {
    let ids: Vec<i64> = (first..first + n).map(|i| i as i64).collect();
    let text: Vec<String> = ids.iter().map(|i| format!("row {i}")).collect();
    let group: Vec<i64> = ids.iter().map(|i| i % 10).collect();
    let columns: [(&str, ArrayRef); 3] = [
        ("id", Arc::new(Int64Array::from(ids))),
        ("text", Arc::new(StringArray::from(text))),
        ("grp", Arc::new(Int64Array::from(group))),
    ];
    RecordBatch::try_from_iter(columns).expect("batch")
}

/// Counts the calls of a UDF per row id, and its peak of concurrent calls.
#[derive(Default)]
pub struct Calls {
    per_id: Mutex<HashMap<i64, usize>>,
    running: AtomicUsize,
    peak: AtomicUsize,
}

impl Calls {
    pub fn total(&self) -> usize {
        self.per_id.lock().expect("lock").values().sum()
    }

    pub fn of(&self, id: i64) -> usize {
        self.per_id.lock().expect("lock").get(&id).copied().unwrap_or(0)
    }

    pub fn reset(&self) {
        self.per_id.lock().expect("lock").clear();
    }

    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    fn enter(&self, ids: &[i64]) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let mut per_id = self.per_id.lock().expect("lock");
        for id in ids {
            *per_id.entry(*id).or_default() += 1;
        }
    }

    fn leave(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `doubled = id * 2`, counting calls in `calls`, running `hook` on each
/// call's ids first (to fail, panic, block or sleep).
pub fn doubling(calls: Arc<Calls>, hook: impl Fn(&[i64]) -> Result<(), String> + Send + Sync + 'static) -> Udf {
    Udf::array("doubling", Field::new("doubled", DataType::Int64, true), &["id"], move |cols| {
        let ids = cols[0].as_primitive::<Int64Type>();
        calls.enter(ids.values());
        let outcome = hook(ids.values());
        calls.leave();
        outcome?;
        Ok(Arc::new(ids.unary::<_, Int64Type>(|v| v * 2)) as ArrayRef)
    })
    .with_version("1")
}

/// [`doubling`] that fails ("the model server is down") on the call holding
/// row `id` while the returned switch is on; turn it off to let a re-run
/// succeed.
pub fn failing_at(calls: Arc<Calls>, id: i64) -> (Udf, Arc<AtomicBool>) {
    let failing = Arc::new(AtomicBool::new(true));
    let fail = failing.clone();
    let udf = doubling(calls, move |ids| {
        if fail.load(Ordering::SeqCst) && ids.contains(&id) {
            return Err("the model server is down".to_string());
        }
        Ok(())
    });
    (udf, failing)
}

/// `(id, column)` for every live row, sorted by id, from a fresh open.
pub async fn column(table: &Table, name: &str) -> Vec<(i64, Option<i64>)> {
    let dataset = table.dataset().await.expect("open");
    let mut scan = dataset.scan();
    scan.project(&["id", name]).expect("project");
    let batches: Vec<RecordBatch> = scan.try_into_stream().await.expect("scan").try_collect().await.expect("read");
    let mut rows: Vec<(i64, Option<i64>)> = batches
        .iter()
        .flat_map(|b| {
            let ids = b.column(0).as_primitive::<Int64Type>().clone();
            let values = b.column(1).as_primitive::<Int64Type>().clone();
            (0..b.num_rows()).map(move |i| (ids.value(i), values.is_valid(i).then(|| values.value(i))))
        })
        .collect();
    rows.sort();
    rows
}

/// Runs a job to its end, returning its events and outcome.
pub async fn run(job: Job) -> (Vec<JobEvent>, leman::Result<leman::Summary>) {
    let mut events = Vec::new();
    while let Some(event) = within(Duration::from_secs(120), job.next_event()).await {
        events.push(event);
    }
    (events, job.wait().await)
}

/// Waits (at most a minute) for an event of `job` that `wanted` picks; a
/// job that ends first is a panic naming how it ended.
pub async fn until_event(job: &Job, wanted: impl Fn(&JobEvent) -> bool) -> JobEvent {
    within(Duration::from_secs(60), async {
        loop {
            match job.next_event().await {
                Some(event) if wanted(&event) => return event,
                Some(JobEvent::Failed(failure)) => panic!("the job failed first: {failure}"),
                Some(JobEvent::Finished(summary)) => panic!("the job finished first: {summary:?}"),
                Some(_) => {}
                None => panic!("the job ended first"),
            }
        }
    })
    .await
}

/// `future`, or a panic if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, future).await.unwrap_or_else(|_| panic!("not done within {limit:?}"))
}

/// A gate UDF calls can wait on until the test opens it.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    pub fn open(&self) {
        *self.open.lock().expect("lock") = true;
        self.changed.notify_all();
    }

    /// Blocks until opened, for at most `limit`.
    pub fn wait(&self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let mut open = self.open.lock().expect("lock");
        while !*open {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("gate was never opened".to_string());
            }
            open = self.changed.wait_timeout(open, left).expect("lock").0;
        }
        Ok(())
    }
}

/// Asserts that `table` validates and that every data file its manifest
/// names exists.
pub async fn assert_sound(table: &Table) {
    let dataset = table.dataset().await.unwrap();
    dataset.validate().await.expect("the dataset validates");
    let store = dataset.object_store(None).await.unwrap();
    for fragment in dataset.get_fragments() {
        for file in &fragment.metadata().files {
            let path = dataset.data_dir().join(file.path.as_str());
            assert!(store.exists(&path).await.unwrap(), "data file {path} is referenced but missing");
        }
    }
}
