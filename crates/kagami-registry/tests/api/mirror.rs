//! The mirror path between real served nodes: what a node does not hold
//! it serves from peers, within budgets, checked against digests, and
//! never by asking in circles; over mutual TLS, only from peers that
//! prove to be the ones the router named.

mod faults;
mod policy;
mod pull;
mod tls;

use std::time::Duration;

use kagami_registry::MirrorConfig;

/// Settings under which no request is raced by accident on a busy test
/// machine, so tests can tell which peer served.
pub fn unhurried() -> MirrorConfig {
    MirrorConfig {
        first_byte_timeout: Duration::from_secs(5),
        ..MirrorConfig::default()
    }
}
