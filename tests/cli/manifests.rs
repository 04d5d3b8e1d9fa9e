//! `leman cluster manifests`: every example spec renders, and the result
//! passes `kubernetes-validate --strict` against Kubernetes 1.29 and the
//! newest version it bundles; a bad spec prints one error line and nothing
//! on stdout. `scripts/test` installs kubernetes-validate into its virtual
//! environment and names it in `LEMAN_KUBERNETES_VALIDATE`.

use std::path::PathBuf;
use std::process::Command;

use crate::cli::{fails, leman, ok};

/// The Kubernetes versions the manifests must be valid for: the oldest we
/// support and the newest the validator bundles.
const VERSIONS: [&str; 2] = ["1.29.0", "1.37.0"];

fn examples() -> Vec<PathBuf> {
    let dir = crate::manifest_dir().join("kubernetes");
    let mut specs: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "toml")).collect();
    specs.sort();
    specs
}

#[test]
fn every_example_spec_renders_manifests_kubernetes_accepts() {
    let validate = std::env::var("LEMAN_KUBERNETES_VALIDATE").unwrap_or_else(|_| {
        panic!("LEMAN_KUBERNETES_VALIDATE must name the kubernetes-validate command; scripts/test sets it up")
    });
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    ok(leman(&["cluster", "init", "--dir", certs.to_str().unwrap()]));
    let examples = examples();
    assert!(examples.len() >= 2, "{examples:?}");
    for spec in examples {
        let rendered = dir.path().join(spec.file_name().unwrap()).with_extension("yaml");
        let args = ["cluster", "manifests", "--spec", spec.to_str().unwrap(), "--embed-certs", certs.to_str().unwrap(), "-o", rendered.to_str().unwrap()];
        assert_eq!(ok(leman(&args)), "", "written to the file, not stdout");
        let yaml = std::fs::read_to_string(&rendered).unwrap();
        let ca_key = std::fs::read_to_string(certs.join("ca.key")).unwrap();
        assert!(!yaml.contains(ca_key.trim()), "the CA's private key is never embedded");
        for version in VERSIONS {
            let output = Command::new(&validate).args(["--strict", "-k", version]).arg(&rendered).output().unwrap();
            let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            assert!(output.status.success(), "{} against Kubernetes {version}:\n{report}", spec.display());
            assert!(!report.contains("ERROR") && !report.contains("WARN"), "{report}");
        }
        let plain = ok(leman(&["cluster", "manifests", "--spec", spec.to_str().unwrap()]));
        assert!(plain.contains("kind: StatefulSet") && !plain.contains("kind: Secret"), "a Secret only when asked to embed one");
    }
}

#[test]
fn a_bad_spec_prints_one_error_line_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("bad.toml");
    std::fs::write(&spec, "[cluster]\nimage = \"leman:1\"\n\n[[workers]]\nname = \"cpu\"\ncpus = 2\nmemory = \"8Gx\"\n").unwrap();
    let output = leman(&["cluster", "manifests", "--spec", spec.to_str().unwrap()]);
    assert!(output.stdout.is_empty(), "nothing on stdout");
    let line = fails(output);
    assert!(line.contains("bad.toml") && line.contains("workers[0].memory") && line.contains("\"8Gx\""), "{line}");
    let missing = fails(leman(&["cluster", "manifests", "--spec", dir.path().join("absent.toml").to_str().unwrap()]));
    assert!(missing.contains("cannot read the cluster spec"), "{missing}");
}
