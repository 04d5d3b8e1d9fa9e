//! `leman backfill --stage`, `leman jobs` listing staged jobs, `leman
//! promote` of two columns (one staged on a local cluster) and `leman
//! discard`.

use crate::cli::{fails, leman, ok, sample_table};

fn job_id(summary: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(summary.trim()).unwrap();
    assert_eq!(value["status"], "staged", "{value}");
    assert_eq!(value["fragments_staged"], 4, "{value}");
    assert_eq!(value["commits"], 0, "{value}");
    value["job_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_columns_are_listed_promoted_together_and_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let table = sample_table(dir.path(), 4, 250).await;
    let path = table.uri().to_string();
    ok(leman(&["add-column", "--table", &path, "--column", "len", "--udf", "str_len", "--input", "text"]));
    ok(leman(&["add-column", "--table", &path, "--column", "digest", "--udf", "sha256", "--input", "text"]));
    ok(leman(&["add-column", "--table", &path, "--column", "extra", "--udf", "str_len", "--input", "text"]));
    let before = table.version().await.unwrap();

    let len = job_id(&ok(leman(&["backfill", "--table", &path, "--column", "len", "--stage", "--json"])));
    let args = ["backfill", "--table", &path, "--column", "digest", "--stage", "--json", "--local-workers", "2"];
    let digest = job_id(&ok(leman(&args)));
    let extra = job_id(&ok(leman(&["backfill", "--table", &path, "--column", "extra", "--stage", "--json"])));
    assert_eq!(table.version().await.unwrap(), before, "staging commits nothing");

    let listed = ok(leman(&["jobs", "--table", &path]));
    for (id, column) in [(&len, "len"), (&digest, "digest"), (&extra, "extra")] {
        assert!(
            listed.lines().any(|l| l.starts_with(&format!("staged {id}: column {column}, 4 fragments, ")) && l.contains(" old, written at version ")),
            "{listed}"
        );
    }

    let promoted = ok(leman(&["promote", &len, &digest, "--table", &path]));
    assert!(promoted.contains("columns len, digest in 4 fragments") && promoted.contains(&format!("now version {}", before + 1)), "{promoted}");
    let filled = table.count_rows(Some("len IS NOT NULL AND digest IS NOT NULL")).await.unwrap();
    assert_eq!(filled, table.count_rows(None).await.unwrap());
    assert_eq!(table.count_rows(Some("extra IS NOT NULL")).await.unwrap(), 0, "the third job stays staged");

    let discarded = ok(leman(&["discard", &extra, "--table", &path]));
    assert!(discarded.contains(&format!("discarded job {extra}")), "{discarded}");
    let again = fails(leman(&["promote", &extra, "--table", &path]));
    assert!(again.contains(&format!("job {extra} is not staged (status: discarded)")), "{again}");
    let listed = ok(leman(&["jobs", "--table", &path]));
    assert!(!listed.lines().any(|l| l.starts_with("staged ")), "{listed}");
    crate::engine::support::assert_sound(&table).await;
}
