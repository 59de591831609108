//! Endpoint addresses as `registries.yaml` spells them (`mirror.example.com`,
//! `https://mirror.example.com`, `http://10.0.0.5:5000/prefix`) turned into
//! the `[host."…"]` keys containerd reads, the way K3s normalises them
//! (`normalizeEndpointAddress` in K3s's `pkg/agent/containerd/config.go`,
//! which follows containerd's own scheme and host rules).

use std::net::IpAddr;

/// An endpoint as containerd should be told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Normalized {
    /// `scheme://host[:port]/path`, always with a path: `/v2` unless the
    /// endpoint named another.
    pub(super) url: String,
    /// The path is not the standard `/v2`: containerd must use it as the API
    /// root instead of appending `/v2` to it.
    pub(super) override_path: bool,
}

/// The `[host."…"]` form of `endpoint`, or `None` when it is not an HTTP(S)
/// URL or bare `host[:port][/path]`.
///
/// As K3s does: a missing scheme is `https`, except `http` for a localhost
/// address on a port other than 443 (containerd's default for such
/// registries); `docker.io` means Docker Hub's API host; an empty path or
/// `/` becomes `/v2`; any other path is kept and marked `override_path`.
///
/// Where kagami differs, and why: trailing slashes are dropped first, so
/// `…/v2/` is the standard path rather than an override and `/prefix/` does
/// not give containerd `/prefix//<repository>`; a query, fragment, user
/// name or non-HTTP scheme makes the endpoint invalid instead of being
/// passed on for containerd to trip over.
pub(super) fn normalize(endpoint: &str) -> Option<Normalized> {
    let (scheme, rest) = match endpoint.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, endpoint),
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    let valid_path = !path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#');
    if !valid_authority(authority) || !valid_path {
        return None;
    }
    let scheme = match scheme {
        Some(scheme @ ("http" | "https")) => scheme,
        Some(_) => return None,
        None => match port(authority) {
            Some(port) if port != "443" && is_localhost(authority) => "http",
            _ => "https",
        },
    };
    let authority = if authority == "docker.io" {
        "registry-1.docker.io"
    } else {
        authority
    };
    let path = path.trim_end_matches('/');
    let (path, override_path) = match path {
        "" | "/v2" => ("/v2", false),
        other => (other, true),
    };
    Some(Normalized {
        url: format!("{scheme}://{authority}{path}"),
        override_path,
    })
}

/// Whether `registry` (`host[:port]`, IPv6 in brackets) is this machine:
/// `localhost` or a loopback address, as containerd's `IsLocalhost` decides.
pub(super) fn is_localhost(registry: &str) -> bool {
    let host = host(registry);
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host of `host[:port]` without brackets or port.
fn host(authority: &str) -> &str {
    if let Some(bracketed) = authority.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or(bracketed);
    }
    match authority.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address.
        Some((host, _)) if !host.contains(':') => host,
        _ => authority,
    }
}

/// The port of `host[:port]`, if one is written.
fn port(authority: &str) -> Option<&str> {
    let after_host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map(|(_, after)| after)?,
        None if authority.matches(':').count() > 1 => return None,
        None => authority,
    };
    after_host.rsplit_once(':').map(|(_, port)| port)
}

fn valid_authority(authority: &str) -> bool {
    let bad_char = authority
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '@' | '?' | '#'));
    let good_port =
        port(authority).is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let good_brackets = !authority.starts_with('[') || authority.contains(']');
    !authority.is_empty() && !host(authority).is_empty() && !bad_char && good_port && good_brackets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(endpoint: &str) -> (String, bool) {
        let n = normalize(endpoint).unwrap();
        (n.url, n.override_path)
    }

    // The expectations are those of K3s's `Test_UnitGetHostConfigs`.
    #[test]
    fn normalises_like_k3s() {
        let plain = |u: &str| (u.to_owned(), false);
        assert_eq!(
            url("registry.example.com"),
            plain("https://registry.example.com/v2")
        );
        assert_eq!(
            url("https://registry.example.com"),
            plain("https://registry.example.com/v2")
        );
        assert_eq!(
            url("https://registry.example.com/v2"),
            plain("https://registry.example.com/v2")
        );
        assert_eq!(
            url("registry.example.com/v2"),
            plain("https://registry.example.com/v2")
        );
        assert_eq!(
            url("registry.example.com:443"),
            plain("https://registry.example.com:443/v2")
        );
        assert_eq!(url("1.2.3.4"), plain("https://1.2.3.4/v2"));
        assert_eq!(url("1.2.3.4:443"), plain("https://1.2.3.4:443/v2"));
        assert_eq!(url("localhost:5000"), plain("http://localhost:5000/v2"));
        assert_eq!(
            url("https://localhost:5000"),
            plain("https://localhost:5000/v2")
        );
        assert_eq!(url("127.0.0.1:5000"), plain("http://127.0.0.1:5000/v2"));
        assert_eq!(url("[::1]:5000"), plain("http://[::1]:5000/v2"));
        assert_eq!(url("localhost"), plain("https://localhost/v2"));
        assert_eq!(url("docker.io"), plain("https://registry-1.docker.io/v2"));
        let over = |u: &str| (u.to_owned(), true);
        assert_eq!(
            url("https://registry.example.com/prefix/v2"),
            over("https://registry.example.com/prefix/v2")
        );
        assert_eq!(
            url("registry.example.com/prefix/v2"),
            over("https://registry.example.com/prefix/v2")
        );
        assert_eq!(
            url("https://r.example/project/registry"),
            over("https://r.example/project/registry")
        );
    }

    #[test]
    fn trailing_slashes_do_not_make_an_override() {
        assert_eq!(
            url("https://r.example/"),
            ("https://r.example/v2".to_owned(), false)
        );
        assert_eq!(
            url("https://r.example/v2/"),
            ("https://r.example/v2".to_owned(), false)
        );
        assert_eq!(
            url("https://r.example/p/"),
            ("https://r.example/p".to_owned(), true)
        );
    }

    #[test]
    fn rejects_what_is_not_a_registry_url() {
        for bad in [
            "",
            "https://",
            "ftp://r.example",
            "https://user@r.example",
            "https://r.example/v2?x=1",
            "r.example:port",
            "r.example:",
            "https://[::1",
            "r example",
        ] {
            assert_eq!(normalize(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn localhost_is_the_name_or_a_loopback_address() {
        for local in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_localhost(local), "{local}");
        }
        for remote in [
            "docker.io",
            "localhost.example",
            "10.0.0.1:5000",
            "[2001:db8::1]:5000",
            "_default",
        ] {
            assert!(!is_localhost(remote), "{remote}");
        }
    }
}
