//! `Table::plan_backfill`: the plan of a backfill, without running it. It
//! changes nothing, and predicts what the job then does: the tasks it runs,
//! the rows it computes and those it takes from checkpoints.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use leman::{AddColumnsOptions, BackfillOptions, BackfillPlan, Error, Summary};

use crate::engine::support::{Calls, doubling, failing_at, fixture, run};

/// Asserts that the job's summary is what `plan` predicted.
fn predicted(plan: &BackfillPlan, summary: &Summary) {
    assert_eq!(plan.rows_to_compute, summary.rows_computed, "{plan:?}\n{summary:?}");
    assert_eq!(plan.rows_from_checkpoints, summary.rows_from_checkpoints, "{plan:?}\n{summary:?}");
    assert_eq!(plan.fragments_to_compute + plan.fragments_to_commit, summary.fragments_committed, "{plan:?}\n{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_changes_nothing_and_predicts_the_job() {
    let f = fixture(4, 100).await;
    let calls = Arc::new(Calls::default());
    let (udf, failing) = failing_at(calls.clone(), 365);
    f.table.add_columns([("doubled", udf)], AddColumnsOptions::default()).await.unwrap();
    f.table.delete("id >= 10 AND id < 15").await.unwrap();
    let version = f.table.version().await.unwrap();
    let options = BackfillOptions::default().batch_size(20).concurrency(1).task_shuffle_diversity(1).commit_at_end();

    let plan = f.table.plan_backfill("doubled", &options).await.unwrap();
    assert_eq!((plan.fragments_total, plan.fragments_done, plan.fragments_to_compute), (4, 0, 4), "{plan:?}");
    assert_eq!((plan.tasks, plan.tasks_checkpointed), (20, 0), "{plan:?}");
    assert_eq!((plan.rows_to_compute, plan.rows_from_checkpoints), (395, 0), "deleted rows are not computed: {plan:?}");
    assert_eq!((plan.udf.as_str(), plan.udf_version.as_str(), plan.udf_version_changed()), ("doubling", "1", None));
    assert_eq!(plan.filter, "doubled IS NULL");
    assert_eq!(f.table.version().await.unwrap(), version, "the table is unchanged");
    assert!(f.table.jobs().await.unwrap().is_empty(), "no job is recorded");
    assert_eq!(calls.total(), 0);

    // A failed job leaves checkpoints: the plan counts them, and the re-run
    // does what it said.
    let (_, outcome) = run(f.table.backfill("doubled", options.clone()).await.unwrap()).await;
    assert!(matches!(outcome, Err(Error::JobFailed { .. })), "{outcome:?}");
    let plan = f.table.plan_backfill("doubled", &options).await.unwrap();
    assert_eq!(plan.fragments_to_commit + plan.fragments_to_compute, 4, "{plan:?}");
    assert!(plan.tasks_checkpointed >= 1 && plan.rows_from_checkpoints >= 300, "fragment 3's first batches at least: {plan:?}");
    failing.store(false, Ordering::SeqCst);
    let (_, outcome) = run(f.table.backfill("doubled", options.clone()).await.unwrap()).await;
    predicted(&plan, &outcome.unwrap());

    // Done: nothing left; a filter of its own selects its rows again, and a
    // new UDF version is told.
    let plan = f.table.plan_backfill("doubled", &options).await.unwrap();
    assert_eq!((plan.fragments_done, plan.tasks, plan.rows_to_compute), (4, 0, 0), "{plan:?}");
    assert_eq!(plan.udf_version_changed(), Some(false));
    let again = options.clone().filter("id % 3 = 0").num_frags(2);
    let plan = f.table.plan_backfill("doubled", &again).await.unwrap();
    assert_eq!((plan.fragments_to_compute, plan.fragments_left), (2, 2), "{plan:?}");
    let (_, outcome) = run(f.table.backfill("doubled", again).await.unwrap()).await;
    predicted(&plan, &outcome.unwrap());
    let newer = doubling(calls.clone(), |_| Ok(())).with_version("2");
    let plan = f.table.plan_backfill("doubled", &options.clone().udf(newer)).await.unwrap();
    assert_eq!((plan.udf_version.as_str(), plan.last_filled_with.as_deref()), ("2", Some("1")));
    assert_eq!(plan.udf_version_changed(), Some(true));

    let bad = f.table.plan_backfill("doubled", &options.clone().filter("id >>> 2")).await;
    assert!(matches!(bad, Err(Error::InvalidFilter(_))), "a dry run checks what the job checks: {bad:?}");
}
