//! Leman on a cluster of processes: the head, the workers, and the protocol
//! between them, over the runtime's QUIC nodes.
//!
//! This crate owns the two long-running processes of a cluster and what
//! they say to each other. The [`Head`] keeps the cluster's membership
//! (workers join with the resources they offer and send a heartbeat every
//! [`HEARTBEAT_EVERY`]; one silent for [`LOST_AFTER`] is lost), runs the
//! drivers of the jobs submitted to it, and places their appliers on
//! workers through one reservation ledger shared by every job. A [`Worker`]
//! joins a head and hosts the appliers and fragment writers that drivers
//! ask it for, finding the head by address or DNS name ([`JoinTarget`],
//! [`Discovery`]) and finding it again when it comes back elsewhere. Both
//! serve `/livez`, `/readyz` and Prometheus `/metrics` over plain HTTP
//! when asked to, since the kubelet cannot probe QUIC. The head implements the engine's
//! [`Executor`](leman_engine::Executor) over the wire, so a job's driver is
//! the same code embedded or on a cluster. [`LocalCluster`] starts a
//! throwaway head and workers on 127.0.0.1 (`leman backfill
//! --local-workers N`); [`submit`], [`job_status`], [`cancel_job`] and [`members`] are the
//! client's side.
//!
//! It sits between the face and the engine: `leman` -> `leman-node` ->
//! `leman-engine`, and `leman-node` -> `leman-cluster`, `leman-runtime`.
//! The engine must never depend on it; the wire format stays in the
//! runtime, and this crate speaks it only through typed messages
//! ([`WorkerRequest`], [`HeadRequest`] and their answers).
//!
//! ```no_run
//! # async fn demo(certs: std::path::PathBuf, registry: leman_engine::UdfRegistry) -> Result<(), leman_node::NodeError> {
//! use leman_node::{Head, HeadConfig, Resources, Worker, WorkerConfig};
//!
//! let head = Head::start(&HeadConfig::new("127.0.0.1:7070".parse().unwrap(), certs.clone(), registry.clone()))?;
//! let resources = Resources { cpus: 8.0, gpus: 1.0, memory: 0 };
//! let worker = Worker::start(&WorkerConfig::new(head.local_addr()?, certs, resources, registry)).await?;
//! tokio::spawn(worker.run());
//! # Ok(()) }
//! ```

mod client;
mod discovery;
mod error;
mod executor;
mod head;
mod heartbeat;
mod http;
mod local;
mod metrics;
mod protocol;
mod view;
mod worker;

pub use client::{cancel_job, find_head, job_status, members, submit};
pub use discovery::Discovery;
pub use error::{NodeError, Result};
pub use head::{Head, HeadConfig};
pub use heartbeat::{HEARTBEAT_EVERY, LOST_AFTER};
pub use leman_cluster::{BadTarget, DEFAULT_CLUSTER_NAME, JoinTarget, Resources};
pub use local::LocalCluster;
pub use protocol::{
    ApplierExit, HeadRequest, HeadResponse, HostedApplier, JobSpec, JobView, MemberInfo, ShippedDataFile, Submission,
    WorkerRequest, WorkerResponse,
};
pub use worker::{Worker, WorkerConfig};
