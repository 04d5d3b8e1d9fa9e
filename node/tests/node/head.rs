//! A real head, restarted at the same address: a worker still carrying the
//! id the first incarnation gave it is not taken for the member that the
//! second gave an id to; it is told it is unknown, and joins again.

use std::net::SocketAddr;

use leman_cluster::{Heartbeat, Join, NodeId, Resources};
use leman_engine::UdfRegistry;
use leman_node::{Head, HeadConfig, HeadRequest, HeadResponse};
use leman_runtime::tls::Role;
use leman_runtime::{ClusterCerts, Node, NodeConfig};

async fn join(worker: &Node, head: SocketAddr) -> NodeId {
    let join = Join { cluster: leman_cluster::DEFAULT_CLUSTER_NAME.to_string(), advertise: None, resources: Resources { cpus: 1.0, gpus: 0.0, memory: 0 } };
    match worker.request::<_, HeadResponse>(head, &HeadRequest::Join(join)).await.unwrap() {
        HeadResponse::Joined { node } => node,
        other => panic!("not joined: {other:?}"),
    }
}

async fn known(worker: &Node, head: SocketAddr, node: NodeId) -> bool {
    match worker.request::<_, HeadResponse>(head, &HeadRequest::Heartbeat(Heartbeat { node })).await.unwrap() {
        HeadResponse::Alive { known } => known,
        other => panic!("no answer to a heartbeat: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_head_does_not_take_an_old_id_for_a_new_member() {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = dir.path().join("certs");
    leman_runtime::tls::init_cluster(&certs_dir).unwrap();
    let certs = ClusterCerts::load(&certs_dir, Role::Worker).unwrap();
    let config = |listen| HeadConfig::new(listen, certs_dir.clone(), UdfRegistry::default());

    let first = Head::start(&config(SocketAddr::from(([127, 0, 0, 1], 0)))).unwrap();
    let addr = first.local_addr().unwrap();
    let old = Node::client(SocketAddr::from(([127, 0, 0, 1], 0)), &certs, NodeConfig::default()).unwrap();
    let old_id = join(&old, addr).await;
    assert!(known(&old, addr, old_id).await);
    drop(first);

    // The first head's socket closes once its connections have drained.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let second = loop {
        match Head::start(&config(addr)) {
            Ok(head) => break head,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(error) => panic!("the first head's port stayed taken: {error}"),
        }
    };
    let new = Node::client(SocketAddr::from(([127, 0, 0, 1], 0)), &certs, NodeConfig::default()).unwrap();
    let new_id = join(&new, addr).await;
    assert_ne!(new_id, old_id, "the second incarnation handed out an id of the first");
    // The old worker's connection went with the first head: a fresh one.
    let old = Node::client(SocketAddr::from(([127, 0, 0, 1], 0)), &certs, NodeConfig::default()).unwrap();
    assert!(!known(&old, addr, old_id).await, "a worker of the first incarnation must join again");
    assert!(known(&new, addr, new_id).await);
    drop(second);
}
