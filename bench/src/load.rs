//! The load client: N concurrent workers share one queue of blob downloads
//! (`rounds` passes over the digest list), stream each body and count its
//! bytes, and the run ends in one [`Summary`].

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::header::HOST;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use kagami_core::{Algorithm, Digest};
use sha2::Digest as _;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::timeout;

/// Budget for opening a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Budget for each wait on the server: the response head, each body chunk.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors printed to stderr in full, over all workers; the rest are only
/// counted.
const SHOWN_ERRORS: u64 = 5;

/// A blob to download and the size its body must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
}

/// What one `load` run does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Base URL of the registry, without the trailing `/v2`.
    pub url: String,
    /// Repository the blobs are fetched from.
    pub repo: String,
    pub blobs: Vec<Blob>,
    pub concurrency: usize,
    /// Passes over `blobs`; the downloads of all passes form one queue.
    pub rounds: usize,
    /// Hash every body and compare it with its digest.
    pub verify: bool,
}

/// The figures of one run. Only complete, correct bodies count as bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub bytes: u64,
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
}

impl fmt::Display for Summary {
    /// One `key=value` line; MB is 10^6 bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_second = |n: f64| {
            if self.seconds > 0.0 {
                n / self.seconds
            } else {
                0.0
            }
        };
        write!(
            f,
            "bytes={} seconds={:.3} mb_per_s={:.1} req_per_s={:.1} requests={} errors={}",
            self.bytes,
            self.seconds,
            per_second(self.bytes as f64) / 1e6,
            per_second(self.requests as f64),
            self.requests,
            self.errors,
        )
    }
}

/// Reads `digest size` lines; blank lines and `#` comments are skipped.
pub fn read_digest_list(path: &Path) -> anyhow::Result<Vec<Blob>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the digest list {}", path.display()))?;
    let mut blobs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), number + 1);
        let (digest, size) = line
            .split_once(' ')
            .with_context(|| format!("{}: expected `digest size`", at()))?;
        blobs.push(Blob {
            digest: digest.parse().with_context(at)?,
            size: size.trim().parse().with_context(at)?,
        });
    }
    if blobs.is_empty() {
        bail!("the digest list {} names no blob", path.display());
    }
    Ok(blobs)
}

/// Runs the plan to the end. Cancelling the future aborts every worker.
pub async fn run(plan: &Plan) -> anyhow::Result<Summary> {
    if plan.concurrency == 0 || plan.rounds == 0 {
        bail!("concurrency and rounds must be at least 1");
    }
    let base: Uri = plan
        .url
        .parse()
        .with_context(|| format!("{:?} is not a URL", plan.url))?;
    if base.scheme_str() != Some("http") {
        bail!("only http:// URLs are supported, not {:?}", plan.url);
    }
    let authority = base
        .authority()
        .with_context(|| format!("{:?} names no host", plan.url))?
        .to_string();
    let prefix = format!(
        "{}/v2/{}/blobs",
        base.path().trim_end_matches('/'),
        plan.repo
    );
    let queue = Arc::new(Queue {
        authority,
        jobs: plan
            .blobs
            .iter()
            .map(|blob| (format!("{prefix}/{}", blob.digest), blob.clone()))
            .collect(),
        total: plan.blobs.len() * plan.rounds,
        next: AtomicUsize::new(0),
        shown_errors: AtomicU64::new(0),
    });

    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..plan.concurrency {
        workers.spawn(worker(Arc::clone(&queue), plan.verify));
    }
    let mut summary = Summary::default();
    while let Some(done) = workers.join_next().await {
        let part = done.context("a load worker panicked")?;
        summary.bytes += part.bytes;
        summary.requests += part.requests;
        summary.errors += part.errors;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The shared queue: job `i` is blob `i % jobs.len()`.
struct Queue {
    /// `host:port` to connect to and to send as `Host`.
    authority: String,
    /// Request path and the blob it must return.
    jobs: Vec<(String, Blob)>,
    total: usize,
    next: AtomicUsize,
    shown_errors: AtomicU64,
}

impl Queue {
    fn take(&self) -> Option<&(String, Blob)> {
        let job = self.next.fetch_add(1, Ordering::Relaxed);
        (job < self.total).then(|| &self.jobs[job % self.jobs.len()])
    }

    /// Whether an error is among the first few, which are worth printing.
    fn show_error(&self) -> bool {
        self.shown_errors.fetch_add(1, Ordering::Relaxed) < SHOWN_ERRORS
    }
}

/// One client: a single keep-alive connection, reopened only after an
/// error. Owning it (rather than sharing a pool) makes N workers exactly N
/// connections; a pooled client opens a fresh connection whenever the next
/// request races the return of the previous one to the pool.
async fn worker(queue: Arc<Queue>, verify: bool) -> Summary {
    let mut summary = Summary::default();
    let mut connection: Option<SendRequest<Empty<Bytes>>> = None;
    while let Some((path, blob)) = queue.take() {
        summary.requests += 1;
        match fetch(&mut connection, &queue.authority, path, blob, verify).await {
            Ok(bytes) => summary.bytes += bytes,
            Err(error) => {
                connection = None;
                summary.errors += 1;
                if queue.show_error() {
                    eprintln!(
                        "kagami-bench: GET http://{}{path}: {error:#}",
                        queue.authority
                    );
                }
            }
        }
    }
    summary
}

async fn connect(authority: &str) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(authority))
        .await
        .context("connect timed out")?
        .context("cannot connect")?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    // Ends by itself when the sender is dropped or the server closes.
    tokio::spawn(connection);
    Ok(sender)
}

/// Downloads one blob, streaming; returns its size once the body is whole
/// (and, with `verify`, matches its digest).
async fn fetch(
    connection: &mut Option<SendRequest<Empty<Bytes>>>,
    authority: &str,
    path: &str,
    blob: &Blob,
    verify: bool,
) -> anyhow::Result<u64> {
    let sender = match connection {
        Some(sender) if !sender.is_closed() => sender,
        _ => connection.insert(connect(authority).await?),
    };
    timeout(READ_TIMEOUT, sender.ready())
        .await
        .context("the connection did not become ready")??;
    let request = Request::get(path)
        .header(HOST, authority)
        .body(Empty::new())?;
    let response = timeout(READ_TIMEOUT, sender.send_request(request))
        .await
        .context("no response")??;
    if response.status() != StatusCode::OK {
        bail!("status {}", response.status());
    }
    let mut body = response.into_body();
    let mut hasher = verify.then(|| Hasher::new(blob.digest.algorithm()));
    let mut received = 0u64;
    while let Some(frame) = timeout(READ_TIMEOUT, body.frame())
        .await
        .context("the body stalled")?
    {
        if let Ok(chunk) = frame?.into_data() {
            received += chunk.len() as u64;
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&chunk);
            }
        }
    }
    if received != blob.size {
        bail!("body of {received} bytes, expected {}", blob.size);
    }
    if let Some(hasher) = hasher {
        let actual = hasher.finish();
        if actual != blob.digest {
            bail!("body hashes to {actual}");
        }
    }
    Ok(received)
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest::from_hash(Algorithm::Sha256, &h.finalize()),
            Hasher::Sha512(h) => Digest::from_hash(Algorithm::Sha512, &h.finalize()),
        }
    }
}

#[cfg(test)]
mod tests;
