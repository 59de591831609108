//! Asking one peer for content over HTTP or HTTPS (see `clients`): the
//! requests, and what counts as a good answer. Every request carries the
//! loop guard and `?ns=`.

use std::error::Error as _;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use http::{HeaderMap, Method, StatusCode};
use kagami_core::router::Peer;
use kagami_core::{Digest, MediaType, Registry, Repository};
use reqwest::{RequestBuilder, Response, Url};

use super::clients::Clients;
use super::config::MirrorConfig;
use super::{MIRRORED_HEADER, verify};
use crate::path::TagOrDigest;
use crate::range::{ByteRange, ContentRange};
use crate::routes::DOCKER_CONTENT_DIGEST;

/// Largest manifest accepted from a peer (the distribution registry's
/// own limit); manifests are read whole, so this bounds the memory.
const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// Why one request to one peer did not give a usable answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum AttemptError {
    /// No connection, or the connection broke before the response head.
    #[error("request failed: {source}")]
    Request { source: reqwest::Error },
    /// No client for the peer: its TLS configuration could not be made.
    #[error("no TLS client for the peer: {reason}")]
    Client { reason: String },
    /// The TLS handshake failed: the peer's certificate is not from the
    /// cluster, does not bind the peer ID, or the peer refused ours.
    #[error("TLS handshake failed: {reason}")]
    Handshake { reason: String },
    /// No response head within the stall timeout.
    #[error("no response within {budget:?}")]
    Timeout { budget: Duration },
    /// A status other than the one asked for (404: a stale record).
    #[error("answered {status}")]
    Status { status: StatusCode },
    /// A header missing, malformed or inconsistent with the request.
    #[error("{what}")]
    Header { what: &'static str },
    /// A manifest over [`MAX_MANIFEST_BYTES`].
    #[error("manifest larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
    /// Bytes that do not hash to their digest.
    #[error("bytes hash to {actual}, not {expected}")]
    Corrupt { expected: Digest, actual: Digest },
}

impl AttemptError {
    /// Whether the peer sent wrong bytes (rather than failing to send).
    pub(super) fn is_corrupt(&self) -> bool {
        matches!(self, AttemptError::Corrupt { .. })
    }

    /// Whether the peer failed the TLS checks (rather than failing to
    /// answer).
    pub(super) fn is_untrusted(&self) -> bool {
        matches!(self, AttemptError::Handshake { .. })
    }

    /// Whether this node could not make a client for the peer.
    pub(super) fn is_client(&self) -> bool {
        matches!(self, AttemptError::Client { .. })
    }

    /// A failed request, told apart by whether TLS refused it.
    fn request(source: reqwest::Error) -> AttemptError {
        match tls_cause(&source) {
            Some(reason) => AttemptError::Handshake { reason },
            None => AttemptError::Request { source },
        }
    }
}

/// When a TLS error is among the causes of `error`: what it says.
/// (An `io::Error`'s `source` skips the error it wraps, and hyper's
/// connector wraps the handshake's `io::Error` in another, so those are
/// unwrapped by hand.)
fn tls_cause(error: &reqwest::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(current) = cause {
        let mut inner = current;
        while let Some(io) = inner.downcast_ref::<std::io::Error>() {
            if let Some(alert) = alert_received(io) {
                return Some(alert);
            }
            match io.get_ref() {
                Some(wrapped) => inner = wrapped,
                None => break,
            }
        }
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        cause = current.source();
    }
    None
}

/// The alert a peer sent to end the connection, when it refused this
/// node's certificate after the handshake (TLS 1.3 checks the client's
/// certificate then). On HTTP/2, h2 turns the `rustls::Error` it met into
/// its text, so the alert is recognised by rustls's wording.
fn alert_received(io: &std::io::Error) -> Option<String> {
    let text = io.get_ref()?.to_string();
    (io.kind() == std::io::ErrorKind::InvalidData && text.starts_with("received fatal alert"))
        .then_some(text)
}

/// What a request names besides its content: the registry (sent as `ns`)
/// and the repository (in the path).
#[derive(Clone, Debug)]
pub(super) struct Target {
    pub(super) registry: Registry,
    pub(super) repository: Repository,
    /// Asks the peer as the content's origin: it fetches from the upstream
    /// what it does not hold (see `through`).
    pub(super) origin: bool,
}

