use super::*;
use toml_edit::DocumentMut;

const OURS: &str = "https://127.0.0.1:6443/v2";

fn mirror() -> MirrorEndpoint {
    MirrorEndpoint {
        url: OURS.to_owned(),
        ca: Some(PathBuf::from("/kagami/ca.crt")),
        client: Some((
            PathBuf::from("/kagami/node.crt"),
            PathBuf::from("/kagami/node.key"),
        )),
    }
}

fn render(hosts: &RegistryHosts) -> DocumentMut {
    let text = render_registry(&mirror(), hosts).expect("a file");
    text.parse()
        .unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"))
}

/// The `[host."…"]` keys in the order containerd tries them.
fn hosts_of(doc: &DocumentMut) -> Vec<String> {
    doc["host"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(k, _)| k.to_owned())
        .collect()
}

fn registry(name: &str, endpoints: &[&str]) -> RegistryHosts {
    RegistryHosts {
        endpoints: endpoints.iter().map(|e| Endpoint::new(*e)).collect(),
        ..RegistryHosts::new(name)
    }
}

fn tls(ca: &str) -> EndpointTls {
    EndpointTls {
        ca_file: Some(PathBuf::from(ca)),
        ..EndpointTls::default()
    }
}

#[test]
fn kagami_first_then_the_listed_endpoints_then_the_upstream() {
    let doc = render(&registry(
        "docker.io",
        &["b.example", "https://a.example:5000"],
    ));
    let want = [OURS, "https://b.example/v2", "https://a.example:5000/v2"];
    assert_eq!(hosts_of(&doc), want);
    assert_eq!(doc["server"].as_str(), Some("https://registry-1.docker.io"));
    assert_eq!(doc["host"][OURS]["ca"].as_str(), Some("/kagami/ca.crt"));
}

/// The root `capabilities`, as containerd reads them: all when absent.
fn root_capabilities(doc: &DocumentMut) -> Vec<&str> {
    match doc.get("capabilities") {
        None => vec!["pull", "resolve", "push"],
        Some(c) => c
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect(),
    }
}

#[test]
fn disabled_fallback_leaves_the_upstream_for_pushes_only() {
    let hosts = RegistryHosts {
        default_endpoint: false,
        upstream_tls: Some(tls("/up/ca.crt")),
        ..registry("docker.io", &["https://mirror.example.com"])
    };
    let doc = render(&hosts);
    assert_eq!(doc["server"].as_str(), Some("https://registry-1.docker.io"));
    assert_eq!(root_capabilities(&doc), ["push"]);
    assert_eq!(doc["ca"].as_str(), Some("/up/ca.crt"));
    assert_eq!(hosts_of(&doc), [OURS, "https://mirror.example.com/v2"]);

    let on = render(&registry("docker.io", &["https://mirror.example.com"]));
    assert_eq!(root_capabilities(&on), ["pull", "resolve", "push"]);
}

#[test]
fn the_registry_itself_listed_is_kept_when_fallback_is_disabled() {
    let hosts = RegistryHosts {
        default_endpoint: false,
        ..registry("mirror.example.com", &["https://mirror.example.com"])
    };
    let doc = render(&hosts);
    assert_eq!(root_capabilities(&doc), ["push"]);
    assert_eq!(hosts_of(&doc), [OURS, "https://mirror.example.com/v2"]);
}

#[test]
fn default_has_no_upstream_to_disable() {
    let hosts = RegistryHosts {
        default_endpoint: false,
        upstream_tls: Some(tls("/star/ca.crt")),
        ..RegistryHosts::new("_default")
    };
    let doc = render(&hosts);
    assert!(doc.get("server").is_none() && doc.get("capabilities").is_none());
    assert!(doc.get("ca").is_none());
}

#[test]
fn the_registry_itself_listed_last_is_the_server_when_fallback_is_on() {
    let mut upstream = Endpoint::new("docker.io");
    upstream.tls = Some(tls("/hub/ca.crt"));
    upstream.rewrites = vec![Rewrite {
        pattern: "^a/(.*)".into(),
        replacement: "b/$1".into(),
    }];
    let hosts = RegistryHosts {
        endpoints: vec![Endpoint::new("m.example"), upstream],
        ..RegistryHosts::new("docker.io")
    };
    let text = render_registry(&mirror(), &hosts).unwrap();
    let doc: DocumentMut = text.parse().unwrap();
    assert_eq!(hosts_of(&doc), [OURS, "https://m.example/v2"]);
    assert_eq!(doc["server"].as_str(), Some("https://registry-1.docker.io"));
    assert_eq!(doc["ca"].as_str(), Some("/hub/ca.crt"));
    assert!(
        !text.contains("rewrite"),
        "rewrites never apply to the upstream:\n{text}"
    );

    // Not last: tried where it is listed, and again as the server.
    let doc = render(&registry("docker.io", &["docker.io", "m.example"]));
    let want = [
        OURS,
        "https://registry-1.docker.io/v2",
        "https://m.example/v2",
    ];
    assert_eq!(hosts_of(&doc), want);
    assert!(doc.get("server").is_some());
}

