//! The manifests of every example spec, checked for what a schema cannot
//! see, and every kind of bad spec refused with one line naming the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use leman_deploy::{ClusterSpec, EmbeddedCerts, manifests, names, render};
use serde_json::Value;

fn examples() -> Vec<(PathBuf, ClusterSpec)> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from).join("../kubernetes");
    let mut specs: Vec<(PathBuf, ClusterSpec)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .map(|path| {
            let spec = ClusterSpec::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, spec)
        })
        .collect();
    specs.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(specs.len() >= 2, "a CPU and a GPU example at least");
    specs
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// Whether every label of `selector` is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().unwrap();
    !selector.is_empty() && selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

fn pod_templates(objects: &[Value]) -> Vec<&Value> {
    objects.iter().filter(|o| o["kind"] == "StatefulSet" || o["kind"] == "Deployment").collect()
}

fn containers(objects: &[Value]) -> Vec<&Value> {
    pod_templates(objects).into_iter().flat_map(|o| o["spec"]["template"]["spec"]["containers"].as_array().unwrap()).collect()
}

fn env(container: &Value, name: &str) -> Option<String> {
    container["env"].as_array().unwrap().iter().find(|e| e["name"] == name).map(|e| e["value"].as_str().unwrap_or("").to_string())
}

fn arg_after<'a>(container: &'a Value, flag: &str) -> &'a str {
    let args = container["args"].as_array().unwrap();
    let at = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    args[at + 1].as_str().unwrap()
}

#[test]
fn selectors_match_the_pods_they_select() {
    for (path, spec) in examples() {
        let objects = manifests(&spec, None).unwrap();
        for object in pod_templates(&objects) {
            let labels = &object["spec"]["template"]["metadata"]["labels"];
            assert!(selects(&object["spec"]["selector"]["matchLabels"], labels), "{}: {}", path.display(), object["metadata"]["name"]);
        }
        let head = &of_kind(&objects, "StatefulSet")[0]["spec"]["template"]["metadata"]["labels"];
        for service in of_kind(&objects, "Service") {
            assert!(selects(&service["spec"]["selector"], head), "{}: a Service that misses the head", path.display());
        }
        let workers: Vec<&Value> = of_kind(&objects, "Deployment").iter().map(|d| &d["spec"]["template"]["metadata"]["labels"]).collect();
        for service in of_kind(&objects, "Service") {
            assert!(!workers.iter().any(|labels| selects(&service["spec"]["selector"], labels)), "a head Service selects workers");
        }
        for budget in of_kind(&objects, "PodDisruptionBudget") {
            let selected = workers.iter().filter(|labels| selects(&budget["spec"]["selector"]["matchLabels"], labels)).count();
            assert_eq!(selected, 1, "a budget covers exactly its group");
        }
        for policy in of_kind(&objects, "NetworkPolicy") {
            assert!(selects(&policy["spec"]["podSelector"]["matchLabels"], head), "every policy covers the head");
        }
    }
}

