//! Where a table is: URIs as checkpoints and job records key them, and
//! opening the dataset behind one.
//!
//! A local path is made absolute, so that a table is keyed the same way from
//! any working directory and from any process that shares its file system;
//! object store URIs are kept as they are. A scheme is accepted only when
//! its object store is built in (the `aws` and `gcp` features).

use lance::Dataset;

use crate::error::{Error, Result};

/// The canonical form of a table or database URI: an absolute local path
/// without a trailing `/`, or a URI of an enabled object store.
pub fn normalize_uri(uri: &str) -> Result<String> {
    if uri.is_empty() {
        return Err(Error::InvalidUri { uri: uri.to_string(), reason: "it is empty".to_string() });
    }
    if let Some((scheme, _)) = uri.split_once("://") {
        return match scheme {
            "file" | "memory" => Ok(uri.trim_end_matches('/').to_string()),
            "s3" | "s3a" if cfg!(feature = "aws") => Ok(uri.to_string()),
            "gs" if cfg!(feature = "gcp") => Ok(uri.to_string()),
            other => Err(Error::InvalidUri {
                uri: uri.to_string(),
                reason: format!("scheme {other}:// is not enabled; build leman with the aws or gcp feature"),
            }),
        };
    }
    let path = std::path::absolute(uri)?;
    Ok(path.to_string_lossy().trim_end_matches('/').to_string())
}

/// The latest version of the dataset at `uri`, freshly opened.
pub async fn open_dataset(uri: &str) -> Result<Dataset> {
    Dataset::open(uri).await.map_err(|source| Error::TableNotFound { uri: uri.to_string(), source })
}
