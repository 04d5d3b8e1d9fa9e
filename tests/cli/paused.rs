//! A paused worker (SIGSTOP) of a running cluster job: it is declared lost
//! and its work goes elsewhere; resumed (SIGCONT), its late results are
//! ignored and it joins again. Every fragment is committed once, and the
//! table equals the embedded run's.

use std::time::{Duration, Instant};

use crate::cli::{backfill_until, signal};
use crate::cli::cluster::{cluster, column, init_certs, members, replacements_since, twin_tables, wait_for};

/// Waits (at most `limit`) until the head counts `count` members.
fn until_members(head: &str, certs: &str, count: usize, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    while members(head, certs).len() != count {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_is_lost_its_late_results_are_ignored_and_each_fragment_commits_once() {
    let dir = tempfile::tempdir().unwrap();
    let certs = &init_certs(dir.path());
    let (processes, head) = cluster(certs, 3);
    let (on_cluster, embedded) = twin_tables(dir.path()).await;
    embedded.backfill("slow", leman::BackfillOptions::default()).await.unwrap().wait().await.unwrap();
    let before = on_cluster.version().await.unwrap();

    let path = on_cluster.uri().to_string();
    let args = ["backfill", "--table", &path, "--column", "slow", "--cluster", &head, "--certs", certs, "--json", "--concurrency", "6", "--batch-size", "50", "--commit-granularity", "1", "--refresh-status-secs", "0.1"];
    let client = backfill_until(&args, 400);
    let paused = processes.0[1].id();
    signal(paused, "-STOP");
    until_members(&head, certs, 2, Duration::from_secs(20), "the paused worker is lost");
    signal(paused, "-CONT");

    let (status, stdout) = wait_for(client);
    assert!(status.success(), "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    until_members(&head, certs, 3, Duration::from_secs(30), "the resumed worker joins again");

    on_cluster.dataset().await.unwrap().validate().await.unwrap();
    assert_eq!(column(&on_cluster, "slow").await, column(&embedded, "slow").await, "equal value for value");
    let replaced = replacements_since(&on_cluster, before).await;
    assert_eq!(replaced.len(), 8, "every fragment committed: {replaced:?}");
    assert!(replaced.values().all(|n| *n == 1), "each fragment committed once: {replaced:?}");
}
