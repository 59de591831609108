//! A node's trust material on disk, under its data directory:
//!
//! ```text
//! cluster/ca.crt      the cluster CA certificate (every node)
//! cluster/ca.key      its key (servers only)
//! cluster/node.key    this node's key (made here, never sent)
//! cluster/node.crt    this node's certificate, signed by the CA
//! cluster/token       the join token (servers)
//! cluster/settings.json  cluster-wide settings handed out by servers
//! p2p/psk             the P2P pre-shared key, 64 hex digits
//! ```
//!
//! Files are 0600 and directories 0700; each file is written whole or not
//! at all.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ca::{hex, unhex};
use crate::files::{private_dir, read_optional, write_private};
use crate::{ClusterCa, Error, NodeCert, NodeKey, Token};

/// The P2P network's pre-shared key: 32 random bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk(pub [u8; 32]);

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Psk(..)")
    }
}

impl Psk {
    /// A fresh key.
    pub fn generate() -> Psk {
        Psk(rand::random())
    }

    /// The key as 64 hex digits (the file format).
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// A key from 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Psk> {
        unhex::<32>(text.trim()).map(Psk)
    }
}

/// Settings every node of the cluster shares, decided by the servers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// Whether the embedded registry mirror (P2P) is on.
    pub embedded_registry: bool,
}

/// Where one node's trust material lives.
#[derive(Debug, Clone)]
pub struct Material {
    data_dir: PathBuf,
}

impl Material {
    /// The material of the node whose data directory is `data_dir`.
    pub fn new(data_dir: &Path) -> Material {
        Material {
            data_dir: data_dir.to_owned(),
        }
    }

    /// `DATA_DIR/cluster`.
    pub fn dir(&self) -> PathBuf {
        self.data_dir.join("cluster")
    }

