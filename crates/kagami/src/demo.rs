//! `kagami demo`: a small cluster on loopback in one command. It builds a
//! sample image, imports it into one node, pulls it through another node
//! that does not hold it, checks every digest, and prints what happened.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures::StreamExt;
use kagami::p2p::Options;
use kagami::{CertPolicy, Node, NodeTrust};
use kagami_cluster::Settings;
use kagami_core::router::Router as _;
use kagami_core::{Digest, Key};
use kagami_store::testing::{ArchiveFormat, BuiltImage, Compression, ImageSpec, write_archive};
use sha2::Digest as _;

/// Longest wait for the network to form and the image to be findable.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the demo.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// How many nodes to start (at least 3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(3..=16))]
    nodes: u16,
    /// Size of each of the sample image's four layers, in MiB.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    layer_mib: u64,
}

struct DemoNode {
    name: String,
    node: Node,
    trust: NodeTrust,
}

/// Runs the demo; any failed step is an error naming it.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;

    println!("starting {} nodes on 127.0.0.1 …", args.nodes);
    let mut nodes: Vec<DemoNode> = Vec::new();
    for i in 0..args.nodes {
        // The demo runs secure: node-0 is the server that makes the CA,
        // PSK and token; the others join through it with the token.
        let data_dir = dir.path().join(format!("node-{i}"));
        let identity = kagami::p2p::node_identity(&data_dir)?;
        let peer_id = identity.public().to_peer_id().to_string();
        let names = kagami::node_names(Ipv4Addr::LOCALHOST.into(), &[], &[], Some(peer_id));
        let trust = match nodes.first() {
            None => NodeTrust::server(
                &data_dir,
                names,
                Settings {
                    embedded_registry: true,
                },
                CertPolicy::default(),
            )?,
            Some(first) => {
                let material = first.trust.material();
                let token = material.token()?.context("node-0 has no join token")?;
                let server = format!("https://{}", first.node.registry_addr());
                NodeTrust::join(
                    &data_dir,
                    &server,
                    Some(&token),
                    names,
                    &identity,
                    CertPolicy::default(),
                    false,
                )
                .await
                .with_context(|| format!("node-{i} could not join"))?
            }
        };
        let bootstrap = match nodes.first() {
            Some(first) => first
                .node
                .p2p()
                .map(|p| p.listen_addrs())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let options = Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            bootstrap,
            psk_file: Some(trust.material().psk_path()),
            // A loopback demo of the P2P mirror: no upstream to ask.
            pull_through: None,
            ..Options::default()
        };
        let node = Node::builder()
            .data_dir(&data_dir)
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .trust(trust.clone())
            .p2p(options)
            .start()
            .await
            .with_context(|| format!("node-{i} did not start"))?;
        nodes.push(DemoNode {
            name: format!("node-{i}"),
            node,
            trust,
        });
    }
    let result = demo(&nodes, &args, dir.path()).await;
    for n in nodes {
        let _ = n.node.shutdown().await;
    }
    result
}

async fn demo(nodes: &[DemoNode], args: &DemoArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    let (holder, puller) = (&nodes[0], &nodes[1]);
    let layer = args.layer_mib * 1024 * 1024;
    let spec = ImageSpec::new(
        "docker.io/kagami/demo:1",
        &[layer, layer / 2, layer * 2, layer / 4],
    );
    let (archive, built) = {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || {
            write_archive(&dir, &[spec], ArchiveFormat::Oci, Compression::None)
        })
        .await
        .context("building the sample image failed")?
        .context("cannot write the sample image")?
    };
    let image = built
        .first()
        .context("the sample image is missing")?
        .clone();
    holder
        .node
        .layout()
        .context("node-0 has no built-in store")?
        .import(&archive)
        .await
        .context("cannot import the sample image into node-0")?;
    println!(
        "imported {} ({}) into {}",
        image.reference, image.digest, holder.name
    );

    let key = Key::for_tag(&image.reference).context("the sample image has no tag")?;
    let wanted = image.blobs.len() + image.manifests.len() + 1;
    wait_for(
        || advertised(holder) >= wanted,
        "node-0 to advertise the image",
    )
    .await?;
    for n in nodes {
        let name = n.name.clone();
        wait_for(
            || routing_peers(n) > 0,
            &format!("{name} to join the network"),
        )
        .await?;
    }
    let router = puller.node.p2p().context("P2P is off")?.router().clone();
    let lookup = find(&router, &key).await?;

    let started = Instant::now();
    let bytes = pull(puller.node.registry_addr(), &puller.trust, &image).await?;
    let elapsed = started.elapsed();
    report(nodes, &image, lookup, bytes, elapsed);
    Ok(())
}

