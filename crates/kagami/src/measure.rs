//! `kagami measure IMAGE`: pulls an image through the local node, as
//! containerd would, and reports for each key how long the DHT took to
//! name its providers and which it named, and for each blob how long it
//! took, its size and where its bytes came from. Nothing is stored: the
//! blobs are read, checked against their digests and dropped.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use kagami_core::{Algorithm, Digest, Hasher, Key, MediaType, Reference};
use kagami_registry::SOURCE_HEADER;
use serde::Deserialize;

use kagami::Providers;

/// What to measure, and how to reach the node.
#[derive(Debug)]
pub struct Measure {
    /// The image, as containerd names it (`nginx:1.25`, `quay.io/a/b@sha256:…`).
    pub image: String,
    /// The node's registry API.
    pub addr: SocketAddr,
    /// Plain HTTP, for a node run with `--insecure-http`.
    pub insecure_http: bool,
    /// `os/architecture` picked from a multi-platform image.
    pub platform: String,
}

/// One key's lookup.
struct Lookup {
    key: String,
    seconds: f64,
    providers: Vec<String>,
}

/// One blob's pull.
struct Pulled {
    what: &'static str,
    digest: Digest,
    bytes: u64,
    seconds: f64,
    source: String,
}

/// Runs the measure and prints its table; an error says why the image
/// could not be pulled.
pub async fn run(measure: Measure, data_dir: &Path) -> anyhow::Result<()> {
    let reference: Reference = measure
        .image
        .parse()
        .with_context(|| format!("{:?} is not an image reference", measure.image))?;
    let node = Node::connect(&measure, data_dir)?;
    let mut lookups = Vec::new();
    let mut pulls = Vec::new();

    if let Some(key) = Key::for_tag(&reference) {
        lookups.push(node.lookup(&key).await?);
    }
    let asked = match (reference.digest(), reference.tag()) {
        (Some(digest), _) => digest.to_string(),
        (None, Some(tag)) => tag.to_string(),
        (None, None) => "latest".to_owned(),
    };
    let (mut media_type, mut digest, mut bytes, took, source) =
        node.manifest(&reference, &asked).await?;
    lookups.push(node.lookup(&Key::Digest(digest.clone())).await?);
    pulls.push(Pulled {
        what: "manifest",
        digest: digest.clone(),
        bytes: bytes.len() as u64,
        seconds: took,
        source,
    });
    if media_type.is_index() {
        let chosen = pick_platform(&bytes, &measure.platform)
            .with_context(|| format!("{reference} is a multi-platform image"))?;
        lookups.push(node.lookup(&Key::Digest(chosen.clone())).await?);
        let (t, d, b, took, source) = node.manifest(&reference, &chosen.to_string()).await?;
        pulls.push(Pulled {
            what: "manifest",
            digest: d.clone(),
            bytes: b.len() as u64,
            seconds: took,
            source,
        });
        (media_type, digest, bytes) = (t, d, b);
    }
    let links = kagami_core::manifest::Links::parse(&bytes)
        .with_context(|| format!("manifest {digest} is not a manifest"))?;
    if media_type.is_index() {
        bail!("manifest {digest} lists manifests, not layers: an index inside an index");
    }
    let config = links.config.iter().map(|d| ("config", d));
    let layers = links.layers.iter().map(|d| ("layer", d));
    for (what, descriptor) in config.chain(layers) {
        lookups.push(node.lookup(&Key::Digest(descriptor.digest.clone())).await?);
        pulls.push(node.blob(&reference, what, &descriptor.digest).await?);
    }
    print!("{}", table(&reference, &lookups, &pulls));
    Ok(())
}

/// A client of the node's registry API, with its certificate.
struct Node {
    client: reqwest::Client,
    base: String,
}

