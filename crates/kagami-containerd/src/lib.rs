//! kagami's containerd edge: [`Containerd`], the [`Store`](kagami_core::store::Store)
//! backend that serves what a node's containerd holds (image records and
//! content over containerd's gRPC API, content bytes straight from its
//! content directory when readable), and [`hosts`], which renders and
//! writes containerd's `hosts.toml` mirror configuration without losing the
//! operator's own files. [`Containerd::ingest`] copies images from another
//! store into containerd, labelled and pinned as air-gap images are, and
//! [`Containerd::unpin`] takes back the pins kagami set. Wiring these into a
//! node is the `kagami` crate's job.

mod catalogue;
mod client;
mod content;
mod error;
pub mod hosts;
mod ingest;
mod store;
mod watch;
mod write;

pub use error::Error;
pub use ingest::{CRI_PIN_LABEL, ImageLabels, KAGAMI_PIN_LABEL};
pub use store::{Config, Containerd};

#[cfg(feature = "testing")]
pub mod testing;
