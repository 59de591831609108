//! The read-only OCI Distribution API of a kagami node.
//!
//! This crate owns the HTTP side of a node: the `/v2` pull API (manifests,
//! blobs with `Range`, tag lists) answered from a
//! [`kagami_core::store::Store`], the OCI error bodies, `/healthz` and
//! `/readyz`, and the accept loop that serves it all ([`serve`], or
//! [`serve_with`] with a [`Handshake`], TLS say, before HTTP). What a
//! node holds is the store's business; it is reached only through the
//! trait. [`app`] builds the whole application without a socket, so tests
//! call it directly.
//!
//! It also owns the mirror path ([`Mirror`], given to [`app_with_mirror`]):
//! what the store does not hold is looked up through a
//! [`kagami_core::router::Router`] and fetched from the peers that hold
//! it, hedged, resumed and checked against its digest, over plain HTTP or,
//! with [`PeerTls`], over HTTPS with a client per peer ID. Requests between
//! peers carry [`MIRRORED_HEADER`] and never trigger another lookup.
//!
//! A request names its registry as containerd does, with `?ns=<registry>`;
//! without it, it is for [`Config::default_registry`]. On Docker Hub a
//! one-component name is looked up as `library/<name>`.

mod app;
mod budget;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod mirror;
mod path;
mod range;
mod routes;
mod server;
mod stats;
mod throttle;
mod trace;

pub use app::{Config, app, app_with_mirror};
pub use budget::DEFAULT_BODY_BYTES_IN_FLIGHT;
pub use error::Error;
pub use mirror::{
    MAX_ORIGINS, MIRRORED_HEADER, Mirror, MirrorConfig, MirrorStats, Mirrored, ORIGIN_HEADER,
    PeerTls, PullThrough, TagSource, Through,
};
pub use routes::{Readiness, probes};
pub use server::{
    Accepted, Admission, Closed, ConnectionStats, Handshake, Limits, ServeOptions, serve,
    serve_with,
};
pub use stats::{
    Failure, Kind, OTHER_REGISTRIES, Outcome, Pull, RequestStats, RouteLabels, SOURCE_HEADER,
};
pub use throttle::Throttle;
