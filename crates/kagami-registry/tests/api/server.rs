//! `serve` on a real socket: a client that goes away frees its request at
//! once, and shutdown lets requests in flight finish while refusing new
//! connections.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::*;

/// Longest any step of these tests may take; far above what they need.
const LIMIT: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(store: &Arc<MemoryStore>, grace: Duration) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(kagami_registry::serve(
            listener,
            app(store),
            shutdown,
            kagami_registry::ServeOptions {
                grace,
                ..Default::default()
            },
        ));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn shut_down(&mut self) {
        let _ = self.stop.take().unwrap().send(());
    }

    async fn finished(self) -> std::io::Result<()> {
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("serve returned in time")
            .unwrap()
    }
}

/// Sends `GET path` and reads up to the end of the response head.
/// Returns the head and whatever body bytes came with it.
async fn request(addr: SocketAddr, path: &str) -> (TcpStream, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: kagami\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buffer[..end].to_vec()).unwrap();
            return (stream, head, buffer[end + 4..].to_vec());
        }
        let n = tokio::time::timeout(LIMIT, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed before the response head");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Reads until the peer closes (or resets) the connection.
async fn read_to_close(stream: &mut TcpStream, body: &mut Vec<u8>) {
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(LIMIT, stream.read(&mut chunk))
            .await
            .unwrap()
        {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn a_client_that_disconnects_frees_its_stream_at_once() {
    const SIZE: usize = 32 * 1024 * 1024;
    let store = MemoryStore::new();
    let digest = store.add_blob(pattern(SIZE));
    let mut server = Server::start(&store, Duration::from_secs(5)).await;

    let (mut stream, head, mut body) =
        request(server.addr, &format!("/v2/big/blobs/{digest}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    while body.is_empty() {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.unwrap();
        body.extend_from_slice(&chunk[..n]);
    }
    drop(stream);

    let ends = store.wait_for_stream_ends(1, Duration::from_secs(5)).await;
    assert!(
        !ends[0].finished,
        "the stream was read to its end: {ends:?}"
    );
    assert!(ends[0].yielded < SIZE as u64);

    // The server is still serving others.
    let (_, head, _) = request(server.addr, "/healthz").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    server.shut_down();
    server.finished().await.unwrap();
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_and_refuses_new_connections() {
    const SIZE: usize = 1024 * 1024;
    let store = MemoryStore::new();
    let bytes = pattern(SIZE);
    let digest = store.add_blob(bytes.clone());
    store.set_gate(false);
    let mut server = Server::start(&store, LIMIT).await;

    let (mut stream, head, mut body) = request(server.addr, &format!("/v2/a/blobs/{digest}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    server.shut_down();

    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match TcpStream::connect(server.addr).await {
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => break,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still accepting: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(
        !server.task.is_finished(),
        "serve returned with a request in flight"
    );

    store.set_gate(true);
    read_to_close(&mut stream, &mut body).await;
    assert_eq!(body.len(), SIZE);
    assert!(body == bytes, "the body differs from the blob");
    server.finished().await.unwrap();
    assert!(store.stream_ends()[0].finished);
}

#[tokio::test]
async fn shutdown_closes_what_is_still_busy_after_the_grace_period() {
    const SIZE: usize = 1024 * 1024;
    let store = MemoryStore::new();
    let digest = store.add_blob(pattern(SIZE));
    store.set_gate(false);
    let grace = Duration::from_millis(200);
    let mut server = Server::start(&store, grace).await;

    let (mut stream, head, mut body) = request(server.addr, &format!("/v2/a/blobs/{digest}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let started = tokio::time::Instant::now();
    server.shut_down();
    server.finished().await.unwrap();
    assert!(
        started.elapsed() >= grace,
        "returned before the grace period"
    );

    read_to_close(&mut stream, &mut body).await;
    assert!(body.len() < SIZE, "the held request completed");
    let ends = store.wait_for_stream_ends(1, Duration::from_secs(5)).await;
    assert!(!ends[0].finished);
}
