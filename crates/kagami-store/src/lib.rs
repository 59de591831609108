//! The built-in store of kagami: an OCI image-layout directory.
//!
//! This crate owns [`Layout`], the default backend of
//! [`kagami_core::store::Store`]: a directory in the OCI image-layout format
//! (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`) that containerd and
//! skopeo understand too. It imports `docker save` and OCI archives (plain,
//! gzip or zstd) all or nothing, removes images with their unshared blobs,
//! keeps an in-memory catalogue so lookups never parse JSON, collects what
//! interrupted imports leave behind, and notices changes other processes
//! make to the same directory. It also owns the pull-through cache
//! ([`Spool`]): blobs fetched from elsewhere, served while they arrive. What an archive may cost an import is
//! bounded by the limits exported here. With the `testing`
//! feature it also provides image fixtures (`testing`) and the
//! conformance kit every `Store` backend must pass (`conformance`).
//! Serving HTTP is left to the registry crate, containerd to its own.

mod catalogue;
mod collect;
mod error;
mod gc;
mod hash;
mod import;
mod index_file;
mod layered;
mod layout;
mod lock;
mod names;
mod oci_json;
mod paths;
mod remove;
mod serve;
mod spool;
mod walk;
mod watch;

#[cfg(feature = "testing")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod testing;

pub use collect::Collected;
pub use error::Error;
pub use import::limits::{
    EXPANSION_FLOOR, EXPANSION_RATIO, MAX_JSON_BYTES, MAX_UNREFERENCED_BYTES,
};
pub use layered::Layered;
pub use layout::{Layout, Options};
pub use spool::{Spool, SpoolUsage};
