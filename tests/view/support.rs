//! A source table, a UDF that counts its rows, and the view's query
//! computed from scratch to compare the view with.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, UInt64Type};
use arrow_array::{Array, ArrayRef, Int32Array, RecordBatch};
use arrow_schema::{DataType, Field};
use futures::TryStreamExt;
use lance::Dataset;
use leman::{CreateTableOptions, Database, Summary, Table, Udf, View};

use crate::engine::support::batch;

/// A database in a temp dir with table `src`: `fragments` fragments of
/// `rows` rows of the sample schema (`id`, `text`, `grp`).
pub struct Source {
    pub _dir: tempfile::TempDir,
    pub db: Database,
    pub table: Table,
}

pub async fn source(fragments: usize, rows: usize, stable_row_ids: bool) -> Source {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = leman::connect(dir.path().to_str().expect("utf-8 path")).await.expect("connect");
    let options = CreateTableOptions { max_rows_per_file: rows, stable_row_ids };
    let table = db.create_table("src", vec![batch(0, fragments * rows)], options).await.expect("create source");
    Source { _dir: dir, db, table }
}

/// `len = length(text)`, counting the rows it computes.
pub fn counting_len(rows: Arc<AtomicUsize>) -> Udf {
    Udf::array("counting_len", Field::new("len", DataType::Int32, true), &["text"], move |cols| {
        let text = cols[0].as_string::<i32>();
        rows.fetch_add(text.len(), Ordering::SeqCst);
        Ok(Arc::new(text.iter().map(|t| t.map(|t| t.len() as i32)).collect::<Int32Array>()) as ArrayRef)
    })
    .with_version("1")
}

/// Refreshes `view` to `to_version` (default: latest) and waits for its
/// backfill.
pub async fn refresh(view: &View, to_version: Option<u64>) -> (leman::RowChanges, Summary) {
    let options = leman::RefreshOptions {
        to_version,
        backfill: leman::BackfillOptions::default().concurrency(2).batch_size(64),
    };
    let refresh = view.refresh(options).await.expect("refresh starts");
    let summary = refresh.job.expect("a view with UDF columns refreshes them").wait().await.expect("refresh succeeds");
    (refresh.changes, summary)
}

/// One row of the view or of the query computed on the source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub source_row_id: u64,
    pub id: i64,
    pub grp: i64,
    pub len: Option<i32>,
}

/// Every row of `dataset`, projecting `columns` (with `_rowid`).
async fn read(dataset: &Dataset, columns: &[&str], filter: Option<&str>) -> Vec<RecordBatch> {
    let mut scan = dataset.scan();
    scan.project(columns).expect("project").with_row_id();
    if let Some(filter) = filter {
        scan.filter(filter).expect("filter");
    }
    scan.try_into_stream().await.expect("scan").try_collect().await.expect("read")
}

/// The query `select id, grp, len = length(text) where <filter>` on the
/// source at `version`, from scratch, sorted.
pub async fn expected(source: &Table, version: u64, filter: &str) -> Vec<Row> {
    let dataset = source.dataset().await.expect("open").checkout_version(version).await.expect("version");
    let mut rows = Vec::new();
    for batch in read(&dataset, &["id", "grp", "text"], Some(filter)).await {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let grps = batch.column(1).as_primitive::<Int64Type>();
        let text = batch.column(2).as_string::<i32>();
        let row_ids = batch.column_by_name("_rowid").expect("_rowid").as_primitive::<UInt64Type>();
        for i in 0..batch.num_rows() {
            let len = text.is_valid(i).then(|| text.value(i).len() as i32);
            rows.push(Row { source_row_id: row_ids.value(i), id: ids.value(i), grp: grps.value(i), len });
        }
    }
    rows.sort();
    rows
}

/// The view's rows, sorted; panics on a source row held twice.
pub async fn held(view: &View) -> Vec<Row> {
    let dataset = view.location().open_dataset().await.expect("open view");
    let mut rows = Vec::new();
    for batch in read(&dataset, &[leman_view::SOURCE_ROW_ID, "id", "grp", "len"], None).await {
        let source_ids = batch.column(0).as_primitive::<UInt64Type>();
        let ids = batch.column(1).as_primitive::<Int64Type>();
        let grps = batch.column(2).as_primitive::<Int64Type>();
        let lens = batch.column(3).as_primitive::<Int32Type>();
        for i in 0..batch.num_rows() {
            let len = lens.is_valid(i).then(|| lens.value(i));
            rows.push(Row { source_row_id: source_ids.value(i), id: ids.value(i), grp: grps.value(i), len });
        }
    }
    rows.sort();
    let distinct: HashSet<u64> = rows.iter().map(|r| r.source_row_id).collect();
    assert_eq!(distinct.len(), rows.len(), "no source row is held twice");
    rows
}

/// Asserts that `view` holds exactly its query on `source` at `version`.
pub async fn assert_exact(view: &View, source: &Table, version: u64, filter: &str) {
    let want = expected(source, version, filter).await;
    let have = held(view).await;
    if have != want {
        let want_ids: HashMap<u64, &Row> = want.iter().map(|r| (r.source_row_id, r)).collect();
        let wrong: Vec<&Row> = have.iter().filter(|r| want_ids.get(&r.source_row_id) != Some(r)).take(5).collect();
        panic!("the view holds {} rows, the query {} at version {version}; first rows that differ: {wrong:?}", have.len(), want.len());
    }
}
