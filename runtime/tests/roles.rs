//! Certificates with roles on loopback: a request refused for the role of
//! its sender, a node revoked while connected, and certificates outside
//! their dates.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leman_runtime::tls::{self, Revocations, Role};
use leman_runtime::{ClusterCerts, Node, NodeConfig, RuntimeError, Service};
use time::OffsetDateTime;

/// Answers heads only.
struct HeadsOnly;

impl Service for HeadsOnly {
    type Request = u64;
    type Response = u64;

    async fn call(&self, _peer: SocketAddr, request: u64) -> u64 {
        request + 1
    }

    fn roles_for(&self, _request: &u64) -> &'static [Role] {
        &[Role::Head]
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn quick() -> NodeConfig {
    NodeConfig { request_timeout: Duration::from_secs(5), ..NodeConfig::default() }
}

async fn eventually(what: &str, limit: Duration, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_request_from_a_role_the_service_does_not_take_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    tls::init_cluster(dir.path()).unwrap();
    let server = Node::serve(loopback(), &ClusterCerts::load(dir.path(), Role::Worker).unwrap(), quick(), Arc::new(HeadsOnly)).unwrap();
    let addr = server.local_addr().unwrap();

    let head = Node::client(loopback(), &ClusterCerts::load(dir.path(), Role::Head).unwrap(), quick()).unwrap();
    assert_eq!(head.request::<_, u64>(addr, &1u64).await.unwrap(), 2);
    for role in [Role::Worker, Role::Client] {
        let other = Node::client(loopback(), &ClusterCerts::load(dir.path(), role).unwrap(), quick()).unwrap();
        let refused = other.request::<_, u64>(addr, &1u64).await;
        assert!(matches!(&refused, Err(RuntimeError::Refused { .. })), "{role}: {refused:?}");
        assert!(refused.unwrap_err().to_string().contains("role"));
    }
    assert_eq!(server.stats().requests_served(), 1);

    // A certificate of one role cannot be loaded as another.
    let issued = tempfile::tempdir().unwrap();
    tls::issue(dir.path(), Role::Worker, "w1", issued.path(), 30).unwrap();
    std::fs::copy(issued.path().join("worker.pem"), issued.path().join("head.pem")).unwrap();
    std::fs::copy(issued.path().join("worker.key"), issued.path().join("head.key")).unwrap();
    let error = ClusterCerts::load(issued.path(), Role::Head).unwrap_err().to_string();
    assert!(error.contains("it is a worker certificate; a head needs a head certificate"), "{error}");
}

#[tokio::test]
async fn a_revoked_node_is_refused_and_cut_off_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    tls::init_cluster(dir.path()).unwrap();
    let revoked = dir.path().join("revoked.txt");
    std::fs::write(&revoked, "# none yet\n").unwrap();
    let head = ClusterCerts::load(dir.path(), Role::Head).unwrap().with_revocations(Arc::new(Revocations::load(&revoked).unwrap()));
    let server = Node::serve(loopback(), &head, quick(), Arc::new(AnyRole)).unwrap();
    let addr = server.local_addr().unwrap();

    let issued = tempfile::tempdir().unwrap();
    let identity = tls::issue(dir.path(), Role::Worker, "w7", issued.path(), 30).unwrap();
    let worker = Node::client(loopback(), &ClusterCerts::load(issued.path(), Role::Worker).unwrap(), quick()).unwrap();
    assert_eq!(worker.request::<_, u64>(addr, &1u64).await.unwrap(), 1);
    let connection = worker.connection(addr).await.unwrap();

    std::fs::write(&revoked, format!("# w7, lost laptop\n{}\n", identity.fingerprint.to_uppercase())).unwrap();
    eventually("the revoked node's connection is closed", Duration::from_secs(5), || connection.close_reason().is_some()).await;
    let again = worker.request::<_, u64>(addr, &1u64).await.unwrap_err().to_string();
    assert!(again.contains("the peer refused this node's certificate"), "{again}");
    assert!(server.stats().refused_connections() >= 1, "its next connection is refused at the handshake");

    // Another worker, not listed, still gets through.
    let other = tempfile::tempdir().unwrap();
    tls::issue(dir.path(), Role::Worker, "w8", other.path(), 30).unwrap();
    let fine = Node::client(loopback(), &ClusterCerts::load(other.path(), Role::Worker).unwrap(), quick()).unwrap();
    assert_eq!(fine.request::<_, u64>(addr, &5u64).await.unwrap(), 5);
}

struct AnyRole;

impl Service for AnyRole {
    type Request = u64;
    type Response = u64;

    async fn call(&self, _peer: SocketAddr, request: u64) -> u64 {
        request
    }
}

fn issue_between(ca: &Path, out: &Path, from: OffsetDateTime, until: OffsetDateTime) {
    tls::issue_valid(ca, Role::Worker, "dated", out, from, until).unwrap();
}

#[tokio::test]
async fn certificates_outside_their_dates_are_refused_with_the_dates() {
    let dir = tempfile::tempdir().unwrap();
    tls::init_cluster(dir.path()).unwrap();
    let now = OffsetDateTime::now_utc();
    let day = time::Duration::days(1);

    let expired = tempfile::tempdir().unwrap();
    issue_between(dir.path(), expired.path(), now - 10 * day, now - day);
    let error = ClusterCerts::load(expired.path(), Role::Worker).unwrap_err().to_string();
    assert!(error.contains("is expired: valid from") && error.contains(&tls::date(now - day)[..10]), "{error}");

    let early = tempfile::tempdir().unwrap();
    issue_between(dir.path(), early.path(), now + day, now + 10 * day);
    let error = ClusterCerts::load(early.path(), Role::Worker).unwrap_err().to_string();
    assert!(error.contains("is not valid yet: valid from") && error.contains(&tls::date(now + day)[..10]), "{error}");

    // One that expires while its node runs is refused by its peers.
    let brief = tempfile::tempdir().unwrap();
    issue_between(dir.path(), brief.path(), now - day, now + time::Duration::seconds(2));
    let worker = Node::client(loopback(), &ClusterCerts::load(brief.path(), Role::Worker).unwrap(), quick()).unwrap();
    let server = Node::serve(loopback(), &ClusterCerts::load(dir.path(), Role::Head).unwrap(), quick(), Arc::new(AnyRole)).unwrap();
    let addr = server.local_addr().unwrap();
    eventually("the certificate expires", Duration::from_secs(10), || OffsetDateTime::now_utc() > now + time::Duration::seconds(3)).await;
    let refused = worker.request::<_, u64>(addr, &1u64).await.unwrap_err().to_string();
    assert!(refused.contains("the peer refused this node's certificate") && refused.contains("is expired: valid from"), "{refused}");
    assert_eq!(server.stats().requests_served(), 0);
}
