//! A table written by pylance, filled by the `leman` CLI, checked by pylance.
//!
//! `scripts/test` installs pylance 14 into a virtual environment and points
//! `LEMAN_PYTHON` at its interpreter.

use std::process::Command;

use crate::cli::{leman, ok};

pub(crate) fn python() -> String {
    std::env::var("LEMAN_PYTHON").unwrap_or_else(|_| {
        panic!("LEMAN_PYTHON must name a python with pylance 14 installed; scripts/test sets it up")
    })
}

/// Runs `tests/interop/SCRIPT TABLE` with pylance, with `env` set.
pub(crate) fn run_python(script: &str, table: &str, env: &[(&str, String)]) -> String {
    let script = crate::manifest_dir().join("tests/interop").join(script);
    let output = Command::new(python()).arg(&script).arg(table).envs(env.iter().map(|(k, v)| (k, v))).output().expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{} failed:\nstdout: {stdout}\nstderr: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn pylance_reads_what_leman_computes_on_a_pylance_table() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("interop.lance");
    let path = table.to_str().unwrap();
    run_python("make_table.py", path, &[]);

    for (column, udf, input) in [("n", "str_len", "text"), ("h", "sha256", "blob"), ("e", "hash_embed", "text")] {
        ok(leman(&["add-column", "--table", path, "--column", column, "--udf", udf, "--input", input]));
    }
    for (column, filter) in [("n", Some("id % 3 = 0")), ("h", None), ("e", Some("id < 1500"))] {
        let mut args = vec!["backfill", "--table", path, "--column", column, "--json", "--batch-size", "256", "--concurrency", "2"];
        if let Some(filter) = filter {
            args.extend(["--where", filter]);
        }
        let summary: serde_json::Value = serde_json::from_str(ok(leman(&args)).trim()).unwrap();
        assert_eq!(summary["status"], "succeeded", "{summary}");
        assert!(summary["rows_computed"].as_u64().unwrap() > 0, "{summary}");
    }
    let inspect = ok(leman(&["inspect", "--table", path]));
    assert!(inspect.contains("udf str_len(text)"), "{inspect}");
    let jobs = ok(leman(&["jobs", "--table", path, "--json"]));
    let jobs: Vec<serde_json::Value> = serde_json::from_str(jobs.trim()).unwrap();
    assert_eq!(jobs.len(), 3);
    assert!(jobs.iter().all(|j| j["status"] == "succeeded"));
    let id = jobs[0]["id"].as_str().unwrap();
    let shown = ok(leman(&["jobs", "show", id, "--table", path]));
    assert!(shown.contains("status     succeeded"), "{shown}");

    let checked = run_python("check.py", path, &[]);
    assert!(checked.contains("checked"), "{checked}");
}
