//! Network faults, made with nftables in a network namespace of the test's
//! own (`unshare --net`, processes placed in it with `nsenter`): a head on
//! 127.0.0.1 and three workers, each on an address of its own
//! (127.0.0.11 to .13), so that a rule on the input hook cuts one worker
//! off in both directions while the test's own requests to the head pass.
//!
//! - A 3 s blackout of one worker loses nothing: it stays a member under
//!   the same id, its work is not given away, each fragment commits once.
//! - A 30 s partition of one worker is detected, its work goes elsewhere,
//!   the job ends exact, and the worker joins again once the partition
//!   heals.
//! - 10% random loss of every UDP packet still ends exact, in under 3x the
//!   time of the same job without loss (measured in the same test).
//!
//! Where network namespaces are not permitted, or `nft`, `ip`, `unshare`
//! or `nsenter` are missing (`scripts/test` installs Debian's `nftables`
//! and `iproute2`), each test says so on stderr and passes without running.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cli::Backfill;
use crate::cli::cluster::{Processes, assert_exact_once, init_certs, start_command, tails, wait_for, waiting_tables};

/// Where the head listens inside the namespace (which is the test's alone,
/// so a fixed port collides with nothing).
const HEAD: &str = "127.0.0.1:7000";

/// The address worker `i` (0-based) listens on and sends from.
fn worker_ip(i: usize) -> String {
    format!("127.0.0.{}", 11 + i)
}

/// A network namespace of the test's own, with its loopback up. It lives
/// as long as its holder process, which is killed on drop.
struct Namespace {
    holder: Child,
}

impl Namespace {
    /// A fresh namespace, or why there cannot be one here.
    fn new() -> Result<Self, String> {
        for (tool, package) in [("nft", "nftables"), ("ip", "iproute2"), ("unshare", "util-linux"), ("nsenter", "util-linux")] {
            let found = Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
            if !found {
                return Err(format!("{tool} is missing (Debian's {package}; scripts/test installs it)"));
            }
        }
        // The holder ends by itself after 15 minutes, should the test die
        // too hard to kill it.
        let mut holder = Command::new("unshare")
            .args(["--net", "--", "sh", "-c", "ip link set lo up && echo up && exec sleep 900"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        if line.trim() != "up" {
            let _ = holder.kill();
            let output = holder.wait_with_output().map_err(|e| e.to_string())?;
            return Err(format!("network namespaces are not permitted here: {}", String::from_utf8_lossy(&output.stderr).trim()));
        }
        let namespace = Self { holder };
        namespace.nft("add table inet faults\nadd chain inet faults input { type filter hook input priority 0; policy accept; }")?;
        Ok(namespace)
    }

    /// `program` to be run inside the namespace.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command.arg(format!("--net=/proc/{}/ns/net", self.holder.id())).arg("--").arg(program);
        command
    }

    /// A `leman` command line inside the namespace.
    fn leman_command(&self, args: &[&str]) -> Command {
        let mut command = self.command(env!("CARGO_BIN_EXE_leman"));
        command.args(args);
        command
    }

    /// Runs `leman args` inside the namespace.
    fn leman(&self, args: &[&str]) -> Output {
        self.leman_command(args).env("RUST_LOG", "error").output().expect("run leman")
    }

    /// Applies an nft script inside the namespace.
    fn nft(&self, script: &str) -> Result<(), String> {
        let mut nft = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run nft: {e}"))?;
        nft.stdin.take().expect("stdin").write_all(script.as_bytes()).map_err(|e| e.to_string())?;
        let output = nft.wait_with_output().map_err(|e| e.to_string())?;
        match output.status.success() {
            true => Ok(()),
            false => Err(format!("nft refused {script:?}: {}", String::from_utf8_lossy(&output.stderr).trim())),
        }
    }

    /// Drops every UDP packet to or from `ip` from now on.
    fn cut_off(&self, ip: &str) {
        self.nft(&format!("add rule inet faults input meta l4proto udp ip saddr {ip} counter drop\nadd rule inet faults input meta l4proto udp ip daddr {ip} counter drop"))
            .expect("cut off");
    }

    /// Drops one UDP packet in `n`, at random, from now on.
    fn lose_one_in(&self, n: u32) {
        self.nft(&format!("add rule inet faults input meta l4proto udp numgen random mod {n} 0 counter drop")).expect("random loss");
    }

    /// How many packets the faults in place have dropped, so that a test
    /// knows its fault happened.
    fn dropped(&self) -> u64 {
        let output = self.command("nft").args(["list", "chain", "inet", "faults", "input"]).output().expect("run nft");
        let listing = String::from_utf8_lossy(&output.stdout);
        listing.split("counter packets ").skip(1).filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok()).sum()
    }

