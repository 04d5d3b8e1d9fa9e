//! A node: one QUIC endpoint that serves requests and makes them.
//!
//! Each request travels on a bidirectional stream of its own: one request
//! frame, one response frame. A cast (a message that wants no answer)
//! travels on a unidirectional stream: one frame. A node keeps one
//! connection per peer and opens streams on it, so requests do not block
//! each other; a peer that does not answer its handshake holds up only the
//! requests to that peer. A stream whose
//! frame is malformed, truncated or oversized is reset and counted; the
//! connection, and every other stream, goes on. A peer whose certificate is
//! not from the cluster CA never gets a connection; the refusal is logged
//! and counted.
//!
//! What one peer can make a node hold is bounded: a connection has at most
//! [`MAX_BIDI_STREAMS`] requests and [`MAX_UNI_STREAMS`] casts open at once;
//! a frame must arrive whole within [`NodeConfig::frame_timeout`]; a
//! payload's buffer grows with the bytes that arrive, not with the length
//! its header announces; and the payloads a connection's requests hold
//! while they are read and served add up to at most
//! [`NodeConfig::max_bytes_in_flight`] (a frame past the budget waits for
//! room, within its deadline).
//!
//! Each request is checked against the role of the peer's certificate
//! ([`Service::roles_for`]): one from a peer of another role is refused,
//! logged with both roles, and its stream reset; the requester gets
//! [`RuntimeError::Refused`]. A node given a revocation list reads it again
//! every [`REVOCATION_CHECK`] and closes its connections with any peer
//! whose certificate it now lists.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, Semaphore};

use crate::error::RuntimeError;
use crate::frame::{self, DEFAULT_MAX_FRAME, FrameError, MAX_FRAME_CAP};
use crate::tls::{ClusterCerts, Identity, Revocations, Role, SERVER_NAME, describe};

/// QUIC application error code of a stream reset for a bad frame.
const BAD_FRAME: u32 = 1;
/// QUIC application error code of a stream reset for a request the peer's
/// role may not make.
const ROLE_REFUSED: u32 = 2;
/// QUIC application error code of a connection closed for a revoked or
/// unreadable certificate.
const CERTIFICATE_REFUSED: u32 = 3;
/// How often a revocation list is read again for changes.
pub const REVOCATION_CHECK: Duration = Duration::from_secs(1);
/// Requests a peer may have open on one connection at once.
pub const MAX_BIDI_STREAMS: u32 = 512;
/// Casts a peer may have open on one connection at once.
pub const MAX_UNI_STREAMS: u32 = 64;

/// What a node serves: typed requests in, typed responses out.
pub trait Service: Send + Sync + 'static {
    /// Requests it takes.
    type Request: DeserializeOwned + Send + 'static;
    /// Responses it gives.
    type Response: Serialize + Send + 'static;
    /// Answers one request from `peer`.
    fn call(&self, peer: SocketAddr, request: Self::Request) -> impl Future<Output = Self::Response> + Send;

    /// The roles whose certificates may make `request` (all, by default).
    fn roles_for(&self, _request: &Self::Request) -> &'static [Role] {
        &Role::ALL
    }

    /// Takes one cast from `peer`: a request nobody waits for. By default it
    /// is served like a call and its response dropped.
    fn cast(&self, peer: SocketAddr, request: Self::Request) -> impl Future<Output = ()> + Send {
        async move {
            let _ = self.call(peer, request).await;
        }
    }
}

/// Knobs of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Largest frame payload accepted or sent, in bytes.
    pub max_frame: u32,
    /// How long a request waits for its response.
    pub request_timeout: Duration,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// How long a request or cast frame may take to arrive whole, from its
    /// stream's opening; a slower one is reset.
    pub frame_timeout: Duration,
    /// Payload bytes the requests and casts of one connection may hold at
    /// once, while read and served (never below `max_frame`).
    pub max_bytes_in_flight: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(30),
            max_bytes_in_flight: 4 * DEFAULT_MAX_FRAME,
        }
    }
}

/// Counters of what a node refused and served.
#[derive(Debug, Default)]
pub struct NodeStats {
    refused_connections: AtomicU64,
    bad_frames: AtomicU64,
    requests_served: AtomicU64,
    casts_taken: AtomicU64,
}

