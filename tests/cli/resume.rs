//! A `leman backfill` process killed with SIGKILL mid-job: its job shows as
//! interrupted once its lease goes stale, and a re-run resumes from its
//! checkpoints.

use std::time::{Duration, Instant};

use crate::cli::{backfill_until, leman, ok, sample_table};

fn jobs(path: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(ok(leman(&["jobs", "--table", path, "--json"])).trim()).unwrap()
}

/// Waits (at most 40 s) for the killed job's lease to go stale.
fn until_interrupted(path: &str) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while jobs(path)[0]["status"] != "interrupted" {
        assert!(Instant::now() < deadline, "the job was never reported interrupted");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backfill_is_interrupted_and_resumes_from_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let table = sample_table(dir.path(), 4, 1000).await;
    let path = table.uri().to_string();
    ok(leman(&["add-column", "--table", &path, "--column", "slow", "--udf", "busy", "--input", "id", "--udf-arg", "micros=2000"]));

    let args = ["backfill", "--table", &path, "--column", "slow", "--concurrency", "2", "--batch-size", "100", "--commit-granularity", "1", "--refresh-status-secs", "0.1"];
    let mut child = backfill_until(&args, 1200);
    child.kill().unwrap(); // SIGKILL: no cleanup at all
    child.wait().unwrap();
    assert_eq!(jobs(&path)[0]["status"], "running", "its lease is still fresh");

    until_interrupted(&path);

    let summary: serde_json::Value = serde_json::from_str(ok(leman(&[&args[..9], &["--json"]].concat())).trim()).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    let recomputed = summary["rows_computed"].as_u64().unwrap();
    assert!(recomputed <= 4000 - 1200 + 2 * 100, "checkpointed batches were not recomputed: {summary}");
    assert_eq!(table.count_rows(Some("slow IS NULL")).await.unwrap(), 0);
    assert_eq!(table.count_rows(Some("slow = id")).await.unwrap(), 4000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_batches_on_a_slow_udf_resume_after_a_kill_without_recomputing_checkpointed_rows() {
    let dir = tempfile::tempdir().unwrap();
    let table = sample_table(dir.path(), 2, 1000).await;
    let path = table.uri().to_string();
    ok(leman(&["add-column", "--table", &path, "--column", "slow", "--udf", "busy", "--input", "id", "--udf-arg", "micros=2000"]));

    // 2 ms a row and 50 ms a batch: batches of 1, 4, 16, then 25 rows,
    // where a fixed size would checkpoint each fragment's 1,000 rows whole.
    let args = [
        "backfill", "--table", &path, "--column", "slow", "--concurrency", "2", "--batch-size", "auto",
        "--target-batch-secs", "0.05", "--refresh-status-secs", "0.1",
    ];
    let mut child = backfill_until(&args, 300);
    child.kill().unwrap();
    child.wait().unwrap();
    let dry_run: serde_json::Value =
        serde_json::from_str(ok(leman(&[&args[..11], &["--dry-run", "--json"]].concat())).trim()).unwrap();
    let checkpointed = dry_run["rows_from_checkpoints"].as_u64().unwrap();
    assert!(checkpointed >= 300, "the rows seen done before the kill are checkpointed: {dry_run}");
    assert!(dry_run["tasks_checkpointed"].as_u64().unwrap() >= 300 / 25, "in batches of at most 25 rows: {dry_run}");
    assert_eq!(dry_run["rows_to_compute"].as_u64().unwrap(), 2000 - checkpointed, "{dry_run}");

    until_interrupted(&path);
    let summary: serde_json::Value = serde_json::from_str(ok(leman(&[&args[..], &["--json"]].concat())).trim()).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(summary["rows_computed"].as_u64().unwrap(), 2000 - checkpointed, "no checkpointed row computed again: {summary}");
    assert_eq!(summary["rows_from_checkpoints"].as_u64().unwrap(), checkpointed, "{summary}");
    assert_eq!(table.count_rows(Some("slow = id")).await.unwrap(), 2000);
}

/// Batches of a cheap UDF go from applier to writer in memory and are not
/// all stored: a process killed mid-job loses some of them, and the re-run
/// recomputes exactly what is neither in a written fragment nor stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backfill_of_a_cheap_udf_loses_only_batches_held_in_memory_and_ends_exact() {
    let dir = tempfile::tempdir().unwrap();
    let table = sample_table(dir.path(), 8, 50_000).await;
    let path = table.uri().to_string();
    // 1 us a row, 100 rows a batch: a tenth of a millisecond of work, held.
    ok(leman(&["add-column", "--table", &path, "--column", "cheap", "--udf", "busy", "--input", "id", "--udf-arg", "micros=1"]));

    let args = ["backfill", "--table", &path, "--column", "cheap", "--concurrency", "2", "--batch-size", "100", "--commit-granularity", "100", "--refresh-status-secs", "0.1"];
    let started = Instant::now();
    let mut child = backfill_until(&args, 40_000);
    let ran = started.elapsed();
    child.kill().unwrap(); // SIGKILL: held batches are lost, not stored
    child.wait().unwrap();

    until_interrupted(&path);
    let dry_run: serde_json::Value = serde_json::from_str(ok(leman(&[&args[..11], &["--dry-run", "--json"]].concat())).trim()).unwrap();
    let kept = dry_run["rows_from_checkpoints"].as_u64().unwrap();
    assert!(kept < 400_000, "the job was killed before its end: {dry_run}");
    // Killed before any held batch could age to its store (2 s), and no
    // fragment of 50,000 rows written: the 40,000 rows reported done were
    // only in memory, and none is kept.
    if ran < Duration::from_millis(1500) {
        assert!(kept < 40_000, "cheap batches were held, not stored ({ran:?} into the job): {dry_run}");
    } else {
        eprintln!("the job took {ran:?} to reach 40,000 rows: held batches may have aged to the store");
    }

    let summary: serde_json::Value = serde_json::from_str(ok(leman(&[&args[..11], &["--json"]].concat())).trim()).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(summary["rows_from_checkpoints"].as_u64().unwrap(), kept, "what the dry run found is what the re-run reused: {summary}");
    assert_eq!(summary["rows_computed"].as_u64().unwrap(), 400_000 - kept, "{summary}");
    assert_eq!(table.count_rows(Some("cheap = id")).await.unwrap(), 400_000);
}
