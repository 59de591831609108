//! Where pull-through fetches from, from K3s's `registries.yaml`: each
//! registry's listed endpoints (with their rewrites), then the registry
//! itself unless the default endpoint is disabled, with the `configs:` TLS
//! and credentials of each host, as containerd would use them.

use base64::Engine as _;
use kagami_config::Registries;
use kagami_upstream::{
    Budgets, Config, Credentials, HostConfig, MirrorConfig, Rewrite, TlsSettings,
};

/// The upstream client's configuration from `registries` (none: every
/// registry is reached at itself).
pub fn upstream_config(
    registries: Option<&Registries>,
    default_endpoint: bool,
    budgets: Budgets,
) -> Config {
    let mut config = Config {
        default_endpoint,
        budgets,
        ..Config::default()
    };
    let Some(registries) = registries else {
        return config;
    };
    for (name, mirror) in &registries.mirrors {
        let endpoints = mirror
            .endpoints
            .iter()
            .filter_map(|url| url.parse::<url::Url>().ok())
            .collect();
        // registries.yaml's rewrites were compiled when it was read.
        let rewrites = mirror
            .rewrites
            .iter()
            .filter_map(|(pattern, replacement)| {
                Some(Rewrite {
                    pattern: regex::Regex::new(pattern).ok()?,
                    replacement: replacement.clone(),
                })
            })
            .collect();
        config.mirrors.insert(
            name.clone(),
            MirrorConfig {
                endpoints,
                rewrites,
            },
        );
    }
    for (host, entry) in &registries.configs {
        let tls = entry
            .tls
            .as_ref()
            .map(|tls| TlsSettings {
                ca_file: tls.ca_file.clone(),
                client: tls.cert_file.clone().zip(tls.key_file.clone()),
                insecure_skip_verify: tls.insecure_skip_verify,
            })
            .unwrap_or_default();
        let credentials = entry.auth.as_ref().and_then(|auth| {
            if let Some(token) = &auth.identity_token {
                return Some(Credentials::IdentityToken(token.clone()));
            }
            if let (Some(username), Some(password)) = (&auth.username, &auth.password) {
                return Some(Credentials::Basic {
                    username: username.clone(),
                    password: password.clone(),
                });
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.auth.as_deref()?)
                .ok()?;
            let (username, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
            Some(Credentials::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            })
        });
        config
            .hosts
            .insert(host.clone(), HostConfig { tls, credentials });
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_yaml_becomes_endpoints_tls_and_credentials() {
        let text = r#"
mirrors:
  docker.io:
    endpoint:
      - "https://mirror.example.com"
    rewrite:
      "^library/(.*)": "hub/$1"
configs:
  "mirror.example.com":
    auth: { auth: "dXNlcjpwYXNz" }
    tls: { ca_file: /ca.pem, insecure_skip_verify: true }
  "registry-1.docker.io":
    auth: { identity_token: "tok" }
"#;
        let registries =
            kagami_config::registries::parse(text, std::path::Path::new("registries.yaml"))
                .unwrap();
        let config = upstream_config(Some(&registries), true, Budgets::default());
        let endpoints = config.endpoints(&kagami_core::Registry::docker_hub());
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints[0].base.as_str(), "https://mirror.example.com/v2");
        assert_eq!(
            endpoints[0].repository(&"library/nginx".parse().unwrap()),
            "hub/nginx"
        );
        assert_eq!(
            endpoints[0].host.credentials,
            Some(Credentials::Basic {
                username: "user".to_owned(),
                password: "pass".to_owned()
            })
        );
        assert!(endpoints[0].host.tls.insecure_skip_verify);
        assert_eq!(
            endpoints[1].host.credentials,
            Some(Credentials::IdentityToken("tok".to_owned()))
        );
        let none = upstream_config(Some(&registries), false, Budgets::default());
        assert_eq!(
            none.endpoints(&kagami_core::Registry::docker_hub()).len(),
            1
        );
    }
}