impl Node {
    fn connect(measure: &Measure, data_dir: &Path) -> anyhow::Result<Node> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (client, scheme) = if measure.insecure_http {
            (reqwest::Client::builder().no_proxy().build()?, "http")
        } else {
            let identity = member_identity(data_dir).with_context(|| {
                format!(
                    "no node certificate in {} (pass the node's --data-dir, or --insecure-http for a lab node)",
                    data_dir.display()
                )
            })?;
            let tls = kagami_cluster::tls::peer_client_config(&identity, None)?;
            let client = reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .no_proxy()
                .build()?;
            (client, "https")
        };
        Ok(Node {
            client,
            base: format!("{scheme}://{}", measure.addr),
        })
    }

    async fn lookup(&self, key: &Key) -> anyhow::Result<Lookup> {
        let encoded: String =
            url::form_urlencoded::byte_serialize(key.to_string().as_bytes()).collect();
        let url = format!("{}/debug/p2p/providers?key={encoded}", self.base);
        let response = self
            .client
            .get(url)
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        let status = response.status();
        let text = response.text().await?;
        if status == reqwest::StatusCode::NOT_FOUND {
            bail!("the node runs without P2P (--embedded-registry): nothing to measure");
        }
        if !status.is_success() {
            bail!("the node could not look up {key}: {status} {}", text.trim());
        }
        let found: Providers = serde_json::from_str(&text)
            .with_context(|| format!("the node's answer for {key} is not a providers list"))?;
        Ok(Lookup {
            key: key.to_string(),
            seconds: found.seconds,
            providers: found.providers.into_iter().map(|p| p.id).collect(),
        })
    }

    fn url(&self, reference: &Reference, kind: &str, what: &str) -> String {
        format!(
            "{}/v2/{}/{kind}/{what}?ns={}",
            self.base,
            reference.repository(),
            reference.registry()
        )
    }

    async fn manifest(
        &self,
        reference: &Reference,
        asked: &str,
    ) -> anyhow::Result<(MediaType, Digest, Vec<u8>, f64, String)> {
        let accept = MediaType::ALL.map(MediaType::as_str).join(", ");
        let started = Instant::now();
        let response = self
            .client
            .get(self.url(reference, "manifests", asked))
            .header("accept", accept)
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!(
                "cannot pull {reference}: the node answered {status} for manifest {asked} ({})",
                body.trim()
            );
        }
        let source = source(&response);
        let media_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<MediaType>().ok())
            .ok_or_else(|| anyhow!("manifest {asked} of {reference} has no manifest media type"))?;
        let bytes = response.bytes().await?.to_vec();
        let took = started.elapsed().as_secs_f64();
        let algorithm = asked
            .parse::<Digest>()
            .map_or(Algorithm::Sha256, |d| d.algorithm());
        let digest = Hasher::digest(algorithm, &bytes);
        if let Ok(want) = asked.parse::<Digest>()
            && want != digest
        {
            bail!("manifest {want} of {reference} came with other bytes ({digest})");
        }
        Ok((media_type, digest, bytes, took, source))
    }

    async fn blob(
        &self,
        reference: &Reference,
        what: &'static str,
        digest: &Digest,
    ) -> anyhow::Result<Pulled> {
        let started = Instant::now();
        let response = self
            .client
            .get(self.url(reference, "blobs", &digest.to_string()))
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        let status = response.status();
        if !status.is_success() {
            bail!("cannot pull {reference}: the node answered {status} for {what} {digest}");
        }
        let source = source(&response);
        let mut hasher = Hasher::new(digest.algorithm());
        let mut bytes = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.with_context(|| format!("the transfer of {what} {digest} broke off"))?;
            bytes += chunk.len() as u64;
            hasher.update(&chunk);
        }
        let got = hasher.finish();
        if got != *digest {
            bail!("{what} {digest} of {reference} came with other bytes ({got})");
        }
        Ok(Pulled {
            what,
            digest: digest.clone(),
            bytes,
            seconds: started.elapsed().as_secs_f64(),
            source,
        })
    }
}

