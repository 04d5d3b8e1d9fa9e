//! Error policies: fail, retry, skip; panics are errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use leman::{AddColumnsOptions, BackfillOptions, Error, ErrorPolicy, JobStatus, RowOutcome};

use crate::engine::support::{Calls, column, doubling, fixture, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_nulls_failing_rows_and_records_their_addresses() {
    let f = fixture(2, 100).await;
    let calls = Arc::new(Calls::default());
    let udf = doubling(calls, |ids| {
        if ids.contains(&123) {
            panic!("cannot handle 123");
        }
        if ids.iter().any(|id| id % 50 == 7) {
            return Err("bad row".to_string());
        }
        Ok(())
    })
    .with_error_policy(ErrorPolicy::Skip);
    f.table.add_columns([("doubled", udf)], AddColumnsOptions::default()).await.unwrap();
    let (_, outcome) = run(f.table.backfill("doubled", BackfillOptions::default().batch_size(30)).await.unwrap()).await;
    let summary = outcome.unwrap();
    let bad = |id: i64| id == 123 || id % 50 == 7;
    assert_eq!(summary.rows_skipped, 5);
    assert_eq!(summary.rows_computed, 195);
    let mut addresses: Vec<u64> = summary.errors.iter().map(|e| e.row_address).collect();
    addresses.sort();
    // Fragment 1 holds ids 100..200: id 107 is offset 7 of fragment 1.
    assert_eq!(addresses, vec![7, 57, (1 << 32) | 7, (1 << 32) | 23, (1 << 32) | 57]);
    assert!(summary.errors.iter().any(|e| e.message.contains("UDF panicked: cannot handle 123")));
    for (id, value) in column(&f.table, "doubled").await {
        assert_eq!(value, (!bad(id)).then_some(id * 2), "row {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_stops_the_job_naming_the_rows_and_changes_nothing() {
    let f = fixture(2, 100).await;
    let calls = Arc::new(Calls::default());
    let udf = doubling(calls, |ids| {
        if ids.contains(&150) {
            panic!("division by zero");
        }
        Ok(())
    });
    f.table.add_columns([("doubled", udf)], AddColumnsOptions::default()).await.unwrap();
    let version = f.table.version().await.unwrap();
    let job = f.table.backfill("doubled", BackfillOptions::default().batch_size(20).commit_at_end()).await.unwrap();
    let job_id = job.id().to_string();
    let (_, outcome) = run(job).await;
    let Err(error @ Error::JobFailed { .. }) = outcome else { panic!("{outcome:?}") };
    let message = error.to_string();
    assert!(message.contains("fragment 1, rows 40..60"), "{message}");
    assert!(message.contains("UDF panicked: division by zero"), "{message}");
    assert_eq!(f.table.version().await.unwrap(), version);
    assert!(column(&f.table, "doubled").await.iter().all(|(_, v)| v.is_none()));
    let record = f.table.job(&job_id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Failed);
    assert_eq!(record.error.and_then(|e| e.fragment_id), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_calls_a_failing_batch_again() {
    let f = fixture(1, 50).await;
    let calls = Arc::new(Calls::default());
    let failures = Arc::new(AtomicUsize::new(0));
    let seen = failures.clone();
    let udf = doubling(calls, move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) < 2 {
            return Err("transient".to_string());
        }
        Ok(())
    });
    f.table.add_columns([("doubled", udf.clone())], AddColumnsOptions::default()).await.unwrap();
    let retrying = BackfillOptions::default().udf(udf.with_error_policy(ErrorPolicy::Retry { attempts: 2 }));
    let (_, outcome) = run(f.table.backfill("doubled", retrying).await.unwrap()).await;
    assert_eq!(outcome.unwrap().rows_computed, 50);
    assert_eq!(failures.load(Ordering::SeqCst), 3);
    assert!(column(&f.table, "doubled").await.iter().all(|(id, v)| *v == Some(id * 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_errors_recomputes_exactly_the_rows_a_job_skipped() {
    let f = fixture(2, 100).await;
    let calls = Arc::new(Calls::default());
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let still_down = down.clone();
    let udf = doubling(calls.clone(), move |ids| {
        if still_down.load(Ordering::SeqCst) && ids.iter().any(|id| id % 50 == 7) {
            return Err("the model server is down".to_string());
        }
        Ok(())
    })
    .with_error_policy(ErrorPolicy::Skip);
    f.table.add_columns([("doubled", udf)], AddColumnsOptions::default()).await.unwrap();
    let job = f.table.backfill("doubled", BackfillOptions::default().batch_size(30)).await.unwrap();
    let job_id = job.id().to_string();
    let (_, outcome) = run(job).await;
    assert_eq!(outcome.unwrap().rows_skipped, 4);

    let errors = f.table.errors(Some(&job_id)).await.unwrap();
    let mut rows: Vec<(u64, Option<u64>)> = errors.iter().map(|e| (e.fragment_id, e.row_address.map(|a| a & 0xffff_ffff))).collect();
    rows.sort();
    assert_eq!(rows, vec![(0, Some(7)), (0, Some(57)), (1, Some(7)), (1, Some(57))]);
    for error in &errors {
        assert_eq!((error.job_id.as_str(), error.column.as_str(), error.udf_name.as_str(), error.udf_version.as_str()), (job_id.as_str(), "doubled", "doubling", "1"));
        assert_eq!((error.outcome, error.attempts), (RowOutcome::Skipped, 2), "the batch's call, then the row's own");
        assert_eq!(error.message, "the model server is down");
    }
    assert_eq!(f.table.errors(None).await.unwrap().len(), 4);

    // The server is back: a retry of the job's errors calls the UDF on
    // those four rows and no other.
    down.store(false, Ordering::SeqCst);
    calls.reset();
    let retried = f.table.backfill("doubled", BackfillOptions::default().retry_errors(&job_id)).await.unwrap();
    let (_, outcome) = run(retried).await;
    let summary = outcome.unwrap();
    assert_eq!((summary.rows_computed, summary.rows_skipped), (4, 0));
    assert_eq!(calls.total(), 4, "exactly the failed rows were computed");
    for id in [7, 57, 107, 157] {
        assert_eq!(calls.of(id), 1, "row {id}");
    }
    assert!(column(&f.table, "doubled").await.iter().all(|(id, v)| *v == Some(id * 2)));

    let unknown = f.table.backfill("doubled", BackfillOptions::default().retry_errors("nojob")).await;
    assert!(matches!(unknown, Err(Error::NoFailedRows { .. })), "{unknown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_record_tells_what_the_job_cost_and_who_ran_it() {
    let f = fixture(2, 100).await;
    let calls = Arc::new(Calls::default());
    // 5 ms of CPU a call, so that the UDF's CPU time shows.
    let udf = doubling(calls, |_| {
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(5) {
            std::hint::black_box(0u64);
        }
        Ok(())
    });
    f.table.add_columns([("doubled", udf)], AddColumnsOptions::default()).await.unwrap();
    let job = f.table.backfill("doubled", BackfillOptions::default().batch_size(25).concurrency(2)).await.unwrap();
    let job_id = job.id().to_string();
    run(job).await.1.unwrap();
    let record = f.table.job(&job_id).await.unwrap().unwrap();
    let cost = &record.cost;
    assert_eq!((cost.rows_read, cost.rows_written), (200, 200), "{cost:?}");
    if std::path::Path::new("/proc/thread-self/schedstat").exists() {
        assert!(cost.udf_cpu_ms > 0, "8 calls spinning 5 ms each: {cost:?}");
    }
    assert!(cost.compute_ms >= 8 * 5, "the tasks took at least their UDF's 40 ms: {cost:?}");
    assert!(cost.object_store_requests > 8 && cost.bytes_read > 0 && cost.bytes_written > 0, "{cost:?}");
    assert!(cost.peak_memory_bytes > 1 << 20, "{cost:?}");
    assert_eq!(record.options.get("concurrency").map(String::as_str), Some("2"));
    assert_eq!(record.options.get("batch_size").map(String::as_str), Some("25"));
    assert_eq!(record.options.get("on_error").map(String::as_str), Some("fail"));
    let by = record.started_by.unwrap();
    assert_eq!(by.pid, std::process::id());
    assert!(!by.user.is_empty() && !by.host.is_empty(), "{by:?}");
}
