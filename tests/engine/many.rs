//! Several columns in one backfill (`backfill_many`): each batch read once
//! for every column's UDF, each column computing its own filter's rows,
//! one data file per fragment holding them all, one commit; and the
//! fragments Lance cannot take that way refused by name.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field};
use futures::TryStreamExt;
use leman::{AddColumnsOptions, BackfillOptions, CleanupOptions, Table, Udf, Unpack, builtins};

use crate::engine::support::{Calls, assert_sound, batch, column, doubling, fixture, within};

/// Every live row's values of `columns` (int32 or int64), sorted by id.
async fn rows(table: &Table, columns: &[&str]) -> Vec<(i64, Vec<Option<i64>>)> {
    let mut projection = vec!["id"];
    projection.extend_from_slice(columns);
    let mut scan = table.dataset().await.unwrap().scan();
    scan.project(&projection).unwrap();
    let batches: Vec<RecordBatch> = scan.try_into_stream().await.unwrap().try_collect().await.unwrap();
    let mut rows = Vec::new();
    for batch in &batches {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            let values = (1..batch.num_columns())
                .map(|c| {
                    let array = batch.column(c);
                    match array.data_type() {
                        DataType::Int32 => array.as_primitive::<Int32Type>().iter().nth(i).flatten().map(i64::from),
                        _ => array.as_primitive::<Int64Type>().iter().nth(i).flatten(),
                    }
                })
                .collect();
            rows.push((ids.value(i), values));
        }
    }
    rows.sort();
    rows
}

fn unpacked(prefix: &str) -> AddColumnsOptions {
    AddColumnsOptions { unpack: Some(Unpack { prefix: prefix.into() }), ..AddColumnsOptions::default() }
}

