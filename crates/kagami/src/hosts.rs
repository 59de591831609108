//! containerd's mirror configuration for this node: which registries get a
//! `hosts.toml` pointing at the node's registry API, and writing them when
//! the node starts (the files stay when it stops, so containerd keeps using
//! the mirror across restarts; `kagami cleanup` removes them).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use kagami_containerd::hosts::{self, DEFAULT_REGISTRY, MirrorEndpoint, RegistryHosts};
use kagami_core::Registry;

use crate::trust::NodeTrust;

/// containerd's conventional mirror configuration directory.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/containerd/certs.d";

/// Which registries containerd should pull through this node, and where
/// containerd reads its `hosts.toml` files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsConfig {
    /// containerd's `config_path` (`--containerd-config-path`).
    pub dir: PathBuf,
    /// One entry per mirrored registry (`_default` for `"*"`): its listed
    /// endpoints, their TLS and rewrites, and whether containerd may fall
    /// back to the upstream.
    pub registries: Vec<RegistryHosts>,
}

/// A registry containerd pulls through this node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mirrored {
    /// Every registry (`"*"`), through containerd's `_default` host file.
    All,
    /// One registry, by its host name as image references spell it.
    One(Registry),
}

impl std::str::FromStr for Mirrored {
    type Err = String;

    fn from_str(text: &str) -> Result<Mirrored, String> {
        if text == "*" {
            return Ok(Mirrored::All);
        }
        text.parse::<Registry>()
            .map(Mirrored::One)
            .map_err(|e| format!("{text:?} is not a registry host (or \"*\" for all): {e}"))
    }
}

impl Mirrored {
    /// The directory containerd looks the registry up by.
    pub fn host(&self) -> &str {
        match self {
            Mirrored::All => DEFAULT_REGISTRY,
            Mirrored::One(registry) => registry.as_str(),
        }
    }
}

/// Writes one `hosts.toml` per mirrored registry into `config.dir`, with
/// this node's registry (reached at `addr`) as the first host. An empty
/// list still runs, so that files written for an earlier list go away.
pub(crate) fn write(
    config: &HostsConfig,
    addr: SocketAddr,
    trust: Option<&NodeTrust>,
) -> Result<(), kagami_containerd::Error> {
    // containerd verifies the node's certificate against the cluster CA
    // and presents the node's own certificate, which the CA signed.
    let mirror = match trust {
        Some(trust) => MirrorEndpoint {
            url: format!("https://{}/v2", local(addr)),
            ca: Some(trust.material().ca_cert_path()),
            client: Some((
                trust.material().node_cert_path(),
                trust.material().node_key_path(),
            )),
        },
        None => MirrorEndpoint {
            url: format!("http://{}/v2", local(addr)),
            ca: None,
            client: None,
        },
    };
    let files: BTreeMap<String, String> = config
        .registries
        .iter()
        .filter_map(|registry| {
            let text = hosts::render_registry(&mirror, registry)?;
            Some((registry.registry.clone(), text))
        })
        .collect();
    hosts::apply(&config.dir, &files)?;
    tracing::info!(
        dir = %config.dir.display(),
        registries = ?files.keys().collect::<Vec<_>>(),
        mirror = %mirror.url,
        "containerd mirror configuration written"
    );
    Ok(())
}

/// The address the local containerd reaches the registry API at: loopback
/// when the API listens on every address.
fn local(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_means_every_registry_and_hosts_are_checked() {
        assert_eq!("*".parse::<Mirrored>(), Ok(Mirrored::All));
        assert_eq!(
            "registry.k8s.io".parse::<Mirrored>().unwrap().host(),
            "registry.k8s.io"
        );
        assert!("not a host!".parse::<Mirrored>().is_err());
    }

    #[test]
    fn an_unspecified_bind_address_is_reached_on_loopback() {
        assert_eq!(
            local("0.0.0.0:6443".parse().unwrap()),
            "127.0.0.1:6443".parse().unwrap()
        );
        assert_eq!(local("[::]:1".parse().unwrap()), "[::1]:1".parse().unwrap());
        assert_eq!(
            local("10.0.0.5:6443".parse().unwrap()),
            "10.0.0.5:6443".parse().unwrap()
        );
    }
}
