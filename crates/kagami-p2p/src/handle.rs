//! [`Router`], the cheap cloneable handle to a running node: it sends
//! commands to the node's task and waits (boundedly) for the replies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use kagami_core::Key;
use kagami_core::router::{self, Near, Peer};
use libp2p::swarm::{self, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};

use crate::behaviour::Behaviour;
use crate::node::Node;
use crate::{Config, Error, transport};

/// Commands waiting for the node; senders wait when it is full.
const COMMAND_QUEUE: usize = 256;
/// How long `start` waits for the listener to come up.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long provide, withdraw and shutdown wait for the node to answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack on top of the lookup timeout before a caller gives up on the node.
const LOOKUP_GRACE: Duration = Duration::from_secs(1);

pub(crate) enum Command {
    Provide {
        keys: Vec<Key>,
        reply: oneshot::Sender<()>,
    },
    Withdraw {
        keys: Vec<Key>,
        reply: oneshot::Sender<()>,
    },
    FindProviders {
        key: Key,
        limit: usize,
        reply: oneshot::Sender<Vec<Peer>>,
    },
    Closest {
        key: Key,
        limit: usize,
        reply: oneshot::Sender<Vec<Near>>,
    },
    RoutingTable {
        reply: oneshot::Sender<Vec<(PeerId, Vec<Multiaddr>)>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// What the node publishes for handles to read without a round trip.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) peer_id: PeerId,
    pub(crate) routing_peers: AtomicUsize,
    pub(crate) provided: AtomicUsize,
    pub(crate) listen_addrs: Mutex<Vec<Multiaddr>>,
}

/// A handle to a running libp2p node, the [`router::Router`] of a real
/// cluster. Clones share the node; the node stops when the last clone is
/// dropped or [`shutdown`](Router::shutdown) is called, closing its
/// listener. Every method is safe to cancel.
#[derive(Debug, Clone)]
pub struct Router {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    lookup_timeout: Duration,
}

impl Router {
    /// Starts a node: checks the config, listens, and begins bootstrapping
    /// in the background. Returns once the listener is up, so
    /// [`listen_addrs`](Router::listen_addrs) is known. Needs a tokio runtime.
    pub async fn start(config: Config) -> Result<Router, Error> {
        config.validate()?;
        let peer_id = config.keypair.public().to_peer_id();
        let transport = transport::build(&config.keypair, &config.psk, config.handshake_timeout)?;
        let behaviour = Behaviour::new(&config.keypair, &config);
        let swarm_config =
            swarm::Config::with_tokio_executor().with_idle_connection_timeout(config.idle_timeout);
        let mut swarm = Swarm::new(transport, behaviour, peer_id, swarm_config);
        let listen_err = |source: Box<dyn std::error::Error + Send + Sync>| Error::Listen {
            addr: config.listen.clone(),
            source,
        };
        let listener = swarm
            .listen_on(config.listen.clone())
            .map_err(|e| listen_err(Box::new(e)))?;
        let first = tokio::time::timeout(LISTEN_TIMEOUT, async {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::NewListenAddr {
                        listener_id,
                        address,
                    } if listener_id == listener => return Ok(address),
                    SwarmEvent::ListenerError { error, .. } => return Err(error),
                    SwarmEvent::ListenerClosed { reason, .. } => {
                        return Err(reason
                            .err()
                            .unwrap_or_else(|| std::io::Error::other("listener closed")));
                    }
                    _ => {}
                }
            }
        })
        .await
        .map_err(|e| listen_err(Box::new(e)))?
        .map_err(|e| listen_err(Box::new(e)))?;
        tracing::info!(peer = %peer_id, addr = %first, psk = %config.psk.fingerprint(), "p2p node listening");

