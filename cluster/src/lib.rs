//! Placeholder: the cluster crate's work arrives with the distributed runtime
//! (QUIC transport, membership). Nothing here yet.
