//! The ping, and every error the API answers: 405 for pushes, 400 for
//! invalid names and references, 404 for unknown paths, 5xx for a failing
//! store, all with an OCI error body.

use http::Method;
use kagami_core::MediaType;

use crate::support::*;

const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[tokio::test]
async fn the_ping_answers_200_with_the_api_version() {
    let app = app(&MemoryStore::new());
    for uri in ["/v2/", "/v2", "/v2/?ns=docker.io"] {
        let answer = get(&app, uri).await;
        assert_eq!(answer.status, 200, "{uri}");
        assert_eq!(answer.json(), serde_json::json!({}));
        assert_eq!(
            answer.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
        let answer = head(&app, uri).await;
        assert_eq!(answer.status, 200, "HEAD {uri}");
        assert!(answer.body.is_empty());
        assert_eq!(
            answer.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
    }
}

#[tokio::test]
async fn every_other_method_is_405_unsupported() {
    let store = MemoryStore::new();
    let digest = store.add_blob(pattern(10));
    let app = app(&store);
    let paths = [
        "/v2/".to_owned(),
        "/v2".to_owned(),
        "/v2/library/nginx/blobs/uploads/".to_owned(),
        "/v2/library/nginx/blobs/uploads/0b6a-uuid?digest=x".to_owned(),
        "/v2/library/nginx/manifests/1.25".to_owned(),
        format!("/v2/library/nginx/blobs/{digest}"),
        "/v2/library/nginx/tags/list".to_owned(),
        "/v2/INVALID//path".to_owned(),
    ];
    let methods = [
        "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PROPFIND",
    ];
    for path in &paths {
        for method in methods {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let answer = send(&app, method.clone(), path, &[]).await;
            assert_eq!(answer.status, 405, "{method} {path}");
            assert_eq!(answer.header("allow"), Some("GET, HEAD"), "{method} {path}");
            assert_eq!(answer.error_code(), "UNSUPPORTED", "{method} {path}");
            assert_eq!(
                answer.header("docker-distribution-api-version"),
                Some("registry/2.0")
            );
        }
    }
    // Nothing was written.
    assert_eq!(
        get(&app, &format!("/v2/library/nginx/blobs/{digest}"))
            .await
            .body,
        pattern(10)
    );
}

#[tokio::test]
async fn invalid_names_references_and_registries_are_400() {
    let app = app(&MemoryStore::new());
    let cases = [
        (
            "/v2/Library/nginx/manifests/latest".to_owned(),
            "NAME_INVALID",
        ),
        ("/v2/a//b/manifests/latest".to_owned(), "NAME_INVALID"),
        (format!("/v2/a..b/blobs/{D}"), "NAME_INVALID"),
        ("/v2/UPPER/tags/list".to_owned(), "NAME_INVALID"),
        (
            "/v2/nginx/manifests/latest?ns=not_a_host".to_owned(),
            "NAME_INVALID",
        ),
        ("/v2/nginx/manifests/latest?ns=".to_owned(), "NAME_INVALID"),
        (
            "/v2/nginx/manifests/latest?ns=a.io&ns=b.io".to_owned(),
            "NAME_INVALID",
        ),
        (format!("/v2/nginx/blobs/{D}?ns=bad%20host"), "NAME_INVALID"),
        ("/v2/nginx/tags/list?ns=-x".to_owned(), "NAME_INVALID"),
        (
            "/v2/nginx/manifests/sha256:totallywrong".to_owned(),
            "DIGEST_INVALID",
        ),
        ("/v2/nginx/manifests/md5:abc".to_owned(), "DIGEST_INVALID"),
        (
            "/v2/nginx/blobs/sha256:totallywrong".to_owned(),
            "DIGEST_INVALID",
        ),
        ("/v2/nginx/blobs/latest".to_owned(), "DIGEST_INVALID"),
        (
            format!("/v2/nginx/blobs/{}", D.to_uppercase()),
            "DIGEST_INVALID",
        ),
        ("/v2/nginx/manifests/.dot".to_owned(), "MANIFEST_INVALID"),
        (
            format!("/v2/nginx/manifests/{}", "t".repeat(129)),
            "MANIFEST_INVALID",
        ),
    ];
    for (uri, code) in cases {
        let answer = get(&app, &uri).await;
        assert_eq!(answer.status, 400, "{uri}");
        assert_eq!(answer.error_code(), code, "{uri}");
        assert_eq!(
            answer.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
        let answer = head(&app, &uri).await;
        assert_eq!(answer.status, 400, "HEAD {uri}");
        assert!(answer.body.is_empty());
    }
}

#[tokio::test]
async fn unknown_paths_under_v2_are_404_name_unknown() {
    let app = app(&MemoryStore::new());
    for uri in [
        "/v2/_catalog",
        "/v2/nginx",
        "/v2/nginx/manifests/",
        "/v2/nginx/blobs/uploads/1234",
        &format!("/v2/nginx/referrers/{D}"),
        "/v2/nginx/tags/list/",
        "/v2//",
        "/v2x/nginx/manifests/latest",
    ] {
        let answer = get(&app, uri).await;
        assert_eq!(answer.status, 404, "{uri}");
        if uri.starts_with("/v2/") {
            assert_eq!(answer.error_code(), "NAME_UNKNOWN", "{uri}");
        }
    }
}

#[tokio::test]
async fn an_unavailable_store_is_503() {
    let store = MemoryStore::new();
    let digest = store.add_blob(pattern(10));
    let app = app(&store);
    store.fail(Some(Fault::Unavailable));
    for uri in [
        format!("/v2/a/blobs/{digest}"),
        format!("/v2/a/manifests/{digest}"),
        "/v2/a/manifests/latest".to_owned(),
        "/v2/a/tags/list".to_owned(),
    ] {
        let answer = get(&app, &uri).await;
        assert_eq!(answer.status, 503, "{uri}");
        assert_eq!(answer.error_code(), "UNAVAILABLE");
        assert!(
            !String::from_utf8_lossy(&answer.body).contains("containerd"),
            "reason leaked"
        );
    }
}

#[tokio::test]
async fn a_failing_store_is_500_with_a_generic_body() {
    let store = MemoryStore::new();
    let digest = store.add_manifest(MediaType::OciManifest, manifest_json("x"));
    let app = app(&store);
    store.fail(Some(Fault::Backend));
    let answer = get(&app, &format!("/v2/a/manifests/{digest}")).await;
    assert_eq!(answer.status, 500);
    assert_eq!(answer.error_code(), "UNKNOWN");
    let error = &answer.json()["errors"][0];
    assert!(error.get("detail").is_none(), "{error}");
    let text = String::from_utf8_lossy(&answer.body);
    assert!(
        !text.contains("disk on fire") && !text.contains("content directory"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_that_never_answers_is_503_in_bounded_time() {
    let store = MemoryStore::new();
    let digest = store.add_blob(pattern(10));
    let app = app(&store);
    store.fail(Some(Fault::Hang));
    let started = tokio::time::Instant::now();
    let answer = get(&app, &format!("/v2/a/blobs/{digest}")).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.error_code(), "UNAVAILABLE");
    assert!(started.elapsed() <= std::time::Duration::from_secs(60));
}
