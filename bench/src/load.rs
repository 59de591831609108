//! The load client: N concurrent workers share one queue of blob downloads
//! (`rounds` passes over the digest list), stream each body and count its
//! bytes, and the run ends in one [`Summary`].

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kagami_core::{Algorithm, Digest};
use sha2::Digest as _;
use tokio::task::JoinSet;

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
        let per_second = |n: f64| if self.seconds > 0.0 { n / self.seconds } else { 0.0 };
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
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(plan.concurrency)
        .build()
        .context("cannot build the HTTP client")?;
    let base = format!("{}/v2/{}/blobs", plan.url.trim_end_matches('/'), plan.repo);
    let queue = Arc::new(Queue {
        urls: plan
            .blobs
            .iter()
            .map(|blob| (format!("{base}/{}", blob.digest), blob.clone()))
            .collect(),
        total: plan.blobs.len() * plan.rounds,
        next: AtomicUsize::new(0),
        shown_errors: AtomicU64::new(0),
    });

    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..plan.concurrency {
        workers.spawn(worker(client.clone(), Arc::clone(&queue), plan.verify));
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

/// The shared queue: job `i` is blob `i % urls.len()`.
struct Queue {
    urls: Vec<(String, Blob)>,
    total: usize,
    next: AtomicUsize,
    shown_errors: AtomicU64,
}

impl Queue {
    fn take(&self) -> Option<&(String, Blob)> {
        let job = self.next.fetch_add(1, Ordering::Relaxed);
        (job < self.total).then(|| &self.urls[job % self.urls.len()])
    }

    /// Whether an error is among the first few, which are worth printing.
    fn show_error(&self) -> bool {
        self.shown_errors.fetch_add(1, Ordering::Relaxed) < SHOWN_ERRORS
    }
}

async fn worker(client: reqwest::Client, queue: Arc<Queue>, verify: bool) -> Summary {
    let mut summary = Summary::default();
    while let Some((url, blob)) = queue.take() {
        summary.requests += 1;
        match fetch(&client, url, blob, verify).await {
            Ok(bytes) => summary.bytes += bytes,
            Err(error) => {
                summary.errors += 1;
                if queue.show_error() {
                    eprintln!("kagami-bench: GET {url}: {error:#}");
                }
            }
        }
    }
    summary
}

/// Downloads one blob, streaming; returns its size once the body is whole
/// (and, with `verify`, matches its digest).
async fn fetch(
    client: &reqwest::Client,
    url: &str,
    blob: &Blob,
    verify: bool,
) -> anyhow::Result<u64> {
    let mut response = client.get(url).send().await?;
    if response.status() != reqwest::StatusCode::OK {
        bail!("status {}", response.status());
    }
    let mut hasher = verify.then(|| Hasher::new(blob.digest.algorithm()));
    let mut received = 0u64;
    while let Some(chunk) = response.chunk().await? {
        received += chunk.len() as u64;
        if let Some(hasher) = hasher.as_mut() {
            hasher.update(&chunk);
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
