//! The metrics address of `kagami server` children: plain HTTP without a
//! certificate, `/metrics` and the status page and nothing else; the page
//! opened in headless Chromium (Debian's `chromium`) after a pull through
//! a peer; the metrics checked by `promtool` and scraped by a real
//! Prometheus (Debian's `prometheus`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use kagami_p2p::Psk;
use kagami_store::testing::ImageSpec;

use crate::cluster::{archive, largest_blob};
use crate::harness::{Server, eventually, p2p_flags, require, run_ok};
use crate::pull::blob;

/// A holder of one image and a puller that fetched its biggest blob
/// through P2P: the puller's page then has a peer, a pull and a hit.
struct Pulled {
    _tmp: tempfile::TempDir,
    holder: Server,
    puller: Server,
    holder_id: String,
    reference: String,
}

async fn pulled_through_a_peer(seed: u64) -> Pulled {
    let tmp = tempfile::tempdir().unwrap();
    let spec = ImageSpec::new("docker.io/kagami/paged:1", &[200_000]).seed(seed);
    let (archive, image) = archive(tmp.path(), spec).await;
    let (layer, size) = largest_blob(&image);
    let psk = tmp.path().join("psk");
    Psk::generate().write(&psk).unwrap();
    let (holder_dir, puller_dir) = (tmp.path().join("holder"), tmp.path().join("puller"));
    let dir = holder_dir.clone();
    tokio::task::spawn_blocking(move || {
        run_ok(&dir, &["image", "import", archive.to_str().unwrap()])
    })
    .await
    .unwrap();
    let node = |dir: &Path, bootstrap: &[&str]| {
        let flags = p2p_flags(&psk, bootstrap);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Server::start(dir, &flags)
    };
    let holder = node(&holder_dir, &[]);
    let status = holder.status().await;
    let holder_addr = status["listen"][0].as_str().unwrap().to_owned();
    let holder_id = status["peer_id"].as_str().unwrap().to_owned();
    let puller = node(&puller_dir, &[&holder_addr]);
    let received = eventually("the blob to be served through the puller", || async {
        let received = blob(puller.addr, &image.reference, &layer).await;
        (received.status == 200).then_some(received)
    })
    .await;
    assert!(received.is(&layer, size), "{received:?}");
    Pulled {
        _tmp: tmp,
        holder,
        puller,
        holder_id,
        reference: format!("docker.io/kagami/paged@{layer}"),
    }
}

