//! Finding the head by DNS, as in Kubernetes: a real DNS server (hickory,
//! in this process) on 127.0.0.1 serves the head Service's A and SRV
//! records. The head runs on 127.0.0.2, workers on 127.0.0.3 and
//! 127.0.0.4 join through `dns:` and `dns+srv:` targets, and clients reach
//! the head the same way. The head is killed, its records move to
//! 127.0.0.5 where a new head starts, and the workers find it by
//! themselves. Health and metrics are read over HTTP while a job runs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};

use crate::cli::{backfill_until, leman};

const ZONE: &str = "cluster.test.";
const HEAD: &str = "leman-head.ml.cluster.test.";
const HEAD_SRV: &str = "_quic._udp.leman-head.ml.cluster.test.";

/// An authoritative DNS server for `cluster.test.` on 127.0.0.1, on a
/// runtime of its own; its records can be changed while it runs.
struct DnsServer {
    addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler>,
    // Dropped before the runtime it runs on.
    _server: Server<Catalog>,
    runtime: tokio::runtime::Runtime,
}

impl DnsServer {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let origin = Name::from_str(ZONE).unwrap();
        let soa = SOA::new(origin.clone(), Name::from_str("admin.cluster.test.").unwrap(), 1, 60, 60, 60, 0);
        let mut records = BTreeMap::new();
        records.insert(RrKey::new(LowerName::new(&origin), RecordType::SOA), RecordSet::from(Record::from_rdata(origin.clone(), 0, RData::SOA(soa))));
        let zone: Arc<InMemoryZoneHandler> =
            Arc::new(InMemoryZoneHandler::new(origin.clone(), records, ZoneType::Primary, AxfrPolicy::Deny).unwrap());
        let handler: Arc<dyn ZoneHandler> = zone.clone();
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![handler]);
        let (server, addr) = runtime.block_on(async {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
            let mut server = Server::new(catalog);
            server.register_socket(udp);
            server.register_listener(tcp, Duration::from_secs(5), 4096);
            (server, addr)
        });
        Self { addr, zone, runtime, _server: server }
    }

    /// `name` answers with `ips` (none: the name has no address).
    fn set_a(&self, name: &str, ips: &[Ipv4Addr]) {
        let name = Name::from_str(name).unwrap();
        let key = RrKey::new(LowerName::new(&name), RecordType::A);
        self.runtime.block_on(async {
            let mut records = self.zone.records_mut().await;
            records.remove(&key);
            if let Some((first, rest)) = ips.split_first() {
                let mut set = RecordSet::from(Record::from_rdata(name.clone(), 0, RData::A(A(*first))));
                for ip in rest {
                    set.insert(Record::from_rdata(name.clone(), 0, RData::A(A(*ip))), 0);
                }
                records.insert(key, Arc::new(set));
            }
        });
    }

    /// `name` has one SRV record: `target` at `port`.
    fn set_srv(&self, name: &str, target: &str, port: u16) {
        let name = Name::from_str(name).unwrap();
        let srv = SRV::new(0, 10, port, Name::from_str(target).unwrap());
        let key = RrKey::new(LowerName::new(&name), RecordType::SRV);
        self.runtime.block_on(async {
            let set = RecordSet::from(Record::from_rdata(name.clone(), 0, RData::SRV(srv)));
            self.zone.records_mut().await.insert(key, Arc::new(set));
        });
    }
}

/// A `leman` process and the lines it prints, killed when dropped.
pub(crate) struct Process {
    child: Child,
    stdout: mpsc::Receiver<String>,
}

impl Process {
    pub(crate) fn start(args: &[&str]) -> Self {
        Self::start_logging(args).0
    }

    /// Starts it with warnings logged; its log lines arrive on the receiver.
    fn start_logging(args: &[&str]) -> (Self, mpsc::Receiver<String>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_leman"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = lines_of(BufReader::new(child.stdout.take().unwrap()));
        let log = lines_of(BufReader::new(child.stderr.take().unwrap()));
        (Self { child, stdout }, log)
    }

    /// The next line it prints, waiting at most 30 seconds (empty once it
    /// exited).
    pub(crate) fn line(&mut self) -> String {
        match self.stdout.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line.trim().to_string(),
            Err(mpsc::RecvTimeoutError::Disconnected) => String::new(),
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("leman printed nothing within 30 s"),
        }
    }

    /// The address at the end of its next line.
    pub(crate) fn addr_line(&mut self, prefix: &str) -> SocketAddr {
        let line = self.line();
        let addr = line.strip_prefix(prefix).unwrap_or_else(|| panic!("expected {prefix:?}, got {line:?}"));
        addr.trim_start_matches("http://").parse().unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The lines `reader` gives, as they come, from a thread of their own.
fn lines_of(reader: impl BufRead + Send + 'static) -> mpsc::Receiver<String> {
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            // Nobody listening any more is fine.
            let _ = lines.send(line);
        }
    });
    received
}

