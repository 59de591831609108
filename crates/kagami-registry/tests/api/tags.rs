//! `GET /v2/<name>/tags/list`.

use kagami_core::MediaType;

use crate::support::*;

#[tokio::test]
async fn lists_the_tags_of_one_repository_sorted() {
    let store = MemoryStore::new();
    let a = store.add_manifest(MediaType::OciManifest, manifest_json("a"));
    let b = store.add_manifest(MediaType::OciManifest, manifest_json("b"));
    store.tag("docker.io/library/nginx:1.25", &a);
    store.tag("docker.io/library/nginx:1.24", &b);
    store.tag("docker.io/library/nginx:alpine", &a);
    store.tag("docker.io/library/nginx-extra:9", &a);
    store.tag("quay.io/library/nginx:quay-only", &a);
    store.tag("docker.io/library/nginx/sub:deeper", &a);
    let app = app(&store);

    let answer = get(&app, "/v2/library/nginx/tags/list").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(
        answer.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    assert_eq!(
        answer.json(),
        serde_json::json!({"name": "library/nginx", "tags": ["1.24", "1.25", "alpine"]})
    );

    let answer = get(&app, "/v2/nginx/tags/list?ns=docker.io").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["name"], "nginx");
    assert_eq!(
        answer.json()["tags"],
        serde_json::json!(["1.24", "1.25", "alpine"])
    );

    let answer = get(&app, "/v2/library/nginx/tags/list?ns=quay.io").await;
    assert_eq!(answer.json()["tags"], serde_json::json!(["quay-only"]));
}

#[tokio::test]
async fn an_unknown_repository_is_404_name_unknown() {
    let store = MemoryStore::new();
    let a = store.add_manifest(MediaType::OciManifest, manifest_json("a"));
    store.tag("docker.io/library/nginx:1.25", &a);
    let app = app(&store);
    for uri in [
        "/v2/library/redis/tags/list",
        "/v2/nginx/tags/list?ns=quay.io",
    ] {
        let answer = get(&app, uri).await;
        assert_eq!(answer.status, 404, "{uri}");
        assert_eq!(answer.error_code(), "NAME_UNKNOWN");
    }
}
