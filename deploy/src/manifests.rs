//! The Kubernetes objects of a cluster, in the order they are applied:
//! the ServiceAccount, the certificates Secret (only when asked to embed
//! it), the head's headless Service (and an external one if asked), the
//! head's StatefulSet, one Deployment per worker group, then the opt-in
//! NetworkPolicies and PodDisruptionBudgets.
//!
//! Workers find the head through the headless Service, which publishes
//! not-ready addresses so that DNS answers while pods start; they
//! advertise their pod IP and are probed over plain HTTP (`/livez`,
//! `/readyz`), since the kubelet cannot probe QUIC. Requests equal limits,
//! GPUs included, and pods without GPUs see none
//! (`NVIDIA_VISIBLE_DEVICES=none`). Pods listen on `0.0.0.0`: the
//! manifests are for IPv4 pod networks.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::error::SpecError;
use crate::merge::deep_merge;
use crate::spec::{ClusterSpec, ExternalService, TaintEffect, Toleration, TolerationOperator, WorkerGroup};

/// Where the certificates Secret is mounted in every pod.
pub const CERTS_DIR: &str = "/etc/leman/certs";
/// The container's name in every pod.
pub const CONTAINER: &str = "leman";

/// The files of a cluster's certificates that a node needs: the CA's
/// certificate and the node's certificate and key, never the CA's key.
#[derive(Clone)]
pub struct EmbeddedCerts {
    ca: String,
    head_cert: String,
    head_key: String,
    worker_cert: String,
    worker_key: String,
}

impl std::fmt::Debug for EmbeddedCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedCerts").finish_non_exhaustive()
    }
}

impl EmbeddedCerts {
    /// Reads `ca.pem` and the head's and the workers' certificates and
    /// keys (`head.pem`, `head.key`, `worker.pem`, `worker.key`) from `dir`
    /// (as `leman cluster init` wrote them). `ca.key` is not read, nor is
    /// the client's certificate: it stays with whoever submits jobs.
    pub fn read(dir: &Path) -> Result<Self, SpecError> {
        let read = |file: &str| {
            std::fs::read_to_string(dir.join(file)).map_err(|e| SpecError::Certs {
                reason: format!("{}: {e}; make them with `leman cluster init --dir {}`", dir.join(file).display(), dir.display()),
            })
        };
        Ok(Self {
            ca: read("ca.pem")?,
            head_cert: read("head.pem")?,
            head_key: read("head.key")?,
            worker_cert: read("worker.pem")?,
            worker_key: read("worker.key")?,
        })
    }
}

/// The manifests as one YAML stream, documents in apply order.
pub fn render(spec: &ClusterSpec, certs: Option<&EmbeddedCerts>) -> Result<String, SpecError> {
    let mut out = format!(
        "# leman cluster {:?} in namespace {:?}: rendered by `leman cluster manifests`; apply with `kubectl apply -f`.\n",
        spec.cluster.name, spec.cluster.namespace
    );
    for object in manifests(spec, certs)? {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&object).map_err(|e| SpecError::Render { reason: e.to_string() })?);
    }
    Ok(out)
}

/// The manifests as JSON values, in apply order.
pub fn manifests(spec: &ClusterSpec, certs: Option<&EmbeddedCerts>) -> Result<Vec<Value>, SpecError> {
    let r = Renderer { spec };
    let mut objects = Vec::new();
    if spec.cluster.create_service_account {
        objects.push(r.object("v1", "ServiceAccount", &spec.service_account(), r.labels(&[]), json!({})));
    }
    if let Some(certs) = certs {
        objects.push(r.object(
            "v1",
            "Secret",
            &spec.certs_secret(),
            r.labels(&[]),
            json!({
                "type": "Opaque",
                "stringData": {
                    "ca.pem": certs.ca,
                    "head.pem": certs.head_cert,
                    "head.key": certs.head_key,
                    "worker.pem": certs.worker_cert,
                    "worker.key": certs.worker_key,
                },
            }),
        ));
    }
    objects.push(r.head_service());
    if let Some(kind) = spec.head.external_service {
        objects.push(r.external_service(kind));
    }
    objects.push(r.head());
    for group in &spec.workers {
        objects.push(r.worker_group(group)?);
    }
    if spec.cluster.network_policy {
        objects.extend(r.network_policies());
    }
    if spec.cluster.pod_disruption_budget {
        objects.extend(spec.workers.iter().map(|group| r.disruption_budget(group)));
    }
    Ok(objects)
}

