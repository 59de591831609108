//! `kagami server`: defaults, health, logs, images imported while it runs,
//! and shutdown on SIGTERM.

use std::time::{Duration, Instant};

use kagami_store::testing::{ArchiveFormat, Compression, ImageSpec, write_archive};

use crate::harness::{Server, kagami, run_ok};

#[test]
fn server_defaults_are_port_6443_and_var_lib_kagami() {
    let output = kagami().args(["server", "--help"]).output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("[default: 6443]"), "{help}");
    assert!(help.contains("[default: /var/lib/kagami]"), "{help}");
    assert!(help.contains("--https-listen-port"), "{help}");
}

async fn get(url: &str) -> reqwest::Response {
    crate::pull::client()
        .get(url)
        .send()
        .await
        .expect("request reaches the server")
}

#[tokio::test]
async fn serves_health_and_an_image_imported_while_running() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data, &[]);
    assert_eq!(
        get(&format!("{}/healthz", server.url())).await.status(),
        200
    );
    assert_eq!(get(&format!("{}/readyz", server.url())).await.status(), 200);
    let v2 = get(&format!("{}/v2/", server.url())).await;
    assert_eq!(v2.status(), 200);
    assert_eq!(
        v2.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );

    let manifest_url = format!("{}/v2/library/late/manifests/1", server.url());
    assert_eq!(get(&manifest_url).await.status(), 404);

    let (archive, built) = write_archive(
        tmp.path(),
        &[ImageSpec::new("late:1", &[4096]).seed(3)],
        ArchiveFormat::Oci,
        Compression::None,
    )
    .unwrap();
    run_ok(&data, &["image", "import", archive.to_str().unwrap()]);

    // The running server notices the other process's import by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = get(&manifest_url).await;
        if response.status() == 200 {
            assert_eq!(
                response.headers()["docker-content-digest"],
                built[0].digest.to_string()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "import never became visible to the server"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn logs_one_line_per_request_at_debug_and_none_at_info() {
    let tmp = tempfile::tempdir().unwrap();
    let mut quiet = Server::start(&tmp.path().join("a"), &[]);
    let mut chatty = Server::start(&tmp.path().join("b"), &["--log-level", "debug"]);
    for server in [&quiet, &chatty] {
        for path in [
            "/v2/",
            "/v2/library/nothing/manifests/1",
            "/v2/library/nothing/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            get(&format!("{}{path}", server.url())).await;
        }
    }
    assert!(quiet.terminate(Duration::from_secs(15)));
    assert!(chatty.terminate(Duration::from_secs(15)));

    let info = quiet.log();
    assert!(
        !info.contains("/v2/library/nothing"),
        "request lines at info level:\n{info}"
    );
    assert!(info.contains("listening"), "{info}");

    let debug = chatty.log();
    for path in [
        "/v2/library/nothing/manifests/1",
        "/v2/library/nothing/blobs/",
    ] {
        let lines = debug.lines().filter(|l| l.contains(path)).count();
        assert_eq!(lines, 1, "want one line for {path}:\n{debug}");
    }
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(&tmp.path().join("data"), &[]);
    assert_eq!(
        get(&format!("{}/healthz", server.url())).await.status(),
        200
    );
    assert!(
        server.terminate(Duration::from_secs(15)),
        "non-zero exit after SIGTERM"
    );
    assert!(server.log().contains("SIGTERM received"));
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "still accepting connections after exit"
    );
}
