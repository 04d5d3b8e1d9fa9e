//! `leman backfill --queue`: a second backfill of a column waits for the
//! one that holds the column's lease, says which, and runs once it ended,
//! on the table as it left it; a queued job is listed as queued while it
//! waits, and its `--timeout` ends its wait, recorded cancelled.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cli::cancel::{CANCELLED, job, slow_table};
use crate::cli::{Backfill, leman};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_backfills_of_one_column_run_one_after_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let table = slow_table(dir.path()).await;
    let path = table.uri().to_string();
    let args = ["backfill", "--table", &path, "--column", "slow", "--concurrency", "2", "--batch-size", "100", "--refresh-status-secs", "0.1"];
    let first = Backfill::until(&args, 200);
    let first_id = table.jobs().await.unwrap()[0].id.clone();

    // Without --queue, refused at once; with it, waits.
    let refused = leman(&args);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("is being backfilled"), "{refused:?}");
    let queued = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_leman"))
            .args([&args[..], &["--queue", "--json"], extra].concat())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start leman backfill --queue")
    };
    // Recomputes the first 1,000 rows once the first job is done.
    let second = queued(&["--where", "id < 1000"]);
    // Gives up waiting after a second, long before the first job ends.
    let impatient = queued(&["--timeout", "1"]).wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&impatient.stderr);
    assert_eq!(impatient.status.code(), Some(CANCELLED), "{said}");
    assert!(said.contains(&format!("waiting for job {first_id}")), "{said}");
    let statuses = |records: &[leman::JobRecord]| records.iter().map(|r| r.status).collect::<Vec<_>>();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let records = loop {
        let records = table.jobs().await.unwrap();
        if statuses(&records).contains(&leman::JobStatus::Queued) || std::time::Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut seen = statuses(&records);
    seen.sort_by_key(|s| s.to_string());
    use leman::JobStatus::{Cancelled, Queued, Running};
    assert_eq!(seen, [Cancelled, Queued, Running], "the first runs, the second is listed queued, the impatient one cancelled");
    let listed = crate::cli::ok(leman(&["jobs", "--table", &path]));
    assert!(listed.lines().any(|l| l.contains(" queued ")), "{listed}");

    let (status, errors) = first.exit(Duration::from_secs(120));
    assert!(status.success(), "{errors:?}");
    let second = second.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{said}");
    assert!(said.contains(&format!("waiting for job {first_id}, which backfills this column")), "{said}");
    let summary: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&second.stdout).trim()).unwrap();
    assert_eq!(summary["rows_computed"], 1000, "it ran on what the first left: {summary}");

    let (first, second) = (job(&path, &first_id), job(&path, summary["job_id"].as_str().unwrap()));
    assert_eq!((&first["status"], &second["status"]), (&"succeeded".into(), &"succeeded".into()), "{first}\n{second}");
    let (ended, began) = (first["finished_at_ms"].as_u64().unwrap(), second["started_at_ms"].as_u64().unwrap());
    assert!(ended <= began, "the second began at {began}, before the first ended at {ended}");
    assert_eq!(table.count_rows(Some("slow = id")).await.unwrap(), 4000);
}
