//! Nodes on loopback: mutual TLS from the cluster CA, and bad frames that
//! cost only their own stream.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leman_runtime::{ClusterCerts, Node, NodeConfig, RuntimeError, Service, tls};

/// Echoes a number after `delay_ms` milliseconds.
struct Slow;

impl Service for Slow {
    type Request = (u64, u64);
    type Response = u64;
    async fn call(&self, _peer: SocketAddr, (value, delay_ms): (u64, u64)) -> u64 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        value
    }
}

fn cluster() -> (tempfile::TempDir, ClusterCerts) {
    let dir = tempfile::tempdir().unwrap();
    tls::init_cluster(dir.path()).unwrap();
    let certs = ClusterCerts::load(dir.path()).unwrap();
    (dir, certs)
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "{what} did not happen within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn nodes_of_one_cluster_talk_and_others_are_refused() {
    let (_a, certs) = cluster();
    let server = Node::serve(loopback(), &certs, NodeConfig::default(), Arc::new(Slow)).unwrap();
    let addr = server.local_addr().unwrap();
    let member = Node::client(loopback(), &certs, NodeConfig::default()).unwrap();
    assert_eq!(member.request::<_, u64>(addr, &(42u64, 0u64)).await.unwrap(), 42);

    let (_b, foreign) = cluster();
    let stranger = Node::client(loopback(), &foreign, NodeConfig { request_timeout: Duration::from_secs(5), ..NodeConfig::default() }).unwrap();
    let refused = stranger.request::<_, u64>(addr, &(1u64, 0u64)).await;
    assert!(matches!(refused, Err(RuntimeError::Connect { .. } | RuntimeError::Closed { .. } | RuntimeError::Frame { .. })), "{refused:?}");
    eventually("the refusal is counted", || server.stats().refused_connections() >= 1).await;
    assert_eq!(server.stats().requests_served(), 1, "the stranger got nothing served");

    assert!(ClusterCerts::load(&std::path::PathBuf::from("/nonexistent")).is_err());
    assert!(tls::init_cluster(_a.path()).is_err(), "an existing CA is not overwritten");
}

#[tokio::test]
async fn bad_frames_reset_their_stream_while_other_requests_complete() {
    let (_dir, certs) = cluster();
    let config = NodeConfig { max_frame: 1024, ..NodeConfig::default() };
    let server = Node::serve(loopback(), &certs, config.clone(), Arc::new(Slow)).unwrap();
    let addr = server.local_addr().unwrap();
    let client = Node::client(loopback(), &certs, config).unwrap();

    // A slow, valid request on the same connection, in flight throughout.
    let pending = tokio::spawn(async move {
        let reply = client.request::<_, u64>(addr, &(7u64, 300u64)).await;
        (client, reply)
    });

    let raw = Node::client(loopback(), &certs, NodeConfig::default()).unwrap();
    let connection = raw.connection(addr).await.unwrap();
    let frames: [Vec<u8>; 3] = [
        b"GARBAGE!".to_vec(),                                             // malformed header
        [b"LM".as_slice(), &1u16.to_le_bytes(), &(1u32 << 30).to_le_bytes()].concat(), // oversized
        [b"LM".as_slice(), &1u16.to_le_bytes(), &100u32.to_le_bytes(), &[1, 2, 3]].concat(), // truncated
    ];
    for bytes in frames {
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        send.write_all(&bytes).await.unwrap();
        send.finish().unwrap();
        let answer = recv.read_to_end(1 << 20).await;
        assert!(answer.is_err(), "a bad frame gets its stream reset, not an answer: {answer:?}");
    }
    eventually("three bad frames are counted", || server.stats().bad_frames() == 3).await;

    let (client, reply) = pending.await.unwrap();
    assert_eq!(reply.unwrap(), 7, "the concurrent request completed");
    assert_eq!(client.request::<_, u64>(addr, &(8u64, 0u64)).await.unwrap(), 8, "the node still serves");
    let too_big = client.request::<_, u64>(addr, &(vec![0u8; 4096], 0u64)).await;
    assert!(matches!(too_big, Err(RuntimeError::Frame { .. })), "{too_big:?}");
}

/// Remembers every number cast to it; answers calls with how many it has.
#[derive(Default)]
struct Tally(std::sync::Mutex<Vec<u64>>);

impl Service for Tally {
    type Request = u64;
    type Response = usize;
    async fn call(&self, _peer: SocketAddr, _request: u64) -> usize {
        self.0.lock().unwrap().len()
    }
    async fn cast(&self, _peer: SocketAddr, request: u64) {
        self.0.lock().unwrap().push(request);
    }
}

#[tokio::test]
async fn casts_arrive_without_an_answer_and_bad_ones_cost_only_their_stream() {
    let (_dir, certs) = cluster();
    let tally = Arc::new(Tally::default());
    let server = Node::serve(loopback(), &certs, NodeConfig::default(), tally.clone()).unwrap();
    let addr = server.local_addr().unwrap();
    let client = Node::client(loopback(), &certs, NodeConfig::default()).unwrap();
    for value in 0..100u64 {
        client.cast(addr, &value).await.unwrap();
    }
    eventually("all 100 casts arrive", || server.stats().casts_taken() == 100).await;
    let mut seen = tally.0.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, (0..100).collect::<Vec<_>>(), "each cast arrives once");
    assert_eq!(server.stats().requests_served(), 0, "a cast gets no response");
    assert_eq!(client.request::<_, usize>(addr, &0).await.unwrap(), 100, "calls still go through call");

    let connection = client.connection(addr).await.unwrap();
    let mut stream = connection.open_uni().await.unwrap();
    stream.write_all(b"GARBAGE!").await.unwrap();
    stream.finish().unwrap();
    eventually("the bad cast is counted", || server.stats().bad_frames() == 1).await;
    client.cast(addr, &7u64).await.unwrap();
    eventually("casts still arrive", || server.stats().casts_taken() == 101).await;
    assert!(client.cast(addr, &vec![0u8; 64 << 20]).await.is_err(), "an oversized cast is refused before it is sent");
}

#[tokio::test(flavor = "current_thread")]
async fn a_peer_that_never_answers_holds_up_only_its_own_requests() {
    let (_dir, certs) = cluster();
    let server = Node::serve(loopback(), &certs, NodeConfig::default(), Arc::new(Slow)).unwrap();
    let live = server.local_addr().unwrap();
    // A UDP socket that takes every packet and answers none: a handshake
    // with it waits until the node's idle timeout.
    let silent = std::net::UdpSocket::bind(loopback()).unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let client = Arc::new(Node::client(loopback(), &certs, NodeConfig::default()).unwrap());

    let stuck = tokio::spawn({
        let client = client.clone();
        async move { client.request_within::<_, u64>(silent_addr, &(1u64, 0u64), Duration::from_secs(4)).await }
    });
    tokio::task::yield_now().await; // the silent peer's handshake is under way
    let started = Instant::now();
    let answer = client.request_within::<_, u64>(live, &(2u64, 0u64), Duration::from_secs(3)).await;
    assert_eq!(answer.unwrap(), 2, "the live peer answers while the silent one's handshake waits");
    assert!(!stuck.is_finished(), "the silent peer's request was still waiting");
    assert!(started.elapsed() < Duration::from_secs(3));
    let stuck = stuck.await.unwrap();
    assert!(matches!(stuck, Err(RuntimeError::Timeout { .. } | RuntimeError::Connect { .. })), "{stuck:?}");
}
