use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::serve::ListenerExt;
use sha2::Sha256;

use super::*;

/// Serves `GET /v2/bench/x/blobs/{digest}` from a map, counting requests
/// and connections.
struct Blobs {
    bodies: HashMap<String, Vec<u8>>,
    hits: Mutex<usize>,
    connections: Mutex<usize>,
}

async fn serve(bodies: HashMap<String, Vec<u8>>) -> (String, Arc<Blobs>) {
    let state = Arc::new(Blobs {
        bodies,
        hits: Mutex::new(0),
        connections: Mutex::new(0),
    });
    let app = axum::Router::new()
        .route(
            "/v2/bench/x/blobs/{digest}",
            get(
                |State(blobs): State<Arc<Blobs>>, UrlPath(digest): UrlPath<String>| async move {
                    *blobs.hits.lock().unwrap() += 1;
                    match blobs.bodies.get(&digest) {
                        Some(body) => Ok(body.clone()),
                        None => Err(StatusCode::NOT_FOUND),
                    }
                },
            ),
        )
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let counter = Arc::clone(&state);
    let listener = listener.tap_io(move |_| *counter.connections.lock().unwrap() += 1);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

fn blob(body: &[u8]) -> Blob {
    Blob {
        digest: Digest::from_hash(Algorithm::Sha256, &Sha256::digest(body)),
        size: body.len() as u64,
    }
}

fn plan(url: &str, blobs: Vec<Blob>, concurrency: usize, rounds: usize) -> Plan {
    Plan {
        url: url.to_owned(),
        repo: "bench/x".to_owned(),
        blobs,
        concurrency,
        rounds,
        verify: true,
    }
}

#[tokio::test]
async fn downloads_every_blob_once_per_round() {
    let bodies: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 1000 + usize::from(i)]).collect();
    let blobs: Vec<Blob> = bodies.iter().map(|b| blob(b)).collect();
    let map = blobs
        .iter()
        .zip(&bodies)
        .map(|(b, body)| (b.digest.to_string(), body.clone()))
        .collect();
    let (url, server) = serve(map).await;

    let summary = run(&plan(&url, blobs, 3, 4)).await.unwrap();

    assert_eq!(summary.errors, 0);
    assert_eq!(summary.requests, 20);
    assert_eq!(*server.hits.lock().unwrap(), 20);
    assert_eq!(
        *server.connections.lock().unwrap(),
        3,
        "each worker keeps one connection alive"
    );
    let one_round: u64 = bodies.iter().map(|b| b.len() as u64).sum();
    assert_eq!(summary.bytes, 4 * one_round);
    assert!(summary.seconds > 0.0);
}

#[tokio::test]
async fn counts_missing_short_and_corrupt_bodies_as_errors() {
    let good = blob(b"good");
    let missing = blob(b"missing");
    let mut short = blob(b"short body");
    short.size += 1;
    let corrupt = blob(b"corrupt");
    let map = HashMap::from([
        (good.digest.to_string(), b"good".to_vec()),
        (short.digest.to_string(), b"short body".to_vec()),
        (corrupt.digest.to_string(), b"CORRUPT".to_vec()),
    ]);
    let (url, _server) = serve(map).await;

    let summary = run(&plan(&url, vec![good, missing, short, corrupt], 2, 1))
        .await
        .unwrap();

    assert_eq!(summary.requests, 4);
    assert_eq!(summary.errors, 3);
    assert_eq!(summary.bytes, 4, "only the good body counts");
}

#[tokio::test]
async fn without_verify_a_corrupt_body_of_the_right_size_passes() {
    let corrupt = blob(b"corrupt");
    let map = HashMap::from([(corrupt.digest.to_string(), b"CORRUPT".to_vec())]);
    let (url, _server) = serve(map).await;
    let mut plan = plan(&url, vec![corrupt], 1, 1);
    plan.verify = false;

    let summary = run(&plan).await.unwrap();

    assert_eq!((summary.errors, summary.bytes), (0, 7));
}

#[tokio::test]
async fn refuses_zero_concurrency_and_other_schemes() {
    assert!(
        run(&plan("http://127.0.0.1:1", vec![blob(b"x")], 0, 1))
            .await
            .is_err()
    );
    assert!(
        run(&plan("https://127.0.0.1:1", vec![blob(b"x")], 1, 1))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_refused_connection_is_an_error_not_a_hang() {
    // Bind then drop, so the port is (almost surely) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let summary = run(&plan(&url, vec![blob(b"x")], 2, 2)).await.unwrap();
    assert_eq!((summary.requests, summary.errors), (2, 2));
}

#[test]
fn reads_digest_lists_and_points_at_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("x.digests");
    let a = blob(b"a");
    std::fs::write(&list, format!("# layers\n\n{} 1\n", a.digest)).unwrap();
    assert_eq!(read_digest_list(&list).unwrap(), vec![a]);

    std::fs::write(&list, "sha256:nope 1\n").unwrap();
    let error = format!("{:#}", read_digest_list(&list).unwrap_err());
    assert!(error.contains("x.digests:1"), "{error}");

    std::fs::write(&list, "# nothing\n").unwrap();
    assert!(read_digest_list(&list).is_err());
}

#[test]
fn summary_is_one_line_of_key_values() {
    let summary = Summary {
        bytes: 2_000_000,
        requests: 4,
        errors: 1,
        seconds: 2.0,
    };
    assert_eq!(
        summary.to_string(),
        "bytes=2000000 seconds=2.000 mb_per_s=1.0 req_per_s=2.0 requests=4 errors=1"
    );
}
