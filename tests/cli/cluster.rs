//! A head and three worker processes on 127.0.0.1: joins, a SIGKILLed
//! worker lost within 5 seconds, a worker of another CA refused.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lance::dataset::transaction::Operation;

use crate::cli::{backfill_until, fails, leman, ok};

/// Child processes, killed when the test ends however it ends.
pub(crate) struct Processes(pub(crate) Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `leman args`, returning the process and its first stdout line.
pub(crate) fn start(args: &[&str]) -> (Child, String) {
    start_logging(args, None)
}

/// As [`start`], with the process's warnings and errors in `log`, to say
/// what a process did when a test fails.
fn start_logging(args: &[&str], log: Option<&std::path::Path>) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leman"));
    command.args(args);
    start_command(command, log)
}

/// Starts `command` (a `leman` command line, perhaps behind a wrapper such
/// as `nsenter`) as [`start_logging`] does.
pub(crate) fn start_command(mut command: Command, log: Option<&std::path::Path>) -> (Child, String) {
    let stderr = match log {
        Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
        None => Stdio::null(),
    };
    let mut child = command.env("RUST_LOG", "warn").stdout(Stdio::piped()).stderr(stderr).spawn().expect("start leman");
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).expect("first line");
    // Whatever it prints later is read and dropped, so that a write to its
    // stdout never fails on a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    (child, line.trim().to_string())
}

