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
//! let certs = ClusterCerts::load(dir, leman_runtime::tls::Role::Head)?;
//! let server = Node::serve("127.0.0.1:0".parse().unwrap(), &certs, NodeConfig::default(), Arc::new(Echo))?;
//! let client = Node::client("127.0.0.1:0".parse().unwrap(), &certs, NodeConfig::default())?;
//! let reply: String = client.request(server.local_addr()?, &"hello".to_string()).await?;
//! assert_eq!(reply, "hello");
//! # Ok(()) }
//! ```

mod error;
pub mod frame;
pub mod loopback;
pub mod node;
pub mod tls;

pub use error::RuntimeError;
pub use node::{MAX_BIDI_STREAMS, MAX_UNI_STREAMS, Node, NodeConfig, NodeStats, Service};
pub use tls::ClusterCerts;
