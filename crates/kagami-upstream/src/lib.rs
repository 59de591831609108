//! Fetching from the registries images come from, for kagami's
//! pull-through path, as containerd would fetch them.
//!
//! [`Client`] implements [`kagami_core::upstream::Upstream`]: it tries the
//! endpoints [`Config`] lists for a registry in order (those of K3s's
//! `registries.yaml`, with their rewrites, then the registry itself unless
//! the default endpoint is disabled), with each host's TLS settings and
//! credentials; answers `401` challenges (basic auth, or the bearer-token
//! flow, tokens kept until they expire); follows redirects to blob storage
//! without sending the registry's `Authorization` elsewhere; and tells a
//! `404` (not held) from a failure (`429`, `5xx`, timeouts), after which
//! the next endpoint is tried. Every wait has a budget ([`Budgets`]).

mod auth;
mod challenge;
mod client;
mod config;
mod tls;

#[cfg(feature = "testing")]
pub mod testing;

pub use client::{Client, MAX_REDIRECTS};
pub use config::{
    Budgets, Config, Credentials, Endpoint, HostConfig, MirrorConfig, Rewrite, TlsSettings,
};

/// Why the client could not be set up for a host.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A host's TLS settings could not be used.
    #[error("TLS settings of {host}: {reason}")]
    Tls {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
}
