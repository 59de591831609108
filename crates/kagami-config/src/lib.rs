//! kagami's configuration files, read into typed values with errors that
//! name the file, the line and the key.
//!
//! Two files, both in the formats K3s uses so that a K3s node's files work
//! unchanged:
//!
//! - [`config_file`]: `config.yaml`, one key per long command-line flag
//!   (`embedded-registry: true`, `https-listen-port: 6443`). The caller
//!   says which keys are its flags ([`config_file::KnownKey`]); K3s's own
//!   keys are tolerated and reported as [`Ignored`]; anything else is an
//!   error. The result is the file's entries in file order, for the binary
//!   to lay under its command-line flags.
//! - [`registries`]: K3s's `registries.yaml` (`mirrors:` with endpoints and
//!   rewrites, `configs:` with auth and TLS), validated: endpoint URLs,
//!   rewrite regexes and registry names are checked here, once.
//!
//! This crate reads files and checks them; it knows nothing of clap, of the
//! node or of containerd. Wiring the values into the binary is the `kagami`
//! crate's job. Reading is synchronous (`std::fs`): the files are small and
//! read once at start.

mod error;
mod locate;
mod yaml;

pub mod config_file;
pub mod registries;

pub use config_file::ConfigFile;
pub use error::Error;
pub use registries::{NamedFile, Registries};

/// A key that K3s understands and kagami has no use for, left out of the
/// result so that an unmodified K3s file can be read; the caller may log it
/// (the binary does, at debug level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// The key as written (`write-kubeconfig-mode`, `node-label+`), or its
    /// dotted path for nested keys (`configs.registry.example.com.auth.token`).
    pub key: String,
    /// 1-based line of the key in the file.
    pub line: usize,
}
