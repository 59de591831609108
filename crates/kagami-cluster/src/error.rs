//! The one error type of this crate.

use std::path::PathBuf;

/// What went wrong with trust material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file holds something that is not what it should be.
    #[error("{} is not a valid {what}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
        /// Why it does not.
        reason: String,
    },
    /// A certificate, key or request could not be made or parsed.
    #[error("{what}: {reason}")]
    Pki {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A joining node's proof of its libp2p identity does not hold.
    #[error("the identity proof does not hold: {reason}")]
    Proof {
        /// Why.
        reason: String,
    },
    /// A certificate was asked for names it may not have.
    #[error("refusing to certify {name:?}: {reason}")]
    Name {
        /// The name (or a description of the set of names).
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A join token that is not one.
    #[error("invalid join token: {reason}")]
    Token {
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl Error {
    pub(crate) fn pki(what: &'static str) -> impl FnOnce(rcgen::Error) -> Error {
        move |e| Error::Pki {
            what,
            reason: e.to_string(),
        }
    }
}