/// The ids of the data files of each fragment that hold any of `columns`.
async fn files_holding(table: &Table, columns: &[&str]) -> Vec<Vec<Vec<i32>>> {
    let dataset = table.dataset().await.unwrap();
    let ids: Vec<i32> = columns.iter().map(|c| dataset.schema().field(c).unwrap().id).collect();
    dataset
        .get_fragments()
        .iter()
        .map(|fragment| {
            let files = &fragment.metadata().files;
            files.iter().filter(|f| ids.iter().any(|id| f.fields.contains(id))).map(|f| f.fields.to_vec()).collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_columns_in_one_pass_equal_two_separate_runs_in_one_file_per_fragment_and_one_commit() {
    let f = fixture(3, 100).await;
    let calls = Arc::new(Calls::default());
    let stats = builtins::get("text_stats", &["text"], &[]).unwrap();
    f.table.add_columns([("a", doubling(calls.clone(), |_| Ok(())))], AddColumnsOptions::default()).await.unwrap();
    f.table.add_columns([("g", stats.clone())], unpacked("g_")).await.unwrap();
    // The registry keeps one `doubling`: the same counter for both.
    f.table.add_columns([("a_alone", doubling(calls.clone(), |_| Ok(())))], AddColumnsOptions::default()).await.unwrap();
    f.table.add_columns([("h", stats)], unpacked("h_")).await.unwrap();

    // Asked in either order: the group by its name, the column by its own.
    let before = f.table.version().await.unwrap();
    let job = f.table.backfill_many(["g", "a"], BackfillOptions::default().batch_size(40).concurrency(2)).await.unwrap();
    let summary = within(std::time::Duration::from_secs(120), job.wait()).await.unwrap();
    assert_eq!(summary.rows_computed, 300, "{summary:?}");
    assert_eq!(calls.total(), 300, "one call of a's UDF per row");
    assert_eq!(f.table.version().await.unwrap(), before + 1, "one commit for both columns");
    let record = f.table.jobs().await.unwrap().into_iter().find(|r| r.summary.is_some()).unwrap();
    assert_eq!(record.column, "a,g_n_chars");
    let a_and_g = ["a", "g_n_chars", "g_n_words", "g_n_lines"];
    let layout = files_holding(&f.table, &a_and_g).await;
    let dataset = f.table.dataset().await.unwrap();
    let field_ids: Vec<i32> = a_and_g.iter().map(|c| dataset.schema().field(c).unwrap().id).collect();
    assert_eq!(layout, vec![vec![field_ids]; 3], "one data file per fragment holds all four fields");
    // Clean-up keeps the job's fragment records (they name both columns):
    // they let a re-run skip the fragments.
    let cleaned = f.table.cleanup(&CleanupOptions { older_than: std::time::Duration::ZERO, ..CleanupOptions::default() }).await.unwrap();
    assert_eq!((cleaned.removed.objects, cleaned.kept.objects), (0, 3), "{cleaned:?}");

    // The same columns computed one at a time give the same values.
    f.table.backfill("a_alone", BackfillOptions::default()).await.unwrap().wait().await.unwrap();
    f.table.backfill("h", BackfillOptions::default()).await.unwrap().wait().await.unwrap();
    let together = rows(&f.table, &a_and_g).await;
    let apart = rows(&f.table, &["a_alone", "h_n_chars", "h_n_words", "h_n_lines"]).await;
    assert_eq!(together.len(), 300);
    assert_eq!(together, apart);
    assert!(together.iter().all(|(id, values)| values[0] == Some(id * 2)));
    assert_sound(&f.table).await;

    // A re-run finds both done.
    let summary = f.table.backfill_many(["a", "g"], BackfillOptions::default()).await.unwrap().wait().await.unwrap();
    assert_eq!((summary.rows_computed, summary.commits), (0, 0), "{summary:?}");
}

/// `doubled = id * 2`, but null where `id % 7 == 0` while `holes` is on;
/// counts the rows it is called on.
fn with_holes(calls: Arc<AtomicUsize>, holes: Arc<AtomicBool>) -> Udf {
    Udf::array("with_holes", Field::new("v", DataType::Int64, true), &["id"], move |cols| {
        let ids = cols[0].as_primitive::<Int64Type>();
        calls.fetch_add(ids.len(), Ordering::SeqCst);
        let on = holes.load(Ordering::SeqCst);
        let values: arrow_array::Int64Array =
            ids.iter().map(|id| id.filter(|id| !(on && id % 7 == 0)).map(|id| id * 2)).collect();
        Ok(Arc::new(values) as ArrayRef)
    })
    .with_version("1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_column_of_one_pass_computes_its_own_null_rows_and_partly_filled_fragments_are_refused() {
    let f = fixture(3, 100).await;
    let (calls_a, calls_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(Calls::default()));
    let holes = Arc::new(AtomicBool::new(true));
    f.table.add_columns([("a", with_holes(calls_a.clone(), holes.clone()))], AddColumnsOptions::default()).await.unwrap();
    f.table.add_columns([("b", doubling(calls_b.clone(), |_| Ok(())))], AddColumnsOptions::default()).await.unwrap();
    // Filled one at a time first: each column in a file of its own.
    for name in ["a", "b"] {
        f.table.backfill(name, BackfillOptions::default()).await.unwrap().wait().await.unwrap();
    }
    assert_eq!(column(&f.table, "a").await.iter().filter(|(_, v)| v.is_none()).count(), 43, "ids 0, 7, .., 294");

    // Appended rows are null in both; a's holes only in a.
    f.table.append(vec![batch(300, 50)]).await.unwrap();
    holes.store(false, Ordering::SeqCst);
    calls_a.store(0, Ordering::SeqCst);
    calls_b.reset();
    let plan = f.table.plan_backfill_many(["a", "b"], &BackfillOptions::default()).await.unwrap();
    assert_eq!(plan.rows_to_compute, 43 + 50, "{plan:?}");
    let summary = f.table.backfill_many(["a", "b"], BackfillOptions::default()).await.unwrap().wait().await.unwrap();
    assert_eq!(summary.rows_computed, 43 + 50, "{summary:?}");
    assert_eq!(calls_a.load(Ordering::SeqCst), 43 + 50, "a computes its null rows");
    assert_eq!(calls_b.total(), 50, "b computes only its own: the appended rows");
    for name in ["a", "b"] {
        assert!(column(&f.table, name).await.iter().all(|(id, v)| *v == Some(id * 2)), "{name}");
    }
    let dataset = f.table.dataset().await.unwrap();
    let field_ids: Vec<i32> = ["a", "b"].iter().map(|c| dataset.schema().field(c).unwrap().id).collect();
    assert_eq!(files_holding(&f.table, &["a", "b"]).await, vec![vec![field_ids]; 4], "the files of a and of b replaced by one");
    assert_sound(&f.table).await;

    // A column never filled beside one filled in every fragment: Lance
    // cannot replace both with one file there, so the job is refused,
    // naming the fragments, and the table is untouched.
    f.table.add_columns([("c", doubling(Arc::new(Calls::default()), |_| Ok(())))], AddColumnsOptions::default()).await.unwrap();
    let version = f.table.version().await.unwrap();
    let refused = f.table.backfill_many(["a", "c"], BackfillOptions::default()).await.unwrap_err().to_string();
    assert!(refused.contains("fragments 0, 1, 2, 3 hold values of a but not of c"), "{refused}");
    assert!(refused.contains("one at a time (--column c)"), "{refused}");
    assert_eq!(f.table.version().await.unwrap(), version);
    let twice = f.table.backfill_many(["a", "a"], BackfillOptions::default()).await.unwrap_err().to_string();
    assert!(twice.contains("named twice"), "{twice}");
    let staged = f.table.backfill_many(["a", "b"], BackfillOptions::default().stage(true)).await.unwrap_err().to_string();
    assert!(staged.contains("takes no stage"), "{staged}");
}
