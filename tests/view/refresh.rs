//! Refreshes after appends, deletes, updates and compaction, forwards and
//! backwards: each time the view equals its query computed from scratch,
//! and the UDF ran only on rows new or whose input changed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lance::dataset::UpdateBuilder;
use leman::{ReadMode, ViewQuery};

use crate::engine::support::batch;
use crate::view::support::{assert_exact, counting_len, refresh, source};

const FILTER: &str = "grp < 8";

/// Runs `update` on the source: `set` columns to SQL expressions where
/// `predicate`; returns the new version.
async fn update(table: &leman::Table, predicate: &str, set: &[(&str, &str)]) -> u64 {
    let dataset = Arc::new(table.dataset().await.unwrap());
    let mut builder = UpdateBuilder::new(dataset).update_where(predicate).unwrap();
    for (column, value) in set {
        builder = builder.set(*column, value).unwrap();
    }
    let outcome = builder.build().unwrap().execute().await.unwrap();
    outcome.new_dataset.version().version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_of_a_source_with_stable_row_ids_follows_appends_deletes_and_updates_computing_only_changed_inputs() {
    let s = source(3, 200, true).await;
    let rows = Arc::new(AtomicUsize::new(0));
    let query = ViewQuery::new("src").select(["id", "grp"]).filter(FILTER).column("len", counting_len(rows.clone()));
    let view = s.db.create_materialized_view("v", query).await.unwrap();
    let info = view.info().await.unwrap();
    assert!(info.incremental, "a source with stable row ids is refreshed incrementally");
    assert_eq!((info.rows, info.source_version), (0, None), "created empty");
    assert_eq!(info.query.copies, ["id", "grp", "text"], "the UDF's input is copied");

    // The build: every row of the filter, computed once.
    let (changes, summary) = refresh(&view, None).await;
    let v1 = s.table.version().await.unwrap();
    assert_eq!((changes.mode, changes.rows_written, changes.source_version), (ReadMode::Full, 480, v1));
    assert_eq!((summary.rows_computed, rows.swap(0, Ordering::SeqCst)), (480, 480));
    assert_exact(&view, &s.table, v1, FILTER).await;
    let info = view.info().await.unwrap();
    assert_eq!((info.rows, info.udf_columns[0].filled, info.source_version), (480, 480, Some(v1)));

    // An append: only the new rows are read with their values and computed.
    let v2 = s.table.append(vec![batch(600, 100)]).await.unwrap();
    let (changes, _) = refresh(&view, None).await;
    assert_eq!((changes.mode, changes.rows_read, changes.rows_written, changes.rows_deleted), (ReadMode::Incremental, 80, 80, 0));
    assert_eq!(rows.swap(0, Ordering::SeqCst), 80);
    assert_exact(&view, &s.table, v2, FILTER).await;

    // A delete: rows go, nothing is computed.
    let v3 = s.table.delete("id < 50").await.unwrap();
    let (changes, _) = refresh(&view, None).await;
    assert_eq!((changes.rows_read, changes.rows_written, changes.rows_deleted), (0, 0, 40));
    assert_eq!(rows.swap(0, Ordering::SeqCst), 0);
    assert_exact(&view, &s.table, v3, FILTER).await;

    // An update of the UDF's input recomputes those rows only; one of a
    // copied column that is no input rewrites them keeping their values;
    // one that moves rows out of and into the filter deletes and adds.
    update(&s.table, "id >= 100 AND id < 120", &[("text", "concat(text, '!')")]).await;
    update(&s.table, "id >= 300 AND id < 310", &[("id", "id + 10000")]).await;
    let v4 = update(&s.table, "id >= 400 AND id < 420", &[("grp", "9 - grp")]).await;
    let (changes, _) = refresh(&view, None).await;
    assert_eq!(changes.mode, ReadMode::Incremental);
    // Out of the filter: grp 0 and 1 become 9 and 8 (4 rows); into it:
    // grp 8 and 9 become 1 and 0 (4 rows); grp 2..=7 stay in, changed.
    assert_eq!(changes.rows_deleted, 16 + 8 + 20 - 4, "changed inputs, changed ids, changed or excluded groups");
    assert_eq!(changes.rows_written, 16 + 8 + 20 - 4);
    assert_eq!(changes.rows_kept_udf_values, 8 + 12, "changed ids and groups keep their len");
    assert_eq!(rows.swap(0, Ordering::SeqCst), 16 + 4, "changed texts, and the rows new to the filter");
    assert_exact(&view, &s.table, v4, FILTER).await;

    // Nothing to do: no row read or written, no UDF call, the same version
    // (bench figure 10 times it).
    let before = view.location().open_dataset().await.unwrap().version().version;
    let (changes, summary) = refresh(&view, None).await;
    assert_eq!((changes.rows_read, changes.rows_written, changes.rows_deleted, summary.rows_computed), (0, 0, 0, 0));
    assert_eq!(changes.view_version, before, "nothing committed");
    assert_eq!(rows.load(Ordering::SeqCst), 0);

    // A compaction moves rows to new fragments under the same ids: only
    // their ids are read, and nothing is written or computed.
    let mut dataset = s.table.dataset().await.unwrap();
    lance::dataset::optimize::compact_files(&mut dataset, Default::default(), None).await.unwrap();
    let v5 = s.table.version().await.unwrap();
    let (changes, _) = refresh(&view, None).await;
    assert_eq!((changes.mode, changes.rows_read, changes.rows_written, changes.rows_deleted), (ReadMode::Incremental, 0, 0, 0));
    assert_eq!(rows.load(Ordering::SeqCst), 0);
    assert_exact(&view, &s.table, v5, FILTER).await;

    // Backwards, to the version before the delete and updates, and forwards
    // again: exact both ways, the rows deleted since read back whole.
    let (changes, _) = refresh(&view, Some(v2)).await;
    assert_eq!((changes.mode, changes.source_version, changes.previous_version), (ReadMode::Full, v2, Some(v5)));
    assert_exact(&view, &s.table, v2, FILTER).await;
    assert_eq!(rows.swap(0, Ordering::SeqCst) as u64, changes.rows_written - changes.rows_kept_udf_values);
    let (_, _) = refresh(&view, None).await;
    assert_exact(&view, &s.table, v5, FILTER).await;

    // A restore of an old version brings back rows with their old update
    // versions, which version tracking cannot tell from unchanged ones: the
    // source is read whole.
    let mut old = s.table.dataset().await.unwrap().checkout_version(v2).await.unwrap();
    old.restore().await.unwrap();
    let v6 = s.table.version().await.unwrap();
    let (changes, _) = refresh(&view, None).await;
    assert_eq!(changes.mode, ReadMode::Full);
    assert_exact(&view, &s.table, v6, FILTER).await;

    // The version the view reflects cleaned up: read whole, once.
    let v7 = s.table.append(vec![batch(700, 10)]).await.unwrap();
    let dataset = s.table.dataset().await.unwrap();
    let versions: Vec<u64> = (1..v7).collect();
    let policy = lance::dataset::cleanup::CleanupPolicyBuilder::default().versions(versions).unwrap().delete_unverified(true).build();
    dataset.cleanup_with_policy(policy).await.unwrap();
    assert!(dataset.checkout_version(v6).await.is_err(), "version {v6} is gone");
    let (changes, _) = refresh(&view, None).await;
    assert_eq!((changes.mode, changes.rows_written), (ReadMode::Full, 8));
    assert_exact(&view, &s.table, v7, FILTER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_cut_off_between_its_rows_and_their_version_is_made_good_by_the_next() {
    let s = source(2, 100, true).await;
    let rows = Arc::new(AtomicUsize::new(0));
    let query = ViewQuery::new("src").select(["id", "grp"]).filter(FILTER).column("len", counting_len(rows.clone()));
    let view = s.db.create_materialized_view("v", query).await.unwrap();
    refresh(&view, None).await;
    let recorded = view.location().open_dataset().await.unwrap().schema().metadata.clone();
    s.table.append(vec![batch(200, 50)]).await.unwrap();
    refresh(&view, None).await;

    // As if the second refresh's process died after committing the rows
    // appended and before recording their version: the view records what
    // the first refresh did, and the rows' commit comes after it. Then
    // some of the rows appended are deleted from the source.
    let mut dataset = view.location().open_dataset().await.unwrap();
    let keys = [leman_view::SOURCE_VERSION_KEY, leman_view::ROWS_VERSION_KEY];
    dataset.update_schema_metadata(keys.map(|key| (key, recorded[key].as_str()))).await.unwrap();
    let version = s.table.delete("id >= 200 AND id < 210").await.unwrap();
    rows.store(0, Ordering::SeqCst);

    let (changes, _) = refresh(&view, None).await;
    assert_eq!(changes.mode, ReadMode::Full, "the rows may reflect another version than the one recorded");
    assert_eq!((changes.rows_written, changes.rows_deleted), (0, 8), "the rows written before are found, those deleted since go");
    assert_eq!(rows.load(Ordering::SeqCst), 0);
    assert_exact(&view, &s.table, version, FILTER).await;
    let metadata = view.location().open_dataset().await.unwrap().schema().metadata.clone();
    assert_eq!(metadata[leman_view::SOURCE_VERSION_KEY], version.to_string(), "{metadata:?}");
    assert_ne!(metadata[leman_view::ROWS_VERSION_KEY], recorded[leman_view::ROWS_VERSION_KEY], "{metadata:?}");
    let (changes, _) = refresh(&view, None).await;
    assert_eq!((changes.mode, changes.rows_read), (ReadMode::Incremental, 0), "and the next one is incremental again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_of_a_source_without_stable_row_ids_reads_it_whole_and_compaction_recomputes_nothing() {
    let s = source(4, 100, false).await;
    let rows = Arc::new(AtomicUsize::new(0));
    let query = ViewQuery::new("src").select(["id", "grp"]).filter(FILTER).column("len", counting_len(rows.clone())).shuffle(7);
    let view = s.db.create_materialized_view("v", query).await.unwrap();
    assert!(!view.info().await.unwrap().incremental);
    refresh(&view, None).await;
    assert_eq!(rows.swap(0, Ordering::SeqCst), 320);
    let in_order = held_ids_in_physical_order(&view).await;
    assert_eq!(in_order.len(), 320);
    assert!(in_order.windows(2).any(|w| w[0] > w[1]), "the rows are written shuffled");

    let version = s.table.append(vec![batch(400, 50)]).await.unwrap();
    let (changes, _) = refresh(&view, None).await;
    assert_eq!((changes.mode, changes.rows_read, changes.rows_written), (ReadMode::Full, 360, 40));
    assert_eq!(rows.swap(0, Ordering::SeqCst), 40);
    assert_exact(&view, &s.table, version, FILTER).await;

    // Compaction moves every row to a new address (its row id here): each
    // view row is rewritten and keeps its value, as its inputs are the same.
    s.table.delete("id % 7 = 0").await.unwrap();
    let mut dataset = s.table.dataset().await.unwrap();
    lance::dataset::optimize::compact_files(&mut dataset, Default::default(), None).await.unwrap();
    let version = s.table.version().await.unwrap();
    let (changes, _) = refresh(&view, None).await;
    assert!(changes.rows_written > 0, "{changes:?}");
    assert_eq!(changes.rows_kept_udf_values, changes.rows_written, "{changes:?}");
    assert_eq!(rows.load(Ordering::SeqCst), 0, "no UDF call after a compaction");
    assert_exact(&view, &s.table, version, FILTER).await;
}

/// The view's ids in the order its rows are stored.
async fn held_ids_in_physical_order(view: &leman::View) -> Vec<i64> {
    use arrow_array::cast::AsArray;
    use futures::TryStreamExt;
    let dataset = view.location().open_dataset().await.unwrap();
    let mut scan = dataset.scan();
    scan.project(&["id"]).unwrap();
    let batches: Vec<arrow_array::RecordBatch> = scan.try_into_stream().await.unwrap().try_collect().await.unwrap();
    batches.iter().flat_map(|b| b.column(0).as_primitive::<arrow_array::types::Int64Type>().values().to_vec()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_another_writer_deleted_from_the_view_are_restored_by_the_next_refresh() {
    let s = source(2, 100, true).await;
    let rows = Arc::new(AtomicUsize::new(0));
    let query = ViewQuery::new("src").select(["id", "grp"]).filter(FILTER).column("len", counting_len(rows.clone()));
    let view = s.db.create_materialized_view("v", query).await.unwrap();
    refresh(&view, None).await;
    let version = s.table.version().await.unwrap();

    // Not leman: rows deleted from the view itself, the source unchanged.
    let mut dataset = view.location().open_dataset().await.unwrap();
    dataset.delete("id < 10").await.unwrap();
    rows.store(0, Ordering::SeqCst);

    let (changes, _) = refresh(&view, None).await;
    assert_eq!(changes.mode, ReadMode::Full, "a commit that changed the view's rows since its last refresh makes it read whole");
    assert_eq!((changes.rows_written, changes.rows_deleted), (8, 0), "the 8 rows of the filter deleted come back");
    assert_eq!(rows.load(Ordering::SeqCst), 8, "and only they are computed");
    assert_exact(&view, &s.table, version, FILTER).await;
    let (changes, _) = refresh(&view, None).await;
    assert_eq!((changes.mode, changes.rows_read), (ReadMode::Incremental, 0), "and the next refresh is incremental again");
}
