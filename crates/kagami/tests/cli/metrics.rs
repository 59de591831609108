//! `GET /metrics` of `kagami server` children, parsed as the OpenMetrics
//! text format: build info on every node; with P2P on, the mirror's bytes
//! per peer and the routing table after a pull through a non-holder.

use std::collections::BTreeMap;
use std::path::Path;

use kagami_p2p::Psk;
use kagami_store::testing::ImageSpec;

use crate::cluster::{archive, keys, largest_blob};
use crate::harness::{Server, eventually, p2p_flags, run_ok};
use crate::pull::blob;

/// One scrape: the declared families and the samples.
#[derive(Debug)]
pub struct Scrape {
    /// Family name → type, from the `# TYPE` lines.
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Scrape {
    /// The value of the sample with exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == labels)
            .map(|s| s.value)
    }

    /// Names of the families and samples that start with `prefix`.
    fn named(&self, prefix: &str) -> Vec<&str> {
        let families = self.types.keys().map(String::as_str);
        let samples = self.samples.iter().map(|s| s.name.as_str());
        families
            .chain(samples)
            .filter(|n| n.starts_with(prefix))
            .collect()
    }
}

/// Parses the text format, failing the test on anything malformed: every
/// sample must belong to a family declared before it, and `# EOF` ends it.
fn parse(text: &str) -> Scrape {
    let mut scrape = Scrape {
        types: BTreeMap::new(),
        samples: Vec::new(),
    };
    let mut lines = text.lines();
    assert_eq!(lines.next_back(), Some("# EOF"), "{text}");
    for line in lines {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            scrape.types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment: {line}");
        let sample = parse_sample(line);
        let typed = |suffix: &str, kind: &str| {
            sample
                .name
                .strip_suffix(suffix)
                .filter(|family| scrape.types.get(*family).map(String::as_str) == Some(kind))
        };
        let family = typed("_total", "counter")
            .or_else(|| typed("_bucket", "histogram"))
            .or_else(|| typed("_sum", "histogram"))
            .or_else(|| typed("_count", "histogram"))
            .unwrap_or(sample.name.as_str());
        assert!(
            scrape.types.contains_key(family),
            "sample of an undeclared family: {line}"
        );
        scrape.samples.push(sample);
    }
    scrape
}

/// `name{key="value",…} value`, label values with `\\`, `\"`, `\n` escapes.
fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            let after = rest.strip_prefix(',').unwrap_or(rest);
            if let Some(after) = after.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = after.split_once("=\"").expect("label key=\"value\"");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().expect("closing quote of a label value") {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().expect("escaped character").1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key.to_owned(), value);
            rest = &after[end + 1..];
        }
    }
    let value = rest
        .strip_prefix(' ')
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a sample value in {line:?}"));
    Sample {
        name,
        labels,
        value,
    }
}

/// `GET /metrics` of `server`'s metrics address, checked for its content
/// type and parsed.
pub async fn scrape(server: &Server) -> Scrape {
    parse(&scrape_text(server).await)
}

/// `GET /metrics` of `server`'s metrics address (plain HTTP, no
/// certificate), checked for its content type.
async fn scrape_text(server: &Server) -> String {
    let response = crate::pull::client()
        .get(format!("{}/metrics", server.metrics_url()))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .expect("metrics request reaches the server");
    assert_eq!(response.status(), 200, "GET /metrics");
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    response.text().await.expect("metrics body")
}

