//! Every bad input is a one-line error, a non-zero exit, and an unchanged table.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use leman::{AddColumnsOptions, BackfillOptions, CreateTableOptions, JobEvent, builtins};

use crate::cli::{fails, leman, ok};

async fn table(dir: &tempfile::TempDir, rows: i64) -> leman::Table {
    let db = leman::connect(dir.path().to_str().unwrap()).await.unwrap();
    let ids: ArrayRef = Arc::new(Int64Array::from((0..rows).collect::<Vec<_>>()));
    let text: ArrayRef = Arc::new(StringArray::from((0..rows).map(|i| format!("text {i}")).collect::<Vec<_>>()));
    let batch = RecordBatch::try_from_iter([("id", ids), ("text", text)]).unwrap();
    db.create_table("t", vec![batch], CreateTableOptions { max_rows_per_file: 50, ..Default::default() }).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_types_and_filters_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let t = table(&dir, 100).await;
    let path = t.uri().to_string();
    ok(leman(&["add-column", "--table", &path, "--column", "n", "--udf", "str_len", "--input", "text"]));
    let version = t.version().await.unwrap();

    let missing = dir.path().join("missing.lance");
    let cases: [(&[&str], &str); 7] = [
        (&["backfill", "--table", missing.to_str().unwrap(), "--column", "n"], "no table at"),
        (&["backfill", "--table", &path, "--column", "nope"], "has no column nope"),
        (&["add-column", "--table", &path, "--column", "m", "--udf", "nope", "--input", "text"], "unknown built-in UDF nope"),
        (&["add-column", "--table", &path, "--column", "m", "--udf", "sha256", "--input", "missing"], "column missing"),
        (&["add-column", "--table", &path, "--column", "m", "--udf", "str_len", "--input", "id"], "cannot read column id of type Int64"),
        (&["add-column", "--table", &path, "--column", "n", "--udf", "str_len", "--input", "text"], "already has a column n"),
        (&["backfill", "--table", &path, "--column", "n", "--where", "id >>> 1"], "invalid filter"),
    ];
    for (args, expected) in cases {
        let line = fails(leman(args));
        assert!(line.contains(expected), "{args:?}: {line}");
    }
    assert_eq!(t.version().await.unwrap(), version, "nothing was written");
    assert!(t.jobs().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_being_backfilled_is_refused_to_a_second_job() {
    let dir = tempfile::tempdir().unwrap();
    let t = table(&dir, 200).await;
    builtins::register_all(t.registry());
    let slow = builtins::get("busy", &["id"], &[("micros".into(), "50000".into())]).unwrap();
    t.add_columns([("slow", slow)], AddColumnsOptions::default()).await.unwrap();
    let job = t.backfill("slow", BackfillOptions::default().batch_size(2).concurrency(1)).await.unwrap();
    assert!(matches!(job.next_event().await, Some(JobEvent::Planned { .. })));

    let path = t.uri().to_string();
    let line = fails(leman(&["backfill", "--table", &path, "--column", "slow"]));
    assert!(line.contains(&format!("is being backfilled by job {}", job.id())), "{line}");

    job.cancel();
    assert!(matches!(job.wait().await, Err(leman::Error::Cancelled { .. })));
    let stdout = ok(leman(&["backfill", "--table", &path, "--column", "slow", "--where", "id < 4", "--json"]));
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["status"], "succeeded");
}
