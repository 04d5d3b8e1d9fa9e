//! Other writers in a backfill's commit window. The job is held just
//! before it writes its manifest (a wrapping object store holds the put),
//! another writer commits, and the job goes on. Compatible operations
//! commit first try, in one pass; conflicting ones re-plan and end exact;
//! a dropped target column ends the job with a clear error. (Lance 14
//! counts declaring a column, a `Merge`, as a conflict with every data
//! replacement: the commit re-plans, keeps every written file and still
//! makes one commit in one pass.)
//!
//! "Exact": every live row holds the UDF of its inputs (`doubled = id *
//! 2`), untouched columns are unchanged, `Dataset::validate` passes and
//! every file the manifest references exists.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use futures::TryStreamExt;
use lance::dataset::optimize::{CompactionOptions, compact_files};
use lance::dataset::{NewColumnTransform, UpdateBuilder};
use leman::{AddColumnsOptions, BackfillOptions, Job, JobEvent, Summary, Table};
use leman_engine::testing::faults::{Fault, Faults, Request, Trigger};

use crate::engine::support::{Calls, Fixture, assert_sound, batch, doubling, fixture, run, within};

const FRAGMENTS: usize = 4;
const ROWS: usize = 100;

/// A backfill of `doubled` over 4 fragments of 100 rows, all committed at
/// once, held just before that commit's manifest is written.
struct Held {
    f: Fixture,
    job: Job,
    hold: Arc<Trigger>,
}

async fn held_job() -> Held {
    let f = fixture(FRAGMENTS, ROWS).await;
    f.table.add_columns([("doubled", doubling(Arc::new(Calls::default()), |_| Ok(())))], AddColumnsOptions::default()).await.unwrap();
    let faults = Faults::new();
    let hold = faults.inject(Request::Put, "_versions/", 1, Fault::Hold);
    let location = f.table.location().clone().with_store_wrapper(faults);
    let held = Table::open_at(location, f.table.registry().clone()).await.unwrap();
    let options = BackfillOptions::default().batch_size(50).commit_granularity(FRAGMENTS);
    let job = held.backfill("doubled", options).await.unwrap();
    assert!(hold.reached(Duration::from_secs(60)).await, "the job never reached its commit");
    Held { f, job, hold }
}

impl Held {
    /// Lets the commit go on; the job's passes (plans made) and outcome.
    async fn release(self) -> (Fixture, usize, leman::Result<Summary>) {
        self.hold.release();
        let (events, outcome) = run(self.job).await;
        let passes = events.iter().filter(|e| matches!(e, JobEvent::Planned { .. })).count();
        (self.f, passes, outcome)
    }
}

/// Checks the table is exact; `text` of the rows in `updated` is
/// `'moved'`, every other row's `"row <id>"`. Returns the live ids.
async fn assert_exact(table: &Table, updated: impl Fn(i64) -> bool) -> Vec<i64> {
    assert_sound(table).await;
    let dataset = table.dataset().await.unwrap();
    let has_group = dataset.schema().field("grp").is_some();
    let columns: &[&str] = if has_group { &["id", "text", "doubled", "grp"] } else { &["id", "text", "doubled"] };
    let mut scan = dataset.scan();
    scan.project(columns).unwrap();
    let batches: Vec<RecordBatch> = scan.try_into_stream().await.unwrap().try_collect().await.unwrap();
    let mut ids = Vec::new();
    for batch in &batches {
        let id = batch.column(0).as_primitive::<Int64Type>();
        let text = batch.column(1).as_string::<i32>();
        let doubled = batch.column(2).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            let id = id.value(i);
            assert!(doubled.is_valid(i) && doubled.value(i) == id * 2, "row {id}: doubled is {:?}", doubled.is_valid(i).then(|| doubled.value(i)));
            let expected = if updated(id) { "moved".to_string() } else { format!("row {id}") };
            assert_eq!(text.value(i), expected, "row {id}: text");
            if has_group {
                assert_eq!(batch.column(3).as_primitive::<Int64Type>().value(i), id % 10, "row {id}: grp");
            }
            ids.push(id);
        }
    }
    ids.sort_unstable();
    ids
}

fn all_ids() -> Vec<i64> {
    (0..(FRAGMENTS * ROWS) as i64).collect()
}

