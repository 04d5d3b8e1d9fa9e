//! The driver against an executor played by the test: appliers and writers
//! run as local actors on a real Lance table, but the test decides when
//! there is room for an applier and reports appliers gone, as a cluster
//! would. Every start, release and task the driver asks for is recorded.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayRef, Int32Array, RecordBatch};
use arrow_schema::{DataType, Field};
use futures::TryStreamExt;
use futures::future::BoxFuture;
use lance::Dataset;
use lance_table::format::DataFile;
use leman_engine::{FragmentWrite, Udf};
use tokio::sync::mpsc;

use leman_engine::testing::{UdfTable, udf_table};
use leman_engine::{
    ApplierHandle, ApplierOutcome, BackfillOptions, Executor, ExecutorEvent, Job, JobExecutor, JobSetup,
    LocalExecutor, Result, TaskSpec, WriteFailure, start,
};

/// What the test tells the executor, and what the driver asked of it.
#[derive(Debug, Default)]
struct Script {
    /// Applier indexes with no room.
    no_room: Mutex<HashSet<usize>>,
    /// `(index, incarnation)` of every start asked for.
    starts: Mutex<Vec<(usize, u64)>>,
    /// Indexes released as gone.
    released: Mutex<Vec<usize>>,
    events: Mutex<Option<mpsc::UnboundedReceiver<Vec<ExecutorEvent>>>>,
    /// Where each start waits until the starts of all appliers have begun.
    meet: Option<Arc<tokio::sync::Barrier>>,
    /// The fragment of every task handed to an applier, in the order the
    /// driver handed them out.
    assigned: Mutex<Vec<u64>>,
}

impl Script {
    fn starts(&self) -> Vec<(usize, u64)> {
        self.starts.lock().unwrap().clone()
    }

    /// Waits (at most 30 s) until `done` holds of the starts.
    async fn wait_for_starts(&self, what: &str, done: impl Fn(&[(usize, u64)]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(&self.starts()) {
            assert!(Instant::now() < deadline, "{what}: starts so far {:?}", self.starts());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[derive(Debug)]
struct Scripted(Arc<Script>);

impl Executor for Scripted {
    fn open(&self, job: &JobSetup) -> Result<Box<dyn JobExecutor>> {
        let events = self.0.events.lock().unwrap().take();
        Ok(Box::new(ScriptedJob { local: LocalExecutor.open(job)?, script: self.0.clone(), events, running: Arc::default() }))
    }
}

#[derive(Debug)]
struct ScriptedJob {
    local: Box<dyn JobExecutor>,
    script: Arc<Script>,
    events: Option<mpsc::UnboundedReceiver<Vec<ExecutorEvent>>>,
    running: Arc<Mutex<Vec<Started>>>,
}

/// An applier the scripted executor started, by index.
type Started = (usize, Arc<dyn ApplierHandle>);

impl JobExecutor for ScriptedJob {
    fn start_applier(&mut self, index: usize, incarnation: u64) -> BoxFuture<'static, Result<Option<Arc<dyn ApplierHandle>>>> {
        self.script.starts.lock().unwrap().push((index, incarnation));
        if self.script.no_room.lock().unwrap().contains(&index) {
            return Box::pin(async { Ok(None) });
        }
        let start = self.local.start_applier(index, incarnation);
        let (running, script) = (self.running.clone(), self.script.clone());
        Box::pin(async move {
            if let Some(meet) = &script.meet {
                meet.wait().await;
            }
            let started = start.await?.map(|inner| Arc::new(Recorded { inner, script }) as Arc<dyn ApplierHandle>);
            if let Some(handle) = &started {
                running.lock().unwrap().push((index, handle.clone()));
            }
            Ok(started)
        })
    }

    fn applier_gone(&mut self, index: usize) {
        self.script.released.lock().unwrap().push(index);
        // Played as gone: the actor itself is stopped here.
        let mut running = self.running.lock().unwrap();
        for (_, handle) in running.iter().filter(|(i, _)| *i == index) {
            drop(handle.stop());
        }
        running.retain(|(i, _)| *i != index);
        drop(running);
        self.local.applier_gone(index);
    }

    fn write_fragment(&mut self, write: FragmentWrite) -> BoxFuture<'static, std::result::Result<DataFile, WriteFailure>> {
        self.local.write_fragment(write)
    }

    fn next_events(&mut self) -> BoxFuture<'_, Vec<ExecutorEvent>> {
        Box::pin(async move {
            match self.events.as_mut() {
                Some(events) => match events.recv().await {
                    Some(batch) => batch,
                    None => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        })
    }

    fn stop(&mut self) -> BoxFuture<'_, leman_engine::StoreTally> {
        self.local.stop()
    }
}

/// An applier that records the tasks handed to it in the script.
#[derive(Debug)]
struct Recorded {
    inner: Arc<dyn ApplierHandle>,
    script: Arc<Script>,
}

impl ApplierHandle for Recorded {
    fn run(&self, task: TaskSpec) -> BoxFuture<'static, ApplierOutcome> {
        self.script.assigned.lock().unwrap().push(task.fragment_id);
        self.inner.run(task)
    }

    fn stop(&self) -> BoxFuture<'static, ()> {
        self.inner.stop()
    }
}

/// A gate UDF calls wait on until the test opens it.
#[derive(Debug, Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn wait(&self) -> std::result::Result<(), String> {
        let open = self.open.lock().unwrap();
        let (open, _) = self.opened.wait_timeout_while(open, Duration::from_secs(60), |open| !*open).unwrap();
        if *open { Ok(()) } else { Err("the test never opened the gate".to_string()) }
    }
}