impl NodeStats {
    /// Connections refused during the handshake (bad certificate, protocol).
    pub fn refused_connections(&self) -> u64 {
        self.refused_connections.load(Ordering::Relaxed)
    }

    /// Streams reset for a malformed, truncated or oversized frame.
    pub fn bad_frames(&self) -> u64 {
        self.bad_frames.load(Ordering::Relaxed)
    }

    /// Requests answered.
    pub fn requests_served(&self) -> u64 {
        self.requests_served.load(Ordering::Relaxed)
    }

    /// Casts taken.
    pub fn casts_taken(&self) -> u64 {
        self.casts_taken.load(Ordering::Relaxed)
    }
}

/// The connection to one peer, or none yet. Locked while a handshake is
/// under way, so that requests to that peer wait for one handshake instead
/// of each making its own.
type Slot = Arc<Mutex<Option<quinn::Connection>>>;

/// Live connections and the certificates of their peers, for closing
/// those a revocation list comes to name; kept only by a node that has
/// a list (else every call is a no-op).
#[derive(Debug, Clone, Default)]
struct Live(Option<Arc<std::sync::Mutex<Vec<Tracked>>>>);

/// A connection and its peer's certificate fingerprint.
type Tracked = (String, quinn::Connection);

impl Live {
    fn tracking() -> Self {
        Self(Some(Arc::default()))
    }

    /// Adds a connection, dropping those that have closed.
    fn register(&self, fingerprint: &str, connection: &quinn::Connection) {
        if let Some(list) = &self.0 {
            let mut list = list.lock().unwrap_or_else(PoisonError::into_inner);
            list.retain(|(_, open)| open.close_reason().is_none());
            list.push((fingerprint.to_string(), connection.clone()));
        }
    }

    /// Closes the connections whose peer `revocations` lists.
    fn close_revoked(&self, revocations: &Revocations) {
        let Some(list) = &self.0 else { return };
        let mut list = list.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|(_, connection)| connection.close_reason().is_none());
        for (fingerprint, connection) in list.iter() {
            if revocations.is_revoked(fingerprint) {
                tracing::warn!(peer = %connection.remote_address(), fingerprint, "closing the connection of a revoked certificate");
                connection.close(quinn::VarInt::from_u32(CERTIFICATE_REFUSED), b"certificate revoked");
            }
        }
    }
}

/// A node of the cluster; see the [module docs](self).
#[derive(Debug)]
pub struct Node {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    connections: std::sync::Mutex<HashMap<SocketAddr, Slot>>,
    config: NodeConfig,
    stats: Arc<NodeStats>,
    live: Live,
    revocation_watch: Option<tokio::task::JoinHandle<()>>,
}

impl Node {
    /// Listens on `addr` and answers requests with `service`.
    pub fn serve<S: Service>(addr: SocketAddr, certs: &ClusterCerts, config: NodeConfig, service: Arc<S>) -> Result<Self, RuntimeError> {
        let mut server = certs.server_config()?;
        server.transport_config(transport(&config));
        let endpoint = quinn::Endpoint::server(server, addr).map_err(|source| RuntimeError::Bind { addr, source })?;
        let node = Self::with_endpoint(endpoint, certs, config)?;
        let served = Served { service, limits: Limits::of(&node.config), stats: node.stats.clone(), live: node.live.clone() };
        tokio::spawn(accept_loop(node.endpoint.clone(), served));
        Ok(node)
    }

    /// A node that only makes requests, bound to an ephemeral port of `addr`'s IP.
    pub fn client(addr: SocketAddr, certs: &ClusterCerts, config: NodeConfig) -> Result<Self, RuntimeError> {
        let endpoint = quinn::Endpoint::client(addr).map_err(|source| RuntimeError::Bind { addr, source })?;
        Self::with_endpoint(endpoint, certs, config)
    }

