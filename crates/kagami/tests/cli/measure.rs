//! `kagami measure IMAGE` against a secure agent whose server holds the
//! image: every blob is pulled from the peer, every key's lookup names the
//! server; an image nobody holds fails with the reason.

use kagami_store::testing::{ArchiveFormat, Compression, ImageSpec, write_archive};

use crate::harness::{Server, eventually, kagami, run_ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_reports_lookups_and_blobs_and_fails_clearly_on_a_missing_image() {
    let tmp = tempfile::tempdir().unwrap();
    let s_data = tmp.path().join("s");
    let (archive, built) = write_archive(
        tmp.path(),
        &[ImageSpec::new("docker.io/library/measured:1", &[300_000, 40_000]).seed(77)],
        ArchiveFormat::Oci,
        Compression::None,
    )
    .unwrap();
    run_ok(&s_data, &["image", "import", archive.to_str().unwrap()]);
    let p2p = [
        "--secure",
        "--embedded-registry",
        "--mirror",
        "*",
        "--p2p-port",
        "0",
        "--store",
        "layout",
    ];
    let server = Server::start(&s_data, &p2p);
    let token = run_ok(&s_data, &["token"]).trim().to_owned();
    let url = server.url();
    let mut agent_flags = vec!["--server", &url, "--token", &token];
    agent_flags.extend(p2p);
    let a_data = tmp.path().join("a");
    let agent = Server::start_as("agent", &a_data, &agent_flags);
    let server_id = server.status().await["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let image = &built[0];
    eventually("the server's keys to be found from the agent", || async {
        let key = image.digest.to_string();
        let response = agent
            .client()
            .get(format!("{}/debug/p2p/providers?key={key}", agent.url()))
            .send()
            .await
            .ok()?;
        let body = response.text().await.ok()?;
        body.contains(&server_id).then_some(())
    })
    .await;

    let addr = agent.addr.to_string();
    let measure = move |image: &str| {
        kagami()
            .args(["measure", "--data-dir"])
            .arg(&a_data)
            .args(["--address", &addr, image])
            .output()
            .expect("kagami measure runs")
    };
    let out = tokio::task::spawn_blocking({
        let measure = measure.clone();
        move || measure("docker.io/library/measured:1")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every blob, with its size and the peer as its source.
    for (digest, size) in &image.blobs {
        let line = stdout
            .lines()
            .find(|l| l.contains(&digest.to_string()) && !l.starts_with("sha256:"))
            .unwrap_or_else(|| panic!("{digest} in\n{stdout}"));
        assert!(line.contains(&size.to_string()), "{line}");
        assert!(line.trim_end().ends_with("peer"), "{line}");
    }
    // The tag's key and the manifest's, each with the server as provider.
    let tag_key = "docker.io/library/measured:1";
    for key in [tag_key.to_owned(), image.digest.to_string()] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&key) && l.contains(" ms "))
            .unwrap_or_else(|| panic!("a lookup of {key} in\n{stdout}"));
        assert!(line.contains(&server_id), "{line}");
    }

    let out = tokio::task::spawn_blocking(move || measure("docker.io/library/nowhere:1"))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot pull docker.io/library/nowhere:1") && stderr.contains("404"),
        "{stderr}"
    );
}
