//! The CA, node certificates and material on disk.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use kagami_cluster::{
    ClusterCa, Material, NODE_CERT_VALIDITY, NodeKey, NodeNames, Psk, RENEW_BEFORE, Token,
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

#[test]
fn a_request_naming_nothing_is_not_signed() {
    let ca = ClusterCa::generate().unwrap();
    let key = NodeKey::generate().unwrap();
    let csr = key.csr(&NodeNames::default()).unwrap();
    assert!(ca.sign(&csr, NODE_CERT_VALIDITY).is_err());
    assert!(ca.sign("not a csr", NODE_CERT_VALIDITY).is_err());
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
