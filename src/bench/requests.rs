//! Counts the object store requests of a backfill: a lance
//! [`WrappingObjectStore`] that wraps every store a table is opened with
//! (see [`TableLocation::with_store_wrapper`](leman_engine::TableLocation::with_store_wrapper))
//! and tallies each request by what it is ([`Op`]) and what it touches
//! ([`Area`]).
//!
//! One call of the wrapped store is one HTTP request of an S3 store: ranged
//! reads are counted as the single-range reads that object_store coalesces
//! them into, and a multipart upload as its start, each part and its end.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use lance::io::WrappingObjectStore;
use object_store::list::{PaginatedListOptions, PaginatedListResult, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, UploadPart,
};

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Op {
    /// A read (whole or ranged) or a HEAD.
    Get,
    /// A single-request write.
    Put,
    /// Starting, sending a part of, or finishing a multipart upload.
    Multipart,
    /// A listing.
    List,
    /// A deletion.
    Delete,
    /// A server-side copy.
    Copy,
}

/// What a request touches, by the object's place in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Area {
    /// `data/`: the table's data files, input and output.
    Data,
    /// `_versions/`: manifests.
    Manifest,
    /// `_transactions/`: Lance transaction files.
    Transaction,
    /// `_leman/checkpoints/batches/`: a batch checkpoint each.
    BatchCheckpoint,
    /// `_leman/checkpoints/fragments/`: a written fragment's record each.
    FragmentCheckpoint,
    /// `_leman/leases/`: the column's lease.
    Lease,
    /// `_leman/jobs/`: job records.
    JobRecord,
    /// `_leman/cancels/`: requests to cancel a job, looked for every second.
    CancelRequest,
    /// `_leman/fills/`: which UDF wrote each data file, one per fragment.
    Fill,
    /// `_leman/errors/`: the rows a UDF failed on.
    RowError,
    /// Anything else (deletion files, indices).
    Other,
}

impl Area {
    fn of(path: &Path) -> Self {
        let path = path.as_ref();
        let has = |part: &str| path.contains(part);
        if has("_leman/checkpoints/batches/") {
            Area::BatchCheckpoint
        } else if has("_leman/checkpoints/fragments/") {
            Area::FragmentCheckpoint
        } else if has("_leman/leases/") {
            Area::Lease
        } else if has("_leman/jobs/") {
            Area::JobRecord
        } else if has("_leman/cancels/") {
            Area::CancelRequest
        } else if has("_leman/fills/") || path.ends_with("_leman/fills") {
            Area::Fill
        } else if has("_leman/errors/") {
            Area::RowError
        } else if has("_versions/") || path.ends_with("_versions") {
            Area::Manifest
        } else if has("_transactions/") {
            Area::Transaction
        } else if has("/data/") || path.starts_with("data/") {
            Area::Data
        } else {
            Area::Other
        }
    }
}

/// Requests counted so far, by area and operation.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<(Area, Op), u64>>>,
}

impl RequestCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counts so far.
    pub fn snapshot(&self) -> BTreeMap<(Area, Op), u64> {
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Every count back to zero.
    pub fn reset(&self) {
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }

    fn count(&self, path: &Path, op: Op) {
        *self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).entry((Area::of(path), op)).or_default() += 1;
    }
}

impl WrappingObjectStore for RequestCounter {
    fn wrap(&self, _store_prefix: &str, original: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(Counted { inner: original, counter: self.clone() })
    }

    /// Keeps lance's paged listing (counting doesn't change what is listed),
    /// counting each page.
    fn wrap_paginated(&self, _store_prefix: &str, original: Arc<dyn PaginatedListStore>) -> Option<Arc<dyn PaginatedListStore>> {
        Some(Arc::new(CountedLister { inner: original, counter: self.clone() }))
    }
}

/// A paged lister whose every page is counted.
struct CountedLister {
    inner: Arc<dyn PaginatedListStore>,
    counter: RequestCounter,
}

impl fmt::Debug for CountedLister {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountedLister").finish_non_exhaustive()
    }
}

#[async_trait]
impl PaginatedListStore for CountedLister {
    async fn list_paginated(
        &self,
        prefix: Option<&str>,
        opts: PaginatedListOptions,
    ) -> object_store::Result<PaginatedListResult> {
        self.counter.count(&Path::from(prefix.unwrap_or_default()), Op::List);
        self.inner.list_paginated(prefix, opts).await
    }
}

/// A store whose every request is counted.
#[derive(Debug)]
struct Counted {
    inner: Arc<dyn ObjectStore>,
    counter: RequestCounter,
}

impl fmt::Display for Counted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counted({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Counted {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> object_store::Result<PutResult> {
        self.counter.count(location, Op::Put);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.counter.count(location, Op::Multipart);
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountedUpload { inner: upload, path: location.clone(), counter: self.counter.clone() }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.counter.count(location, Op::Get);
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let counter = self.counter.clone();
        let counted = locations
            .map(move |location| {
                if let Ok(path) = &location {
                    counter.count(path, Op::Delete);
                }
                location
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.counter.count(prefix.unwrap_or(&Path::default()), Op::List);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.counter.count(prefix.unwrap_or(&Path::default()), Op::List);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.counter.count(to, Op::Copy);
        self.inner.copy_opts(from, to, options).await
    }
}

/// A multipart upload whose parts and completion are counted.
#[derive(Debug)]
struct CountedUpload {
    inner: Box<dyn MultipartUpload>,
    path: Path,
    counter: RequestCounter,
}

#[async_trait]
impl MultipartUpload for CountedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.counter.count(&self.path, Op::Multipart);
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.counter.count(&self.path, Op::Multipart);
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.counter.count(&self.path, Op::Multipart);
        self.inner.abort().await
    }
}