async fn get(url: &str) -> (u16, String) {
    let response = crate::pull::client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_address_needs_no_certificate_and_serves_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &["--secure"]);
    let base = server.metrics_url();
    let (status, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("kagami_build_info{"), "{metrics}");
    let (status, page) = get(&format!("{base}/")).await;
    assert_eq!(status, 200);
    assert!(page.contains("<h2>Node</h2>"), "{page}");
    assert!(page.contains("client certificates required"), "{page}");
    for path in ["/v2/", "/healthz", "/debug/p2p", "/v1-kagami/p2p"] {
        let (status, _) = get(&format!("{base}{path}")).await;
        assert_eq!(status, 404, "{path} on the metrics address");
    }
    // The registry port still wants a certificate.
    crate::pull::install_tls_provider();
    let anonymous = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let refused = anonymous
        .get(format!("https://{}/metrics", server.addr))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "the registry port served /metrics without a certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_metrics_address_serves_none() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &["--metrics-address", ""]);
    // The node is up (the harness saw the registry listening); its log
    // names no metrics listener.
    let (status, _) = get(&format!("{}/v2/", server.url())).await;
    assert_eq!(status, 200);
    assert!(
        !server.log().contains("metrics and status page listening"),
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_peers_pulls_and_hits_in_a_real_browser() {
    require("chromium");
    let pulled = pulled_through_a_peer(91).await;
    let url = format!("{}/", pulled.puller.metrics_url());
    let (status, page) = get(&url).await;
    assert_eq!(status, 200);
    // Nothing from elsewhere: the page works on an air-gapped node.
    for outside in ["<script", "src=", "href=\"http", "@import", "url("] {
        assert!(!page.contains(outside), "{outside} in\n{page}");
    }

    let shots = tempfile::tempdir().unwrap();
    let shot = std::env::var_os("KAGAMI_STATUS_SCREENSHOT")
        .map_or_else(|| shots.path().join("status.png"), PathBuf::from);
    let dom = tokio::task::spawn_blocking({
        let (url, shot, profile) = (url.clone(), shot.clone(), shots.path().join("profile"));
        move || headless_chromium(&url, &shot, &profile)
    })
    .await
    .unwrap();
    // What the browser rendered, not only what the server sent.
    for section in [
        "id=\"node\"",
        "id=\"peers\"",
        "id=\"hits\"",
        "id=\"pulls\"",
        "id=\"images\"",
        "id=\"errors\"",
    ] {
        assert!(dom.contains(section), "{section} in\n{dom}");
    }
    assert!(
        dom.contains(&pulled.holder_id),
        "the holder among the peers:\n{dom}"
    );
    assert!(dom.contains(&pulled.reference), "the pull:\n{dom}");
    assert!(
        dom.contains("<td>peer</td>"),
        "where the bytes came from:\n{dom}"
    );
    assert!(dom.contains("id=\"hit-ratio\""), "{dom}");
    let png = std::fs::read(&shot).expect("chromium saved the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 10_000,
        "a blank screenshot? {} bytes",
        png.len()
    );
    drop(pulled.holder);
}

/// The DOM Chromium renders at `url`, after saving a screenshot to `shot`.
fn headless_chromium(url: &str, shot: &Path, profile: &Path) -> String {
    let base = |command: &mut Command| {
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .stdin(Stdio::null());
    };
    let mut screenshot = Command::new("chromium");
    base(&mut screenshot);
    let out = screenshot
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1200,1000")
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium --screenshot: {out:?}");
    let mut dump = Command::new("chromium");
    base(&mut dump);
    let out = dump
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium --dump-dom: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics_after_a_pull() {
    require("promtool");
    let pulled = pulled_through_a_peer(92).await;
    for node in [&pulled.puller, &pulled.holder] {
        // As curl would ask: the classic text format that promtool reads.
        let (status, text) = get(&format!("{}/metrics", node.metrics_url())).await;
        assert_eq!(status, 200);
        let mut check = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool runs");
        use std::io::Write as _;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = check.wait_with_output().unwrap();
        // promtool prints lint findings and exits non-zero on any of them.
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A Prometheus server, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus(dir: &Path, target: &str) -> Prometheus {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: kagami\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    // Prometheus cannot report a port it picked: take a free one.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_node_and_answers_queries_about_it() {
    require("prometheus");
    let pulled = pulled_through_a_peer(93).await;
    let tmp = tempfile::tempdir().unwrap();
    let target = pulled
        .puller
        .metrics_url()
        .trim_start_matches("http://")
        .to_owned();
    let server = prometheus(tmp.path(), &target);
    let query = format!(
        "{}/api/v1/query?query=kagami_requests_total{{kind=%22blob%22,outcome=%22peer%22}}",
        server.url
    );
    let answer = eventually("Prometheus to have scraped the node", || async {
        let response = crate::pull::client().get(&query).send().await.ok()?;
        let body: serde_json::Value = serde_json::from_str(&response.text().await.ok()?).ok()?;
        let result = body["data"]["result"].as_array()?.first()?.clone();
        Some(result)
    })
    .await;
    assert_eq!(answer["metric"]["registry"], "docker.io", "{answer}");
    assert_eq!(answer["metric"]["instance"], target.as_str(), "{answer}");
    assert_eq!(answer["value"][1], "1", "one blob from a peer: {answer}");
}
