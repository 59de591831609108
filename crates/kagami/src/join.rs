//! The join protocol, both ends, on the registry port:
//!
//! - `POST /v1-kagami/join` (join connections: ALPN `kagami-join/1`, no
//!   client certificate): the joining node sends `Authorization: Bearer
//!   <token secret>`, a certificate signing request for a key it made, and
//!   a proof (its libp2p key's signature over the request) of the identity
//!   the certificate is to bind; the server answers with a certificate for
//!   the proven peer ID and the names it allows, the CA certificate, the
//!   PSK and the cluster settings (and, to a node showing the server token,
//!   the CA key and the agent token). Attempts are rate-limited per source
//!   address. The client checked the server's CA against the token's pin
//!   during the handshake, before sending the secret.
//! - `POST /v1-kagami/renew` (mTLS): a member asks for a new certificate;
//!   it gets the names and peer ID of the certificate it presented.
//! - `GET /v1-kagami/p2p` (mTLS): the answering server's P2P addresses,
//!   for agents to bootstrap from.

use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use kagami_cluster::tls::{self, Identity};
use kagami_cluster::{
    IdentityProof, Joined, NodeCert, NodeKey, NodeNames, Psk, Role, Settings, Token,
};
use serde::{Deserialize, Serialize};

use crate::admission::JoinGuard;
use crate::errors::chain;
use crate::trust::{NodeTrust, TrustError};

/// How long one call to a server may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Path of the join call.
pub const JOIN_PATH: &str = "/v1-kagami/join";
const RENEW_PATH: &str = "/v1-kagami/renew";
/// Path of the peer discovery call.
pub const P2P_PATH: &str = "/v1-kagami/p2p";
/// Path of the cluster settings call.
pub const SETTINGS_PATH: &str = "/v1-kagami/settings";

