//! Deploying a leman cluster on Kubernetes: the cluster spec and the
//! manifests rendered from it.
//!
//! A [`ClusterSpec`] is a TOML file: `[cluster]` (name, namespace, image,
//! service account, ports, the certificates Secret, labels, environment,
//! object store credentials), `[head]` and one `[[workers]]` table per
//! group of alike pods (replicas, CPUs, memory, GPUs, node selector,
//! tolerations, `/dev/shm`, a `pod_template` fragment for the rest). It is
//! checked whole before anything is rendered: an unknown key, a bad
//! quantity, a name Kubernetes would refuse or a duplicate group is a
//! one-line [`SpecError`] naming the key. [`render`] turns it into YAML in
//! apply order, as the head is deployed by KubeRay: one designated head in
//! a StatefulSet behind a headless Service that publishes not-ready
//! addresses, worker Deployments that join it by DNS
//! (`dns:<head>.<namespace>.svc.cluster.local:<port>`) and advertise their
//! pod IP, HTTP probes, requests equal to limits.
//!
//! This crate knows nothing of the engine or the wire: `leman` (the CLI's
//! `cluster manifests`) -> `leman-deploy`.
//!
//! ```
//! let spec = leman_deploy::ClusterSpec::parse(r#"
//!     [cluster]
//!     image = "registry.example/leman:0.1.0"
//!
//!     [[workers]]
//!     name = "cpu"
//!     cpus = 8
//!     memory = "32Gi"
//! "#)?;
//! let yaml = leman_deploy::render(&spec, None)?;
//! assert!(yaml.contains("kind: StatefulSet"));
//! assert!(yaml.contains("dns:leman-head.default.svc.cluster.local:7070"));
//! # Ok::<(), leman_deploy::SpecError>(())
//! ```

mod error;
mod manifests;
mod merge;
pub mod names;
mod quantity;
mod spec;

pub use error::SpecError;
pub use manifests::{CERTS_DIR, CONTAINER, EmbeddedCerts, manifests, render};
pub use quantity::Quantity;
pub use spec::{Cluster, ClusterSpec, ExternalService, HeadGroup, PullPolicy, TaintEffect, Toleration, TolerationOperator, WorkerGroup};
