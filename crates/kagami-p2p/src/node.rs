//! The node: one task that owns the libp2p `Swarm` and everything whose
//! state follows the network (lookups, announcements, peers, bootstrap).
//! Handles talk to it only through [`Command`]s.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use kagami_core::Key;
use kagami_core::router::{Near, Peer};
use libp2p::identify;
use libp2p::kad::{self, GetProvidersOk, QueryId, QueryResult};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::mpsc;

use crate::Config;
use crate::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL, registry_port};
use crate::bootstrap::{Backoff, resolve};
use crate::cid::record_key;
use crate::handle::{Command, Shared};
use crate::isolation::Isolation;
use crate::lookups::{Lookups, Settings};
use crate::peers::{PeerBook, worth_dialing};
use crate::publish::Publisher;

/// How soon a failed announcement is tried again.
const PUBLISH_RETRY: Duration = Duration::from_secs(30);
/// First routing-table refresh after joining; each next one waits twice
/// as long, up to [`REFRESH_MAX`]. A node learns the peers that joined
/// after it only by asking again (they may have reached the network
/// through a node that did not know it yet), so the first refreshes come
/// quickly and later ones rarely.
const REFRESH_MIN: Duration = Duration::from_secs(2);
/// Longest wait between routing-table refreshes.
const REFRESH_MAX: Duration = Duration::from_secs(5 * 60);

pub(crate) struct Node {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    registry_port: u16,
    lookups: Lookups<QueryId, PeerId>,
    publisher: Publisher,
    publishing: HashMap<QueryId, Key>,
    peers: PeerBook,
    /// Peers with at least one established connection.
    connected: HashSet<PeerId>,
    bootstrap: Vec<Multiaddr>,
    backoff: Backoff,
    resolving: FuturesUnordered<BoxFuture<'static, Vec<Multiaddr>>>,
    ready: bool,
    /// When the routing table is next refreshed (a Kademlia bootstrap
    /// while connected), and the wait after that.
    refresh: (Instant, Duration),
    /// The bootstrap dials in flight, to say why a node stays alone.
    isolation: Isolation,
    membership: crate::membership::Membership,
    /// Closest-peers questions in flight.
    closest: HashMap<QueryId, Closest>,
    lookup_timeout: Duration,
}

/// A closest-peers question waiting for the network's answer.
struct Closest {
    key: Key,
    limit: usize,
    reply: tokio::sync::oneshot::Sender<Vec<Near>>,
    deadline: Instant,
}

