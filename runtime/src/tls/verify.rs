//! The handshake's checks beyond the CA's signature, on both ends: the
//! peer's certificate must carry a leman role, be valid now (a refusal
//! names its dates) and not be revoked. Session resumption is off on both
//! ends (see [`super::ClusterCerts`]), so every connection is checked anew.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme};
use time::OffsetDateTime;

use super::identity::Identity;
use super::revoked::Revocations;

/// Why a peer's certificate is refused, in words.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refusal(String);

fn refuse(reason: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refusal(reason)))))
}

/// The leman checks of a peer's certificate at `now`.
fn check(certificate: &CertificateDer<'_>, now: UnixTime, revocations: Option<&Revocations>) -> Result<(), rustls::Error> {
    let identity = Identity::of(certificate).map_err(refuse)?;
    let now = OffsetDateTime::from_unix_timestamp(i64::try_from(now.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    identity.check_dates(now).map_err(refuse)?;
    if revocations.is_some_and(|r| r.is_revoked(&identity.fingerprint)) {
        tracing::warn!(%identity, "refused a revoked certificate");
        return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
    }
    Ok(())
}

/// The handshake-signature checks, left to the wrapped webpki verifier.
macro_rules! signatures_of_inner {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            certificate: &CertificateDer<'_>,
            signature: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, certificate, signature)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            certificate: &CertificateDer<'_>,
            signature: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, certificate, signature)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// A server's check of its clients.
#[derive(Debug)]
pub(crate) struct ClientVerifier {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub revocations: Option<Arc<Revocations>>,
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check(end_entity, now, self.revocations.as_deref())?;
        self.inner.verify_client_cert(end_entity, intermediates, now)
    }

    signatures_of_inner!();
}

/// A client's check of the servers it connects to.
#[derive(Debug)]
pub(crate) struct ServerVerifier {
    pub inner: Arc<dyn ServerCertVerifier>,
    pub revocations: Option<Arc<Revocations>>,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        check(end_entity, now, self.revocations.as_deref())?;
        self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    signatures_of_inner!();
}
