//! Saying why a node stays alone. A node whose pre-shared key differs from
//! the cluster's reaches its peers' ports, but every connection dies in
//! the handshake: nothing else tells the operator. Each round of dials to
//! the bootstrap peers is followed here; when every dial of a round has
//! failed, one warning names the peers tried, what went wrong, and the
//! likely cause, and the next may come only after [`WARNING_INTERVAL`].

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use libp2p::core::transport::TransportError;
use libp2p::swarm::{ConnectionId, DialError};

/// Least time between two warnings about the same isolation.
pub(crate) const WARNING_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// How one dial failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The port answered, but the connection died in the handshake (or
    /// ran out of time in it): the mark of a different pre-shared key.
    Handshake(String),
    /// Nothing answered there (refused, no route).
    Unreachable(String),
}

/// The dials of the current bootstrap round and what became of them.
#[derive(Debug)]
pub(crate) struct Isolation {
    pending: HashMap<ConnectionId, Multiaddr>,
    failures: Vec<(Multiaddr, Failure)>,
    next_warning: Instant,
}

impl Isolation {
    pub(crate) fn new(now: Instant) -> Isolation {
        Isolation {
            pending: HashMap::new(),
            failures: Vec::new(),
            next_warning: now,
        }
    }

    /// A bootstrap dial has started.
    pub(crate) fn dialing(&mut self, id: ConnectionId, addr: Multiaddr) {
        self.pending.insert(id, addr);
    }

    /// A connection was established: the node is not isolated. Warnings
    /// start afresh should it become so again.
    pub(crate) fn connected(&mut self, now: Instant) {
        self.pending.clear();
        self.failures.clear();
        self.next_warning = now;
    }

    /// A dial failed. Returns the warning to log when this was the round's
    /// last dial, all of them failed, and the last warning is old enough.
    pub(crate) fn failed(
        &mut self,
        id: ConnectionId,
        error: &DialError,
        now: Instant,
    ) -> Option<String> {
        let addr = self.pending.remove(&id)?;
        self.failures.push((addr, classify(error)));
        if !self.pending.is_empty() {
            return None;
        }
        let failures = std::mem::take(&mut self.failures);
        if now < self.next_warning {
            return None;
        }
        self.next_warning = now + WARNING_INTERVAL;
        Some(warning(&failures))
    }
}

fn warning(failures: &[(Multiaddr, Failure)]) -> String {
    let tried: Vec<String> = failures
        .iter()
        .map(|(addr, failure)| match failure {
            Failure::Handshake(why) => format!("{addr} (handshake: {why})"),
            Failure::Unreachable(why) => format!("{addr} ({why})"),
        })
        .collect();
    let all_handshakes = failures
        .iter()
        .all(|(_, failure)| matches!(failure, Failure::Handshake(_)));
    let cause = if all_handshakes {
        "every peer answered but the connection failed in its handshake: most likely this \
         node's pre-shared key differs from the cluster's (compare DATA_DIR/p2p/psk, or \
         --psk-file, with a server's)"
    } else {
        "no peer could be reached"
    };
    format!(
        "not connected to any peer: {cause}; tried {}; next warning in {} at the earliest",
        tried.join(", "),
        humantime_minutes(WARNING_INTERVAL)
    )
}

fn humantime_minutes(interval: Duration) -> String {
    format!("{} min", interval.as_secs() / 60)
}

/// Sorts a dial's failure into unreachable and failed-in-handshake.
fn classify(error: &DialError) -> Failure {
    let DialError::Transport(errors) = error else {
        return Failure::Handshake(error.to_string());
    };
    let mut reasons = Vec::new();
    let mut unreachable = true;
    for (_, error) in errors {
        match error {
            TransportError::MultiaddrNotSupported(addr) => {
                reasons.push(format!("cannot dial {addr}"));
            }
            TransportError::Other(io) => {
                let answered = !matches!(
                    io.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::HostUnreachable
                        | io::ErrorKind::NetworkUnreachable
                        | io::ErrorKind::AddrNotAvailable
                        | io::ErrorKind::NotFound
                );
                unreachable &= !answered;
                reasons.push(innermost(io));
            }
        }
    }
    let reason = reasons.join("; ");
    if unreachable {
        Failure::Unreachable(reason)
    } else {
        Failure::Handshake(reason)
    }
}

/// The deepest cause of an error, where the useful words are.
fn innermost(error: &io::Error) -> String {
    let mut source: &dyn std::error::Error = error;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(kind: io::ErrorKind) -> DialError {
        let addr: Multiaddr = "/ip4/10.0.0.1/tcp/5001".parse().unwrap();
        DialError::Transport(vec![(
            addr,
            TransportError::Other(io::Error::new(kind, "boom")),
        )])
    }

    #[test]
    fn warns_once_a_round_has_failed_in_handshakes_then_waits() {
        let now = Instant::now();
        let mut isolation = Isolation::new(now);
        let (a, b) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        isolation.dialing(a, "/ip4/10.0.0.1/tcp/5001".parse().unwrap());
        isolation.dialing(b, "/ip4/10.0.0.2/tcp/5001".parse().unwrap());
        assert_eq!(
            isolation.failed(a, &transport(io::ErrorKind::TimedOut), now),
            None
        );
        let warning = isolation
            .failed(b, &transport(io::ErrorKind::InvalidData), now)
            .unwrap();
        assert!(warning.contains("pre-shared key"), "{warning}");
        assert!(
            warning.contains("10.0.0.1") && warning.contains("10.0.0.2"),
            "{warning}"
        );

        // The next round fails too, but the warning waits its interval.
        isolation.dialing(a, "/ip4/10.0.0.1/tcp/5001".parse().unwrap());
        assert_eq!(
            isolation.failed(a, &transport(io::ErrorKind::TimedOut), now),
            None
        );
        isolation.dialing(a, "/ip4/10.0.0.1/tcp/5001".parse().unwrap());
        let later = now + WARNING_INTERVAL;
        assert!(
            isolation
                .failed(a, &transport(io::ErrorKind::TimedOut), later)
                .is_some()
        );
    }

    #[test]
    fn unreachable_peers_are_not_blamed_on_the_key() {
        let now = Instant::now();
        let mut isolation = Isolation::new(now);
        let a = ConnectionId::new_unchecked(1);
        isolation.dialing(a, "/ip4/10.0.0.1/tcp/5001".parse().unwrap());
        let warning = isolation
            .failed(a, &transport(io::ErrorKind::ConnectionRefused), now)
            .unwrap();
        assert!(warning.contains("no peer could be reached"), "{warning}");
        assert!(!warning.contains("pre-shared key"), "{warning}");
    }

    #[test]
    fn a_connection_ends_the_isolation() {
        let now = Instant::now();
        let mut isolation = Isolation::new(now);
        let (a, b) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        isolation.dialing(a, "/ip4/10.0.0.1/tcp/5001".parse().unwrap());
        isolation.dialing(b, "/ip4/10.0.0.2/tcp/5001".parse().unwrap());
        isolation.connected(now);
        assert_eq!(
            isolation.failed(a, &transport(io::ErrorKind::TimedOut), now),
            None
        );
        assert_eq!(
            isolation.failed(b, &transport(io::ErrorKind::TimedOut), now),
            None
        );
    }
}