    fn with_endpoint(endpoint: quinn::Endpoint, certs: &ClusterCerts, mut config: NodeConfig) -> Result<Self, RuntimeError> {
        config.max_frame = config.max_frame.min(MAX_FRAME_CAP);
        let mut client = certs.client_config()?;
        client.transport_config(transport(&config));
        let (live, revocation_watch) = match certs.revocations() {
            Some(list) => {
                let live = Live::tracking();
                (live.clone(), Some(tokio::spawn(watch_revocations(list.clone(), live))))
            }
            None => (Live::default(), None),
        };
        Ok(Self { endpoint, client, connections: std::sync::Mutex::default(), config, stats: Arc::default(), live, revocation_watch })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, RuntimeError> {
        self.endpoint.local_addr().map_err(|source| RuntimeError::Bind { addr: SocketAddr::from(([0, 0, 0, 0], 0)), source })
    }

    /// What it refused and served.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// Sends `request` to `peer` and waits for its response, for at most
    /// the node's request timeout.
    pub async fn request<Req: Serialize, Resp: DeserializeOwned>(&self, peer: SocketAddr, request: &Req) -> Result<Resp, RuntimeError> {
        self.request_within(peer, request, self.config.request_timeout).await
    }

    /// Sends `request` to `peer` and waits for its response for at most
    /// `timeout` (long work, such as a task whose worker's liveness is
    /// watched by heartbeats instead).
    pub async fn request_within<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        peer: SocketAddr,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RuntimeError> {
        let limit = self.config.max_frame;
        let exchange = async {
            let connection = self.connection(peer).await?;
            let refused_certificate = |error| certificate_refused(&connection, peer).unwrap_or(error);
            let (mut send, mut recv) = connection.open_bi().await.map_err(|e| refused_certificate(closed(peer, e)))?;
            frame::write_frame(&mut send, request, limit).await.map_err(|e| frame_error(peer, e))?;
            send.finish().map_err(|e| RuntimeError::Closed { peer, reason: e.to_string() })?;
            frame::read_frame(&mut recv, limit).await.map_err(|e| match refused_by_role(&e) {
                true => RuntimeError::Refused {
                    peer,
                    reason: "this node's certificate has a role that may not make this request (see the peer's log)".to_string(),
                },
                false => refused_certificate(frame_error(peer, e)),
            })
        };
        self.bounded(peer, timeout, exchange).await
    }

    /// Sends `message` to `peer` and does not wait for any answer: it is
    /// done once the frame is handed to QUIC, which delivers it reliably
    /// while the connection lives. Fails only when there is no connection
    /// or the frame cannot be written (for instance it is too large).
    pub async fn cast<M: Serialize>(&self, peer: SocketAddr, message: &M) -> Result<(), RuntimeError> {
        let limit = self.config.max_frame;
        let send = async {
            let connection = self.connection(peer).await?;
            let mut stream = connection.open_uni().await.map_err(|e| closed(peer, e))?;
            frame::write_frame(&mut stream, message, limit).await.map_err(|e| frame_error(peer, e))?;
            stream.finish().map_err(|e| RuntimeError::Closed { peer, reason: e.to_string() })
        };
        self.bounded(peer, self.config.request_timeout, send).await
    }

    /// `work` with `peer`, for at most `timeout`. After a timeout or a
    /// closed connection the peer may be gone, or back under the same
    /// address: the connection is dropped, so the next exchange connects
    /// afresh instead of waiting on a dead one.
    async fn bounded<T>(
        &self,
        peer: SocketAddr,
        timeout: Duration,
        work: impl Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        let outcome = match tokio::time::timeout(timeout, work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(RuntimeError::Timeout { peer, after: timeout }),
        };
        if matches!(outcome, Err(RuntimeError::Timeout { .. } | RuntimeError::Closed { .. })) {
            self.connections.lock().unwrap_or_else(PoisonError::into_inner).remove(&peer);
        }
        outcome
    }

    /// The connection to `peer`, made if there is none alive. Only requests
    /// to `peer` wait while it is being made.
    pub async fn connection(&self, peer: SocketAddr) -> Result<quinn::Connection, RuntimeError> {
        let slot = self.connections.lock().unwrap_or_else(PoisonError::into_inner).entry(peer).or_default().clone();
        let mut slot = slot.lock().await;
        if let Some(connection) = slot.as_ref()
            && connection.close_reason().is_none()
        {
            return Ok(connection.clone());
        }
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), peer, SERVER_NAME)
            .map_err(|e| RuntimeError::Connect { peer, reason: e.to_string() })?;
        let connection = connecting.await.map_err(|e| RuntimeError::Connect { peer, reason: e.to_string() })?;
        let identity = peer_identity(&connection).map_err(|reason| RuntimeError::Connect { peer, reason })?;
        self.live.register(&identity.fingerprint, &connection);
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Closes every connection and stops listening.
    pub fn close(&self) {
        self.endpoint.close(quinn::VarInt::from_u32(0), b"node closed");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(watch) = &self.revocation_watch {
            watch.abort();
        }
    }
}

