//! rustls configurations from a node's trust material, all on the `ring`
//! provider:
//!
//! - [`server_config`]: the registry API. A client must present a
//!   certificate signed by the cluster CA, or the handshake fails.
//! - [`join_server_config`]: the same port for nodes that have no
//!   certificate yet, chosen by the [`JOIN_ALPN`] protocol name; only the
//!   join endpoint is served on such connections.
//! - [`peer_client_config`]: fetching from a peer. The peer's certificate
//!   must be signed by the cluster CA and bind the peer ID the DHT named.
//!   Host names are not checked: peers are reached at whatever address the
//!   DHT gave, and the peer ID is the stronger check.
//! - [`join_client_config`]: joining. The server's chain must contain the
//!   CA the token pins, and its certificate must be signed by that CA.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use x509_parser::prelude::FromDer;

use crate::Error;
use crate::NodeNames;
use crate::ca::fingerprint_der;
use crate::node::{names_of, peer_id_of};

/// The ALPN protocol name of join connections.
pub const JOIN_ALPN: &[u8] = b"kagami-join/1";
/// The ALPN protocol names of registry connections.
const HTTP_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A node's TLS identity: the CA it trusts, its certificate and key (PEM).
#[derive(Clone)]
pub struct Identity {
    /// The cluster CA certificate.
    pub ca_pem: String,
    /// The node certificate.
    pub cert_pem: String,
    /// The node key.
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity(..)")
    }
}

/// The `ring` provider every configuration here uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The first certificate of a PEM text.
pub(crate) fn cert_der(pem: &str) -> Result<CertificateDer<'static>, Error> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| Error::Pki {
        what: "read a certificate",
        reason: e.to_string(),
    })
}

/// The peer ID a certificate (DER) binds, if any.
pub fn peer_id_of_der(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    peer_id_of(&cert)
}

/// Everything a certificate (DER) is valid for: host names, addresses and
/// the peer ID it binds.
pub fn names_of_der(der: &[u8]) -> Option<NodeNames> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    Some(names_of(&cert))
}

fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>, Error> {
    let mut roots = RootCertStore::empty();
    roots.add(cert_der(ca_pem)?).map_err(|e| Error::Pki {
        what: "trust the cluster CA",
        reason: e.to_string(),
    })?;
    Ok(Arc::new(roots))
}

impl Identity {
    /// The certificate chain sent to the other side: the node's
    /// certificate, then the CA's (which a joining node checks against its
    /// token).
    fn chain(&self) -> Result<Vec<CertificateDer<'static>>, Error> {
        Ok(vec![cert_der(&self.cert_pem)?, cert_der(&self.ca_pem)?])
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, Error> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| Error::Pki {
            what: "read the node key",
            reason: e.to_string(),
        })
    }
}

fn config_error(what: &'static str) -> impl FnOnce(rustls::Error) -> Error {
    move |e| Error::Pki {
        what,
        reason: e.to_string(),
    }
}

/// The registry API's server side: mutual TLS against the cluster CA.
pub fn server_config(identity: &Identity) -> Result<Arc<ServerConfig>, Error> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots(&identity.ca_pem)?, provider())
            .build()
            .map_err(|e| Error::Pki {
                what: "build the client certificate verifier",
                reason: e.to_string(),
            })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error("configure TLS"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain()?, identity.key()?)
        .map_err(config_error("use the node certificate"))?;
    config.alpn_protocols = HTTP_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The join endpoint's server side: no client certificate (the joining
/// node has none yet; it authenticates with the token's secret).
pub fn join_server_config(identity: &Identity) -> Result<Arc<ServerConfig>, Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error("configure TLS"))?
        .with_no_client_auth()
        .with_single_cert(identity.chain()?, identity.key()?)
        .map_err(config_error("use the node certificate"))?;
    config.alpn_protocols = vec![JOIN_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// A client for a peer's registry: presents this node's certificate and
/// accepts only a certificate signed by the cluster CA that binds
/// `expected_peer` (when given).
pub fn peer_client_config(
    identity: &Identity,
    expected_peer: Option<&str>,
) -> Result<ClientConfig, Error> {
    let verifier = ClusterVerifier {
        trust: Trust::Roots(roots(&identity.ca_pem)?),
        expected_peer: expected_peer.map(str::to_owned),
        provider: provider(),
    };
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error("configure TLS"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(identity.chain()?, identity.key()?)
        .map_err(config_error("use the node certificate"))?;
    config.alpn_protocols = HTTP_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client for a server's join endpoint: trusts only the CA whose
/// certificate hashes to `ca_fingerprint` (from the token).
pub fn join_client_config(ca_fingerprint: [u8; 32]) -> Result<ClientConfig, Error> {
    let verifier = ClusterVerifier {
        trust: Trust::Pinned(ca_fingerprint),
        expected_peer: None,
        provider: provider(),
    };
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error("configure TLS"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![JOIN_ALPN.to_vec()];
    Ok(config)
}

/// What a server certificate must chain to.
#[derive(Debug)]
enum Trust {
    /// The cluster CA, known.
    Roots(Arc<RootCertStore>),
    /// A CA the server sends in its chain, whose sha256 must be this.
    Pinned([u8; 32]),
}

#[derive(Debug)]
struct ClusterVerifier {
    trust: Trust,
    expected_peer: Option<String>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ClusterVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let roots = match &self.trust {
            Trust::Roots(roots) => roots.clone(),
            Trust::Pinned(pin) => {
                let ca = intermediates
                    .iter()
                    .find(|cert| fingerprint_der(cert) == *pin)
                    .ok_or_else(|| {
                        rustls::Error::General(
                            "the server's CA does not match the join token".to_owned(),
                        )
                    })?;
                let mut roots = RootCertStore::empty();
                roots.add(ca.clone().into_owned())?;
                Arc::new(roots)
            }
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if let Some(expected) = &self.expected_peer {
            let bound = peer_id_of_der(end_entity.as_ref());
            if bound.as_deref() != Some(expected.as_str()) {
                return Err(rustls::Error::General(format!(
                    "the certificate binds peer {}, not {expected}",
                    bound.as_deref().unwrap_or("(none)")
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
