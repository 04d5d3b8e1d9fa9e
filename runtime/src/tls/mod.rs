//! Cluster identity: a CA made once per cluster, and certificates it
//! signs for each node, each carrying a [`Role`] and a name. Nodes
//! authenticate each other with mutual TLS 1.3: a node presents its
//! certificate and accepts a peer only if the peer's certificate chains to
//! the cluster CA, carries a role, is valid now and is not revoked
//! ([`Revocations`]); a node without them is refused during the handshake.
//! What each role may ask is the service's to say
//! ([`Service::roles_for`](crate::Service::roles_for)).
//!
//! `leman cluster init --dir DIR` writes `ca.pem`, `ca.key` (keep it safe;
//! it is needed only to issue certificates) and a certificate per role
//! (`head.pem`, `worker.pem`, `client.pem`, each with its key), so that
//! the one directory serves as `--certs` for every process of a local
//! cluster. `leman cluster issue` issues one certificate for one node into
//! a directory of its own (`ca.pem`, `ROLE.pem`, `ROLE.key`): give each
//! node only its own. Every certificate names [`SERVER_NAME`], which
//! clients check instead of an address, so one certificate serves any
//! address.

mod identity;
mod revoked;
mod verify;

pub use identity::{Identity, Role, date, describe, fingerprint};
pub use revoked::Revocations;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use time::{Duration as Days, OffsetDateTime};

use crate::error::RuntimeError;
use verify::{ClientVerifier, ServerVerifier};

/// The name every node certificate carries and every client checks.
pub const SERVER_NAME: &str = "leman-node";
/// ALPN protocol of the node-to-node protocol.
pub const ALPN: &[u8] = b"leman/1";
/// How long a certificate is valid unless told (`--days`).
pub const DEFAULT_DAYS: u32 = 365;

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";

fn ca_params() -> Result<CertificateParams, RuntimeError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "leman cluster CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

/// Creates a cluster CA in `dir` and a certificate per role beside it
/// (named after its role); refuses to overwrite an existing CA.
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
    for role in Role::ALL {
        issue(dir, role, role.as_str(), dir, DEFAULT_DAYS)?;
    }
    Ok(())
}

/// Issues a certificate for a node of `role` named `name`, valid for
/// `days` from now, from the CA in `ca_dir`; writes `ROLE.pem`, `ROLE.key`
/// and a copy of `ca.pem` into `out`. Returns its identity.
pub fn issue(ca_dir: &Path, role: Role, name: &str, out: &Path, days: u32) -> Result<Identity, RuntimeError> {
    let now = OffsetDateTime::now_utc();
    // A minute's grace for clocks a little behind.
    issue_valid(ca_dir, role, name, out, now - Days::minutes(1), now + Days::days(i64::from(days)))
}

