//! The bed's one error type.

use std::path::PathBuf;

/// What went wrong making, running or measuring the bed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bed needs root (network namespaces, `tc`).
    #[error(
        "the test bed needs root to make network namespaces (run the tests as root, as CI does)"
    )]
    NotRoot,
    /// A program the bed drives is missing.
    #[error("{program} is not installed: run scripts/install-deps (scripts/test does)")]
    Missing {
        /// The program.
        program: &'static str,
    },
    /// A command failed.
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed.
        output: String,
    },
    /// A file or directory could not be made, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Something did not happen within its deadline.
    #[error("timed out waiting for {what}: {detail}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// What was seen meanwhile (a log, say).
        detail: String,
    },
    /// A host's content or a measurement was not what it should be.
    #[error("{0}")]
    Check(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
