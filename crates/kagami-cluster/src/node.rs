//! A node's key and certificate. The key is made on the node and never
//! leaves it; the certificate names the node's host names, its addresses
//! and its libp2p peer ID (as the URI `urn:kagami:peer:<id>`), so that a
//! peer found in the DHT can be checked to be the one that answers.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, KeyPair, SanType};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::{Error, tls};

/// How long a node certificate is valid.
pub const NODE_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A node renews its certificate when less than this remains.
pub const RENEW_BEFORE: Duration = Duration::from_secs(90 * 24 * 3600);
/// The URI prefix that binds a certificate to a libp2p peer ID.
const PEER_URI: &str = "urn:kagami:peer:";
/// Most host names and addresses one node certificate may carry.
pub const MAX_NAMES: usize = 32;
/// Longest host name (DNS's own limit).
const MAX_HOST_NAME: usize = 253;
/// Longest peer ID text (a base58 multihash is 52 or 53 characters).
const MAX_PEER_ID: usize = 128;

/// What a node certificate is valid for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeNames {
    /// Host names (`localhost`, the node's host name, …).
    pub dns: Vec<String>,
    /// Addresses (`127.0.0.1`, the node's IPs, …).
    pub ips: Vec<IpAddr>,
    /// The node's libp2p peer ID, when it takes part in the P2P network.
    pub peer_id: Option<String>,
}

impl NodeNames {
    /// Checks that a node certificate may carry these names: plain host
    /// names (no wildcard; labels of letters, digits and hyphens; DNS's
    /// lengths), addresses a node can have (not unspecified, multicast or
    /// broadcast), at most [`MAX_NAMES`] of them, and exactly one peer ID.
    pub fn check(&self) -> Result<(), Error> {
        let refuse = |name: &str, reason| Error::Name {
            name: name.chars().take(80).collect(),
            reason,
        };
        let count = self.dns.len() + self.ips.len();
        if count > MAX_NAMES {
            return Err(refuse(
                &format!("{count} names"),
                "more host names and addresses than a node certificate may carry (32)",
            ));
        }
        for name in &self.dns {
            check_host_name(name).map_err(|reason| refuse(name, reason))?;
        }
        for ip in &self.ips {
            let unusable = ip.is_unspecified()
                || ip.is_multicast()
                || *ip == IpAddr::from([255, 255, 255, 255]);
            if unusable {
                return Err(refuse(&ip.to_string(), "not an address a node can have"));
            }
        }
        let peer = self
            .peer_id
            .as_deref()
            .ok_or_else(|| refuse("(none)", "a node certificate binds exactly one peer ID"))?;
        let plain = !peer.is_empty()
            && peer.len() <= MAX_PEER_ID
            && peer.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !plain {
            return Err(refuse(peer, "not a peer ID"));
        }
        Ok(())
    }

    /// The names a signing request asks for; a request naming anything
    /// else (an e-mail address, another URI, two peer IDs) is refused.
    pub(crate) fn from_sans(sans: &[SanType]) -> Result<NodeNames, Error> {
        let mut names = NodeNames::default();
        for san in sans {
            match san {
                SanType::DnsName(name) => names.dns.push(name.as_str().to_owned()),
                SanType::IpAddress(ip) => names.ips.push(*ip),
                SanType::URI(uri) => {
                    let Some(peer) = uri.as_str().strip_prefix(PEER_URI) else {
                        return Err(Error::Name {
                            name: uri.as_str().chars().take(80).collect(),
                            reason: "a URI that is not a peer ID",
                        });
                    };
                    if names.peer_id.replace(peer.to_owned()).is_some() {
                        return Err(Error::Name {
                            name: peer.chars().take(80).collect(),
                            reason: "a second peer ID",
                        });
                    }
                }
                other => {
                    return Err(Error::Name {
                        name: format!("{other:?}").chars().take(80).collect(),
                        reason: "a kind of name node certificates do not carry",
                    });
                }
            }
        }
        Ok(names)
    }

    pub(crate) fn sans(&self) -> Result<Vec<SanType>, Error> {
        let ia5 = |text: &str| {
            text.to_owned()
                .try_into()
                .map_err(|e: rcgen::Error| Error::Pki {
                    what: "name a node",
                    reason: format!("{text:?}: {e}"),
                })
        };
        let mut sans = Vec::new();
        for name in &self.dns {
            sans.push(SanType::DnsName(ia5(name)?));
        }
        sans.extend(self.ips.iter().copied().map(SanType::IpAddress));
        if let Some(peer) = &self.peer_id {
            sans.push(SanType::URI(ia5(&format!("{PEER_URI}{peer}"))?));
        }
        Ok(sans)
    }
}