fn advertised(n: &DemoNode) -> usize {
    n.node.p2p().map_or(0, |p| p.advertised_keys())
}

fn routing_peers(n: &DemoNode) -> usize {
    n.node.p2p().map_or(0, |p| p.router().routing_peers())
}

async fn wait_for(mut done: impl FnMut() -> bool, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out after {SETTLE_TIMEOUT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Looks the key up until a provider answers; returns the time of the
/// lookup that found it.
async fn find(router: &kagami_p2p::Router, key: &Key) -> anyhow::Result<Duration> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let started = Instant::now();
        let found = router.find_providers(key, 3).await.unwrap_or_default();
        if !found.is_empty() {
            return Ok(started.elapsed());
        }
        if Instant::now() > deadline {
            bail!("no provider of {key} found within {SETTLE_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Pulls the image through `registry` as a client would: the manifest by
/// tag, then every blob, each checked against its digest. Returns bytes.
async fn pull(registry: SocketAddr, trust: &NodeTrust, image: &BuiltImage) -> anyhow::Result<u64> {
    // A client of the cluster: it presents the puller's certificate.
    let tls = kagami_cluster::tls::peer_client_config(&trust.identity(), None)?;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .context("cannot build the demo's HTTPS client")?;
    let base = format!("https://{registry}/v2/{}", image.reference.repository());
    let ns = image.reference.registry().to_string();
    let tag = image.reference.tag().context("no tag")?;
    let manifest = client
        .get(format!("{base}/manifests/{tag}?ns={ns}"))
        .header("accept", image.media_type.as_str())
        .send()
        .await
        .context("manifest request failed")?;
    ensure!(
        manifest.status().is_success(),
        "manifest: HTTP {}",
        manifest.status()
    );
    let body = manifest.bytes().await.context("manifest body failed")?;
    ensure!(sha256(&body) == image.digest, "manifest digest mismatch");
    let mut total = body.len() as u64;
    for (digest, size) in &image.blobs {
        let response = client
            .get(format!("{base}/blobs/{digest}?ns={ns}"))
            .send()
            .await
            .with_context(|| format!("request for {digest} failed"))?;
        ensure!(
            response.status().is_success(),
            "{digest}: HTTP {}",
            response.status()
        );
        let mut hasher = sha2::Sha256::new();
        let mut received = 0u64;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("body of {digest} broke"))?;
            received += chunk.len() as u64;
            hasher.update(&chunk);
        }
        let got = Digest::from_hash(kagami_core::Algorithm::Sha256, &hasher.finalize());
        ensure!(
            received == *size,
            "{digest}: {received} bytes, expected {size}"
        );
        ensure!(&got == digest, "{digest}: received bytes hash to {got}");
        total += received;
    }
    Ok(total)
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::from_hash(kagami_core::Algorithm::Sha256, &sha2::Sha256::digest(bytes))
}

fn report(nodes: &[DemoNode], image: &BuiltImage, lookup: Duration, bytes: u64, elapsed: Duration) {
    let puller = &nodes[1];
    let mut names = BTreeMap::new();
    println!();
    println!(
        "{:<8} {:<14} {:<17} {:<28} {:>10}",
        "node", "peer", "registry", "p2p", "keys"
    );
    for n in nodes {
        let Some(p2p) = n.node.p2p() else { continue };
        let id = p2p.peer_id().to_string();
        let short = format!("…{}", &id[id.len().saturating_sub(12)..]);
        names.insert(id, n.name.clone());
        let listen = p2p
            .router()
            .listen_addrs()
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        println!(
            "{:<8} {:<14} {:<17} {:<28} {:>10}",
            n.name,
            short,
            n.node.registry_addr().to_string(),
            listen,
            p2p.advertised_keys()
        );
    }
    let mib = bytes as f64 / (1024.0 * 1024.0);
    println!();
    println!(
        "trust          node-0 made the cluster CA and PSK; the others joined with its token; every request mTLS"
    );
    println!(
        "image          {} ({} blobs)",
        image.reference,
        image.blobs.len()
    );
    println!(
        "lookup         {:.1} ms (provider of the tag key, from {})",
        lookup.as_secs_f64() * 1e3,
        puller.name
    );
    println!(
        "pulled         {mib:.1} MiB through {} in {:.2} s ({:.1} MiB/s), every digest verified",
        puller.name,
        elapsed.as_secs_f64(),
        mib / elapsed.as_secs_f64().max(1e-9)
    );
    if let Some(stats) = puller.node.mirror_stats() {
        for (peer, relayed) in stats.bytes_relayed() {
            let name = names.get(&peer).cloned().unwrap_or(peer);
            println!(
                "relayed        {:.1} MiB from {name}",
                relayed as f64 / (1024.0 * 1024.0)
            );
        }
    }
}
