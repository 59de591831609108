//! Cluster trust end to end with the binary: a server makes its material
//! once; the registry port lets in only clients with a certificate from
//! the cluster CA (curl and skopeo show both sides); agents and a second
//! server join with the token, and a bad token, a CA that does not match
//! the pin or an unreachable server leave nothing behind; agents find
//! their peers through the server; certificates renew themselves.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kagami_store::testing::{ArchiveFormat, Compression, ImageSpec, write_archive};
use sha2::Digest as _;

use crate::harness::{Server, eventually, kagami, member_identity, require, run, run_ok};

/// `kagami token` on a server's data directory.
fn token(data_dir: &Path) -> String {
    run_ok(data_dir, &["token"]).trim().to_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A secure server on loopback.
fn server(data_dir: &Path, extra: &[&str]) -> Server {
    let mut flags = vec!["--secure"];
    flags.extend_from_slice(extra);
    Server::start(data_dir, &flags)
}

/// An agent joining through `server`.
fn agent(data_dir: &Path, server: &Server, token: Option<&str>, extra: &[&str]) -> Server {
    let url = server.url();
    let mut flags = vec!["--secure", "--server", &url];
    if let Some(token) = token {
        flags.extend(["--token", token]);
    }
    flags.extend_from_slice(extra);
    Server::start_as("agent", data_dir, &flags)
}

fn curl(args: &[&str]) -> std::process::Output {
    require("curl");
    Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs")
}

#[test]
fn a_server_makes_its_material_once_and_prints_a_token_pinning_its_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("s");
    let mut first = server(&data, &[]);
    let cluster = data.join("cluster");
    for file in ["ca.crt", "ca.key", "node.crt", "node.key", "token"] {
        assert_eq!(mode(&cluster.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&data.join("p2p/psk")), 0o600);
    assert_eq!(mode(&cluster), 0o700);
    assert_eq!(mode(&data.join("p2p")), 0o700);

    let printed = token(&data);
    let ca = std::fs::read_to_string(cluster.join("ca.crt")).unwrap();
    let der = rustls::pki_types::CertificateDer::from_pem_slice(ca.as_bytes()).unwrap();
    let pin: String = sha2::Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        printed.starts_with(&format!("K10{pin}::node:")),
        "{printed}"
    );

    let psk = std::fs::read(data.join("p2p/psk")).unwrap();
    assert!(first.terminate(Duration::from_secs(15)));
    let _second = server(&data, &[]);
    assert_eq!(token(&data), printed);
    assert_eq!(std::fs::read_to_string(cluster.join("ca.crt")).unwrap(), ca);
    assert_eq!(std::fs::read(data.join("p2p/psk")).unwrap(), psk);
}

use rustls::pki_types::pem::PemObject as _;

#[tokio::test]
async fn the_registry_port_lets_in_only_cluster_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("s");
    let node = server(&data, &[]);
    let cluster = data.join("cluster");
    let ca = cluster.join("ca.crt");
    let url = format!("{}/v2/", node.url());

    // A member's certificate: in.
    let ok = curl(&[
        "--cacert",
        ca.to_str().unwrap(),
        "--cert",
        cluster.join("node.crt").to_str().unwrap(),
        "--key",
        cluster.join("node.key").to_str().unwrap(),
        "--write-out",
        "%{http_code}",
        "--output",
        "/dev/null",
        &url,
    ]);
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "200", "{ok:?}");
    let response = node.client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);

    // No certificate: refused at the handshake, no HTTP status at all.
    let none = curl(&["--cacert", ca.to_str().unwrap(), &url]);
    assert!(!none.status.success(), "{none:?}");
    assert!(none.stdout.is_empty(), "{none:?}");

    // A certificate from another cluster's CA: refused as well.
    let other = tmp.path().join("other");
    let stranger = server(&other, &[]);
    let other_cluster = other.join("cluster");
    let foreign = curl(&[
        "--cacert",
        ca.to_str().unwrap(),
        "--cert",
        other_cluster.join("node.crt").to_str().unwrap(),
        "--key",
        other_cluster.join("node.key").to_str().unwrap(),
        &url,
    ]);
    assert!(!foreign.status.success(), "{foreign:?}");
    drop(stranger);

    // Plain HTTP gets no registry either.
    let plain = curl(&[&format!("http://{}/v2/", node.addr)]);
    assert!(!plain.status.success(), "{plain:?}");
}

