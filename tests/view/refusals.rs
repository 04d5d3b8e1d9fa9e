//! What a view refuses, each in one line that says what to do: a query
//! that does not fit its source, a table that is not a view, options that
//! would leave it unlike its query, and a second refresh at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;
use std::time::Duration;

use arrow_array::ArrayRef;
use arrow_schema::{DataType, Field};
use leman::{BackfillOptions, RefreshOptions, Udf, View, ViewQuery, ViewRecord};

use crate::view::support::{counting_len, source};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_does_not_fit_its_source_is_refused_and_no_view_is_made() {
    let s = source(1, 50, true).await;
    let len = || counting_len(Arc::new(AtomicUsize::new(0)));
    let cases = [
        (ViewQuery::new("src").select(["id", "nope"]), "has no column nope"),
        (ViewQuery::new("src").filter("nope > 3"), "does not compile"),
        (ViewQuery::new("src").column("len", len().with_inputs(&["missing"])), "reads column missing"),
        (ViewQuery::new("src").column("__len", len()), "names starting with __"),
        (ViewQuery::new("src").select(["id"]).column("id", len()), "named twice"),
        (ViewQuery::new("nope"), "no table"),
    ];
    for (query, expected) in cases {
        let error = s.db.create_materialized_view("v", query).await.expect_err(expected).to_string();
        assert!(error.contains(expected), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
        assert!(s.db.open_materialized_view("v").await.is_err(), "nothing made");
    }
    let error = View::open(s.table.location().clone(), s.db.registry().clone()).await.expect_err("not a view").to_string();
    assert!(error.contains("is not a materialized view"), "{error}");

    let view = s.db.create_materialized_view("v", ViewQuery::new("src").column("len", len())).await.unwrap();
    let error = s.db.create_materialized_view("v", ViewQuery::new("src")).await.expect_err("exists").to_string();
    assert!(error.contains("already exists"), "{error}");
    for options in [BackfillOptions::default().filter("id > 3"), BackfillOptions::default().read_version(1)] {
        let error = view.refresh(RefreshOptions { to_version: None, backfill: options }).await.expect_err("partial").to_string();
        assert!(error.contains("a view refresh takes no"), "{error}");
    }
    let error = view.refresh(RefreshOptions { to_version: Some(99), ..Default::default() }).await.expect_err("no v99").to_string();
    assert!(error.contains("has no version 99"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_refresh_while_one_runs_is_refused_naming_the_holder() {
    let s = source(1, 100, true).await;
    let (entered, entered_rx) = mpsc::channel::<()>();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let entered = std::sync::Mutex::new(entered);
    let gate = Udf::array("gate", Field::new("gated", DataType::Int64, true), &["id"], move |cols| {
        let _ = entered.lock().expect("lock").send(());
        let _ = release_rx.lock().expect("lock").recv_timeout(Duration::from_secs(30));
        Ok(cols[0].clone() as ArrayRef)
    });
    let view = s.db.create_materialized_view("v", ViewQuery::new("src").select(["id"]).column("gated", gate)).await.unwrap();
    let first = view.refresh(RefreshOptions::default()).await.unwrap();
    tokio::task::spawn_blocking(move || entered_rx.recv_timeout(Duration::from_secs(30))).await.unwrap().expect("the UDF runs");

    let error = view.refresh(RefreshOptions::default()).await.expect_err("busy").to_string();
    assert!(error.contains("is being refreshed by refresh "), "{error}");
    assert!(error.contains(&format!("pid {}", std::process::id())), "names the holder's process: {error}");

    drop(release);
    first.job.unwrap().wait().await.unwrap();
    let again = view.refresh(RefreshOptions::default()).await.expect("the lease is given up when the job ends");
    assert_eq!(again.job.unwrap().wait().await.unwrap().rows_computed, 0);
    let values = s.db.open_table("v").await.unwrap().count_rows(Some("gated = id")).await.unwrap();
    assert_eq!(values, 100);
}

#[test]
fn a_view_record_round_trips_through_schema_metadata_and_damage_is_named() {
    let record = ViewRecord {
        source: "/data/src.lance".to_string(),
        select: vec!["id".to_string()],
        copies: vec!["id".to_string(), "text".to_string()],
        filter: Some("id > 3".to_string()),
        udf_columns: vec!["len".to_string()],
        inputs: vec!["text".to_string()],
        shuffle_seed: Some(7),
        max_rows_per_file: 100,
    };
    let mut metadata = record.to_metadata();
    assert_eq!(ViewRecord::from_metadata("v", &metadata).expect("parses"), (record.clone(), None));
    metadata.insert(leman_view::SOURCE_VERSION_KEY.to_string(), "12".to_string());
    assert_eq!(ViewRecord::from_metadata("v", &metadata).expect("parses").1, Some(12));
    metadata.insert(leman_view::SOURCE_VERSION_KEY.to_string(), "twelve".to_string());
    let error = ViewRecord::from_metadata("v", &metadata).expect_err("bad version").to_string();
    assert!(error.contains("not a version"), "{error}");
    let error = ViewRecord::from_metadata("v", &HashMap::new()).expect_err("no record").to_string();
    assert!(error.contains("is not a materialized view"), "{error}");
}
