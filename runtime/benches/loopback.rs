//! Loopback figures of the wire: request round trip (p50, p99) and the
//! throughput of 1 MiB messages, between two nodes on 127.0.0.1 with mutual
//! TLS. Run with `cargo bench -p leman-runtime --bench loopback`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leman_runtime::{ClusterCerts, Node, NodeConfig, Service, tls};

struct Sink;

impl Service for Sink {
    type Request = Vec<u8>;
    type Response = u64;
    async fn call(&self, _peer: SocketAddr, request: Vec<u8>) -> u64 {
        request.len() as u64
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    tls::init_cluster(dir.path()).unwrap();
    let certs = ClusterCerts::load(dir.path()).unwrap();
    let config = NodeConfig { max_frame: 4 << 20, ..NodeConfig::default() };
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = Node::serve(loopback, &certs, config.clone(), Arc::new(Sink)).unwrap();
    let addr = server.local_addr().unwrap();
    let client = Arc::new(Node::client(loopback, &certs, config).unwrap());

    let small = vec![0u8; 64];
    for _ in 0..200 {
        client.request::<_, u64>(addr, &small).await.unwrap();
    }
    let mut rtts = Vec::with_capacity(5000);
    for _ in 0..5000 {
        let start = Instant::now();
        client.request::<_, u64>(addr, &small).await.unwrap();
        rtts.push(start.elapsed());
    }
    rtts.sort();
    println!("request round trip (64 B, sequential, 5000): p50 {:?}  p99 {:?}", percentile(&rtts, 0.5), percentile(&rtts, 0.99));

    let mib = vec![7u8; 1 << 20];
    let count = 256;
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..4 {
        let client = client.clone();
        let mib = mib.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..count / 4 {
                assert_eq!(client.request::<_, u64>(addr, &mib).await.unwrap(), 1 << 20);
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("1 MiB messages (4 in flight, {count}): {:.0} MiB/s, {:.0} messages/s", count as f64 / seconds, count as f64 / seconds);
}
