//! What every `hosts.toml` kagami writes has in common: this node's
//! registry ([`MirrorEndpoint`]), the upstream a registry falls back to,
//! and TOML quoting.

use std::fmt::Write;
use std::path::PathBuf;

use super::endpoint::normalize;

/// The registry name whose file applies to every registry without its own.
pub const DEFAULT_REGISTRY: &str = "_default";

/// This node's registry, as containerd should reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorEndpoint {
    /// Its URL including the API path, e.g. `https://127.0.0.1:6443/v2`
    /// (containerd appends `/<repository>/manifests/…` to it).
    pub url: String,
    /// The CA certificate containerd verifies the endpoint with.
    pub ca: Option<PathBuf>,
    /// The client certificate and key containerd presents.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// The upstream containerd falls back to for `registry`: Docker Hub's API
/// host for `docker.io`, `http://<host>` for a localhost registry on a port
/// other than 443 (containerd's and K3s's default for those),
/// `https://<host>` for any other, none for `_default`.
pub fn default_upstream(registry: &str) -> Option<String> {
    match registry {
        DEFAULT_REGISTRY => None,
        "docker.io" => Some("https://registry-1.docker.io".to_owned()),
        host => {
            let scheme = match normalize(host) {
                Some(endpoint) if endpoint.url.starts_with("http://") => "http",
                _ => "https",
            };
            Some(format!("{scheme}://{host}"))
        }
    }
}

/// The first lines of every file in which kagami's mirror comes first.
pub(super) const HEADER: &str = "# Written by kagami: its mirror first, then the listed endpoints.\n\
                                 # `kagami cleanup` puts back whatever was here before.\n";

/// kagami's own `[host."…"]` table, with its CA and client certificate.
pub(super) fn mirror_host(out: &mut String, mirror: &MirrorEndpoint) {
    host(out, &mirror.url);
    if let Some(ca) = &mirror.ca {
        let _ = writeln!(out, "  ca = {}", quote(&ca.to_string_lossy()));
    }
    if let Some((cert, key)) = &mirror.client {
        let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
        let _ = writeln!(out, "  client = [[{}, {}]]", quote(&cert), quote(&key));
    }
}

/// Opens a `[host."…"]` table that containerd may pull and resolve from.
pub(super) fn host(out: &mut String, url: &str) {
    let _ = write!(
        out,
        "\n[host.{}]\n  capabilities = [\"pull\", \"resolve\"]\n",
        quote(url)
    );
}

/// A TOML basic string.
pub(super) fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{:04X}", u32::from(c));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::{RegistryHosts, render_registry};

    fn mirror() -> MirrorEndpoint {
        MirrorEndpoint {
            url: "https://127.0.0.1:6443/v2".to_owned(),
            ca: None,
            client: None,
        }
    }

    fn render(mirror: &MirrorEndpoint, registry: &str) -> String {
        render_registry(mirror, &RegistryHosts::new(registry)).unwrap()
    }

    #[test]
    fn docker_hub_falls_back_to_its_api_host() {
        let text = render(&mirror(), "docker.io");
        let doc: toml_edit::DocumentMut = text.parse().unwrap();
        assert_eq!(doc["server"].as_str(), Some("https://registry-1.docker.io"));
        let hosts: Vec<_> = doc["host"]
            .as_table()
            .unwrap()
            .iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(hosts, ["https://127.0.0.1:6443/v2"]);
    }

    #[test]
    fn quotes_what_toml_needs_quoted() {
        let mut m = mirror();
        m.ca = Some(PathBuf::from("/odd \"dir\"\\ca.pem"));
        let doc: toml_edit::DocumentMut = render(&m, "docker.io").parse().unwrap();
        let ca = doc["host"]["https://127.0.0.1:6443/v2"]["ca"].as_str();
        assert_eq!(ca, Some("/odd \"dir\"\\ca.pem"));
    }
}
