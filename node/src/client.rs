//! The client's side of a cluster: finding the head, asking it who is in,
//! submitting a backfill, following a job. Each call opens a short-lived
//! client node on an ephemeral port and closes it after the answer.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use leman_runtime::{ClusterCerts, Node, NodeConfig};

use crate::discovery::Discovery;
use crate::error::{NodeError, Result};
use crate::protocol::{HeadRequest, HeadResponse, JobView, MemberInfo, Submission};

/// The first of the addresses `discovery` gives now whose head answers.
pub async fn find_head(discovery: &Discovery, certs: &ClusterCerts) -> Result<SocketAddr> {
    let addresses = discovery.addresses().await?;
    if let [only] = addresses[..] {
        return Ok(only);
    }
    let mut last = None;
    for head in addresses {
        match ask(head, certs, &HeadRequest::Members).await {
            Ok(_) => return Ok(head),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| NodeError::Discovery { target: discovery.target().to_string(), reason: "no address".into() }))
}

/// Asks the head at `head` for its live members.
pub async fn members(head: SocketAddr, certs: &ClusterCerts) -> Result<Vec<MemberInfo>> {
    match ask(head, certs, &HeadRequest::Members).await? {
        HeadResponse::Members(members) => Ok(members),
        other => Err(unexpected(head, other)),
    }
}

/// Submits a backfill to the head at `head`; returns the job id.
pub async fn submit(head: SocketAddr, certs: &ClusterCerts, submission: &Submission) -> Result<String> {
    match ask(head, certs, &HeadRequest::Submit(Box::new(submission.clone()))).await? {
        HeadResponse::Submitted { job_id } => Ok(job_id),
        HeadResponse::Refused { reason } => Err(NodeError::Refused { peer: head, reason }),
        other => Err(unexpected(head, other)),
    }
}

/// How job `job_id` stands on the head at `head`.
pub async fn job_status(head: SocketAddr, certs: &ClusterCerts, job_id: &str) -> Result<JobView> {
    match ask(head, certs, &HeadRequest::JobStatus { job_id: job_id.to_string() }).await? {
        HeadResponse::Job(view) => Ok(*view),
        HeadResponse::Refused { reason } => Err(NodeError::Refused { peer: head, reason }),
        other => Err(unexpected(head, other)),
    }
}

/// Asks the head at `head` to cancel job `job_id`: it stops after its
/// batches in flight and keeps its checkpoints.
pub async fn cancel_job(head: SocketAddr, certs: &ClusterCerts, job_id: &str) -> Result<()> {
    match ask(head, certs, &HeadRequest::CancelJob { job_id: job_id.to_string() }).await? {
        HeadResponse::Noted => Ok(()),
        HeadResponse::Refused { reason } => Err(NodeError::Refused { peer: head, reason }),
        other => Err(unexpected(head, other)),
    }
}

async fn ask(head: SocketAddr, certs: &ClusterCerts, request: &HeadRequest) -> Result<HeadResponse> {
    let client = Node::client(any_port_of(head), certs, NodeConfig::default())?;
    let response = client.request::<_, HeadResponse>(head, request).await;
    client.close();
    Ok(response?)
}

fn unexpected(peer: SocketAddr, answer: HeadResponse) -> NodeError {
    NodeError::Unexpected { peer, answer: format!("{answer:?}") }
}

/// An ephemeral port for a node that only makes requests: on the loopback
/// address for a peer on loopback, else on every address of the peer's
/// family, so the system picks the route.
fn any_port_of(peer: SocketAddr) -> SocketAddr {
    match (peer.is_ipv4(), peer.ip().is_loopback()) {
        (true, true) => (Ipv4Addr::LOCALHOST, 0).into(),
        (true, false) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        (false, true) => (Ipv6Addr::LOCALHOST, 0).into(),
        (false, false) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}
