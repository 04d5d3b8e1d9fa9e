//! `--on-error`, skip budgets, `leman errors` and `--retry-errors`, with
//! the built-in `parse_int` on a table where some values are not numbers.

use std::collections::BTreeSet;
use std::sync::Arc;

use leman::deps::arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};

use crate::cli::{fails, leman, ok};

/// Ids `first..first + 100`; the raw value of every id with `id % 25 == 3`
/// is not a number (8 of 200 rows).
fn raw_batch(first: i64) -> RecordBatch {
    let ids: Vec<i64> = (first..first + 100).collect();
    let raw: Vec<String> = ids.iter().map(|id| if id % 25 == 3 { format!("n{id}") } else { format!(" {} ", id - 50) }).collect();
    let columns: [(&str, ArrayRef); 2] = [("id", Arc::new(Int64Array::from(ids))), ("raw", Arc::new(StringArray::from(raw)))];
    RecordBatch::try_from_iter(columns).unwrap()
}

fn bad_addresses() -> BTreeSet<u64> {
    (0..200u64).filter(|id| id % 25 == 3).map(|id| ((id / 100) << 32) | (id % 100)).collect()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn addresses(errors: &serde_json::Value) -> BTreeSet<u64> {
    errors.as_array().unwrap().iter().map(|e| e["row_address"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parse_int_skips_within_budgets_lists_the_rows_and_retries_exactly_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = leman::connect(dir.path().to_str().unwrap()).await.unwrap();
    let table = db.create_table("t", vec![raw_batch(0), raw_batch(100)], leman::CreateTableOptions { max_rows_per_file: 100, ..Default::default() }).await.unwrap();
    let path = table.uri().to_string();
    let added = ok(leman(&["add-column", "--table", &path, "--column", "n", "--udf", "parse_int", "--input", "raw", "--on-error", "skip"]));
    assert!(added.contains("on error: skip"), "{added}");
    assert_eq!(table.udf_record("n").await.unwrap().unwrap().on_error, Some(leman::ErrorPolicy::Skip), "recorded with the UDF");
    let backfill = ["backfill", "--table", &path, "--column", "n", "--batch-size", "50", "--concurrency", "2"];

    // 8 bad rows spend a budget of 7, and 4% a budget of 1%: exit 1, naming it.
    let line = fails(leman(&[&backfill[..], &["--max-skipped-rows", "7"]].concat()));
    assert!(line.contains("the skip budget is spent: 8 rows skipped, more than max_skipped_rows = 7 allows"), "{line}");
    let line = fails(leman(&[&backfill[..], &["--max-skipped-fraction", "0.01"]].concat()));
    assert!(line.contains("more than max_skipped_fraction = 0.01 allows"), "{line}");
    assert!(fails(leman(&[&backfill[..], &["--max-skipped-fraction", "1.5"]].concat())).contains("from 0 to 1"));

    // Within budget, it succeeds: the bad rows are null, the rest parsed.
    let summary = json(&ok(leman(&[&backfill[..], &["--max-skipped-fraction", "0.05", "--json"]].concat())));
    assert_eq!(summary["status"], "succeeded", "{summary}");
    let values = table.dataset().await.unwrap().scan().try_into_batch().await.unwrap();
    let ids = values.column_by_name("id").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
    let n = values.column_by_name("n").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
    for (id, value) in ids.iter().zip(n.iter()) {
        let id = id.unwrap();
        assert_eq!(value, (id % 25 != 3).then_some(id - 50), "row {id}");
    }

    // Every bad row is recorded once, by the job that met it.
    let errors = json(&ok(leman(&["errors", "--table", &path, "--json"])));
    assert_eq!(addresses(&errors), bad_addresses(), "{errors}");
    assert_eq!(errors.as_array().unwrap().len(), 8, "each once: {errors}");
    for error in errors.as_array().unwrap() {
        assert_eq!((error["udf_name"].as_str(), error["udf_version"].as_str()), (Some("parse_int"), Some("1")), "{error}");
        assert_eq!((error["outcome"].as_str(), error["attempts"].as_u64(), error["column"].as_str()), (Some("skipped"), Some(2), Some("n")));
        let id = (error["row_address"].as_u64().unwrap() >> 32) * 100 + (error["row_address"].as_u64().unwrap() & 0xffff_ffff);
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(&format!("parse_int: \"n{id}\" is not a base-10 integer")), "{message}");
        assert_eq!(error["fragment_id"].as_u64(), Some(id / 100));
    }
    let jobs: BTreeSet<&str> = errors.as_array().unwrap().iter().map(|e| e["job_id"].as_str().unwrap()).collect();
    let text = ok(leman(&["errors", "--table", &path]));
    assert!(text.lines().next().is_some_and(|header| header.starts_with("JOB")), "{text}");
    assert!(text.contains(&format!("8 rows in {} jobs", jobs.len())), "{text}");

    // --retry-errors: exactly the rows of one job (they fail again, skipped).
    let job = *jobs.iter().next().unwrap();
    let of_job = json(&ok(leman(&["errors", "--table", &path, "--job", job, "--json"])));
    let retried = json(&ok(leman(&["backfill", "--table", &path, "--column", "n", "--retry-errors", job, "--json"])));
    assert_eq!(retried["rows_computed"], 0, "{retried}");
    assert_eq!(retried["rows_skipped"].as_u64(), Some(of_job.as_array().unwrap().len() as u64), "{retried}");
    let again = json(&ok(leman(&["errors", "--table", &path, "--job", retried["job_id"].as_str().unwrap(), "--json"])));
    assert_eq!(addresses(&again), addresses(&of_job));

    // --where takes _rowaddr: one good row of fragment 1, recomputed alone.
    let one = format!("_rowaddr IN ({})", (1u64 << 32) | 10);
    let summary = json(&ok(leman(&["backfill", "--table", &path, "--column", "n", "--where", &one, "--json"])));
    assert_eq!((summary["rows_computed"].as_u64(), summary["rows_skipped"].as_u64()), (Some(1), Some(0)), "{summary}");

    let line = fails(leman(&["backfill", "--table", &path, "--column", "n", "--retry-errors", "nojob"]));
    assert!(line.contains("job nojob recorded no failed rows"), "{line}");
    let usage = String::from_utf8_lossy(&leman(&[&backfill[..], &["--on-error", "ignore"]].concat()).stderr).into_owned();
    assert!(usage.contains("is no error policy: give fail, retry:N"), "{usage}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_fail_the_job_fails_and_its_failed_batch_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = leman::connect(dir.path().to_str().unwrap()).await.unwrap();
    let table = db.create_table("t", vec![raw_batch(0)], leman::CreateTableOptions { max_rows_per_file: 100, ..Default::default() }).await.unwrap();
    let path = table.uri().to_string();
    ok(leman(&["add-column", "--table", &path, "--column", "n", "--udf", "parse_int", "--input", "raw", "--on-error", "retry:1", "--retry-backoff-ms", "1,5"]));
    let version = table.version().await.unwrap();
    let line = fails(leman(&["backfill", "--table", &path, "--column", "n", "--batch-size", "100"]));
    assert!(line.contains("UDF parse_int failed after 2 calls: parse_int: \"n3\" is not a base-10 integer"), "{line}");
    assert_eq!(table.version().await.unwrap(), version, "nothing committed");
    let errors = json(&ok(leman(&["errors", "--table", &path, "--json"])));
    let [error] = errors.as_array().unwrap().as_slice() else { panic!("{errors}") };
    assert_eq!((error["outcome"].as_str(), error["attempts"].as_u64()), (Some("failed"), Some(2)), "{error}");
    assert!(error["row_address"].is_null(), "an array UDF's batch failed as a whole: {error}");
    assert_eq!(error["task_rows"], serde_json::json!({"start": 0, "end": 100}));

    // The run's own policy: skip this time, the column's record unchanged.
    let summary = json(&ok(leman(&["backfill", "--table", &path, "--column", "n", "--on-error", "skip", "--json"])));
    assert_eq!((summary["rows_computed"].as_u64(), summary["rows_skipped"].as_u64()), (Some(96), Some(4)), "{summary}");
    assert_eq!(table.udf_record("n").await.unwrap().unwrap().on_error, Some(leman::ErrorPolicy::Retry { attempts: 1 }));
    let record = table.job(summary["job_id"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!(record.options.get("on_error").map(String::as_str), Some("skip"), "{:?}", record.options);
}
