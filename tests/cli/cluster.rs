//! A head and three worker processes on 127.0.0.1: joins, a SIGKILLed
//! worker lost within 5 seconds, a worker of another CA refused.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{fails, leman, ok};

/// Child processes, killed when the test ends however it ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `leman args`, returning the process and its first stdout line.
fn start(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_leman"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start leman");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("first line");
    (child, line.trim().to_string())
}

fn members(head: &str, certs: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(ok(leman(&["cluster", "members", "--head", head, "--certs", certs, "--json"])).trim()).unwrap()
}

#[test]
fn workers_join_and_a_killed_worker_is_lost_within_five_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let certs = certs.to_str().unwrap();
    ok(leman(&["cluster", "init", "--dir", certs]));
    let mut processes = Processes(Vec::new());
    let (head, line) = start(&["head", "--listen", "127.0.0.1:0", "--certs", certs]);
    processes.0.push(head);
    let addr: SocketAddr = line.strip_prefix("head listening on ").expect("head address").parse().unwrap();
    let head = addr.to_string();
    for cpus in ["1", "2", "3"] {
        let (worker, line) = start(&["worker", "--join", &head, "--certs", certs, "--cpus", cpus, "--memory", "1000"]);
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
    let line = fails(leman(&["worker", "--join", &head, "--certs", foreign.to_str().unwrap(), "--join-timeout-secs", "1"]));
    assert!(line.contains("invalid peer certificate"), "{line}");
    assert_eq!(members(&head, certs).len(), 2, "the stranger did not join");
}
