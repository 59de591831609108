//! What the mirror logs when it gives up on a key: each peer's failure
//! is already at DEBUG (see `hedge`); the summary goes to INFO at most
//! once per key per [`QUIET_FOR`], so a node that keeps missing the same
//! content (a single-node cluster, say) does not flood its log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kagami_core::Key;
use tokio::time::Instant;

use super::lock;

/// Shortest time between two summaries for one key.
const QUIET_FOR: Duration = Duration::from_secs(60);
/// Most keys remembered; past that, the oldest memories are dropped.
const MAX_KEYS: usize = 4096;

/// When each key was last summarised.
#[derive(Default)]
pub(super) struct Report {
    last: Mutex<HashMap<Key, Instant>>,
}

impl Report {
    /// Logs that `key` could not be served from peers, and why.
    pub(super) fn gave_up(&self, key: &Key, why: &str) {
        if self.should_log(key) {
            tracing::info!(%key, %why, "not served from peers");
        } else {
            tracing::debug!(%key, %why, "not served from peers");
        }
    }

    fn should_log(&self, key: &Key) -> bool {
        let now = Instant::now();
        let mut last = lock(&self.last);
        if last
            .get(key)
            .is_some_and(|at| now.duration_since(*at) < QUIET_FOR)
        {
            return false;
        }
        if last.len() >= MAX_KEYS {
            last.retain(|_, at| now.duration_since(*at) < QUIET_FOR);
            if last.len() >= MAX_KEYS {
                last.clear();
            }
        }
        last.insert(key.clone(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_summary_per_key_per_quiet_period() {
        let report = Report::default();
        let a = Key::Digest(kagami_core::Digest::from_hash(
            kagami_core::Algorithm::Sha256,
            &[1; 32],
        ));
        let b = Key::Digest(kagami_core::Digest::from_hash(
            kagami_core::Algorithm::Sha256,
            &[2; 32],
        ));
        assert!(report.should_log(&a));
        assert!(!report.should_log(&a));
        assert!(report.should_log(&b));
    }
}
