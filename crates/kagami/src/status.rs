//! `GET /debug/p2p`: what the node's P2P side knows and has done, as JSON,
//! for operators, the demo and tests.

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;

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
    })
}

/// The status route, to merge into the registry's application.
pub fn routes(p2p: P2p) -> axum::Router {
    axum::Router::new()
        .route("/debug/p2p", get(status))
        .with_state(p2p)
}