    /// Removes every fault.
    fn heal(&self) {
        self.nft("flush chain inet faults input").expect("heal");
    }

    /// The members the head counts now: (id, address) of each, sorted.
    fn members(&self, certs: &str) -> Vec<(u64, String)> {
        let output = self.leman(&["cluster", "members", "--head", HEAD, "--certs", certs, "--json"]);
        let stdout = crate::cli::ok(output);
        let members: Vec<serde_json::Value> = serde_json::from_str(stdout.trim()).expect("members json");
        let mut members: Vec<(u64, String)> =
            members.iter().map(|m| (m["node"].as_u64().expect("node id"), m["addr"].as_str().expect("addr").to_string())).collect();
        members.sort();
        members
    }

    /// Waits (at most `limit`) until `test` holds of the members.
    fn until_members(&self, certs: &str, limit: Duration, what: &str, test: impl Fn(&[(u64, String)]) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            let members = self.members(certs);
            if test(&members) {
                return;
            }
            assert!(Instant::now() < deadline, "{what} within {limit:?}; members now: {members:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// A namespace, or `None` after saying on stderr why `test` is skipped.
fn namespace_for(test: &str) -> Option<Namespace> {
    match Namespace::new() {
        Ok(namespace) => Some(namespace),
        Err(why) => {
            eprintln!("skipped {test}: {why}");
            None
        }
    }
}

/// A head and three workers (2 cpus each) in `namespace`, with their
/// certificates and logs in a temp dir of their own.
struct NetCluster {
    _processes: Processes,
    dir: tempfile::TempDir,
    certs: String,
    logs: Vec<PathBuf>,
}

impl NetCluster {
    fn start(namespace: &Namespace) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let certs = init_certs(dir.path());
        let log = |name: &str| dir.path().join(format!("{name}.log"));
        let mut processes = Processes(Vec::new());
        let mut logs = vec![log("head")];
        let (head, line) = start_command(namespace.leman_command(&["head", "--listen", HEAD, "--certs", &certs]), Some(&logs[0]));
        processes.0.push(head);
        assert!(line.contains(HEAD), "{line}");
        for i in 0..3 {
            logs.push(log(&format!("worker-{i}")));
            let listen = format!("{}:0", worker_ip(i));
            let args = ["worker", "--join", HEAD, "--listen", &listen, "--join-timeout-secs", "30", "--certs", &certs, "--cpus", "2"];
            let (worker, line) = start_command(namespace.leman_command(&args), logs.last().map(PathBuf::as_path));
            assert!(line.contains("joined the head"), "{line}");
            processes.0.push(worker);
        }
        Self { _processes: processes, dir, certs, logs }
    }

    /// What the head logged.
    fn head_log(&self) -> String {
        std::fs::read_to_string(&self.logs[0]).unwrap_or_default()
    }

    /// What worker `i` logged.
    fn worker_log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.logs[1 + i]).unwrap_or_default()
    }
}

/// The cluster backfill of `w` on `table`, started in `namespace` and
/// returned once 400 rows are done.
fn start_job(namespace: &Namespace, table: &leman::Table, certs: &str) -> Child {
    let path = table.uri().to_string();
    let args = [
        "backfill", "--table", &path, "--column", "w", "--cluster", HEAD, "--certs", certs, "--json", "--concurrency", "6",
        "--batch-size", "50", "--commit-granularity", "1", "--refresh-status-secs", "0.1",
    ];
    Backfill::start(namespace.leman_command(&args), 400).child
}

