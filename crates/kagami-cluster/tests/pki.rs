//! The CA, node certificates and material on disk.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use kagami_cluster::{
    ClusterCa, IdentityProof, Material, NODE_CERT_VALIDITY, NodeKey, NodeNames, Psk, RENEW_BEFORE,
    Role, Token,
};

#[test]
fn a_node_certificate_binds_the_peer_id_and_lasts_a_year() {
    let ca = ClusterCa::generate().unwrap();
    let key = NodeKey::generate().unwrap();
    let names = NodeNames {
        dns: vec!["node-a".to_owned()],
        ips: vec!["10.0.0.5".parse().unwrap()],
        peer_id: Some("12D3KooWabc".to_owned()),
    };
    let cert = ca.issue(&key, &names, NODE_CERT_VALIDITY).unwrap();
    assert_eq!(cert.peer_id(), Some("12D3KooWabc"));
    let left = cert.not_after().duration_since(SystemTime::now()).unwrap();
    assert!(
        left > NODE_CERT_VALIDITY - Duration::from_secs(3600),
        "{left:?}"
    );
    assert!(!cert.needs_renewal(SystemTime::now(), RENEW_BEFORE));
    let short = ca.issue(&key, &names, Duration::from_secs(60)).unwrap();
    assert!(short.needs_renewal(SystemTime::now(), RENEW_BEFORE));
}

#[test]
fn a_ca_with_a_key_that_is_not_its_own_is_refused() {
    let a = ClusterCa::generate().unwrap();
    let b = ClusterCa::generate().unwrap();
    assert!(ClusterCa::from_pem(a.cert_pem(), a.key_pem()).is_ok());
    assert!(ClusterCa::from_pem(a.cert_pem(), b.key_pem()).is_err());
}

/// A libp2p identity of the tests, from a seed.
fn identity(seed: u8) -> libp2p_identity::Keypair {
    libp2p_identity::Keypair::ed25519_from_bytes([seed; 32]).unwrap()
}

fn peer_of(identity: &libp2p_identity::Keypair) -> String {
    identity.public().to_peer_id().to_string()
}

/// A signing request for `names` and its proof by `identity`.
fn request(names: &NodeNames, identity: &libp2p_identity::Keypair) -> (String, IdentityProof) {
    let csr = NodeKey::generate().unwrap().csr(names).unwrap();
    let proof = IdentityProof::sign(identity, &csr).unwrap();
    (csr, proof)
}

fn plain_names(peer_id: Option<String>) -> NodeNames {
    NodeNames {
        dns: vec!["localhost".to_owned(), "node-a".to_owned()],
        ips: vec!["127.0.0.1".parse().unwrap(), "10.0.0.5".parse().unwrap()],
        peer_id,
    }
}

#[test]
fn a_join_is_certified_for_the_peer_id_the_node_proves() {
    let ca = ClusterCa::generate().unwrap();
    let node = identity(1);
    let (csr, proof) = request(&plain_names(Some(peer_of(&node))), &node);
    let cert = ca.admit(&csr, &proof, NODE_CERT_VALIDITY).unwrap();
    assert_eq!(cert.peer_id(), Some(peer_of(&node).as_str()));
    assert_eq!(cert.names().dns, ["localhost", "node-a"]);
    // A request that names no peer ID gets the proven one.
    let (csr, proof) = request(&plain_names(None), &node);
    let cert = ca.admit(&csr, &proof, NODE_CERT_VALIDITY).unwrap();
    assert_eq!(cert.peer_id(), Some(peer_of(&node).as_str()));
    // A rejoin of the same identity is fine.
    let (csr, proof) = request(&plain_names(Some(peer_of(&node))), &node);
    assert!(ca.admit(&csr, &proof, NODE_CERT_VALIDITY).is_ok());
}

