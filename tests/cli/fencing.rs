//! Lease fencing: a backfill paused (SIGSTOP) past its lease's staleness
//! is taken over by another job of the same column, which finishes; the
//! first, resumed (SIGCONT), commits nothing more and says that the column
//! was taken over, by whom.

use std::time::{Duration, Instant};

use crate::cli::cancel::slow_table;
use crate::cli::{Backfill, leman, signal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_job_whose_column_was_taken_over_commits_nothing_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let table = slow_table(dir.path()).await;
    let path = table.uri().to_string();
    let args = ["backfill", "--table", &path, "--column", "slow", "--concurrency", "1", "--batch-size", "100", "--commit-granularity", "1", "--refresh-status-secs", "0.1"];
    let paused = Backfill::until(&args, 200);
    let pid = paused.child.id();
    signal(pid, "-STOP");

    // Refused while the paused job's lease is fresh, taken over once stale.
    let deadline = Instant::now() + Duration::from_secs(60);
    let summary: serde_json::Value = loop {
        let output = leman(&["backfill", "--table", &path, "--column", "slow", "--concurrency", "2", "--json"]);
        if output.status.success() {
            break serde_json::from_str(String::from_utf8_lossy(&output.stdout).trim()).unwrap();
        }
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(stderr.contains("is being backfilled by job"), "{stderr}");
        assert!(Instant::now() < deadline, "the lease never went stale: {stderr}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let successor = summary["job_id"].as_str().unwrap().to_string();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    let version = table.version().await.unwrap();
    assert_eq!(table.count_rows(Some("slow = id")).await.unwrap(), 4000);

    signal(pid, "-CONT");
    let (status, errors) = paused.exit(Duration::from_secs(60));
    assert!(!status.success(), "the paused job must fail: {errors:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains(&format!("column slow was taken over by job {successor}")), "{errors:?}");
    assert_eq!(table.version().await.unwrap(), version, "the resumed job committed nothing");
    table.dataset().await.unwrap().validate().await.unwrap();
    assert_eq!(table.count_rows(Some("slow = id")).await.unwrap(), 4000, "exact");
}
