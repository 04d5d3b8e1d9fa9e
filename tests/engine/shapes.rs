//! The four UDF shapes end to end; a stateful UDF is built once per thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field};
use datafusion::common::ScalarValue;
use leman::{AddColumnsOptions, BackfillOptions, StatefulUdf, Udf, UdfError};

use crate::engine::support::{column, fixture, run};

/// Adds `offset` to each id; counts how many instances were built.
struct Offset {
    offset: i64,
}

impl StatefulUdf for Offset {
    fn call(&mut self, inputs: &RecordBatch) -> Result<ArrayRef, UdfError> {
        let ids = inputs.column(0).as_primitive::<Int64Type>();
        Ok(Arc::new(ids.unary::<_, Int64Type>(|v| v + self.offset)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scalar_batch_and_stateful_udfs_fill_their_columns() {
    let f = fixture(3, 200).await;
    let field = |name: &str| Field::new(name, DataType::Int64, true);
    let scalar = Udf::scalar("plus_grp", field("s"), &["id", "grp"], |args| match args {
        [ScalarValue::Int64(Some(id)), ScalarValue::Int64(Some(grp))] => Ok(ScalarValue::Int64(Some(id + grp))),
        other => Err(format!("unexpected {other:?}").into()),
    });
    let batch = Udf::batch("times_three", field("b"), &["id"], |batch| {
        let ids = batch.column_by_name("id").ok_or("no id")?.as_primitive::<Int64Type>();
        Ok(Arc::new(ids.unary::<_, Int64Type>(|v| v * 3)) as ArrayRef)
    });
    let built = Arc::new(AtomicUsize::new(0));
    let counter = built.clone();
    let stateful = Udf::stateful("offset", field("o"), &["id"], move || {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(Offset { offset: 1000 }) as Box<dyn StatefulUdf>)
    });
    f.table
        .add_columns([("s", scalar), ("b", batch), ("o", stateful)], AddColumnsOptions::default())
        .await
        .unwrap();
    let options = BackfillOptions::default().batch_size(50).concurrency(2).intra_applier_concurrency(3);
    for name in ["s", "b", "o"] {
        let (_, outcome) = run(f.table.backfill(name, options.clone()).await.unwrap()).await;
        assert_eq!(outcome.unwrap().rows_computed, 600, "column {name}");
    }
    assert_eq!(built.load(Ordering::SeqCst), 6, "one instance per applier thread: 2 x 3");
    for (id, value) in column(&f.table, "s").await {
        assert_eq!(value, Some(id + id % 10), "s of row {id}");
    }
    for (id, value) in column(&f.table, "b").await {
        assert_eq!(value, Some(id * 3), "b of row {id}");
    }
    for (id, value) in column(&f.table, "o").await {
        assert_eq!(value, Some(id + 1000), "o of row {id}");
    }
}
