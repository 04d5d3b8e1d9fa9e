//! Figures of the wire on loopback, each beside the bare-socket figure it
//! is bounded by, measured in the same call.
//!
//! Two nodes on 127.0.0.1 with mutual TLS exchange small requests one at a
//! time (round trip, p50 and p99) and 1 MiB messages four at a time
//! (throughput). The baselines are what the kernel gives without QUIC, TLS
//! or frames: a UDP datagram echoed between two sockets, and 1 MiB writes
//! over one TCP connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::RuntimeError;
use crate::node::{Node, NodeConfig, Service};
use crate::tls::ClusterCerts;

/// What [`measure`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopbackFigures {
    /// Node request round trip, 64-byte payload, median.
    pub rtt_p50: Duration,
    /// Node request round trip, 99th percentile.
    pub rtt_p99: Duration,
    /// UDP echo round trip, median: the floor under `rtt_p50`.
    pub udp_rtt_p50: Duration,
    /// 1 MiB node requests, four in flight, in MiB/s.
    pub mib_per_s: f64,
    /// 1 MiB writes over TCP, in MiB/s: the ceiling over `mib_per_s`.
    pub tcp_mib_per_s: f64,
}

/// How much [`measure`] does.
#[derive(Debug, Clone, Copy)]
pub struct LoopbackLoad {
    /// Round trips timed (after a warm-up of a tenth as many).
    pub round_trips: usize,
    /// 1 MiB messages sent.
    pub messages: usize,
}

impl Default for LoopbackLoad {
    fn default() -> Self {
        Self { round_trips: 5000, messages: 256 }
    }
}

/// Answers with the request's length.
struct Sink;

impl Service for Sink {
    type Request = Vec<u8>;
    type Response = u64;
    async fn call(&self, _peer: SocketAddr, request: Vec<u8>) -> u64 {
        request.len() as u64
    }
}

const MIB: usize = 1 << 20;

/// Measures the wire with `certs` on 127.0.0.1.
pub async fn measure(certs: &ClusterCerts, load: LoopbackLoad) -> Result<LoopbackFigures, RuntimeError> {
    let config = NodeConfig { max_frame: 4 * MIB as u32, ..NodeConfig::default() };
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = Node::serve(loopback, certs, config.clone(), Arc::new(Sink))?;
    let addr = server.local_addr()?;
    let client = Arc::new(Node::client(loopback, certs, config)?);

    let small = vec![0u8; 64];
    for _ in 0..load.round_trips / 10 {
        client.request::<_, u64>(addr, &small).await?;
    }
    let mut rtts = Vec::with_capacity(load.round_trips);
    for _ in 0..load.round_trips {
        let start = Instant::now();
        client.request::<_, u64>(addr, &small).await?;
        rtts.push(start.elapsed());
    }
    rtts.sort();

    let message = vec![7u8; MIB];
    let start = Instant::now();
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let (client, message) = (client.clone(), message.clone());
            tokio::spawn(async move {
                for _ in 0..load.messages / 4 {
                    client.request::<_, u64>(addr, &message).await?;
                }
                Ok::<_, RuntimeError>(())
            })
        })
        .collect();
    for sender in senders {
        sender.await.map_err(|e| RuntimeError::Closed { peer: addr, reason: e.to_string() })??;
    }
    let mib_per_s = (load.messages / 4 * 4) as f64 / start.elapsed().as_secs_f64();
    client.close();
    server.close();

    let io = |e: std::io::Error| RuntimeError::Closed { peer: loopback, reason: e.to_string() };
    let udp_rtt_p50 = udp_round_trip(load.round_trips).await.map_err(io)?;
    let tcp_mib_per_s = tcp_throughput(load.messages).await.map_err(io)?;
    Ok(LoopbackFigures { rtt_p50: percentile(&rtts, 0.5), rtt_p99: percentile(&rtts, 0.99), udp_rtt_p50, mib_per_s, tcp_mib_per_s })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Median round trip of a 64-byte datagram echoed by another task.
async fn udp_round_trip(round_trips: usize) -> std::io::Result<Duration> {
    let echo = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let ping = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    ping.connect(echo.local_addr()?).await?;
    let echoing = tokio::spawn(async move {
        let mut buffer = [0u8; 64];
        for _ in 0..round_trips + round_trips / 10 {
            let (n, from) = echo.recv_from(&mut buffer).await?;
            echo.send_to(&buffer[..n], from).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut buffer = [0u8; 64];
    let mut rtts = Vec::with_capacity(round_trips);
    for i in 0..round_trips + round_trips / 10 {
        let start = Instant::now();
        ping.send(&buffer.clone()).await?;
        ping.recv(&mut buffer).await?;
        if i >= round_trips / 10 {
            rtts.push(start.elapsed());
        }
    }
    echoing.await.map_err(std::io::Error::other)??;
    rtts.sort();
    Ok(percentile(&rtts, 0.5))
}

/// MiB/s of `messages` 1 MiB writes over one TCP connection.
async fn tcp_throughput(messages: usize) -> std::io::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let reading = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await?;
        let mut buffer = vec![0u8; MIB];
        let mut total = 0;
        while total < messages * MIB {
            let n = stream.read(&mut buffer).await?;
            if n == 0 {
                break;
            }
            total += n;
        }
        Ok::<_, std::io::Error>(total)
    });
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let message = vec![7u8; MIB];
    let start = Instant::now();
    for _ in 0..messages {
        stream.write_all(&message).await?;
    }
    stream.flush().await?;
    let total = reading.await.map_err(std::io::Error::other)??;
    Ok(total as f64 / MIB as f64 / start.elapsed().as_secs_f64())
}