    /// The CA certificate's file (what containerd's `hosts.toml` names as `ca`).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir().join("ca.crt")
    }

    fn ca_key_path(&self) -> PathBuf {
        self.dir().join("ca.key")
    }

    /// The node certificate's file.
    pub fn node_cert_path(&self) -> PathBuf {
        self.dir().join("node.crt")
    }

    /// The node key's file.
    pub fn node_key_path(&self) -> PathBuf {
        self.dir().join("node.key")
    }

    fn token_path(&self) -> PathBuf {
        self.dir().join("token")
    }

    fn settings_path(&self) -> PathBuf {
        self.dir().join("settings.json")
    }

    /// The PSK's file, where the P2P side reads it by default.
    pub fn psk_path(&self) -> PathBuf {
        self.data_dir.join("p2p").join("psk")
    }

    /// The CA with its key, if this node is a server that has one.
    pub fn ca(&self) -> Result<Option<ClusterCa>, Error> {
        let cert = read_optional(&self.ca_cert_path())?;
        let key = read_optional(&self.ca_key_path())?;
        match (cert, key) {
            (Some(cert), Some(key)) => ClusterCa::from_pem(&cert, &key)
                .map(Some)
                .map_err(|e| self.invalid(&self.ca_key_path(), "cluster CA", e)),
            _ => Ok(None),
        }
    }

    /// The CA certificate, PEM.
    pub fn ca_cert(&self) -> Result<Option<String>, Error> {
        read_optional(&self.ca_cert_path())
    }

    /// This node's key.
    pub fn node_key(&self) -> Result<Option<NodeKey>, Error> {
        let path = self.node_key_path();
        read_optional(&path)?
            .map(|pem| NodeKey::from_pem(&pem).map_err(|e| self.invalid(&path, "node key", e)))
            .transpose()
    }

    /// This node's certificate.
    pub fn node_cert(&self) -> Result<Option<NodeCert>, Error> {
        let path = self.node_cert_path();
        read_optional(&path)?
            .map(|pem| {
                NodeCert::from_pem(&pem).map_err(|e| self.invalid(&path, "node certificate", e))
            })
            .transpose()
    }

    /// The join token (servers).
    pub fn token(&self) -> Result<Option<Token>, Error> {
        let path = self.token_path();
        read_optional(&path)?
            .map(|text| {
                text.parse()
                    .map_err(|e| self.invalid(&path, "join token", e))
            })
            .transpose()
    }

    /// The PSK.
    pub fn psk(&self) -> Result<Option<Psk>, Error> {
        let path = self.psk_path();
        read_optional(&path)?
            .map(|text| {
                Psk::from_hex(&text).ok_or_else(|| Error::Invalid {
                    path: path.clone(),
                    what: "pre-shared key",
                    reason: "not 64 hex digits".to_owned(),
                })
            })
            .transpose()
    }

    /// The cluster settings last received or decided.
    pub fn settings(&self) -> Result<Option<Settings>, Error> {
        let path = self.settings_path();
        read_optional(&path)?
            .map(|text| {
                serde_json::from_str(&text).map_err(|e| Error::Invalid {
                    path: path.clone(),
                    what: "settings file",
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// Saves the CA (certificate and key).
    pub fn save_ca(&self, ca: &ClusterCa) -> Result<(), Error> {
        self.save_all(&[
            (self.ca_key_path(), ca.key_pem().to_owned()),
            (self.ca_cert_path(), ca.cert_pem().to_owned()),
        ])
    }

    /// Saves the join token.
    pub fn save_token(&self, token: &Token) -> Result<(), Error> {
        write_private(&self.token_path(), format!("{token}\n").as_bytes())
    }

    /// Saves the PSK.
    pub fn save_psk(&self, psk: &Psk) -> Result<(), Error> {
        write_private(&self.psk_path(), format!("{}\n", psk.to_hex()).as_bytes())
    }

    /// Saves the cluster settings.
    pub fn save_settings(&self, settings: &Settings) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(settings).unwrap_or_default();
        write_private(&self.settings_path(), text.as_bytes())
    }

    /// Saves this node's key and certificate together.
    pub fn save_node(&self, key: &NodeKey, cert: &NodeCert) -> Result<(), Error> {
        self.save_all(&[
            (self.node_key_path(), key.pem().to_owned()),
            (self.node_cert_path(), cert.pem().to_owned()),
        ])
    }

    /// Saves what a join brought, all of it or (on failure) none of it.
    pub fn save_joined(&self, joined: &Joined) -> Result<(), Error> {
        let mut files = vec![
            (self.ca_cert_path(), joined.ca_cert_pem.clone()),
            (self.node_key_path(), joined.key.pem().to_owned()),
            (self.node_cert_path(), joined.cert.pem().to_owned()),
            (self.psk_path(), format!("{}\n", joined.psk.to_hex())),
            (
                self.settings_path(),
                serde_json::to_string_pretty(&joined.settings).unwrap_or_default(),
            ),
        ];
        if let Some(ca) = &joined.ca {
            files.push((self.ca_key_path(), ca.key_pem().to_owned()));
        }
        if let Some(token) = &joined.token {
            files.push((self.token_path(), format!("{token}\n")));
        }
        self.save_all(&files)
    }

    /// Writes every file, or removes the ones written when one fails.
    fn save_all(&self, files: &[(PathBuf, String)]) -> Result<(), Error> {
        private_dir(&self.dir())?;
        for (i, (path, text)) in files.iter().enumerate() {
            if let Err(e) = write_private(path, text.as_bytes()) {
                for (written, _) in &files[..i] {
                    let _ = std::fs::remove_file(written);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn invalid(&self, path: &Path, what: &'static str, error: Error) -> Error {
        Error::Invalid {
            path: path.to_owned(),
            what,
            reason: error.to_string(),
        }
    }
}

/// What a node receives when it joins (and keeps).
#[derive(Debug, Clone)]
pub struct Joined {
    /// The cluster CA certificate, PEM.
    pub ca_cert_pem: String,
    /// This node's key, made locally.
    pub key: NodeKey,
    /// Its certificate, signed by the CA.
    pub cert: NodeCert,
    /// The P2P pre-shared key.
    pub psk: Psk,
    /// The cluster's settings.
    pub settings: Settings,
    /// The CA with its key, for a joining server.
    pub ca: Option<ClusterCa>,
    /// The join token, for a joining server (so it can admit nodes too).
    pub token: Option<Token>,
}
