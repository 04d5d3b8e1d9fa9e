//! `leman backfill --column a,b`: two columns computed in one pass on a
//! local cluster (every part of the job travels to the workers), one
//! commit; and a pair Lance cannot write into one file refused in one line.

use leman::deps::arrow_array::cast::AsArray;
use leman::deps::arrow_array::types::{Int32Type, Int64Type};

use crate::cli::{fails, leman, ok, sample_table};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_columns_in_one_pass_on_a_local_cluster_then_a_partly_filled_pair_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let table = sample_table(dir.path(), 3, 200).await;
    let path = table.uri().to_string();
    ok(leman(&["add-column", "--table", &path, "--column", "len", "--udf", "str_len", "--input", "text"]));
    ok(leman(&["add-column", "--table", &path, "--column", "echo", "--udf", "busy", "--input", "id", "--udf-arg", "micros=1"]));

    let before = table.version().await.unwrap();
    let args = ["backfill", "--table", &path, "--column", "len,echo", "--local-workers", "2", "--batch-size", "64", "--json"];
    let summary: serde_json::Value = serde_json::from_str(ok(leman(&args)).trim()).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(summary["rows_computed"], 600, "{summary}");
    assert_eq!(table.version().await.unwrap(), before + 1, "one commit for both columns");
    let mut scan = table.dataset().await.unwrap().scan();
    scan.project(&["id", "text", "len", "echo"]).unwrap();
    let batch = scan.try_into_batch().await.unwrap();
    let (ids, texts) = (batch.column(0).as_primitive::<Int64Type>(), batch.column(1).as_string::<i32>());
    let (lens, echoes) = (batch.column(2).as_primitive::<Int32Type>(), batch.column(3).as_primitive::<Int64Type>());
    assert_eq!(batch.num_rows(), 600);
    for i in 0..batch.num_rows() {
        assert_eq!(lens.value(i) as usize, texts.value(i).chars().count(), "row {}", ids.value(i));
        assert_eq!(echoes.value(i), ids.value(i));
    }
    let dry_run = ok(leman(&["backfill", "--table", &path, "--column", "len,echo", "--dry-run"]));
    assert!(dry_run.contains("rows       0 to compute"), "{dry_run}");

    ok(leman(&["add-column", "--table", &path, "--column", "len2", "--udf", "str_len", "--input", "text"]));
    let refused = fails(leman(&["backfill", "--table", &path, "--column", "len,len2"]));
    assert!(refused.contains("fragments 0, 1, 2 hold values of len but not of len2"), "{refused}");
    assert!(refused.contains("one at a time (--column len2)"), "{refused}");
}
