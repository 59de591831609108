//! The route groups, and the `/v2` dispatcher in front of them.
//!
//! Every `/v2` request goes through one handler: it refuses methods other
//! than GET and HEAD (405, `UNSUPPORTED`), parses the path once into a
//! [`Route`], picks the registry, and hands the typed request to the
//! manifests, blobs or tags group. Every `/v2` response, errors included,
//! carries `Docker-Distribution-API-Version: registry/2.0`.
//!
//! # Which registry a request is for
//! containerd tells a mirror which upstream it stands in for with
//! `?ns=<registry>` (`?ns=docker.io`, `?ns=quay.io`, `?ns=localhost%3A5000`).
//! A request without `ns` is for [`Config::default_registry`]
//! (`docker.io` unless configured), so a plain
//! `docker pull <node>/nginx` works too. An `ns` that is not a valid
//! registry host, or given twice, is `400 NAME_INVALID`. On Docker Hub a
//! one-component name is looked up as `library/<name>`, as docker does.
//!
//! Requests by digest are answered from whatever content the store holds,
//! whatever repository the path names: content is addressed by digest.
//!
//! A manifest or blob the store does not hold goes to the mirror, if the
//! app has one and the request did not come from a peer's mirror (see
//! [`crate::MIRRORED_HEADER`]).

mod blobs;
mod health;
mod manifests;
mod tags;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use kagami_core::{Digest, Registry, store};
use serde::Deserialize;

pub(crate) use blobs::Blob;
pub(crate) use health::routes as health;
pub use health::{Readiness, probes};

use crate::app::{AppState, Config};
use crate::error::Error;
use crate::mirror::Mirror;
use crate::path::Route;

/// Sent on every `/v2` response; clients check it on the ping.
const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
/// The digest of the content served.
pub(crate) const DOCKER_CONTENT_DIGEST: HeaderName =
    HeaderName::from_static("docker-content-digest");

/// How long one store call (resolve, stat, open) may take before the
/// request is answered 503; reading a body is bounded by the client.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `/v2` API.
pub(crate) fn v2() -> Router<AppState> {
    Router::new()
        .route("/v2", any(dispatch))
        .route("/v2/", any(dispatch))
        .route("/v2/{*rest}", any(dispatch))
}

async fn dispatch(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut response = match handle(&state, &method, &uri, &headers).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    if let Some(failure) = response.extensions().get::<crate::trace::Failure>() {
        let request = format!("{method} {}", uri.path());
        state
            .config
            .stats
            .failed(request, failure.chain().to_owned());
    }
    response
        .headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    response
}

async fn handle(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, Error> {
    let head = match *method {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            return Err(Error::MethodNotAllowed {
                method: method.clone(),
            });
        }
    };
    let rest = match uri.path().strip_prefix("/v2") {
        Some("") => "",
        Some(rest) => rest.strip_prefix('/').ok_or(Error::PathUnknown)?,
        None => return Err(Error::PathUnknown),
    };
    let registry = || registry(uri, &state.config);
    let store = state.store.as_ref();
    let mirror = Mirror::for_request(state.mirror.as_ref(), headers);
    let origin = Mirror::as_origin(state.mirror.as_ref(), headers);
    match Route::parse(rest)? {
        Route::Ping => Ok(([(CONTENT_TYPE, "application/json")], "{}").into_response()),
        Route::Manifest {
            repository,
            reference,
        } => {
            let mirrors = (mirror, origin);
            let stats = &state.config.stats;
            let registry = registry()?;
            let name = format!("{registry}/{repository}");
            let answer =
                manifests::get(store, mirrors, registry, repository, reference, head, stats).await;
            missed(state, mirror, &name, answer)
        }
        Route::Blob { repository, digest } => {
            // Content is addressed by digest alone; the registry and name
            // only tell a peer's mirror what it stands in for.
            let registry = registry()?;
            let name = (&registry, &repository);
            let mirrors = (mirror, origin);
            let counters = (&state.budget, &state.config.stats);
            let answer = blobs::get(store, mirrors, name, digest, headers, head, counters).await;
            missed(state, mirror, &format!("{registry}/{repository}"), answer)
        }
        Route::TagsList { repository } => tags::list(store, &registry()?, repository).await,
    }
}

/// Logs a client's miss that went through the mirror: at INFO once a
/// minute per repository, since one pull asks for several keys of one
/// repository and each would be a line; at DEBUG otherwise.
fn missed(
    state: &AppState,
    mirror: Option<&Mirror>,
    repository: &str,
    answer: Result<Response, Error>,
) -> Result<Response, Error> {
    if let (Some(_), Err(Error::ManifestUnknown { .. } | Error::BlobUnknown { .. })) =
        (mirror, &answer)
    {
        match state.misses.hit(repository.to_owned()) {
            Some(misses) => tracing::info!(
                %repository, misses,
                "not held here nor served by the cluster; the client moves on to its next endpoint"
            ),
            None => tracing::debug!(%repository, "not held here nor served by the cluster"),
        }
    }
    answer
}

#[derive(Deserialize)]
struct Namespace {
    ns: Option<String>,
}

/// The registry named by `?ns=`, or the configured default.
fn registry(uri: &Uri, config: &Config) -> Result<Registry, Error> {
    let Query(Namespace { ns }) =
        Query::try_from_uri(uri).map_err(|rejection| Error::QueryInvalid {
            reason: rejection.body_text(),
        })?;
    let registry: Registry = match ns {
        Some(ns) => ns
            .parse()
            .map_err(|source| Error::RegistryInvalid { source })?,
        None => config.default_registry.clone(),
    };
    if !config.served.contains(&registry) {
        return Err(Error::RegistryNotMirrored { registry });
    }
    Ok(registry)
}

/// A store call that answers within [`STORE_TIMEOUT`], or is unavailable.
async fn bounded<T>(
    operation: &'static str,
    call: impl Future<Output = Result<T, store::Error>>,
) -> Result<T, store::Error> {
    tokio::time::timeout(STORE_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(store::Error::Unavailable {
                reason: format!("no answer to {operation} within {STORE_TIMEOUT:?}"),
            })
        })
}

/// A response carrying content: its type, length, digest and `ETag`.
fn content(
    status: StatusCode,
    content_type: &'static str,
    length: u64,
    digest: &Digest,
    body: Body,
) -> Result<Response, Error> {
    let header = |text: String| {
        HeaderValue::try_from(text).map_err(|source| Error::Render {
            what: "digest header",
            source: source.into(),
        })
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(DOCKER_CONTENT_DIGEST, header(digest.to_string())?);
    headers.insert(ETAG, header(format!("\"{digest}\""))?);
    Ok(response)
}
