//! Racing a request across peers: the best peer first; when it has not
//! answered within the hedge delay, the next one too (at most
//! [`MAX_HEDGES`] extra); when one fails, the next at once. The first good
//! answer wins and the others are dropped, which cancels them.
//!
//! The hedge delay adapts as Spegel's does: `max(2 × p90, 100 ms)` of the
//! last answers' times, capped by the configured first-byte timeout,
//! which alone applies until enough answers have been timed.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kagami_core::Key;
use kagami_core::router::Peer;
use tokio::time::Instant;

use super::fetch::AttemptError;
use super::{Inner, lock};

/// Most requests raced against the first, for one answer.
const MAX_HEDGES: usize = 2;
/// Answer times kept for the percentile.
const WINDOW: usize = 64;
/// Answers timed before the percentile is trusted.
const MIN_SAMPLES: usize = 16;
/// Shortest adaptive delay: below it, hedges would double the load of
/// every ordinary jitter.
const MIN_DELAY: Duration = Duration::from_millis(100);

/// Recent answer times of peers.
#[derive(Default)]
pub(super) struct Latency {
    samples: Mutex<VecDeque<Duration>>,
}

impl Latency {
    fn record(&self, elapsed: Duration) {
        let mut samples = lock(&self.samples);
        if samples.len() == WINDOW {
            samples.pop_front();
        }
        samples.push_back(elapsed);
    }

    /// How long to wait for a peer before racing the next.
    pub(super) fn hedge_delay(&self, cap: Duration) -> Duration {
        let mut sorted: Vec<Duration> = lock(&self.samples).iter().copied().collect();
        if sorted.len() < MIN_SAMPLES {
            return cap;
        }
        sorted.sort_unstable();
        let p90 = sorted[(sorted.len() * 9 / 10).min(sorted.len() - 1)];
        (p90 * 2).max(MIN_DELAY).min(cap)
    }
}

/// The answer that won a race.
pub(super) struct Won<T> {
    pub(super) peer: Peer,
    pub(super) value: T,
    /// Peers that failed before it won.
    pub(super) failed: Vec<Peer>,
}

/// Races `attempt` across `peers` (in order) as the module says. Every
/// failure is logged at DEBUG and recorded against its peer; a peer that
/// sent corrupt bytes is marked bad, and one that failed the TLS checks
/// is marked untrusted and reported (see `report`). Returns the failures
/// when no peer gave a good answer. Safe to cancel: dropping it drops
/// every attempt.
pub(super) async fn race<T, F, Fut>(
    mirror: &Inner,
    key: &Key,
    peers: &[Peer],
    attempt: F,
) -> Result<Won<T>, Vec<(Peer, AttemptError)>>
where
    F: Fn(Peer) -> Fut,
    Fut: Future<Output = Result<T, AttemptError>>,
{
    let delay = mirror.latency.hedge_delay(mirror.config.first_byte_timeout);
    let launch = |peer: &Peer| {
        mirror.peers.started(peer);
        let started = Instant::now();
        let attempt = attempt(peer.clone());
        let peer = peer.clone();
        async move { (peer, started, attempt.await) }
    };
    let mut queue = peers.iter();
    let mut running = FuturesUnordered::new();
    let mut failures: Vec<(Peer, AttemptError)> = Vec::new();
    let mut hedges = 0;
    match queue.next() {
        Some(first) => running.push(launch(first)),
        None => return Err(failures),
    }
    let hedge = tokio::time::sleep(delay);
    tokio::pin!(hedge);
    loop {
        tokio::select! {
            Some((peer, started, result)) = running.next() => match result {
                Ok(value) => {
                    mirror.latency.record(started.elapsed());
                    mirror.peers.succeeded(&peer);
                    let failed = failures.into_iter().map(|(peer, _)| peer).collect();
                    return Ok(Won { peer, value, failed });
                }
                Err(error) => {
                    tracing::debug!(%key, peer = %peer.id, addr = %peer.addr, %error, "peer failed");
                    if error.is_corrupt() {
                        mirror.stats.verify_failed();
                        mirror.peers.mark_bad(&peer);
                    } else if error.is_untrusted() {
                        mirror.stats.tls_failed();
                        mirror.peers.mark_untrusted(&peer);
                        mirror.report.peer_tls(&peer, &error);
                    } else {
                        if error.is_client() {
                            mirror.report.peer_tls(&peer, &error);
                        }
                        mirror.peers.failed(&peer);
                    }
                    failures.push((peer, error));
                    if let Some(next) = queue.next() {
                        running.push(launch(next));
                        hedge.as_mut().reset(Instant::now() + delay);
                    } else if running.is_empty() {
                        return Err(failures);
                    }
                }
            },
            () = &mut hedge, if hedges < MAX_HEDGES && queue.len() > 0 => {
                if let Some(next) = queue.next() {
                    tracing::debug!(%key, peer = %next.id, ?delay, "racing a slow peer");
                    mirror.stats.hedged();
                    running.push(launch(next));
                    hedges += 1;
                }
                hedge.as_mut().reset(Instant::now() + delay);
            },
            else => return Err(failures),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_is_the_cap_until_enough_answers_were_timed() {
        let latency = Latency::default();
        let cap = Duration::from_millis(300);
        for _ in 0..MIN_SAMPLES - 1 {
            latency.record(Duration::from_millis(1));
        }
        assert_eq!(latency.hedge_delay(cap), cap);
        latency.record(Duration::from_millis(1));
        assert_eq!(latency.hedge_delay(cap), MIN_DELAY);
    }

    #[test]
    fn the_delay_follows_twice_the_p90_within_its_bounds() {
        let latency = Latency::default();
        for ms in 1..=100 {
            latency.record(Duration::from_millis(ms));
        }
        // The window keeps the last 64: 37..=100 ms, whose p90 is 94 ms.
        assert_eq!(
            latency.hedge_delay(Duration::from_secs(1)),
            Duration::from_millis(188)
        );
        assert_eq!(
            latency.hedge_delay(Duration::from_millis(150)),
            Duration::from_millis(150)
        );
    }
}
