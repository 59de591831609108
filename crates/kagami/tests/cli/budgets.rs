//! The registry port's connection budgets, against the real binary: no
//! one who merely reaches the port can lock members out, silent
//! connections are closed within their budgets, and clients that stop
//! reading cannot grow a node's memory without bound.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kagami_core::Reference;
use kagami_store::testing::{ArchiveFormat, BuiltImage, Compression, ImageSpec, write_archive};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::harness::{DEADLINE, Server, member_identity, run_ok};
use crate::pull::install_tls_provider;

/// The connections these tests hold open at once need more descriptors
/// than the usual soft limit of 1024.
fn raise_open_files() {
    rlimit::increase_nofile_limit(u64::MAX).expect("raise the open-file limit");
}

/// A secure server holding one image with a `layer` byte layer.
fn server_with_image(dir: &Path, layer: u64, extra: &[&str]) -> (Server, BuiltImage) {
    let (archive, built) = write_archive(
        dir,
        &[ImageSpec::new("budget/test:1", &[layer]).seed(11)],
        ArchiveFormat::Oci,
        Compression::None,
    )
    .unwrap();
    let data = dir.join("data");
    let mut flags = vec!["--secure"];
    flags.extend_from_slice(extra);
    // The server makes the cluster's trust material on its first start;
    // the image goes in before, and the server notices it either way.
    run_ok(&data, &["image", "import", archive.to_str().unwrap()]);
    let server = Server::start(&data, &flags);
    (server, built.into_iter().next().unwrap())
}

fn data_dir(server_dir: &Path) -> std::path::PathBuf {
    server_dir.join("data")
}

/// The largest blob of `image` (its layer) and its size.
fn layer(image: &BuiltImage) -> (String, usize) {
    let (digest, size) = image.blobs.iter().max_by_key(|(_, size)| **size).unwrap();
    (digest.to_string(), usize::try_from(*size).unwrap())
}

fn blob_url(server: &Server, image: &BuiltImage, digest: &str) -> String {
    let reference: &Reference = &image.reference;
    format!(
        "{}/v2/{}/blobs/{digest}?ns={}",
        server.url(),
        reference.repository(),
        reference.registry()
    )
}

/// A TLS connection offering only the join protocol, as a joining node's.
async fn join_connection(addr: SocketAddr, data: &Path) -> Option<TlsStream<TcpStream>> {
    let token = std::fs::read_to_string(data.join("cluster/token")).unwrap();
    let token: kagami_cluster::Token = token.parse().unwrap();
    let config = kagami_cluster::tls::join_client_config(token.ca_fingerprint()).unwrap();
    let tcp = TcpStream::connect(addr).await.ok()?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .ok()
}

/// A member's TLS connection offering `alpn`.
async fn member_connection(addr: SocketAddr, data: &Path, alpn: &[u8]) -> TlsStream<TcpStream> {
    let identity = member_identity(data);
    let mut config = kagami_cluster::tls::peer_client_config(&identity, None).unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("member handshake")
}

/// Waits until the peer closes `stream` (end of stream or an error).
async fn closed_by_peer(mut stream: impl AsyncReadExt + Unpin, what: &str) {
    let mut buf = [0u8; 1024];
    let ended = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "{what} was still open after {DEADLINE:?}");
}

/// The value of one sample of the node's metrics.
async fn metric(server: &Server, sample: &str) -> u64 {
    let text = server.text("/metrics").await;
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in\n{text}"))
}

/// Regression: 1,024 silent join-channel connections stopped the accept
/// loop, and every member's request timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_join_connections_cannot_lock_members_out() {
    install_tls_provider();
    raise_open_files();
    let tmp = tempfile::tempdir().unwrap();
    let (server, image) = server_with_image(tmp.path(), 100_000, &[]);
    let data = data_dir(tmp.path());
    let addr = server.addr;

    // A join whose body comes one byte a second.
    let mut slow = join_connection(addr, &data).await.expect("join handshake");
    slow.write_all(
        b"POST /v1-kagami/join HTTP/1.1\r\nhost: localhost\r\ncontent-length: 4096\r\n\r\n",
    )
    .await
    .unwrap();
    let slow_body = tokio::spawn(async move {
        for _ in 0..600 {
            if slow.write_all(b"x").await.is_err() || slow.flush().await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        false
    });

    let mut bare = Vec::new();
    for _ in 0..200 {
        bare.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut joins = Vec::new();
    for _ in 0..1100 {
        if let Some(stream) = join_connection(addr, &data).await {
            joins.push(stream);
        }
    }

    // A member pulls at once, all the same.
    let client = server.client();
    let (digest, size) = layer(&image);
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        client.get(blob_url(&server, &image, &digest)).send(),
    )
    .await
    .expect("a member's request is answered while the silent connections are open")
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().len(), size);

    // Every silent connection is closed within its budget (5 s for a
    // handshake, 10 s for a join connection; DEADLINE is far above both).
    let closes = bare
        .into_iter()
        .map(|stream| closed_by_peer(stream, "a silent TCP connection"))
        .collect::<Vec<_>>();
    futures::future::join_all(closes).await;
    let closes = joins
        .into_iter()
        .map(|stream| closed_by_peer(stream, "a silent join connection"))
        .collect::<Vec<_>>();
    futures::future::join_all(closes).await;
    let cut = tokio::time::timeout(DEADLINE, slow_body)
        .await
        .expect("the slow join body was cut off")
        .unwrap();
    assert!(cut, "the slow join body was never cut off");

    // Counted and said.
    let sample = |reason: &str| format!("kagami_connections_closed_total{{reason=\"{reason}\"}}");
    assert!(metric(&server, &sample("unauthenticated_full")).await > 0);
    assert!(metric(&server, &sample("handshake_timeout")).await > 0);
    assert!(metric(&server, &sample("lifetime")).await > 0);
    let log = server.log();
    assert!(
        log.contains("refusing join connections: too many are open"),
        "{log}"
    );
    assert_eq!(
        log.matches("refusing join connections").count(),
        1,
        "logged once a minute at most: {log}"
    );
}

