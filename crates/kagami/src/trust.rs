//! A node's cluster trust at run time: its material on disk (see
//! [`kagami_cluster::Material`]), the TLS configurations built from it, and
//! keeping the node certificate fresh.
//!
//! A server makes the material on its first start ([`NodeTrust::server`]);
//! an agent, or a second server, gets it from a server with a join token
//! ([`NodeTrust::join`], in [`crate::join`]). Both keep a [`NodeTrust`]
//! whose configurations are swapped in place when the certificate is
//! renewed, so connections made after a renewal use the new certificate.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use kagami_cluster::tls::{self, Identity};
use kagami_cluster::{
    ClusterCa, Material, NODE_CERT_VALIDITY, NodeCert, NodeKey, NodeNames, Psk, RENEW_BEFORE,
    Settings, Token,
};

/// Why trust material could not be made, read or renewed.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// Reading, writing or using the material failed.
    #[error(transparent)]
    Material(#[from] kagami_cluster::Error),
    /// This node has no material and no way to get it.
    #[error(
        "{} holds no cluster material: start a server first, or join with --server and --token",
        dir.display()
    )]
    NotJoined {
        /// The material's directory.
        dir: PathBuf,
    },
    /// A server URL that is not one.
    #[error("--server {url:?} is not an https:// URL")]
    ServerUrl {
        /// What was given.
        url: String,
    },
    /// Joining failed.
    #[error("cannot join through {server}: {reason}")]
    Join {
        /// The server asked.
        server: String,
        /// Why.
        reason: String,
    },
    /// Certificate durations that do not fit together.
    #[error("{reason}")]
    Policy {
        /// Which durations, and why.
        reason: String,
    },
    /// Renewing the node certificate failed.
    #[error("cannot renew the node certificate: {reason}")]
    Renew {
        /// Why.
        reason: String,
    },
}

/// How node certificates are issued and renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertPolicy {
    /// Validity of the certificates this node issues (servers) or asks for.
    pub validity: Duration,
    /// Renew when less than this remains.
    pub renew_before: Duration,
    /// How often the remaining validity is checked.
    pub check_every: Duration,
}

/// A duration as an operator would write it: `400d`, `36h`, `90s`, `250ms`.
fn show(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs == 0 && duration.is_zero() {
        return "0s".to_owned();
    }
    if duration.subsec_nanos() != 0 {
        return format!("{}ms", duration.as_millis());
    }
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

impl CertPolicy {
    /// The shortest `renew_before` and `check_every`.
    pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

    /// Checks the durations against each other: the validity above
    /// [`kagami_cluster::MIN_VALIDITY`] and above `renew_before` (or every
    /// check would renew), `renew_before` and `check_every` at least
    /// [`CertPolicy::MIN_INTERVAL`], and checks no further apart than
    /// `renew_before` (or a check could miss the whole window).
    pub fn check(&self) -> Result<(), TrustError> {
        let fail = |reason: String| Err(TrustError::Policy { reason });
        if self.validity < kagami_cluster::MIN_VALIDITY {
            return fail(format!(
                "--node-cert-validity {} is shorter than {}",
                show(self.validity),
                show(kagami_cluster::MIN_VALIDITY)
            ));
        }
        if self.renew_before < Self::MIN_INTERVAL || self.check_every < Self::MIN_INTERVAL {
            return fail(format!(
                "--renew-before and --renew-check-interval must be at least {}",
                show(Self::MIN_INTERVAL)
            ));
        }
        if self.renew_before >= self.validity {
            return fail(format!(
                "--renew-before {} is not shorter than --node-cert-validity {}: every check would renew",
                show(self.renew_before),
                show(self.validity)
            ));
        }
        if self.check_every > self.renew_before {
            return fail(format!(
                "--renew-check-interval {} is longer than --renew-before {}: a check could miss the renewal window",
                show(self.check_every),
                show(self.renew_before)
            ));
        }
        Ok(())
    }
}

impl Default for CertPolicy {
    fn default() -> CertPolicy {
        CertPolicy {
            validity: NODE_CERT_VALIDITY,
            renew_before: RENEW_BEFORE,
            check_every: Duration::from_secs(3600),
        }
    }
}

/// A node's trust material and the TLS configurations made from it.
#[derive(Clone)]
pub struct NodeTrust {
    inner: Arc<Inner>,
}

struct Inner {
    material: Material,
    names: NodeNames,
    policy: CertPolicy,
    /// The CA with its key: servers only.
    ca: Option<ClusterCa>,
    /// The server an agent joined through, asked for renewals and peers.
    server: Option<String>,
    current: RwLock<Current>,
}

/// What changes on renewal.
struct Current {
    identity: Identity,
    cert: NodeCert,
    server_config: Arc<rustls::ServerConfig>,
    join_config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for NodeTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTrust")
            .field("dir", &self.inner.material.dir())
            .field("server", &self.inner.ca.is_some())
            .finish_non_exhaustive()
    }
}

