//! `leman add-column --unpack`: `text_stats` declared as three prefixed
//! columns, backfilled together on a local cluster (the job's columns
//! travel to the workers), shown by `inspect`, dropped together.

use std::sync::Arc;

use leman::builtins::text_stats_of;
use leman::deps::arrow_array::cast::AsArray;
use leman::deps::arrow_array::types::{Int32Type, Int64Type};
use leman::deps::arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};

use crate::cli::{fails, leman, ok};

fn lines(first: i64, n: i64) -> RecordBatch {
    let ids: Vec<i64> = (first..first + n).collect();
    let text: Vec<Option<String>> =
        ids.iter().map(|id| (id % 13 != 0).then(|| "word ".repeat((id % 5) as usize) + &"\nline".repeat((id % 4) as usize))).collect();
    let columns: [(&str, ArrayRef); 2] = [("id", Arc::new(Int64Array::from(ids))), ("text", Arc::new(StringArray::from(text)))];
    RecordBatch::try_from_iter(columns).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_column_unpack_then_backfill_on_a_cluster_fills_every_sibling() {
    let dir = tempfile::tempdir().unwrap();
    let db = leman::connect(dir.path().to_str().unwrap()).await.unwrap();
    let table = db.create_table("t", vec![lines(0, 600)], leman::CreateTableOptions { max_rows_per_file: 200, ..Default::default() }).await.unwrap();
    let path = table.uri().to_string();

    let refused = leman(&["add-column", "--table", &path, "--udf", "text_stats", "--input", "text"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("--column <COLUMN>"), "a plain add-column needs a column: {stderr}");
    let added = ok(leman(&["add-column", "--table", &path, "--udf", "text_stats", "--input", "text", "--unpack", "--prefix", "p_"]));
    assert!(added.contains("columns p_n_chars, p_n_words, p_n_lines (group text_stats)"), "{added}");

    let before = table.version().await.unwrap();
    let args = ["backfill", "--table", &path, "--column", "p_n_words", "--local-workers", "2", "--batch-size", "50", "--json"];
    let summary: serde_json::Value = serde_json::from_str(ok(leman(&args)).trim()).unwrap();
    assert_eq!(summary["rows_computed"], 600, "{summary}");
    assert_eq!(table.version().await.unwrap(), before + 1, "one commit");

    let mut scan = table.dataset().await.unwrap().scan();
    scan.project(&["id", "p_n_chars", "p_n_words", "p_n_lines"]).unwrap();
    let batch = scan.try_into_batch().await.unwrap();
    let ids = batch.column(0).as_primitive::<Int64Type>();
    for (i, id) in ids.values().iter().enumerate() {
        let text = lines(*id, 1).column(1).as_string::<i32>().iter().next().flatten().map(str::to_string);
        let expected = text.as_deref().map(text_stats_of);
        for (k, column) in (1..4).enumerate() {
            let values = batch.column(column).as_primitive::<Int32Type>();
            let got = values.is_valid(i).then(|| values.value(i));
            assert_eq!(got, expected.map(|e| e[k]), "row {id} column {column}: {text:?}");
        }
    }

    let shown = ok(leman(&["inspect", "--table", &path]));
    assert!(shown.lines().any(|l| l.contains("p_n_chars") && l.contains("udf text_stats(text)") && l.contains("[field n_chars of group text_stats]")), "{shown}");
    assert!(shown.lines().any(|l| l.contains("p_n_lines") && l.contains("[field n_lines of group text_stats]") && l.contains("553/600 filled")), "{shown}");

    let dropped = ok(leman(&["drop-column", "--table", &path, "--column", "text_stats"]));
    assert!(dropped.contains("dropped columns p_n_chars, p_n_words, p_n_lines"), "{dropped}");
    let unknown = fails(leman(&["backfill", "--table", &path, "--column", "p_n_words"]));
    assert!(unknown.contains("p_n_words"), "{unknown}");
}
