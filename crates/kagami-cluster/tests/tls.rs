//! Real TLS handshakes over loopback with the configurations kagami-cluster
//! builds: who gets in, who does not, and what each side learns.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use kagami_cluster::tls::{self, Identity};
use kagami_cluster::{ClusterCa, NODE_CERT_VALIDITY, NodeKey, NodeNames};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn names(peer: &str) -> NodeNames {
    NodeNames {
        dns: vec!["localhost".to_owned()],
        ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        peer_id: Some(peer.to_owned()),
    }
}

fn identity(ca: &ClusterCa, peer: &str, validity: Duration) -> Identity {
    let key = NodeKey::generate().unwrap();
    let cert = ca.issue(&key, &names(peer), validity).unwrap();
    Identity {
        ca_pem: ca.cert_pem().to_owned(),
        cert_pem: cert.pem().to_owned(),
        key_pem: key.pem().to_owned(),
    }
}

/// An identity whose certificate, signed by `ca`, ended an hour ago: the
/// CA itself refuses to issue one that short, so it is made by hand.
fn expired_identity(ca: &ClusterCa) -> Identity {
    let key = rcgen::KeyPair::generate().unwrap();
    let issuer_key = rcgen::KeyPair::from_pem(ca.key_pem()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca.cert_pem(), issuer_key).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - Duration::from_secs(7200);
    params.not_after = now - Duration::from_secs(3600);
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, &issuer).unwrap();
    Identity {
        ca_pem: ca.cert_pem().to_owned(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Accepts one connection with `server`, answers "ok" once the handshake
/// is done, and returns the peer ID of the client's certificate, if any;
/// the client connects with `client`. Returns (server side, client side).
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: rustls::ClientConfig,
) -> (Result<Option<String>, String>, Result<String, String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server);
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| tls::peer_id_of_der(cert.as_ref()));
        tls.write_all(b"ok").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok(peer)
    });
    let connector = TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let client = async {
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        tls.read_to_string(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        Ok(answer)
    }
    .await;
    let server = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server side finished")
        .unwrap();
    (server, client)
}

#[tokio::test]
async fn cluster_members_meet_and_learn_each_others_peer_ids() {
    let ca = ClusterCa::generate().unwrap();
    let server = identity(&ca, "12D3KooServer", NODE_CERT_VALIDITY);
    let client = identity(&ca, "12D3KooClient", NODE_CERT_VALIDITY);
    let (seen, answer) = handshake(
        tls::server_config(&server).unwrap(),
        tls::peer_client_config(&client, Some("12D3KooServer")).unwrap(),
    )
    .await;
    assert_eq!(answer.unwrap(), "ok");
    assert_eq!(seen.unwrap().as_deref(), Some("12D3KooClient"));
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_at_the_handshake() {
    let ca = ClusterCa::generate().unwrap();
    let server = identity(&ca, "s", NODE_CERT_VALIDITY);
    // The join client presents no certificate.
    let client = tls::join_client_config(ca.fingerprint()).unwrap();
    let (seen, answer) = handshake(tls::server_config(&server).unwrap(), client).await;
    assert!(seen.is_err(), "{seen:?}");
    assert!(answer.is_err(), "{answer:?}");
}

#[tokio::test]
async fn a_client_certificate_of_another_ca_is_refused() {
    let ca = ClusterCa::generate().unwrap();
    let other = ClusterCa::generate().unwrap();
    let server = identity(&ca, "s", NODE_CERT_VALIDITY);
    let mut stranger = identity(&other, "x", NODE_CERT_VALIDITY);
    // It trusts our CA (so its own check passes), but its certificate is
    // signed by another.
    stranger.ca_pem = ca.cert_pem().to_owned();
    let (seen, _) = handshake(
        tls::server_config(&server).unwrap(),
        tls::peer_client_config(&stranger, None).unwrap(),
    )
    .await;
    // Both CAs are named alike, so the chain is built and its signature
    // fails to verify.
    let error = seen.unwrap_err();
    assert!(
        error.contains("BadSignature") || error.contains("UnknownIssuer"),
        "{error}"
    );
}

#[tokio::test]
async fn an_expired_client_certificate_is_refused() {
    let ca = ClusterCa::generate().unwrap();
    let server = identity(&ca, "s", NODE_CERT_VALIDITY);
    let expired = expired_identity(&ca);
    let (seen, _) = handshake(
        tls::server_config(&server).unwrap(),
        tls::peer_client_config(&expired, None).unwrap(),
    )
    .await;
    let error = seen.unwrap_err();
    assert!(error.to_lowercase().contains("expired"), "{error}");
}

#[tokio::test]
async fn a_peer_whose_certificate_binds_another_peer_id_is_refused() {
    let ca = ClusterCa::generate().unwrap();
    let server = identity(&ca, "12D3KooImpostor", NODE_CERT_VALIDITY);
    let client = identity(&ca, "c", NODE_CERT_VALIDITY);
    let (_, answer) = handshake(
        tls::server_config(&server).unwrap(),
        tls::peer_client_config(&client, Some("12D3KooExpected")).unwrap(),
    )
    .await;
    let error = answer.unwrap_err();
    assert!(error.contains("not 12D3KooExpected"), "{error}");
}

#[tokio::test]
async fn a_server_of_another_ca_is_refused_by_a_peer() {
    let ca = ClusterCa::generate().unwrap();
    let other = ClusterCa::generate().unwrap();
    let server = identity(&other, "p", NODE_CERT_VALIDITY);
    let client = identity(&ca, "c", NODE_CERT_VALIDITY);
    let (_, answer) = handshake(
        tls::server_config(&server).unwrap(),
        tls::peer_client_config(&client, Some("p")).unwrap(),
    )
    .await;
    assert!(answer.is_err(), "{answer:?}");
}

#[tokio::test]
async fn joining_checks_the_servers_ca_against_the_token_pin() {
    let ca = ClusterCa::generate().unwrap();
    let server = identity(&ca, "s", NODE_CERT_VALIDITY);
    let (_, answer) = handshake(
        tls::join_server_config(&server).unwrap(),
        tls::join_client_config(ca.fingerprint()).unwrap(),
    )
    .await;
    assert_eq!(answer.unwrap(), "ok");

    let other = ClusterCa::generate().unwrap();
    let (_, answer) = handshake(
        tls::join_server_config(&server).unwrap(),
        tls::join_client_config(other.fingerprint()).unwrap(),
    )
    .await;
    let error = answer.unwrap_err();
    assert!(error.contains("does not match the join token"), "{error}");
}
