//! Changing a column's UDF: `Table::alter_udf`, then a backfill without a
//! filter recomputes every row the old UDF computed, and a dry run says so
//! first.

use std::sync::Arc;
use std::time::Duration;

use leman::deps::arrow_array::{ArrayRef, cast::AsArray, types::Int64Type};
use leman::deps::arrow_schema::{DataType, Field};
use leman::{AddColumnsOptions, BackfillOptions, CleanupOptions, Error, Udf};

use crate::engine::support::{Calls, column, doubling, fixture, run};

fn tripling() -> Udf {
    Udf::array("tripling", Field::new("tripled", DataType::Int64, true), &["id"], |cols| {
        Ok(Arc::new(cols[0].as_primitive::<Int64Type>().unary::<_, Int64Type>(|v| v * 3)) as ArrayRef)
    })
    .with_version("1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_udf_recomputes_every_row_the_old_one_computed() {
    let f = fixture(3, 100).await;
    f.table.add_columns([("n", doubling(Arc::new(Calls::default()), |_| Ok(())))], AddColumnsOptions::default()).await.unwrap();
    // Two fragments filled by the old UDF; the third left null.
    run(f.table.backfill("n", BackfillOptions::default().num_frags(2)).await.unwrap()).await.1.unwrap();

    let old = f.table.alter_udf("n", tripling()).await.unwrap();
    assert_eq!((old.name.as_str(), f.table.udf_record("n").await.unwrap().unwrap().name.as_str()), ("doubling", "tripling"));
    let version = f.table.version().await.unwrap();
    let plan = f.table.plan_backfill("n", &BackfillOptions::default()).await.unwrap();
    assert_eq!((plan.fragments_to_compute, plan.fragments_recomputed_whole, plan.rows_to_compute), (3, 2, 300), "{plan:?}");
    assert_eq!(f.table.version().await.unwrap(), version, "the dry run changed nothing");

    let summary = run(f.table.backfill("n", BackfillOptions::default()).await.unwrap()).await.1.unwrap();
    assert_eq!(summary.rows_computed, plan.rows_to_compute, "the dry run said what the job did");
    assert!(column(&f.table, "n").await.iter().all(|(id, v)| *v == Some(id * 3)));
    // The old UDF's two data files are read no more: their fills go.
    let report = f.table.cleanup(&CleanupOptions { dry_run: false, older_than: Duration::ZERO }).await.unwrap();
    assert_eq!((report.fills_examined.objects, report.fills_removed.objects), (5, 2), "{report:?}");
    let plan = f.table.plan_backfill("n", &BackfillOptions::default()).await.unwrap();
    assert_eq!((plan.fragments_done, plan.rows_to_compute), (3, 0), "nothing left: {plan:?}");

    // The same UDF over another column is another computation.
    f.table.alter_udf("n", tripling().with_inputs(&["grp"])).await.unwrap();
    let plan = f.table.plan_backfill("n", &BackfillOptions::default()).await.unwrap();
    assert_eq!((plan.fragments_recomputed_whole, plan.rows_to_compute), (3, 300), "{plan:?}");
    // A filter of the user's recomputes some rows of fragment 0 and keeps
    // the rest: its new file still holds the old UDF's values, and says so.
    run(f.table.backfill("n", BackfillOptions::default().filter("id < 50")).await.unwrap()).await.1.unwrap();
    let plan = f.table.plan_backfill("n", &BackfillOptions::default()).await.unwrap();
    assert_eq!((plan.fragments_recomputed_whole, plan.rows_to_compute), (3, 300), "{plan:?}");

    let text = Udf::array("text", Field::new("t", DataType::Utf8, true), &["text"], |cols| Ok(cols[0].clone()));
    assert!(matches!(f.table.alter_udf("n", text).await, Err(Error::TypeMismatch { .. })));
    assert!(matches!(f.table.alter_udf("nope", tripling()).await, Err(Error::ColumnNotFound { .. })));
    assert!(matches!(f.table.alter_udf("n", tripling().with_inputs(&["n"])).await, Err(Error::InvalidOptions { .. })));
    assert!(matches!(f.table.alter_udf("id", tripling()).await, Err(Error::NoUdf { .. })), "id records no UDF");
}
