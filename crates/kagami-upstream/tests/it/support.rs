//! The test support of `kagami_upstream::testing`, and clients for it.

use std::path::Path;

use kagami_core::Registry;
use kagami_upstream::{Client, Config, Credentials, HostConfig, MirrorConfig, TlsSettings};

pub use kagami_upstream::testing::*;

pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client of `registry` alone, through `endpoint` (its URL), with these
/// host settings.
pub fn client(registry: &Registry, endpoint: &str, host: HostConfig) -> Client {
    let url: url::Url = endpoint.parse().unwrap();
    let mut config = Config::default();
    config.mirrors.insert(
        registry.to_string(),
        MirrorConfig {
            endpoints: vec![url.clone()],
            rewrites: Vec::new(),
        },
    );
    let authority = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    config.hosts.insert(authority, host);
    Client::new(config)
}

pub fn basic_credentials() -> Credentials {
    Credentials::Basic {
        username: USER.to_owned(),
        password: PASSWORD.to_owned(),
    }
}

pub fn trusting(ca: &Path) -> TlsSettings {
    TlsSettings {
        ca_file: Some(ca.to_owned()),
        ..TlsSettings::default()
    }
}
