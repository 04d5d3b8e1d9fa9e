//! Placeholder: the runtime crate's work arrives with the distributed runtime
//! (QUIC transport, membership). Nothing here yet.
