//! Manifests by tag and by digest, HEAD and GET, across registries.

use kagami_core::MediaType;
use kagami_registry::{Config, Readiness};

use crate::support::*;

const NGINX: &str = "docker.io/library/nginx:1.25";

#[tokio::test]
async fn get_by_tag_serves_the_manifest_with_its_headers() {
    let store = MemoryStore::new();
    let json = manifest_json("nginx");
    let digest = store.add_manifest(MediaType::OciManifest, json.clone());
    store.tag(NGINX, &digest);
    let app = app(&store);

    for uri in [
        "/v2/library/nginx/manifests/1.25",
        "/v2/library/nginx/manifests/1.25?ns=docker.io",
    ] {
        let answer = get(&app, uri).await;
        answer.assert_content(MediaType::OciManifest.as_str(), &json);
        assert_eq!(
            answer.header("docker-content-digest"),
            Some(digest.as_str())
        );
    }
}

#[tokio::test]
async fn one_component_docker_hub_names_mean_library() {
    let store = MemoryStore::new();
    let digest = store.add_manifest(MediaType::OciManifest, manifest_json("nginx"));
    store.tag(NGINX, &digest);
    let app = app(&store);

    for uri in [
        "/v2/nginx/manifests/1.25",
        "/v2/nginx/manifests/1.25?ns=docker.io",
        "/v2/nginx/manifests/1.25?ns=index.docker.io",
        "/v2/nginx/manifests/1.25?ns=registry-1.docker.io",
    ] {
        let answer = get(&app, uri).await;
        assert_eq!(answer.status, 200, "{uri}");
        assert_eq!(
            answer.header("docker-content-digest"),
            Some(digest.as_str())
        );
    }
    // Outside Docker Hub, `nginx` is just `nginx`.
    let answer = get(&app, "/v2/nginx/manifests/1.25?ns=quay.io").await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.error_code(), "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn ns_selects_the_registry() {
    let store = MemoryStore::new();
    let quay = store.add_manifest(MediaType::OciIndex, manifest_json("quay"));
    let local = store.add_manifest(MediaType::DockerManifest, manifest_json("local"));
    let hub = store.add_manifest(MediaType::DockerManifestList, manifest_json("hub"));
    store.tag("quay.io/coreos/etcd:v3", &quay);
    store.tag("localhost:5000/coreos/etcd:v3", &local);
    store.tag("docker.io/coreos/etcd:v3", &hub);
    let app = app(&store);

    let cases = [
        ("?ns=quay.io", &quay, MediaType::OciIndex),
        ("?ns=localhost%3A5000", &local, MediaType::DockerManifest),
        ("?ns=localhost:5000", &local, MediaType::DockerManifest),
        ("", &hub, MediaType::DockerManifestList),
        ("?other=1&ns=quay.io", &quay, MediaType::OciIndex),
    ];
    for (query, digest, media_type) in cases {
        let answer = get(&app, &format!("/v2/coreos/etcd/manifests/v3{query}")).await;
        assert_eq!(answer.status, 200, "{query}");
        assert_eq!(
            answer.header("docker-content-digest"),
            Some(digest.as_str()),
            "{query}"
        );
        assert_eq!(
            answer.header("content-type"),
            Some(media_type.as_str()),
            "{query}"
        );
    }
}

#[tokio::test]
async fn requests_without_ns_use_the_configured_default() {
    let store = MemoryStore::new();
    let digest = store.add_manifest(MediaType::OciManifest, manifest_json("ghcr"));
    store.tag("ghcr.io/org/app:1", &digest);
    let config = Config {
        default_registry: "ghcr.io".parse().unwrap(),
        ..Config::default()
    };
    let app = app_with(&store, config, Readiness::new());
    assert_eq!(get(&app, "/v2/org/app/manifests/1").await.status, 200);
    assert_eq!(
        get(&app, "/v2/org/app/manifests/1?ns=docker.io")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn get_by_digest_serves_the_manifest_in_any_repository() {
    let store = MemoryStore::new();
    let json = manifest_json("by-digest");
    let digest = store.add_manifest(MediaType::DockerManifestList, json.clone());
    let app = app(&store);

    let answer = get(&app, &format!("/v2/some/repo/manifests/{digest}")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, json);
    assert_eq!(
        answer.header("content-type"),
        Some(MediaType::DockerManifestList.as_str())
    );
    assert_eq!(
        answer.header("docker-content-digest"),
        Some(digest.as_str())
    );
}

#[tokio::test]
async fn head_answers_the_headers_of_get_without_a_body() {
    let store = MemoryStore::new();
    let digest = store.add_manifest(MediaType::OciManifest, manifest_json("head"));
    store.tag(NGINX, &digest);
    let app = app(&store);

    for uri in [
        "/v2/library/nginx/manifests/1.25".to_owned(),
        format!("/v2/library/nginx/manifests/{digest}"),
    ] {
        let headers = [
            "content-type",
            "content-length",
            "docker-content-digest",
            "etag",
        ];
        assert_head_mirrors_get(&app, &uri, &headers).await;
    }
}

#[tokio::test]
async fn missing_manifests_are_404_manifest_unknown() {
    let store = MemoryStore::new();
    let digest = store.add_manifest(MediaType::OciManifest, manifest_json("x"));
    store.tag(NGINX, &digest);
    let app = app(&store);
    let absent = sha256(b"absent");

    for uri in [
        "/v2/library/nginx/manifests/1.26".to_owned(),
        "/v2/library/redis/manifests/1.25".to_owned(),
        format!("/v2/library/nginx/manifests/{absent}"),
    ] {
        let answer = get(&app, &uri).await;
        assert_eq!(answer.status, 404, "{uri}");
        assert_eq!(answer.error_code(), "MANIFEST_UNKNOWN", "{uri}");
        assert_eq!(head(&app, &uri).await.status, 404, "{uri}");
    }
}

#[tokio::test]
async fn a_blob_digest_is_not_a_manifest() {
    let store = MemoryStore::new();
    let blob = store.add_blob(pattern(100));
    let app = app(&store);
    let answer = get(&app, &format!("/v2/library/nginx/manifests/{blob}")).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.error_code(), "MANIFEST_UNKNOWN");
    assert_eq!(
        answer.json()["errors"][0]["detail"]["reference"],
        blob.as_str()
    );
}

#[tokio::test]
async fn a_registry_the_node_does_not_mirror_is_not_served_even_when_held() {
    let store = MemoryStore::new();
    let json = manifest_json("app");
    let digest = store.add_manifest(MediaType::OciManifest, json.clone());
    store.tag("quay.io/team/app:1", &digest);
    store.tag(NGINX, &digest);
    let config = Config {
        served: kagami_registry::Mirrored::Only(["docker.io".parse().unwrap()].into()),
        ..Config::default()
    };
    let app = app_with(&store, config, ready());

    let answer = get(&app, "/v2/team/app/manifests/1?ns=quay.io").await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.error_code(), "NAME_UNKNOWN");
    assert_eq!(answer.json()["errors"][0]["detail"]["registry"], "quay.io");
    let by_digest = format!("/v2/team/app/manifests/{digest}?ns=quay.io");
    assert_eq!(get(&app, &by_digest).await.status, 404);
    let blob = format!("/v2/team/app/blobs/{digest}?ns=quay.io");
    assert_eq!(get(&app, &blob).await.status, 404);

    get(&app, "/v2/library/nginx/manifests/1.25?ns=docker.io")
        .await
        .assert_content(MediaType::OciManifest.as_str(), &json);
    // The ping answers whatever is mirrored.
    assert_eq!(get(&app, "/v2/").await.status, 200);
}