        let shared = Arc::new(Shared {
            peer_id,
            routing_peers: AtomicUsize::new(0),
            provided: AtomicUsize::new(0),
            listen_addrs: Mutex::new(vec![first]),
        });
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let lookup_timeout = config.lookup_timeout;
        let node = Node::new(swarm, receiver, Arc::clone(&shared), &config);
        tokio::spawn(node.run());
        Ok(Router {
            commands,
            shared,
            lookup_timeout,
        })
    }

    /// This node's peer ID.
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id
    }

    /// The addresses the node listens on (the real port when configured
    /// with port 0), without the `/p2p/<id>` suffix.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        match self.shared.listen_addrs.lock() {
            Ok(addrs) => addrs.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// How many peers the routing table holds (for metrics and status).
    pub fn routing_peers(&self) -> usize {
        self.shared.routing_peers.load(Ordering::Relaxed)
    }

    /// The peers in the routing table and the addresses known for each,
    /// for the status page; empty when the node does not answer in time.
    pub async fn routing_table(&self) -> Vec<(PeerId, Vec<Multiaddr>)> {
        self.call(COMMAND_TIMEOUT, |reply| Command::RoutingTable { reply })
            .await
            .unwrap_or_default()
    }

    /// How many keys this node provides (for metrics and status).
    pub fn provided_keys(&self) -> usize {
        self.shared.provided.load(Ordering::Relaxed)
    }

    /// Stops the node and closes its listener, for every clone of this
    /// handle. Records it published stay in the DHT until they expire.
    pub async fn shutdown(&self) {
        let result = self.call(COMMAND_TIMEOUT, |reply| Command::Shutdown { reply });
        if let Err(e) = result.await {
            tracing::debug!(error = %e, "p2p node was already stopped");
        }
    }

    async fn call<T>(
        &self,
        timeout: Duration,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, router::Error> {
        let (reply, answer) = oneshot::channel();
        let exchange = async {
            self.commands
                .send(command(reply))
                .await
                .map_err(|_| router::Error::Stopped)?;
            answer.await.map_err(|_| router::Error::Stopped)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| router::Error::Network {
                operation: "wait for the p2p node".to_owned(),
                source: "the node did not answer in time".into(),
            })?
    }
}

#[async_trait]
impl router::Router for Router {
    /// Records the keys as provided and queues their announcement; returns
    /// before the announcements reach the network.
    async fn provide(&self, keys: &[Key]) -> Result<(), router::Error> {
        let keys = keys.to_vec();
        self.call(COMMAND_TIMEOUT, |reply| Command::Provide { keys, reply })
            .await
    }

    /// Stops announcing the keys. Other nodes keep the records they hold
    /// until those expire (the record TTL): Kademlia has no way to delete
    /// a provider record remotely.
    async fn withdraw(&self, keys: &[Key]) -> Result<(), router::Error> {
        let keys = keys.to_vec();
        self.call(COMMAND_TIMEOUT, |reply| Command::Withdraw { keys, reply })
            .await
    }

    /// At most `limit` other nodes providing `key`, each at its registry
    /// address; empty (not an error) when none is found within the lookup
    /// timeout.
    async fn find_providers(&self, key: &Key, limit: usize) -> Result<Vec<Peer>, router::Error> {
        let timeout = self.lookup_timeout + LOOKUP_GRACE;
        let command = |reply| Command::FindProviders {
            key: key.clone(),
            limit,
            reply,
        };
        match self.call(timeout, command).await {
            // The node answers every lookup by its deadline; this is a
            // node too busy to take the command at all.
            Err(router::Error::Network { .. }) => Err(router::Error::Timeout { key: key.clone() }),
            other => other,
        }
    }

    /// The nodes closest to `key`, this one included, each other one at
    /// its registry address; when the network cannot be asked within the
    /// lookup timeout, the closest among the peers this node knows.
    async fn closest(&self, key: &Key, limit: usize) -> Result<Vec<Near>, router::Error> {
        let timeout = self.lookup_timeout + LOOKUP_GRACE;
        let command = |reply| Command::Closest {
            key: key.clone(),
            limit,
            reply,
        };
        match self.call(timeout, command).await {
            Err(router::Error::Network { .. }) => Err(router::Error::Timeout { key: key.clone() }),
            other => other,
        }
    }

    fn is_ready(&self) -> bool {
        self.routing_peers() > 0
    }
}
