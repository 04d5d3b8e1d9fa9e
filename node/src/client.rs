//! The client's side of a cluster: asking the head who is in, submitting a
//! backfill, following a job. Each call opens a short-lived client node on
//! an ephemeral port and closes it after the answer.

use std::net::{Ipv6Addr, SocketAddr};

use leman_runtime::{ClusterCerts, Node, NodeConfig};

use crate::error::{NodeError, Result};
use crate::protocol::{HeadRequest, HeadResponse, JobView, MemberInfo, Submission};

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

async fn ask(head: SocketAddr, certs: &ClusterCerts, request: &HeadRequest) -> Result<HeadResponse> {
    let client = Node::client(any_port_of(head), certs, NodeConfig::default())?;
    let response = client.request::<_, HeadResponse>(head, request).await;
    client.close();
    Ok(response?)
}

fn unexpected(peer: SocketAddr, answer: HeadResponse) -> NodeError {
    NodeError::Unexpected { peer, answer: format!("{answer:?}") }
}

/// An ephemeral port on the loopback address of `peer`'s family, for a
/// node that only makes requests.
pub(crate) fn any_port_of(peer: SocketAddr) -> SocketAddr {
    if peer.is_ipv4() { ([127, 0, 0, 1], 0).into() } else { (Ipv6Addr::LOCALHOST, 0).into() }
}