/// A `kagami server` with P2P on, joining through `bootstrap`.
fn node(data: &Path, psk: &Path, bootstrap: &[&str]) -> Server {
    let flags = p2p_flags(psk, bootstrap);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start(data, &flags)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_p2p_serves_build_info_and_no_p2p_families() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    let scrape = scrape(&server).await;
    assert_eq!(scrape.types["kagami_build_info"], "gauge");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        scrape.value("kagami_build_info", &[("version", version)]),
        Some(1.0),
        "{scrape:?}"
    );
    assert_eq!(scrape.named("kagami_mirror_"), Vec::<&str>::new());
    assert_eq!(scrape.named("kagami_p2p_"), Vec::<&str>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_through_a_non_holder_shows_in_its_bytes_per_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = ImageSpec::new("docker.io/kagami/metered:1", &[300_000]).seed(81);
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

    let holder = node(&holder_dir, &psk, &[]);
    let status = holder.status().await;
    let holder_addr = status["listen"][0].as_str().unwrap().to_owned();
    let holder_id = status["peer_id"].as_str().unwrap().to_owned();
    let puller = node(&puller_dir, &psk, &[&holder_addr]);
    eventually("the puller to know the holder", || async {
        let peers = scrape(&puller).await.value("kagami_p2p_routing_peers", &[]);
        (peers >= Some(1.0)).then_some(())
    })
    .await;
    eventually("the holder to advertise the image", || async {
        let scrape = scrape(&holder).await;
        let digests = scrape.value("kagami_p2p_advertised_keys", &[("kind", "digest")]);
        let tags = scrape.value("kagami_p2p_advertised_keys", &[("kind", "tag")]);
        (digests.zip(tags).map(|(d, t)| d + t) == Some(keys(&image) as f64) && tags == Some(1.0))
            .then_some(())
    })
    .await;
    let before = scrape(&puller).await;
    assert_eq!(before.types["kagami_mirror_peer_bytes"], "counter");
    assert_eq!(
        before.named("kagami_mirror_peer_bytes_total"),
        Vec::<&str>::new()
    );

    // Only the blob, by digest: a manifest pulled through the puller would
    // count towards the holder's bytes too.
    let received = eventually("the blob to be served through the puller", || async {
        let received = blob(puller.addr, &image.reference, &layer).await;
        (received.status != 404).then_some(received)
    })
    .await;
    assert!(received.is(&layer, size), "{received:?}");

    let after = scrape(&puller).await;
    // Exactly the blob: the relay counts each byte once as it passes it
    // on, a resume continues at the offset reached, and with one holder
    // there is nobody to hedge with.
    let relayed = after.value("kagami_mirror_peer_bytes_total", &[("peer", &holder_id)]);
    assert_eq!(relayed, Some(size as f64), "{after:?}");
    assert!(after.value("kagami_p2p_routing_peers", &[]) >= Some(1.0));
    assert!(after.value("kagami_mirror_lookups_total", &[]) >= Some(1.0));
    assert_eq!(
        after.value("kagami_mirror_verify_failures_total", &[]),
        Some(0.0)
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        after.value("kagami_build_info", &[("version", version)]),
        Some(1.0)
    );
    // Served by a peer, and counted as such; the earlier 404s as misses.
    let blob_from = |outcome| {
        after.value(
            "kagami_requests_total",
            &[
                ("registry", "docker.io"),
                ("kind", "blob"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(blob_from("peer"), Some(1.0), "{after:?}");
    assert_eq!(blob_from("local"), None, "{after:?}");
    assert!(after.value("kagami_served_bytes_total", &[]) >= Some(size as f64));
    assert!(after.value("kagami_last_mirror_timestamp_seconds", &[]) > Some(0.0));
    assert!(after.value("kagami_resolve_duration_seconds_count", &[]) >= Some(1.0));
    assert!(
        after.value(
            "kagami_http_request_duration_seconds_count",
            &[("route", "blobs"), ("status_class", "2xx")]
        ) >= Some(1.0),
        "{after:?}"
    );
    eventually("the transfer to end", || async {
        let in_flight = scrape(&puller)
            .await
            .value("kagami_transfers_in_flight", &[]);
        (in_flight == Some(0.0)).then_some(())
    })
    .await;
    // The holder served it from its own store.
    let holder_scrape = scrape(&holder).await;
    assert!(
        holder_scrape.value(
            "kagami_requests_total",
            &[
                ("registry", "docker.io"),
                ("kind", "blob"),
                ("outcome", "local")
            ]
        ) >= Some(1.0),
        "{holder_scrape:?}"
    );
}
