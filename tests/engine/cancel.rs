//! Stopping a job from outside its handle: a request through
//! `Table::cancel_job` (as another process makes it) and the `timeout`
//! option. Either stops the job after its batches in flight with the
//! reason in its error and its record; a re-run computes only the rest.

use std::sync::Arc;
use std::time::Duration;

use leman::{AddColumnsOptions, BackfillOptions, CancelReason, Error, JobEvent, JobStatus};

use crate::engine::support::{Calls, column, doubling, fixture, run, until_event};

/// 2,000 rows in 4 fragments whose UDF sleeps 50 ms a batch of 10 rows:
/// 10 s of work for one applier, so a job stopped within a second or two
/// is stopped part way, whatever the machine's load.
async fn slow_job_table(calls: &Arc<Calls>) -> crate::engine::support::Fixture {
    let f = fixture(4, 500).await;
    let udf = doubling(calls.clone(), |_| {
        std::thread::sleep(Duration::from_millis(50));
        Ok(())
    });
    f.table.add_columns([("doubled", udf)], AddColumnsOptions::default()).await.unwrap();
    f
}

fn options() -> BackfillOptions {
    BackfillOptions::default().batch_size(10).concurrency(1).commit_granularity(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_cancel_stops_the_job_and_a_rerun_computes_the_rest() {
    let calls = Arc::new(Calls::default());
    let f = slow_job_table(&calls).await;
    let job = f.table.backfill("doubled", options()).await.unwrap();
    let id = job.id().to_string();
    until_event(&job, |event| matches!(event, JobEvent::Progress(p) if p.rows_done >= 20)).await;
    let asked = f.table.cancel_job(&id).await.unwrap();
    assert_eq!(asked.status, JobStatus::Running);

    let (_, outcome) = run(job).await;
    let Err(Error::Cancelled { job_id, reason: CancelReason::Requested { by } }) = outcome else {
        panic!("expected a requested cancel, got {outcome:?}")
    };
    assert_eq!(job_id, id);
    assert!(by.contains(&format!("(pid {})", std::process::id())), "{by}");
    let record = f.table.job(&id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Cancelled);
    assert_eq!(record.error.unwrap().message, format!("cancelled by {by}"));
    let done = calls.total();
    assert!((20..1000).contains(&done), "stopped within a couple of seconds: {done} of 2000 rows");
    assert!(matches!(f.table.cancel_job(&id).await, Err(Error::JobNotRunning { status: JobStatus::Cancelled, .. })));
    assert!(matches!(f.table.cancel_job("nosuchjob").await, Err(Error::JobNotFound { .. })));

    calls.reset();
    let (_, outcome) = run(f.table.backfill("doubled", options().concurrency(2)).await.unwrap()).await;
    outcome.unwrap();
    assert_eq!(calls.total() + done, 2000, "no row computed twice");
    assert!(column(&f.table, "doubled").await.iter().all(|(id, v)| *v == Some(id * 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_stops_the_job_in_its_time() {
    let calls = Arc::new(Calls::default());
    let f = slow_job_table(&calls).await;
    let limit = Duration::from_millis(700);
    let started = std::time::Instant::now();
    let job = f.table.backfill("doubled", options().timeout(limit)).await.unwrap();
    let id = job.id().to_string();
    let (_, outcome) = run(job).await;
    assert!(started.elapsed() >= limit, "the job ran until its timeout: {:?}", started.elapsed());
    assert!(matches!(outcome, Err(Error::Cancelled { reason: CancelReason::TimedOut { after }, .. }) if after == limit), "{outcome:?}");
    let record = f.table.job(&id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Cancelled);
    assert_eq!(record.error.unwrap().message, "cancelled: its timeout of 0.7 s ran out");
    assert!(calls.total() < 2000, "{}", calls.total());
    assert!(matches!(
        f.table.backfill("doubled", options().timeout(Duration::ZERO)).await,
        Err(Error::InvalidOptions { .. })
    ));
}
