//! `leman view`: a view of a table pylance wrote and changed, created,
//! refreshed and shown from the command line and read back by pylance; a
//! refresh killed half way and resumed from its checkpoints.

use std::time::{Duration, Instant};

use crate::cli::interop::run_python;
use crate::cli::{Backfill, leman, ok};

fn json(output: std::process::Output) -> serde_json::Value {
    serde_json::from_str(ok(output).trim()).unwrap()
}

#[test]
fn a_view_of_a_pylance_table_is_created_refreshed_and_shown_and_pylance_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("src.lance").to_str().unwrap().to_string();
    let view = dir.path().join("view.lance").to_str().unwrap().to_string();
    run_python("view_source.py", &source, &[("VIEW_STEP", "make".to_string())]);

    let created = leman(&[
        "view", "create", "--source", &source, "--view", &view, "--select", "id,grp", "--where", "grp < 8",
        "--column", "len=str_len(text)", "--concurrency", "2", "--json",
    ]);
    let stderr = String::from_utf8_lossy(&created.stderr).into_owned();
    assert!(!stderr.contains("no stable row ids"), "pylance wrote it with stable row ids: {stderr}");
    let created = json(created);
    assert_eq!(created["changes"]["rows_written"], 960, "{created}");
    assert_eq!(created["job"]["rows_computed"], 960, "{created}");
    let shown = json(leman(&["view", "show", "--view", &view, "--json"]));
    assert_eq!((shown["rows"].as_u64(), shown["incremental"].as_bool()), (Some(960), Some(true)), "{shown}");
    // str_len leaves a null text's length null (every 17th text is null).
    let non_null = |ids: std::ops::Range<i64>, deleted: std::ops::Range<i64>| {
        ids.filter(|i| i % 10 < 8 && i % 17 != 0 && !deleted.contains(i)).count()
    };
    assert_eq!(shown["udf_columns"][0]["filled"].as_u64(), Some(non_null(0..1200, 0..0) as u64), "{shown}");
    run_python("view_source.py", &view, &[("VIEW_STEP", "check".to_string()), ("VIEW_SOURCE", source.clone())]);

    run_python("view_source.py", &source, &[("VIEW_STEP", "change".to_string())]);
    let refreshed = json(leman(&["view", "refresh", "--view", &view, "--concurrency", "2", "--json"]));
    let changes = &refreshed["changes"];
    assert_eq!(changes["mode"], "incremental", "{refreshed}");
    // 80 appended and 16 edited rows of the filter are computed (row 102's
    // null text becomes " (edited)": DataFusion's concat skips nulls); the
    // edited rows' old versions and 24 deleted rows go.
    assert_eq!(refreshed["job"]["rows_computed"], 80 + 16, "{refreshed}");
    assert_eq!(changes["rows_deleted"], 16 + 24, "{refreshed}");
    assert_eq!(changes["rows_kept_udf_values"], 0, "{refreshed}");
    let checked = run_python("view_source.py", &view, &[("VIEW_STEP", "check".to_string()), ("VIEW_SOURCE", source.clone())]);
    assert!(checked.contains("checked 1016 rows"), "{checked}");

    let text = ok(leman(&["view", "show", "--view", &view]));
    assert!(text.contains("reflects  source version 4 (latest 4)"), "{text}");
    assert!(text.contains(&format!("len = str_len v1(text): {} of 1016 rows filled", non_null(0..1300, 500..530) + 1)), "{text}");
    let error = crate::cli::fails(leman(&["view", "create", "--source", &source, "--view", &view]));
    assert!(error.contains("already exists"), "{error}");
    let error = crate::cli::fails(leman(&["view", "show", "--view", &source]));
    assert!(error.contains("is not a materialized view"), "{error}");
    let error = crate::cli::fails(leman(&["view", "create", "--source", &source, "--view", "/tmp/x", "--column", "len=str_len"]));
    assert!(error.contains("is not NAME=UDF(INPUT"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_killed_half_way_resumes_from_its_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let db = leman::connect(dir.path().to_str().unwrap()).await.unwrap();
    let batches: Vec<_> = (0..2).map(|i| leman::demo::sample_batch(i * 1000, 1000).unwrap()).collect();
    let options = leman::CreateTableOptions { max_rows_per_file: 1000, stable_row_ids: true };
    let source = db.create_table("src", batches, options).await.unwrap();
    let view = dir.path().join("view.lance").to_str().unwrap().to_string();
    ok(leman(&[
        "view", "create", "--source", source.uri(), "--view", &view, "--select", "id", "--column", "slow=busy(id)",
        "--udf-arg", "micros=2000", "--no-data",
    ]));
    assert_eq!(json(leman(&["view", "show", "--view", &view, "--json"]))["rows"], 0, "--no-data builds nothing");
    let plain = db.create_table("plain", vec![leman::demo::sample_batch(0, 10).unwrap()], Default::default()).await.unwrap();
    let other = dir.path().join("other.lance").to_str().unwrap().to_string();
    let created = leman(&["view", "create", "--source", plain.uri(), "--view", &other, "--no-data"]);
    let stderr = String::from_utf8_lossy(&created.stderr).into_owned();
    assert!(created.status.success() && stderr.contains("has no stable row ids, so each refresh reads every source row"), "{stderr}");

    let args = [
        "view", "refresh", "--view", &view, "--concurrency", "2", "--batch-size", "auto", "--refresh-status-secs", "0.1",
    ];
    let mut first = Backfill::until(&args, 300);
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    // The killed refresh holds the view until its lease goes stale.
    let deadline = Instant::now() + Duration::from_secs(40);
    let resumed = loop {
        let output = leman(&[&args[..], &["--json"]].concat());
        if output.status.success() {
            break serde_json::from_str::<serde_json::Value>(String::from_utf8_lossy(&output.stdout).trim()).unwrap();
        }
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(stderr.contains("is being refreshed by refresh") || stderr.contains("is being backfilled"), "{stderr}");
        assert!(Instant::now() < deadline, "the killed refresh's lease never went stale: {stderr}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(resumed["changes"]["rows_written"], 0, "the rows were committed before the kill: {resumed}");
    let from_checkpoints = resumed["job"]["rows_from_checkpoints"].as_u64().unwrap();
    assert!(from_checkpoints >= 300, "{resumed}");
    assert_eq!(resumed["job"]["rows_computed"].as_u64().unwrap(), 2000 - from_checkpoints, "{resumed}");
    let view = db.open_table("view").await.unwrap();
    assert_eq!(view.count_rows(Some("slow = id")).await.unwrap(), 2000);
}
