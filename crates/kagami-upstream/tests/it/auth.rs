//! Credentials: basic auth over TLS with the configured CA, and the
//! bearer-token flow with a token issuer (basic credentials, anonymous,
//! identity token), tokens kept until they expire.

use kagami_core::upstream::Upstream;
use kagami_core::{Repository, Tag};
use kagami_store::testing::ImageSpec;
use kagami_upstream::{Credentials, HostConfig, TlsSettings};

use crate::support::{
    IDENTITY_TOKEN, Issuer, PASSWORD, Protection, USER, Upstream as Registry, basic_credentials,
    client, install_provider, trusting,
};

fn names() -> (Repository, Tag) {
    ("team/app".parse().unwrap(), "1".parse().unwrap())
}

#[tokio::test]
async fn basic_auth_over_tls_with_the_configured_ca() {
    install_provider();
    let upstream = Registry::start(Protection::BasicTls);
    let creds = format!("{USER}:{PASSWORD}");
    let image = upstream.push(
        ImageSpec::new("x/app:1", &[2_000]).seed(4),
        "team/app",
        Some(&creds),
    );
    let registry = upstream.registry();
    let url = format!("https://{}", upstream.addr);
    let ca = upstream.tls_ca.clone().unwrap();
    let (repo, tag) = names();

    let good = client(
        &registry,
        &url,
        HostConfig {
            tls: trusting(&ca),
            credentials: Some(basic_credentials()),
        },
    );
    let resolved = good.resolve(&registry, &repo, &tag).await.unwrap().unwrap();
    assert_eq!(resolved.digest, image.digest);
    let (layer, _) = image.blobs.iter().next().unwrap();
    assert!(
        good.blob(&registry, &repo, layer, 0)
            .await
            .unwrap()
            .is_some()
    );

    // No credentials, wrong ones, or no trust in its CA: unavailable.
    for host in [
        HostConfig {
            tls: trusting(&ca),
            credentials: None,
        },
        HostConfig {
            tls: trusting(&ca),
            credentials: Some(Credentials::Basic {
                username: USER.to_owned(),
                password: "wrong".to_owned(),
            }),
        },
        HostConfig {
            tls: TlsSettings::default(),
            credentials: Some(basic_credentials()),
        },
    ] {
        let refused = client(&registry, &url, host);
        let error = refused.resolve(&registry, &repo, &tag).await.unwrap_err();
        assert!(error.to_string().contains("unavailable"), "{error}");
    }
    // insecure_skip_verify, with the credentials, gets in.
    let skip = client(
        &registry,
        &url,
        HostConfig {
            tls: TlsSettings {
                insecure_skip_verify: true,
                ..TlsSettings::default()
            },
            credentials: Some(basic_credentials()),
        },
    );
    assert!(
        skip.resolve(&registry, &repo, &tag)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_token_flow_keeps_its_token_until_it_expires() {
    install_provider();
    let issuer = Issuer::start(false).await;
    let upstream = Registry::start(Protection::Token {
        realm: issuer.realm.clone(),
        bundle: issuer.bundle.clone(),
    });
    let creds = format!("{USER}:{PASSWORD}");
    let image = upstream.push(
        ImageSpec::new("x/app:1", &[2_000]).seed(5),
        "team/app",
        Some(&creds),
    );
    let registry = upstream.registry();
    let url = format!("http://{}", upstream.addr);
    let (repo, tag) = names();

    let before = issuer.issued();
    let with_creds = client(
        &registry,
        &url,
        HostConfig {
            credentials: Some(basic_credentials()),
            ..HostConfig::default()
        },
    );
    let resolved = with_creds
        .resolve(&registry, &repo, &tag)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resolved.digest, image.digest);
    assert!(
        with_creds
            .manifest(&registry, &repo, &image.digest)
            .await
            .unwrap()
            .is_some()
    );
    for layer in image.blobs.keys() {
        assert!(
            with_creds
                .blob(&registry, &repo, layer, 0)
                .await
                .unwrap()
                .is_some()
        );
    }
    assert_eq!(
        issuer.issued() - before,
        1,
        "one token served every request"
    );

    // Anonymous tokens work where the issuer gives them…
    let anonymous = client(&registry, &url, HostConfig::default());
    assert!(
        anonymous
            .resolve(&registry, &repo, &tag)
            .await
            .unwrap()
            .is_some()
    );
    // …an identity token is exchanged for one…
    let identity = client(
        &registry,
        &url,
        HostConfig {
            credentials: Some(Credentials::IdentityToken(IDENTITY_TOKEN.to_owned())),
            ..HostConfig::default()
        },
    );
    assert!(
        identity
            .resolve(&registry, &repo, &tag)
            .await
            .unwrap()
            .is_some()
    );
    // …and wrong credentials get none.
    let wrong = client(
        &registry,
        &url,
        HostConfig {
            credentials: Some(Credentials::Basic {
                username: USER.to_owned(),
                password: "wrong".to_owned(),
            }),
            ..HostConfig::default()
        },
    );
    let error = wrong.resolve(&registry, &repo, &tag).await.unwrap_err();
    assert!(error.to_string().contains("token endpoint"), "{error}");
}
