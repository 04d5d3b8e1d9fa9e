//! Nodes on loopback: mutual TLS from the cluster CA, and bad frames that
//! cost only their own stream.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leman_runtime::frame::{self, PROTOCOL_VERSION};
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
    let certs = ClusterCerts::load(dir.path(), tls::Role::Head).unwrap();
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

    assert!(ClusterCerts::load(&std::path::PathBuf::from("/nonexistent"), tls::Role::Head).is_err());
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
        [b"LM".as_slice(), &PROTOCOL_VERSION.to_le_bytes(), &(1u32 << 30).to_le_bytes()].concat(), // oversized
        [b"LM".as_slice(), &PROTOCOL_VERSION.to_le_bytes(), &100u32.to_le_bytes(), &[1, 2, 3]].concat(), // truncated
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

/// Answers how many bytes it was sent.
struct Measure;

impl Service for Measure {
    type Request = Vec<u8>;
    type Response = usize;
    async fn call(&self, _peer: SocketAddr, request: Vec<u8>) -> usize {
        request.len()
    }
}

/// Opens a request stream on `connection` and sends the first `sent` bytes
/// of `frame`; the stream stays open.
async fn send_part(connection: &quinn::Connection, frame: &[u8], sent: usize) -> (quinn::SendStream, quinn::RecvStream) {
    let (mut send, recv) = connection.open_bi().await.unwrap();
    send.write_all(&frame[..sent]).await.unwrap();
    (send, recv)
}

#[tokio::test]
async fn a_frame_that_does_not_arrive_in_time_is_reset_and_others_go_on() {
    let (_dir, certs) = cluster();
    let config = NodeConfig { frame_timeout: Duration::from_millis(500), ..NodeConfig::default() };
    let server = Node::serve(loopback(), &certs, config, Arc::new(Measure)).unwrap();
    let addr = server.local_addr().unwrap();
    let raw = Node::client(loopback(), &certs, NodeConfig::default()).unwrap();
    let connection = raw.connection(addr).await.unwrap();
    // Announces 10 MiB, sends 10 bytes of it, and waits.
    let frame = frame::encode_frame(&vec![7u8; 10 << 20], 16 << 20).unwrap();
    let (_send, mut recv) = send_part(&connection, &frame, 18).await;
    let answer = tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(1 << 20))
        .await
        .expect("the stream was reset at its deadline, long before 10 s");
    assert!(answer.is_err(), "a frame past its deadline gets its stream reset: {answer:?}");
    assert_eq!(server.stats().bad_frames(), 1);
    let client = Node::client(loopback(), &certs, NodeConfig::default()).unwrap();
    assert_eq!(client.request::<_, usize>(addr, &vec![1u8; 1000]).await.unwrap(), 1000, "the node still serves");
}

/// Answers how many bytes it was sent, after `delay_ms` milliseconds;
/// counts the calls it has begun.
#[derive(Default)]
struct SlowMeasure(std::sync::atomic::AtomicUsize);

impl Service for SlowMeasure {
    type Request = (u64, Vec<u8>);
    type Response = usize;
    async fn call(&self, _peer: SocketAddr, (delay_ms, bytes): (u64, Vec<u8>)) -> usize {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        bytes.len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_s_payloads_in_flight_stay_within_its_budget() {
    let (_dir, certs) = cluster();
    let config = NodeConfig {
        max_frame: 64 << 10,
        max_bytes_in_flight: 100 << 10,
        frame_timeout: Duration::from_secs(1),
        ..NodeConfig::default()
    };
    let service = Arc::new(SlowMeasure::default());
    let server = Node::serve(loopback(), &certs, config.clone(), service.clone()).unwrap();
    let addr = server.local_addr().unwrap();
    let client = Arc::new(Node::client(loopback(), &certs, config).unwrap());
    let big = |delay_ms: u64| (delay_ms, vec![1u8; 60 << 10]);

    // A: 60 KiB served for 4 s holds 60 of the connection's 100 KiB.
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.request::<_, usize>(addr, &big(4000)).await }
    });
    // Once its call has begun, A's payload holds its room until it is answered.
    eventually("A is being served", || service.0.load(std::sync::atomic::Ordering::SeqCst) == 1).await;
    // A small request beside it has room: 40 KiB are left.
    assert_eq!(client.request::<_, usize>(addr, &(0u64, vec![1u8; 1000])).await.unwrap(), 1000);
    // B: another 60 KiB finds no room, and is reset at its deadline.
    let started = Instant::now();
    let refused = client.request::<_, usize>(addr, &big(0)).await;
    assert!(matches!(refused, Err(RuntimeError::Frame { .. } | RuntimeError::Closed { .. })), "{refused:?}");
    assert!(started.elapsed() >= Duration::from_millis(900), "it waited out its deadline: {:?}", started.elapsed());
    assert_eq!(server.stats().bad_frames(), 1);
    // Once A is answered, its room is free again.
    assert_eq!(held.await.unwrap().unwrap(), 60 << 10);
    assert_eq!(client.request::<_, usize>(addr, &big(0)).await.unwrap(), 60 << 10);
}
