//! What the registry API has served, for metrics and the status page:
//! requests by registry, kind and outcome, how long responses took by
//! route and status class, bytes handed to clients, bodies streaming now,
//! and the latest pulls and failures. Cheap to bump on the data path, read
//! when a scrape or a status page asks.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use futures::Stream;
use kagami_core::store::BlobStream;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Registries counted one by one; requests for any further registry are
/// counted under [`OTHER_REGISTRIES`], so a client naming ever new
/// registries cannot grow the map.
const MAX_REGISTRIES: usize = 64;
/// The `registry` label of requests beyond [`MAX_REGISTRIES`] (never a
/// valid registry host, which has no spaces).
pub const OTHER_REGISTRIES: &str = "other registries";
/// The response header that says where a manifest's or blob's bytes came
/// from ([`Outcome::as_str`]: `local`, `peer`, `upstream`), for people and
/// tools such as `kagami measure`.
pub const SOURCE_HEADER: &str = "x-kagami-source";

/// How many recent pulls and failures are kept for the status page.
const RECENT: usize = 50;

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A manifest (or index), by tag or digest.
    Manifest,
    /// A blob (layer or config).
    Blob,
}

impl Kind {
    /// A short name for labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Manifest => "manifest",
            Kind::Blob => "blob",
        }
    }
}

/// Where the bytes of an answered request came from, or that none did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// This node's store (its pull-through cache included).
    Local,
    /// A peer that holds it.
    Peer,
    /// The upstream registry, through the key's origin (pull-through).
    Upstream,
    /// Nobody: answered 404.
    Miss,
}

impl Outcome {
    /// Every outcome, for reporting.
    pub const ALL: [Outcome; 4] = [
        Outcome::Local,
        Outcome::Peer,
        Outcome::Upstream,
        Outcome::Miss,
    ];

    /// A short name for labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Local => "local",
            Outcome::Peer => "peer",
            Outcome::Upstream => "upstream",
            Outcome::Miss => "miss",
        }
    }
}

/// What one request counter counts: requests of a registry, kind and
/// outcome.
type Counter = (Arc<str>, Kind, Outcome);

/// The labels of the request-duration histogram.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    /// `manifests`, `blobs`, `tags`, `ping`, `health` or `other`.
    pub route: &'static str,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub status_class: &'static str,
}

/// One pull the node answered, for the status page.
#[derive(Debug, Clone)]
pub struct Pull {
    /// When it was asked for.
    pub at: SystemTime,
    /// `registry/repository` and the tag or digest asked for.
    pub reference: String,
    /// A manifest or a blob.
    pub kind: Kind,
    /// Where its bytes came from.
    pub outcome: Outcome,
    /// Bytes sent (so far, for a body still streaming when it ended).
    pub bytes: u64,
    /// From the request to the body's last byte (or the client leaving).
    pub took: Duration,
}

/// A request that failed with a server error, for the status page.
#[derive(Debug, Clone)]
pub struct Failure {
    /// When it failed.
    pub at: SystemTime,
    /// The method and path.
    pub request: String,
    /// The error and its causes.
    pub error: String,
}

/// The registry API's counters. Cloning is cheap and shares them.
#[derive(Debug, Clone, Default)]
pub struct RequestStats {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    requests: Mutex<BTreeMap<Counter, u64>>,
    served_bytes: AtomicU64,
    in_flight: AtomicI64,
    /// Unix seconds of the last request served from a peer or upstream.
    last_mirrored: AtomicU64,
    durations: Family<RouteLabels, Histogram>,
    pulls: Mutex<VecDeque<Pull>>,
    failures: Mutex<VecDeque<Failure>>,
}

impl Default for Inner {
    fn default() -> Inner {
        Inner {
            requests: Mutex::default(),
            served_bytes: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            last_mirrored: AtomicU64::new(0),
            // 1 ms to about 65 s: a local hit to a slow pull-through.
            durations: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 4.0, 9))
            }),
            pulls: Mutex::default(),
            failures: Mutex::default(),
        }
    }
}

