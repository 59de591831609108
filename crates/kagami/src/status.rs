//! `GET /debug/p2p`: what the node's P2P side knows and has done, as JSON,
//! for operators, the demo and tests; and `GET /debug/p2p/origins?key=K`:
//! the nodes that pull `K` (a digest, or `registry/repository:tag`) through
//! from the upstream, closest first, as this node sees the DHT; and
//! `GET /debug/p2p/providers?key=K`: the peers that provide `K` and how
//! long the DHT took to say so (what `kagami measure` reports).

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use kagami_core::Key;
use kagami_core::router::{Near, Router};
use serde::{Deserialize, Serialize};

use crate::p2p::P2p;

/// The status document.
#[derive(Debug, Serialize)]
struct Status {
    peer_id: String,
    listen: Vec<String>,
    routing_peers: usize,
    advertised_keys: usize,
    lookups: u64,
    lookup_failures: u64,
    verify_failures: u64,
    resumes: u64,
    hedges: u64,
    bytes_relayed: std::collections::BTreeMap<String, u64>,
    /// Bytes received from upstream registries (pull-through).
    upstream_bytes: u64,
}

async fn status(State(p2p): State<P2p>) -> Json<Status> {
    let stats = p2p.mirror().stats();
    Json(Status {
        peer_id: p2p.peer_id().to_string(),
        listen: p2p.listen_addrs().iter().map(ToString::to_string).collect(),
        routing_peers: p2p.router().routing_peers(),
        advertised_keys: p2p.advertised_keys(),
        lookups: stats.lookups(),
        lookup_failures: stats.lookup_failures(),
        verify_failures: stats.verify_failures(),
        resumes: stats.resumes(),
        hedges: stats.hedges(),
        bytes_relayed: stats.bytes_relayed().into_iter().collect(),
        upstream_bytes: stats.upstream_bytes(),
    })
}

#[derive(Debug, Deserialize)]
struct OriginsQuery {
    key: String,
}

#[derive(Debug, Serialize)]
struct Origins {
    key: String,
    /// Peer IDs, closest first; this node's own among them when it is one.
    origins: Vec<String>,
}

async fn origins(State(p2p): State<P2p>, Query(query): Query<OriginsQuery>) -> Response {
    let key: Key = match query.key.parse() {
        Ok(key) => key,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("key: {error}\n")).into_response(),
    };
    match p2p
        .router()
        .closest(&key, kagami_registry::MAX_ORIGINS)
        .await
    {
        Ok(closest) => {
            let this = p2p.peer_id().to_string();
            let origins = closest
                .into_iter()
                .map(|near| match near {
                    Near::ThisNode => this.clone(),
                    Near::Peer(peer) => peer.id,
                })
                .collect();
            Json(Origins {
                key: key.to_string(),
                origins,
            })
            .into_response()
        }
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the DHT did not answer: {error}\n"),
        )
            .into_response(),
    }
}

/// Providers found for a key, and how long the DHT took to name them.
#[derive(Debug, Serialize, Deserialize)]
pub struct Providers {
    /// The key asked for.
    pub key: String,
    /// Peer IDs and the registry addresses they announce.
    pub providers: Vec<Provider>,
    /// How long the lookup took, in seconds.
    pub seconds: f64,
}

/// One provider of a key.
#[derive(Debug, Serialize, Deserialize)]
pub struct Provider {
    /// Its peer ID.
    pub id: String,
    /// Its registry API's address.
    pub addr: String,
}

/// How many providers a lookup asks the DHT for, as the mirror does.
const PROVIDERS_LIMIT: usize = 20;

async fn providers(State(p2p): State<P2p>, Query(query): Query<OriginsQuery>) -> Response {
    let key: Key = match query.key.parse() {
        Ok(key) => key,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("key: {error}\n")).into_response(),
    };
    let started = std::time::Instant::now();
    match p2p.router().find_providers(&key, PROVIDERS_LIMIT).await {
        Ok(found) => Json(Providers {
            key: key.to_string(),
            providers: found
                .into_iter()
                .map(|peer| Provider {
                    id: peer.id,
                    addr: peer.addr.to_string(),
                })
                .collect(),
            seconds: started.elapsed().as_secs_f64(),
        })
        .into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the DHT did not answer: {error}\n"),
        )
            .into_response(),
    }
}

/// The status route, to merge into the registry's application.
pub fn routes(p2p: P2p) -> axum::Router {
    axum::Router::new()
        .route("/debug/p2p", get(status))
        .route("/debug/p2p/origins", get(origins))
        .route("/debug/p2p/providers", get(providers))
        .with_state(p2p)
}
