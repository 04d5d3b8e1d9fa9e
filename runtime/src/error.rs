//! The one error type of this crate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::frame::FrameError;

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
        source: FrameError,
    },
    /// The peer refused the request (the role of this node's certificate).
    #[error("{peer} refused the request: {reason}")]
    Refused { peer: SocketAddr, reason: String },
    /// No response in time.
    #[error("no response from {peer} within {after:?}")]
    Timeout { peer: SocketAddr, after: Duration },
}
