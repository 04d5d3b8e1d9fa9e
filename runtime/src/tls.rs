//! Cluster identity: a CA made once per cluster, and node certificates it
//! signs. Nodes authenticate each other with mutual TLS 1.3: a node presents
//! its certificate and accepts a peer only if the peer's certificate chains
//! to the cluster CA, so a node without the cluster's files is refused during
//! the handshake.
//!
//! `leman cluster init --dir DIR` writes `ca.pem`, `ca.key` (keep it safe; it
//! is needed only to issue more node certificates), `node.pem` and `node.key`
//! (copy these and `ca.pem` to every node). Every node certificate names
//! [`SERVER_NAME`], which clients check instead of an address, so one
//! certificate serves any address.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::error::RuntimeError;

/// The name every node certificate carries and every client checks.
pub const SERVER_NAME: &str = "leman-node";
/// ALPN protocol of the node-to-node protocol.
pub const ALPN: &[u8] = b"leman/1";

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const NODE_CERT: &str = "node.pem";
const NODE_KEY: &str = "node.key";

fn ca_params() -> Result<CertificateParams, RuntimeError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "leman cluster CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

/// Creates a cluster CA and a node certificate in `dir`; refuses to
/// overwrite an existing CA.
pub fn init_cluster(dir: &Path) -> Result<(), RuntimeError> {
    if dir.join(CA_CERT).exists() {
        return Err(RuntimeError::Certs {
            path: dir.join(CA_CERT),
            reason: "a cluster CA already exists here; use another directory or remove it first".to_string(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let ca_key = KeyPair::generate().map_err(cert_error)?;
    let ca_cert = ca_params()?.self_signed(&ca_key).map_err(cert_error)?;
    write(dir, CA_CERT, &ca_cert.pem())?;
    write(dir, CA_KEY, &ca_key.serialize_pem())?;
    issue_node_cert(dir)
}

/// Issues a new node certificate (`node.pem`, `node.key`) from the CA in `dir`.
pub fn issue_node_cert(dir: &Path) -> Result<(), RuntimeError> {
    let ca_key_pem = read(dir, CA_KEY)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(cert_error)?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut params = CertificateParams::new(vec![SERVER_NAME.to_string()]).map_err(cert_error)?;
    params.distinguished_name.push(DnType::CommonName, SERVER_NAME);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages =
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().map_err(cert_error)?;
    let cert = params.signed_by(&key, &issuer).map_err(cert_error)?;
    write(dir, NODE_CERT, &cert.pem())?;
    write(dir, NODE_KEY, &key.serialize_pem())
}

/// What a node needs to take part in a cluster: the CA to trust and its own
/// certificate and key.
#[derive(Debug, Clone)]
pub struct ClusterCerts {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl ClusterCerts {
    /// Loads `ca.pem`, `node.pem` and `node.key` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, RuntimeError> {
        let ca = read(dir, CA_CERT)?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            let cert = cert.map_err(|e| pem_error(&dir.join(CA_CERT), e))?;
            roots.add(cert).map_err(|e| RuntimeError::Certs { path: dir.join(CA_CERT), reason: e.to_string() })?;
        }
        let chain = CertificateDer::pem_slice_iter(read(dir, NODE_CERT)?.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(&dir.join(NODE_CERT), e))?;
        let key = PrivateKeyDer::from_pem_slice(read(dir, NODE_KEY)?.as_bytes()).map_err(|e| pem_error(&dir.join(NODE_KEY), e))?;
        Ok(Self { roots: Arc::new(roots), chain, key: Arc::new(key) })
    }

    pub(crate) fn server_config(&self) -> Result<quinn::ServerConfig, RuntimeError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider.clone())
            .build()
            .map_err(|e| tls_error(e.to_string()))?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| tls_error(e.to_string()))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| tls_error(e.to_string()))?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
    }

    pub(crate) fn client_config(&self) -> Result<quinn::ClientConfig, RuntimeError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error(e.to_string()))?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| tls_error(e.to_string()))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| tls_error(e.to_string()))?;
        Ok(quinn::ClientConfig::new(Arc::new(crypto)))
    }
}

fn read(dir: &Path, name: &str) -> Result<String, RuntimeError> {
    let path = dir.join(name);
    std::fs::read_to_string(&path).map_err(|e| RuntimeError::Certs {
        reason: format!("{e}; create the cluster's files with `leman cluster init --dir {}`", dir.display()),
        path,
    })
}

fn write(dir: &Path, name: &str, contents: &str) -> Result<(), RuntimeError> {
    let path = dir.join(name);
    std::fs::write(&path, contents).map_err(|e| io_error(&path, e))?;
    if name.ends_with(".key") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|e| io_error(&path, e))?;
    }
    Ok(())
}

fn cert_error(error: rcgen::Error) -> RuntimeError {
    RuntimeError::Certs { path: PathBuf::new(), reason: error.to_string() }
}

fn pem_error(path: &Path, error: rustls::pki_types::pem::Error) -> RuntimeError {
    RuntimeError::Certs { path: path.to_path_buf(), reason: error.to_string() }
}

fn io_error(path: &Path, error: std::io::Error) -> RuntimeError {
    RuntimeError::Certs { path: path.to_path_buf(), reason: error.to_string() }
}

fn tls_error(reason: String) -> RuntimeError {
    RuntimeError::Certs { path: PathBuf::new(), reason }
}
