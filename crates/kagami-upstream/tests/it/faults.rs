//! Registries that answer badly: a redirect to blob storage on another
//! host (no `Authorization` sent there), a redirect loop, a manifest that
//! is not its digest, a body that stops, a token endpoint that answers
//! garbage, and `429` / `503` that give way to the next endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::response::IntoResponse;
use futures::StreamExt;
use kagami_core::upstream::Upstream;
use kagami_core::{Algorithm, Hasher, Registry, Repository};
use kagami_store::testing::ImageSpec;
use kagami_upstream::{Budgets, Client, Config, HostConfig, MirrorConfig};

use crate::support::{
    Issuer, Protection, Upstream as RealRegistry, basic_credentials, client, install_provider,
};

/// A test server of its own on loopback; its `host:port`.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr.to_string()
}

fn repo() -> Repository {
    "team/app".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_storage_on_another_host_carries_no_authorization() {
    install_provider();
    let real = RealRegistry::start(Protection::Plain);
    let image = real.push(
        ImageSpec::new("x/app:1", &[50_000]).seed(6),
        "team/app",
        None,
    );
    let (layer, size) = image.blobs.iter().max_by_key(|(_, s)| **s).unwrap();
    let real_addr = real.addr.to_string();
    // "Storage": serves the blob from the real registry, noting whether an
    // Authorization header came along. Reached as `localhost`, a host other
    // than the proxy's `127.0.0.1`.
    let leaked = Arc::new(AtomicUsize::new(0));
    let storage = {
        let (leaked, real_addr) = (leaked.clone(), real_addr.clone());
        serve(axum::Router::new().route(
            "/store/{digest}",
            axum::routing::get(
                move |headers: http::HeaderMap,
                      axum::extract::Path(digest): axum::extract::Path<String>| {
                    let (leaked, real_addr) = (leaked.clone(), real_addr.clone());
                    async move {
                        if headers.contains_key(http::header::AUTHORIZATION) {
                            leaked.fetch_add(1, Ordering::SeqCst);
                        }
                        let url = format!("http://{real_addr}/v2/team/app/blobs/{digest}");
                        let bytes = reqwest::get(url).await.unwrap().bytes().await.unwrap();
                        bytes.into_response()
                    }
                },
            ),
        ))
        .await
    };
    let storage_port = storage.rsplit(':').next().unwrap().to_owned();
    // The "registry": basic auth required, blobs redirected to storage.
    let proxy = serve(axum::Router::new().route(
        "/v2/team/app/blobs/{digest}",
        axum::routing::get(
            move |headers: http::HeaderMap,
                  axum::extract::Path(digest): axum::extract::Path<String>| {
                let storage_port = storage_port.clone();
                async move {
                    if !headers.contains_key(http::header::AUTHORIZATION) {
                        return (
                            http::StatusCode::UNAUTHORIZED,
                            [(http::header::WWW_AUTHENTICATE, "Basic realm=\"proxy\"")],
                        )
                            .into_response();
                    }
                    (
                        http::StatusCode::TEMPORARY_REDIRECT,
                        [(
                            http::header::LOCATION,
                            format!("http://localhost:{storage_port}/store/{digest}"),
                        )],
                    )
                        .into_response()
                }
            },
        ),
    ))
    .await;
    let registry: Registry = proxy.parse().unwrap();
    let client = client(
        &registry,
        &format!("http://{proxy}"),
        HostConfig {
            credentials: Some(basic_credentials()),
            ..HostConfig::default()
        },
    );
    let blob = client
        .blob(&registry, &repo(), layer, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(blob.size, *size);
    let mut body = blob.body;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(Hasher::digest(Algorithm::Sha256, &bytes), *layer);
    assert_eq!(
        leaked.load(Ordering::SeqCst),
        0,
        "Authorization went to storage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loops_wrong_digests_stalls_and_garbage_tokens_are_refused() {
    install_provider();
    let digest = Hasher::digest(Algorithm::Sha256, b"what was asked");
    let bad = serve(
        axum::Router::new()
            // A redirect to itself, for ever.
            .route(
                "/v2/loop/app/blobs/{digest}",
                axum::routing::get(|| async {
                    (
                        http::StatusCode::FOUND,
                        [(http::header::LOCATION, "/v2/loop/app/blobs/again")],
                    )
                }),
            )
            .route(
                "/v2/loop/app/blobs/again",
                axum::routing::get(|| async {
                    (
                        http::StatusCode::FOUND,
                        [(http::header::LOCATION, "/v2/loop/app/blobs/again")],
                    )
                }),
            )
            // A manifest that is not the one asked for.
            .route(
                "/v2/team/app/manifests/{reference}",
                axum::routing::get(|| async {
                    (
                        [(http::header::CONTENT_TYPE, "application/vnd.oci.image.manifest.v1+json")],
                        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#,
                    )
                }),
            )
            // A body that announces 1000 bytes, sends 10 and stops.
            .route(
                "/v2/team/app/blobs/{digest}",
                axum::routing::get(|| async {
                    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"0123456789"))])
                        .chain(futures::stream::pending());
                    (
                        [(http::header::CONTENT_LENGTH, "1000")],
                        axum::body::Body::from_stream(stream),
                    )
                }),
            ),
    )
    .await;
    let registry: Registry = bad.parse().unwrap();
    let mut config = Config {
        budgets: Budgets {
            idle: Duration::from_millis(300),
            ..Budgets::default()
        },
        ..Config::default()
    };
    config.mirrors.insert(
        registry.to_string(),
        MirrorConfig {
            endpoints: vec![format!("http://{bad}").parse().unwrap()],
            rewrites: Vec::new(),
        },
    );
    let client = Client::new(config);
    let looping: Repository = "loop/app".parse().unwrap();
    let error = client
        .blob(&registry, &looping, &digest, 0)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("redirect"), "{error}");

    let error = client
        .manifest(&registry, &repo(), &digest)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("hash to"), "{error}");

    let blob = client
        .blob(&registry, &repo(), &digest, 0)
        .await
        .unwrap()
        .unwrap();
    let mut body = blob.body;
    let first = body.next().await.unwrap().unwrap();
    assert_eq!(&first[..], b"0123456789");
    let stalled = body.next().await.unwrap().unwrap_err();
    assert!(stalled.to_string().contains("sent nothing"), "{stalled}");

    // A token endpoint that answers garbage.
    let issuer = Issuer::start(true).await;
    let real = RealRegistry::start(Protection::Token {
        realm: issuer.realm.clone(),
        bundle: issuer.bundle.clone(),
    });
    let registry = real.registry();
    let tokens = client_for(&registry, &format!("http://{}", real.addr));
    let error = tokens
        .resolve(&registry, &repo(), &"1".parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("not a token response"),
        "{error}"
    );
}

fn client_for(registry: &Registry, url: &str) -> Client {
    client(registry, url, HostConfig::default())
}

#[tokio::test]
async fn rate_limits_and_server_errors_give_way_to_the_next_endpoint() {
    install_provider();
    let real = RealRegistry::start(Protection::Plain);
    let image = real.push(
        ImageSpec::new("x/app:1", &[1_000]).seed(7),
        "team/app",
        None,
    );
    let registry = real.registry();
    let limited =
        serve(axum::Router::new().fallback(|| async { http::StatusCode::TOO_MANY_REQUESTS })).await;
    let broken =
        serve(axum::Router::new().fallback(|| async { http::StatusCode::SERVICE_UNAVAILABLE }))
            .await;
    let mut config = Config::default();
    config.mirrors.insert(
        registry.to_string(),
        MirrorConfig {
            endpoints: vec![
                format!("http://{limited}").parse().unwrap(),
                format!("http://{broken}").parse().unwrap(),
                format!("http://{}", real.addr).parse().unwrap(),
            ],
            rewrites: Vec::new(),
        },
    );
    let client = Client::new(config);
    let resolved = client
        .resolve(&registry, &repo(), &"1".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resolved.digest, image.digest);
}