impl RequestStats {
    /// Requests so far, by registry, kind and outcome.
    pub fn requests(&self) -> Vec<(Arc<str>, Kind, Outcome, u64)> {
        lock(&self.inner.requests)
            .iter()
            .map(|((registry, kind, outcome), n)| (registry.clone(), *kind, *outcome, *n))
            .collect()
    }

    /// Body bytes handed to clients (manifests and blobs).
    pub fn served_bytes(&self) -> u64 {
        self.inner.served_bytes.load(Ordering::Relaxed)
    }

    /// Blob bodies streaming to clients now.
    pub fn transfers_in_flight(&self) -> u64 {
        self.inner.in_flight.load(Ordering::Relaxed).max(0) as u64
    }

    /// When a request was last served from a peer or the upstream.
    pub fn last_mirrored(&self) -> Option<SystemTime> {
        match self.inner.last_mirrored.load(Ordering::Relaxed) {
            0 => None,
            secs => Some(UNIX_EPOCH + Duration::from_secs(secs)),
        }
    }

    /// How long responses took to start, by route and status class; a
    /// clone shares the histograms (to register with a metrics registry).
    pub fn durations(&self) -> Family<RouteLabels, Histogram> {
        self.inner.durations.clone()
    }

    /// The latest pulls, newest first.
    pub fn recent_pulls(&self) -> Vec<Pull> {
        lock(&self.inner.pulls).iter().rev().cloned().collect()
    }

    /// The latest server errors, newest first.
    pub fn recent_failures(&self) -> Vec<Failure> {
        lock(&self.inner.failures).iter().rev().cloned().collect()
    }

    /// Counts one answered manifest or blob request.
    pub(crate) fn count(&self, registry: &str, kind: Kind, outcome: Outcome) {
        let mut requests = lock(&self.inner.requests);
        let known = requests.keys().any(|(r, _, _)| &**r == registry);
        let distinct = || {
            let mut names: Vec<&Arc<str>> = requests.keys().map(|(r, _, _)| r).collect();
            names.dedup();
            names.len()
        };
        let registry: Arc<str> = if known || distinct() < MAX_REGISTRIES {
            registry.into()
        } else {
            OTHER_REGISTRIES.into()
        };
        *requests.entry((registry, kind, outcome)).or_default() += 1;
        drop(requests);
        if matches!(outcome, Outcome::Peer | Outcome::Upstream) {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.inner.last_mirrored.store(now, Ordering::Relaxed);
        }
    }

    /// Records a pull whose whole answer is known (a manifest, a `HEAD`).
    pub(crate) fn pulled(&self, pull: Pull) {
        self.inner
            .served_bytes
            .fetch_add(pull.bytes, Ordering::Relaxed);
        push(&self.inner.pulls, pull);
    }

    /// Records a server error.
    pub(crate) fn failed(&self, request: String, error: String) {
        let failure = Failure {
            at: SystemTime::now(),
            request,
            error,
        };
        push(&self.inner.failures, failure);
    }

    /// `body`, counted: its bytes as they pass, the transfer in flight
    /// until it is dropped, and then the pull it was.
    pub(crate) fn stream(&self, body: BlobStream, pull: Pull, started: Instant) -> BlobStream {
        self.inner.in_flight.fetch_add(1, Ordering::Relaxed);
        Box::pin(Counted {
            body,
            stats: self.clone(),
            pull: Some(pull),
            started,
        })
    }

    fn observe(&self, route: &'static str, status: http::StatusCode, took: Duration) {
        let status_class = match status.as_u16() {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.inner
            .durations
            .get_or_create(&RouteLabels {
                route,
                status_class,
            })
            .observe(took.as_secs_f64());
    }
}

/// Times every response of the application it wraps, by route.
pub(crate) async fn time(
    State(stats): State<RequestStats>,
    request: Request,
    next: Next,
) -> Response {
    let route = route_of(request.uri().path());
    let started = Instant::now();
    let response = next.run(request).await;
    stats.observe(route, response.status(), started.elapsed());
    response
}

/// The route a path belongs to, for labels (never the path itself, which
/// a client chooses).
fn route_of(path: &str) -> &'static str {
    match path {
        "/v2" | "/v2/" => "ping",
        "/healthz" | "/readyz" => "health",
        _ if path.starts_with("/v2/") && path.contains("/manifests/") => "manifests",
        _ if path.starts_with("/v2/") && path.contains("/blobs/") => "blobs",
        _ if path.starts_with("/v2/") && path.ends_with("/tags/list") => "tags",
        _ => "other",
    }
}