/// Which kind of connection a request came on, as the TLS handshake found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// A join connection: no client certificate, join calls only.
    Join,
    /// A member's connection: a client certificate signed by the CA.
    Member {
        /// What the client's certificate is valid for, its peer ID among it.
        certified: NodeNames,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct JoinRequest {
    csr: String,
    #[serde(default)]
    server: bool,
    /// Absent from kagami versions before identity proofs.
    #[serde(default)]
    proof: Option<IdentityProof>,
}

#[derive(Debug, Serialize, Deserialize)]
struct JoinResponse {
    ca_cert: String,
    node_cert: String,
    psk: String,
    settings: Settings,
    #[serde(default)]
    ca_key: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RenewRequest {
    csr: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct RenewResponse {
    node_cert: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct PeersResponse {
    peers: Vec<String>,
}

/// This server's P2P addresses, as `/ip4/…/tcp/…/p2p/<id>` texts.
pub type P2pAddrs = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

#[derive(Clone)]
struct ServerState {
    trust: NodeTrust,
    p2p: Option<P2pAddrs>,
    guard: JoinGuard,
}

/// The join calls a server answers on join connections.
pub(crate) fn join_routes(trust: NodeTrust) -> axum::Router {
    axum::Router::new()
        .route(JOIN_PATH, post(admit))
        .with_state(ServerState {
            trust,
            p2p: None,
            guard: JoinGuard::new(),
        })
}

/// The calls a server answers its members.
pub(crate) fn member_routes(trust: NodeTrust, p2p: Option<P2pAddrs>) -> axum::Router {
    axum::Router::new()
        .route(RENEW_PATH, post(renew_handler))
        .route(P2P_PATH, get(peers))
        .route(SETTINGS_PATH, get(settings))
        .with_state(ServerState {
            trust,
            p2p,
            guard: JoinGuard::new(),
        })
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

async fn admit(
    State(state): State<ServerState>,
    source: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let source = source.map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |info| info.0.0);
    let guard = &state.guard;
    if let Err(wait) = guard.attempt(source) {
        guard.refused(source, "too many join attempts");
        let seconds = wait.as_secs().max(1).to_string();
        let mut response = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too many join attempts from this address; try again later",
        );
        if let Ok(value) = HeaderValue::from_str(&seconds) {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        return response;
    }
    let trust = &state.trust;
    let material = trust.material();
    let (Some(ca), Ok(Some(agent_token)), Ok(Some(psk))) =
        (trust.ca(), material.token(), material.psk())
    else {
        return refuse(
            StatusCode::NOT_FOUND,
            "this node does not admit nodes (not a server)",
        );
    };
    let secret = bearer(&headers).unwrap_or_default();
    let role = if ca.server_token().accepts(secret) {
        Role::Server
    } else if agent_token.accepts(secret) {
        Role::Agent
    } else {
        guard.refused(source, "wrong token");
        return refuse(StatusCode::UNAUTHORIZED, "invalid join token");
    };
    let Ok(request) = serde_json::from_slice::<JoinRequest>(&body) else {
        guard.refused(source, "not a join request");
        return refuse(StatusCode::BAD_REQUEST, "the body is not a join request");
    };
    if request.server && role != Role::Server {
        guard.refused(source, "an agent token used to join as a server");
        return refuse(
            StatusCode::FORBIDDEN,
            "joining as a server needs the server token (`kagami token --server` on a server)",
        );
    }
    let Some(proof) = &request.proof else {
        guard.refused(source, "no identity proof");
        return refuse(
            StatusCode::BAD_REQUEST,
            "the join request carries no proof of the node's P2P identity (is the joining kagami older than this server?)",
        );
    };
    let cert = match ca.admit(&request.csr, proof, trust.policy().validity) {
        Ok(cert) => cert,
        Err(e) => {
            guard.refused(source, &e.to_string());
            return refuse(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let settings = material.settings().ok().flatten().unwrap_or_default();
    tracing::info!(
        source = %source.ip(),
        peer_id = cert.peer_id().unwrap_or("(none)"),
        server = request.server,
        "a node joined"
    );
    Json(JoinResponse {
        ca_cert: ca.cert_pem().to_owned(),
        node_cert: cert.pem().to_owned(),
        psk: psk.to_hex(),
        settings,
        ca_key: request.server.then(|| ca.key_pem().to_owned()),
        token: request.server.then(|| agent_token.to_string()),
    })
    .into_response()
}

async fn renew_handler(
    State(state): State<ServerState>,
    channel: Option<Extension<Channel>>,
    body: axum::body::Bytes,
) -> Response {
    let Some(Extension(Channel::Member { certified })) = channel else {
        return refuse(StatusCode::FORBIDDEN, "a member's certificate is required");
    };
    let Some(ca) = state.trust.ca() else {
        return refuse(
            StatusCode::NOT_FOUND,
            "this node does not issue certificates (not a server)",
        );
    };
    let Ok(request) = serde_json::from_slice::<RenewRequest>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "the body is not a renewal request");
    };
    let cert = match ca.renew(&request.csr, &certified, state.trust.policy().validity) {
        Ok(cert) => cert,
        Err(e) => return refuse(StatusCode::FORBIDDEN, &e.to_string()),
    };
    tracing::info!(
        peer_id = cert.peer_id().unwrap_or("(none)"),
        "renewed a node certificate"
    );
    Json(RenewResponse {
        node_cert: cert.pem().to_owned(),
    })
    .into_response()
}

async fn peers(
    State(state): State<ServerState>,
    asker: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Response {
    if !state.trust.is_server() {
        return refuse(StatusCode::NOT_FOUND, "only servers list P2P addresses");
    }
    let asker_is_local = asker.is_none_or(|info| info.0.0.ip().is_loopback());
    let peers = state
        .p2p
        .as_ref()
        .map(|addrs| addrs())
        .unwrap_or_default()
        .into_iter()
        .filter(|addr| asker_is_local || !is_loopback_multiaddr(addr))
        .collect();
    Json(PeersResponse { peers }).into_response()
}

/// Whether a multiaddr text (`/ip4/127.0.0.1/tcp/5001/p2p/…`) is a
/// loopback address: one another host would only dial itself at.
fn is_loopback_multiaddr(addr: &str) -> bool {
    let mut parts = addr.split('/').skip(1);
    match (parts.next(), parts.next()) {
        (Some("ip4" | "ip6"), Some(ip)) => ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        _ => false,
    }
}

async fn settings(State(state): State<ServerState>) -> Response {
    if !state.trust.is_server() {
        return refuse(StatusCode::NOT_FOUND, "only servers hand out settings");
    }
    match state.trust.material().settings() {
        Ok(settings) => Json(settings.unwrap_or_default()).into_response(),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `https://host:port` without a trailing slash, or an error naming it.
fn base_url(server: &str) -> Result<String, TrustError> {
    let url = server.trim_end_matches('/');
    if !url.starts_with("https://") || url.len() <= "https://".len() {
        return Err(TrustError::ServerUrl {
            url: server.to_owned(),
        });
    }
    Ok(url.to_owned())
}

fn client(config: rustls::ClientConfig) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(CALL_TIMEOUT)
        .build()
        .map_err(|e| chain(&e))
}

/// How many times a join asked to come back later (`429`) tries again.
const JOIN_RETRIES: usize = 5;
/// Longest wait before one of those tries.
const JOIN_RETRY_WAIT: Duration = Duration::from_secs(10);

/// [`call`], trying again (a few times, as `Retry-After` says) when the
/// server is rate-limiting joins.
async fn call_patiently<T: serde::de::DeserializeOwned>(
    request: impl Fn() -> reqwest::RequestBuilder,
    body: Vec<u8>,
) -> Result<T, String> {
    let mut tries = 0;
    loop {
        match call(request(), body.clone()).await {
            Err(Refusal::Later(wait)) if tries < JOIN_RETRIES => {
                tries += 1;
                let wait = wait.min(JOIN_RETRY_WAIT);
                tracing::info!(?wait, "the server is rate-limiting joins; trying again");
                tokio::time::sleep(wait).await;
            }
            outcome => return outcome.map_err(|refusal| refusal.to_string()),
        }
    }
}

/// Why a call to a server did not give an answer.
#[derive(Debug)]
enum Refusal {
    /// The server asked to be asked again after this long (`429`).
    Later(Duration),
    /// Anything else, said in words.
    Failed(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Later(wait) => write!(
                f,
                "the server is rate-limiting joins (try again in {})",
                humantime::format_duration(*wait)
            ),
            Refusal::Failed(reason) => f.write_str(reason),
        }
    }
}

impl From<String> for Refusal {
    fn from(reason: String) -> Refusal {
        Refusal::Failed(reason)
    }
}

/// Sends `body` to `url` and reads a JSON answer, or says why not.
async fn call<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    body: Vec<u8>,
) -> Result<T, Refusal> {
    let response = request
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| Refusal::Failed(chain(&e)))?;
    let status = response.status();
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        let wait = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
            .map_or(Duration::from_secs(1), Duration::from_secs);
        return Err(Refusal::Later(wait));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Refusal::Failed(chain(&e)))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        return Err(format!("the server answered {status}: {message}").into());
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("unreadable answer: {e}").into())
}

/// Joins the cluster through `server`: makes a key, has the server sign a
/// certificate for `names` and the peer ID of `identity` (which signs the
/// request to prove it), and returns everything to keep. Writes nothing.
pub(crate) async fn join(
    server: &str,
    token: &Token,
    names: &NodeNames,
    identity: &libp2p_identity::Keypair,
    as_server: bool,
) -> Result<Joined, TrustError> {
    let base = base_url(server)?;
    let fail = |reason: String| TrustError::Join {
        server: base.clone(),
        reason,
    };
    if as_server && token.role() != Role::Server {
        return Err(fail(
            "joining as a server needs the server token (`kagami token --server` on a server), not an agent token".to_owned(),
        ));
    }
    let config = tls::join_client_config(token.ca_fingerprint())?;
    let client = client(config).map_err(fail)?;
    let key = NodeKey::generate()?;
    let csr = key.csr(names)?;
    let request = JoinRequest {
        proof: Some(IdentityProof::sign(identity, &csr)?),
        csr,
        server: as_server,
    };
    let body = serde_json::to_vec(&request).unwrap_or_default();
    let answer: JoinResponse = call_patiently(
        || {
            client
                .post(format!("{base}{JOIN_PATH}"))
                .bearer_auth(token.secret())
        },
        body,
    )
    .await
    .map_err(fail)?;
    let ca_matches = kagami_cluster::ClusterCa::fingerprint_of(&answer.ca_cert)
        .is_ok_and(|fingerprint| fingerprint == token.ca_fingerprint());
    if !ca_matches {
        return Err(fail(
            "the CA certificate sent does not match the token".to_owned(),
        ));
    }
    let cert = NodeCert::from_pem(&answer.node_cert)?;
    let psk = Psk::from_hex(&answer.psk)
        .ok_or_else(|| fail("the PSK sent is not 64 hex digits".to_owned()))?;
    let ca = match (&answer.ca_key, as_server) {
        (Some(key), true) => Some(kagami_cluster::ClusterCa::from_pem(&answer.ca_cert, key)?),
        (None, true) => {
            return Err(fail(
                "the server did not send the CA key a server needs".to_owned(),
            ));
        }
        _ => None,
    };
    let token = match (&answer.token, as_server) {
        (Some(text), true) => Some(text.parse()?),
        _ => None,
    };
    Ok(Joined {
        ca_cert_pem: answer.ca_cert,
        key,
        cert,
        psk,
        settings: answer.settings,
        ca,
        token,
    })
}

/// Asks `server` to sign a new certificate for `csr`, as the member
/// `identity`.
pub(crate) async fn renew(
    server: &str,
    identity: &Identity,
    csr: &str,
) -> Result<NodeCert, TrustError> {
    let base = base_url(server)?;
    let fail = |reason: String| TrustError::Renew { reason };
    let client = client(tls::peer_client_config(identity, None)?).map_err(fail)?;
    let body = serde_json::to_vec(&RenewRequest {
        csr: csr.to_owned(),
    })
    .unwrap_or_default();
    let answer: RenewResponse = call(client.post(format!("{base}{RENEW_PATH}")), body)
        .await
        .map_err(|refusal| fail(refusal.to_string()))?;
    Ok(NodeCert::from_pem(&answer.node_cert)?)
}

/// The P2P addresses `server` lists, asked as the member `identity`.
pub(crate) async fn server_peers(server: &str, identity: &Identity) -> Result<Vec<String>, String> {
    member_get::<PeersResponse>(server, P2P_PATH, identity)
        .await
        .map(|answer| answer.peers)
}

/// `GET path` on `server` as the member `identity`, read as JSON.
async fn member_get<T: serde::de::DeserializeOwned>(
    server: &str,
    path: &str,
    identity: &Identity,
) -> Result<T, String> {
    let base = base_url(server).map_err(|e| e.to_string())?;
    let client = client(tls::peer_client_config(identity, None).map_err(|e| e.to_string())?)?;
    let response = client
        .get(format!("{base}{path}"))
        .send()
        .await
        .map_err(|e| chain(&e))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| chain(&e))?;
    if !status.is_success() {
        return Err(format!("{base}{path} answered {status}"));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("unreadable answer: {e}"))
}

/// The cluster settings `server` hands out, asked as the member `identity`.
pub(crate) async fn server_settings(server: &str, identity: &Identity) -> Result<Settings, String> {
    member_get(server, SETTINGS_PATH, identity).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_multiaddrs_are_told_apart() {
        assert!(is_loopback_multiaddr(
            "/ip4/127.0.0.1/tcp/5001/p2p/12D3KooW"
        ));
        assert!(is_loopback_multiaddr("/ip6/::1/tcp/5001"));
        assert!(!is_loopback_multiaddr(
            "/ip4/10.0.0.5/tcp/5001/p2p/12D3KooW"
        ));
        assert!(!is_loopback_multiaddr("/dns/localhost/tcp/5001"));
    }
}