/// A UDP port free on 127.0.0.2 and 127.0.0.5, where the head and its
/// successor listen.
fn head_port() -> u16 {
    for _ in 0..20 {
        let port = UdpSocket::bind("127.0.0.2:0").unwrap().local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.5", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.5");
}

/// `GET path` over HTTP/1.1: the status code and the body.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP response: {response:?}"));
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("{head:?}"));
    (status, body.to_string())
}

/// The value of the sample `name` (no labels) in a Prometheus text body.
pub(crate) fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let mut parts = line.split_whitespace();
            (parts.next() == Some(name)).then(|| parts.next().and_then(|v| v.parse().ok())).flatten()
        })
        .unwrap_or_else(|| panic!("no sample {name} in:\n{body}"))
}

/// Rows computed so far, over every worker.
fn rows_computed(workers: &[SocketAddr]) -> f64 {
    workers.iter().map(|addr| sample(&http_get(*addr, "/metrics").1, "leman_rows_computed_total")).sum()
}

/// Live members as `leman cluster members --cluster TARGET` lists them.
fn members(target: &str, dns: &str, certs: &str) -> Vec<serde_json::Value> {
    let output = leman(&["cluster", "members", "--cluster", target, "--dns-server", dns, "--certs", certs, "--json"]);
    if !output.status.success() {
        return Vec::new();
    }
    serde_json::from_slice(&output.stdout).unwrap()
}