/// A body that counts what passes through it.
struct Counted {
    body: BlobStream,
    stats: RequestStats,
    /// Recorded when the body ends.
    pull: Option<Pull>,
    started: Instant,
}

impl Stream for Counted {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.body.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            let n = chunk.len() as u64;
            self.stats
                .inner
                .served_bytes
                .fetch_add(n, Ordering::Relaxed);
            if let Some(pull) = &mut self.pull {
                pull.bytes += n;
            }
        }
        polled
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.stats.inner.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(mut pull) = self.pull.take() {
            pull.took = self.started.elapsed();
            push(&self.stats.inner.pulls, pull);
        }
    }
}

fn push<T>(queue: &Mutex<VecDeque<T>>, item: T) {
    let mut queue = lock(queue);
    if queue.len() == RECENT {
        queue.pop_front();
    }
    queue.push_back(item);
}

/// Every critical section here is one map or queue update.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn registries_beyond_the_bound_are_counted_together() {
        let stats = RequestStats::default();
        for n in 0..MAX_REGISTRIES + 10 {
            stats.count(&format!("r{n}.example"), Kind::Blob, Outcome::Local);
        }
        stats.count("r0.example", Kind::Blob, Outcome::Local);
        let requests = stats.requests();
        assert_eq!(requests.len(), MAX_REGISTRIES + 1);
        let other = requests
            .iter()
            .find(|(r, ..)| &**r == OTHER_REGISTRIES)
            .unwrap();
        assert_eq!(other.3, 10);
        let first = requests
            .iter()
            .find(|(r, ..)| &**r == "r0.example")
            .unwrap();
        assert_eq!(first.3, 2);
        assert!(stats.last_mirrored().is_none());
        stats.count("r0.example", Kind::Manifest, Outcome::Peer);
        assert!(stats.last_mirrored().is_some());
    }

    #[tokio::test]
    async fn a_streamed_body_is_in_flight_until_dropped_and_then_a_pull() {
        let stats = RequestStats::default();
        let chunks: Vec<std::io::Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"de")),
        ];
        let pull = Pull {
            at: SystemTime::now(),
            reference: "docker.io/library/a@sha256:00".into(),
            kind: Kind::Blob,
            outcome: Outcome::Peer,
            bytes: 0,
            took: Duration::ZERO,
        };
        let mut body = stats.stream(
            Box::pin(futures::stream::iter(chunks)),
            pull,
            Instant::now(),
        );
        assert_eq!(stats.transfers_in_flight(), 1);
        while body.next().await.is_some() {}
        assert_eq!(stats.served_bytes(), 5);
        assert!(stats.recent_pulls().is_empty(), "recorded when it ends");
        drop(body);
        assert_eq!(stats.transfers_in_flight(), 0);
        let pulls = stats.recent_pulls();
        assert_eq!(pulls.len(), 1);
        assert_eq!(pulls[0].bytes, 5);
    }

    #[test]
    fn routes_are_named_by_kind_never_by_path() {
        assert_eq!(route_of("/v2/"), "ping");
        assert_eq!(route_of("/v2/library/a/manifests/1"), "manifests");
        assert_eq!(route_of("/v2/library/a/blobs/sha256:00"), "blobs");
        assert_eq!(route_of("/v2/library/a/tags/list"), "tags");
        assert_eq!(route_of("/readyz"), "health");
        assert_eq!(route_of("/anything/else"), "other");
    }

    #[test]
    fn only_the_latest_are_kept() {
        let stats = RequestStats::default();
        for n in 0..RECENT + 5 {
            stats.failed(format!("GET /{n}"), "e".into());
        }
        let failures = stats.recent_failures();
        assert_eq!(failures.len(), RECENT);
        assert_eq!(failures[0].request, format!("GET /{}", RECENT + 4));
    }
}