#[test]
fn workers_join_the_head_service_by_dns_and_advertise_their_pod_ip() {
    for (path, spec) in examples() {
        let objects = manifests(&spec, None).unwrap();
        let service = of_kind(&objects, "Service").into_iter().find(|s| s["spec"]["clusterIP"] == "None").expect("a headless Service");
        assert_eq!(service["spec"]["publishNotReadyAddresses"], true);
        let name = service["metadata"]["name"].as_str().unwrap();
        let namespace = service["metadata"]["namespace"].as_str().unwrap();
        let quic = service["spec"]["ports"].as_array().unwrap().iter().find(|p| p["protocol"] == "UDP").expect("a UDP port");
        assert_eq!(quic["name"], "quic", "SRV records are _quic._udp");
        let target = format!("dns:{name}.{namespace}.svc.cluster.local:{}", quic["port"]);
        let head = of_kind(&objects, "StatefulSet")[0];
        assert_eq!(head["spec"]["replicas"], 1, "one designated head");
        assert_eq!(head["spec"]["serviceName"], name);
        assert_eq!(arg_after(&head["spec"]["template"]["spec"]["containers"][0], "--cluster-name"), spec.cluster.name);
        for deployment in of_kind(&objects, "Deployment") {
            let container = &deployment["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(arg_after(container, "--join"), target, "{}", path.display());
            assert_eq!(arg_after(container, "--advertise"), format!("$(POD_IP):{}", spec.cluster.port));
            assert_eq!(arg_after(container, "--cluster-name"), spec.cluster.name);
            let pod_ip = container["env"].as_array().unwrap().iter().find(|e| e["name"] == "POD_IP").expect("POD_IP");
            assert_eq!(pod_ip["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP");
        }
    }
}

#[test]
fn every_name_is_dns_1123_and_requests_equal_limits() {
    for (path, spec) in examples() {
        for object in manifests(&spec, None).unwrap() {
            let name = object["metadata"]["name"].as_str().unwrap();
            assert_eq!(names::subdomain(name), Ok(()), "{}", path.display());
            if object["kind"] == "Service" || object["kind"] == "Deployment" || object["kind"] == "StatefulSet" {
                assert_eq!(names::label(name), Ok(()), "{name} must be a label too");
            }
        }
        let objects = manifests(&spec, None).unwrap();
        for container in containers(&objects) {
            assert_eq!(container["resources"]["requests"], container["resources"]["limits"]);
            for probe in ["livenessProbe", "readinessProbe"] {
                assert_eq!(container[probe]["httpGet"]["port"], "http", "the kubelet probes HTTP, not QUIC");
            }
        }
        for (group, deployment) in spec.workers.iter().zip(of_kind(&objects, "Deployment")) {
            let container = &deployment["spec"]["template"]["spec"]["containers"][0];
            let limits = &container["resources"]["limits"];
            if group.gpus > 0 {
                assert_eq!(limits[&group.gpu_resource], group.gpus.to_string());
                assert_eq!(container["resources"]["requests"][&group.gpu_resource], group.gpus.to_string());
                assert_eq!(env(container, "NVIDIA_VISIBLE_DEVICES"), None);
            } else {
                assert!(limits.get(&group.gpu_resource).is_none());
                assert_eq!(env(container, "NVIDIA_VISIBLE_DEVICES").as_deref(), Some("none"), "no GPU seen where none is asked");
            }
            assert_eq!(arg_after(container, "--gpus"), group.gpus.to_string());
            assert_eq!(arg_after(container, "--cpus").parse::<f64>().unwrap(), group.cpus.value());
            assert_eq!(arg_after(container, "--memory").parse::<u64>().unwrap(), group.memory.bytes());
        }
    }
}

#[test]
fn the_yaml_reads_back_as_the_manifests_and_embeds_no_ca_key() {
    let certs = tempfile::tempdir().unwrap();
    let files = [
        ("ca.pem", "CA CERT"),
        ("ca.key", "CA PRIVATE KEY"),
        ("head.pem", "HEAD CERT"),
        ("head.key", "HEAD KEY"),
        ("worker.pem", "WORKER CERT"),
        ("worker.key", "WORKER KEY"),
        ("client.pem", "CLIENT CERT"),
        ("client.key", "CLIENT PRIVATE KEY"),
    ];
    for (file, content) in files {
        std::fs::write(certs.path().join(file), content).unwrap();
    }
    let embedded = EmbeddedCerts::read(certs.path()).unwrap();
    for (path, spec) in examples() {
        let yaml = render(&spec, Some(&embedded)).unwrap();
        let documents: Vec<Value> = yaml
            .split("\n---\n")
            .skip(1)
            .map(|document| serde_yaml_ng::from_str(document).unwrap_or_else(|e| panic!("{}: {e}\n{document}", path.display())))
            .collect();
        assert_eq!(documents, manifests(&spec, Some(&embedded)).unwrap());
        let kinds: Vec<&str> = documents.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        let position = |kind: &str| kinds.iter().position(|k| *k == kind).unwrap_or(usize::MAX);
        assert!(position("Secret") < position("Service") && position("Service") < position("StatefulSet"), "{kinds:?}");
        assert!(position("StatefulSet") < position("Deployment"), "{kinds:?}");
        let secret = of_kind(&documents, "Secret")[0];
        let data: BTreeMap<String, String> = serde_json::from_value(secret["stringData"].clone()).unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), ["ca.pem", "head.key", "head.pem", "worker.key", "worker.pem"]);
        assert!(!yaml.contains("CA PRIVATE KEY"), "the CA's key never leaves its directory");
        assert!(!yaml.contains("CLIENT PRIVATE KEY"), "the client's key stays with whoever submits jobs");
        for (kind, role) in [("StatefulSet", "head"), ("Deployment", "worker")] {
            for object in of_kind(&documents, kind) {
                let items = &object["spec"]["template"]["spec"]["volumes"][0]["secret"]["items"];
                let files: Vec<&str> = items.as_array().unwrap().iter().map(|item| item["key"].as_str().unwrap()).collect();
                assert_eq!(files, ["ca.pem", &format!("{role}.pem"), &format!("{role}.key")], "a {role} mounts its own certificate only");
            }
        }
        assert!(!render(&spec, None).unwrap().contains("kind: Secret"), "no Secret unless asked to embed one");
    }
}

