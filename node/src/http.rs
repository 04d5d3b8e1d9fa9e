//! Health and metrics over plain HTTP (`--http ADDR`), because the kubelet
//! cannot probe QUIC: `/livez` answers while the process runs, `/readyz`
//! when the node can do its work (a head: endpoint bound and certificates
//! loaded; a worker: joined to a head), `/metrics` in the Prometheus text
//! format.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::error::{NodeError, Result};
use crate::metrics::Metrics;

/// Whether a node can do its work now.
#[derive(Debug, Default)]
pub struct Readiness {
    ready: AtomicBool,
}

impl Readiness {
    /// Marks the node ready or not.
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether it is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

struct Endpoints {
    readiness: Arc<Readiness>,
    metrics: Metrics,
}

/// The HTTP server of one node; stops when dropped.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Binds `addr` and serves the three endpoints.
    /// Must be called within a tokio runtime.
    pub fn start(addr: SocketAddr, readiness: Arc<Readiness>, metrics: Metrics) -> Result<Self> {
        let bind_failed = |source| NodeError::Http { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_failed)?;
        listener.set_nonblocking(true).map_err(bind_failed)?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_failed)?;
        let addr = listener.local_addr().map_err(bind_failed)?;
        let app = Router::new()
            .route("/livez", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_text))
            .with_state(Arc::new(Endpoints { readiness, metrics }));
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "the HTTP server stopped");
            }
        });
        Ok(Self { addr, task })
    }

    /// The address it serves on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn readyz(State(endpoints): State<Arc<Endpoints>>) -> impl IntoResponse {
    if endpoints.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics_text(State(endpoints): State<Arc<Endpoints>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        endpoints.metrics.encode(),
    )
}