/// The last lines of each log in `logs`, to print when a test fails.
pub(crate) fn tails(logs: &[std::path::PathBuf]) -> String {
    logs.iter()
        .map(|log| {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            format!("--- {}:\n{}", log.display(), lines[lines.len().saturating_sub(30)..].join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A head and `workers` workers of 2 cpus each on 127.0.0.1.
pub(crate) fn cluster(certs: &str, workers: usize) -> (Processes, String) {
    let mut processes = Processes(Vec::new());
    let (head, line) = start(&["head", "--listen", "127.0.0.1:0", "--certs", certs]);
    processes.0.push(head);
    let head = line.strip_prefix("head listening on ").expect("head address").to_string();
    for i in 0..workers {
        let log = std::path::Path::new(certs).with_file_name(format!("worker-{i}.log"));
        let args = ["worker", "--join", &head, "--listen", "127.0.0.1:0", "--join-timeout-secs", "30", "--certs", certs, "--cpus", "2"];
        let (worker, line) = start_logging(&args, Some(&log));
        assert!(line.contains("joined the head"), "{line}");
        processes.0.push(worker);
    }
    (processes, head)
}

/// Two identical tables of 8 fragments with UDF columns `e` (hash_embed)
/// and `slow` (busy, 2 ms a row): one for the cluster, one embedded.
pub(crate) async fn twin_tables(dir: &std::path::Path) -> (leman::Table, leman::Table) {
    let db = leman::connect(dir.to_str().unwrap()).await.unwrap();
    leman::builtins::register_all(db.registry());
    let mut tables = Vec::new();
    for name in ["on_cluster", "embedded"] {
        let batches: Vec<_> = (0..8).map(|i| leman::demo::sample_batch(i * 500, 500).unwrap()).collect();
        let table = db.create_table(name, batches, leman::CreateTableOptions { max_rows_per_file: 500, ..Default::default() }).await.unwrap();
        let embed = leman::builtins::get("hash_embed", &["text"], &[]).unwrap();
        let slow = leman::builtins::get("busy", &["id"], &[("micros".into(), "2000".into())]).unwrap();
        table.add_columns([("e", embed), ("slow", slow)], leman::AddColumnsOptions::default()).await.unwrap();
        tables.push(table);
    }
    let embedded = tables.pop().unwrap();
    (tables.pop().unwrap(), embedded)
}

/// Tables `names` of 8 fragments of 500 rows, each with a column `w` of the
/// `wait` UDF (`micros` a row: a job paced by the UDF, not by the CPUs of
/// a loaded machine), plus one more table on which `w` is computed
/// embedded, to compare with (without the wait: the values are the same).
pub(crate) async fn waiting_tables(dir: &std::path::Path, names: &[&str], micros: u64) -> (Vec<leman::Table>, leman::Table) {
    let db = leman::connect(dir.to_str().unwrap()).await.unwrap();
    leman::builtins::register_all(db.registry());
    let mut tables = Vec::new();
    for (name, micros) in names.iter().map(|name| (*name, micros)).chain([("embedded", 0)]) {
        let batches: Vec<_> = (0..8).map(|i| leman::demo::sample_batch(i * 500, 500).unwrap()).collect();
        let table = db.create_table(name, batches, leman::CreateTableOptions { max_rows_per_file: 500, ..Default::default() }).await.unwrap();
        let wait = leman::builtins::get("wait", &["id"], &[("micros".into(), micros.to_string())]).unwrap();
        table.add_columns([("w", wait)], leman::AddColumnsOptions::default()).await.unwrap();
        tables.push(table);
    }
    let embedded = tables.pop().unwrap();
    embedded.backfill("w", leman::BackfillOptions::default()).await.unwrap().wait().await.unwrap();
    (tables, embedded)
}

pub(crate) async fn column(table: &leman::Table, name: &str) -> Vec<arrow_array::RecordBatch> {
    let dataset = table.dataset().await.unwrap();
    let mut scan = dataset.scan();
    scan.project(&["id", name]).unwrap();
    let batch = scan.try_into_batch().await.unwrap();
    vec![batch]
}

/// How many times each fragment's data was replaced after `version`.
pub(crate) async fn replacements_since(table: &leman::Table, version: u64) -> HashMap<u64, usize> {
    let dataset = table.dataset().await.unwrap();
    let mut replaced = HashMap::new();
    for v in version + 1..=dataset.version().version {
        if let Some(Operation::DataReplacement { replacements }) = dataset.read_transaction_by_version(v).await.unwrap().map(|t| t.operation) {
            for group in replacements {
                *replaced.entry(group.0).or_default() += 1;
            }
        }
    }
    replaced
}

/// Asserts that `table` is exact after a cluster backfill of `name` that
/// started at `before`: it validates, every data file its manifest names
/// exists, the column equals `embedded`'s, and each of its 8 fragments was
/// replaced exactly once since.
pub(crate) async fn assert_exact_once(table: &leman::Table, embedded: &leman::Table, name: &str, before: u64) {
    crate::engine::support::assert_sound(table).await;
    // The values, not the fields' metadata (the UDF's parameters may differ).
    let values = |batches: Vec<arrow_array::RecordBatch>| batches.iter().map(|b| (b.column(0).to_data(), b.column(1).to_data())).collect::<Vec<_>>();
    assert_eq!(values(column(table, name).await), values(column(embedded, name).await), "equal value for value");
    let replaced = replacements_since(table, before).await;
    assert_eq!(replaced.len(), 8, "every fragment committed: {replaced:?}");
    assert!(replaced.values().all(|n| *n == 1), "each fragment committed once: {replaced:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_backfill_equals_the_embedded_one_even_when_a_worker_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let certs = &init_certs(dir.path());
    let (mut processes, head) = cluster(certs, 3);
    let (on_cluster, embedded) = twin_tables(dir.path()).await;
    for name in ["e", "slow"] {
        embedded.backfill(name, leman::BackfillOptions::default()).await.unwrap().wait().await.unwrap();
    }

    let path = on_cluster.uri().to_string();
    let args = ["backfill", "--table", &path, "--column", "e", "--cluster", &head, "--certs", certs, "--json", "--concurrency", "6", "--batch-size", "100"];
    let summary: serde_json::Value = serde_json::from_str(ok(leman(&args)).trim()).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(summary["rows_computed"], 4000, "{summary}");
    assert_eq!(column(&on_cluster, "e").await, column(&embedded, "e").await, "equal value for value");

    // Now kill a worker in the middle of a slower job.
    let args = ["backfill", "--table", &path, "--column", "slow", "--cluster", &head, "--certs", certs, "--json", "--concurrency", "6", "--batch-size", "50", "--refresh-status-secs", "0.1"];
    let client = backfill_until(&args, 600);
    processes.0[1].kill().unwrap(); // SIGKILL a worker mid-job
    let (status, stdout) = wait_for(client);
    assert!(status.success(), "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(column(&on_cluster, "slow").await, column(&embedded, "slow").await, "equal value for value after the loss");
}

/// Makes the cluster's certificates under `dir`; returns their directory.
pub(crate) fn init_certs(dir: &std::path::Path) -> String {
    let certs = dir.join("certs").to_str().unwrap().to_string();
    ok(leman(&["cluster", "init", "--dir", &certs]));
    certs
}

/// Waits (at most two minutes) for `child` to exit; returns its stdout.
pub(crate) fn wait_for(mut child: Child) -> (std::process::ExitStatus, String) {
    let finished = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= finished {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the job did not complete within two minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        std::io::Read::read_to_string(&mut out, &mut stdout).unwrap();
    }
    (status, stdout)
}

pub(crate) fn members(head: &str, certs: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(ok(leman(&["cluster", "members", "--head", head, "--certs", certs, "--json"])).trim()).unwrap()
}

#[test]
fn workers_join_and_a_killed_worker_is_lost_within_five_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let certs = &init_certs(dir.path());
    let mut processes = Processes(Vec::new());
    let (head, line) = start(&["head", "--listen", "127.0.0.1:0", "--certs", certs]);
    processes.0.push(head);
    let addr: SocketAddr = line.strip_prefix("head listening on ").expect("head address").parse().unwrap();
    let head = addr.to_string();
    for cpus in ["1", "2", "3"] {
        let (worker, line) = start(&["worker", "--join", &head, "--listen", "127.0.0.1:0", "--join-timeout-secs", "30", "--certs", certs, "--cpus", cpus, "--memory", "1000"]);
        assert!(line.contains("joined the head"), "{line}");
        processes.0.push(worker);
    }
    let live = members(&head, certs);
    assert_eq!(live.len(), 3);
    let mut cpus: Vec<f64> = live.iter().map(|m| m["resources"]["cpus"].as_f64().unwrap()).collect();
    cpus.sort_by(f64::total_cmp);
    assert_eq!(cpus, vec![1.0, 2.0, 3.0], "resources are announced at join");

    processes.0[2].kill().unwrap();
    processes.0[2].wait().unwrap();
    let killed = Instant::now();
    while members(&head, certs).len() != 2 {
        assert!(killed.elapsed() < Duration::from_secs(5), "the killed worker was not lost within 5 s");
        std::thread::sleep(Duration::from_millis(100));
    }

    let foreign = dir.path().join("foreign");
    ok(leman(&["cluster", "init", "--dir", foreign.to_str().unwrap()]));
    let line = fails(leman(&["worker", "--join", &head, "--listen", "127.0.0.1:0", "--certs", foreign.to_str().unwrap(), "--join-timeout-secs", "1"]));
    assert!(line.contains("invalid peer certificate"), "{line}");
    assert_eq!(members(&head, certs).len(), 2, "the stranger did not join");

    // A worker of another cluster name is refused at once, both names said.
    let line = fails(leman(&["worker", "--join", &head, "--listen", "127.0.0.1:0", "--certs", certs, "--cluster-name", "staging", "--join-timeout-secs", "10"]));
    assert!(line.contains("\"leman\"") && line.contains("\"staging\"") && line.contains("--cluster-name"), "{line}");
    // Nobody can reach an unspecified address: never advertised.
    let line = fails(leman(&["worker", "--join", &head, "--listen", "127.0.0.1:0", "--certs", certs, "--advertise", "0.0.0.0:7071", "--join-timeout-secs", "10"]));
    assert!(line.contains("cannot advertise 0.0.0.0:7071"), "{line}");
    assert_eq!(members(&head, certs).len(), 2, "neither joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_workers_run_one_job_on_a_throwaway_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (table, _) = twin_tables(dir.path()).await;
    let path = table.uri().to_string();
    let args = ["backfill", "--table", &path, "--column", "e", "--local-workers", "2", "--json", "--where", "id < 1000"];
    let summary: serde_json::Value = serde_json::from_str(ok(leman(&args)).trim()).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(summary["rows_computed"], 1000, "{summary}");
    assert_eq!(table.count_rows(Some("e IS NOT NULL")).await.unwrap(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_head_mid_job_then_running_again_resumes_from_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let certs = &init_certs(dir.path());
    let (mut processes, head) = cluster(certs, 2);
    let (table, embedded) = twin_tables(dir.path()).await;
    embedded.backfill("slow", leman::BackfillOptions::default()).await.unwrap().wait().await.unwrap();
    let path = table.uri().to_string();
    let args = ["backfill", "--table", &path, "--column", "slow", "--cluster", &head, "--certs", certs, "--concurrency", "4", "--batch-size", "50", "--refresh-status-secs", "0.1", "--commit-granularity", "2"];
    let mut client = backfill_until(&args, 1000);
    processes.0[0].kill().unwrap(); // SIGKILL the head mid-job
    processes.0[0].wait().unwrap();
    client.kill().unwrap();
    client.wait().unwrap();

    // A new head at the same address; the workers join it again.
    let (new_head, line) = start(&["head", "--listen", &head, "--certs", certs]);
    processes.0[0] = new_head;
    assert!(line.contains(&head), "{line}");
    // A worker finds its head gone after 4.5 s of silence, then joins with
    // backoff (0.5 s doubling, each try up to 2 s): 45 s covers six tries
    // on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(45);
    while members(&head, certs).len() != 2 {
        if Instant::now() >= deadline {
            let logs: Vec<_> = (0..2).map(|i| std::path::Path::new(certs).with_file_name(format!("worker-{i}.log"))).collect();
            let exits: Vec<_> = processes.0[1..].iter_mut().map(|worker| worker.try_wait().ok().flatten()).collect();
            panic!("the workers did not join the new head; their exits: {exits:?}\n{}", tails(&logs));
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // The dead head's lease on the column goes stale within 15 s; then the
    // same command resumes.
    let mut rerun: Vec<&str> = args.to_vec();
    rerun.push("--json");
    let deadline = Instant::now() + Duration::from_secs(40);
    let summary: serde_json::Value = loop {
        let output = leman(&rerun);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            break serde_json::from_str(stdout.trim()).unwrap();
        }
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(stderr.contains("is being backfilled") || stdout.contains("is being backfilled"), "{stdout}{stderr}");
        assert!(Instant::now() < deadline, "the lease never went stale");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(summary["status"], "succeeded", "{summary}");
    let reused = summary["rows_from_checkpoints"].as_u64().unwrap();
    let committed_before = 4000 - summary["rows_computed"].as_u64().unwrap() - reused;
    assert!(reused + committed_before >= 800, "work done before the head died is not redone: {summary}");
    assert_eq!(column(&table, "slow").await, column(&embedded, "slow").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applier_that_fits_nowhere_waits_and_a_worker_joining_later_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let certs = &init_certs(dir.path());
    let mut processes = Processes(Vec::new());
    let (head, line) = start(&["head", "--listen", "127.0.0.1:0", "--certs", certs]);
    processes.0.push(head);
    let head = line.strip_prefix("head listening on ").expect("head address").to_string();
    let (first, _) = start(&["worker", "--join", &head, "--listen", "127.0.0.1:0", "--join-timeout-secs", "30", "--certs", certs, "--cpus", "1"]);
    processes.0.push(first);
    let (table, _) = twin_tables(dir.path()).await;
    let path = table.uri().to_string();

    // Two 1-cpu appliers, one 1-cpu worker: the second applier waits.
    let args = ["backfill", "--table", &path, "--column", "slow", "--cluster", &head, "--certs", certs, "--json", "--concurrency", "2", "--batch-size", "50", "--refresh-status-secs", "0.1"];
    let client = backfill_until(&args, 200);
    let mut late = Command::new(env!("CARGO_BIN_EXE_leman"))
        .args(["worker", "--join", &head, "--listen", "127.0.0.1:0", "--join-timeout-secs", "30", "--certs", certs, "--cpus", "1"])
        .env("RUST_LOG", "leman=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let late_log = late.stderr.take().unwrap();
    processes.0.push(late);
    let (status, stdout) = wait_for(client);
    assert!(status.success(), "{stdout}");
    let last = processes.0.len() - 1;
    processes.0[last].kill().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut BufReader::new(late_log), &mut log).unwrap();
    assert!(log.contains("applier started"), "the late worker took no applier:\n{log}");
    assert_eq!(table.count_rows(Some("slow = id")).await.unwrap(), 4000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_goes_on_when_its_client_is_killed_and_can_be_shown_again() {
    let dir = tempfile::tempdir().unwrap();
    let certs = &init_certs(dir.path());
    let (_processes, head) = cluster(certs, 2);
    let (table, _) = twin_tables(dir.path()).await;
    let path = table.uri().to_string();
    let args = ["backfill", "--table", &path, "--column", "slow", "--cluster", &head, "--certs", certs, "--concurrency", "4", "--batch-size", "50", "--refresh-status-secs", "0.1"];
    let mut client = backfill_until(&args, 400);
    client.kill().unwrap(); // SIGKILL the client: the job is the head's
    client.wait().unwrap();

    let job_id = table.jobs().await.unwrap()[0].id.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let shown: serde_json::Value =
            serde_json::from_str(ok(leman(&["jobs", "show", &job_id, "--cluster", &head, "--certs", certs, "--json"])).trim()).unwrap();
        if shown["status"] == "succeeded" {
            assert_eq!(shown["summary"]["rows_computed"], 4000, "{shown}");
            break;
        }
        assert_eq!(shown["status"], "running", "{shown}");
        assert!(Instant::now() < deadline, "the job did not finish without its client");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(table.count_rows(Some("slow = id")).await.unwrap(), 4000);
}