/// One pass, one commit, nothing left out.
fn assert_one_pass(passes: usize, summary: &Summary) {
    assert_eq!(passes, 1, "a compatible commit makes one pass");
    assert_eq!(summary.commits, 1);
    assert_eq!(summary.fragments_replanned, 0);
    assert_eq!(summary.fragments_committed, FRAGMENTS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_in_the_commit_window_commits_first_try_and_its_rows_wait_for_the_next_run() {
    let held = held_job().await;
    held.f.table.append(vec![batch(400, 50)]).await.unwrap();
    let (f, passes, outcome) = held.release().await;
    assert_one_pass(passes, &outcome.unwrap());
    let values = crate::engine::support::column(&f.table, "doubled").await;
    assert!(values.iter().all(|(id, v)| *v == if *id < 400 { Some(id * 2) } else { None }), "appended rows wait");
    run(f.table.backfill("doubled", BackfillOptions::default()).await.unwrap()).await.1.unwrap();
    assert_eq!(assert_exact(&f.table, |_| false).await, (0..450).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_of_some_rows_commits_first_try() {
    let held = held_job().await;
    held.f.table.delete("id % 7 = 0").await.unwrap();
    let (f, passes, outcome) = held.release().await;
    assert_one_pass(passes, &outcome.unwrap());
    let live: Vec<i64> = all_ids().into_iter().filter(|id| id % 7 != 0).collect();
    assert_eq!(assert_exact(&f.table, |_| false).await, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_or_dropping_another_column_commits_in_one_pass() {
    for drop in [false, true] {
        let held = held_job().await;
        let mut dataset = held.f.table.dataset().await.unwrap();
        if drop {
            dataset.drop_columns(&["grp"]).await.unwrap();
        } else {
            let field = Field::new("other", DataType::Int32, true);
            dataset.add_columns(NewColumnTransform::AllNulls(Arc::new(Schema::new(vec![field]))), None, None).await.unwrap();
        }
        let (f, passes, outcome) = held.release().await;
        assert_one_pass(passes, &outcome.unwrap());
        assert_eq!(assert_exact(&f.table, |_| false).await, all_ids());
        assert_eq!(f.table.dataset().await.unwrap().schema().field("grp").is_none(), drop);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_of_another_column_commits_first_try() {
    let held = held_job().await;
    let tripling = leman::Udf::array("tripling", Field::new("tripled", DataType::Int64, true), &["id"], |cols| {
        let ids = cols[0].as_primitive::<Int64Type>();
        Ok(Arc::new(ids.unary::<_, Int64Type>(|v| v * 3)) as arrow_array::ArrayRef)
    });
    held.f.table.add_columns([("tripled", tripling)], AddColumnsOptions::default()).await.unwrap();
    run(held.f.table.backfill("tripled", BackfillOptions::default()).await.unwrap()).await.1.unwrap();
    let (f, passes, outcome) = held.release().await;
    assert_one_pass(passes, &outcome.unwrap());
    assert_eq!(assert_exact(&f.table, |_| false).await, all_ids());
    let tripled = crate::engine::support::column(&f.table, "tripled").await;
    assert!(tripled.iter().all(|(id, v)| *v == Some(id * 3)), "the other column keeps its values");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_of_a_whole_fragment_is_left_out_and_the_rest_commits() {
    let held = held_job().await;
    held.f.table.delete("id < 100").await.unwrap();
    let (f, _, outcome) = held.release().await;
    let summary = outcome.unwrap();
    assert_eq!(summary.fragments_replanned, 1, "{summary:?}");
    assert_eq!(summary.fragments_committed, FRAGMENTS as u64 - 1);
    assert_eq!(assert_exact(&f.table, |_| false).await, (100..400).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_moves_rows_re_plans_and_computes_the_moved_rows() {
    let held = held_job().await;
    let dataset = Arc::new(held.f.table.dataset().await.unwrap());
    let update = UpdateBuilder::new(dataset).update_where("id >= 150 AND id < 170").unwrap().set("text", "'moved'").unwrap();
    update.build().unwrap().execute().await.unwrap();
    let (f, passes, outcome) = held.release().await;
    outcome.unwrap();
    assert_eq!(passes, 2, "the moved rows are computed in a second pass");
    assert_eq!(assert_exact(&f.table, |id| (150..170).contains(&id)).await, all_ids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_re_plans_and_computes_the_rewritten_fragments() {
    let held = held_job().await;
    let mut dataset = held.f.table.dataset().await.unwrap();
    let options = CompactionOptions { target_rows_per_fragment: 1_000, ..CompactionOptions::default() };
    let metrics = compact_files(&mut dataset, options, None).await.unwrap();
    assert!(metrics.fragments_removed > 0, "the compaction rewrote fragments");
    let (f, passes, outcome) = held.release().await;
    let summary = outcome.unwrap();
    assert_eq!(passes, 2);
    assert_eq!(summary.fragments_replanned, FRAGMENTS as u64, "{summary:?}");
    assert_eq!(assert_exact(&f.table, |_| false).await, all_ids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_of_a_computed_column_re_plans_and_keeps_the_written_files() {
    let held = held_job().await;
    let mut dataset = held.f.table.dataset().await.unwrap();
    let transform = NewColumnTransform::SqlExpressions(vec![("plus_one".to_string(), "id + 1".to_string())]);
    dataset.add_columns(transform, None, None).await.unwrap();
    let (f, _, outcome) = held.release().await;
    let summary = outcome.unwrap();
    assert_eq!((summary.fragments_committed, summary.fragments_replanned), (FRAGMENTS as u64, 0), "{summary:?}");
    assert_eq!(assert_exact(&f.table, |_| false).await, all_ids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_target_column_ends_the_job_with_a_clear_error_within_ten_seconds() {
    let held = held_job().await;
    let mut dataset = held.f.table.dataset().await.unwrap();
    dataset.drop_columns(&["doubled"]).await.unwrap();
    let released = Instant::now();
    held.hold.release();
    let error = within(Duration::from_secs(10), held.job.wait()).await.unwrap_err().to_string();
    assert!(released.elapsed() < Duration::from_secs(10));
    assert!(error.contains("column doubled was dropped from the table by a concurrent commit"), "{error}");
    let dataset = held.f.table.dataset().await.unwrap();
    dataset.validate().await.unwrap();
    assert!(dataset.schema().field("doubled").is_none());
}
