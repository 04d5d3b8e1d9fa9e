//! What a job asks of its object store: a lance [`WrappingObjectStore`]
//! that counts the requests made through every store a table is opened
//! with, and the bytes they read and wrote. A job meters its own stores
//! (one meter per job per process): embedded, the driver's meter sees all
//! of them; on a cluster each worker meters its share and reports it when
//! the job is stopped there ([`StoreTally`], in its answer to `StopJob`),
//! and the head adds it up: until then a job's record counts the head's
//! requests only, and a worker lost mid-job takes its count with it.
//!
//! One call of the wrapped store is one request of an S3 store: a multipart
//! upload counts its start, each part and its end.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
use serde::{Deserialize, Serialize};

/// Requests and bytes, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreTally {
    /// Requests made.
    pub requests: u64,
    /// Bytes of objects read.
    pub bytes_read: u64,
    /// Bytes of objects written.
    pub bytes_written: u64,
}

impl std::ops::AddAssign for StoreTally {
    fn add_assign(&mut self, other: Self) {
        self.requests += other.requests;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

/// Counts the requests of every store it wraps; clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct StoreMeter {
    counters: Arc<Counters>,
}

impl StoreMeter {
    /// A meter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// What was counted since the last take, and zero again.
    pub fn take(&self) -> StoreTally {
        StoreTally {
            requests: self.counters.requests.swap(0, Ordering::Relaxed),
            bytes_read: self.counters.bytes_read.swap(0, Ordering::Relaxed),
            bytes_written: self.counters.bytes_written.swap(0, Ordering::Relaxed),
        }
    }

    fn request(&self) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self, bytes: u64) {
        self.counters.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }

    fn wrote(&self, bytes: u64) {
        self.counters.bytes_written.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `wrapper` (if any) inside this meter, as one wrapper.
    pub fn around(&self, wrapper: Option<Arc<dyn WrappingObjectStore>>) -> Arc<dyn WrappingObjectStore> {
        match wrapper {
            Some(inner) => Arc::new(Chained { outer: self.clone(), inner }),
            None => Arc::new(self.clone()),
        }
    }
}

impl WrappingObjectStore for StoreMeter {
    fn wrap(&self, _store_prefix: &str, original: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(Metered { inner: original, meter: self.clone() })
    }

    fn wrap_paginated(&self, _store_prefix: &str, original: Arc<dyn PaginatedListStore>) -> Option<Arc<dyn PaginatedListStore>> {
        Some(Arc::new(MeteredLister { inner: original, meter: self.clone() }))
    }
}

/// A meter around another wrapper (the benchmark's request counter, say).
#[derive(Debug)]
struct Chained {
    outer: StoreMeter,
    inner: Arc<dyn WrappingObjectStore>,
}

impl WrappingObjectStore for Chained {
    fn wrap(&self, store_prefix: &str, original: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        self.outer.wrap(store_prefix, self.inner.wrap(store_prefix, original))
    }

    fn wrap_paginated(&self, store_prefix: &str, original: Arc<dyn PaginatedListStore>) -> Option<Arc<dyn PaginatedListStore>> {
        let inner = self.inner.wrap_paginated(store_prefix, original.clone()).unwrap_or(original);
        self.outer.wrap_paginated(store_prefix, inner)
    }
}

struct MeteredLister {
    inner: Arc<dyn PaginatedListStore>,
    meter: StoreMeter,
}

impl fmt::Debug for MeteredLister {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeteredLister").finish_non_exhaustive()
    }
}

#[async_trait]
impl PaginatedListStore for MeteredLister {
    async fn list_paginated(&self, prefix: Option<&str>, opts: PaginatedListOptions) -> object_store::Result<PaginatedListResult> {
        self.meter.request();
        self.inner.list_paginated(prefix, opts).await
    }
}

#[derive(Debug)]
struct Metered {
    inner: Arc<dyn ObjectStore>,
    meter: StoreMeter,
}

impl fmt::Display for Metered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Metered({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Metered {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> object_store::Result<PutResult> {
        self.meter.request();
        self.meter.wrote(payload.content_length() as u64);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.meter.request();
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(MeteredUpload { inner: upload, meter: self.meter.clone() }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.meter.request();
        let head = options.head;
        let result = self.inner.get_opts(location, options).await?;
        if !head {
            self.meter.read(result.range.end.saturating_sub(result.range.start));
        }
        Ok(result)
    }

    fn delete_stream(&self, locations: BoxStream<'static, object_store::Result<Path>>) -> BoxStream<'static, object_store::Result<Path>> {
        let meter = self.meter.clone();
        let counted = locations
            .map(move |location| {
                meter.request();
                location
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.meter.request();
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.meter.request();
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.meter.request();
        self.inner.copy_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct MeteredUpload {
    inner: Box<dyn MultipartUpload>,
    meter: StoreMeter,
}

#[async_trait]
impl MultipartUpload for MeteredUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.meter.request();
        self.meter.wrote(data.content_length() as u64);
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.meter.request();
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.meter.request();
        self.inner.abort().await
    }
}
