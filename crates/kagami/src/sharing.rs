//! Which registries this node shares through the P2P network: those listed
//! under `mirrors:` in registries.yaml and with `--mirror`, `"*"` for all;
//! but never a registry on `localhost`, loopback or the node's own
//! addresses, since that name means a different registry on every node.
//! The rule is the library's: [`Builder::start`](crate::Builder::start)
//! takes the node's local hosts out of whatever sets it is given, so an
//! embedder cannot share them by accident.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use kagami_core::{Registry, RegistrySet, registry_host};

use crate::Mirrored;

/// The hosts that name this node itself, never shared: `localhost`,
/// loopback, the host name, `bind` when it is a specific address, and
/// `node_ips`. Written as in image names, without brackets.
pub fn local_hosts(bind: IpAddr, node_ips: &[IpAddr]) -> BTreeSet<String> {
    let mut local: BTreeSet<String> = ["localhost", "127.0.0.1", "::1"].map(str::to_owned).into();
    local.extend(crate::host_name());
    if !bind.is_unspecified() {
        local.insert(bind.to_string());
    }
    local.extend(node_ips.iter().map(ToString::to_string));
    local
}

/// The registries a node shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRegistries {
    all: bool,
    registries: BTreeSet<Registry>,
    /// Hosts never shared.
    local: BTreeSet<String>,
}

impl SharedRegistries {
    /// From `--mirror` and the `mirrors:` names of registries.yaml; `bind`
    /// and `node_ips` are the node's own addresses.
    pub fn new(
        flags: &[Mirrored],
        listed: &[Mirrored],
        bind: IpAddr,
        node_ips: &[IpAddr],
    ) -> SharedRegistries {
        let local = local_hosts(bind, node_ips);
        let mut all = false;
        let mut registries = BTreeSet::new();
        for entry in flags.iter().chain(listed) {
            match entry {
                Mirrored::All => all = true,
                Mirrored::One(registry) if local.contains(registry_host(registry)) => {
                    tracing::info!(%registry, "a local registry is never shared: it is a different registry on every node");
                }
                Mirrored::One(registry) => {
                    registries.insert(registry.clone());
                }
            }
        }
        SharedRegistries {
            all,
            registries,
            local,
        }
    }

    /// Whether nothing is shared (the node then stays out of the network).
    pub fn is_empty(&self) -> bool {
        !self.all && self.registries.is_empty()
    }

    /// The set the registry API, the mirror and the advertiser ask.
    pub fn set(&self) -> RegistrySet {
        if self.all {
            RegistrySet::AllExcept(self.local.clone())
        } else {
            RegistrySet::Only(self.registries.clone())
        }
    }

    /// The registries containerd is pointed at this node for.
    pub fn hosts(&self) -> Vec<Mirrored> {
        let mut hosts: Vec<Mirrored> = self.registries.iter().cloned().map(Mirrored::One).collect();
        if self.all {
            hosts.push(Mirrored::All);
        }
        hosts
    }
}

impl fmt::Display for SharedRegistries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.registries.iter().map(Registry::as_str).collect();
        if self.all {
            names.push("*");
        }
        write!(f, "{}", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str) -> Mirrored {
        Mirrored::One(name.parse().unwrap())
    }

    #[test]
    fn local_registries_are_never_shared() {
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        let shared = SharedRegistries::new(
            &[one("docker.io"), one("localhost:5000")],
            &[one("10.0.0.5:5000"), one("[::1]:5000"), one("quay.io")],
            "0.0.0.0".parse().unwrap(),
            &[ip],
        );
        assert_eq!(shared.to_string(), "docker.io, quay.io");
        let set = shared.set();
        assert!(set.contains(&"quay.io".parse().unwrap()));
        assert!(!set.contains(&"localhost:5000".parse().unwrap()));
    }

    #[test]
    fn a_star_shares_all_but_local_registries_and_nothing_listed_shares_nothing() {
        let shared =
            SharedRegistries::new(&[Mirrored::All], &[], "127.0.0.1".parse().unwrap(), &[]);
        let set = shared.set();
        assert!(set.contains(&"ghcr.io".parse().unwrap()));
        assert!(!set.contains(&"localhost:5000".parse().unwrap()));
        assert!(!set.contains(&"127.0.0.1:5000".parse().unwrap()));
        let none = SharedRegistries::new(&[], &[], "0.0.0.0".parse().unwrap(), &[]);
        assert!(none.is_empty());
    }
}
