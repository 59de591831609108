//! The test harness: an in-memory `Store` that records how each blob
//! stream ends and can be made slow, broken or lying, and helpers to send
//! requests to the app and read answers. `cluster` starts served nodes
//! that mirror from each other through an in-test router, over plain HTTP
//! or over mutual TLS with the identities `tls` makes.

mod cluster;
mod tls;

pub use cluster::*;
pub use tls::*;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kagami_core::store::{
    BlobStream, ContentInfo, ContentKind, Error, Event, EventStream, Image, Store,
};
use kagami_core::{Algorithm, Digest, MediaType, Reference};
use kagami_registry::{Config, Readiness};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use tower::ServiceExt;

/// Chunk size of the streams the store hands out.
const CHUNK: usize = 64 * 1024;

/// How a blob stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEnd {
    pub digest: Digest,
    /// Bytes the stream yielded before it was dropped.
    pub yielded: u64,
    /// Whether it yielded everything it was asked for.
    pub finished: bool,
}

/// What every call of the store answers instead of the truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Unavailable,
    Backend,
    /// Never answers.
    Hang,
    /// Answers truthfully, after this long.
    Delay(Duration),
}

#[derive(Default)]
struct Inner {
    content: HashMap<Digest, (Option<MediaType>, Bytes)>,
    images: Vec<Image>,
    fault: Option<Fault>,
    /// Streams fail after yielding this many bytes.
    break_after: Option<u64>,
    /// Calls of `stat`, which every blob request makes first.
    stat_calls: usize,
}

/// A `Store` that holds everything in memory.
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// Closed, streams stop after their first chunk until it opens.
    gate: watch::Sender<bool>,
    ends: watch::Sender<Vec<StreamEnd>>,
}

pub fn sha256(bytes: &[u8]) -> Digest {
    Digest::from_hash(Algorithm::Sha256, &Sha256::digest(bytes))
}

impl MemoryStore {
    pub fn new() -> Arc<MemoryStore> {
        Arc::new(MemoryStore {
            inner: Mutex::default(),
            gate: watch::channel(true).0,
            ends: watch::channel(Vec::new()).0,
        })
    }

    pub fn add_blob(&self, bytes: impl Into<Bytes>) -> Digest {
        self.insert(None, bytes.into())
    }

    pub fn add_manifest(&self, media_type: MediaType, bytes: impl Into<Bytes>) -> Digest {
        self.insert(Some(media_type), bytes.into())
    }

    fn insert(&self, media_type: Option<MediaType>, bytes: Bytes) -> Digest {
        let digest = sha256(&bytes);
        self.insert_as(&digest, media_type, bytes);
        digest
    }

    /// Holds `bytes` under `digest`, whatever they hash to: a lying peer.
    pub fn insert_as(
        &self,
        digest: &Digest,
        media_type: Option<MediaType>,
        bytes: impl Into<Bytes>,
    ) {
        let mut inner = self.inner.lock().unwrap();
        inner
            .content
            .insert(digest.clone(), (media_type, bytes.into()));
    }

    /// Makes every stream from now on fail after `bytes` bytes.
    pub fn break_streams_after(&self, bytes: u64) {
        self.inner.lock().unwrap().break_after = Some(bytes);
    }

    /// Points `reference` (full form, e.g. `docker.io/library/nginx:1`) at a
    /// manifest added before.
    pub fn tag(&self, reference: &str, digest: &Digest) {
        let mut inner = self.inner.lock().unwrap();
        let (media_type, bytes) = inner.content.get(digest).cloned().unwrap();
        inner.images.push(Image {
            reference: reference.parse().unwrap(),
            digest: digest.clone(),
            media_type: media_type.unwrap(),
            size: bytes.len() as u64,
        });
    }

    pub fn fail(&self, fault: Option<Fault>) {
        self.inner.lock().unwrap().fault = fault;
    }

    /// How many blob requests reached the store.
    pub fn stat_calls(&self) -> usize {
        self.inner.lock().unwrap().stat_calls
    }

    pub fn set_gate(&self, open: bool) {
        self.gate.send_replace(open);
    }

    pub fn stream_ends(&self) -> Vec<StreamEnd> {
        self.ends.borrow().clone()
    }

