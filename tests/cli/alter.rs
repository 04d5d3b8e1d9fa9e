//! `leman alter-column`: the dry run then says the fragments another UDF
//! computed are recomputed whole, the backfill recomputes every row, and
//! `leman jobs show` tells what the job cost.

use std::sync::Arc;

use leman::deps::arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};

use crate::cli::{fails, leman, ok};

/// Ids `first..first + 100`; `a` is `id % 7` letters long, `b` `id % 11`.
fn two_texts(first: i64) -> RecordBatch {
    let ids: Vec<i64> = (first..first + 100).collect();
    let a: Vec<String> = ids.iter().map(|id| "a".repeat((id % 7) as usize)).collect();
    let b: Vec<String> = ids.iter().map(|id| "b".repeat((id % 11) as usize)).collect();
    let columns: [(&str, ArrayRef); 3] =
        [("id", Arc::new(Int64Array::from(ids))), ("a", Arc::new(StringArray::from(a))), ("b", Arc::new(StringArray::from(b)))];
    RecordBatch::try_from_iter(columns).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_column_then_backfill_recomputes_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = leman::connect(dir.path().to_str().unwrap()).await.unwrap();
    let table = db.create_table("t", vec![two_texts(0), two_texts(100)], leman::CreateTableOptions { max_rows_per_file: 100, ..Default::default() }).await.unwrap();
    let path = table.uri().to_string();
    ok(leman(&["add-column", "--table", &path, "--column", "len", "--udf", "str_len", "--input", "a"]));
    let first = ok(leman(&["backfill", "--table", &path, "--column", "len", "--json"]));
    assert!(first.contains("\"rows_computed\":200"), "{first}");

    let altered = ok(leman(&["alter-column", "--table", &path, "--column", "len", "--udf", "str_len", "--input", "b", "--on-error", "skip"]));
    assert!(altered.contains("is now computed by str_len(b)") && altered.contains("was str_len"), "{altered}");
    let record = table.udf_record("len").await.unwrap().unwrap();
    assert_eq!((record.inputs, record.on_error), (vec!["b".to_string()], Some(leman::ErrorPolicy::Skip)));

    let plan = ok(leman(&["backfill", "--table", &path, "--column", "len", "--dry-run"]));
    assert!(plan.lines().any(|l| l.trim() == "2 of them recomputed whole: another UDF or version computed their values"), "{plan}");
    assert!(plan.lines().any(|l| l == "rows       200 to compute, 0 from checkpoints"), "{plan}");
    let summary: serde_json::Value = serde_json::from_str(ok(leman(&["backfill", "--table", &path, "--column", "len", "--json"])).trim()).unwrap();
    assert_eq!(summary["rows_computed"], 200, "every row, not only null ones: {summary}");
    let values = table.dataset().await.unwrap().scan().try_into_batch().await.unwrap();
    let ids = values.column_by_name("id").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
    let lens = values.column_by_name("len").unwrap().as_any().downcast_ref::<Int32Array>().unwrap();
    for (id, len) in ids.iter().zip(lens.iter()) {
        assert_eq!(len, Some((id.unwrap() % 11) as i32));
    }

    // What the job cost, in `jobs show` and its JSON.
    let job = summary["job_id"].as_str().unwrap();
    let shown = ok(leman(&["jobs", "show", job, "--table", &path]));
    for start in ["options    ", "started    ", "time       plan ", "udf cpu    ", "rows       200 read, 200 written", "store      ", "memory     "] {
        assert!(shown.lines().any(|l| l.starts_with(start)), "{start:?} missing from:\n{shown}");
    }
    assert!(shown.contains("on_error=skip") && shown.contains("(pid "), "{shown}");
    let record: serde_json::Value = serde_json::from_str(ok(leman(&["jobs", "show", job, "--table", &path, "--json"])).trim()).unwrap();
    assert!(record["cost"]["object_store_requests"].as_u64().unwrap() > 0, "{record}");
    assert!(record["cost"]["bytes_written"].as_u64().unwrap() > 0, "{record}");
    assert_eq!(record["options"]["concurrency"], "8", "{record}");

    // Without --on-error the column keeps its policy.
    ok(leman(&["alter-column", "--table", &path, "--column", "len", "--udf", "str_len", "--input", "a"]));
    assert_eq!(table.udf_record("len").await.unwrap().unwrap().on_error, Some(leman::ErrorPolicy::Skip));

    let wrong = fails(leman(&["alter-column", "--table", &path, "--column", "len", "--udf", "sha256", "--input", "b"]));
    assert!(wrong.contains("produces Utf8 but column len is Int32"), "{wrong}");
}
