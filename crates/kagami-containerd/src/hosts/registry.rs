//! One registry's `hosts.toml` from what `registries.yaml` says of it
//! ([`RegistryHosts`]), in the order K3s's embedded mirror uses: kagami's
//! endpoint, then the listed endpoints, then the upstream as `server`
//! unless fallback to it is disabled. Follows K3s's `getHostConfigs` and
//! its hosts.toml template; each place kagami writes something else says
//! why.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::endpoint::{Normalized, is_localhost, normalize};
use super::render::{HEADER, MirrorEndpoint, default_upstream, host, mirror_host, quote};

/// What containerd should do for one registry besides asking kagami.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryHosts {
    /// The registry as image names spell it (`docker.io`,
    /// `registry.example:5000`, `[2001:db8::1]:5000`), or
    /// [`DEFAULT_REGISTRY`](super::DEFAULT_REGISTRY) for `"*"`.
    pub registry: String,
    /// The `endpoint:` list of its `mirrors:` entry, tried after kagami in
    /// this order.
    pub endpoints: Vec<Endpoint>,
    /// The `configs:` TLS of the registry itself, for the upstream `server`.
    pub upstream_tls: Option<EndpointTls>,
    /// Whether containerd pulls from the upstream when every listed host
    /// failed: `false` under `--disable-default-registry-endpoint`. Not
    /// enforceable for `_default`, which names no upstream: there stock
    /// containerd still falls back (K3s's own containerd build does not).
    pub default_endpoint: bool,
}

impl RegistryHosts {
    /// `registry` with no listed endpoints, no TLS and fallback to its
    /// upstream: what `mirrors: { <registry>: }` means.
    pub fn new(registry: impl Into<String>) -> RegistryHosts {
        RegistryHosts {
            registry: registry.into(),
            endpoints: Vec::new(),
            upstream_tls: None,
            default_endpoint: true,
        }
    }
}

/// One listed endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// As written in `registries.yaml`: `mirror.example.com`,
    /// `https://mirror.example.com:5000`, `http://10.0.0.5/prefix/v2`.
    pub url: String,
    /// The mirror entry's `rewrite:` rules, applied by containerd builds
    /// that support them (K3s's); others ignore the table.
    pub rewrites: Vec<Rewrite>,
    /// The `configs:` TLS of the endpoint's host.
    pub tls: Option<EndpointTls>,
}

impl Endpoint {
    /// An endpoint without rewrites or TLS settings.
    pub fn new(url: impl Into<String>) -> Endpoint {
        Endpoint {
            url: url.into(),
            rewrites: Vec::new(),
            tls: None,
        }
    }
}

/// A `rewrite:` rule: repository names matching `pattern` (a regular
/// expression) are replaced by `replacement` (`$1` for groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The regular expression.
    pub pattern: String,
    /// What a match becomes.
    pub replacement: String,
}

/// The `tls:` part of a `configs:` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointTls {
    /// `ca_file`: the CA that signed the registry's certificate.
    pub ca_file: Option<PathBuf>,
    /// `cert_file`: the client certificate to present.
    pub cert_file: Option<PathBuf>,
    /// `key_file`: the client certificate's key.
    pub key_file: Option<PathBuf>,
    /// `insecure_skip_verify`: do not verify the registry's certificate.
    pub insecure_skip_verify: bool,
}

