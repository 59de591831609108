//! A provider dies mid-transfer (SIGKILL of a `kagami server` child): the
//! client's download goes on from the other provider and completes with
//! the right digest.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use kagami_core::router::Router as _;
use kagami_core::{Algorithm, Digest, Key};
use kagami_p2p::{Config, Keypair, Multiaddr, Psk, Router};
use kagami_store::testing::ImageSpec;
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::cluster::{archive, keys, largest_blob};
use crate::harness::{Server, eventually, p2p_flags, run_ok};
use crate::pull::url;

/// Larger than every buffer between a provider and the client together
/// (loopback sockets autotune to a few MiB each), so a provider killed
/// early cannot have sent it all.
const LAYER: u64 = 96 * 1024 * 1024;
/// The client's receive buffer: small, so the node relays only as fast
/// as the client reads.
const CLIENT_BUFFER: u32 = 64 * 1024;
/// Longest wait for the next bytes of the body.
const STALL: Duration = Duration::from_secs(30);

/// A blob body read by hand over one small-windowed connection.
struct SlowBody {
    stream: TcpStream,
    length: u64,
    received: u64,
    hasher: sha2::Sha256,
}

impl SlowBody {
    /// Sends `GET url` and reads the response head, which must be a 200.
    async fn open(addr: SocketAddr, url: &str) -> SlowBody {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(CLIENT_BUFFER).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        let path = url.split_once(&addr.to_string()).unwrap().1;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0; 4096];
        let end = loop {
            let n = tokio::time::timeout(STALL, stream.read(&mut buf))
                .await
                .expect("a response head in time")
                .unwrap();
            assert!(n > 0, "closed before the response head");
            head.extend_from_slice(&buf[..n]);
            if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let text = String::from_utf8_lossy(&head[..end]).to_lowercase();
        assert!(text.starts_with("http/1.1 200"), "{text}");
        let length = text
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse().ok())
            .expect("a Content-Length");
        let mut body = SlowBody {
            stream,
            length,
            received: 0,
            hasher: sha2::Sha256::new(),
        };
        body.take(&head[end..]);
        body
    }

    fn take(&mut self, bytes: &[u8]) {
        self.received += bytes.len() as u64;
        self.hasher.update(bytes);
    }

    /// Reads until `at_least` bytes have arrived or the body ends.
    async fn read_until(&mut self, at_least: u64) {
        let mut buf = vec![0; 64 * 1024];
        while self.received < at_least.min(self.length) {
            let n = tokio::time::timeout(STALL, self.stream.read(&mut buf))
                .await
                .expect("body bytes in time")
                .unwrap_or(0);
            if n == 0 {
                return;
            }
            self.take(&buf[..n]);
        }
    }

    fn digest(self) -> Digest {
        Digest::from_hash(Algorithm::Sha256, &self.hasher.finalize())
    }
}

/// A `kagami server` with P2P on, joining through `bootstrap`.
fn node(data: &Path, psk: &Path, bootstrap: &[&str]) -> Server {
    let flags = p2p_flags(psk, bootstrap);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start(data, &flags)
}

/// The first multiaddr (with `/p2p/<id>`) a node listens on.
async fn dial_addr(server: &Server) -> String {
    server.status().await["listen"][0]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A libp2p node of the test's own in the cluster, with no lookup cache,
/// to see what the network knows without warming any node's cache.
async fn probe(psk: &Path, bootstrap: &str) -> Router {
    let mut config = Config::new(Keypair::generate_ed25519(), Psk::from_file(psk).unwrap());
    config.listen = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
    config.bootstrap = vec![bootstrap.parse::<Multiaddr>().unwrap()];
    config.registry_port = 1;
    config.cache_ttl = Duration::ZERO;
    Router::start(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_killed_mid_transfer_is_replaced_and_the_blob_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = ImageSpec::new("docker.io/kagami/big:1", &[LAYER]).seed(71);
    let (archive, image) = archive(tmp.path(), spec).await;
    let (layer, size) = largest_blob(&image);
    let psk = tmp.path().join("psk");
    Psk::generate().write(&psk).unwrap();
    // Both holders hold the image before they start.
    let dirs = ["a", "b", "puller"].map(|name| tmp.path().join(name));
    for dir in &dirs[..2] {
        let (dir, archive) = (dir.clone(), archive.clone());
        tokio::task::spawn_blocking(move || {
            run_ok(&dir, &["image", "import", archive.to_str().unwrap()])
        })
        .await
        .unwrap();
    }

    let a = node(&dirs[0], &psk, &[]);
    let a_addr = dial_addr(&a).await;
    let b = node(&dirs[1], &psk, &[&a_addr]);
    let b_addr = dial_addr(&b).await;
    for holder in [&a, &b] {
        eventually("both holders to advertise the image", || async {
            let status = holder.status().await;
            (status["routing_peers"].as_u64() >= Some(1)
                && status["advertised_keys"].as_u64() >= Some(keys(&image) as u64))
            .then_some(())
        })
        .await;
    }
    let probe = probe(&psk, &a_addr).await;
    let key = Key::Digest(layer.clone());
    eventually("both holders to be found in the network", || async {
        let found = probe.find_providers(&key, 3).await.unwrap_or_default();
        (found.len() == 2).then_some(())
    })
    .await;
    probe.shutdown().await;
    // Connected to both from the start, so it knows both registry ports.
    let puller = node(&dirs[2], &psk, &[&a_addr, &b_addr]);
    eventually("the puller to join", || async {
        (puller.status().await["routing_peers"].as_u64() >= Some(2)).then_some(())
    })
    .await;

    let url = url(puller.addr, &image.reference, "blobs", layer.as_str());
    let mut body = SlowBody::open(puller.addr, &url).await;
    assert_eq!(body.length, size);
    body.read_until(1024 * 1024).await;
    // Whoever is sending it dies now.
    let ids = [a.status().await, b.status().await]
        .map(|status| status["peer_id"].as_str().unwrap().to_owned());
    let relayed = puller.status().await["bytes_relayed"].clone();
    let sending = ids
        .iter()
        .position(|id| relayed[id].as_u64() > Some(0))
        .unwrap_or_else(|| panic!("no holder named in {relayed}"));
    let (mut victim, survivor) = match sending {
        0 => (a, &ids[1]),
        _ => (b, &ids[0]),
    };
    victim.kill();

    body.read_until(size).await;
    assert_eq!(body.received, size, "the body broke off");
    assert_eq!(body.digest(), layer);
    let status = puller.status().await;
    assert!(status["resumes"].as_u64() >= Some(1), "{status}");
    let relayed = &status["bytes_relayed"];
    let victim_sent = relayed[&ids[sending]].as_u64().unwrap();
    assert!(victim_sent < size, "killed after sending it all: {status}");
    assert!(
        relayed[survivor].as_u64() >= Some(size - victim_sent),
        "{status}"
    );
}
