//! The one error type of this crate: a file that could not be read, or one
//! whose content is wrong, with the line and key to fix.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a configuration file was refused.
///
/// Displayed as `FILE:LINE: key "KEY": MESSAGE` (or without the parts that
/// are unknown), which editors and terminals turn into a link.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read (missing, unreadable, not UTF-8, too big).
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS (or the size check) said.
        #[source]
        source: io::Error,
    },
    /// The file was read, and its content is wrong: bad YAML, an unknown
    /// key, a value of the wrong type, an invalid URL or regex.
    #[error("{}", Located { path, line: *line, key: key.as_deref(), message })]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending key or value; `None` only when the
        /// YAML parser itself gave no position.
        line: Option<usize>,
        /// The offending key: the flag name in `config.yaml`, a dotted path
        /// such as `mirrors.docker.io.endpoint[0]` in `registries.yaml`.
        key: Option<String>,
        /// What is wrong, and where possible how to fix it.
        message: String,
    },
}

impl Error {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Error::Read { path, .. } | Error::Parse { path, .. } => path,
        }
    }

    /// 1-based line of the problem, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            Error::Read { .. } => None,
            Error::Parse { line, .. } => *line,
        }
    }

    /// The offending key, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Error::Read { .. } => None,
            Error::Parse { key, .. } => key.as_deref(),
        }
    }

    /// Whether the file does not exist (as opposed to being unreadable or
    /// wrong), for callers that tolerate a missing default file.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

struct Located<'a> {
    path: &'a Path,
    line: Option<usize>,
    key: Option<&'a str>,
    message: &'a str,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = self.key {
            write!(f, ": key {key:?}")?;
        }
        write!(f, ": {}", self.message)
    }
}
