//! What one registry port allows: how many connections, in which state,
//! for how long, and what they may buffer. Anyone who can reach the port
//! can open connections, so the ones that have not proven anything (still
//! in their handshake, or on the join channel) have caps of their own,
//! well below the total, and can never take the slots members need.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Limits of the connections of one registry port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, of every kind; beyond it accepting pauses
    /// (new connections wait in the listen backlog). Default 1024.
    pub max_connections: usize,
    /// Connections still in their handshake (TLS); a connection beyond it
    /// is closed at once. Default 384: a silent client holds one for
    /// `handshake_timeout` at most.
    pub max_handshakes: usize,
    /// Connections past their handshake that hold no member certificate
    /// (joining nodes); one beyond it is closed at once. Default 64.
    pub max_unauthenticated: usize,
    /// Time to finish the handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Whole life of an unauthenticated connection: a join is one small
    /// request and its answer. Default 10 s.
    pub unauthenticated_lifetime: Duration,
    /// A member's connection on which no byte has moved either way for this
    /// long is closed (an idle keep-alive, or a client that stopped
    /// reading). Default 60 s.
    pub idle_timeout: Duration,
    /// Time a client has to send a request's headers (HTTP/1.1). Default 10 s.
    pub header_read_timeout: Duration,
    /// HTTP/2 streams one connection may have open at once. Default 32.
    pub max_streams_per_connection: u32,
    /// Bytes HTTP/2 may queue per stream ahead of the client's window.
    /// Default 256 KiB.
    pub max_send_buffer_per_stream: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_handshakes: 384,
            max_unauthenticated: 64,
            handshake_timeout: Duration::from_secs(5),
            unauthenticated_lifetime: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            max_streams_per_connection: 32,
            max_send_buffer_per_stream: 256 * 1024,
        }
    }
}

impl Limits {
    /// The fewest connections a port may be given.
    pub const MIN_CONNECTIONS: usize = 64;

    /// The defaults, scaled to `max` connections in all (at least
    /// [`Limits::MIN_CONNECTIONS`]): the caps on handshakes and
    /// unauthenticated connections keep their share of the total, so
    /// members always have more than half of it.
    pub fn with_max_connections(max: usize) -> Limits {
        let defaults = Limits::default();
        let max = max.max(Limits::MIN_CONNECTIONS);
        let share = |part: usize| part * max / defaults.max_connections;
        Limits {
            max_connections: max,
            max_handshakes: share(defaults.max_handshakes).max(1),
            max_unauthenticated: share(defaults.max_unauthenticated).max(1),
            ..defaults
        }
    }
}

/// How a connection is to be treated after its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The handshake proved the client a member (or there is no proof to
    /// ask for, as on plain HTTP): kept while it moves bytes.
    Member,
    /// Nothing proven (a node joining): counted against
    /// [`Limits::max_unauthenticated`] and closed after
    /// [`Limits::unauthenticated_lifetime`].
    Unauthenticated,
}

/// Counters of one port's connections, shared with whoever reports them
/// (the node's metrics). Cloning shares the counters.
#[derive(Debug, Clone, Default)]
pub struct ConnectionStats {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused_handshakes: AtomicU64,
    refused_unauthenticated: AtomicU64,
    handshake_failures: AtomicU64,
    handshake_timeouts: AtomicU64,
    idle_closed: AtomicU64,
    lifetime_closed: AtomicU64,
    open_members: AtomicU64,
    open_unauthenticated: AtomicU64,
    open_handshakes: AtomicU64,
}

/// Why connections were closed or refused, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Closed {
    /// Refused at once: [`Limits::max_handshakes`] were in their handshake.
    HandshakesFull,
    /// Refused after the handshake: [`Limits::max_unauthenticated`] open.
    UnauthenticatedFull,
    /// The handshake failed (no or a bad certificate, not TLS…).
    HandshakeFailed,
    /// The handshake did not finish within [`Limits::handshake_timeout`].
    HandshakeTimeout,
    /// A member's connection moved no byte for [`Limits::idle_timeout`].
    Idle,
    /// An unauthenticated connection reached its lifetime.
    Lifetime,
}

impl Closed {
    /// Every reason, for reporting.
    pub const ALL: [Closed; 6] = [
        Closed::HandshakesFull,
        Closed::UnauthenticatedFull,
        Closed::HandshakeFailed,
        Closed::HandshakeTimeout,
        Closed::Idle,
        Closed::Lifetime,
    ];

    /// A short name for labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::HandshakesFull => "handshakes_full",
            Closed::UnauthenticatedFull => "unauthenticated_full",
            Closed::HandshakeFailed => "handshake_failed",
            Closed::HandshakeTimeout => "handshake_timeout",
            Closed::Idle => "idle",
            Closed::Lifetime => "lifetime",
        }
    }
}

impl ConnectionStats {
    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }

    /// Connections refused or closed for `reason` so far.
    pub fn closed(&self, reason: Closed) -> u64 {
        self.counter(reason).load(Ordering::Relaxed)
    }

    /// Connections open now: members, unauthenticated, in their handshake.
    pub fn open(&self) -> (u64, u64, u64) {
        let c = &self.inner;
        (
            c.open_members.load(Ordering::Relaxed),
            c.open_unauthenticated.load(Ordering::Relaxed),
            c.open_handshakes.load(Ordering::Relaxed),
        )
    }

    fn counter(&self, reason: Closed) -> &AtomicU64 {
        let c = &self.inner;
        match reason {
            Closed::HandshakesFull => &c.refused_handshakes,
            Closed::UnauthenticatedFull => &c.refused_unauthenticated,
            Closed::HandshakeFailed => &c.handshake_failures,
            Closed::HandshakeTimeout => &c.handshake_timeouts,
            Closed::Idle => &c.idle_closed,
            Closed::Lifetime => &c.lifetime_closed,
        }
    }

    pub(super) fn count(&self, reason: Closed) {
        self.counter(reason).fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_accepted(&self) {
        self.inner.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection open in `state` until the guard is dropped.
    pub(super) fn opened(&self, state: State) -> OpenGuard {
        let gauge = self.gauge(state);
        gauge.fetch_add(1, Ordering::Relaxed);
        OpenGuard {
            stats: self.clone(),
            state,
        }
    }

    fn gauge(&self, state: State) -> &AtomicU64 {
        let c = &self.inner;
        match state {
            State::Handshake => &c.open_handshakes,
            State::Member => &c.open_members,
            State::Unauthenticated => &c.open_unauthenticated,
        }
    }
}

/// Where an open connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Handshake,
    Member,
    Unauthenticated,
}

/// Keeps a connection counted as open in one state.
pub(super) struct OpenGuard {
    stats: ConnectionStats,
    state: State,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.stats.gauge(self.state).fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_limits_leave_members_more_than_half() {
        for max in [0, 64, 100, 1024, 5000] {
            let limits = Limits::with_max_connections(max);
            assert!(limits.max_connections >= Limits::MIN_CONNECTIONS);
            assert!(
                limits.max_handshakes + limits.max_unauthenticated < limits.max_connections / 2,
                "{limits:?}"
            );
            assert!(limits.max_handshakes >= 1 && limits.max_unauthenticated >= 1);
        }
        assert_eq!(Limits::with_max_connections(1024), Limits::default());
    }
}