/// Regression: join signed whatever names the request asked for, another
/// node's peer ID among them.
#[test]
fn join_certifies_only_what_the_node_proves() {
    let ca = ClusterCa::generate().unwrap();
    let node = identity(1);
    let victim = peer_of(&identity(2));
    let refused = |names: NodeNames| {
        let (csr, proof) = request(&names, &node);
        let outcome = ca.admit(&csr, &proof, NODE_CERT_VALIDITY);
        assert!(outcome.is_err(), "{names:?} was certified");
        outcome.unwrap_err().to_string()
    };
    let with = |dns: &str| NodeNames {
        dns: vec![dns.to_owned()],
        ips: vec![],
        peer_id: Some(peer_of(&node)),
    };
    assert!(refused(plain_names(Some(victim.clone()))).contains("not the peer ID"));
    assert!(refused(with("*.example.com")).contains("wildcard"));
    assert!(refused(with(&"a".repeat(5000))).contains("1 to 253"));
    assert!(refused(with("bad name")).contains("not a host name"));
    let many = NodeNames {
        dns: (0..40).map(|i| format!("n{i}")).collect(),
        ips: vec![],
        peer_id: Some(peer_of(&node)),
    };
    assert!(refused(many).contains("more host names"));
    let unspecified = NodeNames {
        ips: vec!["0.0.0.0".parse().unwrap()],
        ..plain_names(Some(peer_of(&node)))
    };
    refused(unspecified);
    // Someone else's proof for this request does not pass for the node's.
    let names = plain_names(Some(victim.clone()));
    let csr = NodeKey::generate().unwrap().csr(&names).unwrap();
    let proof = IdentityProof::sign(&node, &csr).unwrap();
    let stolen = IdentityProof {
        public_key: IdentityProof::sign(&identity(2), &csr).unwrap().public_key,
        ..proof
    };
    assert!(ca.admit(&csr, &stolen, NODE_CERT_VALIDITY).is_err());
    assert!(
        ca.admit(
            "not a csr",
            &IdentityProof::sign(&node, "not a csr").unwrap(),
            NODE_CERT_VALIDITY
        )
        .is_err()
    );
}

/// Regression: renewal from a certificate without a peer ID returned one
/// for `*.evil.example`.
#[test]
fn renewal_keeps_the_names_of_the_certificate_it_renews() {
    let ca = ClusterCa::generate().unwrap();
    let node = identity(1);
    let (csr, proof) = request(&plain_names(Some(peer_of(&node))), &node);
    let current = ca.admit(&csr, &proof, NODE_CERT_VALIDITY).unwrap();
    let asked = NodeNames {
        dns: vec!["evil.example".to_owned()],
        ips: vec!["8.8.8.8".parse().unwrap()],
        peer_id: Some(peer_of(&identity(2))),
    };
    let csr = NodeKey::generate().unwrap().csr(&asked).unwrap();
    let renewed = ca.renew(&csr, current.names(), NODE_CERT_VALIDITY).unwrap();
    assert_eq!(renewed.names(), current.names());
    // A certificate binding no peer ID is not renewed.
    let no_peer = kagami_cluster::NodeCert::from_pem(&certificate_without_peer(&ca)).unwrap();
    assert!(ca.renew(&csr, no_peer.names(), NODE_CERT_VALIDITY).is_err());
}

/// A CA-signed certificate for `*.evil.example` with no peer ID, as only
/// a CA that did not check names could have made.
fn certificate_without_peer(ca: &ClusterCa) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let issuer_key = rcgen::KeyPair::from_pem(ca.key_pem()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca.cert_pem(), issuer_key).unwrap();
    let params = rcgen::CertificateParams::new(vec!["*.evil.example".to_owned()]).unwrap();
    params.signed_by(&key, &issuer).unwrap().pem()
}

#[test]
fn the_server_token_is_the_same_for_every_holder_of_the_ca_key() {
    let ca = ClusterCa::generate().unwrap();
    let again = ClusterCa::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
    let token = ca.server_token();
    assert_eq!(token, again.server_token());
    assert_eq!(token.role(), Role::Server);
    assert_eq!(token.ca_fingerprint(), ca.fingerprint());
    assert!(token.to_string().contains("::server:"));
    assert_ne!(
        token.secret(),
        ClusterCa::generate().unwrap().server_token().secret()
    );
}

#[test]
fn material_is_private_and_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let material = Material::new(tmp.path());
    assert!(material.ca().unwrap().is_none());
    let ca = ClusterCa::generate().unwrap();
    material.save_ca(&ca).unwrap();
    let token = Token::generate(ca.fingerprint());
    material.save_token(&token).unwrap();
    let psk = Psk::generate();
    material.save_psk(&psk).unwrap();
    assert_eq!(material.ca().unwrap().unwrap().cert_pem(), ca.cert_pem());
    assert_eq!(material.token().unwrap(), Some(token));
    assert_eq!(material.psk().unwrap(), Some(psk));
    for file in [
        "cluster/ca.key",
        "cluster/ca.crt",
        "cluster/token",
        "p2p/psk",
    ] {
        let mode = std::fs::metadata(tmp.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    for dir in ["cluster", "p2p"] {
        let mode = std::fs::metadata(tmp.path().join(dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{dir}");
    }
    std::fs::write(tmp.path().join("p2p/psk"), "short").unwrap();
    let error = material.psk().unwrap_err().to_string();
    assert!(error.contains("p2p/psk"), "{error}");
}
