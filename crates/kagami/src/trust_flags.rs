//! The flags of cluster trust: joining through a server, the names a node
//! certificate covers, its life, and the insecure escape hatch.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kagami::{CertPolicy, NodeTrust};
use kagami_cluster::{Settings, Token};

#[derive(Debug, Args)]
pub struct TrustArgs {
    /// A server to join through, `https://HOST:6443` (agents; a second server).
    #[arg(long, env = "KAGAMI_SERVER")]
    server: Option<String>,

    /// The cluster's join token (`kagami token` on a server prints it); needed until the node has joined.
    #[arg(long, env = "KAGAMI_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// An address the node certificate is valid for, besides loopback and the bind address. Repeatable.
    #[arg(long = "node-ip", env = "KAGAMI_NODE_IP", value_delimiter = ',')]
    node_ips: Vec<IpAddr>,

    /// A host name the node certificate is valid for, besides localhost and the host name. Repeatable.
    #[arg(long = "node-name", env = "KAGAMI_NODE_NAME", value_delimiter = ',')]
    node_names: Vec<String>,

    /// Validity of the node certificates this node issues or asks for.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "365d")]
    node_cert_validity: Duration,

    /// Renew the node certificate when less than this remains.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "90d")]
    renew_before: Duration,

    /// How often the node certificate's remaining validity is checked.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    renew_check_interval: Duration,

    /// LAB USE ONLY: serve plain HTTP with no client certificates, and fetch from peers unauthenticated.
    #[arg(long, env = "KAGAMI_INSECURE_HTTP")]
    pub insecure_http: bool,
}

/// What a node is in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Owns the CA (the first server makes it; others join as servers).
    Server,
    /// Joins through a server.
    Agent,
}

impl TrustArgs {
    /// The addresses given with `--node-ip`.
    pub fn node_ips(&self) -> Vec<IpAddr> {
        self.node_ips.clone()
    }

    fn policy(&self) -> CertPolicy {
        CertPolicy {
            validity: self.node_cert_validity,
            renew_before: self.renew_before,
            check_every: self.renew_check_interval,
        }
    }

    /// The node's trust: made (first server), loaded, or got by joining.
    pub async fn load(
        &self,
        role: Role,
        data_dir: &Path,
        bind: IpAddr,
        identity: &kagami_p2p::Keypair,
        settings: Settings,
    ) -> anyhow::Result<NodeTrust> {
        let peer_id = identity.public().to_peer_id().to_string();
        let names = kagami::node_names(bind, &self.node_ips, &self.node_names, Some(peer_id));
        // K3s's variables, read only when kagami's flag and variable are unset.
        let server = self
            .server
            .clone()
            .or_else(|| std::env::var("K3S_URL").ok());
        let token_text = self
            .token
            .clone()
            .or_else(|| std::env::var("K3S_TOKEN").ok());
        let token = token_text
            .as_deref()
            .map(|text| {
                text.parse::<Token>()
                    .context("--token is not a kagami join token")
            })
            .transpose()?;
        let trust = match (role, &server) {
            (Role::Server, None) => NodeTrust::server(data_dir, names, settings, self.policy())?,
            (role, Some(server)) => {
                NodeTrust::join(
                    data_dir,
                    server,
                    token.as_ref(),
                    names,
                    identity,
                    self.policy(),
                    role == Role::Server,
                )
                .await?
            }
            (Role::Agent, None) => anyhow::bail!(
                "an agent needs --server https://SERVER:6443 (and --token until it has joined)"
            ),
        };
        Ok(trust)
    }
}
