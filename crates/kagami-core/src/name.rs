//! Registry hosts, repository names and tags, each validated by the grammar
//! of the distribution spec (and docker's reference grammar for hosts).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{ParseError, excerpt};

/// Longest repository name we accept, as the distribution spec suggests for
/// the whole name; longer ones break file systems and URLs further down.
pub const MAX_REPOSITORY_LEN: usize = 255;

/// A registry host with an optional port: `docker.io`, `localhost:5000`,
/// `[::1]:5000`. `index.docker.io` and `registry-1.docker.io` become
/// `docker.io`, so that Docker Hub compares equal however it was named.
/// Case is kept, as docker keeps it, so that a reference always prints back
/// to text that parses to the same reference.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Registry(String);

/// Docker Hub under the name every normalised reference uses.
pub const DOCKER_HUB: &str = "docker.io";

impl Registry {
    /// Docker Hub, the registry of references that name none.
    pub fn docker_hub() -> Registry {
        Registry(DOCKER_HUB.to_owned())
    }

    /// The host and port as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is Docker Hub, where one-component names get `library/`.
    pub fn is_docker_hub(&self) -> bool {
        self.0 == DOCKER_HUB
    }
}

impl FromStr for Registry {
    type Err = ParseError;

    fn from_str(input: &str) -> Result<Registry, ParseError> {
        let err = |reason| ParseError::Registry {
            input: excerpt(input),
            reason,
        };
        if input.is_empty() {
            return Err(err("empty"));
        }
        let (host, port) = split_host_port(input).ok_or_else(|| err("malformed port"))?;
        if let Some(port) = port
            && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(err("port must be 1 to 5 digits"));
        }
        if let Some(inner) = host.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| err("unclosed '[' in IPv6 host"))?;
            if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                return Err(err("IPv6 host must be hex digits and ':'"));
            }
        } else if !is_domain_name(host) {
            return Err(err("host must be dot-separated letters, digits and '-'"));
        }
        if input.eq_ignore_ascii_case("index.docker.io")
            || input.eq_ignore_ascii_case("registry-1.docker.io")
            || input.eq_ignore_ascii_case(DOCKER_HUB)
        {
            return Ok(Registry::docker_hub());
        }
        Ok(Registry(input.to_owned()))
    }
}

/// Splits `host[:port]`, minding the colons inside `[ipv6]`.
fn split_host_port(input: &str) -> Option<(&str, Option<&str>)> {
    if input.starts_with('[') {
        let close = input.find(']')?;
        let (host, rest) = input.split_at(close + 1);
        return match rest {
            "" => Some((host, None)),
            _ => rest.strip_prefix(':').map(|port| (host, Some(port))),
        };
    }
    match input.split_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((input, None)),
    }
}

fn is_domain_name(host: &str) -> bool {
    !host.is_empty()
        && host.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
        })
}

/// A repository name such as `library/nginx` (no registry host).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Repository(String);

impl Repository {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name a Docker Hub image is stored under: `nginx` → `library/nginx`.
    pub fn for_docker_hub(self) -> Repository {
        if self.0.contains('/') {
            self
        } else {
            Repository(format!("library/{}", self.0))
        }
    }
}

impl FromStr for Repository {
    type Err = ParseError;

    fn from_str(input: &str) -> Result<Repository, ParseError> {
        let err = |reason| ParseError::Repository {
            input: excerpt(input),
            reason,
        };
        if input.is_empty() {
            return Err(err("empty"));
        }
        if input.len() > MAX_REPOSITORY_LEN {
            return Err(err("longer than 255 characters"));
        }
        for component in input.split('/') {
            if !is_path_component(component) {
                return Err(err(
                    "each '/'-separated part must be lowercase letters and digits joined by '.', '_', '__' or dashes",
                ));
            }
        }
        Ok(Repository(input.to_owned()))
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        let sep_start = i;
        while i < bytes.len() && matches!(bytes[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let separator = &component[sep_start..i];
        let valid = separator == "."
            || separator == "_"
            || separator == "__"
            || separator.bytes().all(|b| b == b'-');
        if !valid {
            return false;
        }
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

impl Tag {
    /// The tag a reference without tag or digest means.
    pub fn latest() -> Tag {
        Tag("latest".to_owned())
    }

    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `latest`, which peers do not resolve unless enabled.
    pub fn is_latest(&self) -> bool {
        self.0 == "latest"
    }
}

impl FromStr for Tag {
    type Err = ParseError;

    fn from_str(input: &str) -> Result<Tag, ParseError> {
        let bytes = input.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        let rest_ok = bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !first_ok || !rest_ok || bytes.len() > 128 {
            return Err(ParseError::Tag {
                input: excerpt(input),
            });
        }
        Ok(Tag(input.to_owned()))
    }
}

macro_rules! text_impls {
    ($($ty:ident),*) => {$(
        impl TryFrom<String> for $ty {
            type Error = ParseError;
            fn try_from(value: String) -> Result<$ty, ParseError> {
                value.parse()
            }
        }
        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($ty), "({})"), self.0)
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    )*};
}
text_impls!(Registry, Repository, Tag);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_grammar() {
        for ok in [
            "a",
            "library/nginx",
            "a/b/c/d/e",
            "foo.bar",
            "foo_bar",
            "foo__bar",
            "foo---bar",
            "0/1",
            "manifests/blobs",
        ] {
            assert!(ok.parse::<Repository>().is_ok(), "{ok:?} refused");
        }
        for bad in [
            "",
            "A",
            "a//b",
            "/a",
            "a/",
            "a___b",
            "a._b",
            ".a",
            "a.",
            "a-",
            "a b",
            "a:b",
            &"a".repeat(256),
        ] {
            assert!(bad.parse::<Repository>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tag_grammar() {
        for ok in ["latest", "1.0", "_x", "A-b.C_d", &"a".repeat(128)] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok:?} refused");
        }
        for bad in ["", ".x", "-x", "a:b", "a/b", &"a".repeat(129), "é"] {
            assert!(bad.parse::<Tag>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn registry_grammar_and_normalisation() {
        let reg = |s: &str| s.parse::<Registry>().map(|r| r.to_string());
        assert_eq!(reg("docker.io").unwrap(), "docker.io");
        assert_eq!(reg("index.docker.io").unwrap(), "docker.io");
        assert_eq!(reg("Quay.IO").unwrap(), "Quay.IO");
        assert_eq!(reg("Index.Docker.IO").unwrap(), "docker.io");
        assert_eq!(reg("localhost:5000").unwrap(), "localhost:5000");
        assert_eq!(reg("[::1]:5000").unwrap(), "[::1]:5000");
        assert_eq!(reg("127.0.0.1").unwrap(), "127.0.0.1");
        for bad in [
            "", "a:", "a:b", "-a.io", "a..io", "[::1", "[zz]", "a:123456", "a_b.io",
        ] {
            assert!(reg(bad).is_err(), "{bad:?} accepted");
        }
    }
}
