//! The actor runtime's wire: nodes that talk over QUIC with mutual TLS.
//!
//! This crate owns everything that crosses a process boundary: the cluster's
//! certificates ([`tls`]), the frame format ([`frame`]: versioned,
//! size-limited bincode) and the node ([`node`]: one QUIC endpoint that
//! serves typed requests and casts, and makes them), and the figures of the
//! wire against bare sockets ([`loopback`]). It knows nothing of Lance or
//! UDFs; the engine's crates exchange typed Rust messages through it.
//!
//! Why not `ractor_cluster`: it accepts external transports, so quinn
//! streams would fit, but its frames are prost-encoded (a second encoding
//! to keep in step with ours), its authentication is marked experimental,
//! and a reconnect may lose messages. A backfill needs the opposite: every
//! node authenticated by the cluster CA before a byte of a message is read,
//! bounded frames, and requests that either get their reply or fail with an
//! error the scheduler can act on (tasks are idempotent, so a failed request
//! is simply retried elsewhere). Local actors stay `ractor` actors; remote
//! ones are reached through a [`Node`].
//!
//! ```no_run
//! # async fn demo(dir: &std::path::Path) -> Result<(), leman_runtime::RuntimeError> {
//! use std::sync::Arc;
//! use leman_runtime::{ClusterCerts, Node, NodeConfig, Service};
//!
//! struct Echo;
//! impl Service for Echo {
//!     type Request = String;
//!     type Response = String;
//!     async fn call(&self, _peer: std::net::SocketAddr, request: String) -> String { request }
//! }
//!
//! leman_runtime::tls::init_cluster(dir)?;
//! let certs = ClusterCerts::load(dir)?;
//! let server = Node::serve("127.0.0.1:0".parse().unwrap(), &certs, NodeConfig::default(), Arc::new(Echo))?;
//! let client = Node::client("127.0.0.1:0".parse().unwrap(), &certs, NodeConfig::default())?;
//! let reply: String = client.request(server.local_addr()?, &"hello".to_string()).await?;
//! assert_eq!(reply, "hello");
//! # Ok(()) }
//! ```

pub mod frame;
pub mod loopback;
pub mod node;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use node::{Node, NodeConfig, NodeStats, Service};
pub use tls::ClusterCerts;

/// What went wrong on the wire.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Cluster certificates are missing or invalid.
    #[error("cluster certificates {}: {reason}", path.display())]
    Certs { path: PathBuf, reason: String },
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}: {source}; pick a free address")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// No connection to the peer (unreachable, or refused its certificate).
    #[error("cannot connect to {peer}: {reason}; check the address and that both nodes use the same cluster CA")]
    Connect { peer: SocketAddr, reason: String },
    /// The connection or stream was closed.
    #[error("connection to {peer} closed: {reason}")]
    Closed { peer: SocketAddr, reason: String },
    /// A frame was refused.
    #[error("bad frame from {peer}: {source}")]
    Frame {
        peer: SocketAddr,
        #[source]
        source: frame::FrameError,
    },
    /// No response in time.
    #[error("no response from {peer} within {after:?}")]
    Timeout { peer: SocketAddr, after: Duration },
}
