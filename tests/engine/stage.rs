//! Staged backfills: `stage` writes and commits nothing; `promote` commits
//! one or several staged columns in one new version, rebased over appends;
//! a fragment changed since staging refuses the promote unless it is
//! recomputed; `discard` removes the staged files.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use leman::builtins;
use leman::{BackfillOptions, Error, JobStatus, Table};

use crate::engine::support::{Calls, assert_sound, batch, doubling, fixture};

/// `(id, doubled, len)` of every live row, by id.
async fn values(table: &Table) -> Vec<(i64, Option<i64>, Option<i32>)> {
    let mut scan = table.dataset().await.unwrap().scan();
    scan.project(&["id", "doubled", "len"]).unwrap();
    let batch = scan.try_into_batch().await.unwrap();
    let ids = batch.column(0).as_primitive::<Int64Type>();
    let doubled: Vec<_> = batch.column(1).as_primitive::<Int64Type>().iter().collect();
    let len: Vec<_> = batch.column(2).as_primitive::<Int32Type>().iter().collect();
    let mut rows: Vec<_> = (0..batch.num_rows()).map(|i| (ids.value(i), doubled[i], len[i])).collect();
    rows.sort();
    rows
}

/// The length of row `id`'s text (`row {id}`).
fn text_len(id: i64) -> i32 {
    format!("row {id}").chars().count() as i32
}

async fn stage(table: &Table, column: &str) -> String {
    let job = table.backfill(column, BackfillOptions::default().stage(true).batch_size(40)).await.unwrap();
    let id = job.id().to_string();
    let summary = job.wait().await.unwrap();
    assert_eq!((summary.fragments_staged, summary.fragments_committed, summary.commits, summary.version), (3, 0, 0, None));
    assert_eq!(table.job(&id).await.unwrap().unwrap().status, JobStatus::Staged);
    id
}

async fn two_columns(table: &Table, calls: &Arc<Calls>) {
    let len = builtins::get("str_len", &["text"], &[]).unwrap();
    table.add_columns([("doubled", doubling(calls.clone(), |_| Ok(()))), ("len", len)], Default::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_staged_columns_are_promoted_in_one_version_over_an_append() {
    let fixture = fixture(3, 100).await;
    let table = &fixture.table;
    let calls = Arc::new(Calls::default());
    two_columns(table, &calls).await;
    let declared = table.version().await.unwrap();

    // Staging changes nothing readers see.
    let doubled = stage(table, "doubled").await;
    let len = stage(table, "len").await;
    assert_eq!(table.version().await.unwrap(), declared, "staging commits nothing");
    assert!(values(table).await.iter().all(|(_, d, l)| d.is_none() && l.is_none()));
    let staged = table.staged(&doubled).await.unwrap().unwrap();
    assert_eq!(staged.fragments.len(), 3);
    assert!(staged.bytes() > 0);

    // Appended rows stay null; both columns change in one version.
    let appended = table.append(vec![batch(300, 50)]).await.unwrap();
    let promoted = table.promote(&[doubled.clone(), len.clone()], false).await.unwrap();
    assert_eq!(promoted.version, appended + 1, "one transaction for both columns");
    assert_eq!(promoted.columns, ["doubled", "len"]);
    assert_eq!(promoted.fragments, 3);
    let rows = values(table).await;
    assert_eq!(rows.len(), 350);
    for (id, d, l) in rows {
        if id < 300 {
            assert_eq!((d, l), (Some(id * 2), Some(text_len(id))), "row {id}");
        } else {
            assert_eq!((d, l), (None, None), "appended row {id} is computed by a later backfill");
        }
    }
    let dataset = table.dataset().await.unwrap();
    let fields = [dataset.schema().field("doubled").unwrap().id, dataset.schema().field("len").unwrap().id];
    for fragment in dataset.get_fragments().iter().filter(|f| f.id() < 3) {
        let holding: Vec<_> = fragment.metadata().files.iter().filter(|f| fields.iter().any(|id| f.fields.contains(id))).collect();
        assert_eq!(holding.len(), 1, "one data file holds both columns: {:?}", fragment.metadata().files);
    }
    assert_sound(table).await;
    for id in [&doubled, &len] {
        assert_eq!(table.job(id).await.unwrap().unwrap().status, JobStatus::Promoted);
        let again = table.promote(std::slice::from_ref(id), false).await.unwrap_err();
        assert!(matches!(again, Error::NotStaged { .. }), "{again}");
    }

    // A backfill after the promote computes only the appended rows.
    calls.reset();
    table.backfill("doubled", BackfillOptions::default()).await.unwrap().wait().await.unwrap();
    assert_eq!(calls.total(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_fragment_refuses_the_promote_unless_recomputed_and_discard_removes_the_files() {
    let fixture = fixture(3, 100).await;
    let table = &fixture.table;
    let calls = Arc::new(Calls::default());
    two_columns(table, &calls).await;

    // Discard: the staged files are gone, and a backfill computes again.
    let discarded = stage(table, "len").await;
    let staged = table.staged(&discarded).await.unwrap().unwrap();
    let dataset = table.dataset().await.unwrap();
    let store = dataset.object_store(None).await.unwrap();
    let files: Vec<_> = staged.fragments.iter().map(|f| dataset.data_dir().join(f.data_file.path.as_str())).collect();
    for file in &files {
        assert!(store.exists(file).await.unwrap());
    }
    assert!(table.discard(&discarded).await.unwrap() > 0);
    for file in &files {
        assert!(!store.exists(file).await.unwrap(), "{file} is removed");
    }
    assert_eq!(table.job(&discarded).await.unwrap().unwrap().status, JobStatus::Discarded);
    assert!(matches!(table.promote(&[discarded], false).await.unwrap_err(), Error::NotStaged { .. }));
    let summary = table.backfill("len", BackfillOptions::default()).await.unwrap().wait().await.unwrap();
    assert_eq!(summary.rows_computed, 300, "nothing of the discarded job is reused");

    // Fragment 0 is deleted after staging: the promote names it, and with
    // `recompute` the column is staged again (the other two fragments'
    // files reused, nothing computed) and promoted.
    let job = stage(table, "doubled").await;
    table.delete("id < 100").await.unwrap();
    let refused = table.promote(std::slice::from_ref(&job), false).await.unwrap_err();
    assert!(matches!(&refused, Error::StagedStale { .. }) && refused.to_string().contains("fragment(s) 0 of job"), "{refused}");
    assert!(values(table).await.iter().all(|(_, d, _)| d.is_none()), "a refused promote changes nothing");
    calls.reset();
    let promoted = table.promote(std::slice::from_ref(&job), true).await.unwrap();
    assert_eq!(calls.total(), 0, "the fragments that still fit are reused");
    assert!(!promoted.jobs.contains(&job), "the job staged again is promoted");
    assert_eq!(promoted.fragments, 2);
    assert_eq!(table.job(&job).await.unwrap().unwrap().status, JobStatus::Discarded);
    let rows = values(table).await;
    assert_eq!(rows.len(), 200);
    assert!(rows.iter().all(|(id, d, l)| *d == Some(id * 2) && *l == Some(text_len(*id))));
    assert_sound(table).await;
}