impl NodeTrust {
    /// A server's trust: the CA, PSK and join token are made on the first
    /// start and reused after; the node certificate is issued when missing
    /// or due for renewal.
    pub fn server(
        data_dir: &Path,
        names: NodeNames,
        settings: Settings,
        policy: CertPolicy,
    ) -> Result<NodeTrust, TrustError> {
        policy.check()?;
        let material = Material::new(data_dir);
        let ca = match material.ca()? {
            Some(ca) => ca,
            None => {
                if material.ca_cert()?.is_some() {
                    // An agent's material: it has no CA key to be a server with.
                    return Err(TrustError::Join {
                        server: "this node".to_owned(),
                        reason: format!(
                            "{} holds an agent's material (no CA key); run `kagami agent`, or join as a server with --server and --token",
                            material.dir().display()
                        ),
                    });
                }
                let ca = ClusterCa::generate()?;
                material.save_ca(&ca)?;
                tracing::info!(dir = %material.dir().display(), "created the cluster CA");
                ca
            }
        };
        if material.psk()?.is_none() {
            material.save_psk(&Psk::generate())?;
            tracing::info!(path = %material.psk_path().display(), "created the P2P pre-shared key");
        }
        if material.token()?.is_none() {
            material.save_token(&Token::generate(ca.fingerprint()))?;
            tracing::info!(
                "created the agent join token (print it with `kagami token`; the server token, which also hands out the CA key, with `kagami token --server`)"
            );
        }
        material.save_settings(&settings)?;
        let (key, cert) = match (material.node_key()?, material.node_cert()?) {
            // A certificate for another peer ID (the identity key was
            // replaced) would make every peer refuse this node.
            (Some(key), Some(cert))
                if !cert.needs_renewal(SystemTime::now(), policy.renew_before)
                    && cert.peer_id() == names.peer_id.as_deref() =>
            {
                (key, cert)
            }
            _ => {
                let key = NodeKey::generate()?;
                let cert = ca.issue(&key, &names, policy.validity)?;
                material.save_node(&key, &cert)?;
                (key, cert)
            }
        };
        NodeTrust::assemble(material, names, policy, Some(ca), None, &key, cert)
    }

    /// Joins the cluster through `server` with `token`, unless this node
    /// joined already (its material is complete), and returns its trust.
    /// A failed join writes nothing.
    pub async fn join(
        data_dir: &Path,
        server: &str,
        token: Option<&Token>,
        names: NodeNames,
        identity: &libp2p_identity::Keypair,
        policy: CertPolicy,
        as_server: bool,
    ) -> Result<NodeTrust, TrustError> {
        policy.check()?;
        let server = server.trim_end_matches('/').to_owned();
        if let Some(trust) =
            NodeTrust::joined(data_dir, names.clone(), policy, Some(server.clone()))?
        {
            if as_server && !trust.is_server() {
                return Err(TrustError::Join {
                    server,
                    reason: "this node joined as an agent (no CA key); run `kagami agent`"
                        .to_owned(),
                });
            }
            return Ok(trust);
        }
        let token = token.ok_or_else(|| TrustError::Join {
            server: server.clone(),
            reason: "this node has not joined yet: give it the cluster's token (--token)"
                .to_owned(),
        })?;
        let joined = crate::join::join(&server, token, &names, identity, as_server).await?;
        let material = Material::new(data_dir);
        material.save_joined(&joined)?;
        tracing::info!(
            %server,
            role = if as_server { "server" } else { "agent" },
            not_after = %humantime::format_rfc3339_seconds(joined.cert.not_after()),
            "joined the cluster"
        );
        NodeTrust::joined(data_dir, names, policy, Some(server.clone()))?.ok_or(
            TrustError::NotJoined {
                dir: material.dir(),
            },
        )
    }

