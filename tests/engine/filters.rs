//! `where`: only matching rows are computed, the rest keep their value, and
//! a bad filter is refused before any work. A column never computed is
//! not read, yet filters see its nulls.

use std::sync::Arc;

use leman::{AddColumnsOptions, BackfillOptions, Error};

use crate::engine::support::{Calls, Fixture, column, doubling, fixture, run};

/// A table of `fragments` of `rows` with a column `doubled` never
/// computed, and the calls of its UDF.
async fn with_doubled(fragments: usize, rows: usize) -> (Fixture, Arc<Calls>) {
    let f = fixture(fragments, rows).await;
    let calls = Arc::new(Calls::default());
    f.table.add_columns([("doubled", doubling(calls.clone(), |_| Ok(())))], AddColumnsOptions::default()).await.unwrap();
    (f, calls)
}

/// Rows a backfill of `doubled` computes, in batches of 100, where `sql`
/// holds (the default filter without one).
async fn computed_where(f: &Fixture, sql: Option<&str>) -> u64 {
    let options = BackfillOptions::default().batch_size(100);
    let options = match sql {
        Some(sql) => options.filter(sql),
        None => options,
    };
    let (_, outcome) = run(f.table.backfill("doubled", options).await.unwrap()).await;
    outcome.unwrap().rows_computed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_matching_rows_are_computed_and_the_rest_keep_their_value() {
    let (f, calls) = with_doubled(3, 400).await;

    assert_eq!(computed_where(&f, Some("id < 300 AND grp = 3")).await, 30);
    assert_eq!(calls.total(), 30);
    let values = column(&f.table, "doubled").await;
    for (id, value) in &values {
        let expected = (*id < 300 && id % 10 == 3).then_some(id * 2);
        assert_eq!(*value, expected, "row {id}");
    }

    calls.reset();
    assert_eq!(computed_where(&f, Some("id >= 1000")).await, 200);
    assert_eq!(calls.total(), 200);
    for (id, value) in column(&f.table, "doubled").await {
        let expected = ((id < 300 && id % 10 == 3) || id >= 1000).then_some(id * 2);
        assert_eq!(value, expected, "row {id} keeps its earlier value");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filters_and_unknown_columns_fail_before_any_work() {
    let (f, calls) = with_doubled(2, 100).await;
    let version = f.table.version().await.unwrap();

    for sql in ["id >>> 3", "no_such_column = 1", "text"] {
        let error = f.table.backfill("doubled", BackfillOptions::default().filter(sql)).await.err();
        assert!(matches!(error, Some(Error::InvalidFilter(_))), "{sql}: {error:?}");
        let message = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains(sql), "the error names the filter: {message}");
    }
    let error = f.table.backfill("nope", BackfillOptions::default()).await.err();
    assert!(matches!(error, Some(Error::ColumnNotFound { .. })), "{error:?}");
    let error = f.table.backfill("doubled", BackfillOptions::default().input_columns(["missing"])).await.err();
    assert!(matches!(error, Some(Error::InputNotFound { .. })), "{error:?}");
    let error = f.table.backfill("doubled", BackfillOptions::default().concurrency(0)).await.err();
    assert!(matches!(error, Some(Error::InvalidOptions { .. })), "{error:?}");

    assert_eq!(calls.total(), 0);
    assert_eq!(f.table.version().await.unwrap(), version, "the table is unchanged");
    assert!(f.table.jobs().await.unwrap().is_empty(), "no job was started");
    assert!(column(&f.table, "doubled").await.iter().all(|(_, v)| v.is_none()));
}

/// A column never computed is read as no column at all: a filter that
/// names it alone is decided by a row of nulls, one that names it with
/// another column still sees its nulls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_see_the_nulls_of_a_column_never_computed() {
    let (f, calls) = with_doubled(2, 300).await;
    assert_eq!(computed_where(&f, Some("doubled IS NULL AND id < 150")).await, 150);
    assert_eq!(calls.total(), 150);
    for (id, value) in column(&f.table, "doubled").await {
        assert_eq!(value, (id < 150).then_some(id * 2), "row {id}");
    }

    let (f, calls) = with_doubled(2, 300).await;
    assert_eq!(computed_where(&f, Some("doubled > 0")).await, 0, "null > 0 holds for no row");
    assert_eq!(calls.total(), 0);
    assert!(column(&f.table, "doubled").await.iter().all(|(_, value)| value.is_none()));
    assert_eq!(computed_where(&f, None).await, 600);
    assert!(column(&f.table, "doubled").await.iter().all(|(id, value)| *value == Some(id * 2)));
}
