//! The cluster spec: a TOML file describing a cluster's head, its worker
//! groups and what every pod shares. Unknown keys are refused with their
//! path; every name, quantity and group is checked before anything is
//! rendered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use crate::error::SpecError;
use crate::names;
use crate::quantity::Quantity;

/// A whole cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// What every pod shares.
    pub cluster: Cluster,
    /// The head pod.
    #[serde(default)]
    pub head: HeadGroup,
    /// The worker groups (`[[workers]]`), at least one.
    #[serde(default)]
    pub workers: Vec<WorkerGroup>,
}

/// `[cluster]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// The cluster's name (`--cluster-name`), prefix of every resource.
    #[serde(default = "default_name")]
    pub name: String,
    /// Namespace of every resource.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Container image holding the `leman` binary.
    pub image: String,
    /// When the kubelet pulls the image.
    #[serde(default)]
    pub image_pull_policy: PullPolicy,
    /// Secrets for pulling the image from a private registry.
    #[serde(default)]
    pub image_pull_secrets: Vec<String>,
    /// Service account of every pod (default: the cluster's name).
    pub service_account: Option<String>,
    /// Whether the manifests create the service account.
    #[serde(default = "yes")]
    pub create_service_account: bool,
    /// QUIC port of the head and workers (UDP).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Port of `/livez`, `/readyz` and `/metrics` (TCP).
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    /// Secret holding `ca.pem`, `node.pem` and `node.key` (default:
    /// `<name>-certs`).
    pub certs_secret: Option<String>,
    /// Labels on every resource and pod.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations on every resource and pod.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Environment of every container.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Secrets whose keys become environment variables of every container
    /// (object store credentials, for example).
    #[serde(default)]
    pub env_from_secrets: Vec<String>,
    /// Render a PodDisruptionBudget per worker group (one pod evicted at a
    /// time).
    #[serde(default)]
    pub pod_disruption_budget: bool,
    /// Render a NetworkPolicy: QUIC only between the cluster's pods (and to
    /// the head from anywhere, for clients), HTTP from anywhere.
    #[serde(default)]
    pub network_policy: bool,
}

/// `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull when absent.
    #[default]
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// As Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// `[head]`.
/// Keys left out take their value from [`HeadGroup::default`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadGroup {
    /// CPU of the head pod (request and limit; 1 by default).
    pub cpus: Quantity,
    /// Memory of the head pod (request and limit; 2Gi by default).
    pub memory: Quantity,
    /// Node labels the head pod needs.
    pub node_selector: BTreeMap<String, String>,
    /// Taints the head pod tolerates.
    pub tolerations: Vec<Toleration>,
    /// Priority class of the head pod.
    pub priority_class: Option<String>,
    /// Also expose the head's QUIC port outside the cluster, through a
    /// Service of this type, for clients that submit from outside.
    pub external_service: Option<ExternalService>,
}

impl Default for HeadGroup {
    fn default() -> Self {
        Self {
            cpus: Quantity::exact("1", 1.0),
            memory: Quantity::exact("2Gi", 2.0 * 1024.0 * 1024.0 * 1024.0),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            priority_class: None,
            external_service: None,
        }
    }
}

/// The type of the head's external Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ExternalService {
    /// A cloud load balancer.
    LoadBalancer,
    /// A port on every node.
    NodePort,
}

/// `[[workers]]`: pods alike.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerGroup {
    /// The group's name, part of its Deployment's.
    pub name: String,
    /// How many pods.
    #[serde(default = "one")]
    pub replicas: u32,
    /// CPU of each pod (request and limit; offered to appliers).
    pub cpus: Quantity,
    /// Memory of each pod (request and limit; offered to appliers).
    pub memory: Quantity,
    /// Whole GPUs of each pod (request and limit).
    #[serde(default)]
    pub gpus: u32,
    /// The extended resource GPUs are requested as.
    #[serde(default = "default_gpu_resource")]
    pub gpu_resource: String,
    /// Node labels the pods need.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    /// Size of `/dev/shm` (a memory-backed volume), if any.
    pub shm_size: Option<Quantity>,
    /// Image of this group, instead of the cluster's.
    pub image: Option<String>,
    /// A fragment merged into the pod spec: the escape hatch for anything
    /// the spec has no key for. Tables merge key by key; lists of tables
    /// with a `name` merge by name (containers, volumes, env); other
    /// values replace.
    pub pod_template: Option<toml::Table>,
}

