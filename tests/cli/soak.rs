//! Kill soak: a cluster job runs while, for a bounded time, a random worker
//! is SIGKILLed every 0 to 10 s (at most 5 kills; each is started again at
//! once) and the head is SIGKILLed and started again, at the same address,
//! once. The client runs the same command until it succeeds: a job whose
//! head died resumes from its checkpoints once its lease goes stale. Then
//! the table is exact with each fragment committed once, the head holds no
//! reservation on any worker, and no worker hosts a job or an applier.
//!
//! One round runs in CI. `scripts/soak` runs many (`LEMAN_SOAK_ROUNDS`),
//! each with its own seed; `LEMAN_SOAK_SEED` replays a round's faults.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cli::cluster::{assert_exact_once, init_certs, waiting_tables};
use crate::cli::discovery::{Process, http_get, sample, wait_until};
use crate::cli::leman;

/// How long faults are made in a round.
const CHAOS: Duration = Duration::from_secs(30);
/// Most worker kills in a round.
const MOST_KILLS: usize = 5;
/// Workers of the cluster, 2 cpus each.
const WORKERS: usize = 3;

/// A reproducible source of the faults' times and victims (SplitMix64).
struct Faults(u64);

impl Faults {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A duration drawn evenly from `0..=max`, to the millisecond.
    fn up_to(&mut self, max: Duration) -> Duration {
        Duration::from_millis(self.next() % (max.as_millis() as u64 + 1))
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillWorker(usize),
    RestartHead,
}

/// When each fault of a round happens, from the start of its job.
fn schedule(seed: u64) -> Vec<(Duration, Fault)> {
    let mut faults = Faults(seed);
    let mut plan = Vec::new();
    let mut at = Duration::ZERO;
    while plan.len() < MOST_KILLS {
        at += faults.up_to(Duration::from_secs(10));
        if at >= CHAOS {
            break;
        }
        plan.push((at, Fault::KillWorker((faults.next() % WORKERS as u64) as usize)));
    }
    plan.push((faults.up_to(CHAOS), Fault::RestartHead));
    plan.sort_by_key(|(at, _)| *at);
    plan
}

/// The cluster's processes, as the faults leave them.
struct Cluster {
    certs: String,
    head_addr: String,
    head: Process,
    /// Each worker and the address of its `/metrics`.
    workers: Vec<(Process, SocketAddr)>,
}

impl Cluster {
    fn start(certs: &str) -> Self {
        let mut head = Process::start(&["head", "--listen", "127.0.0.1:0", "--certs", certs]);
        let head_addr = head.addr_line("head listening on ").to_string();
        let mut cluster = Self { certs: certs.to_string(), head_addr, head, workers: Vec::new() };
        for _ in 0..WORKERS {
            let worker = cluster.worker();
            cluster.workers.push(worker);
        }
        cluster
    }

    /// A new worker, once it joined.
    fn worker(&self) -> (Process, SocketAddr) {
        let args = [
            "worker", "--join", &self.head_addr, "--listen", "127.0.0.1:0", "--join-timeout-secs", "60", "--certs", &self.certs, "--cpus",
            "2", "--http", "127.0.0.1:0",
        ];
        let mut worker = Process::start(&args);
        let line = worker.line();
        assert!(line.contains("joined the head"), "{line}");
        let metrics = worker.addr_line("serving /livez, /readyz and /metrics on ");
        (worker, metrics)
    }

