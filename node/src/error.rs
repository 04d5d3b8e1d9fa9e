//! The one error type of the cluster's processes.

use std::net::SocketAddr;
use std::time::Duration;

use leman_runtime::RuntimeError;

/// What went wrong in a head, a worker, or a client of the cluster, with
/// what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The wire failed: certificates, sockets, connections, frames.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The backfill engine refused or failed the job.
    #[error(transparent)]
    Engine(#[from] leman_engine::Error),
    /// The head or a worker refused a request, saying why.
    #[error("{peer} refused: {reason}")]
    Refused { peer: SocketAddr, reason: String },
    /// A peer answered with a message that does not fit the request.
    #[error("unexpected answer from {peer}: {answer}; run the same version of leman on every node")]
    Unexpected { peer: SocketAddr, answer: String },
    /// A peer did not answer.
    #[error("{peer} did not answer: {source}")]
    Unreachable {
        peer: SocketAddr,
        #[source]
        source: RuntimeError,
    },
    /// A worker could not reach its head in time.
    #[error("could not join the head at {target} within {after:?}; last attempt: {last}")]
    JoinTimeout { target: String, after: Duration, last: String },
    /// The head could not be found by name.
    #[error("cannot find the head at {target}: {reason}")]
    Discovery { target: String, reason: String },
    /// `--advertise` gave an address no peer can reach.
    #[error("cannot advertise {addr}: {reason}")]
    BadAdvertise { addr: SocketAddr, reason: String },
    /// The health and metrics endpoint could not be served.
    #[error("cannot serve HTTP on {addr}: {source}; pick a free address for --http")]
    Http {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// An actor of this process could not be started.
    #[error("actor {actor}: {reason}")]
    Actor { actor: String, reason: String },
    /// A throwaway local cluster did not come up.
    #[error("local cluster: {reason}")]
    LocalCluster { reason: String },
    /// Local I/O failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Results of this crate.
pub type Result<T, E = NodeError> = std::result::Result<T, E>;

/// So that a Rust service can `?` the cluster's errors into the public
/// API's: the engine's own errors come back as they were, the rest arrive
/// boxed in [`leman_engine::Error::Cluster`].
impl From<NodeError> for leman_engine::Error {
    fn from(error: NodeError) -> Self {
        match error {
            NodeError::Engine(error) => error,
            other => leman_engine::Error::Cluster(Box::new(other)),
        }
    }
}
