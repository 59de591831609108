//! An in-memory [`Router`](kagami_core::router::Router) for tests of other
//! crates: nodes joined to one [`MemoryNetwork`] see each other's provide
//! and withdraw at once, with no sockets and no timing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use kagami_core::Key;
use kagami_core::router::{self, Near, Peer};

#[derive(Debug, Default)]
struct State {
    /// Joined nodes, by peer ID.
    nodes: BTreeMap<String, Peer>,
    /// Providers of each key, in the order they announced it.
    providers: HashMap<Key, Vec<Peer>>,
}

/// A shared in-memory DHT. Clones are the same network.
#[derive(Debug, Clone, Default)]
pub struct MemoryNetwork {
    state: Arc<Mutex<State>>,
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> MemoryNetwork {
        MemoryNetwork::default()
    }

    /// Adds a node with identity `peer` (its `id` must be unique, its
    /// `addr` is where others will fetch from) and returns its router.
    pub fn join(&self, peer: Peer) -> MemoryRouter {
        self.lock().nodes.insert(peer.id.clone(), peer.clone());
        MemoryRouter {
            network: self.clone(),
            peer,
        }
    }

    /// Every provider of `key`, this node or not (for assertions).
    pub fn providers(&self, key: &Key) -> Vec<Peer> {
        self.lock().providers.get(key).cloned().unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not take the other nodes down.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One node of a [`MemoryNetwork`]. Dropping it takes the node out of the
/// network (others stop counting it for `is_ready`) but leaves its records,
/// as a dead node's records linger in the DHT: withdraw first to remove
/// them.
#[derive(Debug)]
pub struct MemoryRouter {
    network: MemoryNetwork,
    peer: Peer,
}

impl MemoryRouter {
    /// This node's identity and registry address.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }
}

impl Drop for MemoryRouter {
    fn drop(&mut self) {
        self.network.lock().nodes.remove(&self.peer.id);
    }
}

#[async_trait]
impl router::Router for MemoryRouter {
    async fn provide(&self, keys: &[Key]) -> Result<(), router::Error> {
        let mut state = self.network.lock();
        for key in keys {
            let providers = state.providers.entry(key.clone()).or_default();
            if !providers.iter().any(|p| p.id == self.peer.id) {
                providers.push(self.peer.clone());
            }
        }
        Ok(())
    }

    async fn withdraw(&self, keys: &[Key]) -> Result<(), router::Error> {
        let mut state = self.network.lock();
        for key in keys {
            if let Some(providers) = state.providers.get_mut(key) {
                providers.retain(|p| p.id != self.peer.id);
                if providers.is_empty() {
                    state.providers.remove(key);
                }
            }
        }
        Ok(())
    }

    async fn find_providers(&self, key: &Key, limit: usize) -> Result<Vec<Peer>, router::Error> {
        let state = self.network.lock();
        let providers = state
            .providers
            .get(key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        Ok(providers
            .iter()
            .filter(|p| p.id != self.peer.id)
            .take(limit)
            .cloned()
            .collect())
    }

    /// Every joined node ordered by the XOR of sha256 hashes, as Kademlia
    /// orders them: the same order on every node.
    async fn closest(&self, key: &Key, limit: usize) -> Result<Vec<Near>, router::Error> {
        let target = hash(key.to_string().as_bytes());
        let state = self.network.lock();
        let mut nodes: Vec<(Vec<u8>, &Peer)> = state
            .nodes
            .values()
            .map(|peer| {
                let mine = hash(peer.id.as_bytes());
                let distance = mine.iter().zip(&target).map(|(a, b)| a ^ b).collect();
                (distance, peer)
            })
            .collect();
        nodes.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(nodes
            .into_iter()
            .take(limit)
            .map(|(_, peer)| {
                if peer.id == self.peer.id {
                    Near::ThisNode
                } else {
                    Near::Peer(peer.clone())
                }
            })
            .collect())
    }

    fn is_ready(&self) -> bool {
        self.network
            .lock()
            .nodes
            .keys()
            .any(|id| *id != self.peer.id)
    }
}

fn hash(bytes: &[u8]) -> Vec<u8> {
    kagami_core::Hasher::digest(kagami_core::Algorithm::Sha256, bytes)
        .hex()
        .as_bytes()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use kagami_core::router::Router as _;

    use super::*;

    fn peer(n: u8) -> Peer {
        Peer {
            id: format!("node-{n}"),
            addr: ([10, 0, 0, n], 6443).into(),
        }
    }

    #[tokio::test]
    async fn providers_are_seen_by_others_at_once_never_by_themselves() {
        let net = MemoryNetwork::new();
        let a = net.join(peer(1));
        assert!(!a.is_ready(), "alone");
        let b = net.join(peer(2));
        let c = net.join(peer(3));
        assert!(a.is_ready() && b.is_ready());
        let key: Key = "docker.io/library/nginx:1.25".parse().unwrap();

        a.provide(std::slice::from_ref(&key)).await.unwrap();
        a.provide(std::slice::from_ref(&key)).await.unwrap();
        b.provide(std::slice::from_ref(&key)).await.unwrap();
        assert_eq!(
            c.find_providers(&key, 10).await.unwrap(),
            vec![peer(1), peer(2)]
        );
        assert_eq!(c.find_providers(&key, 1).await.unwrap(), vec![peer(1)]);
        assert_eq!(a.find_providers(&key, 10).await.unwrap(), vec![peer(2)]);

        a.withdraw(std::slice::from_ref(&key)).await.unwrap();
        assert_eq!(c.find_providers(&key, 10).await.unwrap(), vec![peer(2)]);
        b.withdraw(std::slice::from_ref(&key)).await.unwrap();
        assert!(c.find_providers(&key, 10).await.unwrap().is_empty());
        assert!(net.providers(&key).is_empty());

        drop(b);
        drop(c);
        assert!(!a.is_ready(), "the others left");
    }
}