#[test]
fn skopeo_pulls_with_a_cluster_certificate_and_not_without() {
    require("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("s");
    let (archive, _) = write_archive(
        tmp.path(),
        &[ImageSpec::new("docker.io/library/secure:1", &[30_000]).seed(71)],
        ArchiveFormat::Oci,
        Compression::Gzip,
    )
    .unwrap();
    run_ok(&data, &["image", "import", archive.to_str().unwrap()]);
    let node = server(&data, &["--store", "layout"]);
    let cluster = data.join("cluster");

    // skopeo's --cert-dir: *.crt are CAs, *.cert/*.key a client pair.
    let with_cert = tmp.path().join("certs");
    std::fs::create_dir(&with_cert).unwrap();
    std::fs::copy(cluster.join("ca.crt"), with_cert.join("ca.crt")).unwrap();
    std::fs::copy(cluster.join("node.crt"), with_cert.join("client.cert")).unwrap();
    std::fs::copy(cluster.join("node.key"), with_cert.join("client.key")).unwrap();
    let ca_only = tmp.path().join("ca-only");
    std::fs::create_dir(&ca_only).unwrap();
    std::fs::copy(cluster.join("ca.crt"), ca_only.join("ca.crt")).unwrap();

    let image = format!("docker://{}/library/secure:1", node.host());
    let inspect = |dir: &Path| {
        Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                "--cert-dir",
                dir.to_str().unwrap(),
                &image,
            ])
            .output()
            .unwrap()
    };
    let ok = inspect(&with_cert);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = inspect(&ca_only);
    assert!(!refused.status.success());
    let copy = Command::new("skopeo")
        .args([
            "copy",
            "--src-cert-dir",
            with_cert.to_str().unwrap(),
            &image,
            &format!("oci:{}:x", tmp.path().join("out").display()),
        ])
        .output()
        .unwrap();
    assert!(
        copy.status.success(),
        "{}",
        String::from_utf8_lossy(&copy.stderr)
    );
}

