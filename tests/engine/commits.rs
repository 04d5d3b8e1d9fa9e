//! Commit groups: ceil(F/g) commits, partial results visible between them,
//! fragments written independently of each other.

use std::sync::Arc;
use std::time::Duration;

use leman::{AddColumnsOptions, BackfillOptions, JobEvent};

use crate::engine::support::{Calls, Gate, column, doubling, fixture, run, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_granularity_g_over_f_fragments_makes_ceil_f_over_g_commits() {
    let f = fixture(5, 100).await;
    let calls = Arc::new(Calls::default());
    f.table.add_columns([("doubled", doubling(calls, |_| Ok(())))], AddColumnsOptions::default()).await.unwrap();
    let before = f.table.version().await.unwrap();
    let options = BackfillOptions::default().commit_granularity(2).batch_size(50);
    let (events, outcome) = run(f.table.backfill("doubled", options).await.unwrap()).await;
    let summary = outcome.unwrap();
    assert_eq!(summary.commits, 3);
    assert_eq!(f.table.version().await.unwrap(), before + 3);
    let groups: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            JobEvent::Committed { fragments, .. } => Some(fragments.len()),
            _ => None,
        })
        .collect();
    assert_eq!(groups, vec![2, 2, 1]);
}

/// Fragment 1's rows block in the UDF until the test has looked at the
/// table: fragment 0 must be written and committed on its own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_each_commit_while_other_fragments_still_compute() {
    let f = fixture(2, 200).await;
    let calls = Arc::new(Calls::default());
    let gate = Arc::new(Gate::default());
    let blocked = gate.clone();
    let udf = doubling(calls, move |ids| {
        if ids.iter().any(|id| (200..400).contains(id)) {
            blocked.wait(Duration::from_secs(60))?;
        }
        Ok(())
    });
    f.table.add_columns([("doubled", udf)], AddColumnsOptions::default()).await.unwrap();
    // One thread per task in flight: a blocked fragment-1 task must not hold
    // the thread a fragment-0 task waits for.
    let options =
        BackfillOptions::default().commit_granularity(1).batch_size(100).concurrency(1).intra_applier_concurrency(4);
    let job = f.table.backfill("doubled", options).await.unwrap();

    let first_commit = within(Duration::from_secs(60), async {
        loop {
            match job.next_event().await {
                Some(JobEvent::Committed { fragments, .. }) => return fragments,
                Some(_) => continue,
                None => panic!("the job ended before its first commit"),
            }
        }
    })
    .await;
    assert_eq!(first_commit, vec![0]);
    let partial = column(&f.table, "doubled").await;
    for (id, value) in &partial {
        assert_eq!(*value, (*id < 200).then_some(id * 2), "row {id} between the two commits");
    }

    gate.open();
    let (_, outcome) = run(job).await;
    assert_eq!(outcome.unwrap().commits, 2);
    assert!(column(&f.table, "doubled").await.iter().all(|(id, v)| *v == Some(id * 2)));
}
