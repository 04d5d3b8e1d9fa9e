//! How a table's object store is reached: its storage options, and what a
//! refused or unreachable store means to the user.
//!
//! Storage options are the keys lance and pylance take (`aws_endpoint`,
//! `aws_region`, `aws_access_key_id`, `aws_secret_access_key`,
//! `allow_http`, `google_service_account`, `azure_storage_account_name`,
//! ...). Whatever the process's environment sets (`AWS_ACCESS_KEY_ID`,
//! `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...) is read by the object store
//! itself; options given here take precedence over it.
//!
//! Some options are secrets (keys, tokens, passwords). [`StorageOptions`]
//! travels whole only where it must (to the workers of a job, over the
//! cluster's TLS); its `Debug` form and [`StorageOptions::redacted`], which
//! job records keep, show each secret as [`REDACTED`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

/// What a secret's value is shown as.
pub const REDACTED: &str = "***";

/// Options of a table's object store, by lance's key names.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StorageOptions(BTreeMap<String, String>);

impl StorageOptions {
    /// No options: the environment alone decides.
    pub fn new() -> Self {
        Self::default()
    }

    /// These options and `key` = `value`.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(key, value);
        self
    }

    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The options with every secret's value replaced by [`REDACTED`]: what
    /// may be logged, recorded and shown.
    pub fn redacted(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(key, value)| {
                let shown = if is_secret(key) { REDACTED.to_string() } else { value.clone() };
                (key.clone(), shown)
            })
            .collect()
    }

    /// The options as lance's builders take them.
    pub(crate) fn to_lance(&self) -> HashMap<String, String> {
        self.0.iter().map(|(key, value)| (key.clone(), value.clone())).collect()
    }
}

impl fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.redacted()).finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for StorageOptions {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        Self(pairs.into_iter().map(|(key, value)| (key.into(), value.into())).collect())
    }
}

/// Whether the option `key` holds a secret: a secret key, a session token,
/// a password, an account key or SAS, a service account key or a path to
/// credentials. Conservative: an unknown key that looks like one is one.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "token", "password", "credential", "sas", "signature"].iter().any(|word| key.contains(word))
        || key.ends_with("_key")
        || key == "key"
}

/// Why a table's object store could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageProblem {
    /// The store refused the credentials (or there were none it accepts).
    Denied,
    /// The bucket (or container) does not exist.
    NoBucket,
    /// The endpoint could not be reached.
    Unreachable,
}

impl StorageProblem {
    /// One line: what is wrong with `uri`, and what to set.
    pub fn describe(&self, uri: &str, detail: &str) -> String {
        let scheme = uri.split_once("://").map_or("", |(scheme, _)| scheme);
        match self {
            Self::Denied => format!("the object store refused the credentials for {uri} ({detail}); {}", credentials_hint(scheme)),
            Self::NoBucket => {
                let bucket = uri.split_once("://").and_then(|(_, rest)| rest.split('/').next()).unwrap_or_default();
                format!(
                    "bucket {bucket} of {uri} does not exist ({detail}); create it, or fix the URI{}",
                    if matches!(scheme, "s3" | "s3a") { " or the endpoint (AWS_ENDPOINT_URL or --storage-option aws_endpoint=URL)" } else { "" }
                )
            }
            Self::Unreachable => format!("cannot reach the object store of {uri} ({detail}); {}", endpoint_hint(scheme)),
        }
    }
}

fn credentials_hint(scheme: &str) -> &'static str {
    match scheme {
        "gs" => "set GOOGLE_SERVICE_ACCOUNT (a key file) or pass --storage-option google_service_account_key=JSON",
        "az" | "abfss" => {
            "set AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY, or pass --storage-option azure_storage_account_key=KEY"
        }
        _ => {
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), or pass --storage-option aws_access_key_id=ID --storage-option aws_secret_access_key=KEY"
        }
    }
}

fn endpoint_hint(scheme: &str) -> &'static str {
    match scheme {
        "s3" | "s3a" => {
            "check the endpoint (AWS_ENDPOINT_URL or --storage-option aws_endpoint=URL, with allow_http=true for http://) and the network"
        }
        _ => "check the network and the store's endpoint options",
    }
}

/// The storage error behind `error` on `uri`, if it is one a user can fix
/// by setting something: refused credentials, a missing bucket, an
/// unreachable endpoint. Local paths have none.
pub(crate) fn storage_error(uri: &str, error: &(dyn std::error::Error + 'static)) -> Option<crate::Error> {
    if !uri.contains("://") || uri.starts_with("file://") || uri.starts_with("memory://") {
        return None;
    }
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    let code = s3_error_code(&text);
    let problem = match code.as_deref() {
        Some("NoSuchBucket" | "ContainerNotFound") => StorageProblem::NoBucket,
        Some(
            "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied" | "InvalidClientTokenId" | "ExpiredToken"
            | "InvalidToken" | "AuthenticationFailed" | "AuthorizationFailure",
        ) => StorageProblem::Denied,
        _ if text.contains("403 Forbidden") || text.contains("401 Unauthorized") => StorageProblem::Denied,
        _ if UNREACHABLE.iter().any(|sign| text.contains(sign)) => StorageProblem::Unreachable,
        _ => return None,
    };
    let detail = code.unwrap_or_else(|| last_line(&text));
    Some(crate::Error::Storage { uri: uri.to_string(), problem, detail })
}

/// How connection failures read in the HTTP client's errors.
const UNREACHABLE: &[&str] =
    &["error sending request", "Connection refused", "connection refused", "dns error", "tcp connect", "timed out", "Connect"];

/// The `<Code>` of an S3 (or Azure) XML error body quoted in `text`.
fn s3_error_code(text: &str) -> Option<String> {
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")? + start;
    Some(text[start..end].to_string())
}

/// The innermost cause of a joined error chain, on one line.
fn last_line(text: &str) -> String {
    let last = text.rsplit(": ").find(|part| !part.trim().is_empty()).unwrap_or(text);
    last.split_whitespace().collect::<Vec<_>>().join(" ")
}