#[tokio::test]
async fn an_agent_joins_with_the_token_and_does_not_join_again() {
    let tmp = tempfile::tempdir().unwrap();
    let s_data = tmp.path().join("s");
    let s = server(&s_data, &[]);
    let t = token(&s_data);
    let a_data = tmp.path().join("a");
    let mut a = agent(&a_data, &s, Some(&t), &[]);
    assert!(a.log().contains("joined the cluster"), "{}", a.log());
    let cluster = a_data.join("cluster");
    assert_eq!(
        std::fs::read(cluster.join("ca.crt")).unwrap(),
        std::fs::read(s_data.join("cluster/ca.crt")).unwrap()
    );
    assert_eq!(
        std::fs::read(a_data.join("p2p/psk")).unwrap(),
        std::fs::read(s_data.join("p2p/psk")).unwrap()
    );
    assert!(!cluster.join("ca.key").exists(), "an agent holds no CA key");
    assert!(!cluster.join("token").exists());
    assert_eq!(mode(&cluster.join("node.key")), 0o600);
    // The agent's certificate lets it into the server as a member.
    let response = a
        .client()
        .get(format!("{}/v2/", s.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let cert = std::fs::read(cluster.join("node.crt")).unwrap();
    assert!(a.terminate(Duration::from_secs(15)));
    let again = agent(&a_data, &s, None, &[]);
    assert!(
        !again.log().contains("joined the cluster"),
        "{}",
        again.log()
    );
    assert_eq!(std::fs::read(cluster.join("node.crt")).unwrap(), cert);
}

#[tokio::test]
async fn a_second_server_joins_and_admits_agents_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let s1_data = tmp.path().join("s1");
    let s1 = server(&s1_data, &[]);
    let t = token(&s1_data);
    let url = s1.url();
    // The agent token does not make a server: it would hand out the CA key.
    let refused = tmp.path().join("s-agent-token");
    let output = kagami()
        .args([
            "server",
            "--https-listen-port",
            "0",
            "--bind-address",
            "127.0.0.1",
        ])
        .args([
            "--store",
            "layout",
            "--server",
            &url,
            "--token",
            &t,
            "--data-dir",
        ])
        .arg(&refused)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("server token"), "{error}");
    assert!(!refused.join("cluster").exists());

    let server_token = run_ok(&s1_data, &["token", "--server"]).trim().to_owned();
    assert!(server_token.contains("::server:"), "{server_token}");
    let s2_data = tmp.path().join("s2");
    let s2 = server(&s2_data, &["--server", &url, "--token", &server_token]);
    assert!(s2_data.join("cluster/ca.key").exists());
    assert_eq!(token(&s2_data), t);
    assert_eq!(
        run_ok(&s2_data, &["token", "--server"]).trim(),
        server_token,
        "every server derives the same server token"
    );
    let a = agent(&tmp.path().join("a"), &s2, Some(&t), &[]);
    let response = a
        .client()
        .get(format!("{}/v2/", s1.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Runs `kagami agent` expecting it to fail; returns its stderr.
fn failed_join(data_dir: &Path, server: &str, token: &str) -> String {
    let output = kagami()
        .args([
            "agent",
            "--https-listen-port",
            "0",
            "--bind-address",
            "127.0.0.1",
            "--store",
            "layout",
            "--server",
            server,
            "--token",
            token,
            "--data-dir",
        ])
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(!output.status.success(), "{output:?}");
    assert!(
        !data_dir.exists(),
        "a failed join left {}",
        data_dir.display()
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_bad_token_a_foreign_ca_or_no_server_fail_clearly_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let s_data = tmp.path().join("s");
    let s = server(&s_data, &[]);
    let t = token(&s_data);
    let (pin, _) = t.split_once("::").unwrap();

    let wrong_secret = format!("{pin}::node:not-the-secret");
    let error = failed_join(&tmp.path().join("a1"), &s.url(), &wrong_secret);
    assert!(error.contains("invalid join token"), "{error}");

    let other_pin = format!("K10{}::node:x", "0".repeat(64));
    let error = failed_join(&tmp.path().join("a2"), &s.url(), &other_pin);
    assert!(error.contains("does not match the join token"), "{error}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("https://{}", closed.local_addr().unwrap());
    drop(closed);
    let error = failed_join(&tmp.path().join("a3"), &nowhere, &t);
    assert!(error.contains("cannot join through"), "{error}");

    let error = failed_join(&tmp.path().join("a4"), &s.url(), "garbage");
    assert!(error.contains("--token"), "{error}");
    let output = run(&tmp.path().join("a5"), &["token"]);
    assert!(!output.status.success());
}

#[tokio::test]
async fn an_agent_finds_peers_through_the_server_and_pulls_over_mtls() {
    let tmp = tempfile::tempdir().unwrap();
    let s_data = tmp.path().join("s");
    let (archive, built) = write_archive(
        tmp.path(),
        &[ImageSpec::new("docker.io/library/shared:1", &[200_000, 30_000]).seed(72)],
        ArchiveFormat::Oci,
        Compression::None,
    )
    .unwrap();
    run_ok(&s_data, &["image", "import", archive.to_str().unwrap()]);
    let p2p = [
        "--embedded-registry",
        "--mirror",
        "*",
        "--p2p-port",
        "0",
        "--store",
        "layout",
    ];
    let s = server(&s_data, &p2p);
    let t = token(&s_data);
    // No --bootstrap-peer: the agent asks the server.
    let a = agent(&tmp.path().join("a"), &s, Some(&t), &p2p);
    eventually("the agent to find the server as a peer", || async {
        (a.status().await["routing_peers"].as_u64() >= Some(1)).then_some(())
    })
    .await;
    let image = &built[0];
    let (layer, size) = image.blobs.iter().max_by_key(|(_, s)| **s).unwrap();
    let url = format!("{}/v2/library/shared/blobs/{layer}", a.url());
    let body = eventually("the layer through the agent", || async {
        let response = a.client().get(&url).send().await.ok()?;
        (response.status() == 200).then_some(())?;
        response.bytes().await.ok()
    })
    .await;
    assert_eq!(body.len() as u64, *size);
    assert_eq!(
        kagami_core::Hasher::digest(layer.algorithm(), &body),
        *layer
    );
    let s_id = s.status().await["peer_id"].as_str().unwrap().to_owned();
    let relayed = a.status().await["bytes_relayed"][&s_id].as_u64();
    assert_eq!(relayed, Some(*size));
}

#[tokio::test]
async fn short_lived_certificates_are_renewed_before_they_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let life = [
        "--node-cert-validity",
        "40s",
        "--renew-before",
        "35s",
        "--renew-check-interval",
        "1s",
    ];
    let s_data = tmp.path().join("s");
    let s = server(&s_data, &life);
    let t = token(&s_data);
    let a_data = tmp.path().join("a");
    let a = agent(&a_data, &s, Some(&t), &life);
    let issued = |data: &Path| std::fs::read_to_string(data.join("cluster/node.crt")).unwrap();
    let (s_first, a_first) = (issued(&s_data), issued(&a_data));
    // Issued for 40 s and due 35 s before the end: renewed about 5 s later.
    eventually("both nodes to renew", || async {
        (issued(&s_data) != s_first && issued(&a_data) != a_first).then_some(())
    })
    .await;
    assert!(a.log().contains("node certificate renewed"), "{}", a.log());
    assert!(
        s.log().contains("renewed a node certificate"),
        "{}",
        s.log()
    );
    // The renewed certificates are in use on both sides.
    let response = a
        .client()
        .get(format!("{}/v2/", s.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let identity = member_identity(&a_data);
    assert_ne!(identity.cert_pem, a_first);
}

#[tokio::test]
async fn a_node_with_the_psk_but_no_certificate_is_never_served_from_and_never_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let image = |name: &str, seed: u64| {
        let dir = tmp.path().join(format!("archive-{seed}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (archive, mut built) = write_archive(
            &dir,
            &[ImageSpec::new(name, &[50_000]).seed(seed)],
            ArchiveFormat::Oci,
            Compression::None,
        )
        .unwrap();
        (archive, built.remove(0))
    };
    let (members_archive, members) = image("docker.io/library/members:1", 81);
    let (rogues_archive, rogues) = image("docker.io/library/rogues:1", 82);

    let p2p = [
        "--embedded-registry",
        "--mirror",
        "*",
        "--p2p-port",
        "0",
        "--store",
        "layout",
    ];
    let s_data = tmp.path().join("s");
    run_ok(
        &s_data,
        &["image", "import", members_archive.to_str().unwrap()],
    );
    let s = server(&s_data, &p2p);
    let a = agent(&tmp.path().join("a"), &s, Some(&token(&s_data)), &p2p);

    // The rogue has the cluster's PSK (so it joins the DHT) but no
    // certificate: it can only serve plain HTTP.
    let r_data = tmp.path().join("r");
    run_ok(
        &r_data,
        &["image", "import", rogues_archive.to_str().unwrap()],
    );
    let s_p2p = s.status().await["listen"][0].as_str().unwrap().to_owned();
    let mut flags = crate::harness::p2p_flags(&s_data.join("p2p/psk"), &[&s_p2p]);
    flags.extend(["--store", "layout"].map(String::from));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let rogue = Server::start(&r_data, &flags);
    assert!(rogue.log().contains("INSECURE"), "{}", rogue.log());

    // Everyone can find the rogue's image in the DHT…
    eventually("the rogue to advertise its image", || async {
        let status = rogue.status().await;
        (status["advertised_keys"].as_u64() >= Some(3)
            && a.status().await["routing_peers"].as_u64() >= Some(2))
        .then_some(())
    })
    .await;
    // …but a member never takes it from the rogue: 404, a TLS failure.
    let (layer, _) = rogues.blobs.iter().next_back().unwrap();
    let url = format!("{}/v2/library/rogues/blobs/{layer}", a.url());
    let response = a.client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let metrics = a.text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("kagami_mirror_tls_failures_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );

    // And the rogue gets nothing from the members.
    let (layer, _) = members.blobs.iter().next_back().unwrap();
    let url = format!("{}/v2/library/members/blobs/{layer}", rogue.url());
    let response = rogue.client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let status = rogue.status().await;
    // It found the holder (no failed lookup) and was turned away.
    assert!(status["lookups"].as_u64() >= Some(1), "{status}");
    assert_eq!(status["lookup_failures"].as_u64(), Some(0), "{status}");
    assert_eq!(status["bytes_relayed"], serde_json::json!({}), "{status}");
}

#[tokio::test]
async fn probes_answer_in_plain_http_on_their_own_address_and_nothing_else_does() {
    let tmp = tempfile::tempdir().unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let probe = free.local_addr().unwrap().to_string();
    drop(free);
    let node = server(&tmp.path().join("s"), &["--healthz-address", &probe]);
    let plain = crate::pull::client();
    let get = |path: &str| plain.get(format!("http://{probe}{path}")).send();
    let health = get("/healthz").await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    assert_eq!(get("/v2/").await.unwrap().status(), 404);
    // The API port itself still wants a certificate.
    assert!(
        plain
            .get(format!("{}/healthz", node.url()))
            .send()
            .await
            .is_err()
    );
}

#[test]
fn a_server_whose_identity_changed_gets_a_certificate_for_its_new_peer_id() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("s");
    let bound = |data: &Path| {
        let pem = std::fs::read_to_string(data.join("cluster/node.crt")).unwrap();
        kagami_cluster::NodeCert::from_pem(&pem)
            .unwrap()
            .peer_id()
            .map(str::to_owned)
    };
    let mut first = server(&data, &[]);
    let before = bound(&data);
    assert!(before.is_some());
    assert!(first.terminate(Duration::from_secs(15)));
    std::fs::remove_file(data.join("p2p/identity.key")).unwrap();
    let _second = server(&data, &[]);
    let after = bound(&data);
    assert!(after.is_some());
    assert_ne!(after, before);
}
