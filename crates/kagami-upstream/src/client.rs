//! The upstream client: every request goes to the registry's endpoints in
//! order until one answers. At each, a `401` is answered from the host's
//! credentials (see `auth`), redirects are followed by hand (at most
//! [`MAX_REDIRECTS`], never sending the registry's `Authorization` to
//! another host), and the answer is sorted: content, `404` (the registry
//! does not hold it), or a failure (`429`, `5xx`, refused credentials,
//! timeouts…), after which the next endpoint is tried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE,
    WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use kagami_core::store::BlobStream;
use kagami_core::upstream::{self, Resolved, Upstream, UpstreamBlob};
use kagami_core::{Digest, Hasher, MediaType, Registry, Repository, Tag};

use crate::auth::Authorizations;
use crate::challenge;
use crate::config::{Config, Endpoint};
use crate::tls;

/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 5;
/// Largest manifest accepted (the distribution registry's own limit).
const MAX_MANIFEST: u64 = 4 * 1024 * 1024;
/// The manifest types asked for, as containerd asks.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Fetches from registries as `Config` says. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    /// One HTTP client per endpoint host (its TLS settings), and one for
    /// hosts redirected to.
    http: Mutex<HashMap<String, reqwest::Client>>,
    auth: Authorizations,
}

/// What one endpoint made of a request.
enum Attempt<T> {
    Found(T),
    NotFound,
    Failed(String),
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `config`.
    pub fn new(config: Config) -> Client {
        Client {
            inner: Arc::new(Inner {
                config,
                http: Mutex::new(HashMap::new()),
                auth: Authorizations::default(),
            }),
        }
    }

