//! Checkpoints do not outlive their use: a job deletes its batch
//! checkpoints as it commits their fragments, and `Table::cleanup` removes
//! those no job can reuse (fragment gone, column or UDF version gone, or
//! abandoned past `older_than`) and keeps what a re-run can resume from.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use leman::{AddColumnsOptions, BackfillOptions, CleanupOptions, Error, Unreachable};

use crate::engine::support::{Calls, column, doubling, failing_at, fixture, run};

/// The checkpoint objects of a table of kind `extension` (`ckpt`, `json`).
fn stored(table: &leman::Table, extension: &str) -> Vec<PathBuf> {
    let dir = Path::new(table.uri()).join("_leman/checkpoints");
    let kind = if extension == "ckpt" { "batches" } else { "fragments" };
    let Ok(entries) = std::fs::read_dir(dir.join(kind)) else { return Vec::new() };
    entries.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == extension)).collect()
}

fn keep_all() -> CleanupOptions {
    CleanupOptions { dry_run: false, older_than: Duration::from_secs(3600) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_fragment_keeps_its_record_and_no_batch() {
    let f = fixture(4, 100).await;
    let calls = Arc::new(Calls::default());
    f.table.add_columns([("doubled", doubling(calls.clone(), |_| Ok(())))], AddColumnsOptions::default()).await.unwrap();
    let options = BackfillOptions::default().batch_size(20).concurrency(2).commit_granularity(1);
    run(f.table.backfill("doubled", options.clone()).await.unwrap()).await.1.unwrap();
    assert!(stored(&f.table, "ckpt").is_empty(), "batch checkpoints of committed fragments are deleted");
    assert_eq!(stored(&f.table, "json").len(), 4, "one record a fragment stays");

    calls.reset();
    let summary = run(f.table.backfill("doubled", options).await.unwrap()).await.1.unwrap();
    assert_eq!((calls.total(), summary.fragments_committed), (0, 0), "a re-run skips every fragment by its record");
    let report = f.table.cleanup(&CleanupOptions { dry_run: false, older_than: Duration::ZERO }).await.unwrap();
    assert_eq!((report.removed.objects, report.kept.objects), (0, 4), "the records are what lets a re-run skip: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_what_no_job_can_reuse_and_keeps_what_a_rerun_resumes_from() {
    let f = fixture(4, 100).await;
    let calls = Arc::new(Calls::default());
    let (udf, failing) = failing_at(calls.clone(), 365);
    f.table.add_columns([("doubled", udf)], AddColumnsOptions::default()).await.unwrap();
    let options = BackfillOptions::default().batch_size(20).concurrency(1).task_shuffle_diversity(1).commit_at_end();
    let (_, outcome) = run(f.table.backfill("doubled", options.clone()).await.unwrap()).await;
    assert!(matches!(outcome, Err(Error::JobFailed { .. })), "{outcome:?}");
    let batches = stored(&f.table, "ckpt").len() as u64;
    let records = stored(&f.table, "json").len() as u64;
    // Fragments 0-1, and mostly 2, were written: their records cover their
    // rows, so their batches were handed to the writer and never stored.
    // Fragment 3's batches before the failing one were stored when the job
    // stopped. On a loaded machine, fragment 2's last batch may still be
    // reading when a later one fails the job (the pool computes batches as
    // their reads end), so fragment 2 is not written and its 5 batches are
    // stored too; the re-run below resumes them.
    let unwritten = match records {
        3 => 0,
        2 => 5,
        _ => panic!("{records} fragment records: fragments 0-1 or 0-2 are written"),
    };
    assert!(
        (3 + unwritten..=4 + unwritten).contains(&batches),
        "the failed job's batches of its unwritten fragments are kept: {batches} with {records} records"
    );

    // All of it can still be resumed from: nothing goes, in a dry run or not.
    let report = f.table.cleanup(&CleanupOptions { dry_run: true, ..keep_all() }).await.unwrap();
    assert_eq!((report.examined.objects, report.removed.objects), (batches + records, 0), "{report:?}");
    assert!(report.examined.bytes > 0 && report.kept.bytes == report.examined.bytes, "{report:?}");
    assert_eq!(f.table.cleanup(&keep_all()).await.unwrap().removed.objects, 0);

    // Fragment 3 deleted whole: its checkpointed batches (those before the
    // failing one, and maybe one after it) serve no one.
    f.table.delete("id >= 300").await.unwrap();
    let dry = f.table.cleanup(&CleanupOptions { dry_run: true, ..keep_all() }).await.unwrap();
    assert_eq!(stored(&f.table, "ckpt").len() as u64, batches, "a dry run removes nothing");
    let report = f.table.cleanup(&keep_all()).await.unwrap();
    assert_eq!((dry.removed, dry.by_reason.clone()), (report.removed, report.by_reason.clone()), "the dry run said it");
    let gone = report.by_reason.get(&Unreachable::FragmentGone).map_or(0, |t| t.objects);
    assert!((3..=4).contains(&gone) && gone == report.removed.objects, "{report:?}");
    assert_eq!(stored(&f.table, "ckpt").len() as u64, batches - gone);

    // The rest resumes: a re-run computes no checkpointed row.
    failing.store(false, Ordering::SeqCst);
    calls.reset();
    run(f.table.backfill("doubled", options.clone()).await.unwrap()).await.1.unwrap();
    assert_eq!(calls.total(), 0, "fragments 0-2 were written or checkpointed; fragment 3 is gone");
    assert!(stored(&f.table, "ckpt").is_empty());

    // The column dropped: its fragment records serve no one; declared
    // again with another UDF version, a re-run computes it all.
    let mut dataset = f.table.dataset().await.unwrap();
    dataset.drop_columns(&["doubled"]).await.unwrap();
    let dry = f.table.cleanup(&CleanupOptions { dry_run: true, ..keep_all() }).await.unwrap();
    assert_eq!(dry.by_reason.get(&Unreachable::ColumnGone).map(|t| t.objects), Some(3), "{dry:?}");
    let newer = doubling(calls.clone(), |_| Ok(())).with_version("2");
    f.table.add_columns([("doubled", newer)], AddColumnsOptions::default()).await.unwrap();
    let report = f.table.cleanup(&keep_all()).await.unwrap();
    assert_eq!(report.by_reason.get(&Unreachable::UdfNotRecorded).map(|t| t.objects), Some(3), "{report:?}");
    assert!(stored(&f.table, "json").is_empty());
    run(f.table.backfill("doubled", options).await.unwrap()).await.1.unwrap();
    assert!(column(&f.table, "doubled").await.iter().all(|(id, v)| *v == Some(id * 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_of_an_abandoned_job_go_once_older_than_asked() {
    let f = fixture(2, 100).await;
    let calls = Arc::new(Calls::default());
    let udf = doubling(calls.clone(), |ids| if ids.contains(&150) { Err("down".to_string()) } else { Ok(()) });
    f.table.add_columns([("doubled", udf)], AddColumnsOptions::default()).await.unwrap();
    let options = BackfillOptions::default().batch_size(10).concurrency(1).task_shuffle_diversity(1).commit_at_end();
    let (_, outcome) = run(f.table.backfill("doubled", options).await.unwrap()).await;
    assert!(matches!(outcome, Err(Error::JobFailed { .. })), "{outcome:?}");
    // A request to cancel a job that no longer runs (its process died
    // before removing it) goes whatever its age.
    let cancels = Path::new(f.table.uri()).join("_leman/cancels");
    std::fs::create_dir_all(&cancels).unwrap();
    std::fs::write(cancels.join("deadbeef0000.json"), b"{}").unwrap();
    let kept = f.table.cleanup(&keep_all()).await.unwrap();
    assert_eq!((kept.removed.objects, kept.stale_cancel_requests), (0, 1), "{kept:?}");
    assert!(!cancels.join("deadbeef0000.json").exists());

    let report = f.table.cleanup(&CleanupOptions { dry_run: false, older_than: Duration::ZERO }).await.unwrap();
    assert_eq!(report.by_reason.get(&Unreachable::Abandoned).map(|t| t.objects), Some(kept.examined.objects), "{report:?}");
    assert_eq!(report.removed.bytes, kept.examined.bytes);
    assert!(stored(&f.table, "ckpt").is_empty() && stored(&f.table, "json").is_empty());
}