struct Renderer<'a> {
    spec: &'a ClusterSpec,
}

impl Renderer<'_> {
    /// The labels that select the cluster's pods, narrowed by `extra`
    /// (component, worker group).
    fn selector(&self, extra: &[(&str, &str)]) -> Map<String, Value> {
        let mut labels = Map::new();
        labels.insert("app.kubernetes.io/name".into(), "leman".into());
        labels.insert("app.kubernetes.io/instance".into(), self.spec.cluster.name.clone().into());
        for (key, value) in extra {
            labels.insert((*key).into(), (*value).into());
        }
        labels
    }

    /// The user's labels, then the selector's (which win).
    fn labels(&self, extra: &[(&str, &str)]) -> Map<String, Value> {
        let mut labels: Map<String, Value> = self.spec.cluster.labels.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
        labels.insert("app.kubernetes.io/managed-by".into(), "leman".into());
        labels.extend(self.selector(extra));
        labels
    }

    fn metadata(&self, name: &str, labels: Map<String, Value>) -> Value {
        let mut metadata = json!({ "name": name, "namespace": self.spec.cluster.namespace, "labels": labels });
        if !self.spec.cluster.annotations.is_empty() {
            metadata["annotations"] = json!(self.spec.cluster.annotations);
        }
        metadata
    }

    fn object(&self, api_version: &str, kind: &str, name: &str, labels: Map<String, Value>, body: Value) -> Value {
        let mut object = json!({ "apiVersion": api_version, "kind": kind, "metadata": self.metadata(name, labels) });
        if let (Some(object), Value::Object(body)) = (object.as_object_mut(), body) {
            object.extend(body);
        }
        object
    }

    fn head_selector(&self) -> Map<String, Value> {
        self.selector(&HEAD)
    }

    fn head_labels(&self) -> Map<String, Value> {
        self.labels(&HEAD)
    }

    fn worker_selector(&self, group: &WorkerGroup) -> Map<String, Value> {
        self.selector(&worker(group))
    }

    fn worker_labels(&self, group: &WorkerGroup) -> Map<String, Value> {
        self.labels(&worker(group))
    }

    fn head_service(&self) -> Value {
        let c = &self.spec.cluster;
        self.object(
            "v1",
            "Service",
            &self.spec.head_service(),
            self.head_labels(),
            json!({
                "spec": {
                    // Headless: DNS answers with the head pod's own IP.
                    "clusterIP": "None",
                    // Workers may resolve the head before it is ready.
                    "publishNotReadyAddresses": true,
                    "selector": self.head_selector(),
                    "ports": [
                        { "name": "quic", "protocol": "UDP", "port": c.port, "targetPort": "quic" },
                        { "name": "http", "protocol": "TCP", "port": c.http_port, "targetPort": "http" },
                    ],
                },
            }),
        )
    }

    fn external_service(&self, kind: ExternalService) -> Value {
        let kind = match kind {
            ExternalService::LoadBalancer => "LoadBalancer",
            ExternalService::NodePort => "NodePort",
        };
        self.object(
            "v1",
            "Service",
            &format!("{}-external", self.spec.head_service()),
            self.head_labels(),
            json!({
                "spec": {
                    "type": kind,
                    "selector": self.head_selector(),
                    "ports": [{ "name": "quic", "protocol": "UDP", "port": self.spec.cluster.port, "targetPort": "quic" }],
                },
            }),
        )
    }

    fn head(&self) -> Value {
        let c = &self.spec.cluster;
        let head = &self.spec.head;
        let args = self.args("head");
        let resources = json!({ "cpu": head.cpus.as_str(), "memory": head.memory.as_str() });
        let mut pod = self.pod("head", &c.image, args, resources, false, &head.node_selector, &head.tolerations);
        if let Some(class) = &head.priority_class {
            pod["priorityClassName"] = json!(class);
        }
        let name = self.spec.head_service();
        self.object(
            "apps/v1",
            "StatefulSet",
            &name,
            self.head_labels(),
            json!({
                "spec": {
                    "serviceName": name,
                    // One designated head, never elected: restarted in place.
                    "replicas": 1,
                    "selector": { "matchLabels": self.head_selector() },
                    "template": {
                        "metadata": self.pod_metadata(self.head_labels()),
                        "spec": pod,
                    },
                },
            }),
        )
    }

    fn worker_group(&self, group: &WorkerGroup) -> Result<Value, SpecError> {
        let c = &self.spec.cluster;
        let mut args = self.args("worker");
        args.extend([
            "--join".into(),
            self.spec.join_target(),
            "--advertise".into(),
            format!("$(POD_IP):{}", c.port),
            "--cpus".into(),
            group.cpus.value().to_string(),
            "--memory".into(),
            group.memory.bytes().to_string(),
            "--gpus".into(),
            group.gpus.to_string(),
        ]);
        let mut resources = json!({ "cpu": group.cpus.as_str(), "memory": group.memory.as_str() });
        if group.gpus > 0 {
            resources[&group.gpu_resource] = json!(group.gpus.to_string());
        }
        let image = group.image.as_deref().unwrap_or(&c.image);
        let mut pod = self.pod("worker", image, args, resources, group.gpus > 0, &group.node_selector, &group.tolerations);
        if let Some(size) = &group.shm_size {
            if let Some(volumes) = pod["volumes"].as_array_mut() {
                volumes.push(json!({ "name": "shm", "emptyDir": { "medium": "Memory", "sizeLimit": size.as_str() } }));
            }
            if let Some(mounts) = pod["containers"][0]["volumeMounts"].as_array_mut() {
                mounts.push(json!({ "name": "shm", "mountPath": "/dev/shm" }));
            }
        }
        if let Some(fragment) = &group.pod_template {
            let fragment = serde_json::to_value(fragment).map_err(|e| SpecError::Invalid {
                key: format!("workers.{}.pod_template", group.name),
                reason: e.to_string(),
            })?;
            deep_merge(&mut pod, fragment);
        }
        let labels = self.worker_labels(group);
        Ok(self.object(
            "apps/v1",
            "Deployment",
            &self.spec.worker_deployment(group),
            labels.clone(),
            json!({
                "spec": {
                    "replicas": group.replicas,
                    "selector": { "matchLabels": self.worker_selector(group) },
                    "template": { "metadata": self.pod_metadata(labels), "spec": pod },
                },
            }),
        ))
    }

    /// The arguments of `leman ROLE` that every node takes: where it
    /// listens, serves HTTP, finds its certificates, and its cluster.
    fn args(&self, role: &str) -> Vec<String> {
        let c = &self.spec.cluster;
        vec![
            role.to_string(),
            "--listen".into(),
            format!("0.0.0.0:{}", c.port),
            "--http".into(),
            format!("0.0.0.0:{}", c.http_port),
            "--certs".into(),
            CERTS_DIR.into(),
            "--cluster-name".into(),
            c.name.clone(),
        ]
    }

    fn pod_metadata(&self, labels: Map<String, Value>) -> Value {
        let mut metadata = json!({ "labels": labels });
        if !self.spec.cluster.annotations.is_empty() {
            metadata["annotations"] = json!(self.spec.cluster.annotations);
        }
        metadata
    }

    /// A pod of one `leman` container with `args`, `resources` as both
    /// requests and limits, and the certificate of `role` alone mounted.
    #[allow(clippy::too_many_arguments)]
    fn pod(
        &self,
        role: &str,
        image: &str,
        args: Vec<String>,
        resources: Value,
        has_gpus: bool,
        node_selector: &std::collections::BTreeMap<String, String>,
        tolerations: &[Toleration],
    ) -> Value {
        let c = &self.spec.cluster;
        let mut env = vec![json!({ "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } })];
        env.extend(c.env.iter().map(|(name, value)| json!({ "name": name, "value": value })));
        if !has_gpus && !c.env.contains_key("NVIDIA_VISIBLE_DEVICES") {
            // The NVIDIA runtime would otherwise show every GPU of the node.
            env.push(json!({ "name": "NVIDIA_VISIBLE_DEVICES", "value": "none" }));
        }
        let probe = |path: &str, period: u32| {
            json!({ "httpGet": { "path": path, "port": "http" }, "periodSeconds": period, "failureThreshold": 3 })
        };
        let mut container = json!({
            "name": CONTAINER,
            "image": image,
            "imagePullPolicy": c.image_pull_policy.as_str(),
            "command": ["leman"],
            "args": args,
            "ports": [
                { "name": "quic", "containerPort": c.port, "protocol": "UDP" },
                { "name": "http", "containerPort": c.http_port, "protocol": "TCP" },
            ],
            "env": env,
            "resources": { "requests": resources.clone(), "limits": resources },
            "livenessProbe": probe("/livez", 10),
            "readinessProbe": probe("/readyz", 5),
            "volumeMounts": [{ "name": "certs", "mountPath": CERTS_DIR, "readOnly": true }],
        });
        if !c.env_from_secrets.is_empty() {
            container["envFrom"] = c.env_from_secrets.iter().map(|name| json!({ "secretRef": { "name": name } })).collect();
        }
        let items: Vec<Value> = ["ca.pem".to_string(), format!("{role}.pem"), format!("{role}.key")]
            .iter()
            .map(|file| json!({ "key": file, "path": file }))
            .collect();
        let mut pod = json!({
            "serviceAccountName": self.spec.service_account(),
            "containers": [container],
            // Read-only, and readable by whatever user the image runs as:
            // the files are seen by this pod's container alone.
            // Only the CA and this role's certificate: a worker never holds
            // the head's key, so it cannot pose as the head.
            "volumes": [{ "name": "certs", "secret": {
                "secretName": self.spec.certs_secret(),
                "defaultMode": 0o444,
                "items": items,
            } }],
        });
        if !c.image_pull_secrets.is_empty() {
            pod["imagePullSecrets"] = c.image_pull_secrets.iter().map(|name| json!({ "name": name })).collect();
        }
        if !node_selector.is_empty() {
            pod["nodeSelector"] = json!(node_selector);
        }
        if !tolerations.is_empty() {
            pod["tolerations"] = tolerations.iter().map(toleration).collect();
        }
        pod
    }

    fn network_policies(&self) -> Vec<Value> {
        let c = &self.spec.cluster;
        let cluster_pods = json!({ "matchLabels": self.selector(&[]) });
        vec![
            self.object(
                "networking.k8s.io/v1",
                "NetworkPolicy",
                &c.name,
                self.labels(&[]),
                json!({
                    "spec": {
                        "podSelector": cluster_pods,
                        "policyTypes": ["Ingress"],
                        "ingress": [
                            { "from": [{ "podSelector": cluster_pods }], "ports": [{ "protocol": "UDP", "port": c.port }] },
                            { "ports": [{ "protocol": "TCP", "port": c.http_port }] },
                        ],
                    },
                }),
            ),
            // Clients submit jobs to the head from anywhere (certificates
            // guard it).
            self.object(
                "networking.k8s.io/v1",
                "NetworkPolicy",
                &format!("{}-clients", self.spec.head_service()),
                self.head_labels(),
                json!({
                    "spec": {
                        "podSelector": { "matchLabels": self.head_selector() },
                        "policyTypes": ["Ingress"],
                        "ingress": [{ "ports": [{ "protocol": "UDP", "port": c.port }] }],
                    },
                }),
            ),
        ]
    }

    fn disruption_budget(&self, group: &WorkerGroup) -> Value {
        self.object(
            "policy/v1",
            "PodDisruptionBudget",
            &self.spec.worker_deployment(group),
            self.worker_labels(group),
            json!({ "spec": { "maxUnavailable": 1, "selector": { "matchLabels": self.worker_selector(group) } } }),
        )
    }
}

/// The labels that tell the head's pod from the others.
const HEAD: [(&str, &str); 1] = [("app.kubernetes.io/component", "head")];

/// The labels that tell a worker group's pods from the others.
fn worker(group: &WorkerGroup) -> [(&str, &str); 2] {
    [("app.kubernetes.io/component", "worker"), ("leman.dev/worker-group", &group.name)]
}

fn toleration(t: &Toleration) -> Value {
    let mut out = Map::new();
    if let Some(key) = &t.key {
        out.insert("key".into(), key.clone().into());
    }
    if let Some(operator) = t.operator {
        let operator = match operator {
            TolerationOperator::Equal => "Equal",
            TolerationOperator::Exists => "Exists",
        };
        out.insert("operator".into(), operator.into());
    }
    if let Some(value) = &t.value {
        out.insert("value".into(), value.clone().into());
    }
    if let Some(effect) = t.effect {
        let effect = match effect {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        };
        out.insert("effect".into(), effect.into());
    }
    if let Some(seconds) = t.toleration_seconds {
        out.insert("tolerationSeconds".into(), seconds.into());
    }
    Value::Object(out)
}
