//! The HTTP application: its settings, the state every handler shares, and
//! [`app`] / [`app_with_mirror`], which put the route groups together
//! without a socket.

use std::sync::Arc;

use kagami_core::Registry;
use kagami_core::store::Store;

use crate::budget::{BodyBudget, DEFAULT_BODY_BYTES_IN_FLIGHT};
use crate::mirror::{Mirror, Mirrored};
use crate::routes::{self, Readiness};
use crate::stats::{self, RequestStats};
use crate::throttle::Throttle;
use crate::trace;

/// Settings of the registry API.
#[derive(Clone, Debug)]
pub struct Config {
    /// The registry a request without `?ns=` is for (default `docker.io`).
    pub default_registry: Registry,
    /// The registries served at all, local content included (default:
    /// all). A node shares only what it mirrors, as in K3s: a request for
    /// any other registry is answered 404 `NAME_UNKNOWN`.
    pub served: Mirrored,
    /// Response body bytes the whole application may hold between reading
    /// them (from the store or a peer) and writing them to a socket
    /// (default [`DEFAULT_BODY_BYTES_IN_FLIGHT`], 256 MiB); a body waits
    /// for room beyond it. With [`Limits`](crate::Limits)' streams per
    /// connection and send buffers, it bounds what clients that stop
    /// reading can make a node hold.
    pub max_body_bytes_in_flight: usize,
    /// Where requests are counted (for metrics and the status page).
    pub stats: RequestStats,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            default_registry: Registry::docker_hub(),
            served: Mirrored::All,
            max_body_bytes_in_flight: DEFAULT_BODY_BYTES_IN_FLIGHT,
            stats: RequestStats::default(),
        }
    }
}

/// What every handler reads.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: Arc<Config>,
    pub(crate) readiness: Readiness,
    /// Where local misses are looked up; `None` answers them 404.
    pub(crate) mirror: Option<Mirror>,
    /// Shared by every response body.
    pub(crate) budget: BodyBudget,
    /// When a miss was last logged, by repository.
    pub(crate) misses: Arc<Throttle<String>>,
}

/// The whole HTTP application: the OCI API under `/v2`, `/healthz` and
/// `/readyz`, wrapped in the request log. It serves what `store` holds and
/// answers anything else 404. It holds no socket; serve it with
/// [`serve`](crate::serve), or call it directly in tests.
pub fn app(store: Arc<dyn Store>, config: Config, readiness: Readiness) -> axum::Router {
    build(store, config, readiness, None)
}

/// [`app`], with local misses served from peers through `mirror`.
pub fn app_with_mirror(
    store: Arc<dyn Store>,
    config: Config,
    readiness: Readiness,
    mirror: Mirror,
) -> axum::Router {
    build(store, config, readiness, Some(mirror))
}

fn build(
    store: Arc<dyn Store>,
    config: Config,
    readiness: Readiness,
    mirror: Option<Mirror>,
) -> axum::Router {
    let state = AppState {
        budget: BodyBudget::new(config.max_body_bytes_in_flight),
        misses: Arc::new(Throttle::new(std::time::Duration::from_secs(60))),
        store,
        config: Arc::new(config),
        readiness,
        mirror,
    };
    let timing = axum::middleware::from_fn_with_state(state.config.stats.clone(), stats::time);
    let router = axum::Router::new()
        .merge(routes::v2())
        .merge(routes::health())
        .with_state(state)
        .layer(timing);
    trace::layer(router)
}
