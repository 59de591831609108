//! The cluster CA: created once by the first server, it signs the
//! certificate of every node. Whoever holds its key can admit nodes, so
//! only servers keep it.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use sha2::{Digest as _, Sha256};

use crate::node::{NodeCert, NodeKey, NodeNames};
use crate::proof::IdentityProof;
use crate::token::{Role, Token};
use crate::{Error, tls};

/// How long the CA is valid. Rotating a CA means re-joining every node, so
/// it outlives any cluster it is likely to serve.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The shortest validity a node certificate is issued for.
pub const MIN_VALIDITY: Duration = Duration::from_secs(10);
/// Certificates start this much in the past, for clocks a little behind.
const BACKDATE: Duration = Duration::from_secs(300);

/// The cluster's certificate authority: its certificate and private key.
#[derive(Clone)]
pub struct ClusterCa {
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("fingerprint", &hex(&self.fingerprint()))
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// A new CA with an ECDSA P-256 key.
    pub fn generate() -> Result<ClusterCa, Error> {
        let key = KeyPair::generate().map_err(Error::pki("generate the CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "kagami cluster CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let (not_before, not_after) = validity(CA_VALIDITY);
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(serial());
        let cert = params
            .self_signed(&key)
            .map_err(Error::pki("sign the CA certificate"))?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A CA from its PEM certificate and key, checked to belong together.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<ClusterCa, Error> {
        let ca = ClusterCa {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        };
        let key = KeyPair::from_pem(key_pem).map_err(Error::pki("read the CA key"))?;
        Issuer::from_ca_cert_pem(cert_pem, &key).map_err(Error::pki("read the CA certificate"))?;
        let der = tls::cert_der(cert_pem)?;
        let matches = spki_der(&der).as_deref() == Some(key.public_key_raw());
        if !matches {
            return Err(Error::Pki {
                what: "read the CA",
                reason: "the key does not belong to the certificate".to_owned(),
            });
        }
        Ok(ca)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM: only servers may hold it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The sha256 of the CA certificate (DER): what a join token pins.
    pub fn fingerprint(&self) -> [u8; 32] {
        fingerprint_pem(&self.cert_pem).unwrap_or_default()
    }

    /// The sha256 of a CA certificate given as PEM, as a token pins it.
    pub fn fingerprint_of(cert_pem: &str) -> Result<[u8; 32], Error> {
        fingerprint_pem(cert_pem)
    }

    /// Admits a joining node: a certificate for the key of its signing
    /// request, binding the peer ID `proof` shows the node holds, for the
    /// host names and addresses the request names once they pass
    /// [`NodeNames::check`]. A request that names another peer ID is
    /// refused. Valid for `validity_for`, for server and client use.
    pub fn admit(
        &self,
        csr_pem: &str,
        proof: &IdentityProof,
        validity_for: Duration,
    ) -> Result<NodeCert, Error> {
        let peer_id = proof.verify(csr_pem)?;
        let request = read_request(csr_pem)?;
        let mut names = NodeNames::from_sans(&request.params.subject_alt_names)?;
        if let Some(asked) = &names.peer_id
            && *asked != peer_id
        {
            return Err(Error::Name {
                name: asked.chars().take(80).collect(),
                reason: "not the peer ID whose key signed the request",
            });
        }
        names.peer_id = Some(peer_id);
        self.certify(&request.public_key, &names, validity_for)
    }

    /// Renews a certificate whose holder presented it (and so holds its
    /// key): a new certificate for the key of `csr_pem`, with exactly the
    /// names and peer ID `current` carries, whatever the request names.
    pub fn renew(
        &self,
        csr_pem: &str,
        current: &NodeNames,
        validity_for: Duration,
    ) -> Result<NodeCert, Error> {
        let request = read_request(csr_pem)?;
        if current.peer_id.is_none() {
            return Err(Error::Name {
                name: "(no peer ID)".to_owned(),
                reason: "a certificate that binds no peer ID is not renewed: join again",
            });
        }
        self.certify(&request.public_key, current, validity_for)
    }

    /// Issues a certificate for a key of this node (servers sign their own),
    /// for `names` once they pass [`NodeNames::check`].
    pub fn issue(
        &self,
        key: &NodeKey,
        names: &NodeNames,
        validity_for: Duration,
    ) -> Result<NodeCert, Error> {
        let key = KeyPair::from_pem(key.pem()).map_err(Error::pki("read a node key"))?;
        self.certify(&key, names, validity_for)
    }

    /// The server token: what a node must show to join as a server and
    /// receive the CA key. Derived from the CA key, so every server
    /// computes the same one and none needs to store or hand it out; the
    /// agent token, which admits agents only, is a separate secret.
    pub fn server_token(&self) -> Token {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key_pem.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(b"kagami server token v1");
        let secret = hex(&mac.finalize().into_bytes()[..24]);
        Token::new(self.fingerprint(), Role::Server, secret)
    }

    fn certify(
        &self,
        public_key: &impl rcgen::PublicKeyData,
        names: &NodeNames,
        validity_for: Duration,
    ) -> Result<NodeCert, Error> {
        names.check()?;
        if validity_for < MIN_VALIDITY {
            return Err(Error::Pki {
                what: "sign a node certificate",
                reason: format!("a validity of {validity_for:?} is shorter than {MIN_VALIDITY:?}"),
            });
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            names
                .dns
                .first()
                .cloned()
                .unwrap_or_else(|| "kagami node".to_owned()),
        );
        params.subject_alt_names = names.sans()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let (not_before, not_after) = validity(validity_for);
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(serial());
        let key = KeyPair::from_pem(&self.key_pem).map_err(Error::pki("read the CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, key)
            .map_err(Error::pki("read the CA certificate"))?;
        let cert = params
            .signed_by(public_key, &issuer)
            .map_err(Error::pki("sign a node certificate"))?;
        NodeCert::from_pem(&cert.pem())
    }
}

fn read_request(csr_pem: &str) -> Result<CertificateSigningRequestParams, Error> {
    CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(Error::pki("read the certificate signing request"))
}

/// The sha256 of the first certificate of a PEM text.
pub(crate) fn fingerprint_pem(pem: &str) -> Result<[u8; 32], Error> {
    Ok(fingerprint_der(&tls::cert_der(pem)?))
}

pub(crate) fn fingerprint_der(der: &CertificateDer<'_>) -> [u8; 32] {
    Sha256::digest(der.as_ref()).into()
}

/// The SubjectPublicKeyInfo of a certificate, DER.
fn spki_der(der: &CertificateDer<'_>) -> Option<Vec<u8>> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der.as_ref()).ok()?;
    Some(cert.public_key().subject_public_key.data.to_vec())
}

/// `(now - BACKDATE, now + validity)`.
fn validity(validity: Duration) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    (now - BACKDATE, now + validity)
}

fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive, and never shortened by a leading zero.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Any number of bytes from hex digits (an even count of them).
pub(crate) fn unhex_vec(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

pub(crate) fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 || !text.is_ascii() {
        return None;
    }
    let mut out = [0; N];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}