    /// The cluster settings: an agent asks its server (they may have
    /// changed since it joined) and keeps the answer; a server, or an agent
    /// whose server does not answer, uses the ones it has.
    pub async fn settings(&self) -> Result<Settings, TrustError> {
        let material = &self.inner.material;
        if let (None, Some(server)) = (&self.inner.ca, &self.inner.server) {
            match crate::join::server_settings(server, &self.identity()).await {
                Ok(fresh) => {
                    if material.settings()?.as_ref() != Some(&fresh) {
                        tracing::info!(
                            ?fresh,
                            "the cluster's settings changed; using the server's"
                        );
                        material.save_settings(&fresh)?;
                    }
                    return Ok(fresh);
                }
                Err(e) => {
                    tracing::warn!(%server, error = %e, "cannot ask the server for the cluster's settings; using the last known ones");
                }
            }
        }
        Ok(material.settings()?.unwrap_or_default())
    }

    /// The trust of a node that joined already (its material complete).
    pub fn joined(
        data_dir: &Path,
        names: NodeNames,
        policy: CertPolicy,
        server: Option<String>,
    ) -> Result<Option<NodeTrust>, TrustError> {
        let material = Material::new(data_dir);
        let (Some(_), Some(key), Some(cert), Some(_)) = (
            material.ca_cert()?,
            material.node_key()?,
            material.node_cert()?,
            material.psk()?,
        ) else {
            return Ok(None);
        };
        let ca = material.ca()?;
        let (key, cert) = if cert.peer_id() == names.peer_id.as_deref() {
            (key, cert)
        } else if let Some(ca) = &ca {
            // A server re-issues its own certificate for its new identity.
            let key = NodeKey::generate()?;
            let cert = ca.issue(&key, &names, policy.validity)?;
            material.save_node(&key, &cert)?;
            (key, cert)
        } else {
            tracing::warn!(
                certificate = cert.peer_id().unwrap_or("(none)"),
                node = names.peer_id.as_deref().unwrap_or("(none)"),
                path = %material.node_cert_path().display(),
                "the node certificate binds another peer ID (the P2P identity key changed): peers will refuse this node; delete the certificate and join again with --token"
            );
            (key, cert)
        };
        NodeTrust::assemble(material, names, policy, ca, server, &key, cert).map(Some)
    }

    fn assemble(
        material: Material,
        names: NodeNames,
        policy: CertPolicy,
        ca: Option<ClusterCa>,
        server: Option<String>,
        key: &NodeKey,
        cert: NodeCert,
    ) -> Result<NodeTrust, TrustError> {
        let ca_pem = material.ca_cert()?.ok_or_else(|| TrustError::NotJoined {
            dir: material.dir(),
        })?;
        let current = Current::new(ca_pem, key, cert)?;
        Ok(NodeTrust {
            inner: Arc::new(Inner {
                material,
                names,
                policy,
                ca,
                server,
                current: RwLock::new(current),
            }),
        })
    }

    /// The material on disk.
    pub fn material(&self) -> &Material {
        &self.inner.material
    }

    /// Whether this node holds the CA key (a server).
    pub fn is_server(&self) -> bool {
        self.inner.ca.is_some()
    }

    /// The CA, on servers.
    pub(crate) fn ca(&self) -> Option<&ClusterCa> {
        self.inner.ca.as_ref()
    }

    /// The server an agent joined through.
    pub(crate) fn server_url(&self) -> Option<&str> {
        self.inner.server.as_deref()
    }

    /// The validity of certificates this node issues.
    pub(crate) fn policy(&self) -> CertPolicy {
        self.inner.policy
    }

    /// The node certificate in use.
    pub fn cert(&self) -> NodeCert {
        self.read().cert.clone()
    }

    /// The TLS identity in use.
    pub fn identity(&self) -> Identity {
        self.read().identity.clone()
    }