/// A node's private key, PEM (ECDSA P-256).
#[derive(Clone)]
pub struct NodeKey {
    pem: String,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKey(..)")
    }
}

impl NodeKey {
    /// A fresh key.
    pub fn generate() -> Result<NodeKey, Error> {
        let key = KeyPair::generate().map_err(Error::pki("generate a node key"))?;
        Ok(NodeKey {
            pem: key.serialize_pem(),
        })
    }

    /// A key read from PEM.
    pub fn from_pem(pem: &str) -> Result<NodeKey, Error> {
        KeyPair::from_pem(pem).map_err(Error::pki("read a node key"))?;
        Ok(NodeKey {
            pem: pem.to_owned(),
        })
    }

    /// The key, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A certificate signing request for `names`, PEM.
    pub fn csr(&self, names: &NodeNames) -> Result<String, Error> {
        let key = KeyPair::from_pem(&self.pem).map_err(Error::pki("read a node key"))?;
        let mut params = CertificateParams::default();
        params.subject_alt_names = names.sans()?;
        let csr = params
            .serialize_request(&key)
            .map_err(Error::pki("make a certificate signing request"))?;
        csr.pem()
            .map_err(Error::pki("encode a certificate signing request"))
    }
}

/// A node certificate, PEM, with what kagami reads from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCert {
    pem: String,
    not_after: SystemTime,
    names: NodeNames,
}

impl NodeCert {
    /// Parses a certificate.
    pub fn from_pem(pem: &str) -> Result<NodeCert, Error> {
        let der = tls::cert_der(pem)?;
        let (_, cert) =
            x509_parser::certificate::X509Certificate::from_der(der.as_ref()).map_err(|e| {
                Error::Pki {
                    what: "read a node certificate",
                    reason: e.to_string(),
                }
            })?;
        let seconds = cert.validity().not_after.timestamp();
        let not_after = UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
        Ok(NodeCert {
            pem: pem.to_owned(),
            not_after,
            names: names_of(&cert),
        })
    }

    /// The certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// When it stops being valid.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The libp2p peer ID it binds, if any.
    pub fn peer_id(&self) -> Option<&str> {
        self.names.peer_id.as_deref()
    }

    /// Everything it is valid for: host names, addresses, peer ID.
    pub fn names(&self) -> &NodeNames {
        &self.names
    }

    /// Whether less than `renew_before` of its life remains at `now`.
    pub fn needs_renewal(&self, now: SystemTime, renew_before: Duration) -> bool {
        self.not_after
            .duration_since(now)
            .map_or(true, |left| left < renew_before)
    }
}

/// Why a host name may not be in a node certificate, if it may not.
fn check_host_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_HOST_NAME {
        return Err("a host name is 1 to 253 characters");
    }
    if name.contains('*') {
        return Err("wildcards are not certified");
    }
    for label in name.trim_end_matches('.').split('.') {
        let fits = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !fits {
            return Err("not a host name (labels of letters, digits and hyphens)");
        }
    }
    Ok(())
}

/// The names a parsed certificate carries, in its order.
pub(crate) fn names_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> NodeNames {
    let mut names = NodeNames::default();
    let Ok(Some(sans)) = cert.subject_alternative_name() else {
        return names;
    };
    for name in &sans.value.general_names {
        match name {
            GeneralName::DNSName(dns) => names.dns.push((*dns).to_owned()),
            GeneralName::IPAddress(bytes) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                    names.ips.push(IpAddr::from(v4));
                } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                    names.ips.push(IpAddr::from(v6));
                }
            }
            GeneralName::URI(uri) => {
                if let Some(peer) = uri.strip_prefix(PEER_URI)
                    && names.peer_id.is_none()
                {
                    names.peer_id = Some(peer.to_owned());
                }
            }
            _ => {}
        }
    }
    names
}

/// The peer ID a parsed certificate binds.
pub(crate) fn peer_id_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<String> {
    let sans = cert.subject_alternative_name().ok().flatten()?;
    sans.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => uri.strip_prefix(PEER_URI).map(str::to_owned),
        _ => None,
    })
}
