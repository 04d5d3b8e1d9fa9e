//! `leman cleanup`: a job stopped by its timeout keeps its checkpoints; a
//! clean-up keeps them while a re-run can use them, reports them in a dry
//! run, and removes them once older than `--older-than`.

use crate::cli::cancel::slow_table;
use crate::cli::{Backfill, fails, leman, ok};

fn report(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(ok(leman(&[args, &["--json"]].concat())).trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_reports_and_removes_the_checkpoints_of_an_abandoned_job() {
    let dir = tempfile::tempdir().unwrap();
    let table = slow_table(dir.path()).await;
    let path = table.uri().to_string();
    let args = ["backfill", "--table", &path, "--column", "slow", "--concurrency", "2", "--batch-size", "100", "--refresh-status-secs", "0.1", "--timeout", "1.5"];
    let (status, _) = Backfill::until(&args, 0).exit(std::time::Duration::from_secs(30));
    assert_eq!(status.code(), Some(leman::cli::EXIT_CANCELLED as i32));
    let checkpoints = std::path::Path::new(&path).join("_leman/checkpoints");
    let count = |kind: &str| std::fs::read_dir(checkpoints.join(kind)).map(|d| d.count()).unwrap_or(0) as u64;
    let stored = || count("batches") + count("fragments");
    let checkpointed = stored();
    assert!(checkpointed > 0, "the cancelled job kept its checkpoints");

    let kept = report(&["cleanup", "--table", &path]);
    assert_eq!((kept["removed"]["objects"].as_u64(), kept["kept"]["objects"].as_u64()), (Some(0), Some(checkpointed)), "{kept}");
    let text = ok(leman(&["cleanup", "--table", &path, "--older-than", "0s", "--dry-run"]));
    assert!(text.starts_with(&format!("would remove {checkpointed} of {checkpointed} checkpoint objects")), "{text}");
    assert!(text.contains("  abandoned: "), "{text}");
    assert_eq!(stored(), checkpointed, "a dry run removes nothing");

    let removed = report(&["cleanup", "--table", &path, "--older-than", "0s"]);
    assert_eq!(removed["removed"]["objects"].as_u64(), Some(checkpointed), "{removed}");
    assert_eq!(removed["removed"]["bytes"], kept["kept"]["bytes"], "{removed}");
    assert_eq!(removed["by_reason"]["abandoned"]["objects"].as_u64(), Some(checkpointed), "{removed}");
    assert_eq!(stored(), 0);

    let bad = fails(leman(&["cleanup", "--table", &path, "--older-than", "5x"]));
    assert!(bad.contains("\"5x\" is not an age such as 90s, 30m, 12h or 7d"), "{bad}");
}
