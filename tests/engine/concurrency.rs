//! Appliers times threads really run at once; tasks alternate fragments.

use std::sync::Arc;
use std::time::Duration;

use leman::{AddColumnsOptions, BackfillOptions};

use crate::engine::support::{Calls, doubling, fixture, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_times_intra_applier_concurrency_calls_run_at_once() {
    let f = fixture(4, 160).await;
    let calls = Arc::new(Calls::default());
    let udf = doubling(calls.clone(), |_| {
        std::thread::sleep(Duration::from_millis(40));
        Ok(())
    });
    f.table.add_columns([("doubled", udf)], AddColumnsOptions::default()).await.unwrap();
    let options = BackfillOptions::default().concurrency(2).intra_applier_concurrency(3).batch_size(10);
    run(f.table.backfill("doubled", options).await.unwrap()).await.1.unwrap();
    assert_eq!(calls.total(), 640);
    assert_eq!(calls.peak(), 6, "2 appliers x 3 threads, and never more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_tasks_come_from_different_fragments() {
    let rows = 100;
    let f = fixture(4, rows).await;
    let calls = Arc::new(Calls::default());
    f.table.add_columns([("doubled", doubling(calls.clone(), |_| Ok(())))], AddColumnsOptions::default()).await.unwrap();
    let options = BackfillOptions::default().concurrency(1).batch_size(25).task_shuffle_diversity(4);
    run(f.table.backfill("doubled", options).await.unwrap()).await.1.unwrap();
    let fragments: Vec<i64> = calls.first_ids().iter().map(|id| id / rows as i64).collect();
    assert_eq!(fragments.len(), 16);
    // Tasks in flight finish in any order (a fragment's first read also
    // opens its reader), so calls are the shuffled order give or take a
    // few places; fragment by fragment would put fragment 3 in the last
    // four and run each fragment's four batches back to back.
    let first_three_quarters: std::collections::BTreeSet<i64> = fragments[..12].iter().copied().collect();
    assert_eq!(first_three_quarters.len(), 4, "every fragment is under way early: {fragments:?}");
    for run in fragments.windows(4) {
        assert!(run.iter().any(|f| *f != run[0]), "one fragment's batches back to back: {fragments:?}");
    }
}
