//! The cluster's errors in the public API's.

use std::net::SocketAddr;

use leman_node::NodeError;

#[test]
fn engine_errors_come_back_as_they_were_and_the_rest_are_boxed() {
    let cancelled = NodeError::Engine(leman_engine::Error::Cancelled { job_id: "j".into(), reason: leman_engine::CancelReason::Asked });
    assert!(matches!(leman_engine::Error::from(cancelled), leman_engine::Error::Cancelled { .. }));
    let peer: SocketAddr = "127.0.0.1:7070".parse().unwrap();
    let refused = leman_engine::Error::from(NodeError::Refused { peer, reason: "no".into() });
    assert_eq!(refused.to_string(), "127.0.0.1:7070 refused: no");
    let leman_engine::Error::Cluster(inner) = refused else { panic!("{refused:?}") };
    assert!(matches!(inner.downcast_ref::<NodeError>(), Some(NodeError::Refused { .. })));
}