/// `text_len` (the table's UDF, same name and version), held at `gate`.
fn gated(gate: Arc<Gate>) -> Udf {
    Udf::array("text_len", Field::new("n", DataType::Int32, true), &["text"], move |cols| {
        gate.wait()?;
        let lengths: Int32Array = cols[0].as_string::<i32>().iter().map(|s| s.map(|s| s.len() as i32)).collect();
        Ok(Arc::new(lengths) as ArrayRef)
    })
    .with_version("1")
}

/// Every row of `n` holds the length of its `text`.
async fn assert_filled(table: &UdfTable) {
    let dataset = Dataset::open(&table.uri).await.unwrap();
    let mut scan = dataset.scan();
    scan.project(&["text", "n"]).unwrap();
    let batches: Vec<RecordBatch> = scan.try_into_stream().await.unwrap().try_collect().await.unwrap();
    let mut rows = 0;
    for batch in &batches {
        let (text, n) = (batch.column(0).as_string::<i32>(), batch.column(1).as_primitive::<Int32Type>());
        for row in 0..batch.num_rows() {
            assert!(n.is_valid(row), "row {row} is null");
            assert_eq!(n.value(row), text.value(row).len() as i32, "row {row}");
        }
        rows += batch.num_rows();
    }
    assert_eq!(rows, 4000);
}

struct Run {
    table: UdfTable,
    script: Arc<Script>,
    events: mpsc::UnboundedSender<Vec<ExecutorEvent>>,
    gate: Arc<Gate>,
    job: Job,
}

/// A gated backfill of 4 fragments of 1000 rows in tasks of 250, with
/// `options`, on an executor with no room for the appliers in `no_room`;
/// with `meet`, each applier's start waits until all have begun.
async fn run(options: BackfillOptions, no_room: &[usize], meet: bool) -> Run {
    let table = udf_table(4000, 1000).await.unwrap();
    let meet = meet.then(|| Arc::new(tokio::sync::Barrier::new(options.concurrency)));
    let script = Arc::new(Script { meet, ..Script::default() });
    script.no_room.lock().unwrap().extend(no_room);
    let (events, events_in) = mpsc::unbounded_channel();
    *script.events.lock().unwrap() = Some(events_in);
    let gate = Arc::new(Gate::default());
    let options = options.batch_size(250).udf(gated(gate.clone()));
    let job = start(&table.location(), "n", options, &table.registry, Arc::new(Scripted(script.clone()))).await.unwrap();
    Run { table, script, events, gate, job }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applier_without_room_waits_for_room_and_then_starts() {
    let r = run(BackfillOptions::default().concurrency(2), &[1], false).await;
    r.script.wait_for_starts("applier 1 asked for", |s| s == [(0, 1), (1, 2)]).await;
    r.script.no_room.lock().unwrap().clear();
    r.events.send(vec![ExecutorEvent::Room]).unwrap();
    r.script.wait_for_starts("applier 1 started on room", |s| s.contains(&(1, 3))).await;
    r.gate.open();
    let summary = tokio::time::timeout(Duration::from_secs(60), r.job.wait()).await.unwrap().unwrap();
    assert_eq!(summary.rows_computed, 4000);
    assert_eq!(r.script.starts(), [(0, 1), (1, 2), (1, 3)], "no start without room, one on room");
    assert_filled(&r.table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applier_reported_gone_starts_again_and_stale_news_is_ignored() {
    let r = run(BackfillOptions::default().concurrency(1), &[], false).await;
    r.script.wait_for_starts("applier 0 started", |s| s == [(0, 1)]).await;
    let gone = |incarnation| ExecutorEvent::ApplierGone { index: 0, incarnation, reason: "played".into() };
    r.events.send(vec![gone(7)]).unwrap(); // no such incarnation: stale
    r.events.send(vec![gone(1)]).unwrap();
    r.script.wait_for_starts("applier 0 started again", |s| s == [(0, 1), (0, 2)]).await;
    assert_eq!(*r.script.released.lock().unwrap(), [0], "released once, for the current incarnation only");
    r.gate.open();
    let summary = tokio::time::timeout(Duration::from_secs(60), r.job.wait()).await.unwrap().unwrap();
    assert_eq!(summary.rows_computed, 4000, "each row counted once, late results of the gone applier included");
    assert_filled(&r.table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_s_appliers_start_together_not_one_after_another() {
    let r = run(BackfillOptions::default().concurrency(3), &[], true).await;
    r.gate.open();
    let waited = tokio::time::timeout(Duration::from_secs(30), r.job.wait()).await;
    let summary = waited.expect("no applier started: the driver awaited each start before asking for the next").unwrap();
    assert_eq!(summary.rows_computed, 4000);
    assert_eq!(r.script.starts(), [(0, 1), (1, 2), (2, 3)]);
    assert_filled(&r.table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_handed_out_across_fragments_not_one_fragment_after_another() {
    let r = run(BackfillOptions::default().concurrency(1).task_shuffle_diversity(4), &[], false).await;
    r.gate.open();
    let summary = tokio::time::timeout(Duration::from_secs(60), r.job.wait()).await.unwrap().unwrap();
    assert_eq!(summary.rows_computed, 4000);
    // The driver's order, not the UDF's: an applier reads its tasks in
    // flight at once and computes each as its read ends.
    let assigned = r.script.assigned.lock().unwrap().clone();
    let mut sorted = assigned.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3], "each of the 16 tasks once: {assigned:?}");
    // One fragment after another would hand out 0, 0, 0, 0, 1, ...
    let first_five: HashSet<u64> = assigned[..5].iter().copied().collect();
    assert_eq!(first_five.len(), 4, "every fragment under way within the first five tasks: {assigned:?}");
    for pair in assigned.windows(2) {
        assert_ne!(pair[0], pair[1], "one fragment's tasks back to back: {assigned:?}");
    }
    assert_filled(&r.table).await;
}
