//! Storage that misbehaves on cue: a lance [`WrappingObjectStore`] that
//! makes the Nth request of a kind to a path fail, fail after it was
//! carried out (an ambiguous write: done, but reported as an error), or
//! wait until the test lets it go, before it is carried out (to hold a job
//! in its commit window while another writer commits) or after (to stop a
//! process right after a write landed). Every other request goes through
//! unchanged.
//!
//! ```no_run
//! # async fn demo(location: leman_engine::TableLocation) {
//! use leman_engine::testing::faults::{Fault, Faults, Request};
//! let faults = Faults::new();
//! // The first manifest a job writes waits for `hold.release()`.
//! let hold = faults.inject(Request::Put, "_versions/", 1, Fault::Hold);
//! let location = location.with_store_wrapper(faults.clone());
//! # }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use lance::io::WrappingObjectStore;
use object_store::list::PaginatedListStore;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, UploadPart,
};
use tokio::sync::Notify;

/// The kind of request a fault is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A whole-object put, or a multipart upload (counted at its start).
    Put,
    /// A read.
    Get,
}

/// What happens to the chosen request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// It fails, and nothing is written.
    Fail,
    /// It is carried out, then reported as failed.
    FailAfter,
    /// It waits until [`Trigger::release`], then goes through.
    Hold,
    /// It is carried out, then waits until [`Trigger::release`].
    HoldAfter,
}

/// One injected fault, and what the test sees of it.
#[derive(Debug)]
pub struct Trigger {
    request: Request,
    path_contains: String,
    nth: usize,
    fault: Fault,
    seen: Mutex<usize>,
    fired: AtomicBool,
    reached: Notify,
    released: AtomicBool,
    release: Notify,
}

impl Trigger {
    /// Whether the chosen request came (for [`Fault::HoldAfter`]: and was
    /// carried out).
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Waits (at most `limit`) for the chosen request; whether it came.
    pub async fn reached(&self, limit: Duration) -> bool {
        let waited = tokio::time::timeout(limit, async {
            loop {
                let notified = self.reached.notified();
                if self.fired() {
                    return;
                }
                notified.await;
            }
        });
        waited.await.is_ok()
    }

    /// Lets a held request go on.
    pub fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
        self.release.notify_waiters();
    }

    fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        self.reached.notify_waiters();
    }

    /// Whether this request is the chosen one (counting it).
    fn matches(&self, request: Request, path: &Path) -> bool {
        if request != self.request || !path.as_ref().contains(&self.path_contains) {
            return false;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *seen += 1;
        *seen == self.nth
    }

    async fn hold(&self) {
        loop {
            let released = self.release.notified();
            if self.released.load(Ordering::SeqCst) {
                return;
            }
            released.await;
        }
    }
}

/// The faults of a test; wrap a table's stores with it. Clones share
/// their faults, and a fault injected after the wrapping still counts.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    triggers: Arc<Mutex<Vec<Arc<Trigger>>>>,
}

impl Faults {
    /// No faults yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Makes the `nth` (from 1) `request` to a path containing
    /// `path_contains` meet `fault`.
    pub fn inject(&self, request: Request, path_contains: &str, nth: usize, fault: Fault) -> Arc<Trigger> {
        let trigger = Arc::new(Trigger {
            request,
            path_contains: path_contains.to_string(),
            nth,
            fault,
            seen: Mutex::new(0),
            fired: AtomicBool::new(false),
            reached: Notify::new(),
            released: AtomicBool::new(false),
            release: Notify::new(),
        });
        self.triggers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(trigger.clone());
        trigger
    }

    /// The fault this request meets, if any (it fires there).
    fn fault_for(&self, request: Request, path: &Path) -> Option<Arc<Trigger>> {
        let triggers = self.triggers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let mut chosen = None;
        for trigger in triggers {
            if trigger.matches(request, path) && chosen.is_none() {
                // A request held after it is carried out counts as reached
                // once it was.
                if trigger.fault != Fault::HoldAfter {
                    trigger.fire();
                }
                chosen = Some(trigger);
            }
        }
        chosen
    }
}

impl WrappingObjectStore for Faults {
    fn wrap(&self, _store_prefix: &str, original: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(FaultyStore { inner: original, faults: self.clone() })
    }

    fn wrap_paginated(&self, _store_prefix: &str, original: Arc<dyn PaginatedListStore>) -> Option<Arc<dyn PaginatedListStore>> {
        Some(original)
    }
}

#[derive(Debug)]
struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: Faults,
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

fn injected(path: &Path, after: bool) -> object_store::Error {
    let when = if after { "after it was carried out" } else { "before it was carried out" };
    object_store::Error::Generic { store: "faults", source: format!("injected fault on {path}, {when}").into() }
}

/// What is left to do once a request was carried out.
enum Then {
    Return,
    Fail,
    Hold(Arc<Trigger>),
}

impl Then {
    async fn after<T>(self, path: &Path, result: T) -> object_store::Result<T> {
        match self {
            Then::Return => Ok(result),
            Then::Fail => Err(injected(path, true)),
            Then::Hold(trigger) => {
                trigger.fire();
                trigger.hold().await;
                Ok(result)
            }
        }
    }
}

impl FaultyStore {
    /// What to do before `request` (`Err` fails it now), and after it.
    async fn before(&self, request: Request, path: &Path) -> object_store::Result<Then> {
        let Some(trigger) = self.faults.fault_for(request, path) else { return Ok(Then::Return) };
        match trigger.fault {
            Fault::Fail => Err(injected(path, false)),
            Fault::FailAfter => Ok(Then::Fail),
            Fault::Hold => {
                trigger.hold().await;
                Ok(Then::Return)
            }
            Fault::HoldAfter => Ok(Then::Hold(trigger)),
        }
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> object_store::Result<PutResult> {
        let then = self.before(Request::Put, location).await?;
        let result = self.inner.put_opts(location, payload, opts).await?;
        then.after(location, result).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> object_store::Result<Box<dyn MultipartUpload>> {
        let then = self.before(Request::Put, location).await?;
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload { inner: upload, path: location.clone(), then: Some(then) }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let then = self.before(Request::Get, location).await?;
        let result = self.inner.get_opts(location, options).await?;
        then.after(location, result).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, object_store::Result<Path>>) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    path: Path,
    /// What to do once completed.
    then: Option<Then>,
}

impl fmt::Debug for FaultyUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyUpload").field("path", &self.path).finish_non_exhaustive()
    }
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let result = self.inner.complete().await?;
        match self.then.take() {
            Some(then) => then.after(&self.path, result).await,
            None => Ok(result),
        }
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}
