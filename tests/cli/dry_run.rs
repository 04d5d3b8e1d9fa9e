//! `leman backfill --dry-run`: the plan on stdout (text or `--json`), the
//! table and its records untouched, and the real run then computes the
//! rows the plan said.

use crate::cli::{fails, leman, ok, sample_table};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_prints_the_plan_and_the_backfill_then_does_it() {
    let dir = tempfile::tempdir().unwrap();
    let table = sample_table(dir.path(), 4, 500).await;
    let path = table.uri().to_string();
    ok(leman(&["add-column", "--table", &path, "--column", "n", "--udf", "str_len", "--input", "text"]));
    let version = table.version().await.unwrap();
    let args = ["backfill", "--table", &path, "--column", "n", "--where", "id % 4 = 0", "--batch-size", "100", "--num-frags", "3"];

    let text = ok(leman(&[&args[..], &["--dry-run"]].concat()));
    assert!(text.starts_with(&format!("dry run: backfill of n in {path} at version {version} (nothing changed)")), "{text}");
    for line in [
        "udf        str_len version 1 (no job has filled the column yet)",
        "filter     id % 4 = 0",
        "fragments  4 in all: 0 done, 0 to commit, 3 to compute, 1 left for a later run",
        "tasks      15 to run, 0 from checkpoints",
        "rows       375 to compute, 0 from checkpoints",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing from:\n{text}");
    }
    let plan: serde_json::Value = serde_json::from_str(ok(leman(&[&args[..], &["--dry-run", "--json"]].concat())).trim()).unwrap();
    assert_eq!((plan["rows_to_compute"].as_u64(), plan["tasks"].as_u64()), (Some(375), Some(15)), "{plan}");
    assert!(plan["udf_version_changed"].is_null(), "{plan}");
    assert_eq!(table.version().await.unwrap(), version, "the table is unchanged");
    assert!(table.jobs().await.unwrap().is_empty(), "no job is recorded");

    let summary: serde_json::Value = serde_json::from_str(ok(leman(&[&args[..], &["--json"]].concat())).trim()).unwrap();
    assert_eq!(summary["rows_computed"], plan["rows_to_compute"], "{summary}");
    let plan: serde_json::Value = serde_json::from_str(ok(leman(&[&args[..], &["--dry-run", "--json"]].concat())).trim()).unwrap();
    assert_eq!((plan["fragments_done"].as_u64(), plan["udf_version_changed"].as_bool()), (Some(3), Some(false)), "{plan}");

    let bad = fails(leman(&["backfill", "--table", &path, "--column", "nope", "--dry-run"]));
    assert!(bad.contains("has no column nope"), "{bad}");
}
