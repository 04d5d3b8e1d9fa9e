//! Where a table is and how to reach it: a [`TableLocation`] is its URI, as
//! checkpoints and job records key it, and the [`StorageOptions`] of its
//! object store. Every dataset, checkpoint, lease and job record of a table
//! is opened through it.
//!
//! A local path is made absolute, so that a table is keyed the same way from
//! any working directory and from any process that shares its file system;
//! object store URIs are kept as they are. A scheme is accepted only when
//! its object store is built in (`s3://` by default; `gs://` and `az://`
//! with the `gcp` and `azure` features).

use std::fmt;
use std::sync::{Arc, LazyLock};

use lance::Dataset;
use lance::dataset::builder::DatasetBuilder;
use lance::io::{ObjectStoreParams, StorageOptionsAccessor, WrappingObjectStore};
use lance::session::Session;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::{StorageOptions, storage_error};

/// Bytes of immutable table metadata (manifests, file footers, deletion
/// vectors) the process keeps between opens. Small on purpose: a job reads
/// each data file's footer once, so a cache that kept them all would grow
/// with the table (12.6 MB at 100M rows in 400 fragments, 31 KB a
/// fragment) and hold what the job never reads again; 4 MiB still holds
/// the manifests a process opens again (figure 5 of `leman bench` measures
/// the growth).
const METADATA_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Bytes of index pages the process keeps between opens.
const INDEX_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The lance session every dataset of this process is opened with, so that
/// a job, a refresh or a worker that opens a table again reuses its object
/// store (and the connections it holds) and what it read of the table's
/// immutable files, instead of starting cold each time. Stores are keyed by
/// their options and wrapper, so a store is never shared across
/// credentials or meters.
static SESSION: LazyLock<Arc<Session>> =
    LazyLock::new(|| Arc::new(Session::new(INDEX_CACHE_BYTES, METADATA_CACHE_BYTES, Default::default())));

/// A table: its URI and the options of the store that holds it.
#[derive(Clone, Serialize, Deserialize)]
pub struct TableLocation {
    /// The canonical URI (see [`normalize_uri`]).
    pub uri: String,
    /// Options of its object store; they travel with the table to every
    /// process that opens it.
    pub storage_options: StorageOptions,
    /// Wraps every object store the table is opened with (the benchmark
    /// counts requests with one). This process only: it does not travel.
    #[serde(skip)]
    pub store_wrapper: Option<Arc<dyn WrappingObjectStore>>,
}

impl TableLocation {
    /// The table at `uri` (normalized), reached with `storage_options`.
    pub fn new(uri: &str, storage_options: StorageOptions) -> Result<Self> {
        Ok(Self { uri: normalize_uri(uri)?, storage_options, store_wrapper: None })
    }

    /// The same table, with every store it is opened with wrapped by `wrapper`.
    pub fn with_store_wrapper(mut self, wrapper: Arc<dyn WrappingObjectStore>) -> Self {
        self.store_wrapper = Some(wrapper);
        self
    }

    /// A table beside this one (`<uri>/<name>`), reached the same way.
    pub fn join(&self, name: &str) -> Self {
        Self { uri: format!("{}/{name}", self.uri.trim_end_matches('/')), ..self.clone() }
    }

    /// The object store parameters lance opens this table with.
    pub fn store_params(&self) -> ObjectStoreParams {
        ObjectStoreParams {
            storage_options_accessor: (!self.storage_options.is_empty())
                .then(|| Arc::new(StorageOptionsAccessor::with_static_options(self.storage_options.to_lance()))),
            object_store_wrapper: self.store_wrapper.clone(),
            ..ObjectStoreParams::default()
        }
    }

    /// The latest version of the dataset, freshly opened. A store that
    /// refuses the credentials, a missing bucket or an unreachable endpoint
    /// is an [`Error::Storage`] that says what to set.
    pub async fn open_dataset(&self) -> Result<Dataset> {
        DatasetBuilder::from_uri(&self.uri)
            .with_session(SESSION.clone())
            .with_store_params(self.store_params())
            .load()
            .await
            .map_err(|source| match storage_error(&self.uri, &source) {
                Some(error) => error,
                None => Error::TableNotFound { uri: self.uri.clone(), source },
            })
    }

    /// Version `version` of the dataset, opened from its own manifest (the
    /// latest is neither listed nor read). Where that fails, the latest is
    /// opened to tell a table that cannot be reached from a version that
    /// is gone.
    pub async fn open_version(&self, version: u64) -> Result<Dataset> {
        let opened = DatasetBuilder::from_uri(&self.uri)
            .with_session(SESSION.clone())
            .with_store_params(self.store_params())
            .with_version(version)
            .load()
            .await;
        match opened {
            Ok(dataset) => Ok(dataset),
            Err(source) => {
                self.open_dataset().await?;
                Err(Error::VersionNotFound { table: self.uri.clone(), version, source })
            }
        }
    }

    /// Whether this is a path on this machine's file system.
    pub fn is_local(&self) -> bool {
        !self.uri.contains("://") || self.uri.starts_with("file://")
    }
}

impl PartialEq for TableLocation {
    fn eq(&self, other: &Self) -> bool {
        self.uri == other.uri && self.storage_options == other.storage_options
    }
}

impl Eq for TableLocation {}

impl fmt::Debug for TableLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableLocation")
            .field("uri", &self.uri)
            .field("storage_options", &self.storage_options)
            .field("store_wrapper", &self.store_wrapper.is_some())
            .finish()
    }
}

/// The canonical form of a table or database URI: an absolute local path
/// without a trailing `/`, or a URI of an enabled object store.
pub fn normalize_uri(uri: &str) -> Result<String> {
    if uri.is_empty() {
        return Err(Error::InvalidUri { uri: uri.to_string(), reason: "it is empty".to_string() });
    }
    if let Some((scheme, _)) = uri.split_once("://") {
        let enabled = match scheme {
            "file" | "memory" => true,
            "s3" | "s3a" => cfg!(feature = "aws"),
            "gs" => cfg!(feature = "gcp"),
            "az" | "abfss" => cfg!(feature = "azure"),
            _ => false,
        };
        if !enabled {
            return Err(Error::InvalidUri {
                uri: uri.to_string(),
                reason: format!(
                    "scheme {scheme}:// is not enabled; leman reads local paths and s3:// by default, gs:// and az:// when built with the gcp or azure feature"
                ),
            });
        }
        return Ok(uri.trim_end_matches('/').to_string());
    }
    let path = std::path::absolute(uri)?;
    Ok(path.to_string_lossy().trim_end_matches('/').to_string())
}