/// As [`issue`], valid from `not_before` until `not_after`.
pub fn issue_valid(
    ca_dir: &Path,
    role: Role,
    name: &str,
    out: &Path,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<Identity, RuntimeError> {
    let ca_cert = read(ca_dir, CA_CERT)?;
    let ca_key = KeyPair::from_pem(&read(ca_dir, CA_KEY)?).map_err(cert_error)?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut params = CertificateParams::new(vec![SERVER_NAME.to_string()]).map_err(cert_error)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.distinguished_name.push(DnType::OrganizationalUnitName, role.as_str());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages =
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate().map_err(cert_error)?;
    let cert = params.signed_by(&key, &issuer).map_err(cert_error)?;
    std::fs::create_dir_all(out).map_err(|e| io_error(out, e))?;
    if out != ca_dir {
        write(out, CA_CERT, &ca_cert)?;
    }
    write(out, &format!("{role}.pem"), &cert.pem())?;
    write(out, &format!("{role}.key"), &key.serialize_pem())?;
    Identity::of(cert.der()).map_err(|reason| RuntimeError::Certs { path: out.join(format!("{role}.pem")), reason })
}

/// What a node needs to take part in a cluster: the CA to trust, its own
/// certificate and key, and the certificates it refuses.
#[derive(Debug, Clone)]
pub struct ClusterCerts {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    identity: Identity,
    revocations: Option<Arc<Revocations>>,
}

impl ClusterCerts {
    /// Loads `ca.pem` and the certificate of `role` (`ROLE.pem`,
    /// `ROLE.key`) from `dir`; refuses one whose role is another, or that
    /// is not valid now (naming its dates).
    pub fn load(dir: &Path, role: Role) -> Result<Self, RuntimeError> {
        let ca = read(dir, CA_CERT)?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            let cert = cert.map_err(|e| pem_error(&dir.join(CA_CERT), e))?;
            roots.add(cert).map_err(|e| RuntimeError::Certs { path: dir.join(CA_CERT), reason: e.to_string() })?;
        }
        let cert_name = format!("{role}.pem");
        let cert_path = dir.join(&cert_name);
        if !cert_path.exists() && dir.join("node.pem").exists() {
            return Err(RuntimeError::Certs {
                path: cert_path,
                reason: format!(
                    "{} holds one certificate for every node (made by an older leman); certificates now carry a role: \
                     make new ones with `leman cluster init --dir NEW_DIR` or `leman cluster issue`",
                    dir.display()
                ),
            });
        }
        let chain = CertificateDer::pem_slice_iter(read(dir, &cert_name)?.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(&cert_path, e))?;
        let key_name = format!("{role}.key");
        let key = PrivateKeyDer::from_pem_slice(read(dir, &key_name)?.as_bytes()).map_err(|e| pem_error(&dir.join(&key_name), e))?;
        let leaf = chain.first().ok_or_else(|| RuntimeError::Certs { path: cert_path.clone(), reason: "no certificate in it".into() })?;
        let certs_error = |reason: String| RuntimeError::Certs { path: cert_path.clone(), reason };
        let identity = Identity::of(leaf).map_err(certs_error)?;
        if identity.role != role {
            return Err(certs_error(format!("it is a {} certificate; a {role} needs a {role} certificate", identity.role)));
        }
        identity.check_dates(OffsetDateTime::now_utc()).map_err(|e| certs_error(format!("{e}; issue a new one with `leman cluster issue`")))?;
        Ok(Self { roots: Arc::new(roots), chain, key: Arc::new(key), identity, revocations: None })
    }

    /// [`load`](Self::load), then refuse the peers the file `revoked`
    /// lists (if given; see [`Revocations`]).
    pub fn load_revoking(dir: &Path, role: Role, revoked: Option<&Path>) -> Result<Self, RuntimeError> {
        let certs = Self::load(dir, role)?;
        Ok(match revoked {
            Some(path) => certs.with_revocations(Arc::new(Revocations::load(path)?)),
            None => certs,
        })
    }

    /// The same certificates, refusing the peers that `revocations` lists.
    pub fn with_revocations(mut self, revocations: Arc<Revocations>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// Who this node is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The certificates it refuses, if it was given a list.
    pub fn revocations(&self) -> Option<&Arc<Revocations>> {
        self.revocations.as_ref()
    }

    pub(crate) fn server_config(&self) -> Result<quinn::ServerConfig, RuntimeError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider.clone())
            .build()
            .map_err(|e| tls_error(e.to_string()))?;
        let verifier = Arc::new(ClientVerifier { inner: webpki, revocations: self.revocations.clone() });
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| tls_error(e.to_string()))?;
        // No resumption: a resumed session would skip the checks above.
        tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        tls.send_tls13_tickets = 0;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| tls_error(e.to_string()))?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
    }

    pub(crate) fn client_config(&self) -> Result<quinn::ClientConfig, RuntimeError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider.clone())
            .build()
            .map_err(|e| tls_error(e.to_string()))?;
        let verifier = Arc::new(ServerVerifier { inner: webpki, revocations: self.revocations.clone() });
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| tls_error(e.to_string()))?;
        tls.resumption = rustls::client::Resumption::disabled();
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