impl Node {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        shared: Arc<Shared>,
        config: &Config,
    ) -> Node {
        let settings = Settings {
            timeout: config.lookup_timeout,
            settle: config.lookup_settle,
            cache_ttl: config.cache_ttl,
            cache_capacity: config.cache_capacity,
        };
        let retry = PUBLISH_RETRY.min(config.republish_interval);
        Node {
            swarm,
            commands,
            shared,
            registry_port: config.registry_port,
            lookups: Lookups::new(settings),
            publisher: Publisher::new(config.republish_interval, retry, config.publish_concurrency),
            publishing: HashMap::new(),
            peers: PeerBook::default(),
            connected: HashSet::new(),
            bootstrap: config.bootstrap.clone(),
            backoff: Backoff::new(
                config.bootstrap_interval,
                config.max_bootstrap_backoff,
                Instant::now(),
            ),
            resolving: FuturesUnordered::new(),
            ready: false,
            refresh: (Instant::now() + REFRESH_MIN, REFRESH_MIN),
            isolation: Isolation::new(Instant::now()),
            membership: crate::membership::Membership::default(),
            closest: HashMap::new(),
            lookup_timeout: config.lookup_timeout,
        }
    }

    /// Runs until every handle is gone or one asks for a shutdown; the
    /// swarm, and with it the listener and all connections, is dropped
    /// before the shutdown is acknowledged.
    pub(crate) async fn run(mut self) {
        if self.bootstrap.is_empty() {
            // Said once: the node waits, quietly, for others to dial it.
            tracing::info!(
                "no peers yet: no bootstrap peer given, so this node waits for others to join through it"
            );
        }
        let acknowledge = loop {
            self.tick(Instant::now());
            let wake = self.next_wake();
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => break Some(reply),
                    Some(command) => self.on_command(command),
                    None => break None,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(addrs) = self.resolving.next() => self.dial_bootstrap(addrs),
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        };
        self.shared.routing_peers.store(0, Ordering::Relaxed);
        let peer = self.shared.peer_id;
        drop(self);
        tracing::info!(%peer, "p2p node stopped");
        if let Some(reply) = acknowledge {
            let _ = reply.send(());
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Provide { keys, reply } => {
                self.publisher.provide(&keys);
                let _ = reply.send(());
            }
            Command::Withdraw { keys, reply } => {
                for key in self.publisher.withdraw(&keys) {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .stop_providing(&record_key(&key));
                    let running: Vec<QueryId> = self
                        .publishing
                        .iter()
                        .filter(|(_, k)| **k == key)
                        .map(|(q, _)| *q)
                        .collect();
                    for q in running {
                        self.finish_query(q);
                    }
                }
                let _ = reply.send(());
            }
            Command::FindProviders { key, limit, reply } => {
                if let Some(reply) = self.lookups.request(&key, limit, reply, now) {
                    let q = self
                        .swarm
                        .behaviour_mut()
                        .kad
                        .get_providers(record_key(&key));
                    self.lookups.start(q, key, limit, reply, now);
                }
            }
            Command::Closest { key, limit, reply } => {
                let q = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_closest_peers(record_key(&key).to_vec());
                self.closest.insert(
                    q,
                    Closest {
                        key,
                        limit,
                        reply,
                        deadline: now + self.lookup_timeout,
                    },
                );
            }
            Command::RoutingTable { reply } => {
                let mut table = Vec::new();
                for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
                    for entry in bucket.iter() {
                        let addrs = entry.node.value.iter().cloned().collect();
                        table.push((*entry.node.key.preimage(), addrs));
                    }
                }
                let _ = reply.send(table);
            }
            Command::Shutdown { reply } => {
                // Handled by `run`; answering here keeps the match total.
                let _ = reply.send(());
            }
        }
        self.shared
            .provided
            .store(self.publisher.len(), Ordering::Relaxed);
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => self.on_identified(peer_id, info),
            SwarmEvent::Behaviour(_) => {}
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                self.membership
                    .connected(peer_id, endpoint.get_remote_address());
                self.peers.connected(peer_id, endpoint.get_remote_address());
                self.connected.insert(peer_id);
                self.isolation.connected(Instant::now());
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                self.membership.closed(peer_id, cause.as_ref());
                self.connected.remove(&peer_id);
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                error,
                connection_id,
            } => {
                tracing::debug!(peer = ?peer_id, %error, "dial failed");
                if let Some(peer) = peer_id {
                    self.membership.unreachable(peer, &error);
                }
                if let Some(warning) = self.isolation.failed(connection_id, &error, Instant::now())
                {
                    tracing::warn!("{warning}");
                }
                if let Some(peer) = peer_id
                    && self.lookups.awaits(&peer)
                {
                    self.resolve_provider(peer);
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                tracing::debug!(addr = %send_back_addr, %error, "inbound connection failed");
            }
            SwarmEvent::NewExternalAddrOfPeer { peer_id, address } => {
                self.peers.learned(peer_id, &address);
            }
            SwarmEvent::NewListenAddr { address, .. } => self.update_listen_addrs(address, true),
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.update_listen_addrs(address, false);
            }
            _ => {}
        }
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        let now = Instant::now();
        match event {
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => match result {
                QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders {
                    providers, ..
                })) => {
                    for provider in providers {
                        self.on_provider(id, provider, now);
                    }
                    if step.last {
                        self.lookups.query_done(id, now);
                    }
                }
                QueryResult::GetProviders(_) => self.lookups.query_done(id, now),
                QueryResult::StartProviding(result) => {
                    if let Some(key) = self.publishing.remove(&id) {
                        if let Err(e) = &result {
                            tracing::debug!(%key, error = %e, "announcing a key failed");
                        }
                        self.publisher.done(&key, result.is_ok(), now);
                    }
                }
                QueryResult::GetClosestPeers(result) => {
                    let peers = match result {
                        Ok(ok) => ok.peers,
                        Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                    };
                    if let Some(pending) = self.closest.remove(&id) {
                        for peer in &peers {
                            for addr in &peer.addrs {
                                self.peers.learned(peer.peer_id, addr);
                            }
                        }
                        let found: Vec<PeerId> = peers.iter().map(|p| p.peer_id).collect();
                        self.answer_closest(pending, found);
                    }
                }
                QueryResult::Bootstrap(result) if step.last => {
                    tracing::debug!(ok = result.is_ok(), "kademlia bootstrap finished");
                }
                _ => {}
            },
            kad::Event::RoutingUpdated {
                peer, addresses, ..
            } => {
                for addr in addresses.iter() {
                    self.peers.learned(peer, addr);
                }
            }
            _ => {}
        }
    }

    fn on_provider(&mut self, q: QueryId, provider: PeerId, now: Instant) {
        if provider == self.shared.peer_id {
            return;
        }
        let known = self.peers.registry_addr(&provider, self.registry_port);
        if let Some(known) = known
            && known.identified
        {
            let peer = Peer {
                id: provider.to_string(),
                addr: known.addr,
            };
            if let Some(done) = self.lookups.found(q, peer, now) {
                self.finish_query(done);
            }
            return;
        }
        // Where it is, or which port it serves on, is not known yet:
        // connect (the DHT query knows its addresses) and let identify
        // tell. Until then, or if that fails, its IP with our own port is
        // the best guess (K3s runs the same port on every node).
        let guess = known.map(|known| Peer {
            id: provider.to_string(),
            addr: known.addr,
        });
        self.lookups.unresolved(q, provider, guess);
        let dial = DialOpts::peer_id(provider)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        match self.swarm.dial(dial) {
            // Already connected or dialing: identify will follow.
            Ok(()) | Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => {}
            Err(e) => {
                tracing::debug!(peer = %provider, error = %e, "cannot dial provider");
                self.resolve_provider(provider);
            }
        }
    }

    fn resolve_provider(&mut self, provider: PeerId) {
        let peer = self
            .peers
            .registry_addr(&provider, self.registry_port)
            .map(|known| Peer {
                id: provider.to_string(),
                addr: known.addr,
            });
        for done in self.lookups.resolved(provider, peer, Instant::now()) {
            self.finish_query(done);
        }
    }

    fn on_identified(&mut self, peer: PeerId, info: identify::Info) {
        self.peers
            .identified(peer, registry_port(&info.agent_version));
        let via = self.peers.connected_ip(&peer);
        let speaks_kad = info.protocols.contains(&KAD_PROTOCOL);
        for addr in info.listen_addrs {
            self.peers.learned(peer, &addr);
            // Inbound connections tell kad nothing about where to dial the
            // peer back; its own listen addresses do.
            if speaks_kad && worth_dialing(&addr, via) {
                self.swarm.behaviour_mut().kad.add_address(&peer, addr);
            }
        }
        if self.lookups.awaits(&peer) {
            self.resolve_provider(peer);
        }
    }

    /// Answers a closest-peers question: `found` (the network's answer),
    /// the closest peers of the routing table and this node, ordered by
    /// distance to the key. The table's peers are always among them: the
    /// network's answer holds only the peers that answered in time, and a
    /// busy node that did not would otherwise be named by some askers and
    /// not by others, which then pick different origins for one key.
    fn answer_closest(&mut self, pending: Closest, found: Vec<PeerId>) {
        let target = kad::KBucketKey::new(record_key(&pending.key).to_vec());
        let mut candidates = found;
        candidates.extend(
            self.swarm
                .behaviour_mut()
                .kad
                .get_closest_local_peers(&target)
                .map(|key| *key.preimage())
                .take(pending.limit),
        );
        let me = self.shared.peer_id;
        candidates.retain(|peer| *peer != me);
        candidates.push(me);
        candidates.sort_by_key(|peer| kad::KBucketKey::from(*peer).distance(&target));
        candidates.dedup();
        let near = candidates
            .into_iter()
            .filter_map(|peer| {
                if peer == me {
                    return Some(Near::ThisNode);
                }
                let known = self.peers.registry_addr(&peer, self.registry_port)?;
                Some(Near::Peer(Peer {
                    id: peer.to_string(),
                    addr: known.addr,
                }))
            })
            .take(pending.limit.max(1))
            .collect();
        let _ = pending.reply.send(near);
    }

    /// Housekeeping after every event: lookups past their deadline,
    /// readiness, announcements, and bootstrapping when isolated.
    fn tick(&mut self, now: Instant) {
        for q in self.lookups.expire(now) {
            self.finish_query(q);
        }
        let late: Vec<QueryId> = self
            .closest
            .iter()
            .filter(|(_, pending)| pending.deadline <= now)
            .map(|(q, _)| *q)
            .collect();
        for q in late {
            self.finish_query(q);
            if let Some(pending) = self.closest.remove(&q) {
                self.answer_closest(pending, Vec::new());
            }
        }
        self.update_ready(now);
        if self.ready {
            while let Some(key) = self.publisher.next(now) {
                match self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .start_providing(record_key(&key))
                {
                    Ok(q) => {
                        self.publishing.insert(q, key);
                    }
                    Err(e) => {
                        tracing::warn!(%key, error = ?e, "cannot announce key");
                        self.publisher.done(&key, false, now);
                    }
                }
            }
        }
        if self.ready && now >= self.refresh.0 {
            if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
                tracing::debug!(error = %e, "routing table refresh not started");
            }
            let next = (self.refresh.1 * 2).min(REFRESH_MAX);
            self.refresh = (now + next, next);
        }
        // Kademlia never empties its routing table by itself (dead peers
        // stay until newer ones displace them), so an empty table is not
        // the only sign of isolation: no connection at all is the other.
        if now >= self.backoff.next() {
            if self.ready && !self.connected.is_empty() {
                self.backoff.healthy(now);
            } else {
                self.start_bootstrap();
                self.backoff.attempted(now);
            }
        }
    }

    fn update_ready(&mut self, now: Instant) {
        let routing_peers: usize = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|bucket| bucket.num_entries())
            .sum();
        self.shared
            .routing_peers
            .store(routing_peers, Ordering::Relaxed);
        let ready = routing_peers > 0;
        if ready == self.ready {
            return;
        }
        self.ready = ready;
        if ready {
            tracing::info!(peers = routing_peers, "p2p node joined the network");
            self.refresh = (now + REFRESH_MIN, REFRESH_MIN);
            // Announcements made while alone reached no one.
            self.publisher.requeue_all();
            if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
                tracing::debug!(error = %e, "kademlia bootstrap not started");
            }
            self.backoff.healthy(now);
        } else {
            tracing::warn!("p2p node lost all its peers; bootstrapping again");
            self.backoff.isolated(now);
        }
    }

    /// Dials the bootstrap peers and, when the routing table has peers,
    /// runs a Kademlia bootstrap (which dials them and refreshes the table).
    fn start_bootstrap(&mut self) {
        if self.ready
            && let Err(e) = self.swarm.behaviour_mut().kad.bootstrap()
        {
            tracing::debug!(error = %e, "kademlia bootstrap not started");
        }
        if self.bootstrap.is_empty() || !self.resolving.is_empty() {
            return;
        }
        tracing::debug!(peers = self.bootstrap.len(), "dialing bootstrap peers");
        let addrs = self.bootstrap.clone();
        self.resolving.push(Box::pin(async move {
            futures::future::join_all(addrs.into_iter().map(resolve))
                .await
                .concat()
        }));
    }

    fn dial_bootstrap(&mut self, addrs: Vec<Multiaddr>) {
        for addr in addrs {
            let dial = DialOpts::unknown_peer_id().address(addr.clone()).build();
            let id = dial.connection_id();
            match self.swarm.dial(dial) {
                Ok(()) => self.isolation.dialing(id, addr),
                Err(e) => tracing::debug!(%addr, error = %e, "cannot dial bootstrap peer"),
            }
        }
    }

    fn finish_query(&mut self, q: QueryId) {
        if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&q) {
            query.finish();
        }
    }

    fn next_wake(&self) -> Instant {
        let mut wake = self.backoff.next();
        if let Some(deadline) = self.lookups.next_deadline() {
            wake = wake.min(deadline);
        }
        if let Some(deadline) = self.closest.values().map(|p| p.deadline).min() {
            wake = wake.min(deadline);
        }
        if self.ready
            && let Some(due) = self.publisher.next_due()
        {
            wake = wake.min(due);
        }
        if self.ready {
            wake = wake.min(self.refresh.0);
        }
        wake
    }

    fn update_listen_addrs(&mut self, address: Multiaddr, up: bool) {
        let mut addrs = match self.shared.listen_addrs.lock() {
            Ok(addrs) => addrs,
            Err(poisoned) => poisoned.into_inner(),
        };
        addrs.retain(|a| *a != address);
        if up {
            addrs.push(address);
        }
    }
}