/// The node's own TLS identity, from its data directory.
fn member_identity(data_dir: &Path) -> anyhow::Result<kagami_cluster::tls::Identity> {
    let material = kagami_cluster::Material::new(data_dir);
    let ca_pem = material
        .ca_cert()?
        .ok_or_else(|| anyhow!("no cluster CA certificate"))?;
    let cert = material
        .node_cert()?
        .ok_or_else(|| anyhow!("no node certificate"))?;
    let key = material.node_key()?.ok_or_else(|| anyhow!("no node key"))?;
    Ok(kagami_cluster::tls::Identity {
        ca_pem,
        cert_pem: cert.pem().to_owned(),
        key_pem: key.pem().to_owned(),
    })
}

fn source(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(SOURCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned()
}

/// The manifest an index lists for `platform` (`os/architecture`).
fn pick_platform(index: &[u8], platform: &str) -> anyhow::Result<Digest> {
    #[derive(Deserialize)]
    struct Index {
        manifests: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        digest: Digest,
        platform: Option<Platform>,
    }
    #[derive(Deserialize)]
    struct Platform {
        os: String,
        architecture: String,
    }
    let index: Index = serde_json::from_slice(index).context("the index is not an index")?;
    let listed: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|m| m.platform.as_ref())
        .map(|p| format!("{}/{}", p.os, p.architecture))
        .collect();
    index
        .manifests
        .into_iter()
        .find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| format!("{}/{}", p.os, p.architecture) == platform)
        })
        .map(|m| m.digest)
        .ok_or_else(|| {
            anyhow!(
                "no manifest for {platform} (it lists {}); pick one with --platform",
                listed.join(", ")
            )
        })
}

/// The platform of this machine, as images name it.
pub fn this_platform() -> String {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    };
    format!("linux/{architecture}")
}

fn table(reference: &Reference, lookups: &[Lookup], pulls: &[Pulled]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{reference}\n");
    let _ = writeln!(out, "{:<72} {:>10}  PROVIDERS", "KEY", "LOOKUP");
    for lookup in lookups {
        let providers = if lookup.providers.is_empty() {
            "none".to_owned()
        } else {
            lookup.providers.join(" ")
        };
        let _ = writeln!(
            out,
            "{:<72} {:>10}  {providers}",
            lookup.key,
            millis(lookup.seconds)
        );
    }
    let _ = writeln!(
        out,
        "\n{:<9} {:<71} {:>12} {:>10} {:>12}  SOURCE",
        "BLOB", "DIGEST", "SIZE", "TIME", "SPEED"
    );
    let (mut total_bytes, mut total_seconds) = (0u64, 0f64);
    for pull in pulls {
        total_bytes += pull.bytes;
        total_seconds += pull.seconds;
        let _ = writeln!(
            out,
            "{:<9} {:<71} {:>12} {:>10} {:>12}  {}",
            pull.what,
            pull.digest.to_string(),
            pull.bytes,
            millis(pull.seconds),
            speed(pull.bytes, pull.seconds),
            pull.source
        );
    }
    let _ = writeln!(
        out,
        "\n{} blobs, {total_bytes} bytes in {} ({})",
        pulls.len(),
        millis(total_seconds),
        speed(total_bytes, total_seconds)
    );
    out
}

fn millis(seconds: f64) -> String {
    format!("{:.1} ms", seconds * 1000.0)
}

fn speed(bytes: u64, seconds: f64) -> String {
    if seconds <= 0.0 {
        return "-".to_owned();
    }
    format!("{:.1} MB/s", bytes as f64 / seconds / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_gives_the_manifest_of_the_platform_asked_for() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let index = format!(
            r#"{{"manifests":[
              {{"digest":"{a}","platform":{{"os":"linux","architecture":"arm64"}}}},
              {{"digest":"{b}","platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        assert_eq!(
            pick_platform(index.as_bytes(), "linux/amd64")
                .unwrap()
                .to_string(),
            b
        );
        let error = pick_platform(index.as_bytes(), "linux/s390x").unwrap_err();
        assert!(
            error.to_string().contains("linux/arm64, linux/amd64"),
            "{error}"
        );
    }

    #[test]
    fn durations_and_speeds_read_plainly() {
        assert_eq!(millis(0.0123), "12.3 ms");
        assert_eq!(speed(10_000_000, 2.0), "5.0 MB/s");
        assert_eq!(speed(1, 0.0), "-");
    }
}
