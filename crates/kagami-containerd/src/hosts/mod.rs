//! containerd's mirror configuration: [`render`] makes the `hosts.toml` of
//! one registry (kagami's endpoint first, then the listed mirrors, then the
//! upstream as `server`), and [`apply`] / [`restore`] write such files into
//! a `config_path` directory (`/etc/containerd/certs.d` by convention)
//! without ever losing a file kagami did not write: an operator's
//! `hosts.toml` is moved aside to `hosts.toml.kagami-orig`, its `[host.…]`
//! entries kept after kagami's, and `.kagami-state.json` records what was
//! written and displaced (with hashes) so [`restore`] can put the
//! directory back as it was.

mod merge;
mod render;
mod state;
mod writer;

pub use render::{DEFAULT_REGISTRY, MirrorEndpoint, default_upstream, render};
pub use writer::{apply, restore};
