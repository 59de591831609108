//! The whole path with real containerd: three nodes, each a containerd and
//! a kagami on its store, on loopback with no upstream reachable, all over
//! mutual TLS: the first node is the server, the others join it with its
//! token, and containerd reaches its kagami with the cluster CA and the
//! node's client certificate, as the generated `hosts.toml` says.
//! `ctr image pull --hosts-dir <node's certs.d>` pulls (and unpacks)
//! through the node's own kagami, which fetches from whichever peer holds
//! the image; a pull on one node makes the image available to the others;
//! and an image nobody holds any more fails over to the (unreachable)
//! upstream quickly instead of hanging.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kagami_containerd::testing::Daemon;
use kagami_store::testing::{ArchiveFormat, BuiltImage, Compression, ImageSpec, write_archive};

use crate::cluster::keys;
use crate::harness::{Server, eventually, run_ok};

/// A miss costs kagami at most its resolve timeout (2 s) plus a peer's
/// manifest timeout (3 s) per request, and containerd then tries the
/// upstream, unreachable here. Far above that, far below a hang.
const FAILOVER_BUDGET: Duration = Duration::from_secs(30);

/// One node: a containerd and the kagami serving it.
struct CtrNode {
    daemon: Daemon,
    server: Server,
    certs: PathBuf,
}

impl CtrNode {
    /// The first node: a server, with its own CA, PSK and token.
    fn server(dir: &Path) -> CtrNode {
        CtrNode::start("server", dir, &[])
    }

    /// A node that joins `server` with its token (and finds its peers
    /// through it).
    fn agent(dir: &Path, server: &CtrNode) -> CtrNode {
        let token = run_ok(&server.data_dir(), &["token"]).trim().to_owned();
        let url = server.server.url();
        CtrNode::start("agent", dir, &["--server", &url, "--token", &token])
    }

    fn data_dir(&self) -> PathBuf {
        self.certs.parent().unwrap().join("data")
    }

    fn start(command: &str, dir: &Path, extra: &[&str]) -> CtrNode {
        let daemon = Daemon::start();
        let certs = dir.join("certs.d");
        let mut flags: Vec<String> = ["--secure", "--embedded-registry", "--p2p-port", "0"]
            .map(String::from)
            .to_vec();
        flags.extend(extra.iter().map(|s| s.to_string()));
        flags.extend(
            [
                "--store",
                "containerd",
                "--containerd-address",
                daemon.socket().to_str().unwrap(),
                "--containerd-config-path",
                certs.to_str().unwrap(),
                "--mirror",
                "docker.io",
                "--mirror",
                "registry.invalid",
            ]
            .map(String::from),
        );
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let server = Server::start_as(command, &dir.join("data"), &flags);
        CtrNode {
            daemon,
            server,
            certs,
        }
    }

    /// `ctr image pull` through this node's mirror configuration, unpacked
    /// with the native snapshotter; the command's outcome, not a panic.
    async fn pull(&self, reference: &str) -> std::process::Output {
        tokio::process::Command::new("ctr")
            .arg("--address")
            .arg(self.daemon.socket())
            .args(["--namespace", "k8s.io", "images", "pull"])
            .arg("--hosts-dir")
            .arg(&self.certs)
            .args(["--snapshotter", "native", reference])
            .kill_on_drop(true)
            .output()
            .await
            .expect("ctr runs")
    }

    async fn pull_ok(&self, reference: &str) {
        let output = self.pull(reference).await;
        assert!(
            output.status.success(),
            "ctr pull {reference}: {}{}\nkagami:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.server.log()
        );
    }

    async fn peer_id(&self) -> String {
        let status = self.server.status().await;
        status["peer_id"].as_str().unwrap().to_owned()
    }

    /// Bytes this node's mirror received from `peer` and passed on.
    async fn relayed_from(&self, peer: &str) -> u64 {
        let status = self.server.status().await;
        status["bytes_relayed"][peer].as_u64().unwrap_or(0)
    }

    async fn advertising(&self, n: usize) {
        eventually(&format!("{n} keys to be advertised"), || async {
            let status = self.server.status().await;
            (status["advertised_keys"].as_u64() >= Some(n as u64)).then_some(())
        })
        .await;
    }