/// The `hosts.toml` for `hosts.registry`, or `None` when there is nothing
/// for containerd to be told (a localhost registry with no endpoints and no
/// TLS settings).
///
/// kagami's endpoint comes first with its own CA and client certificate,
/// never with rewrites or the registry's TLS. The listed endpoints follow,
/// normalised as K3s does (`https://` and `/v2` added, `override_path =
/// true` for any other path); invalid ones and repeats are skipped with a
/// warning, and duplicate rewrite patterns keep the first. The upstream is
/// `server`, with the registry's TLS as top-level keys; with
/// `default_endpoint` off it may only be pushed to (`capabilities =
/// ["push"]`), so containerd pulls from the hosts listed alone, and a listed
/// endpoint that is the registry itself is the only way to pull from it.
/// With fallback on, the registry itself listed last is the `server` (K3s's
/// rule: rewrites never apply to the upstream).
///
/// `_default` (`"*"`) gets the `"*"` entry's endpoints and TLS; a registry
/// with its own entry gets only its own, since containerd reads one
/// directory per registry.
///
/// A localhost registry never gets kagami's endpoint, as in K3s: the name
/// means a different registry on every node, so its images must not be
/// shared. (A `"*"` mirror still covers localhost images through
/// `_default`; the registry API must refuse them.)
pub fn render_registry(mirror: &MirrorEndpoint, hosts: &RegistryHosts) -> Option<String> {
    let local = is_localhost(&hosts.registry);
    let upstream = default_upstream(&hosts.registry);
    let upstream_url = upstream.as_deref().and_then(normalize).map(|n| n.url);
    let mut seen: Vec<String> = Vec::new();
    if !local && let Some(ours) = normalize(&mirror.url) {
        seen.push(ours.url);
    }
    let mut listed: Vec<(Normalized, &Endpoint)> = Vec::new();
    let mut server_tls = hosts.upstream_tls.as_ref();
    for (i, endpoint) in hosts.endpoints.iter().enumerate() {
        let Some(normalized) = normalize(&endpoint.url) else {
            tracing::warn!(registry = %hosts.registry, endpoint = %endpoint.url, "ignoring an endpoint that is not a registry URL");
            continue;
        };
        if seen.contains(&normalized.url) {
            tracing::warn!(registry = %hosts.registry, endpoint = %endpoint.url, "ignoring an endpoint listed twice");
            continue;
        }
        seen.push(normalized.url.clone());
        let last = i + 1 == hosts.endpoints.len();
        if hosts.default_endpoint && last && upstream_url.as_ref() == Some(&normalized.url) {
            server_tls = endpoint.tls.as_ref().or(server_tls);
            continue;
        }
        listed.push((normalized, endpoint));
    }
    let server_tls = server_tls.map(|tls| tls_lines(tls, "")).unwrap_or_default();
    if local && listed.is_empty() && (server_tls.is_empty() || !hosts.default_endpoint) {
        return None;
    }

    let mut out = String::from(if local { LOCAL_HEADER } else { HEADER });
    // kagami writes the upstream as containerd's default would be (no
    // `/v2`, no root `capabilities`, which default to pull, resolve and
    // push) where K3s writes `…/v2` and the capabilities: the same to
    // containerd, and files kagami wrote before stay as they were.
    // `_default` has no server: containerd puts in the registry being
    // pulled (K3s writes `server = ""` to the same end).
    if let Some(server) = &upstream {
        if !hosts.default_endpoint {
            out.push_str(NO_FALLBACK_NOTE);
        }
        let _ = writeln!(out, "server = {}", quote(server));
        if !hosts.default_endpoint {
            // K3s leaves `server` out instead, which only its own containerd
            // build honours: stock containerd (1.6 checked) then puts the
            // upstream back as a last host with every capability. A server
            // that may only be pushed to is never pulled or resolved from.
            out.push_str("capabilities = [\"push\"]\n");
        }
    }
    if upstream.is_some() || hosts.default_endpoint {
        out.push_str(&server_tls);
    }
    if !local {
        mirror_host(&mut out, mirror);
    }
    for (normalized, endpoint) in &listed {
        listed_host(&mut out, &hosts.registry, normalized, endpoint);
    }
    if local && listed.is_empty() {
        // containerd rejects a hosts.toml without a `host` tree, and with it
        // the TLS settings above (containerd#10027; K3s always writes one).
        out.push_str("\n[host]\n");
    }
    Some(out)
}

/// Says why the upstream of a registry without fallback may only be pushed to.
const NO_FALLBACK_NOTE: &str = "# Pulls never fall back to the registry itself (only listed hosts are\n\
                                # tried); it stays the server for pushes.\n";

/// The header of a localhost registry's file, which has no kagami endpoint.
const LOCAL_HEADER: &str = "# Written by kagami. A localhost registry is a different one on every\n\
                            # node, so kagami does not mirror it.\n\
                            # `kagami cleanup` puts back whatever was here before.\n";

fn listed_host(out: &mut String, registry: &str, normalized: &Normalized, endpoint: &Endpoint) {
    host(out, &normalized.url);
    if normalized.override_path {
        out.push_str("  override_path = true\n");
    }
    if let Some(tls) = &endpoint.tls {
        out.push_str(&tls_lines(tls, "  "));
    }
    if endpoint.rewrites.is_empty() {
        return;
    }
    let _ = write!(out, "\n  [host.{}.rewrite]\n", quote(&normalized.url));
    let mut patterns: Vec<&str> = Vec::new();
    for rewrite in &endpoint.rewrites {
        // A key written twice makes containerd reject the whole file.
        if patterns.contains(&rewrite.pattern.as_str()) {
            tracing::warn!(%registry, pattern = %rewrite.pattern, "ignoring a rewrite pattern listed twice");
            continue;
        }
        patterns.push(&rewrite.pattern);
        // Quoted, where K3s writes both strings raw and a `\` in a regular
        // expression gives containerd invalid TOML.
        let _ = writeln!(
            out,
            "    {} = {}",
            quote(&rewrite.pattern),
            quote(&rewrite.replacement)
        );
    }
}

/// `ca`, `client` and `skip_verify` lines, each indented by `indent`.
///
/// `ca` is a string, as on kagami's own host, where K3s writes a
/// one-element array: containerd reads both. A certificate without a key is
/// written as `client = "<cert>"`, which containerd reads as one PEM file
/// holding both (K3s writes `[[cert, ""]]`, which containerd resolves to
/// the host directory); a key without a certificate is useless and left
/// out.
fn tls_lines(tls: &EndpointTls, indent: &str) -> String {
    let mut out = String::new();
    let path = |p: &Path| quote(&p.to_string_lossy());
    if let Some(ca) = &tls.ca_file {
        let _ = writeln!(out, "{indent}ca = {}", path(ca));
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let _ = writeln!(out, "{indent}client = [[{}, {}]]", path(cert), path(key));
        }
        (Some(cert), None) => {
            let _ = writeln!(out, "{indent}client = {}", path(cert));
        }
        (None, Some(key)) => {
            tracing::warn!(key = %key.display(), "ignoring a client key without a certificate");
        }
        (None, None) => {}
    }
    if tls.insecure_skip_verify {
        let _ = writeln!(out, "{indent}skip_verify = true");
    }
    out
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