    /// Tries `attempt` at each endpoint of `registry` in turn: the first
    /// content wins; all `404` or failures with a `404` among them is "not
    /// held"; only failures is unavailable.
    async fn each_endpoint<T, F, Fut>(
        &self,
        registry: &Registry,
        attempt: F,
    ) -> Result<Option<T>, upstream::Error>
    where
        F: Fn(Endpoint) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let endpoints = self.inner.config.endpoints(registry);
        if endpoints.is_empty() {
            return Err(upstream::Error::Unavailable {
                registry: registry.clone(),
                reason: "no endpoint: none listed, and the default endpoint is disabled".to_owned(),
            });
        }
        let mut failures = Vec::new();
        let mut not_found = false;
        for endpoint in endpoints {
            let base = endpoint.base.clone();
            match attempt(endpoint).await {
                Attempt::Found(value) => return Ok(Some(value)),
                Attempt::NotFound => not_found = true,
                Attempt::Failed(reason) => {
                    tracing::debug!(%registry, endpoint = %base, %reason, "upstream endpoint failed");
                    failures.push(format!("{base}: {reason}"));
                }
            }
        }
        if not_found {
            return Ok(None);
        }
        Err(upstream::Error::Unavailable {
            registry: registry.clone(),
            reason: failures.join("; "),
        })
    }

    /// The HTTP client for requests to `authority`, made with `endpoint`'s
    /// TLS settings when it is the endpoint's host.
    fn http(&self, authority: &str, endpoint: &Endpoint) -> Result<reqwest::Client, String> {
        let own = authority == endpoint.authority();
        let key = if own {
            format!("endpoint:{authority}")
        } else {
            "foreign".to_owned()
        };
        let mut clients = self
            .inner
            .http
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let settings = if own {
            endpoint.host.tls.clone()
        } else {
            crate::config::TlsSettings::default()
        };
        let tls = tls::client_config(authority, &settings).map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.inner.config.budgets.connect)
            .user_agent(concat!("kagami/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Sends `method` for `path` (after `/v2/`) to `endpoint`, answering
    /// one `401` and following redirects. The final response, or why not.
    async fn send(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        method: Method,
        path: &str,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, String> {
        let authority = endpoint.authority();
        let budget = self.inner.config.budgets.response;
        let mut url = endpoint
            .base
            .join(&format!(
                "{}/{path}",
                endpoint.base.path().trim_end_matches('/')
            ))
            .map_err(|e| format!("bad URL: {e}"))?;
        let mut authorization = self.inner.auth.remembered(&authority, repository);
        let mut answered = false;
        let mut visited = Vec::new();
        loop {
            let here = host_of(&url);
            let http = self.http(&here, endpoint)?;
            let mut request = http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            // The registry's credentials go to the registry only.
            if here == authority
                && let Some(value) = &authorization
            {
                request = request.header(AUTHORIZATION, value);
            }
            let response = tokio::time::timeout(budget, request.send())
                .await
                .map_err(|_| format!("no answer within {budget:?}"))?
                .map_err(|e| error_chain(&e))?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && here == authority && !answered {
                answered = true;
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(challenge::parse)
                    .ok_or("401 without a challenge kagami can answer")?;
                let header = self
                    .inner
                    .auth
                    .answer(
                        &http,
                        &challenge,
                        endpoint.host.credentials.as_ref(),
                        (&authority, repository),
                        budget,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                authorization = Some(header);
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                self.inner.auth.forget(&authority, repository);
                return Err(format!("answered {status}: credentials refused or missing"));
            }
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or("a redirect without a Location")?;
                let next = url
                    .join(location)
                    .map_err(|e| format!("a redirect to a bad URL: {e}"))?;
                if visited.contains(&next) || visited.len() >= MAX_REDIRECTS {
                    return Err(format!(
                        "a redirect loop, or more than {MAX_REDIRECTS} redirects"
                    ));
                }
                visited.push(next.clone());
                url = next;
                continue;
            }
            return Ok(response);
        }
    }

    /// `GET` or `HEAD` of a manifest, sorted.
    async fn manifest_request(
        &self,
        endpoint: &Endpoint,
        repository: &Repository,
        reference: &str,
        method: Method,
    ) -> Result<Option<reqwest::Response>, String> {
        let name = endpoint.repository(repository);
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let response = self
            .send(
                endpoint,
                &name,
                method,
                &format!("{name}/manifests/{reference}"),
                headers,
            )
            .await?;
        sort(response).map(|found| found.map(|(response, _)| response))
    }
}

/// Content, `404`, or a failure; with the status of content.
fn sort(response: reqwest::Response) -> Result<Option<(reqwest::Response, StatusCode)>, String> {
    let status = response.status();
    match status {
        StatusCode::OK | StatusCode::PARTIAL_CONTENT => Ok(Some((response, status))),
        StatusCode::NOT_FOUND => Ok(None),
        StatusCode::TOO_MANY_REQUESTS => Err("429: rate-limited".to_owned()),
        other => Err(format!("answered {other}")),
    }
}

fn host_of(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// An error and its causes, in one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn header_str(response: &reqwest::Response, name: http::HeaderName) -> Option<&str> {
    response.headers().get(name)?.to_str().ok()
}

#[async_trait::async_trait]
impl Upstream for Client {
    async fn resolve(
        &self,
        registry: &Registry,
        repository: &Repository,
        tag: &Tag,
    ) -> Result<Option<Resolved>, upstream::Error> {
        self.each_endpoint(registry, |endpoint| async move {
            let response = match self
                .manifest_request(&endpoint, repository, tag.as_str(), Method::HEAD)
                .await
            {
                Ok(Some(response)) => response,
                Ok(None) => return Attempt::NotFound,
                Err(reason) => return Attempt::Failed(reason),
            };
            let media_type = header_str(&response, CONTENT_TYPE)
                .and_then(|text| text.split(';').next()?.trim().parse::<MediaType>().ok());
            let digest = header_str(
                &response,
                http::HeaderName::from_static("docker-content-digest"),
            )
            .and_then(|text| text.parse::<Digest>().ok());
            let size = header_str(&response, CONTENT_LENGTH).and_then(|text| text.parse().ok());
            if let (Some(media_type), Some(digest), Some(size)) = (media_type, digest, size) {
                return Attempt::Found(Resolved {
                    digest,
                    media_type,
                    size,
                });
            }
            // Some registries leave the digest out of a HEAD: read it.
            match self
                .manifest_request(&endpoint, repository, tag.as_str(), Method::GET)
                .await
            {
                Ok(Some(response)) => match read_manifest(response).await {
                    Ok((media_type, bytes)) => Attempt::Found(Resolved {
                        digest: Hasher::digest(kagami_core::Algorithm::Sha256, &bytes),
                        media_type,
                        size: bytes.len() as u64,
                    }),
                    Err(reason) => Attempt::Failed(reason),
                },
                Ok(None) => Attempt::NotFound,
                Err(reason) => Attempt::Failed(reason),
            }
        })
        .await
    }

    async fn manifest(
        &self,
        registry: &Registry,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Option<(MediaType, Bytes)>, upstream::Error> {
        let found = self
            .each_endpoint(registry, |endpoint| async move {
                match self
                    .manifest_request(&endpoint, repository, &digest.to_string(), Method::GET)
                    .await
                {
                    Ok(Some(response)) => match read_manifest(response).await {
                        Ok(found) => Attempt::Found(found),
                        Err(reason) => Attempt::Failed(reason),
                    },
                    Ok(None) => Attempt::NotFound,
                    Err(reason) => Attempt::Failed(reason),
                }
            })
            .await?;
        let Some((media_type, bytes)) = found else {
            return Ok(None);
        };
        let actual = Hasher::digest(digest.algorithm(), &bytes);
        if actual != *digest {
            return Err(upstream::Error::Invalid {
                registry: registry.clone(),
                what: format!("manifest {digest}"),
                reason: format!("its bytes hash to {actual}"),
            });
        }
        Ok(Some((media_type, bytes)))
    }

    async fn blob(
        &self,
        registry: &Registry,
        repository: &Repository,
        digest: &Digest,
        offset: u64,
    ) -> Result<Option<UpstreamBlob>, upstream::Error> {
        let idle = self.inner.config.budgets.idle;
        self.each_endpoint(registry, |endpoint| async move {
            let name = endpoint.repository(repository);
            let mut headers = HeaderMap::new();
            if offset > 0
                && let Ok(value) = HeaderValue::from_str(&format!("bytes={offset}-"))
            {
                headers.insert(RANGE, value);
            }
            let response = match self
                .send(
                    &endpoint,
                    &name,
                    Method::GET,
                    &format!("{name}/blobs/{digest}"),
                    headers,
                )
                .await
                .and_then(sort)
            {
                Ok(Some((response, status))) => (response, status),
                Ok(None) => return Attempt::NotFound,
                Err(reason) => return Attempt::Failed(reason),
            };
            match open_body(response, offset, idle) {
                Ok(blob) => Attempt::Found(blob),
                Err(reason) => Attempt::Failed(reason),
            }
        })
        .await
    }
}

/// A manifest response's type and bytes, read whole within the limit.
async fn read_manifest(response: reqwest::Response) -> Result<(MediaType, Bytes), String> {
    let media_type = header_str(&response, CONTENT_TYPE)
        .and_then(|text| text.split(';').next()?.trim().parse::<MediaType>().ok());
    if response.content_length().is_some_and(|n| n > MAX_MANIFEST) {
        return Err(format!("a manifest larger than {MAX_MANIFEST} bytes"));
    }
    let mut body = response.bytes_stream();
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| error_chain(&e))?;
        if (bytes.len() + chunk.len()) as u64 > MAX_MANIFEST {
            return Err(format!("a manifest larger than {MAX_MANIFEST} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    let bytes = bytes.freeze();
    let media_type = media_type
        .or_else(|| MediaType::detect(&bytes))
        .ok_or("a manifest of no type kagami knows")?;
    Ok((media_type, bytes))
}

/// A blob response as a body from `offset`: its size from the headers, the
/// bytes before `offset` skipped if the registry ignored the `Range`, and
/// a stall of `idle` ending the stream with an error.
fn open_body(
    (response, status): (reqwest::Response, StatusCode),
    offset: u64,
    idle: std::time::Duration,
) -> Result<UpstreamBlob, String> {
    let (size, skip) = if status == StatusCode::PARTIAL_CONTENT {
        let range = header_str(&response, CONTENT_RANGE).ok_or("a 206 without Content-Range")?;
        let (start, total) = content_range(range).ok_or("an unreadable Content-Range")?;
        if start != offset {
            return Err(format!("a range from {start}, not {offset}"));
        }
        (total, 0)
    } else {
        let length = response
            .content_length()
            .ok_or("a blob without Content-Length")?;
        (length, offset)
    };
    if offset > size {
        return Err(format!("an offset {offset} past the blob's {size} bytes"));
    }
    let body = response.bytes_stream();
    let stream = futures::stream::unfold(
        (Box::pin(body), skip),
        move |(mut body, mut skip)| async move {
            loop {
                let next = match tokio::time::timeout(idle, body.next()).await {
                    Err(_) => {
                        let error = std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("the registry sent nothing for {idle:?}"),
                        );
                        return Some((Err(error), (body, 0)));
                    }
                    Ok(None) => return None,
                    Ok(Some(Err(e))) => {
                        let error = std::io::Error::other(error_chain(&e));
                        return Some((Err(error), (body, 0)));
                    }
                    Ok(Some(Ok(chunk))) => chunk,
                };
                if skip >= next.len() as u64 {
                    skip -= next.len() as u64;
                    continue;
                }
                let chunk = next.slice(usize::try_from(skip).unwrap_or(0)..);
                return Some((Ok(chunk), (body, 0)));
            }
        },
    );
    let body: BlobStream = Box::pin(stream);
    Ok(UpstreamBlob { size, body })
}

/// `bytes START-END/TOTAL` → (START, TOTAL).
fn content_range(text: &str) -> Option<(u64, u64)> {
    let rest = text.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()?))
}
