//! Storage that fails under a job: ambiguous commits (the manifest is
//! written but the write reports an error, or the process dies right after
//! it) and failed puts of a data file, a checkpoint or the manifest. The
//! job ends exact or with a clean one-line error, a re-run ends exact, and
//! nothing is applied twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use leman::{AddColumnsOptions, BackfillOptions, Error, Job, Table};
use leman_engine::testing::faults::{Fault, Faults, Request};

use crate::engine::support::{Calls, Fixture, column, doubling, fixture, run};

const FRAGMENTS: usize = 4;
const ROWS: usize = 100;

/// A table with `doubled` declared, its calls counted.
async fn declared() -> (Fixture, Arc<Calls>) {
    let f = fixture(FRAGMENTS, ROWS).await;
    let calls = Arc::new(Calls::default());
    f.table.add_columns([("doubled", doubling(calls.clone(), |_| Ok(())))], AddColumnsOptions::default()).await.unwrap();
    (f, calls)
}

/// The same table, its stores wrapped by `faults`.
async fn through(f: &Fixture, faults: Arc<Faults>) -> Table {
    Table::open_at(f.table.location().clone().with_store_wrapper(faults), f.table.registry().clone()).await.unwrap()
}

fn options() -> BackfillOptions {
    BackfillOptions::default().batch_size(50).commit_granularity(FRAGMENTS)
}

async fn assert_filled(table: &Table) {
    table.dataset().await.unwrap().validate().await.expect("the dataset validates");
    let values = column(table, "doubled").await;
    assert_eq!(values.len(), FRAGMENTS * ROWS);
    assert!(values.iter().all(|(id, v)| *v == Some(id * 2)), "every row is exact");
}

/// Starts a backfill once the column's lease is free (a job that died
/// holds it until it goes stale); at most 40 s.
async fn backfill_when_free(table: &Table) -> Job {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        match table.backfill("doubled", options()).await {
            Ok(job) => return job,
            Err(Error::ColumnBusy { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => panic!("the re-run did not start: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_written_but_reported_failed_counts_once() {
    let (f, _) = declared().await;
    let before = f.table.version().await.unwrap();
    let faults = Faults::new();
    let ambiguous = faults.inject(Request::Put, "_versions/", 1, Fault::FailAfter);
    let table = through(&f, faults).await;
    let summary = run(table.backfill("doubled", options()).await.unwrap()).await.1.unwrap();
    assert!(ambiguous.fired());
    assert_eq!(summary.commits, 1);
    assert_eq!(f.table.version().await.unwrap(), before + 1, "the commit is applied once");
    assert_filled(&f.table).await;
}

/// The process dies right after its manifest is written: the job runs on a
/// runtime of its own, shut down while the write's answer is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_dies_right_after_its_manifest_write_is_recognised_by_the_re_run() {
    let (f, calls) = declared().await;
    let before = f.table.version().await.unwrap();
    let faults = Faults::new();
    let landed = faults.inject(Request::Put, "_versions/", 1, Fault::HoldAfter);
    let process = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (location, registry) = (f.table.location().clone().with_store_wrapper(faults), f.table.registry().clone());
    process.spawn(async move {
        let table = Table::open_at(location, registry).await.expect("open");
        let job = table.backfill("doubled", options()).await.expect("start");
        job.wait().await
    });
    assert!(landed.reached(Duration::from_secs(60)).await, "the job never wrote its manifest");
    process.shutdown_background();
    assert_eq!(f.table.version().await.unwrap(), before + 1, "the manifest landed");
    let computed = calls.total();
    assert_eq!(computed, FRAGMENTS * ROWS);

    let summary = run(backfill_when_free(&f.table).await).await.1.unwrap();
    assert_eq!((summary.commits, summary.rows_computed), (0, 0), "nothing is applied or computed twice: {summary:?}");
    assert_eq!(calls.total(), computed);
    assert_eq!(f.table.version().await.unwrap(), before + 1);
    assert_filled(&f.table).await;
}

/// The Nth put of a checkpoint or of the manifest fails. (On the local
/// file system lance writes data files past the object store: a failed put
/// of a data file is tested on S3, in `cli::s3`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_put_ends_exact_or_with_a_clean_error_and_a_re_run_ends_exact() {
    for (what, path, nth) in [("checkpoint", "_leman/checkpoints/", 3), ("manifest", "_versions/", 1)] {
        let (f, _) = declared().await;
        let faults = Faults::new();
        let failure = faults.inject(Request::Put, path, nth, Fault::Fail);
        let table = through(&f, faults).await;
        let outcome = run(table.backfill("doubled", options()).await.unwrap()).await.1;
        assert!(failure.fired(), "{what}: the fault was never reached");
        match outcome {
            Ok(_) => assert_filled(&f.table).await,
            Err(error) => {
                let message = error.to_string();
                assert!(!message.contains('\n'), "{what}: one line: {message}");
                assert!(message.contains("injected fault"), "{what}: the error names its cause: {message}");
                run(f.table.backfill("doubled", options()).await.unwrap()).await.1.unwrap();
                assert_filled(&f.table).await;
            }
        }
    }
}