/// Who the peer of a connection is, by its certificate.
fn peer_identity(connection: &quinn::Connection) -> Result<Identity, String> {
    let certificates = connection
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok())
        .ok_or("the peer presented no certificate")?;
    Identity::of(certificates.first().ok_or("the peer presented no certificate")?)
}

/// The peer's refusal of this node's certificate, if that is how the
/// connection ended. (In TLS 1.3 a client learns that its certificate was
/// refused only when the server closes the connection, after the handshake
/// looked done on its side.)
fn certificate_refused(connection: &quinn::Connection, peer: SocketAddr) -> Option<RuntimeError> {
    let reason = match connection.close_reason()? {
        // A TLS alert.
        quinn::ConnectionError::ConnectionClosed(close) if (0x100..0x200).contains(&u64::from(close.error_code)) => close.reason,
        quinn::ConnectionError::ApplicationClosed(close) if close.error_code == quinn::VarInt::from_u32(CERTIFICATE_REFUSED) => close.reason,
        _ => return None,
    };
    Some(RuntimeError::Connect { peer, reason: format!("the peer refused this node's certificate: {}", String::from_utf8_lossy(&reason)) })
}

/// Whether a read failed because the peer refused the request for the
/// role of this node's certificate.
fn refused_by_role(error: &FrameError) -> bool {
    let FrameError::Truncated(io) = error else { return false };
    io.get_ref()
        .and_then(|inner| inner.downcast_ref::<quinn::ReadError>())
        .is_some_and(|read| matches!(read, quinn::ReadError::Reset(code) if *code == quinn::VarInt::from_u32(ROLE_REFUSED)))
}

/// Reads the revocation list again every [`REVOCATION_CHECK`]; when it
/// changed, closes the live connections whose peer it now lists.
async fn watch_revocations(revocations: Arc<Revocations>, live: Live) {
    let mut acted_on = revocations.generation();
    loop {
        tokio::time::sleep(REVOCATION_CHECK).await;
        // Handshakes read the list too: a change is news until acted on
        // here, whoever read it first.
        let generation = revocations.generation();
        if generation == acted_on {
            continue;
        }
        acted_on = generation;
        live.close_revoked(&revocations);
    }
}

fn transport(config: &NodeConfig) -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(config.idle_timeout).ok());
    transport.keep_alive_interval(Some(config.idle_timeout / 3));
    transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(MAX_BIDI_STREAMS));
    transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(MAX_UNI_STREAMS));
    Arc::new(transport)
}

/// What a served connection's streams may take.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_frame: u32,
    frame_timeout: Duration,
    bytes_in_flight: u32,
}

impl Limits {
    fn of(config: &NodeConfig) -> Self {
        Self {
            max_frame: config.max_frame,
            frame_timeout: config.frame_timeout,
            bytes_in_flight: config.max_bytes_in_flight.max(config.max_frame),
        }
    }
}

/// What every connection a node serves shares.
struct Served<S> {
    service: Arc<S>,
    limits: Limits,
    stats: Arc<NodeStats>,
    live: Live,
}

impl<S> Clone for Served<S> {
    fn clone(&self) -> Self {
        Self { service: self.service.clone(), limits: self.limits, stats: self.stats.clone(), live: self.live.clone() }
    }
}

async fn accept_loop<S: Service>(endpoint: quinn::Endpoint, served: Served<S>) {
    while let Some(incoming) = endpoint.accept().await {
        let served = served.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(connection) => serve_connection(connection, served).await,
                Err(error) => {
                    served.stats.refused_connections.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(peer = %remote, %error, "refused a connection: its certificate is not from this cluster's CA, is not valid now or is revoked, or the handshake failed");
                }
            }
        });
    }
}

