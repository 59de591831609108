//! A client of a node's registry API, as containerd pulls through it:
//! manifests and blobs, each body hashed as it arrives and checked against
//! the digest it must have.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kagami_core::{Algorithm, Digest, Reference};
use kagami_store::testing::BuiltImage;
use sha2::Digest as _;

/// The manifest types a client accepts, as containerd sends them.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// The sha256 digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> Digest {
    Digest::from_hash(Algorithm::Sha256, &sha2::Sha256::digest(bytes))
}

/// `http://ADDR/v2/<repository>/<kind>/<name>?ns=<registry>`, for the
/// repository and registry of `image`, as containerd asks a mirror.
pub fn url(addr: SocketAddr, image: &Reference, kind: &str, name: &str) -> String {
    format!(
        "http://{addr}/v2/{}/{kind}/{name}?ns={}",
        image.repository(),
        image.registry()
    )
}

/// Installs the process's rustls provider (ring, as kagami uses), which
/// reqwest needs before it builds any client; once per test binary.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// One HTTP client per test: no proxy, whatever the environment says.
pub fn client() -> reqwest::Client {
    install_tls_provider();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client")
}

/// A `GET` (or `HEAD`) and how long its response head took.
pub async fn timed(request: reqwest::RequestBuilder) -> (reqwest::Response, Duration) {
    let started = Instant::now();
    let response = request.send().await.expect("request reaches the node");
    (response, started.elapsed())
}

/// `GET` of a manifest by tag or digest.
pub async fn manifest(addr: SocketAddr, image: &Reference, name: &str) -> reqwest::Response {
    client()
        .get(url(addr, image, "manifests", name))
        .header("accept", ACCEPT)
        .send()
        .await
        .expect("request reaches the node")
}

/// Checks a manifest response: 200, and body, `Docker-Content-Digest` and
/// `want` all the same digest.
pub async fn check_manifest(response: reqwest::Response, want: &Digest) {
    assert_eq!(response.status(), 200, "manifest {want}");
    let announced = response.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.bytes().await.expect("manifest body");
    assert_eq!(announced, want.to_string(), "Docker-Content-Digest");
    assert_eq!(sha256(&body), *want, "manifest bytes of {want}");
}

/// What a client received of a blob body.
#[derive(Debug)]
pub struct Received {
    /// The response status.
    pub status: u16,
    /// The `Content-Length` announced.
    pub length: Option<u64>,
    /// Bytes received before the body ended or broke.
    pub bytes: u64,
    /// Their sha256 digest.
    pub digest: Digest,
    /// Why the body broke, if it did.
    pub error: Option<String>,
}

impl Received {
    /// Whether exactly the blob `digest` of `size` bytes arrived, whole.
    pub fn is(&self, digest: &Digest, size: u64) -> bool {
        self.status == 200 && self.error.is_none() && self.bytes == size && self.digest == *digest
    }
}

/// `GET` of a blob, its body read to the end (or the break) and hashed.
pub async fn blob(addr: SocketAddr, image: &Reference, digest: &Digest) -> Received {
    let response = client()
        .get(url(addr, image, "blobs", digest.as_str()))
        .send()
        .await
        .expect("request reaches the node");
    let status = response.status().as_u16();
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let mut hasher = sha2::Sha256::new();
    let (mut bytes, mut error) = (0, None);
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => {
                bytes += chunk.len() as u64;
                hasher.update(&chunk);
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    Received {
        status,
        length,
        bytes,
        digest: Digest::from_hash(Algorithm::Sha256, &hasher.finalize()),
        error,
    }
}

/// Pulls all of `image` through the node at `addr` as containerd would:
/// the top manifest by tag, every manifest by digest, every blob; each
/// checked against its digest and size. Returns the bytes received.
pub async fn pull_image(addr: SocketAddr, image: &BuiltImage) -> u64 {
    let reference = &image.reference;
    let tag = reference.tag().expect("a tagged image").to_string();
    check_manifest(manifest(addr, reference, &tag).await, &image.digest).await;
    for digest in &image.manifests {
        check_manifest(manifest(addr, reference, digest.as_str()).await, digest).await;
    }
    let mut total = 0;
    for (digest, size) in &image.blobs {
        let received = blob(addr, reference, digest).await;
        assert!(received.is(digest, *size), "blob {digest}: {received:?}");
        total += received.bytes;
    }
    total
}

/// Polls the manifest of `image` by `name` through `addr` until it is
/// served (records take a moment to spread), then checks it.
pub async fn eventually_manifest(addr: SocketAddr, image: &Reference, name: &str, want: &Digest) {
    let response =
        crate::harness::eventually(&format!("{name} to be served through {addr}"), || async {
            let response = manifest(addr, image, name).await;
            (response.status() != 404).then_some(response)
        })
        .await;
    check_manifest(response, want).await;
}
