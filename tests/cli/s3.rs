//! Tables on a real S3 server (moto's, on 127.0.0.1, with authentication
//! on): written by pylance, filled by `leman` embedded and on worker
//! processes, a worker killed mid-job, two backfills at once, and the
//! errors of a wrong key, a missing bucket and an unreachable endpoint.
//!
//! `scripts/test` installs moto[server] beside pylance and names their
//! Python in `LEMAN_PYTHON`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use leman::bench::s3::LocalS3;
use leman_engine::testing::faults::{Fault, Faults, Request};

use crate::cli::cluster::{Processes, wait_for};
use crate::cli::interop::{python, run_python};
use crate::cli::{backfill_until, fails, ok};

fn server() -> LocalS3 {
    LocalS3::start(std::path::Path::new(&python())).unwrap_or_else(|e| panic!("{e}"))
}

/// `leman ARGS` with exactly `env` for the object store (no AWS_* of the
/// test's own environment).
fn command(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leman"));
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    command.args(args).env("RUST_LOG", "error").envs(env.iter().map(|(k, v)| (k, v)));
    command
}

fn leman_env(args: &[&str], env: &[(&str, String)]) -> Output {
    command(args, env).output().expect("run leman")
}

fn json(stdout: String) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The keys under `uri`, listed (and, with a needle, searched) by boto3.
fn objects(s3: &LocalS3, uri: &str, needle: Option<&str>) -> Vec<String> {
    let mut args = vec![uri];
    args.extend(needle);
    let script = crate::manifest_dir().join("tests/interop/s3_objects.py");
    let output = Command::new(python()).arg(script).args(args).envs(s3.env()).output().expect("run python");
    assert!(output.status.success(), "s3_objects.py: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect()
}

/// A table of `fragments` x 500 rows at `uri`, made with the Rust API and
/// storage options, with UDF columns `n` (str_len of text) and `slow`
/// (busy: id, `micros` a row) declared.
async fn make_table(s3: &LocalS3, path: &str, fragments: usize, micros: u64) -> leman::Table {
    let db = leman::connect_with(&s3.uri(path), s3.storage_options()).await.unwrap();
    let batches: Vec<_> = (0..fragments).map(|i| leman::demo::sample_batch(i * 500, 500).unwrap()).collect();
    let table = db.create_table("t", batches, leman::CreateTableOptions { max_rows_per_file: 500, ..Default::default() }).await.unwrap();
    let len = leman::builtins::get("str_len", &["text"], &[]).unwrap();
    let slow = leman::builtins::get("busy", &["id"], &[("micros".into(), micros.to_string())]).unwrap();
    table.add_columns([("n", len), ("slow", slow)], leman::AddColumnsOptions::default()).await.unwrap();
    table
}

#[test]
fn a_pylance_table_on_s3_is_filled_embedded_and_on_local_workers() {
    let s3 = server();
    let env = s3.env();
    let uri = s3.uri("interop.lance");
    run_python("make_table.py", &uri, &env);

    for (column, udf, input) in [("n", "str_len", "text"), ("h", "sha256", "blob"), ("e", "hash_embed", "text")] {
        ok(leman_env(&["add-column", "--table", &uri, "--column", column, "--udf", udf, "--input", input], &env));
    }
    let runs: [(&str, Option<&str>, bool); 3] = [("n", Some("id % 3 = 0"), false), ("h", None, true), ("e", Some("id < 1500"), true)];
    for (column, filter, on_workers) in runs {
        let mut args = vec!["backfill", "--table", &uri, "--column", column, "--json", "--batch-size", "256", "--concurrency", "2"];
        if let Some(filter) = filter {
            args.extend(["--where", filter]);
        }
        if on_workers {
            args.extend(["--local-workers", "2"]);
        }
        let summary = json(ok(leman_env(&args, &env)));
        assert_eq!(summary["status"], "succeeded", "{summary}");
        assert!(summary["rows_computed"].as_u64().unwrap() > 0, "{summary}");
    }
    let jobs = json(ok(leman_env(&["jobs", "--table", &uri, "--json"], &env)));
    assert_eq!(jobs.as_array().unwrap().len(), 3, "{jobs}");
    assert!(jobs.as_array().unwrap().iter().all(|j| j["status"] == "succeeded"), "{jobs}");
    let inspect = ok(leman_env(&["inspect", "--table", &uri], &env));
    assert!(inspect.contains("udf str_len(text)"), "{inspect}");

    let checked = run_python("check.py", &uri, &env);
    assert!(checked.contains("checked"), "{checked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_options_reach_the_workers_and_their_secrets_no_record_or_log() {
    let s3 = server();
    let table = make_table(&s3, "secrets", 2, 1).await;
    let uri = table.uri().to_string();
    let options: Vec<String> = s3.storage_options().redacted().keys().map(|key| {
        let value = s3.storage_options().get(key).unwrap_or_default().to_string();
        format!("{key}={value}")
    }).collect();
    // No AWS_* in the environment of the client, the head or the workers:
    // the options travel with the job. Every process logs at info.
    let dir = tempfile::tempdir().unwrap();
    let (_processes, head, certs) = cluster(dir.path(), &[]);
    let mut args = vec!["backfill", "--table", &uri, "--column", "n", "--json", "--cluster", &head, "--certs", &certs, "--concurrency", "2"];
    for option in &options {
        args.extend(["--storage-option", option.as_str()]);
    }
    let output = command(&args, &[]).env("RUST_LOG", "info").output().unwrap();
    let mut logs = String::from_utf8_lossy(&output.stderr).into_owned();
    let summary = json(ok(output));
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(summary["rows_computed"], 1000, "{summary}");
    for log in std::fs::read_dir(dir.path().join("logs")).unwrap() {
        logs.push_str(&std::fs::read_to_string(log.unwrap().path()).unwrap());
    }
    assert!(logs.contains("applier started"), "the workers' logs were read:\n{logs}");
    assert!(!logs.contains(&s3.secret_access_key), "the secret reached a log:\n{logs}");
    assert_eq!(table.count_rows(Some("n = character_length(text)")).await.unwrap(), 1000);

    let id = summary["job_id"].as_str().unwrap();
    let mut show = vec!["jobs", "show", id, "--table", &uri];
    for option in &options {
        show.extend(["--storage-option", option.as_str()]);
    }
    let shown = ok(leman_env(&show, &[]));
    assert!(shown.contains("storage    aws_secret_access_key=***"), "{shown}");
    assert!(shown.contains(&format!("storage    aws_endpoint={}", s3.endpoint)), "{shown}");
    assert!(!shown.contains(&s3.secret_access_key), "{shown}");
    let records = objects(&s3, &format!("{uri}/_leman"), Some(&s3.secret_access_key));
    assert!(records.iter().any(|key| key.contains("_leman/jobs/")), "{records:?}");
}

/// The second put of a data file fails (tested on S3: on the local file
/// system lance writes data files past the object store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_data_file_put_on_s3_ends_exact_or_with_a_clean_error_and_a_re_run_ends_exact() {
    let s3 = server();
    let table = make_table(&s3, "faults", 4, 1).await;
    let faults = Faults::new();
    let failure = faults.inject(Request::Put, "/data/", 2, Fault::Fail);
    let faulty = leman::Table::open_at(table.location().clone().with_store_wrapper(faults), table.registry().clone()).await.unwrap();
    let options = leman::BackfillOptions::default().batch_size(250);
    let outcome = faulty.backfill("n", options.clone()).await.unwrap().wait().await;
    assert!(failure.fired(), "the fault was never reached");
    if let Err(error) = outcome {
        let message = error.to_string();
        assert!(!message.contains('\n') && message.contains("injected fault"), "one line naming its cause: {message}");
        table.backfill("n", options).await.unwrap().wait().await.unwrap();
    }
    table.dataset().await.unwrap().validate().await.unwrap();
    assert_eq!(table.count_rows(Some("n = character_length(text)")).await.unwrap(), 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_on_s3_and_the_job_ends_exact() {
    let s3 = server();
    let env = s3.env();
    let table = make_table(&s3, "killed", 8, 2000).await;
    let uri = table.uri().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (mut processes, head, certs) = cluster(dir.path(), &env);

    // The client passes no storage option: the head and the workers reach
    // the table with their own environment.
    let args = ["backfill", "--table", &uri, "--column", "slow", "--cluster", &head, "--certs", &certs, "--json", "--concurrency", "4", "--batch-size", "50", "--refresh-status-secs", "0.1"];
    let client = backfill_until(&args, 600);
    processes.0[1].kill().unwrap(); // SIGKILL a worker mid-job
    let (status, stdout) = wait_for(client);
    assert!(status.success(), "{stdout}");
    let summary = json(stdout);
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(table.count_rows(Some("slow = id")).await.unwrap(), 4000, "every value exact after the loss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_backfills_started_at_once_on_s3_one_runs_and_the_other_names_it() {
    let s3 = server();
    let env = s3.env();
    let table = make_table(&s3, "twice", 4, 2000).await;
    let uri = table.uri().to_string();
    let args = ["backfill", "--table", &uri, "--column", "slow", "--json", "--concurrency", "2", "--batch-size", "100"];
    let spawn = || command(&args, &env).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (first, second) = (spawn(), spawn());
    let pids = [first.id(), second.id()];
    let outputs = [first.wait_with_output().unwrap(), second.wait_with_output().unwrap()];
    let ran: Vec<usize> = (0..2).filter(|&i| outputs[i].status.success()).collect();
    assert_eq!(ran.len(), 1, "exactly one runs: {outputs:?}");
    let (winner, loser) = (ran[0], 1 - ran[0]);
    let refused = fails(outputs[loser].clone());
    let holder = json(String::from_utf8_lossy(&outputs[winner].stdout).into_owned());
    assert!(refused.contains(&format!("is being backfilled by job {}", holder["job_id"].as_str().unwrap())), "{refused}");
    assert!(refused.contains(&format!("pid {}", pids[winner])), "{refused}");
    assert_eq!(table.count_rows(Some("slow = id")).await.unwrap(), 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_a_missing_bucket_and_an_unreachable_endpoint_are_one_line_and_write_nothing() {
    let s3 = server();
    let table = make_table(&s3, "errors", 1, 1).await;
    let uri = table.uri().to_string();
    let before = objects(&s3, &uri, None);

    let mut wrong_key = s3.env();
    wrong_key.retain(|(key, _)| *key != "AWS_SECRET_ACCESS_KEY");
    wrong_key.push(("AWS_SECRET_ACCESS_KEY", "not-the-secret".to_string()));
    for args in [
        vec!["backfill", "--table", &uri, "--column", "n"],
        vec!["add-column", "--table", &uri, "--column", "m", "--udf", "str_len", "--input", "text"],
    ] {
        let error = fails(leman_env(&args, &wrong_key));
        assert!(error.contains(&format!("the object store refused the credentials for {uri}")), "{error}");
        assert!(error.contains("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"), "{error}");
        assert!(!error.contains("not-the-secret"), "{error}");
    }

    let missing = "s3://no-such-bucket/t.lance";
    let error = fails(leman_env(&["backfill", "--table", missing, "--column", "n"], &s3.env()));
    assert!(error.contains(&format!("bucket no-such-bucket of {missing} does not exist")), "{error}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut unreachable = s3.env();
    unreachable.retain(|(key, _)| *key != "AWS_ENDPOINT_URL");
    unreachable.push(("AWS_ENDPOINT_URL", format!("http://{closed}")));
    let error = fails(leman_env(&["jobs", "--table", &uri], &unreachable));
    assert!(error.contains(&format!("cannot reach the object store of {uri}")), "{error}");
    assert!(error.contains("AWS_ENDPOINT_URL"), "{error}");

    assert_eq!(objects(&s3, &uri, None), before, "nothing was written");
    assert_eq!(table.count_rows(Some("n IS NULL")).await.unwrap(), 500);
}

/// A head and two workers of 2 CPUs on 127.0.0.1 with `env`, logging at
/// info into `dir/logs`; returns them, the head's address and the
/// certificates' directory.
fn cluster(dir: &std::path::Path, env: &[(&str, String)]) -> (Processes, String, String) {
    let certs = crate::cli::cluster::init_certs(dir);
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let log = |name: &str| std::fs::File::create(dir.join("logs").join(name)).unwrap();
    let mut processes = Processes(Vec::new());
    let (child, line) = start(&["head", "--listen", "127.0.0.1:0", "--certs", &certs], env, log("head"));
    processes.0.push(child);
    let head = line.strip_prefix("head listening on ").expect("head address").to_string();
    for i in 0..2 {
        let args = ["worker", "--join", &head, "--listen", "127.0.0.1:0", "--join-timeout-secs", "30", "--certs", &certs, "--cpus", "2"];
        let (child, line) = start(&args, env, log(&format!("worker-{i}")));
        assert!(line.contains("joined the head"), "{line}");
        processes.0.push(child);
    }
    (processes, head, certs)
}

/// Starts `leman args` with `env`, logging at info into `log`; returns it
/// and its first stdout line.
fn start(args: &[&str], env: &[(&str, String)], log: std::fs::File) -> (Child, String) {
    let mut child = command(args, env).env("RUST_LOG", "info").stdout(Stdio::piped()).stderr(log).spawn().expect("start leman");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("first line");
    (child, line.trim().to_string())
}
