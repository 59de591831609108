//! A plain-HTTP registry: tags, manifests and blobs (from an offset too),
//! what it does not hold, endpoint order and rewrites.

use futures::StreamExt;
use kagami_core::upstream::Upstream;
use kagami_core::{Algorithm, Hasher, Repository, Tag};
use kagami_store::testing::ImageSpec;
use kagami_upstream::{Client, Config, HostConfig, MirrorConfig, Rewrite};

use crate::support::{Protection, Upstream as Registry, client, install_provider};

async fn read_all(blob: kagami_core::upstream::UpstreamBlob) -> Vec<u8> {
    let mut body = blob.body;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    bytes
}

#[tokio::test]
async fn tags_manifests_and_blobs_come_from_a_plain_registry() {
    install_provider();
    let upstream = Registry::start(Protection::Plain);
    let image = upstream.push(
        ImageSpec::new("x/app:1", &[300_000]).seed(1),
        "team/app",
        None,
    );
    let registry = upstream.registry();
    let client = client(
        &registry,
        &format!("http://{}", upstream.addr),
        HostConfig::default(),
    );
    let repo: Repository = "team/app".parse().unwrap();
    let tag: Tag = "1".parse().unwrap();

    let resolved = client
        .resolve(&registry, &repo, &tag)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resolved.digest, image.digest);
    let (_, bytes) = client
        .manifest(&registry, &repo, &image.digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Hasher::digest(Algorithm::Sha256, &bytes), image.digest);

    let (layer, size) = image.blobs.iter().max_by_key(|(_, s)| **s).unwrap();
    let blob = client
        .blob(&registry, &repo, layer, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(blob.size, *size);
    let whole = read_all(blob).await;
    assert_eq!(Hasher::digest(Algorithm::Sha256, &whole), *layer);
    let tail = client
        .blob(&registry, &repo, layer, 1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tail.size, *size, "the size is the whole blob's");
    assert_eq!(read_all(tail).await, whole[1000..]);
}

#[tokio::test]
async fn what_the_registry_does_not_hold_is_not_found() {
    install_provider();
    let upstream = Registry::start(Protection::Plain);
    let image = upstream.push(
        ImageSpec::new("x/app:1", &[1_000]).seed(2),
        "team/app",
        None,
    );
    let registry = upstream.registry();
    let client = client(
        &registry,
        &format!("http://{}", upstream.addr),
        HostConfig::default(),
    );
    let repo: Repository = "team/app".parse().unwrap();
    let other: Repository = "team/other".parse().unwrap();
    assert!(
        client
            .resolve(&registry, &repo, &"2".parse().unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        client
            .resolve(&registry, &other, &"1".parse().unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let missing = Hasher::digest(Algorithm::Sha256, b"nothing");
    assert!(
        client
            .blob(&registry, &repo, &missing, 0)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        client
            .manifest(&registry, &repo, &missing)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        client
            .manifest(&registry, &repo, &image.digest)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_failing_endpoint_gives_way_to_the_next_and_rewrites_apply() {
    install_provider();
    let upstream = Registry::start(Protection::Plain);
    let image = upstream.push(
        ImageSpec::new("x/app:1", &[1_000]).seed(3),
        "mirror/app",
        None,
    );
    let registry = upstream.registry();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut config = Config::default();
    config.mirrors.insert(
        registry.to_string(),
        MirrorConfig {
            endpoints: vec![
                dead.parse().unwrap(),
                format!("http://{}", upstream.addr).parse().unwrap(),
            ],
            rewrites: vec![Rewrite {
                pattern: regex::Regex::new("^team/(.*)$").unwrap(),
                replacement: "mirror/$1".to_owned(),
            }],
        },
    );
    let client = Client::new(config);
    let repo: Repository = "team/app".parse().unwrap();
    let resolved = client
        .resolve(&registry, &repo, &"1".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resolved.digest, image.digest);
    // With only the dead endpoint, the registry is unavailable: an error,
    // not a 404, so the caller can tell.
    let mut only_dead = Config::default();
    only_dead.mirrors.insert(
        registry.to_string(),
        MirrorConfig {
            endpoints: vec![dead.parse().unwrap()],
            rewrites: Vec::new(),
        },
    );
    let error = Client::new(only_dead)
        .resolve(&registry, &repo, &"1".parse().unwrap())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("unavailable"), "{error}");
}