    /// The registry's mTLS server configuration in use.
    pub(crate) fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.read().server_config.clone()
    }

    /// The join endpoint's server configuration in use.
    pub(crate) fn join_config(&self) -> Arc<rustls::ServerConfig> {
        self.read().join_config.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.inner
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Renews the node certificate if it is due: a server signs a new one
    /// itself, an agent asks its server. Returns whether it renewed.
    pub(crate) async fn renew_if_due(&self) -> Result<bool, TrustError> {
        let policy = self.inner.policy;
        if !self
            .cert()
            .needs_renewal(SystemTime::now(), policy.renew_before)
        {
            return Ok(false);
        }
        let key = NodeKey::generate()?;
        let cert = match &self.inner.ca {
            Some(ca) => ca.issue(&key, &self.inner.names, policy.validity)?,
            None => {
                let server = self.inner.server.as_deref().ok_or(TrustError::Renew {
                    reason: "this agent knows no server to ask (start it with --server)".to_owned(),
                })?;
                let csr = key.csr(&self.inner.names)?;
                crate::join::renew(server, &self.identity(), &csr).await?
            }
        };
        self.inner.material.save_node(&key, &cert)?;
        let ca_pem = self.identity().ca_pem;
        let mut current = self
            .inner
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = Current::new(ca_pem, &key, cert)?;
        Ok(true)
    }

    /// Checks the certificate every `check_every` and renews it when due,
    /// until dropped. `renewed` is called after each renewal.
    pub(crate) fn spawn_renewal(
        &self,
        renewed: impl Fn() + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let trust = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(trust.inner.policy.check_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match trust.renew_if_due().await {
                    Ok(true) => {
                        tracing::info!(
                            not_after = %humantime::format_rfc3339_seconds(trust.cert().not_after()),
                            "node certificate renewed"
                        );
                        renewed();
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "node certificate renewal failed; will retry")
                    }
                }
            }
        })
    }
}

impl Current {
    fn new(ca_pem: String, key: &NodeKey, cert: NodeCert) -> Result<Current, TrustError> {
        let identity = Identity {
            ca_pem,
            cert_pem: cert.pem().to_owned(),
            key_pem: key.pem().to_owned(),
        };
        Ok(Current {
            server_config: tls::server_config(&identity)?,
            join_config: tls::join_server_config(&identity)?,
            identity,
            cert,
        })
    }
}

/// This machine's host name, as the kernel has it.
pub fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// The names and addresses a node certificate is issued for: `localhost`,
/// loopback, the host name, the bind address when it is a specific one,
/// and any given with `--node-ip` / `--node-name`; plus the peer ID.
pub fn node_names(
    bind: IpAddr,
    extra_ips: &[IpAddr],
    extra_names: &[String],
    peer_id: Option<String>,
) -> NodeNames {
    let mut dns = vec!["localhost".to_owned()];
    if let Some(host) = host_name()
        && !dns.contains(&host)
    {
        dns.push(host);
    }
    for name in extra_names {
        if !dns.contains(name) {
            dns.push(name.clone());
        }
    }
    let mut ips: Vec<IpAddr> = vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
    if !bind.is_unspecified() {
        ips.push(bind);
    }
    for ip in extra_ips {
        if !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    NodeNames { dns, ips, peer_id }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(validity: u64, renew_before: u64, check_every: u64) -> CertPolicy {
        CertPolicy {
            validity: Duration::from_secs(validity),
            renew_before: Duration::from_secs(renew_before),
            check_every: Duration::from_secs(check_every),
        }
    }

    /// Regression: `--node-cert-validity 0s` issued an expired certificate
    /// and `--renew-before 400d` renewed at every check.
    #[test]
    fn certificate_durations_are_checked_against_each_other() {
        CertPolicy::default().check().unwrap();
        policy(40, 35, 1).check().unwrap();
        let refused = |p: CertPolicy| p.check().unwrap_err().to_string();
        assert!(refused(policy(0, 1, 1)).contains("--node-cert-validity"));
        let day = 24 * 3600;
        assert!(refused(policy(365 * day, 400 * day, 3600)).contains("every check would renew"));
        assert!(refused(policy(3600, 0, 1)).contains("at least"));
        assert!(refused(policy(3600, 60, 120)).contains("miss the renewal window"));
    }
}