    async fn remove(&self, reference: &str) {
        self.daemon
            .ctr(&["images", "rm", "--sync", reference])
            .await;
    }
}

/// Writes single-image plain archives (what ctr 1.6 imports) and imports
/// them into `daemon`.
async fn import(daemon: &Daemon, dir: &Path, specs: Vec<ImageSpec>) -> Vec<BuiltImage> {
    let mut built = Vec::new();
    for (i, spec) in specs.into_iter().enumerate() {
        let sub = dir.join(format!("archive-{i}"));
        std::fs::create_dir_all(&sub).unwrap();
        let (archive, mut image) =
            write_archive(&sub, &[spec], ArchiveFormat::Docker, Compression::None).unwrap();
        daemon
            .ctr(&["images", "import", "--no-unpack", archive.to_str().unwrap()])
            .await;
        built.push(image.remove(0));
    }
    built
}

/// The number of snapshots the native snapshotter holds: an unpacked
/// image has one per layer.
async fn snapshots(daemon: &Daemon) -> usize {
    let out = daemon
        .ctr(&["snapshots", "--snapshotter", "native", "ls"])
        .await;
    out.lines().skip(1).filter(|l| !l.trim().is_empty()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctr_pulls_through_peers_and_fails_over_when_nobody_holds_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let a = CtrNode::server(&tmp.path().join("a"));
    let b = CtrNode::agent(&tmp.path().join("b"), &a);
    let c = CtrNode::agent(&tmp.path().join("c"), &a);
    // containerd is pointed at kagami over HTTPS, with the cluster's CA
    // and the node's client certificate.
    let hosts = std::fs::read_to_string(b.certs.join("docker.io/hosts.toml")).unwrap();
    assert!(
        hosts.contains(&format!("[host.\"https://{}/v2\"]", b.server.addr)),
        "{hosts}"
    );
    assert!(
        hosts.contains("ca = ") && hosts.contains("client = "),
        "{hosts}"
    );

    let hub = "docker.io/library/kagami-e2e:1";
    let private = "registry.invalid/team/app:v1";
    let only_a = "docker.io/library/kagami-gone:1";
    let images = import(
        &a.daemon,
        tmp.path(),
        vec![
            ImageSpec::new(hub, &[900_000, 300_000, 50_000]).seed(61),
            ImageSpec::new(private, &[400_000, 20_000]).seed(62),
            ImageSpec::new(only_a, &[100_000]).seed(63),
        ],
    )
    .await;
    a.advertising(images.iter().map(keys).sum()).await;
    let a_id = a.peer_id().await;

    // B pulls both images from A, through its own kagami, and unpacks them.
    b.pull_ok(hub).await;
    b.pull_ok(private).await;
    let layers: usize = images[..2].iter().map(|i| i.blobs.len() - 1).sum();
    assert!(snapshots(&b.daemon).await >= layers);
    let all_blobs: u64 = images[..2].iter().flat_map(|i| i.blobs.values()).sum();
    let from_a = b.relayed_from(&a_id).await;
    assert!(
        from_a >= all_blobs,
        "B relayed {from_a} bytes from A, the images hold {all_blobs}"
    );
    // Nothing was served by an upstream: none is reachable, and the
    // registry.invalid host does not even resolve.

    // B's pull made them B's: it advertises them now.
    b.advertising(keys(&images[0]) + keys(&images[1])).await;

    // A lets go of the Hub image and of the one only it held.
    a.remove(hub).await;
    a.remove(only_a).await;

    // C gets the Hub image from B, the only holder left.
    let b_id = b.peer_id().await;
    c.pull_ok(hub).await;
    assert!(c.relayed_from(&b_id).await >= images[0].blobs.values().sum::<u64>());

    // Nobody holds the other one: kagami says 404 and containerd moves on
    // to the unreachable upstream; the pull fails, and not slowly.
    let started = Instant::now();
    let output = c.pull(only_a).await;
    let took = started.elapsed();
    assert!(!output.status.success(), "{output:?}");
    assert!(took < FAILOVER_BUDGET, "the failed pull took {took:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // containerd asked kagami first (which did not have it), then the upstream.
    assert!(stderr.contains("registry-1.docker.io"), "{stderr}");
    eprintln!("a pull of an image nobody holds failed after {took:?}: {stderr}");
}
