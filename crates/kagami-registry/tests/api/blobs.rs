//! Blobs, whole and by `Range`, HEAD and GET.

use http::Method;
use kagami_core::MediaType;

use crate::support::*;

const SIZE: usize = 200_000;

fn blob_app() -> (std::sync::Arc<MemoryStore>, axum::Router, String, Vec<u8>) {
    let store = MemoryStore::new();
    let bytes = pattern(SIZE);
    let digest = store.add_blob(bytes.clone());
    let app = app(&store);
    (
        store,
        app,
        format!("/v2/library/nginx/blobs/{digest}"),
        bytes,
    )
}

#[tokio::test]
async fn get_streams_the_whole_blob_with_its_headers() {
    let (store, app, uri, bytes) = blob_app();
    let answer = get(&app, &uri).await;
    answer.assert_content("application/octet-stream", &bytes);
    assert_eq!(answer.header("accept-ranges"), Some("bytes"));
    assert_eq!(answer.header("content-range"), None);
    // The store's stream was read to its end, then let go.
    let ends = store.stream_ends();
    assert_eq!(ends.len(), 1);
    assert!(ends[0].finished);
    assert_eq!(ends[0].yielded, SIZE as u64);
}

#[tokio::test]
async fn head_answers_the_headers_without_opening_the_blob() {
    let (store, app, uri, _) = blob_app();
    let headers = [
        "content-type",
        "content-length",
        "docker-content-digest",
        "etag",
        "accept-ranges",
    ];
    assert_head_mirrors_get(&app, &uri, &headers).await;
    assert_eq!(store.stream_ends().len(), 1, "only GET opened a stream");
}

#[tokio::test]
async fn single_ranges_are_served_as_206() {
    let (_, app, uri, bytes) = blob_app();
    let last = SIZE - 1;
    let cases: Vec<(String, usize, usize)> = vec![
        ("bytes=0-0".into(), 0, 0),
        ("bytes=0-99".into(), 0, 99),
        ("bytes=70000-130000".into(), 70_000, 130_000),
        (format!("bytes={last}-{last}"), last, last),
        ("bytes=150000-".into(), 150_000, last),
        ("bytes=0-".into(), 0, last),
        ("bytes=-10".into(), SIZE - 10, last),
        (format!("bytes=-{}", SIZE * 2), 0, last),
        // An end past the blob is cut at its last byte.
        (format!("bytes=100-{}", SIZE * 10), 100, last),
    ];
    for (range, start, end) in cases {
        for method in [Method::GET, Method::HEAD] {
            let answer = send(&app, method.clone(), &uri, &[("range", &range)]).await;
            assert_eq!(answer.status, 206, "{method} {range}");
            assert_eq!(
                answer.header("content-range"),
                Some(format!("bytes {start}-{end}/{SIZE}").as_str()),
                "{method} {range}"
            );
            assert_eq!(
                answer.header("content-length"),
                Some((end - start + 1).to_string().as_str()),
                "{method} {range}"
            );
            assert_eq!(answer.header("accept-ranges"), Some("bytes"));
            assert_eq!(
                answer.header("docker-content-digest"),
                Some(sha256(&bytes).as_str())
            );
            if method == Method::GET {
                assert_eq!(answer.body, bytes[start..=end], "{range}");
            } else {
                assert!(answer.body.is_empty());
            }
        }
    }
}

#[tokio::test]
async fn unsatisfiable_ranges_are_416_with_the_size() {
    let (store, app, uri, _) = blob_app();
    for range in [
        format!("bytes={SIZE}-"),
        format!("bytes={SIZE}-{}", SIZE + 5),
        "bytes=-0".to_owned(),
    ] {
        let answer = send(&app, Method::GET, &uri, &[("range", &range)]).await;
        assert_eq!(answer.status, 416, "{range}");
        assert_eq!(
            answer.header("content-range"),
            Some(format!("bytes */{SIZE}").as_str())
        );
        assert_eq!(answer.error_code(), "RANGE_INVALID");
        assert_eq!(answer.json()["errors"][0]["detail"]["size"], SIZE);
        let answer = send(&app, Method::HEAD, &uri, &[("range", &range)]).await;
        assert_eq!(answer.status, 416, "HEAD {range}");
        assert_eq!(
            answer.header("content-range"),
            Some(format!("bytes */{SIZE}").as_str())
        );
        assert!(answer.body.is_empty());
    }
    assert!(store.stream_ends().is_empty(), "no stream was opened");
}

#[tokio::test]
async fn malformed_and_multiple_ranges_are_ignored() {
    let (_, app, uri, bytes) = blob_app();
    for range in [
        "bytes=5-1",
        "bytes=0-1,5-6",
        "items=0-1",
        "bytes=x-",
        "bytes=",
        "garbage",
    ] {
        let answer = send(&app, Method::GET, &uri, &[("range", range)]).await;
        assert_eq!(answer.status, 200, "{range}");
        assert_eq!(answer.header("content-range"), None, "{range}");
        assert_eq!(answer.body, bytes, "{range}");
    }
}

#[tokio::test]
async fn an_empty_blob_is_served_and_has_no_satisfiable_range() {
    let store = MemoryStore::new();
    let digest = store.add_blob(Vec::new());
    let app = app(&store);
    let uri = format!("/v2/a/blobs/{digest}");
    let answer = get(&app, &uri).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-length"), Some("0"));
    assert!(answer.body.is_empty());
    let answer = send(&app, Method::GET, &uri, &[("range", "bytes=0-")]).await;
    assert_eq!(answer.status, 416);
    assert_eq!(answer.header("content-range"), Some("bytes */0"));
}

#[tokio::test]
async fn missing_blobs_are_404_blob_unknown() {
    let (_, app, _, _) = blob_app();
    let uri = format!("/v2/library/nginx/blobs/{}", sha256(b"absent"));
    let answer = get(&app, &uri).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.error_code(), "BLOB_UNKNOWN");
    let answer = head(&app, &uri).await;
    assert_eq!(answer.status, 404);
    assert!(answer.body.is_empty());
}

#[tokio::test]
async fn a_manifest_digest_is_not_a_blob() {
    let store = MemoryStore::new();
    let digest = store.add_manifest(MediaType::OciIndex, manifest_json("index"));
    let app = app(&store);
    let answer = get(&app, &format!("/v2/library/nginx/blobs/{digest}")).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.error_code(), "BLOB_UNKNOWN");
    assert_eq!(
        answer.json()["errors"][0]["detail"]["digest"],
        digest.as_str()
    );
}

#[tokio::test]
async fn blobs_are_served_under_deep_names_that_contain_route_keywords() {
    let (_, app, _, bytes) = blob_app();
    let digest = sha256(&bytes);
    for name in ["a/b/c/d/e/f/g", "manifests", "x/blobs/y", "tags/list"] {
        let answer = get(&app, &format!("/v2/{name}/blobs/{digest}")).await;
        assert_eq!(answer.status, 200, "{name}");
        assert_eq!(answer.body, bytes);
    }
}
