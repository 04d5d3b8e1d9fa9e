//! Who a certificate says its holder is: a [`Role`] (its subject's OU), a
//! name (its CN), the SHA-256 fingerprint revocation lists name, and the
//! dates it is valid between.

use std::fmt;
use std::str::FromStr;

use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What a node may do in its cluster, as its certificate says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Runs jobs and takes workers' joins.
    Head,
    /// Joins a head and runs the work it is given.
    Worker,
    /// Submits, shows and cancels jobs (the CLI's cluster commands).
    Client,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::Head, Role::Worker, Role::Client];

    /// As certificates and file names spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Head => "head",
            Role::Worker => "worker",
            Role::Client => "client",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| format!("unknown role {text:?}; choose head, worker or client"))
    }
}

/// Names a list of roles: `head`, `client or head`.
pub fn describe(roles: &[Role]) -> String {
    roles.iter().map(|role| role.as_str()).collect::<Vec<_>>().join(" or ")
}

/// What a node's certificate says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Its role.
    pub role: Role,
    /// Its name (`--name` when issued).
    pub name: String,
    /// SHA-256 of the certificate, in hex: what `--revoked` lists.
    pub fingerprint: String,
    /// Valid from.
    pub not_before: OffsetDateTime,
    /// Valid until.
    pub not_after: OffsetDateTime,
}

impl Identity {
    /// Reads a leman certificate; an error says what it lacks.
    pub fn of(certificate: &CertificateDer<'_>) -> Result<Self, String> {
        let (_, parsed) = x509_parser::parse_x509_certificate(certificate).map_err(|e| format!("unreadable certificate: {e}"))?;
        let subject = parsed.subject();
        let role = subject
            .iter_organizational_unit()
            .find_map(|unit| unit.as_str().ok())
            .ok_or("the certificate carries no leman role (it was made by an older leman: issue one with `leman cluster issue`)")?;
        let role = role.parse::<Role>()?;
        let name = subject.iter_common_name().find_map(|name| name.as_str().ok()).unwrap_or_default().to_string();
        let validity = parsed.validity();
        Ok(Self {
            role,
            name,
            fingerprint: fingerprint(certificate),
            not_before: validity.not_before.to_datetime(),
            not_after: validity.not_after.to_datetime(),
        })
    }

    /// `Err` naming the dates when the certificate is not valid at `now`.
    pub fn check_dates(&self, now: OffsetDateTime) -> Result<(), String> {
        if now < self.not_before || now > self.not_after {
            let state = if now < self.not_before { "not valid yet" } else { "expired" };
            return Err(format!(
                "the certificate of {} {:?} is {state}: valid from {} until {}, and it is {}",
                self.role,
                self.name,
                date(self.not_before),
                date(self.not_after),
                date(now)
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} (certificate {})", self.role, self.name, &self.fingerprint[..16.min(self.fingerprint.len())])
    }
}

/// A certificate's SHA-256, in lowercase hex.
pub fn fingerprint(certificate: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(certificate.as_ref()))
}

/// A date as RFC 3339.
pub fn date(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}