/// A manifest a peer sent, checked against its digest.
pub(super) struct Manifest {
    pub(super) media_type: MediaType,
    pub(super) digest: Digest,
    pub(super) bytes: Bytes,
}

/// Which bytes of a blob of `size` bytes a response carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Part {
    pub(super) range: Range<u64>,
    pub(super) size: u64,
}

/// A peer's answer to a blob request.
pub(super) enum Opened {
    /// The response head; its body carries `part`.
    Body { response: Response, part: Part },
    /// The range asked for selects nothing of a blob of `size` bytes.
    Unsatisfiable { size: u64 },
}

/// Requests to peers with their clients, one stall budget and one rate
/// floor.
#[derive(Clone)]
pub(super) struct Fetch {
    clients: Arc<Clients>,
    stall: Duration,
    min_rate: u64,
    rate_window: Duration,
}

impl Fetch {
    pub(super) fn new(config: &MirrorConfig) -> Result<Fetch, crate::error::Error> {
        Ok(Fetch {
            clients: Arc::new(Clients::new(config)?),
            stall: config.stall_timeout,
            min_rate: config.min_peer_rate,
            rate_window: config.rate_window,
        })
    }

    /// Drops the per-peer clients (see `Clients::reset`).
    pub(super) fn reset_clients(&self) {
        self.clients.reset();
    }

    /// How long a body may go without new bytes.
    pub(super) fn stall(&self) -> Duration {
        self.stall
    }

    /// The slowest a peer may send a body, bytes per second (0: no floor).
    pub(super) fn min_rate(&self) -> u64 {
        self.min_rate
    }

    /// The window the floor is measured over.
    pub(super) fn rate_window(&self) -> Duration {
        self.rate_window
    }

    /// `GET` of a manifest by tag or digest, read whole and verified.
    pub(super) async fn manifest(
        &self,
        peer: &Peer,
        target: &Target,
        reference: &TagOrDigest,
    ) -> Result<Manifest, AttemptError> {
        let name = match reference {
            TagOrDigest::Tag(tag) => tag.as_str(),
            TagOrDigest::Digest(digest) => digest.as_str(),
        };
        let accept = MediaType::ALL.map(MediaType::as_str).join(", ");
        let request = self
            .request(Method::GET, peer, target, "manifests", name)?
            .header(ACCEPT, accept);
        let response = self.send(request).await?;
        if response.status() != StatusCode::OK {
            return Err(AttemptError::Status {
                status: response.status(),
            });
        }
        let headers = response.headers().clone();
        let bytes = read_capped(response).await?;
        let announced = text(&headers, DOCKER_CONTENT_DIGEST.as_str());
        let digest = verify::manifest(reference, announced, &bytes)?;
        let media_type = text(&headers, CONTENT_TYPE.as_str())
            .and_then(|value| value.parse::<MediaType>().ok())
            .or_else(|| MediaType::detect(&bytes))
            .ok_or(AttemptError::Header {
                what: "not a manifest media type",
            })?;
        Ok(Manifest {
            media_type,
            digest,
            bytes,
        })
    }

