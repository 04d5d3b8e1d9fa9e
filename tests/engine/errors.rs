//! Error policies: fail, retry, skip; panics are errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use leman::{AddColumnsOptions, BackfillOptions, Error, ErrorPolicy, JobStatus};

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
