//! kagami as a library: a node that serves its image store over the
//! read-only OCI distribution API, for embedding in another agent.
//!
//! [`Node::builder`] wires the concrete pieces together: the image store
//! (containerd's or the built-in OCI image layout), the registry API over
//! HTTPS with the cluster's trust ([`trust`], [`join`]), the P2P router and
//! mirror, containerd's mirror configuration and air-gap imports. The
//! `kagami` binary is a thin command-line face over the same builder.

mod admission;
mod airgap;
mod errors;
mod hosts;
pub mod join;
mod metrics;
mod node;
pub mod p2p;
mod sharing;
mod status;
mod status_page;
mod tls_accept;
pub mod trust;
mod upstreams;

pub use admission::{JOIN_BURST, JOIN_RATE_PER_SECOND};
pub use hosts::{DEFAULT_CONFIG_PATH as DEFAULT_CONTAINERD_CONFIG_PATH, HostsConfig, Mirrored};
pub use node::{Builder, Error, Node, Security, StoreChoice};
pub use sharing::{SharedRegistries, local_hosts};
pub use status::{Provider, Providers};
pub use trust::{CertPolicy, NodeTrust, TrustError, host_name, node_names};
pub use upstreams::upstream_config;

/// Default port of the registry API, the one K3s's embedded mirror uses.
pub const DEFAULT_REGISTRY_PORT: u16 = 6443;

/// Default data directory of a node.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/kagami";

/// Where, under the data directory, the built-in store keeps its images.
pub fn layout_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("layout")
}
