//! The join endpoint against forged requests, the wrong token and floods:
//! what a server certifies is what the node proves, an agent token never
//! hands out the CA key, and attempts are rate-limited per source with
//! quiet logs.

use std::path::Path;

use kagami_cluster::{IdentityProof, NodeKey, NodeNames, Token};

use crate::harness::{Server, run_ok};
use crate::pull::install_tls_provider;

fn server(data: &Path) -> Server {
    Server::start(data, &["--secure"])
}

fn agent_token(data: &Path) -> Token {
    run_ok(data, &["token"]).trim().parse().unwrap()
}

/// A client of the join channel that trusts the CA `token` pins.
fn join_client(token: &Token) -> reqwest::Client {
    install_tls_provider();
    let config = kagami_cluster::tls::join_client_config(token.ca_fingerprint()).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .no_proxy()
        .build()
        .unwrap()
}

fn identity(seed: u8) -> libp2p_identity::Keypair {
    libp2p_identity::Keypair::ed25519_from_bytes([seed; 32]).unwrap()
}

fn peer_of(identity: &libp2p_identity::Keypair) -> String {
    identity.public().to_peer_id().to_string()
}

/// Sends a join request for `names`, proven by `signer` (or not at all).
async fn join(
    server: &Server,
    secret: &str,
    names: &NodeNames,
    signer: Option<&libp2p_identity::Keypair>,
    as_server: bool,
    token: &Token,
) -> (u16, serde_json::Value) {
    let csr = NodeKey::generate().unwrap().csr(names).unwrap();
    let proof = signer.map(|key| IdentityProof::sign(key, &csr).unwrap());
    let body = serde_json::json!({ "csr": csr, "server": as_server, "proof": proof });
    let response = join_client(token)
        .post(format!("{}/v1-kagami/join", server.url()))
        .bearer_auth(secret)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

fn names(dns: &[&str], peer_id: Option<String>) -> NodeNames {
    NodeNames {
        dns: dns.iter().map(|name| (*name).to_owned()).collect(),
        ips: vec!["127.0.0.1".parse().unwrap()],
        peer_id,
    }
}

/// Regression: join signed `*.example.com`, a 5,000-character name, another
/// node's peer ID, and two peer IDs in one certificate.
#[tokio::test]
async fn join_certifies_only_what_the_node_proves() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("s");
    let server = server(&data);
    let token = agent_token(&data);
    let secret = token.secret().to_owned();
    let me = identity(7);
    let victim = peer_of(&identity(8));

    let refused = [
        names(&["*.example.com"], Some(peer_of(&me))),
        names(&[&"a".repeat(5000)], Some(peer_of(&me))),
        names(&["node"], Some(victim.clone())),
    ];
    for asked in &refused {
        let (status, body) = join(&server, &secret, asked, Some(&me), false, &token).await;
        assert_eq!(status, 400, "{asked:?} → {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("refusing to certify"),
            "{body}"
        );
    }
    // Without a proof, nothing.
    let (status, body) = join(
        &server,
        &secret,
        &names(&["node"], None),
        None,
        false,
        &token,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // Signed by the victim's key? Only the victim has it; signed by mine,
    // the certificate binds mine.
    let (status, body) = join(
        &server,
        &secret,
        &names(&["node"], None),
        Some(&me),
        false,
        &token,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let cert = kagami_cluster::NodeCert::from_pem(body["node_cert"].as_str().unwrap()).unwrap();
    assert_eq!(cert.peer_id(), Some(peer_of(&me).as_str()));
    assert!(body["ca_key"].is_null(), "an agent got the CA key");
}

/// Regression: the one token also handed out the CA key.
#[tokio::test]
async fn an_agent_token_does_not_hand_out_the_ca_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("s");
    let server = server(&data);
    let token = agent_token(&data);
    let me = identity(9);
    let asked = names(&["node"], None);
    let (status, body) = join(&server, token.secret(), &asked, Some(&me), true, &token).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("server token"),
        "{body}"
    );
    assert!(body["ca_key"].is_null());

    let server_token: Token = run_ok(&data, &["token", "--server"])
        .trim()
        .parse()
        .unwrap();
    assert_ne!(server_token.secret(), token.secret());
    let (status, body) = join(
        &server,
        server_token.secret(),
        &asked,
        Some(&me),
        true,
        &server_token,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["ca_key"].as_str().is_some());
    // The joining server gets the agent token, to admit agents itself.
    assert_eq!(body["token"].as_str().unwrap(), token.to_string());
}

/// Regression: 32,043 wrong-token attempts in 10 s, each a WARN line
/// without the client's address.
#[tokio::test]
async fn wrong_tokens_are_rate_limited_and_logged_once_a_minute_per_source() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("s");
    let server = server(&data);
    let token = agent_token(&data);
    let client = join_client(&token);
    let mut statuses = Vec::new();
    for _ in 0..100 {
        let response = client
            .post(format!("{}/v1-kagami/join", server.url()))
            .bearer_auth("wrong")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        if status == 429 {
            let retry = response.headers()["retry-after"].to_str().unwrap();
            assert!(retry.parse::<u64>().unwrap() >= 1, "{retry}");
        }
        statuses.push(status);
    }
    let limited = statuses.iter().filter(|s| **s == 429).count();
    let refused = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        refused <= kagami::JOIN_BURST as usize + 5,
        "{refused} wrong tokens answered before the limit"
    );
    assert!(limited >= 70, "{statuses:?}");
    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("join refused")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("source=127.0.0.1"), "{}", lines[0]);
}
