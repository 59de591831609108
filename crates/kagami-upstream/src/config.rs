//! Where a registry's content is fetched from, as containerd would fetch
//! it: the endpoints `registries.yaml` lists for the registry (or for
//! `"*"`), in order, each with its rewrites and the `configs:` TLS and
//! credentials of its host; then the registry itself, unless the default
//! endpoint is disabled (`docker.io` is `registry-1.docker.io`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kagami_core::{Registry, Repository};

/// Credentials for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (`username`/`password`, or `auth`).
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
    /// An identity (refresh) token, exchanged for access tokens.
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(..)"),
        }
    }
}

/// TLS settings for one registry host (`configs.<host>.tls`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// A CA bundle to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key.
    pub client: Option<(PathBuf, PathBuf)>,
    /// Accept any certificate (`insecure_skip_verify`).
    pub insecure_skip_verify: bool,
}

/// What `configs:` says about one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    /// Its TLS settings.
    pub tls: TlsSettings,
    /// Its credentials.
    pub credentials: Option<Credentials>,
}

/// A rewrite of repository names for one endpoint.
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// Matched against the repository name.
    pub pattern: regex::Regex,
    /// What a match becomes (`$1`-style groups).
    pub replacement: String,
}

/// One `mirrors:` entry: the endpoints listed, with their rewrites.
#[derive(Debug, Clone, Default)]
pub struct MirrorConfig {
    /// Endpoint URLs as written (`https://mirror.example.com`).
    pub endpoints: Vec<url::Url>,
    /// Rewrites applied at every listed endpoint.
    pub rewrites: Vec<Rewrite>,
}

/// How long each step of an upstream request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// A TCP (and TLS) connection.
    pub connect: Duration,
    /// A response head, from sending the request.
    pub response: Duration,
    /// A body's next bytes (a registry that stops sending is given up on).
    pub idle: Duration,
}

impl Default for Budgets {
    fn default() -> Budgets {
        Budgets {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(15),
            idle: Duration::from_secs(30),
        }
    }
}

/// Everything the upstream client needs to know.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `mirrors:` by registry name (`"*"` for every registry).
    pub mirrors: BTreeMap<String, MirrorConfig>,
    /// `configs:` by host (`host` or `host:port`, or `"*"`).
    pub hosts: BTreeMap<String, HostConfig>,
    /// Whether the registry itself is tried after the listed endpoints.
    pub default_endpoint: bool,
    /// The waits' budgets.
    pub budgets: Budgets,
}

/// One place to fetch a registry's content from.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The base URL, ending with `/v2`.
    pub base: url::Url,
    /// Rewrites of repository names here.
    pub rewrites: Vec<Rewrite>,
    /// The host's TLS settings and credentials.
    pub host: HostConfig,
}

impl Endpoint {
    /// The repository name as this endpoint knows it.
    pub fn repository(&self, repository: &Repository) -> String {
        let name = repository.as_str();
        for rewrite in &self.rewrites {
            if rewrite.pattern.is_match(name) {
                return rewrite
                    .pattern
                    .replace(name, rewrite.replacement.as_str())
                    .into_owned();
            }
        }
        name.to_owned()
    }

    /// `host[:port]` of the endpoint.
    pub fn authority(&self) -> String {
        let host = self.base.host_str().unwrap_or_default();
        match self.base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }
}

impl Config {
    /// The endpoints to try for `registry`, in order.
    pub fn endpoints(&self, registry: &Registry) -> Vec<Endpoint> {
        let mut out = Vec::new();
        let mirror = self
            .mirrors
            .get(registry.as_str())
            .or_else(|| self.mirrors.get("*"));
        if let Some(mirror) = mirror {
            for url in &mirror.endpoints {
                out.push(self.endpoint(url, mirror.rewrites.clone()));
            }
        }
        // The registry itself, unless disabled or listed already (then it
        // is tried in the list's place).
        if let Some(own) = own_url(registry)
            && self.default_endpoint
            && !out.iter().any(|e| e.authority() == authority(&own))
        {
            out.push(self.endpoint(&own, Vec::new()));
        }
        out
    }