/// Asserts that the job of `client` succeeded and that `table` is exact
/// ([`assert_exact_once`]).
async fn assert_exact(client: Child, table: &leman::Table, embedded: &leman::Table, before: u64, logs: &NetCluster) {
    let (status, stdout) = wait_for(client);
    assert!(status.success(), "{stdout}\n{}", tails(&logs.logs));
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_exact_once(table, embedded, "w", before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_second_blackout_of_a_worker_loses_nothing() {
    let Some(namespace) = namespace_for("a_three_second_blackout_of_a_worker_loses_nothing") else { return };
    let cluster = NetCluster::start(&namespace);
    let certs = &cluster.certs;
    let (tables, embedded) = waiting_tables(cluster.dir.path(), &["on_cluster"], 10_000).await;
    let before = tables[0].version().await.unwrap();
    let members = namespace.members(certs);
    assert_eq!(members.len(), 3, "{members:?}");

    let client = start_job(&namespace, &tables[0], certs);
    namespace.cut_off(&worker_ip(1));
    let blackout = Instant::now();
    // The fault is the 3 s blackout itself; the members are watched the
    // whole time, and for 3 s more: past the 5 s deadline from its start.
    let mut healed = false;
    while blackout.elapsed() < Duration::from_secs(6) {
        if !healed && blackout.elapsed() >= Duration::from_secs(3) {
            assert!(namespace.dropped() > 0, "the blackout dropped no packet");
            namespace.heal();
            healed = true;
        }
        assert_eq!(namespace.members(certs), members, "a member changed {:?} into the blackout\n{}", blackout.elapsed(), tails(&cluster.logs));
        std::thread::sleep(Duration::from_millis(100));
    }

    assert_exact(client, &tables[0], &embedded, before, &cluster).await;
    assert_eq!(namespace.members(certs), members, "the same members, ids and all");
    assert!(!cluster.head_log().contains("worker lost"), "{}", cluster.head_log());
    assert!(!cluster.worker_log(1).contains("finding the head again"), "{}", cluster.worker_log(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_worker_is_lost_its_work_goes_elsewhere_and_it_joins_again() {
    let Some(namespace) = namespace_for("a_partitioned_worker_is_lost_its_work_goes_elsewhere_and_it_joins_again") else { return };
    let cluster = NetCluster::start(&namespace);
    let certs = &cluster.certs;
    let (tables, embedded) = waiting_tables(cluster.dir.path(), &["on_cluster"], 10_000).await;
    let before = tables[0].version().await.unwrap();
    let cut = worker_ip(2);
    let on_cut = |members: &[(u64, String)]| members.iter().any(|(_, addr)| addr.starts_with(&format!("{cut}:")));

    let client = start_job(&namespace, &tables[0], certs);
    namespace.cut_off(&cut);
    let partition = Instant::now();
    namespace.until_members(certs, Duration::from_secs(10), "the partitioned worker is lost", |members| {
        members.len() == 2 && !on_cut(members)
    });
    // The job ends on the other two while the partition lasts.
    assert_exact(client, &tables[0], &embedded, before, &cluster).await;
    assert!(partition.elapsed() < Duration::from_secs(30), "the job outlasted the partition: {:?}", partition.elapsed());
    let ends = partition + Duration::from_secs(30);
    std::thread::sleep(ends.saturating_duration_since(Instant::now()));
    assert!(namespace.dropped() > 0, "the partition dropped no packet");
    namespace.heal();
    // It tries again with backoff up to 15 s, each try up to 2 s.
    namespace.until_members(certs, Duration::from_secs(30), "the worker joins again after the partition", |members| {
        members.len() == 3 && on_cut(members)
    });
    assert!(cluster.head_log().contains("worker lost"), "{}", cluster.head_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_udp_loss_ends_exact_in_under_three_times_the_time() {
    let Some(namespace) = namespace_for("ten_percent_udp_loss_ends_exact_in_under_three_times_the_time") else { return };
    let cluster = NetCluster::start(&namespace);
    let certs = &cluster.certs;
    let (tables, embedded) = waiting_tables(cluster.dir.path(), &["without_loss", "with_loss"], 5_000).await;

    let mut took = Vec::new();
    for (table, loss) in tables.iter().zip([false, true]) {
        let before = table.version().await.unwrap();
        if loss {
            namespace.lose_one_in(10);
        }
        let started = Instant::now();
        let client = start_job(&namespace, table, certs);
        assert_exact(client, table, &embedded, before, &cluster).await;
        took.push(started.elapsed());
    }
    let dropped = namespace.dropped();
    assert!(dropped > 0, "the loss dropped no packet");
    namespace.heal();
    let ratio = took[1].as_secs_f64() / took[0].as_secs_f64();
    eprintln!("10% UDP loss ({dropped} packets dropped): {:?} against {:?} without, {ratio:.2}x", took[1], took[0]);
    assert!(ratio < 3.0, "10% loss took {ratio:.2}x the time without: {took:?}");
}