#[test]
fn a_pod_template_fragment_amends_the_pod() {
    let (_, spec) = examples().into_iter().find(|(path, _)| path.ends_with("gpu.toml")).unwrap();
    let objects = manifests(&spec, None).unwrap();
    let gpu = of_kind(&objects, "Deployment").into_iter().find(|d| d["metadata"]["name"] == "embed-worker-a100").unwrap();
    let pod = &gpu["spec"]["template"]["spec"];
    assert_eq!(pod["runtimeClassName"], "nvidia");
    assert_eq!(pod["containers"].as_array().unwrap().len(), 1, "amended, not replaced");
    let shm = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "shm").unwrap();
    assert_eq!(shm["emptyDir"]["sizeLimit"], "16Gi");
}

/// The one-line error for `spec`.
fn refused(spec: &str) -> String {
    let error = ClusterSpec::parse(spec).err().unwrap_or_else(|| panic!("accepted:\n{spec}")).to_string();
    assert!(!error.contains('\n'), "one line: {error}");
    error
}

const GOOD: &str = r#"
[cluster]
image = "leman:1"

[[workers]]
name = "cpu"
cpus = 2
memory = "8Gi"
"#;

#[test]
fn bad_specs_are_refused_naming_the_key() {
    let spec = ClusterSpec::parse(GOOD).unwrap();
    assert_eq!((spec.head.cpus.as_str(), spec.head.memory.as_str()), ("1", "2Gi"), "the head's defaults");
    let spec = ClusterSpec::parse(&GOOD.replace("[[workers]]", "[head]\ncpus = 4\n\n[[workers]]")).unwrap();
    assert_eq!((spec.head.cpus.as_str(), spec.head.memory.as_str()), ("4", "2Gi"), "a key left out keeps its default");
    let error = refused(&GOOD.replace("memory = \"8Gi\"", "memory = \"8Gx\""));
    assert!(error.contains("workers[0].memory") && error.contains("\"8Gx\""), "{error}");
    let error = refused(&GOOD.replace("cpus = 2", "cpus = 2\ngpu = 1"));
    assert!(error.contains("workers[0]") && error.contains("unknown field `gpu`"), "{error}");
    let error = refused(&GOOD.replace("[cluster]", "[cluster]\nimage_pul_policy = \"Always\""));
    assert!(error.contains("cluster") && error.contains("image_pul_policy"), "{error}");
    let error = refused(&format!("{GOOD}\n[[workers]]\nname = \"cpu\"\ncpus = 1\nmemory = \"1Gi\"\n"));
    assert!(error.contains("workers[1].name") && error.contains("second worker group"), "{error}");
    let error = refused("[cluster]\nimage = \"leman:1\"\n");
    assert!(error.contains("key workers") && error.contains("no worker group"), "{error}");
    let error = refused(&GOOD.replace("name = \"cpu\"", "name = \"CPU_pool\""));
    assert!(error.contains("workers[0].name") && error.contains("DNS-1123"), "{error}");
    let error = refused(&GOOD.replace("[cluster]", "[cluster]\nname = \"Leman\""));
    assert!(error.contains("cluster.name") && error.contains("DNS-1123"), "{error}");
    let error = refused(&GOOD.replace("[cluster]", "[cluster]\nnamespace = \"ml team\""));
    assert!(error.contains("cluster.namespace"), "{error}");
    let error = refused(&GOOD.replace("image = \"leman:1\"", ""));
    assert!(error.contains("missing field `image`"), "{error}");
    let error = refused(&GOOD.replace("cpus = 2", "cpus = 0"));
    assert!(error.contains("workers[0].cpus"), "{error}");
    let error = refused("[cluster\nimage = 1");
    assert!(error.starts_with("the cluster spec is not TOML") && error.contains("line 1"), "{error}");
    let error = refused(&GOOD.replace("[cluster]", "[cluster]\nimage_pull_policy = \"Sometimes\""));
    assert!(error.contains("cluster.image_pull_policy"), "{error}");
}
