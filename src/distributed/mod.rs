//! Leman on a cluster of processes: a head that workers join, over the
//! runtime's QUIC nodes.
//!
//! The head keeps the cluster's [`Membership`](leman_cluster::Membership):
//! workers join with the resources they offer and send a heartbeat every
//! [`HEARTBEAT_EVERY`]; one silent for [`LOST_AFTER`] is lost, so a dead
//! worker is noticed within 5 seconds. A Rust service starts either role in
//! its own binary with [`Head::start`] or [`Worker::start`].

mod head;
mod local;
mod protocol;
mod worker;

use std::time::Duration;

pub use head::{Head, HeadConfig};
pub(crate) use local::LocalCluster;
pub use protocol::{
    ApplierExit, HeadRequest, HeadResponse, HostedApplier, JobSpec, JobView, MemberInfo, Submission, WorkerRequest,
    WorkerResponse,
};
pub use worker::{Worker, WorkerConfig};

/// How often a worker says it is alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// Silence after which the head declares a worker lost. With heartbeats
/// every second, a dead worker is lost within 5 seconds of its death.
pub const LOST_AFTER: Duration = Duration::from_millis(3500);

/// Asks the head at `head` for its live members.
pub async fn members(head: std::net::SocketAddr, certs: &leman_runtime::ClusterCerts) -> crate::Result<Vec<MemberInfo>> {
    let client = leman_runtime::Node::client(any_port_of(head), certs, leman_runtime::NodeConfig::default())?;
    let response = client.request::<_, HeadResponse>(head, &HeadRequest::Members).await?;
    client.close();
    match response {
        HeadResponse::Members(members) => Ok(members),
        other => Err(crate::Error::Io(std::io::Error::other(format!("unexpected answer from the head: {other:?}")))),
    }
}

/// Submits a backfill to the head at `head`; returns the job id.
pub async fn submit(head: std::net::SocketAddr, certs: &leman_runtime::ClusterCerts, submission: &Submission) -> crate::Result<String> {
    match ask(head, certs, &HeadRequest::Submit(Box::new(submission.clone()))).await? {
        HeadResponse::Submitted { job_id } => Ok(job_id),
        HeadResponse::Refused { reason } => Err(crate::Error::Io(std::io::Error::other(reason))),
        other => Err(crate::Error::Io(std::io::Error::other(format!("unexpected answer from the head: {other:?}")))),
    }
}

/// How job `job_id` stands on the head at `head`.
pub async fn job_status(head: std::net::SocketAddr, certs: &leman_runtime::ClusterCerts, job_id: &str) -> crate::Result<JobView> {
    match ask(head, certs, &HeadRequest::JobStatus { job_id: job_id.to_string() }).await? {
        HeadResponse::Job(view) => Ok(*view),
        HeadResponse::Refused { reason } => Err(crate::Error::Io(std::io::Error::other(reason))),
        other => Err(crate::Error::Io(std::io::Error::other(format!("unexpected answer from the head: {other:?}")))),
    }
}

async fn ask(head: std::net::SocketAddr, certs: &leman_runtime::ClusterCerts, request: &HeadRequest) -> crate::Result<HeadResponse> {
    let client = leman_runtime::Node::client(any_port_of(head), certs, leman_runtime::NodeConfig::default())?;
    let response = client.request::<_, HeadResponse>(head, request).await;
    client.close();
    Ok(response?)
}

/// An ephemeral port on the same kind of address as `peer`.
fn any_port_of(peer: std::net::SocketAddr) -> std::net::SocketAddr {
    if peer.is_ipv4() { ([127, 0, 0, 1], 0).into() } else { (std::net::Ipv6Addr::LOCALHOST, 0).into() }
}