    /// Waits (up to `limit`) until `count` streams have been dropped.
    pub async fn wait_for_stream_ends(&self, count: usize, limit: Duration) -> Vec<StreamEnd> {
        let mut ends = self.ends.subscribe();
        let waited = tokio::time::timeout(limit, ends.wait_for(|ends| ends.len() >= count)).await;
        assert!(
            waited.is_ok(),
            "only {:?} streams ended within {limit:?}",
            self.stream_ends()
        );
        self.stream_ends()
    }

    async fn check(&self) -> Result<(), Error> {
        let fault = self.inner.lock().unwrap().fault;
        match fault {
            None => Ok(()),
            Some(Fault::Unavailable) => Err(Error::Unavailable {
                reason: "containerd is restarting".into(),
            }),
            Some(Fault::Backend) => Err(Error::Backend {
                operation: "read the content directory".into(),
                source: Box::new(std::io::Error::other("disk on fire")),
            }),
            Some(Fault::Hang) => std::future::pending().await,
            Some(Fault::Delay(delay)) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
        }
    }

    fn content(&self, digest: &Digest) -> Result<(Option<MediaType>, Bytes), Error> {
        self.inner
            .lock()
            .unwrap()
            .content
            .get(digest)
            .cloned()
            .ok_or_else(|| Error::ContentNotFound {
                digest: digest.clone(),
            })
    }
}

/// Records how the stream it belongs to ended, when dropped.
struct Probe {
    end: StreamEnd,
    ends: watch::Sender<Vec<StreamEnd>>,
}

impl Probe {
    fn finish(&mut self) {
        self.end.finished = true;
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let end = self.end.clone();
        self.ends.send_modify(|ends| ends.push(end));
    }
}

struct Reader {
    bytes: Bytes,
    /// Fails once this many bytes were yielded.
    break_after: Option<u64>,
    gate: watch::Receiver<bool>,
    probe: Probe,
}

#[async_trait]
impl Store for MemoryStore {
    async fn list_images(&self) -> Result<Vec<Image>, Error> {
        self.check().await?;
        Ok(self.inner.lock().unwrap().images.clone())
    }

    async fn list_content(&self) -> Result<Vec<ContentInfo>, Error> {
        self.check().await?;
        let inner = self.inner.lock().unwrap();
        Ok(inner
            .content
            .iter()
            .map(|(digest, (media_type, bytes))| info(digest, *media_type, bytes))
            .collect())
    }

    async fn resolve(&self, reference: &Reference) -> Result<Image, Error> {
        self.check().await?;
        let inner = self.inner.lock().unwrap();
        inner
            .images
            .iter()
            .find(|image| {
                image.reference.registry() == reference.registry()
                    && image.reference.repository() == reference.repository()
                    && image.reference.tag() == reference.tag()
            })
            .cloned()
            .ok_or_else(|| Error::ImageNotFound {
                reference: reference.clone(),
            })
    }

    async fn stat(&self, digest: &Digest) -> Result<ContentInfo, Error> {
        self.inner.lock().unwrap().stat_calls += 1;
        self.check().await?;
        let (media_type, bytes) = self.content(digest)?;
        Ok(info(digest, media_type, &bytes))
    }

    async fn read_manifest(&self, digest: &Digest) -> Result<(MediaType, Bytes), Error> {
        self.check().await?;
        match self.content(digest)? {
            (Some(media_type), bytes) => Ok((media_type, bytes)),
            (None, _) => Err(Error::NotAManifest {
                digest: digest.clone(),
            }),
        }
    }

