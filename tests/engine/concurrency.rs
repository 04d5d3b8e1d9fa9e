//! Appliers times threads really run at once. (The order tasks are handed
//! out in is pinned where the driver's order can be seen:
//! `driver::tasks_are_handed_out_across_fragments_not_one_fragment_after_another`.)

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
