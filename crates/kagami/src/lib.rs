//! kagami as a library: a node that serves its image store over the
//! read-only OCI distribution API, for embedding in another agent.
//!
//! [`Node::builder`] wires the concrete pieces together (today the built-in
//! OCI image-layout store and the registry API; the P2P router, containerd
//! and cluster trust plug in here as they arrive). The `kagami` binary is a
//! thin command-line face over the same builder.

mod airgap;
mod hosts;
mod metrics;
mod node;
pub mod p2p;
mod status;

pub use hosts::{DEFAULT_CONFIG_PATH as DEFAULT_CONTAINERD_CONFIG_PATH, HostsConfig, Mirrored};
pub use node::{Builder, Error, Node, StoreChoice};

/// Default port of the registry API, the one K3s's embedded mirror uses.
pub const DEFAULT_REGISTRY_PORT: u16 = 6443;

/// Default data directory of a node.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/kagami";

/// Where, under the data directory, the built-in store keeps its images.
pub fn layout_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("layout")
}
