//! Who may ask a server to join, and how often: the join endpoint is open
//! to anyone who reaches the port, so every source address gets a token
//! bucket of join attempts, and every refusal is logged with the source
//! address, at most once a minute per source, with how many there were.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use kagami_registry::Throttle;

/// Join attempts a source address may make per second, sustained.
pub const JOIN_RATE_PER_SECOND: u32 = 2;
/// Join attempts a source address may make at once (a rack of nodes behind
/// one NAT address joining together).
pub const JOIN_BURST: u32 = 20;
/// How often the refusals of one source are logged.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Sources remembered before idle ones are forgotten.
const MAX_SOURCES: usize = 10_000;

/// The join endpoint's guard: rate limit and refusal log, shared by every
/// join request of one server.
#[derive(Clone)]
pub(crate) struct JoinGuard {
    inner: Arc<Inner>,
}

struct Inner {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    refusals: Throttle<IpAddr>,
}

impl JoinGuard {
    pub(crate) fn new() -> JoinGuard {
        let rate = NonZeroU32::new(JOIN_RATE_PER_SECOND).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(JOIN_BURST).unwrap_or(NonZeroU32::MIN);
        JoinGuard {
            inner: Arc::new(Inner {
                limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
                refusals: Throttle::new(REFUSAL_LOG_INTERVAL),
            }),
        }
    }

    /// Counts one attempt from `source`: `Err(wait)` when it is over its
    /// rate, with how long until the next one is let through.
    pub(crate) fn attempt(&self, source: SocketAddr) -> Result<(), Duration> {
        let limiter = &self.inner.limiter;
        if limiter.len() > MAX_SOURCES {
            limiter.retain_recent();
        }
        limiter
            .check_key(&source.ip())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Logs a refused join from `source` (at most once a minute per source,
    /// with the count since).
    pub(crate) fn refused(&self, source: SocketAddr, reason: &str) {
        if let Some(count) = self.inner.refusals.hit(source.ip()) {
            tracing::warn!(
                source = %source.ip(),
                reason,
                refusals = count,
                "join refused (logged at most once a minute per source)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_burst_then_waits_and_others_are_apart() {
        let guard = JoinGuard::new();
        let a: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:40000".parse().unwrap();
        for _ in 0..JOIN_BURST {
            assert!(guard.attempt(a).is_ok());
        }
        let wait = guard.attempt(a).unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        // Another port of the same address is the same source.
        assert!(guard.attempt("10.0.0.1:40001".parse().unwrap()).is_err());
        assert!(guard.attempt(b).is_ok());
    }
}
