//! The default filter (`col IS NULL`), `1=1`, UDF versions, `num_frags` and
//! `read_version`.

use std::sync::Arc;

use leman::{AddColumnsOptions, BackfillOptions};

use crate::engine::support::{Calls, batch, column, doubling, fixture, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reruns_compute_only_new_rows_and_versions_recompute() {
    let f = fixture(3, 300).await;
    let calls = Arc::new(Calls::default());
    let udf = doubling(calls.clone(), |_| Ok(()));
    f.table.add_columns([("doubled", udf.clone())], AddColumnsOptions::default()).await.unwrap();
    let options = BackfillOptions::default().batch_size(128);
    run(f.table.backfill("doubled", options.clone()).await.unwrap()).await.1.unwrap();
    assert_eq!(calls.total(), 900);

    f.table.append(vec![batch(900, 250)]).await.unwrap();
    calls.reset();
    let (_, outcome) = run(f.table.backfill("doubled", options.clone()).await.unwrap()).await;
    assert_eq!(outcome.unwrap().rows_computed, 250);
    assert_eq!(calls.total(), 250, "only the appended rows");
    assert!((900..1150).all(|id| calls.of(id) == 1));
    assert!(column(&f.table, "doubled").await.iter().all(|(id, v)| *v == Some(id * 2)));

    calls.reset();
    let (_, outcome) = run(f.table.backfill("doubled", options.clone()).await.unwrap()).await;
    assert_eq!(outcome.unwrap().rows_computed, 0);
    assert_eq!(calls.total(), 0, "nothing left to do");

    let everything = options.clone().filter("1=1");
    run(f.table.backfill("doubled", everything.clone()).await.unwrap()).await.1.unwrap();
    assert_eq!(calls.total(), 1150, "1=1 recomputes every row");

    calls.reset();
    run(f.table.backfill("doubled", everything.clone()).await.unwrap()).await.1.unwrap();
    assert_eq!(calls.total(), 0, "the same UDF version and filter reuse the checkpoints");
    let v2 = everything.udf(udf.with_version("2"));
    run(f.table.backfill("doubled", v2).await.unwrap()).await.1.unwrap();
    assert_eq!(calls.total(), 1150, "a new UDF version ignores old checkpoints");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn num_frags_fills_exactly_k_fragments_then_the_rest() {
    let f = fixture(4, 200).await;
    let calls = Arc::new(Calls::default());
    f.table.add_columns([("doubled", doubling(calls.clone(), |_| Ok(())))], AddColumnsOptions::default()).await.unwrap();
    let (_, outcome) = run(f.table.backfill("doubled", BackfillOptions::default().num_frags(2)).await.unwrap()).await;
    assert_eq!(outcome.unwrap().fragments_committed, 2);
    let filled: Vec<i64> = column(&f.table, "doubled").await.into_iter().filter(|(_, v)| v.is_some()).map(|(id, _)| id).collect();
    assert_eq!(filled.len(), 400);
    let fragments_filled: std::collections::BTreeSet<i64> = filled.iter().map(|id| id / 200).collect();
    assert_eq!(fragments_filled.len(), 2, "exactly two whole fragments");

    calls.reset();
    let (_, outcome) = run(f.table.backfill("doubled", BackfillOptions::default()).await.unwrap()).await;
    assert_eq!(outcome.unwrap().fragments_committed, 2);
    assert_eq!(calls.total(), 400);
    assert!(filled.iter().all(|id| calls.of(*id) == 0), "the first k are not recomputed");
    assert!(column(&f.table, "doubled").await.iter().all(|(id, v)| *v == Some(id * 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_at_an_older_version_keeps_rows_appended_since() {
    let f = fixture(2, 300).await;
    let calls = Arc::new(Calls::default());
    f.table.add_columns([("doubled", doubling(calls.clone(), |_| Ok(())))], AddColumnsOptions::default()).await.unwrap();
    let planned_at = f.table.version().await.unwrap();
    f.table.append(vec![batch(600, 100)]).await.unwrap();

    let options = BackfillOptions::default().read_version(planned_at);
    let (_, outcome) = run(f.table.backfill("doubled", options).await.unwrap()).await;
    assert_eq!(outcome.unwrap().rows_computed, 600);
    let values = column(&f.table, "doubled").await;
    assert_eq!(values.len(), 700, "appended rows are still there");
    for (id, value) in &values {
        assert_eq!(*value, (*id < 600).then_some(id * 2), "row {id}");
    }

    let (_, outcome) = run(f.table.backfill("doubled", BackfillOptions::default()).await.unwrap()).await;
    assert_eq!(outcome.unwrap().rows_computed, 100);
    assert!(column(&f.table, "doubled").await.iter().all(|(id, v)| *v == Some(id * 2)));
}
