//! Hostile peers against a head process: two peers with valid certificates
//! open every stream they may, announce maximal frames and trickle their
//! bytes; another floods the head with handshakes from a foreign CA. The
//! head's resident memory stays under its baseline plus 256 MiB, the slow
//! streams are reset at their deadline, and an honest job completes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use leman_runtime::frame::{DEFAULT_MAX_FRAME, PROTOCOL_VERSION};
use leman_runtime::tls::Role;
use leman_runtime::{ClusterCerts, MAX_BIDI_STREAMS, Node, NodeConfig};

use crate::cli::cluster::{cluster, init_certs, twin_tables, wait_for};
use crate::cli::{backfill_until, leman, ok};

/// Resident memory of process `pid`, in bytes.
fn resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap();
    kib * 1024
}

/// Opens every stream a connection may, each announcing a maximal frame
/// and sending one byte of it a second; counts the streams the head resets.
async fn trickle(head: SocketAddr, certs: ClusterCerts, reset: Arc<AtomicUsize>) {
    let node = Node::client("127.0.0.1:0".parse().unwrap(), &certs, NodeConfig::default()).unwrap();
    let connection = node.connection(head).await.unwrap();
    let mut header = b"LM".to_vec();
    header.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    header.extend_from_slice(&DEFAULT_MAX_FRAME.to_le_bytes());
    let mut streams = Vec::new();
    for _ in 0..MAX_BIDI_STREAMS {
        let Ok((mut send, recv)) = connection.open_bi().await else { break };
        if send.write_all(&header).await.is_err() {
            break;
        }
        streams.push((send, recv));
    }
    let streams = futures::future::join_all(streams.into_iter().map(|(mut send, _recv)| {
        let reset = reset.clone();
        async move {
            for _ in 0..120 {
                if send.write_all(&[0]).await.is_err() {
                    reset.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }));
    streams.await;
    drop(node);
}

/// Handshakes from a foreign CA, one after another, until `stop`.
async fn flood(head: SocketAddr, foreign: ClusterCerts, stop: Arc<AtomicUsize>) -> usize {
    let config = NodeConfig { request_timeout: Duration::from_secs(2), ..NodeConfig::default() };
    let mut tries = 0;
    while stop.load(Ordering::Relaxed) == 0 {
        let node = Node::client("127.0.0.1:0".parse().unwrap(), &foreign, config.clone()).unwrap();
        assert!(node.request::<_, u64>(head, &1u64).await.is_err(), "a foreign node was served");
        tries += 1;
    }
    tries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_cost_the_head_bounded_memory_and_an_honest_job_completes() {
    let dir = tempfile::tempdir().unwrap();
    let certs = &init_certs(dir.path());
    let (processes, head) = cluster(certs, 1);
    let head_pid = processes.0[0].id();
    let head_addr: SocketAddr = head.parse().unwrap();
    let (table, embedded) = twin_tables(dir.path()).await;
    let baseline = resident(head_pid);

    let valid = ClusterCerts::load(std::path::Path::new(certs), Role::Client).unwrap();
    let foreign_dir = dir.path().join("foreign");
    ok(leman(&["cluster", "init", "--dir", foreign_dir.to_str().unwrap()]));
    let foreign = ClusterCerts::load(&foreign_dir, Role::Client).unwrap();
    let reset = Arc::new(AtomicUsize::new(0));
    let attackers: Vec<_> = (0..2).map(|_| tokio::spawn(trickle(head_addr, valid.clone(), reset.clone()))).collect();
    let stop = Arc::new(AtomicUsize::new(0));
    let flooding = tokio::spawn(flood(head_addr, foreign, stop.clone()));

    // The honest job, while all that goes on.
    let (path, head_arg, certs_arg) = (table.uri().to_string(), head.clone(), certs.clone());
    let (status, stdout) = tokio::task::spawn_blocking(move || {
        let args = ["backfill", "--table", &path, "--column", "e", "--cluster", &head_arg, "--certs", &certs_arg, "--json", "--refresh-status-secs", "0.1"];
        wait_for(backfill_until(&args, 1))
    })
    .await
    .unwrap();
    assert!(status.success(), "{stdout}");
    let mut peak = resident(head_pid);

    // The trickled streams are reset by their deadline (30 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    while reset.load(Ordering::Relaxed) < 2 * MAX_BIDI_STREAMS as usize {
        peak = peak.max(resident(head_pid));
        assert!(Instant::now() < deadline, "only {} slow streams were reset", reset.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(1, Ordering::Relaxed);
    assert!(flooding.await.unwrap() > 0, "the flood ran");
    for attacker in attackers {
        attacker.await.unwrap();
    }
    assert!(peak < baseline + (256 << 20), "the head grew from {baseline} to {peak} bytes");
    embedded.backfill("e", leman::BackfillOptions::default()).await.unwrap().wait().await.unwrap();
    assert_eq!(crate::cli::cluster::column(&table, "e").await, crate::cli::cluster::column(&embedded, "e").await, "the honest job is exact");
}