#[test]
fn rewrites_go_to_listed_endpoints_never_to_kagamis() {
    let rewrite = Rewrite {
        pattern: r"^rancher/(.*)\.x".into(),
        replacement: "mirror/$1".into(),
    };
    let mut ours_again = Endpoint::new(OURS);
    ours_again.rewrites = vec![rewrite.clone()];
    let mut theirs = Endpoint::new("https://registry.example.com:5000");
    theirs.rewrites = vec![rewrite.clone(), rewrite.clone()];
    let hosts = RegistryHosts {
        endpoints: vec![ours_again, theirs],
        ..RegistryHosts::new("docker.io")
    };
    let doc = render(&hosts);
    let url = "https://registry.example.com:5000/v2";
    assert_eq!(hosts_of(&doc), [OURS, url]);
    assert!(doc["host"][OURS].get("rewrite").is_none());
    let rewrites = doc["host"][url]["rewrite"].as_table().unwrap();
    assert_eq!(rewrites.len(), 1);
    assert_eq!(rewrites[r"^rancher/(.*)\.x"].as_str(), Some("mirror/$1"));
}

#[test]
fn tls_of_listed_endpoints_and_of_the_upstream() {
    let mut endpoint = Endpoint::new("https://r.example/prefix");
    endpoint.tls = Some(EndpointTls {
        ca_file: Some("/r/ca.crt".into()),
        cert_file: Some("/r/client.crt".into()),
        key_file: Some("/r/client.key".into()),
        insecure_skip_verify: true,
    });
    let mut cert_only = Endpoint::new("s.example");
    cert_only.tls = Some(EndpointTls {
        cert_file: Some("/s/both.pem".into()),
        ..EndpointTls::default()
    });
    let hosts = RegistryHosts {
        endpoints: vec![endpoint, cert_only],
        upstream_tls: Some(EndpointTls {
            insecure_skip_verify: true,
            ..EndpointTls::default()
        }),
        ..RegistryHosts::new("quay.io")
    };
    let doc = render(&hosts);
    assert_eq!(doc["skip_verify"].as_bool(), Some(true));
    let r = &doc["host"]["https://r.example/prefix"];
    assert_eq!(r["override_path"].as_bool(), Some(true));
    assert_eq!(r["ca"].as_str(), Some("/r/ca.crt"));
    assert_eq!(r["skip_verify"].as_bool(), Some(true));
    let pair = r["client"]
        .as_array()
        .unwrap()
        .get(0)
        .unwrap()
        .as_array()
        .unwrap();
    let pair: Vec<_> = pair.iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(pair, ["/r/client.crt", "/r/client.key"]);
    assert_eq!(
        doc["host"]["https://s.example/v2"]["client"].as_str(),
        Some("/s/both.pem")
    );
    // kagami's own host keeps its own certificates.
    assert!(doc["host"][OURS].get("skip_verify").is_none());
}

#[test]
fn invalid_and_repeated_endpoints_are_skipped() {
    let doc = render(&registry(
        "docker.io",
        &[
            "ftp://x.example",
            "a.example",
            "https://a.example/v2",
            "https://127.0.0.1:6443",
        ],
    ));
    assert_eq!(hosts_of(&doc), [OURS, "https://a.example/v2"]);
}

#[test]
fn every_registry_file_has_kagami_but_default_has_no_server() {
    let hosts = RegistryHosts {
        upstream_tls: Some(tls("/star/ca.crt")),
        ..registry("_default", &["https://registry.example.com:5000"])
    };
    let doc = render(&hosts);
    assert!(doc.get("server").is_none());
    assert_eq!(doc["ca"].as_str(), Some("/star/ca.crt"));
    assert_eq!(
        hosts_of(&doc),
        [OURS, "https://registry.example.com:5000/v2"]
    );
}

#[test]
fn localhost_registries_are_never_mirrored() {
    assert_eq!(
        render_registry(&mirror(), &RegistryHosts::new("localhost:5000")),
        None
    );
    assert_eq!(
        render_registry(&mirror(), &RegistryHosts::new("[::1]:5000")),
        None
    );
    let quiet = RegistryHosts {
        default_endpoint: false,
        upstream_tls: Some(tls("/l/ca.crt")),
        ..RegistryHosts::new("127.0.0.1:5000")
    };
    assert_eq!(render_registry(&mirror(), &quiet), None);

    let doc = render(&registry("localhost:5000", &["https://localhost:5000"]));
    assert_eq!(hosts_of(&doc), ["https://localhost:5000/v2"]);
    assert_eq!(doc["server"].as_str(), Some("http://localhost:5000"));

    // TLS for the upstream alone still needs a `host` tree.
    let with_tls = RegistryHosts {
        upstream_tls: Some(tls("/l/ca.crt")),
        ..RegistryHosts::new("localhost:5000")
    };
    let doc = render(&with_tls);
    assert_eq!(doc["ca"].as_str(), Some("/l/ca.crt"));
    assert!(hosts_of(&doc).is_empty());
}