    async fn read(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<BlobStream, Error> {
        self.check().await?;
        let (_, bytes) = self.content(digest)?;
        let break_after = self.inner.lock().unwrap().break_after;
        let size = bytes.len() as u64;
        let range = range.unwrap_or(0..size);
        if range.start > range.end || range.end > size {
            return Err(Error::RangeOutOfBounds {
                digest: digest.clone(),
                start: range.start,
                end: range.end,
                size,
            });
        }
        let reader = Reader {
            bytes: bytes.slice(range.start as usize..range.end as usize),
            break_after,
            gate: self.gate.subscribe(),
            probe: Probe {
                end: StreamEnd {
                    digest: digest.clone(),
                    yielded: 0,
                    finished: false,
                },
                ends: self.ends.clone(),
            },
        };
        Ok(Box::pin(futures::stream::unfold(
            reader,
            |mut reader| async move {
                if reader.bytes.is_empty() {
                    return None;
                }
                if reader.probe.end.yielded > 0 {
                    // A closed sender is an open gate: the test is over.
                    let _ = reader.gate.wait_for(|open| *open).await;
                }
                let mut len = CHUNK.min(reader.bytes.len());
                if let Some(limit) = reader.break_after {
                    let left = limit.saturating_sub(reader.probe.end.yielded) as usize;
                    if left == 0 {
                        reader.bytes.clear();
                        let error = std::io::Error::other("disk read failed");
                        return Some((Err(error), reader));
                    }
                    len = len.min(left);
                }
                let chunk = reader.bytes.split_to(len);
                reader.probe.end.yielded += chunk.len() as u64;
                if reader.bytes.is_empty() {
                    // HTTP stops polling once Content-Length bytes are out.
                    reader.probe.finish();
                }
                Some((Ok(chunk), reader))
            },
        )))
    }

    fn events(&self) -> EventStream {
        Box::pin(futures::stream::empty::<Event>())
    }
}

fn info(digest: &Digest, media_type: Option<MediaType>, bytes: &Bytes) -> ContentInfo {
    ContentInfo {
        digest: digest.clone(),
        size: bytes.len() as u64,
        kind: media_type.map_or(ContentKind::Blob, ContentKind::Manifest),
    }
}

/// A ready app over `store` with the default config.
pub fn app(store: &Arc<MemoryStore>) -> axum::Router {
    app_with(store, Config::default(), ready())
}

pub fn app_with(store: &Arc<MemoryStore>, config: Config, readiness: Readiness) -> axum::Router {
    let store: Arc<dyn Store> = store.clone();
    kagami_registry::app(store, config, readiness)
}

pub fn ready() -> Readiness {
    let readiness = Readiness::new();
    readiness.set_ready(true);
    readiness
}

/// A response with its body read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Checks a 200 carrying `body` as `content_type`: length, digest and
    /// `ETag` headers that match the bytes, and the API version.
    pub fn assert_content(&self, content_type: &str, body: &[u8]) {
        let digest = sha256(body);
        assert_eq!(self.status, StatusCode::OK);
        assert!(self.body == body, "the body differs");
        assert_eq!(self.header("content-type"), Some(content_type));
        assert_eq!(
            self.header("content-length"),
            Some(body.len().to_string().as_str())
        );
        assert_eq!(self.header("docker-content-digest"), Some(digest.as_str()));
        assert_eq!(self.header("etag"), Some(format!("\"{digest}\"").as_str()));
        assert_eq!(
            self.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
    }

    /// The single OCI error code of an error body, checking its shape.
    pub fn error_code(&self) -> String {
        assert_eq!(self.header("content-type"), Some("application/json"));
        let json = self.json();
        let errors = json["errors"].as_array().expect("errors array");
        assert_eq!(errors.len(), 1, "{json}");
        assert!(
            errors[0]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{json}"
        );
        errors[0]["code"].as_str().unwrap().to_owned()
    }
}

/// Sends one request with `headers` and reads the whole answer.
pub async fn send(
    app: &axum::Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response: Response<Body> = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// Checks that HEAD of `uri` is 200 with no body and the `headers` GET has.
pub async fn assert_head_mirrors_get(app: &axum::Router, uri: &str, headers: &[&str]) {
    let full = get(app, uri).await;
    let answer = head(app, uri).await;
    assert_eq!(answer.status, 200, "HEAD {uri}");
    assert!(answer.body.is_empty(), "HEAD {uri} has a body");
    for name in headers {
        assert!(full.header(name).is_some(), "GET {uri} lacks {name}");
        assert_eq!(answer.header(name), full.header(name), "{name} of {uri}");
    }
}

pub async fn get(app: &axum::Router, uri: &str) -> Answer {
    send(app, Method::GET, uri, &[]).await
}

pub async fn head(app: &axum::Router, uri: &str) -> Answer {
    send(app, Method::HEAD, uri, &[]).await
}

/// An OCI image manifest whose JSON is unique to `seed`.
pub fn manifest_json(seed: &str) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[],"annotations":{{"seed":"{seed}"}}}}"#,
        sha256(b"{}")
    )
    .into_bytes()
}

/// Bytes that differ at every offset mod 251, so a wrong slice shows.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}
