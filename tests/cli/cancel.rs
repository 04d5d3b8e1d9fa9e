//! Stopping a job from outside it: `leman jobs cancel` from another
//! process (through the table, or through the head of a cluster) and
//! `leman backfill --timeout`. Each stops the job after its batches in
//! flight with exit status 3 and a line saying how to resume; the record
//! says `cancelled` and why; a re-run resumes from the checkpoints.

use std::time::Duration;

use crate::cli::cluster::{cluster, init_certs};
use crate::cli::{Backfill, fails, leman, ok, sample_table};

pub(crate) const CANCELLED: i32 = leman::cli::EXIT_CANCELLED as i32;

/// A table of 4 fragments of 1,000 rows whose column `slow` takes 3 ms a
/// row (12 s of UDF time in all).
pub(crate) async fn slow_table(dir: &std::path::Path) -> leman::Table {
    let table = sample_table(dir, 4, 1000).await;
    let path = table.uri().to_string();
    ok(leman(&["add-column", "--table", &path, "--column", "slow", "--udf", "busy", "--input", "id", "--udf-arg", "micros=3000"]));
    table
}

pub(crate) fn job(path: &str, id: &str) -> serde_json::Value {
    serde_json::from_str(ok(leman(&["jobs", "show", id, "--table", path, "--json"])).trim()).unwrap()
}

/// Runs the backfill again to the end; returns the rows it computed.
async fn resume(table: &leman::Table, args: &[&str]) -> u64 {
    let summary: serde_json::Value = serde_json::from_str(ok(leman(&[args, &["--json"]].concat())).trim()).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(table.count_rows(Some("slow = id")).await.unwrap(), 4000, "every row exact after the resume");
    summary["rows_computed"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_from_another_process_stops_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let table = slow_table(dir.path()).await;
    let path = table.uri().to_string();
    let args = ["backfill", "--table", &path, "--column", "slow", "--concurrency", "2", "--batch-size", "100", "--commit-granularity", "1", "--refresh-status-secs", "0.1"];
    let running = Backfill::until(&args, 300);
    let id = table.jobs().await.unwrap()[0].id.clone();

    let said = ok(leman(&["jobs", "cancel", &id, "--table", &path]));
    assert!(said.contains(&format!("job {id} cancelled with")) && said.contains("checkpoints are kept"), "{said}");
    let (status, errors) = running.exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(CANCELLED), "{errors:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains(&format!("job {id} was cancelled by")) && errors[0].contains("run the same backfill again to resume"), "{errors:?}");

    let record = job(&path, &id);
    assert_eq!(record["status"], "cancelled", "{record}");
    assert!(record["error"]["message"].as_str().unwrap().starts_with("cancelled by"), "{record}");
    let done = record["progress"]["rows_done"].as_u64().unwrap();
    assert!((300..4000).contains(&done), "it stopped part way: {record}");
    assert!(!std::path::Path::new(&path).join("_leman/cancels").read_dir().is_ok_and(|mut d| d.next().is_some()), "the request is gone");

    let again = fails(leman(&["jobs", "cancel", &id, "--table", &path]));
    assert!(again.contains(&format!("job {id} is not running (status: cancelled)")), "{again}");
    let unknown = fails(leman(&["jobs", "cancel", "nosuchjob", "--table", &path]));
    assert!(unknown.contains("has no job nosuchjob"), "{unknown}");

    let computed = resume(&table, &args).await;
    assert!(computed <= 4000 - done + 4 * 100, "checkpointed rows are not computed again: {computed} after {done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_cancels_the_job_and_a_rerun_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let table = slow_table(dir.path()).await;
    let path = table.uri().to_string();
    let args = ["backfill", "--table", &path, "--column", "slow", "--concurrency", "2", "--batch-size", "100", "--refresh-status-secs", "0.1"];
    let running = Backfill::until(&[&args[..], &["--timeout", "1.5"]].concat(), 0);
    let (status, errors) = running.exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(CANCELLED), "{errors:?}");
    assert!(errors.len() == 1 && errors[0].contains("its timeout of 1.5 s ran out"), "{errors:?}");
    let record = table.jobs().await.unwrap().pop().unwrap();
    assert_eq!(record.status, leman::JobStatus::Cancelled);
    let elapsed = record.finished_at_ms.unwrap() - record.started_at_ms;
    assert!(elapsed >= 1500, "not before its time: {elapsed} ms");
    assert!(record.progress.rows_done < 4000, "{record:?}");

    for timeout in ["0", "nan", "1e30"] {
        let bad = fails(leman(&[&args[..], &["--timeout", timeout]].concat()));
        assert!(bad.contains("not a positive number of seconds"), "{timeout}: {bad}");
    }
    resume(&table, &args).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_job_is_cancelled_through_its_head_or_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let certs = &init_certs(dir.path());
    let (_processes, head) = cluster(certs, 2);
    let table = slow_table(dir.path()).await;
    let path = table.uri().to_string();
    let args = ["backfill", "--table", &path, "--column", "slow", "--cluster", &head, "--certs", certs, "--concurrency", "2", "--batch-size", "100", "--refresh-status-secs", "0.1"];

    // Through the head: the client that follows the job exits 3.
    let running = Backfill::until(&args, 200);
    let first = table.jobs().await.unwrap()[0].id.clone();
    let said = ok(leman(&["jobs", "cancel", &first, "--cluster", &head, "--certs", certs]));
    assert!(said.contains(&format!("job {first} cancelled with")), "{said}");
    let (status, errors) = running.exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(CANCELLED), "{errors:?}");
    assert!(errors.len() == 1 && errors[0].contains(&format!("job {first} was cancelled;")), "{errors:?}");
    assert_eq!(job(&path, &first)["status"], "cancelled");

    // Through the table: the head's driver finds the request beside it.
    let running = Backfill::until(&args, 200);
    let second = table.jobs().await.unwrap().into_iter().find(|r| r.id != first).unwrap().id;
    let said = ok(leman(&["jobs", "cancel", &second, "--table", &path]));
    assert!(said.contains(&format!("job {second} cancelled with")), "{said}");
    let (status, errors) = running.exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(CANCELLED), "{errors:?}");
    assert!(errors.len() == 1 && errors[0].contains("was cancelled by"), "{errors:?}");
    let shown = ok(leman(&["jobs", "show", &second, "--cluster", &head, "--certs", certs]));
    assert!(shown.contains("status     cancelled") && shown.contains("reason     cancelled by"), "{shown}");

    resume(&table, &args).await;
}
