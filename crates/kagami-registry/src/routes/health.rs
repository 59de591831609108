//! `/healthz` (the process answers: always 200) and `/readyz` (200 only
//! once the node says it is ready, 503 before and whenever it stops being).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use http::StatusCode;

use crate::app::AppState;

/// Whether the node is ready; `/readyz` answers 200 only when it is. A
/// cloneable handle: the node keeps one to flip, the server reads another.
/// Starts not ready.
#[derive(Clone, Default)]
pub struct Readiness(Arc<Inner>);

#[derive(Default)]
struct Inner {
    ready: AtomicBool,
    /// What `/readyz` says besides ready or not (P2P peers, say), read
    /// from its live source at each request.
    detail: OnceLock<Box<dyn Fn() -> String + Send + Sync>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl Readiness {
    /// A handle that is not ready yet.
    pub fn new() -> Readiness {
        Readiness::default()
    }

    /// Marks the node ready or not; every clone sees it.
    pub fn set_ready(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::Release);
    }

    /// Whether the node is ready.
    pub fn is_ready(&self) -> bool {
        self.0.ready.load(Ordering::Acquire)
    }

    /// Adds what `detail` says to `/readyz`'s answer (`ready; p2p peers:
    /// 0`), whatever the status. Set once; later calls are ignored.
    pub fn set_detail(&self, detail: impl Fn() -> String + Send + Sync + 'static) {
        let _ = self.0.detail.set(Box::new(detail));
    }

    /// `/readyz`'s answer: its status and text.
    fn answer(&self) -> (StatusCode, String) {
        let (status, text) = if self.is_ready() {
            (StatusCode::OK, "ready")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready")
        };
        match self.0.detail.get() {
            Some(detail) => (status, format!("{text}; {}", detail())),
            None => (status, text.to_owned()),
        }
    }
}

/// The health routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
}

/// `/healthz` and `/readyz` alone, for a listener of their own: probes
/// that cannot present a cluster certificate (kubelet's, a load
/// balancer's) ask there, in plain HTTP, on a loopback address.
pub fn probes(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let answer = readiness.answer();
                async move { answer }
            }),
        )
}

async fn ready(State(state): State<AppState>) -> (StatusCode, String) {
    state.readiness.answer()
}
