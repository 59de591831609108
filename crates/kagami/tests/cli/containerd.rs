//! `kagami server` on containerd's store: chosen by `--store`, or found by
//! its socket, and serving what a real containerd holds.

use std::time::Duration;

use kagami_containerd::testing::Daemon;
use kagami_store::testing::{ArchiveFormat, BuiltImage, Compression, ImageSpec, write_archive};

use crate::harness::{Server, eventually, p2p_flags, run};

#[tokio::test]
async fn serves_an_image_held_by_a_real_containerd() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start();
    // Debian's ctr 1.6 reads plain tars only.
    let (archive, built) = write_archive(
        tmp.path(),
        &[ImageSpec::new("registry.example.com/team/app:v1", &[20_000, 50_000]).seed(5)],
        ArchiveFormat::Oci,
        Compression::None,
    )
    .unwrap();
    daemon
        .ctr(&[
            "images",
            "import",
            "--no-unpack",
            "--all-platforms",
            archive.to_str().unwrap(),
        ])
        .await;

    let socket = daemon.socket().to_str().unwrap().to_owned();
    // `auto` picks containerd because its socket exists.
    let server = Server::start(
        &tmp.path().join("data"),
        &["--store", "auto", "--containerd-address", &socket],
    );
    assert!(
        server.log().contains("store: containerd"),
        "{}",
        server.log()
    );

    let url = format!(
        "{}/v2/team/app/manifests/v1?ns=registry.example.com",
        server.url()
    );
    let response = crate::pull::client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["docker-content-digest"],
        built[0].digest.to_string()
    );
    for (digest, size) in &built[0].blobs {
        let url = format!(
            "{}/v2/team/app/blobs/{digest}?ns=registry.example.com",
            server.url()
        );
        let body = crate::pull::client()
            .get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.len() as u64, *size, "{digest}");
        assert_eq!(
            kagami_core::Hasher::digest(digest.algorithm(), &body),
            *digest
        );
    }
    // The built-in store was not even created.
    assert!(!tmp.path().join("data/layout").exists());
}

#[test]
fn auto_without_a_socket_uses_the_built_in_store() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no.sock");
    let mut server = Server::start(
        &tmp.path().join("data"),
        &[
            "--store",
            "auto",
            "--containerd-address",
            missing.to_str().unwrap(),
        ],
    );
    assert!(server.terminate(Duration::from_secs(15)));
    let log = server.log();
    assert!(log.contains("no containerd socket"), "{log}");
    assert!(log.contains("store: built-in OCI image layout"), "{log}");
}

#[test]
fn containerd_asked_for_but_absent_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no.sock");
    let output = run(
        &tmp.path().join("data"),
        &[
            "server",
            "--https-listen-port",
            "0",
            "--store",
            "containerd",
            "--containerd-address",
            missing.to_str().unwrap(),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no.sock"), "{stderr}");
}

/// Imports one image into `daemon` (a plain OCI archive, as ctr 1.6 needs).
async fn ctr_import(daemon: &Daemon, dir: &std::path::Path, spec: ImageSpec) -> BuiltImage {
    let (archive, mut built) =
        write_archive(dir, &[spec], ArchiveFormat::Oci, Compression::None).unwrap();
    daemon
        .ctr(&["images", "import", "--no-unpack", archive.to_str().unwrap()])
        .await;
    built.remove(0)
}

async fn status_of(url: &str) -> u16 {
    crate::pull::client()
        .get(url)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_layer_containerd_discarded_is_not_served_and_is_reported_once() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start();
    let built = ctr_import(
        &daemon,
        tmp.path(),
        ImageSpec::new("docker.io/library/thin:1", &[30_000, 40_000]).seed(21),
    )
    .await;
    // What `discard_unpacked_layers` does after an unpack: the layer blob
    // goes, the image record stays.
    let (gone, _) = built.blobs.iter().max_by_key(|(_, size)| **size).unwrap();
    daemon.ctr(&["content", "rm", &gone.to_string()]).await;

    let socket = daemon.socket().to_str().unwrap().to_owned();
    let server = Server::start(
        &tmp.path().join("data"),
        &["--store", "containerd", "--containerd-address", &socket],
    );
    let blob = |digest: &kagami_core::Digest| {
        format!(
            "{}/v2/library/thin/blobs/{digest}?ns=docker.io",
            server.url()
        )
    };
    for _ in 0..3 {
        assert_eq!(status_of(&blob(gone)).await, 404);
    }
    for (digest, _) in built.blobs.iter().filter(|(d, _)| *d != gone) {
        assert_eq!(status_of(&blob(digest)).await, 200, "{digest}");
    }
    let log = server.log();
    let reports = log.matches("not served or advertised").count();
    assert_eq!(reports, 1, "{log}");
    assert!(log.contains(&gone.to_string()), "{log}");
}

#[tokio::test]
async fn containerd_going_away_is_503_and_its_return_is_noticed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start();
    let built = ctr_import(
        &daemon,
        tmp.path(),
        ImageSpec::new("docker.io/library/steady:1", &[10_000]).seed(22),
    )
    .await;
    let socket = daemon.socket().to_str().unwrap().to_owned();
    // A node on the P2P network, whose advertiser follows containerd.
    let psk = tmp.path().join("psk");
    kagami_p2p::Psk::generate().write(&psk).unwrap();
    let mut flags = p2p_flags(&psk, &[]);
    flags.extend(["--store", "containerd", "--containerd-address", &socket].map(String::from));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start(&tmp.path().join("data"), &flags);
    let manifest = format!("{}/v2/library/steady/manifests/1", server.url());
    assert_eq!(status_of(&manifest).await, 200);

    daemon.kill();
    let response = crate::pull::client().get(&manifest).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE", "{body}");
    let digest = format!(
        "{}/v2/library/steady/manifests/{}",
        server.url(),
        built.digest
    );
    assert_eq!(status_of(&digest).await, 503);

    daemon.restart();
    eventually("the manifest to be served again", || async {
        (status_of(&manifest).await == 200).then_some(())
    })
    .await;
    eventually("the return to be logged", || async {
        server.log().contains("containerd is back").then_some(())
    })
    .await;
    let log = server.log();
    assert_eq!(log.matches("containerd is back").count(), 1, "{log}");
    assert_eq!(
        log.matches("lost containerd's event stream").count(),
        1,
        "{log}"
    );
}
