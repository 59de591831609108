//! `kagami server` on containerd's store: chosen by `--store`, or found by
//! its socket, and serving what a real containerd holds.

use std::time::Duration;

use kagami_containerd::testing::Daemon;
use kagami_store::testing::{ArchiveFormat, Compression, ImageSpec, write_archive};

use crate::harness::{Server, run};

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
    let response = reqwest::get(&url).await.unwrap();
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
        let body = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
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