    fn make(&mut self, fault: Fault) {
        match fault {
            Fault::KillWorker(i) => {
                self.workers[i].0.kill();
                self.workers[i] = self.worker();
            }
            Fault::RestartHead => {
                self.head.kill();
                self.head = Process::start(&["head", "--listen", &self.head_addr, "--certs", &self.certs]);
                let line = self.head.line();
                assert!(line.contains(&self.head_addr), "{line}");
            }
        }
    }
}

/// Makes the faults of `plan` until `done` or the plan ends; returns the
/// cluster and the faults made.
fn make_faults(mut cluster: Cluster, plan: Vec<(Duration, Fault)>, done: Arc<AtomicBool>) -> (Cluster, Vec<Fault>) {
    let started = Instant::now();
    let mut made = Vec::new();
    for (at, fault) in plan {
        // The wait is the fault's time itself, cut short when the job ends.
        while started.elapsed() < at {
            if done.load(Ordering::Relaxed) {
                return (cluster, made);
            }
            std::thread::sleep(Duration::from_millis(20).min(at.saturating_sub(started.elapsed())));
        }
        cluster.make(fault);
        made.push(fault);
    }
    (cluster, made)
}

/// One round: a job under the faults `seed` draws, then the checks.
async fn round(seed: u64) {
    let plan = schedule(seed);
    eprintln!("soak round, LEMAN_SOAK_SEED={seed}: {plan:?}");
    let dir = tempfile::tempdir().unwrap();
    let certs = &init_certs(dir.path());
    let cluster = Cluster::start(certs);
    let head = cluster.head_addr.clone();
    // 4,000 rows of 60 ms each on 6 cpus: 40 s without faults, longer than
    // the faults last.
    let (tables, embedded) = waiting_tables(dir.path(), &["soaked"], 60_000).await;
    let table = &tables[0];
    let before = table.version().await.unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let faults = {
        let done = done.clone();
        std::thread::spawn(move || make_faults(cluster, plan, done))
    };
    let path = table.uri().to_string();
    let args = [
        "backfill", "--table", &path, "--column", "w", "--cluster", &head, "--certs", certs, "--json", "--concurrency", "6", "--batch-size",
        "20", "--refresh-status-secs", "0.2",
    ];
    let deadline = Instant::now() + CHAOS + Duration::from_secs(180);
    let started = Instant::now();
    let mut failures = Vec::new();
    let summary: serde_json::Value = loop {
        let output = leman(&args);
        if output.status.success() {
            break serde_json::from_str(String::from_utf8_lossy(&output.stdout).trim()).unwrap();
        }
        // The head died under it, or the dead head's lease is not stale yet.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let error = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or("").to_string();
        failures.push(format!("{:.1?}: {error}", started.elapsed()));
        assert!(Instant::now() < deadline, "no run succeeded within {:?}: {failures:#?}", CHAOS + Duration::from_secs(180));
        std::thread::sleep(Duration::from_millis(500));
    };
    done.store(true, Ordering::Relaxed);
    let (cluster, made) = faults.join().expect("the fault maker");
    eprintln!("soak round {seed}: faults made {made:?}; runs that failed: {failures:#?}; summary {summary}");
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert!(made.iter().any(|f| matches!(f, Fault::RestartHead)), "the job ended before the head was restarted: {made:?}");
    assert!(made.iter().any(|f| matches!(f, Fault::KillWorker(_))), "the job ended before a worker was killed: {made:?}");

    assert_exact_once(table, &embedded, "w", before).await;
    // Every worker is a member again, and the head holds nothing of any.
    wait_until("every worker a member with nothing reserved", Duration::from_secs(60), || {
        let output = leman(&["cluster", "members", "--head", &head, "--certs", certs, "--json"]);
        let members: Vec<serde_json::Value> = serde_json::from_str(String::from_utf8_lossy(&output.stdout).trim()).unwrap_or_default();
        let free = |m: &serde_json::Value| ["cpus", "gpus", "memory"].iter().all(|r| m["reserved"][r].as_f64() == Some(0.0));
        members.len() == WORKERS && members.iter().all(free)
    });
    // And no worker holds a job or an applier.
    for (_, metrics) in &cluster.workers {
        wait_until(&format!("the worker of {metrics} free"), Duration::from_secs(20), || {
            let (_, body) = http_get(*metrics, "/metrics");
            sample(&body, "leman_jobs_hosted") == 0.0 && sample(&body, "leman_appliers_running") == 0.0
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_workers_and_the_head_at_random_ends_exact_with_nothing_held() {
    let rounds: u64 = std::env::var("LEMAN_SOAK_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(1);
    let first = match std::env::var("LEMAN_SOAK_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => seed,
        None => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |t| t.as_nanos() as u64),
    };
    for n in 0..rounds {
        round(first.wrapping_add(n)).await;
    }
}