/// Regression: silent member connections (HTTP/1.1 and h2) stayed open for
/// minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_member_connections_are_closed() {
    install_tls_provider();
    let tmp = tempfile::tempdir().unwrap();
    let (server, _) = server_with_image(tmp.path(), 1000, &["--connection-idle-timeout", "2s"]);
    let data = data_dir(tmp.path());
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let silent = member_connection(server.addr, &data, alpn).await;
        closed_by_peer(silent, "a silent member connection").await;
    }
    // A keep-alive connection after its request.
    let mut used = member_connection(server.addr, &data, b"http/1.1").await;
    used.write_all(b"GET /v2/ HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    used.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    closed_by_peer(used, "an idle keep-alive connection").await;
    assert!(metric(&server, "kagami_connections_closed_total{reason=\"idle\"}").await >= 3);
}

/// The peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .expect("VmHWM in /proc/PID/status")
        * 1024
}

/// Regression: 200 blob streams per HTTP/2 connection, never read, cost
/// ~190 MiB per connection with nothing bounding the total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_http2_streams_keep_memory_bounded() {
    install_tls_provider();
    raise_open_files();
    let tmp = tempfile::tempdir().unwrap();
    let (server, image) = server_with_image(tmp.path(), 16 << 20, &[]);
    let data = data_dir(tmp.path());
    let (digest, size) = layer(&image);
    // The server at rest, after one request has warmed it up.
    let warm = server
        .client()
        .get(blob_url(&server, &image, &digest))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.bytes().await.unwrap().len(), size);
    let before = peak_rss(server.pid());

    const CONNECTIONS: usize = 48;
    const STREAMS: usize = 32;
    let path = format!(
        "/v2/{}/blobs/{digest}?ns={}",
        image.reference.repository(),
        image.reference.registry()
    );
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        let tls = member_connection(server.addr, &data, b"h2").await;
        let (mut sender, connection) = h2::client::handshake(tls).await.unwrap();
        let driver = tokio::spawn(connection);
        let mut responses = Vec::new();
        for _ in 0..STREAMS {
            sender = sender.ready().await.unwrap();
            let request = http::Request::get(format!("https://localhost{path}"))
                .body(())
                .unwrap();
            let (response, _) = sender.send_request(request, true).unwrap();
            responses.push(tokio::spawn(response));
        }
        held.push((sender, driver, responses));
    }
    // Wait until the server has answered every stream, bodies unread.
    let mut answered = 0;
    for (_, _, responses) in &mut held {
        for response in responses.iter_mut() {
            let response = tokio::time::timeout(DEADLINE, response)
                .await
                .expect("a response head")
                .unwrap()
                .expect("a response");
            assert_eq!(response.status(), 200);
            answered += 1;
        }
    }
    assert_eq!(answered, CONNECTIONS * STREAMS);
    for (sender, _, _) in &held {
        assert!(
            sender.current_max_send_streams() <= 32,
            "the server allows {} streams per connection",
            sender.current_max_send_streams()
        );
    }
    // Give the server every chance to read ahead what it will.
    let mut last = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = peak_rss(server.pid());
        if now == last {
            break;
        }
        last = now;
    }
    let grown = peak_rss(server.pid()).saturating_sub(before);
    eprintln!("peak RSS grew by {} MiB", grown >> 20);
    // The documented bound: 256 MiB of body bytes in flight for the whole
    // node, plus what TLS and HTTP/2 keep per connection.
    let bound = (256 << 20) + (96 << 20);
    assert!(
        grown <= bound,
        "peak RSS grew by {} MiB with {CONNECTIONS} connections × 32 stalled streams (bound {} MiB)",
        grown >> 20,
        bound >> 20
    );
    drop(held);
}
