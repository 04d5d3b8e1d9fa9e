//! Certificates with roles from the command line: `leman cluster issue`, a
//! certificate of the wrong role refused with both roles named, and a
//! worker revoked on a running head (`--revoked`) cut off within seconds.

use std::time::{Duration, Instant};

use crate::cli::cluster::{Processes, init_certs, members, start};
use crate::cli::{fails, leman, ok};

#[test]
fn an_issued_worker_joins_and_once_revoked_is_cut_off_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let certs = &init_certs(dir.path());
    let issued = dir.path().join("gpu-7");
    let said = ok(leman(&["cluster", "issue", "--ca", certs, "--role", "worker", "--name", "gpu-7", "--out", issued.to_str().unwrap(), "--days", "30"]));
    assert!(said.contains("issued a worker certificate for \"gpu-7\""), "{said}");
    let fingerprint = said.split("fingerprint ").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap().to_string();
    for file in ["ca.pem", "worker.pem", "worker.key"] {
        assert!(issued.join(file).exists(), "{file}");
    }
    assert!(!issued.join("ca.key").exists() && !issued.join("head.key").exists(), "a worker gets its own certificate only");

    // A worker's certificate cannot serve as a client's.
    std::fs::copy(issued.join("worker.pem"), issued.join("client.pem")).unwrap();
    std::fs::copy(issued.join("worker.key"), issued.join("client.key")).unwrap();
    let line = fails(leman(&["cluster", "members", "--cluster", "127.0.0.1:9", "--certs", issued.to_str().unwrap()]));
    assert!(line.contains("it is a worker certificate; a client needs a client certificate"), "{line}");

    let revoked = dir.path().join("revoked.txt");
    std::fs::write(&revoked, "").unwrap();
    let mut processes = Processes(Vec::new());
    let (head, line) = start(&["head", "--listen", "127.0.0.1:0", "--certs", certs, "--revoked", revoked.to_str().unwrap()]);
    processes.0.push(head);
    let head = line.strip_prefix("head listening on ").unwrap().to_string();
    let (worker, line) = start(&["worker", "--join", &head, "--listen", "127.0.0.1:0", "--certs", issued.to_str().unwrap(), "--join-timeout-secs", "30"]);
    processes.0.push(worker);
    assert!(line.contains("joined the head"), "{line}");
    assert_eq!(members(&head, certs).len(), 1);

    std::fs::write(&revoked, format!("{fingerprint}  # gpu-7\n")).unwrap();
    let revoked_at = Instant::now();
    while !members(&head, certs).is_empty() {
        assert!(revoked_at.elapsed() < Duration::from_secs(15), "the revoked worker is still a member");
        std::thread::sleep(Duration::from_millis(200));
    }
}