    /// What a tag names, asked of `peer` as its origin (`HEAD` of the
    /// manifest): `None` when the peer answers 404.
    pub(super) async fn resolve(
        &self,
        peer: &Peer,
        target: &Target,
        tag: &kagami_core::Tag,
        budget: Duration,
    ) -> Result<Option<kagami_core::upstream::Resolved>, AttemptError> {
        let accept = MediaType::ALL.map(MediaType::as_str).join(", ");
        let request = self
            .request(Method::HEAD, peer, target, "manifests", tag.as_str())?
            .header(ACCEPT, accept);
        let response = match tokio::time::timeout(budget, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(source)) => return Err(AttemptError::request(source)),
            Err(_) => return Err(AttemptError::Timeout { budget }),
        };
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            status => return Err(AttemptError::Status { status }),
        }
        let headers = response.headers();
        let digest = text(headers, DOCKER_CONTENT_DIGEST.as_str())
            .and_then(|value| value.parse::<Digest>().ok())
            .ok_or(AttemptError::Header {
                what: "no valid Docker-Content-Digest",
            })?;
        let media_type = text(headers, CONTENT_TYPE.as_str())
            .and_then(|value| value.parse::<MediaType>().ok())
            .ok_or(AttemptError::Header {
                what: "not a manifest media type",
            })?;
        Ok(Some(kagami_core::upstream::Resolved {
            digest,
            media_type,
            size: length(headers)?,
        }))
    }

    /// `GET` or `HEAD` of a blob, whole or `range`, up to the response
    /// head. The answer must be the one asked for: 200 with a length for
    /// the whole blob, 206 with the `Content-Range` that `range` selects,
    /// or 416 with the size when it selects nothing.
    pub(super) async fn blob(
        &self,
        method: Method,
        peer: &Peer,
        target: &Target,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<Opened, AttemptError> {
        let mut request = self.request(method.clone(), peer, target, "blobs", digest.as_str())?;
        if let Some(range) = range {
            request = request.header(RANGE, range.to_string());
        }
        let response = self.send(request).await?;
        let status = response.status();
        let mismatch = |what| Err(AttemptError::Header { what });
        let part = match (range, status) {
            (None, StatusCode::OK) => {
                let size = length(response.headers())?;
                if method == Method::GET && size == 0 {
                    // Nothing can be held back from an empty body: check now.
                    verify::check(digest, b"")?;
                }
                Part {
                    range: 0..size,
                    size,
                }
            }
            (Some(asked), StatusCode::PARTIAL_CONTENT) => {
                let Some(ContentRange::Part { range, size }) =
                    text(response.headers(), CONTENT_RANGE.as_str()).and_then(ContentRange::parse)
                else {
                    return mismatch("206 without a valid Content-Range");
                };
                if asked.resolve(size) != Ok(range.clone()) {
                    return mismatch("Content-Range is not the range asked for");
                }
                if length(response.headers())? != range.end - range.start {
                    return mismatch("Content-Length differs from Content-Range");
                }
                Part { range, size }
            }
            (Some(asked), StatusCode::RANGE_NOT_SATISFIABLE) => {
                return match text(response.headers(), CONTENT_RANGE.as_str())
                    .and_then(ContentRange::parse)
                {
                    Some(ContentRange::Unsatisfied { size }) if asked.resolve(size).is_err() => {
                        Ok(Opened::Unsatisfiable { size })
                    }
                    _ => mismatch("416 without a matching Content-Range"),
                };
            }
            (_, status) => return Err(AttemptError::Status { status }),
        };
        Ok(Opened::Body { response, part })
    }

    fn request(
        &self,
        method: Method,
        peer: &Peer,
        target: &Target,
        kind: &str,
        name: &str,
    ) -> Result<RequestBuilder, AttemptError> {
        let client = self
            .clients
            .for_peer(&peer.id)
            .map_err(|reason| AttemptError::Client { reason })?;
        // Names, tags and digests are validated: nothing in them needs escaping.
        let mut url = Url::parse(&format!(
            "{}://{}/v2/{}/{kind}/{name}",
            self.clients.scheme(),
            peer.addr,
            target.repository
        ))
        .map_err(|_| AttemptError::Header {
            what: "peer address is not a URL",
        })?;
        url.query_pairs_mut()
            .append_pair("ns", target.registry.as_str());
        let request = client.request(method, url).header(MIRRORED_HEADER, "true");
        Ok(if target.origin {
            request.header(super::through::ORIGIN_HEADER, "true")
        } else {
            request
        })
    }

    async fn send(&self, request: RequestBuilder) -> Result<Response, AttemptError> {
        match tokio::time::timeout(self.stall, request.send()).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(source)) => Err(AttemptError::request(source)),
            Err(_) => Err(AttemptError::Timeout { budget: self.stall }),
        }
    }
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The `Content-Length` header. (reqwest's `content_length` is the body's
/// size hint, which is 0 for any answer to `HEAD`.)
fn length(headers: &HeaderMap) -> Result<u64, AttemptError> {
    text(headers, CONTENT_LENGTH.as_str())
        .and_then(|value| value.parse().ok())
        .ok_or(AttemptError::Header {
            what: "no valid Content-Length",
        })
}

/// The whole body of a small response, refusing more than a manifest's
/// worth of bytes.
async fn read_capped(response: Response) -> Result<Bytes, AttemptError> {
    let announced = length(response.headers()).ok();
    if announced.is_some_and(|length| length > MAX_MANIFEST_BYTES) {
        return Err(AttemptError::TooLarge);
    }
    let mut bytes = BytesMut::with_capacity(announced.unwrap_or(0) as usize);
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(AttemptError::request)?;
        if (bytes.len() + chunk.len()) as u64 > MAX_MANIFEST_BYTES {
            return Err(AttemptError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}