async fn serve_connection<S: Service>(connection: quinn::Connection, served: Served<S>) {
    let peer = connection.remote_address();
    let identity = match peer_identity(&connection) {
        Ok(identity) => Arc::new(identity),
        Err(reason) => {
            served.stats.refused_connections.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, reason, "refused a connection");
            connection.close(quinn::VarInt::from_u32(CERTIFICATE_REFUSED), b"certificate refused");
            return;
        }
    };
    served.live.register(&identity.fingerprint, &connection);
    let budget = Arc::new(Semaphore::new(served.limits.bytes_in_flight as usize));
    loop {
        let accepted = tokio::select! {
            streams = connection.accept_bi() => streams.map(|(send, recv)| (Some(send), recv)),
            stream = connection.accept_uni() => stream.map(|recv| (None, recv)),
        };
        let (send, recv) = match accepted {
            Ok(streams) => streams,
            Err(quinn::ConnectionError::ApplicationClosed(_) | quinn::ConnectionError::LocallyClosed) => return,
            Err(error) => {
                tracing::debug!(%peer, %error, "connection ended");
                return;
            }
        };
        let stream = Stream { peer, identity: identity.clone(), send, recv };
        tokio::spawn(serve_stream(stream, served.clone(), budget.clone()));
    }
}

/// One stream of a served connection, and who opened it.
struct Stream {
    peer: SocketAddr,
    identity: Arc<Identity>,
    send: Option<quinn::SendStream>,
    recv: quinn::RecvStream,
}

/// Serves one stream: a request and its response, or a cast (`send` is
/// `None`) and nothing back.
async fn serve_stream<S: Service>(stream: Stream, served: Served<S>, budget: Arc<Semaphore>) {
    let Stream { peer, identity, mut send, mut recv } = stream;
    let Served { service, limits, stats, .. } = served;
    let read = async {
        let len = frame::read_header(&mut recv, limits.max_frame).await?;
        // Room for the payload in the connection's budget, held until the
        // request is served (`len` is at most the budget: it never waits
        // for more than there is).
        let room = budget.clone().acquire_many_owned(len).await.map_err(|_| {
            FrameError::Truncated(std::io::Error::other("the connection closed"))
        })?;
        let request = frame::read_payload::<_, S::Request>(&mut recv, len).await?;
        Ok::<_, FrameError>((request, room))
    };
    let outcome = match tokio::time::timeout(limits.frame_timeout, read).await {
        Ok(outcome) => outcome,
        Err(_) => Err(FrameError::Truncated(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the frame did not arrive whole within {:?}", limits.frame_timeout),
        ))),
    };
    let (request, _room) = match outcome {
        Ok(read) => read,
        Err(error) => {
            stats.bad_frames.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, %error, "bad frame; resetting its stream");
            let _ = recv.stop(quinn::VarInt::from_u32(BAD_FRAME));
            if let Some(send) = send.as_mut() {
                let _ = send.reset(quinn::VarInt::from_u32(BAD_FRAME));
            }
            return;
        }
    };
    let allowed = service.roles_for(&request);
    if !allowed.contains(&identity.role) {
        tracing::warn!(%peer, peer_identity = %identity, "refused a request: the peer's certificate has role {}, the request needs {}", identity.role, describe(allowed));
        let _ = recv.stop(quinn::VarInt::from_u32(ROLE_REFUSED));
        if let Some(send) = send.as_mut() {
            let _ = send.reset(quinn::VarInt::from_u32(ROLE_REFUSED));
        }
        return;
    }
    let Some(mut send) = send else {
        stats.casts_taken.fetch_add(1, Ordering::Relaxed);
        return service.cast(peer, request).await;
    };
    let response = service.call(peer, request).await;
    match frame::write_frame(&mut send, &response, limits.max_frame).await {
        Ok(()) => {
            let _ = send.finish();
            stats.requests_served.fetch_add(1, Ordering::Relaxed);
        }
        Err(error) => {
            tracing::warn!(%peer, %error, "could not send a response");
            let _ = send.reset(quinn::VarInt::from_u32(BAD_FRAME));
        }
    }
}

fn closed(peer: SocketAddr, error: quinn::ConnectionError) -> RuntimeError {
    RuntimeError::Closed { peer, reason: error.to_string() }
}

fn frame_error(peer: SocketAddr, error: FrameError) -> RuntimeError {
    RuntimeError::Frame { peer, source: error }
}
