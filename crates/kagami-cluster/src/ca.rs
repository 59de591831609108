//! The cluster CA: created once by the first server, it signs the
//! certificate of every node. Whoever holds its key can admit nodes, so
//! only servers keep it.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use sha2::{Digest as _, Sha256};

use crate::node::{NodeCert, NodeKey, NodeNames};
use crate::{Error, tls};

/// How long the CA is valid. Rotating a CA means re-joining every node, so
/// it outlives any cluster it is likely to serve.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
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

    /// Issues a node certificate for a node's signing request: valid for
    /// `validity` for the names, addresses and peer ID the request names,
    /// for both server and client authentication. Everything else in the
    /// request is ignored.
    pub fn sign(&self, csr_pem: &str, validity_for: Duration) -> Result<NodeCert, Error> {
        let request = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(Error::pki("read the certificate signing request"))?;
        let names = &request.params.subject_alt_names;
        if names.is_empty() {
            return Err(Error::Pki {
                what: "sign a node certificate",
                reason: "the request names no host, address or peer".to_owned(),
            });
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let common_name = names.iter().find_map(|name| match name {
            SanType::DnsName(name) => Some(name.as_str().to_owned()),
            _ => None,
        });
        params.distinguished_name.push(
            DnType::CommonName,
            common_name.unwrap_or_else(|| "kagami node".to_owned()),
        );
        params.subject_alt_names = names.clone();
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
            .signed_by(&request.public_key, &issuer)
            .map_err(Error::pki("sign a node certificate"))?;
        NodeCert::from_pem(&cert.pem())
    }

    /// Issues a certificate for a key of this node (servers sign their own).
    pub fn issue(
        &self,
        key: &NodeKey,
        names: &NodeNames,
        validity_for: Duration,
    ) -> Result<NodeCert, Error> {
        self.sign(&key.csr(names)?, validity_for)
    }
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