/// A toleration, as in a pod spec.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toleration {
    /// Taint key (none: every key, with `operator = "Exists"`).
    pub key: Option<String>,
    /// `Equal` (the default) or `Exists`.
    pub operator: Option<TolerationOperator>,
    /// Taint value, for `Equal`.
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute` (none: every effect).
    pub effect: Option<TaintEffect>,
    /// For `NoExecute`: how long the pod stays once tainted.
    pub toleration_seconds: Option<i64>,
}

/// How a toleration matches a taint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[allow(missing_docs)]
pub enum TolerationOperator {
    Equal,
    Exists,
}

/// What a taint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[allow(missing_docs)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

fn default_name() -> String {
    "leman".to_string()
}
fn default_namespace() -> String {
    "default".to_string()
}
fn default_port() -> u16 {
    7070
}
fn default_http_port() -> u16 {
    8080
}
fn default_gpu_resource() -> String {
    "nvidia.com/gpu".to_string()
}
fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}

impl ClusterSpec {
    /// Reads and checks the spec at `path`.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text).map_err(|source| SpecError::InFile { path: path.display().to_string(), source: Box::new(source) })
    }

    /// Parses and checks a spec.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let deserializer = toml::Deserializer::parse(text).map_err(|e| SpecError::syntax(text, &e))?;
        let spec: Self = serde_path_to_error::deserialize(deserializer).map_err(|e| SpecError::key(text, e))?;
        spec.check()?;
        Ok(spec)
    }

    /// The service account's name.
    pub fn service_account(&self) -> String {
        self.cluster.service_account.clone().unwrap_or_else(|| self.cluster.name.clone())
    }

    /// The certificates Secret's name.
    pub fn certs_secret(&self) -> String {
        self.cluster.certs_secret.clone().unwrap_or_else(|| format!("{}-certs", self.cluster.name))
    }

    /// The head's headless Service.
    pub fn head_service(&self) -> String {
        format!("{}-head", self.cluster.name)
    }

    /// The Deployment of worker group `group`.
    pub fn worker_deployment(&self, group: &WorkerGroup) -> String {
        format!("{}-worker-{}", self.cluster.name, group.name)
    }

    /// Where workers and clients inside the cluster find the head.
    pub fn join_target(&self) -> String {
        format!("dns:{}.{}.svc.cluster.local:{}", self.head_service(), self.cluster.namespace, self.cluster.port)
    }

    fn check(&self) -> Result<(), SpecError> {
        let c = &self.cluster;
        let invalid = |key: &str, reason: String| Err(SpecError::Invalid { key: key.to_string(), reason });
        if let Err(reason) = names::label_starting_with_a_letter(&c.name) {
            return invalid("cluster.name", reason);
        }
        if let Err(reason) = names::label(&c.namespace) {
            return invalid("cluster.namespace", reason);
        }
        if c.image.trim().is_empty() || c.image.chars().any(char::is_whitespace) {
            return invalid("cluster.image", format!("{:?} is not an image reference", c.image));
        }
        for (key, name) in [("cluster.service_account", &c.service_account), ("cluster.certs_secret", &c.certs_secret)] {
            if let Some(name) = name
                && let Err(reason) = names::subdomain(name)
            {
                return invalid(key, reason);
            }
        }
        for (i, secret) in c.image_pull_secrets.iter().enumerate() {
            if let Err(reason) = names::subdomain(secret) {
                return invalid(&format!("cluster.image_pull_secrets[{i}]"), reason);
            }
        }
        for (i, secret) in c.env_from_secrets.iter().enumerate() {
            if let Err(reason) = names::subdomain(secret) {
                return invalid(&format!("cluster.env_from_secrets[{i}]"), reason);
            }
        }
        for (port, key) in [(c.port, "cluster.port"), (c.http_port, "cluster.http_port")] {
            if port == 0 {
                return invalid(key, "0 is not a port".to_string());
            }
        }
        if c.port == c.http_port {
            return invalid("cluster.http_port", format!("{} is the QUIC port too; give HTTP a port of its own", c.http_port));
        }
        for (key, value) in c.labels.iter() {
            if let Err(reason) = names::label_key(key).and_then(|()| names::label_value(value)) {
                return invalid(&format!("cluster.labels.{key}"), reason);
            }
        }
        for key in c.annotations.keys() {
            if let Err(reason) = names::label_key(key) {
                return invalid(&format!("cluster.annotations.{key}"), reason);
            }
        }
        for key in c.env.keys() {
            if let Err(reason) = names::env_name(key) {
                return invalid(&format!("cluster.env.{key}"), reason);
            }
        }
        self.check_group("head", &self.head.node_selector, &self.head.cpus, &self.head.memory)?;
        if let Some(class) = &self.head.priority_class
            && let Err(reason) = names::subdomain(class)
        {
            return invalid("head.priority_class", reason);
        }
        if self.workers.is_empty() {
            return invalid("workers", "no worker group; add at least one [[workers]] table".to_string());
        }
        let mut seen = BTreeSet::new();
        for (i, group) in self.workers.iter().enumerate() {
            let at = format!("workers[{i}]");
            if let Err(reason) = names::label(&group.name) {
                return invalid(&format!("{at}.name"), reason);
            }
            if !seen.insert(group.name.as_str()) {
                return invalid(&format!("{at}.name"), format!("a second worker group named {:?}; group names must differ", group.name));
            }
            let deployment = self.worker_deployment(group);
            if deployment.len() > 63 {
                return invalid(&format!("{at}.name"), format!("{deployment:?} (cluster name, -worker-, group name) is longer than 63 characters"));
            }
            self.check_group(&at, &group.node_selector, &group.cpus, &group.memory)?;
            if let Err(reason) = names::label_key(&group.gpu_resource) {
                return invalid(&format!("{at}.gpu_resource"), reason);
            }
            if let Some(size) = &group.shm_size
                && size.value() < 1.0
            {
                return invalid(&format!("{at}.shm_size"), format!("{size} of /dev/shm: give at least a byte (e.g. 8Gi), or leave it out"));
            }
            if let Some(image) = &group.image
                && (image.trim().is_empty() || image.chars().any(char::is_whitespace))
            {
                return invalid(&format!("{at}.image"), format!("{image:?} is not an image reference"));
            }
        }
        Ok(())
    }

    fn check_group(&self, at: &str, node_selector: &BTreeMap<String, String>, cpus: &Quantity, memory: &Quantity) -> Result<(), SpecError> {
        let invalid = |key: String, reason: String| Err(SpecError::Invalid { key, reason });
        if cpus.value() <= 0.0 {
            return invalid(format!("{at}.cpus"), format!("{cpus} CPUs: give more than 0"));
        }
        if memory.value() < 1.0 {
            return invalid(format!("{at}.memory"), format!("{memory} of memory: give at least a byte (e.g. 8Gi)"));
        }
        for (key, value) in node_selector {
            if let Err(reason) = names::label_key(key).and_then(|()| names::label_value(value)) {
                return invalid(format!("{at}.node_selector.{key}"), reason);
            }
        }
        Ok(())
    }
}
