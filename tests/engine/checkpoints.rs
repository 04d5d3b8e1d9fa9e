//! Resuming: a failed or cancelled job, run again, recomputes no
//! checkpointed batch, even with another batch size; a corrupted
//! checkpoint is recomputed. A commit deletes its fragments' batches, and
//! only those that may be stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use leman::bench::requests::{Area, Op, RequestCounter};
use leman::{AddColumnsOptions, BackfillOptions, Error, JobEvent, JobStatus, Table};

use crate::engine::support::{Calls, Gate, column, doubling, failing_at, fixture, run, until_event};

fn snapshot(calls: &Calls, ids: std::ops::Range<i64>) -> HashMap<i64, usize> {
    ids.map(|id| (id, calls.of(id))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_resumes_from_its_checkpoints_and_distrusts_corrupt_ones() {
    let f = fixture(4, 100).await;
    let calls = Arc::new(Calls::default());
    let (udf, failing) = failing_at(calls.clone(), 365);
    f.table.add_columns([("doubled", udf)], AddColumnsOptions::default()).await.unwrap();
    let version = f.table.version().await.unwrap();
    let options = BackfillOptions::default().batch_size(20).concurrency(1).task_shuffle_diversity(1).commit_at_end();
    let (_, outcome) = run(f.table.backfill("doubled", options.clone()).await.unwrap()).await;
    let Err(Error::JobFailed { failure, .. }) = outcome else { panic!("expected a failure, got {outcome:?}") };
    assert_eq!((failure.fragment_id, failure.rows.clone()), (Some(3), Some(60..80)), "{failure}");
    assert!(failure.message.contains("the model server is down"), "{failure}");
    assert_eq!(f.table.version().await.unwrap(), version, "nothing was committed");
    assert!(column(&f.table, "doubled").await.iter().all(|(_, v)| v.is_none()));
    let first = snapshot(&calls, 0..400);

    // Corrupt the last stored batch (fragment 3's, whose data file was not
    // written): it must be recomputed, not trusted.
    let dir = std::path::Path::new(f.table.uri()).join("_leman/checkpoints/batches");
    let mut stored: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ckpt"))
        .map(|p| (std::fs::metadata(&p).unwrap().modified().unwrap(), p))
        .collect();
    stored.sort();
    // Fragments 0-2 were written, their records cover them; fragment 3's
    // batches before the failing one were stored as the job stopped, the
    // newest of all. (On a loaded machine, batches of fragments 0-2 held
    // past 2 s were stored too.)
    assert!((3..=20).contains(&stored.len()), "batches before the failure are checkpointed: {}", stored.len());
    let newest = &stored[stored.len() - 1].1;
    let mut bytes = std::fs::read(newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(newest, bytes).unwrap();

    failing.store(false, Ordering::SeqCst);
    calls.reset();
    let (_, outcome) = run(f.table.backfill("doubled", options).await.unwrap()).await;
    let summary = outcome.unwrap();
    let second = snapshot(&calls, 0..400);
    let failed_batch = 360..380;
    let mut recomputed = Vec::new();
    for id in 0..400 {
        match (first[&id], second[&id]) {
            (_, 1) if failed_batch.contains(&id) => {}
            (0, 1) => {}
            (1, 0) => {}
            (1, 1) => recomputed.push(id),
            other => panic!("row {id} was called {other:?} times in the two runs"),
        }
    }
    assert_eq!(recomputed.len(), 20, "exactly the corrupted batch is recomputed: {recomputed:?}");
    assert_eq!(recomputed.last().unwrap() - recomputed[0], 19, "one whole batch");
    assert!(summary.rows_from_checkpoints >= 340, "fragments 0-2 and fragment 3's good batches: {summary:?}");
    assert!(column(&f.table, "doubled").await.iter().all(|(id, v)| *v == Some(id * 2)));
    // The corrupt object's batch was recomputed in memory and never
    // stored again; its commit still removed the object.
    assert_eq!(batch_objects(f.table.uri()), 0, "every batch of the committed fragments is gone");
}

fn batch_objects(table_uri: &str) -> usize {
    let dir = std::path::Path::new(table_uri).join("_leman/checkpoints/batches");
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

/// Runs `udf` over 4 fragments of 100 rows in 20 batches, through a store
/// that counts requests; the requests to batch checkpoints by operation.
async fn batch_requests(udf: leman::Udf) -> BTreeMap<Op, u64> {
    let f = fixture(4, 100).await;
    f.table.add_columns([("doubled", udf)], AddColumnsOptions::default()).await.unwrap();
    let counter = RequestCounter::new();
    let location = f.table.location().clone().with_store_wrapper(Arc::new(counter.clone()));
    let counted = Table::open_at(location, f.table.registry().clone()).await.unwrap();
    let options = BackfillOptions::default().batch_size(20).concurrency(2).commit_at_end();
    run(counted.backfill("doubled", options).await.unwrap()).await.1.unwrap();
    assert!(column(&f.table, "doubled").await.iter().all(|(id, v)| *v == Some(id * 2)));
    assert_eq!(batch_objects(f.table.uri()), 0, "no batch outlives the commit");
    counter.snapshot().into_iter().filter(|((area, _), _)| *area == Area::BatchCheckpoint).map(|((_, op), n)| (op, n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_deletes_the_batches_its_job_stored_and_asks_nothing_of_those_it_never_stored() {
    // Cheap batches pass to the writers in memory: no put (unless one
    // waited past the handoff's 2 s on a loaded machine), and a delete
    // only for each put.
    let cheap = batch_requests(doubling(Arc::new(Calls::default()), |_| Ok(()))).await;
    assert_eq!(cheap.get(&Op::Delete), cheap.get(&Op::Put), "{cheap:?}");
    // Batches of 25 ms are worth storing at once (past 20 ms, wall time
    // counts, however busy the machine): each is deleted.
    let costly = batch_requests(doubling(Arc::new(Calls::default()), |_| {
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(25) {
            std::hint::black_box(0u64);
        }
        Ok(())
    }))
    .await;
    assert_eq!((costly.get(&Op::Put), costly.get(&Op::Delete)), (Some(&20), Some(&20)), "{costly:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_run_with_another_batch_size_computes_only_the_gaps_between_checkpointed_batches() {
    let f = fixture(1, 200).await;
    let calls = Arc::new(Calls::default());
    let (udf, failing) = failing_at(calls.clone(), 170);
    f.table.add_columns([("doubled", udf)], AddColumnsOptions::default()).await.unwrap();
    let options = BackfillOptions::default().concurrency(1).task_shuffle_diversity(1).commit_at_end();
    let (_, outcome) = run(f.table.backfill("doubled", options.clone().batch_size(30)).await.unwrap()).await;
    assert!(matches!(outcome, Err(Error::JobFailed { .. })), "{outcome:?}");
    // Batches of 30 rows: 150..180 failed at id 170, after 0..30 and
    // 30..60 reported (each freed the slot it took); batches in flight
    // beside it may have finished too.
    let first = snapshot(&calls, 0..200);
    let failed_batch = 150..180;

    failing.store(false, Ordering::SeqCst);
    calls.reset();
    let plan = f.table.plan_backfill("doubled", &options.clone().batch_size(25)).await.unwrap();
    let summary = run(f.table.backfill("doubled", options.batch_size(25)).await.unwrap()).await.1.unwrap();
    let second = snapshot(&calls, 0..200);
    for id in 0..200 {
        if failed_batch.contains(&id) {
            assert_eq!(second[&id], 1, "row {id} of the failed batch is computed again");
        } else {
            assert_eq!(first[&id] + second[&id], 1, "row {id}: computed once over the two runs, whatever the batch size");
        }
    }
    let kept = (0..200).filter(|id| !failed_batch.contains(id) && first[id] == 1).count() as u64;
    assert!(kept >= 60, "at least the batches done before the failing one started: {kept}");
    assert_eq!((summary.rows_from_checkpoints, plan.rows_from_checkpoints), (kept, kept), "{plan:?}");
    assert!(column(&f.table, "doubled").await.iter().all(|(id, v)| *v == Some(id * 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_resumes_where_it_stopped() {
    let f = fixture(2, 200).await;
    let calls = Arc::new(Calls::default());
    let gate = Arc::new(Gate::default());
    let blocked = gate.clone();
    // The call holding row 250 (fragment 1) waits until the test opens the
    // gate; the applier's other thread computes the rest, whatever order
    // the batches' reads finish in, so fragment 0 commits.
    let udf = doubling(calls.clone(), move |ids| {
        if ids.contains(&250) {
            blocked.wait(Duration::from_secs(60))?;
        }
        Ok(())
    });
    f.table.add_columns([("doubled", udf)], AddColumnsOptions::default()).await.unwrap();
    let options = BackfillOptions::default()
        .batch_size(25)
        .concurrency(1)
        .intra_applier_concurrency(2)
        .task_shuffle_diversity(1)
        .commit_granularity(1);
    let job = f.table.backfill("doubled", options.clone()).await.unwrap();
    let job_id = job.id().to_string();
    until_event(&job, |event| matches!(event, JobEvent::Committed { .. })).await;
    job.cancel();
    gate.open();
    let (_, outcome) = run(job).await;
    assert!(matches!(outcome, Err(Error::Cancelled { .. })), "{outcome:?}");
    let record = f.table.job(&job_id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Cancelled);
    assert_eq!(record.progress.fragments_committed, 1, "fragment 1 waited on row 250 until the cancel");
    let done = calls.total();
    assert!((225..=400).contains(&done), "fragment 0 and at least the batch in flight of fragment 1: {done}");

    calls.reset();
    let summary = run(f.table.backfill("doubled", options).await.unwrap()).await.1.unwrap();
    assert_eq!(calls.total() + done, 400, "no row computed twice");
    assert!(summary.rows_from_checkpoints >= 25, "the batch in flight at the cancel was kept: {summary:?}");
    assert!(column(&f.table, "doubled").await.iter().all(|(id, v)| *v == Some(id * 2)));
}
