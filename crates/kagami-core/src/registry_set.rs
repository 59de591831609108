//! [`RegistrySet`]: which registries a node shares (K3s: those listed under
//! `mirrors:` in `registries.yaml`, `"*"` for all). The registry API, the
//! mirror path and the advertiser all ask the same set.

use std::collections::BTreeSet;

use crate::Registry;

/// A set of registries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RegistrySet {
    /// Every registry.
    #[default]
    All,
    /// Every registry but those on these hosts, whatever their port
    /// (`"*"` without `localhost` and the node's own addresses). Hosts are
    /// written as in image names, without brackets: `localhost`, `::1`.
    AllExcept(BTreeSet<String>),
    /// Only these.
    Only(BTreeSet<Registry>),
}

impl RegistrySet {
    /// Whether `registry` is in the set.
    pub fn contains(&self, registry: &Registry) -> bool {
        match self {
            RegistrySet::All => true,
            RegistrySet::AllExcept(excluded) => !excluded.contains(host(registry)),
            RegistrySet::Only(registries) => registries.contains(registry),
        }
    }

    /// The set without any registry on one of `hosts` (written as in
    /// image names, without brackets), whatever its port.
    pub fn without_hosts(self, hosts: &BTreeSet<String>) -> RegistrySet {
        match self {
            RegistrySet::All => RegistrySet::AllExcept(hosts.clone()),
            RegistrySet::AllExcept(mut excluded) => {
                excluded.extend(hosts.iter().cloned());
                RegistrySet::AllExcept(excluded)
            }
            RegistrySet::Only(mut registries) => {
                registries.retain(|registry| !hosts.contains(host(registry)));
                RegistrySet::Only(registries)
            }
        }
    }

    /// Whether no registry at all is in the set.
    pub fn is_empty(&self) -> bool {
        matches!(self, RegistrySet::Only(registries) if registries.is_empty())
    }
}

/// The host part of a registry name: no port, no IPv6 brackets.
pub fn host(registry: &Registry) -> &str {
    let name = registry.as_str();
    if let Some(rest) = name.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    name.split(':').next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership() {
        let hub: Registry = "docker.io".parse().unwrap();
        let local: Registry = "localhost:5000".parse().unwrap();
        assert!(RegistrySet::All.contains(&local));
        let all_but = RegistrySet::AllExcept(["localhost".to_owned(), "::1".to_owned()].into());
        assert!(all_but.contains(&hub) && !all_but.contains(&local));
        assert!(!all_but.contains(&"[::1]:5000".parse().unwrap()));
        assert!(!all_but.contains(&"localhost".parse().unwrap()));
        let only = RegistrySet::Only([hub.clone()].into());
        assert!(only.contains(&hub) && !only.contains(&local));
        assert!(RegistrySet::Only(BTreeSet::new()).is_empty());
        assert!(!RegistrySet::All.is_empty());
    }

    #[test]
    fn hosts_are_taken_out_of_every_kind_of_set() {
        let local: BTreeSet<String> = ["localhost".to_owned(), "10.0.0.5".to_owned()].into();
        let hub: Registry = "docker.io".parse().unwrap();
        let mine: Registry = "10.0.0.5:5000".parse().unwrap();
        for set in [
            RegistrySet::All,
            RegistrySet::AllExcept(["::1".to_owned()].into()),
            RegistrySet::Only([hub.clone(), mine.clone()].into()),
        ] {
            let without = set.without_hosts(&local);
            assert!(without.contains(&hub), "{without:?}");
            assert!(!without.contains(&mine), "{without:?}");
            assert!(!without.contains(&"localhost:5000".parse().unwrap()));
        }
    }
}
