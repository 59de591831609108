//! containerd's mirror configuration: [`render_registry`] makes the
//! `hosts.toml` of one registry from what `registries.yaml` says of it
//! ([`RegistryHosts`]: kagami's endpoint first, then the listed endpoints
//! with their TLS and rewrites, then the upstream as `server` unless
//! fallback is disabled), and [`apply`] / [`restore`] write such files into
//! a `config_path` directory (`/etc/containerd/certs.d` by convention)
//! without ever losing a file kagami did not write: an operator's
//! `hosts.toml` is moved aside to `hosts.toml.kagami-orig`, its `[host.…]`
//! entries kept after kagami's, and `.kagami-state.json` records what was
//! written and displaced (with hashes) so [`restore`] can put the
//! directory back as it was.

mod endpoint;
mod merge;
mod registry;
mod render;
mod state;
mod writer;

pub use registry::{Endpoint, EndpointTls, RegistryHosts, Rewrite, render_registry};
pub use render::{DEFAULT_REGISTRY, MirrorEndpoint, default_upstream};
pub use writer::{apply, restore};
