//! A full backfill, deleted rows, and the column's UDF record.

use std::sync::Arc;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use futures::TryStreamExt;
use leman::{AddColumnsOptions, BackfillOptions, UdfRecord};

use crate::engine::support::{Calls, column, doubling, fixture, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backfill_fills_every_row_and_changes_nothing_else() {
    let f = fixture(3, 1000).await;
    let before = f.table.dataset().await.unwrap();
    let calls = Arc::new(Calls::default());
    let udf = doubling(calls.clone(), |_| Ok(()));
    f.table.add_columns([("doubled", udf.clone())], AddColumnsOptions::default()).await.unwrap();
    assert_eq!(f.table.udf_record("doubled").await.unwrap(), Some(UdfRecord::of(&udf)));
    assert_eq!(f.table.count_rows(Some("doubled IS NULL")).await.unwrap(), 3000, "declared, not computed");

    let job = f.table.backfill("doubled", BackfillOptions::default().batch_size(256).concurrency(2)).await.unwrap();
    let (_, outcome) = run(job).await;
    let summary = outcome.unwrap();
    assert_eq!(summary.rows_computed, 3000);
    assert_eq!(summary.fragments_committed, 3);
    assert_eq!(calls.total(), 3000);

    let values = column(&f.table, "doubled").await;
    assert_eq!(values.len(), 3000);
    assert!(values.iter().all(|(id, v)| *v == Some(id * 2)), "every row is id * 2");

    // Original columns are unchanged, read from a fresh open.
    let after = f.table.dataset().await.unwrap();
    for name in ["id", "text", "grp"] {
        let read = |ds: &lance::Dataset| {
            let mut scan = ds.scan();
            scan.project(&[name]).unwrap();
            scan
        };
        let old: Vec<_> = read(&before).try_into_stream().await.unwrap().try_collect::<Vec<_>>().await.unwrap();
        let new: Vec<_> = read(&after).try_into_stream().await.unwrap().try_collect::<Vec<_>>().await.unwrap();
        assert_eq!(arrow_select::concat::concat_batches(&old[0].schema(), &old).unwrap(),
                   arrow_select::concat::concat_batches(&new[0].schema(), &new).unwrap(), "column {name}");
    }
    assert_eq!(after.get_fragments().len(), 3, "no fragment added or removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_with_deleted_rows_stay_aligned() {
    let f = fixture(2, 500).await;
    f.table.delete("id % 7 = 0 OR id BETWEEN 600 AND 650").await.unwrap();
    let live = f.table.count_rows(None).await.unwrap();
    let calls = Arc::new(Calls::default());
    f.table.add_columns([("doubled", doubling(calls.clone(), |_| Ok(())))], AddColumnsOptions::default()).await.unwrap();
    let (_, outcome) = run(f.table.backfill("doubled", BackfillOptions::default().batch_size(128)).await.unwrap()).await;
    assert_eq!(outcome.unwrap().rows_computed, live as u64);
    assert_eq!(calls.total(), live, "deleted rows are not computed");
    assert_eq!(calls.of(7), 0);
    let values = column(&f.table, "doubled").await;
    assert_eq!(values.len(), live);
    assert!(values.iter().all(|(id, v)| id % 7 != 0 && *v == Some(id * 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_columns_can_backfill_right_away() {
    let f = fixture(2, 100).await;
    let calls = Arc::new(Calls::default());
    let options = AddColumnsOptions { backfill: Some(BackfillOptions::default()), ..AddColumnsOptions::default() };
    let summaries = f.table.add_columns([("doubled", doubling(calls, |_| Ok(())))], options).await.unwrap();
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].rows_computed, 200);
    let schema = f.table.schema().await.unwrap();
    let field = schema.field_with_name("doubled").unwrap();
    assert!(field.is_nullable());
    assert_eq!(field.metadata().get("leman.udf.name").map(String::as_str), Some("doubling"));
    let batch = {
        let ds = f.table.dataset().await.unwrap();
        let mut scan = ds.scan();
        scan.project(&["doubled"]).unwrap();
        scan.try_into_batch().await.unwrap()
    };
    assert_eq!(batch.column(0).as_primitive::<arrow_array::types::Int64Type>().null_count(), 0);
}