pub(crate) fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn workers_find_the_head_by_dns_and_find_it_again_at_its_new_address() {
    let dir = tempfile::tempdir().unwrap();
    let certs = &crate::cli::cluster::init_certs(dir.path());
    let dns_server = DnsServer::start();
    let dns = &dns_server.addr.to_string();
    let port = head_port();
    dns_server.set_a(HEAD, &[Ipv4Addr::new(127, 0, 0, 2)]);
    dns_server.set_srv(HEAD_SRV, HEAD, port);
    let by_name = &format!("dns:{}:{port}", HEAD.trim_end_matches('.'));
    let by_srv = &format!("dns+srv:{}", HEAD_SRV.trim_end_matches('.'));

    let head_listen = format!("127.0.0.2:{port}");
    let mut head = Process::start(&["head", "--listen", &head_listen, "--certs", certs, "--http", "127.0.0.2:0"]);
    assert_eq!(head.addr_line("head listening on "), head_listen.parse().unwrap());
    let head_http = head.addr_line("serving /livez, /readyz and /metrics on ");
    assert_eq!(http_get(head_http, "/readyz").0, 200, "the head is ready before any worker joins");

    let mut workers = Vec::new();
    let mut worker_http = Vec::new();
    for (ip, target) in [("127.0.0.3", by_name), ("127.0.0.4", by_srv)] {
        let listen = format!("{ip}:0");
        let http = format!("{ip}:0");
        let args = ["worker", "--join", target, "--dns-server", dns, "--listen", &listen, "--http", &http, "--certs", certs, "--cpus", "2", "--join-timeout-secs", "30"];
        let mut worker = Process::start(&args);
        let line = worker.line();
        assert!(line.contains(&format!("joined the head at {head_listen}")), "{line}");
        worker_http.push(worker.addr_line("serving /livez, /readyz and /metrics on "));
        workers.push(worker);
    }
    // The head records where each join came from: never 0.0.0.0.
    let mut addrs: Vec<IpAddr> = members(by_name, dns, certs)
        .iter()
        .map(|m| m["addr"].as_str().unwrap().parse::<SocketAddr>().unwrap().ip())
        .collect();
    addrs.sort();
    assert_eq!(addrs, ["127.0.0.3".parse::<IpAddr>().unwrap(), "127.0.0.4".parse().unwrap()]);
    for http in &worker_http {
        assert_eq!(http_get(*http, "/livez"), (200, "ok\n".to_string()));
        assert_eq!(http_get(*http, "/readyz").0, 200);
    }
    let workers_live = || sample(&http_get(head_http, "/metrics").1, "leman_workers_live");
    wait_until("the head counts two workers", Duration::from_secs(5), || workers_live() == 2.0);

    // A backfill submitted through the name, watched over HTTP as it runs.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (table, embedded) = runtime.block_on(crate::cli::cluster::twin_tables(dir.path()));
    runtime.block_on(async { embedded.backfill("slow", leman::BackfillOptions::default()).await.unwrap().wait().await.unwrap() });
    let path = table.uri().to_string();
    let args = ["backfill", "--table", &path, "--column", "slow", "--cluster", by_name, "--dns-server", dns, "--certs", certs, "--concurrency", "4", "--batch-size", "50", "--refresh-status-secs", "0.1", "--json"];
    let client = backfill_until(&args, 200);
    let first = rows_computed(&worker_http);
    assert_eq!(sample(&http_get(head_http, "/metrics").1, "leman_jobs_running"), 1.0);
    wait_until("the workers' row counters grow during the job", Duration::from_secs(30), || rows_computed(&worker_http) > first);
    let (status, stdout) = crate::cli::cluster::wait_for(client);
    assert!(status.success(), "{stdout}");
    assert_eq!(rows_computed(&worker_http), 4000.0, "every row counted once, by the worker that computed it");
    let metrics: Vec<String> = worker_http.iter().map(|http| http_get(*http, "/metrics").1).collect();
    assert!(metrics.iter().map(|m| sample(m, "leman_bytes_written_total")).sum::<f64>() > 0.0);
    assert!(metrics.iter().map(|m| sample(m, "leman_udf_batch_seconds_count")).sum::<f64>() >= 80.0, "one sample per batch");
    let head_metrics = http_get(head_http, "/metrics").1;
    assert!(sample(&head_metrics, "leman_commits_total") >= 1.0);
    assert_eq!(sample(&head_metrics, "leman_jobs_running"), 0.0);
    runtime.block_on(async {
        assert_eq!(crate::cli::cluster::column(&table, "slow").await, crate::cli::cluster::column(&embedded, "slow").await);
    });

    // The head dies; its Service's records move to 127.0.0.5, where a new
    // head starts. The workers find it with no help.
    head.kill();
    dns_server.set_a(HEAD, &[Ipv4Addr::new(127, 0, 0, 5)]);
    let new_listen = format!("127.0.0.5:{port}");
    let mut new_head = Process::start(&["head", "--listen", &new_listen, "--certs", certs]);
    assert_eq!(new_head.addr_line("head listening on "), new_listen.parse().unwrap());
    wait_until("both workers joined the new head", Duration::from_secs(20), || members(by_name, dns, certs).len() == 2);
    for http in &worker_http {
        assert_eq!(http_get(*http, "/readyz").0, 200);
    }
    let args = ["backfill", "--table", &path, "--column", "e", "--cluster", by_srv, "--dns-server", dns, "--certs", certs, "--json"];
    let client = Command::new(env!("CARGO_BIN_EXE_leman")).args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let (status, stdout) = crate::cli::cluster::wait_for(client);
    assert!(status.success(), "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(summary["rows_computed"], 4000, "{summary}");
    drop(workers);
}

#[test]
fn a_worker_waits_through_an_empty_answer_and_joins_once_the_name_has_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let certs = &crate::cli::cluster::init_certs(dir.path());
    let dns_server = DnsServer::start();
    let dns = &dns_server.addr.to_string();
    let port = head_port();
    let target = format!("dns:{}:{port}", HEAD.trim_end_matches('.'));

    // No record yet: the worker keeps asking, and says what to check.
    let args = ["worker", "--join", &target, "--dns-server", dns, "--listen", "127.0.0.3:0", "--certs", certs, "--join-timeout-secs", "40"];
    let (mut worker, log) = Process::start_logging(&args);
    let deadline = Instant::now() + Duration::from_secs(10);
    let hint = loop {
        let line = log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("the worker said nothing of the empty answer within 10 s"));
        if line.contains("cannot join the head yet") {
            break line;
        }
    };
    assert!(hint.contains("DNS has no address for it yet") && hint.contains("publishNotReadyAddresses"), "{hint}");

    let head_listen = format!("127.0.0.2:{port}");
    let mut head = Process::start(&["head", "--listen", &head_listen, "--certs", certs]);
    assert_eq!(head.addr_line("head listening on "), head_listen.parse().unwrap());
    dns_server.set_a(HEAD, &[Ipv4Addr::new(127, 0, 0, 2)]);
    // The next attempt finds it: at most the backoff's 15 s cap away.
    let joined = Instant::now();
    let line = worker.line();
    assert!(line.contains(&format!("joined the head at {head_listen}")), "{line}");
    assert!(joined.elapsed() < Duration::from_secs(20), "joined after {:?}", joined.elapsed());
}