    fn endpoint(&self, url: &url::Url, rewrites: Vec<Rewrite>) -> Endpoint {
        let mut base = url.clone();
        let path = base.path().trim_end_matches('/').to_owned();
        if !path.ends_with("/v2") {
            base.set_path(&format!("{path}/v2"));
        }
        let host_name = authority(url);
        let host = self
            .hosts
            .get(&host_name)
            .or_else(|| url.host_str().and_then(|h| self.hosts.get(h)))
            .or_else(|| self.hosts.get("*"))
            .cloned()
            .unwrap_or_default();
        Endpoint {
            base,
            rewrites,
            host,
        }
    }
}

/// `https://<registry>`, where Docker Hub's content is served from
/// `registry-1.docker.io`.
fn own_url(registry: &Registry) -> Option<url::Url> {
    let host = if registry.is_docker_hub() {
        "registry-1.docker.io"
    } else {
        registry.as_str()
    };
    url::Url::parse(&format!("https://{host}")).ok()
}

fn authority(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> url::Url {
        text.parse().unwrap()
    }

    fn bases(endpoints: &[Endpoint]) -> Vec<String> {
        endpoints.iter().map(|e| e.base.to_string()).collect()
    }

    #[test]
    fn listed_endpoints_then_the_registry_itself() {
        let mut config = Config {
            default_endpoint: true,
            ..Config::default()
        };
        config.mirrors.insert(
            "docker.io".to_owned(),
            MirrorConfig {
                endpoints: vec![
                    url("https://mirror.example.com"),
                    url("http://10.0.0.1:5000/v2"),
                ],
                rewrites: vec![Rewrite {
                    pattern: regex::Regex::new("^library/(.*)").unwrap(),
                    replacement: "hub/$1".to_owned(),
                }],
            },
        );
        let hub = Registry::docker_hub();
        let endpoints = config.endpoints(&hub);
        assert_eq!(
            bases(&endpoints),
            [
                "https://mirror.example.com/v2",
                "http://10.0.0.1:5000/v2",
                "https://registry-1.docker.io/v2"
            ]
        );
        let repo: Repository = "library/nginx".parse().unwrap();
        assert_eq!(endpoints[0].repository(&repo), "hub/nginx");
        assert_eq!(endpoints[2].repository(&repo), "library/nginx");
        config.default_endpoint = false;
        assert_eq!(config.endpoints(&hub).len(), 2);
        // A registry with no mirrors entry: itself, or nothing.
        let quay: Registry = "quay.io".parse().unwrap();
        assert_eq!(config.endpoints(&quay).len(), 0);
        config.default_endpoint = true;
        assert_eq!(bases(&config.endpoints(&quay)), ["https://quay.io/v2"]);
    }

    #[test]
    fn the_registry_listed_as_an_endpoint_is_not_tried_twice() {
        let mut config = Config {
            default_endpoint: true,
            ..Config::default()
        };
        config.mirrors.insert(
            "10.0.0.2:5000".to_owned(),
            MirrorConfig {
                endpoints: vec![url("http://10.0.0.2:5000")],
                rewrites: Vec::new(),
            },
        );
        config.hosts.insert(
            "10.0.0.2:5000".to_owned(),
            HostConfig {
                credentials: Some(Credentials::Basic {
                    username: "u".to_owned(),
                    password: "p".to_owned(),
                }),
                ..HostConfig::default()
            },
        );
        let registry: Registry = "10.0.0.2:5000".parse().unwrap();
        let endpoints = config.endpoints(&registry);
        assert_eq!(bases(&endpoints), ["http://10.0.0.2:5000/v2"]);
        assert!(endpoints[0].host.credentials.is_some());
    }
}
