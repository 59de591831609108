use std::path::Path;

use super::*;

fn parse_ok(text: &str) -> Registries {
    match parse(text, Path::new("registries.yaml")) {
        Ok(registries) => registries,
        Err(err) => panic!("{err}"),
    }
}

fn parse_err(text: &str) -> Error {
    match parse(text, Path::new("registries.yaml")) {
        Ok(registries) => panic!("accepted: {registries:?}"),
        Err(err) => err,
    }
}

fn mirror(endpoints: &[&str], rewrites: &[(&str, &str)]) -> Mirror {
    Mirror {
        endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
        rewrites: rewrites
            .iter()
            .map(|(p, r)| (p.to_string(), r.to_string()))
            .collect(),
    }
}

// The examples of docs.k3s.io "Embedded Registry Mirror".

#[test]
fn k3s_docs_mirror_entries_without_endpoints_are_shared() {
    let registries = parse_ok("mirrors:\n  docker.io:\n  registry.k8s.io:\n");
    assert_eq!(registries.mirrored(), vec!["docker.io", "registry.k8s.io"]);
    assert!(!registries.shares_all());
    assert_eq!(registries.mirror_for("docker.io"), Some(&Mirror::default()));
    assert_eq!(registries.mirror_for("quay.io"), None);
}

#[test]
fn k3s_docs_mirror_with_endpoint() {
    let registries =
        parse_ok("mirrors:\n  docker.io:\n    endpoint:\n      - https://mirror.example.com\n");
    assert_eq!(
        registries.mirrors,
        vec![(
            "docker.io".into(),
            mirror(&["https://mirror.example.com"], &[])
        )]
    );
}

#[test]
fn k3s_docs_quoted_wildcard_shares_everything() {
    let registries = parse_ok("mirrors:\n  \"*\":\n");
    assert!(registries.shares_all());
    assert_eq!(registries.mirrored(), vec!["*"]);
    assert_eq!(registries.mirror_for("quay.io"), Some(&Mirror::default()));
}

#[test]
fn k3s_docs_mixed_default_endpoint_example() {
    let text = "\
mirrors:
  docker.io:           # no default endpoint, pulls will fail if not available on a node
  registry.k8s.io:     # no default endpoint, pulls will fail if not available on a node
  mirror.example.com:  # explicit default endpoint, can pull from upstream if not available on a node
    endpoint:
      - https://mirror.example.com
";
    let registries = parse_ok(text);
    assert_eq!(
        registries.mirrored(),
        vec!["docker.io", "registry.k8s.io", "mirror.example.com"]
    );
    assert_eq!(
        registries.mirrors[2].1.endpoints,
        vec!["https://mirror.example.com".to_owned()]
    );
}

// The examples of docs.k3s.io "Private Registry Configuration".

#[test]
fn k3s_docs_rewrite_example() {
    let text = "\
mirrors:
  docker.io:
    endpoint:
      - \"https://registry.example.com:5000\"
    rewrite:
      \"^rancher/(.*)\": \"mirrorproject/rancher-images/$1\"
";
    let registries = parse_ok(text);
    assert_eq!(
        registries.mirrors,
        vec![(
            "docker.io".into(),
            mirror(
                &["https://registry.example.com:5000"],
                &[("^rancher/(.*)", "mirrorproject/rancher-images/$1")]
            )
        )]
    );
}

#[test]
fn k3s_docs_wildcard_configs_example() {
    let text = "\
mirrors:
  \"*\":
    endpoint:
      - \"https://registry.example.com:5000\"
configs:
  \"docker.io\":
  \"*\":
    tls:
      insecure_skip_verify: true
";
    let registries = parse_ok(text);
    assert!(registries.shares_all());
    assert_eq!(registries.configs.len(), 2);
    assert_eq!(
        registries.config_for("docker.io"),
        Some(&RegistryConfig::default())
    );
    let other = registries
        .config_for("quay.io")
        .and_then(|c| c.tls.as_ref());
    assert_eq!(
        other,
        Some(&Tls {
            insecure_skip_verify: true,
            ..Tls::default()
        })
    );
}

#[test]
fn k3s_docs_tls_with_authentication_example() {
    let text = "\
mirrors:
  docker.io:
    endpoint:
      - \"https://registry.example.com:5000\"
configs:
  \"registry.example.com:5000\":
    auth:
      username: xxxxxx # this is the registry username
      password: xxxxxx # this is the registry password
    tls:
      cert_file: # path to the cert file used in the registry
      key_file:  # path to the key file used in the registry
      ca_file:   # path to the ca file used in the registry
";
    let registries = parse_ok(text);
    let config = &registries.configs["registry.example.com:5000"];
    assert_eq!(
        config.auth,
        Some(Auth {
            username: Some("xxxxxx".into()),
            password: Some("xxxxxx".into()),
            ..Auth::default()
        })
    );
    assert_eq!(config.tls, Some(Tls::default()));
}

#[test]
fn k3s_docs_plain_http_examples() {
    let text = "\
mirrors:
  docker.io:
    endpoint:
      - \"http://registry.example.com:5000\"
configs:
  \"registry.example.com:5000\":
    auth:
      username: xxxxxx # this is the registry username
      password: xxxxxx # this is the registry password
";
    let registries = parse_ok(text);
    assert_eq!(
        registries.mirrors[0].1.endpoints,
        vec!["http://registry.example.com:5000".to_owned()]
    );
    assert!(
        registries.configs["registry.example.com:5000"]
            .tls
            .is_none()
    );
}

#[test]
fn every_field_is_read() {
    let text = "\
mirrors:
  registry.example.com:
    endpoint: [\"https://a.example.com/v2\", \"http://[fd00::1]:5000\"]
    rewrite:
      \"^a/(.*)\": \"b/$1\"
      \"^c$\": \"d\"
configs:
  registry.example.com:
    auth: {username: u, password: p, auth: dTpw, identity_token: it}
    tls:
      cert_file: /etc/ssl/client.pem
      key_file: /etc/ssl/client-key.pem
      ca_file: /etc/ssl/ca.pem
      insecure_skip_verify: false
";
    let registries = parse_ok(text);
    assert_eq!(
        registries.mirrors[0].1,
        mirror(
            &["https://a.example.com/v2", "http://[fd00::1]:5000"],
            &[("^a/(.*)", "b/$1"), ("^c$", "d")]
        )
    );
    let config = &registries.configs["registry.example.com"];
    assert_eq!(
        config.auth,
        Some(Auth {
            username: Some("u".into()),
            password: Some("p".into()),
            auth: Some("dTpw".into()),
            identity_token: Some("it".into()),
        })
    );
    assert_eq!(
        config.tls,
        Some(Tls {
            cert_file: Some("/etc/ssl/client.pem".into()),
            key_file: Some("/etc/ssl/client-key.pem".into()),
            ca_file: Some("/etc/ssl/ca.pem".into()),
            insecure_skip_verify: false,
        })
    );
    assert!(registries.ignored.is_empty());
}

#[test]
fn auth_debug_hides_secrets() {
    let auth = Auth {
        username: Some("user".into()),
        password: Some("hunter2".into()),
        auth: Some("c2VjcmV0".into()),
        identity_token: Some("tok".into()),
    };
    let shown = format!("{auth:?}");
    assert!(shown.contains("user"));
    for secret in ["hunter2", "c2VjcmV0", "tok\""] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[test]
fn empty_files_and_sections_mean_nothing_shared() {
    for text in ["", "# none\n", "mirrors:\nconfigs:\n", "mirrors: {}\n"] {
        let registries = parse_ok(text);
        assert!(registries.mirrored().is_empty(), "{text}");
        assert!(registries.configs.is_empty());
    }
}

#[test]
fn keys_k3s_accepts_and_ignores_are_listed() {
    let text = "\
configs:
  registry.example.com:
    auth:
      token: abc
auths:
  registry.example.com: {}
";
    let registries = parse_ok(text);
    assert_eq!(
        registries.ignored,
        vec![
            Ignored {
                key: "configs.registry.example.com.auth.token".into(),
                line: 4
            },
            Ignored {
                key: "auths".into(),
                line: 5
            },
        ]
    );
    assert_eq!(
        registries.configs["registry.example.com"].auth,
        Some(Auth::default())
    );
}

// Errors.

#[test]
fn a_bare_star_is_explained_on_its_line() {
    let err = parse_err("mirrors:\n  docker.io:\n  quay.io:\n  *:\n");
    assert_eq!(
        err.to_string(),
        "registries.yaml:4: a bare * is a YAML alias; write \"*\" (quoted) to mirror every registry"
    );
    let err = parse_err("mirrors: {docker.io: {}, *: {}}\n");
    assert_eq!(err.line(), Some(1));
    assert!(err.to_string().contains("a bare *"), "{err}");
}

#[test]
fn an_unknown_key_is_an_error_with_its_line() {
    let err = parse_err("mirrors:\n  docker.io:\n    endpoints:\n      - https://a.example.com\n");
    assert_eq!(err.line(), Some(3));
    assert_eq!(err.key(), Some("mirrors.docker.io.endpoints"));
    assert!(
        err.to_string()
            .ends_with("unknown key; did you mean \"endpoint\"?"),
        "{err}"
    );

    let err = parse_err("mirrors: {}\nconfig:\n");
    assert_eq!(err.line(), Some(2));
    assert!(
        err.to_string().contains("did you mean \"configs\""),
        "{err}"
    );

    let err = parse_err("configs:\n  r.example.com:\n    tls:\n      insecure: true\n");
    assert_eq!(err.line(), Some(4));
    assert!(
        err.to_string()
            .contains("expected one of cert_file, key_file, ca_file, insecure_skip_verify"),
        "{err}"
    );

    let err = parse_err("configs:\n  r.example.com:\n    headers: {}\n");
    assert_eq!(err.line(), Some(3));
}

#[test]
fn a_wrong_type_is_an_error_with_its_line() {
    let err = parse_err("mirrors:\n  - docker.io\n");
    assert_eq!(err.line(), Some(1));
    assert_eq!(err.key(), Some("mirrors"));
    assert!(
        err.to_string()
            .contains("expected a mapping of registry names, found a list"),
        "{err}"
    );

    let err = parse_err("mirrors:\n  docker.io:\n    endpoint: https://a.example.com\n");
    assert_eq!(err.line(), Some(3));
    assert!(
        err.to_string()
            .contains("expected a list of URLs, found the text"),
        "{err}"
    );

    let err =
        parse_err("configs:\n  r.example.com:\n    tls:\n      insecure_skip_verify: \"yes\"\n");
    assert_eq!(err.line(), Some(4));
    assert!(err.to_string().contains("expected true or false"), "{err}");

    let err = parse_err("configs:\n  r.example.com:\n    auth:\n      password: 1.50\n");
    assert_eq!(err.line(), Some(4));
    assert!(
        err.to_string().contains("found the number 1.5; quote it"),
        "{err}"
    );

    let err = parse_err("- a\n");
    assert_eq!(err.line(), Some(1));
}

#[test]
fn bad_yaml_gives_the_parsers_line() {
    let err =
        parse_err("mirrors:\n  docker.io:\n    endpoint: [\"https://a.example.com\"\nconfigs:\n");
    assert_eq!(err.key(), None);
    assert_eq!(err.line(), Some(4));
}

#[test]
fn an_endpoint_without_a_scheme_is_named() {
    let err = parse_err(
        "mirrors:\n  docker.io:\n    endpoint:\n      - https://ok.example.com\n      - registry.example.com:5000\n",
    );
    assert_eq!(err.line(), Some(5));
    assert_eq!(err.key(), Some("mirrors.docker.io.endpoint[1]"));
    assert!(
        err.to_string().contains(
            "endpoint \"registry.example.com:5000\" has no scheme; write \"https://registry.example.com:5000\""
        ),
        "{err}"
    );
}

#[test]
fn other_bad_endpoints_are_named() {
    for (endpoint, says) in [
        ("ftp://registry.example.com", "only http and https"),
        ("https://", "not a valid URL"),
        ("https://exa mple.com", "not a valid URL"),
        ("http://[::1", "not a valid URL"),
    ] {
        let text = format!("mirrors:\n  docker.io:\n    endpoint:\n      - \"{endpoint}\"\n");
        let err = parse_err(&text);
        assert_eq!(err.line(), Some(4), "{endpoint}");
        let shown = err.to_string();
        assert!(
            shown.contains(&format!("{endpoint:?}")) && shown.contains(says),
            "{shown}"
        );
    }
    let err = parse_err("mirrors:\n  docker.io:\n    endpoint: [5000]\n");
    assert!(
        err.to_string()
            .contains("expected a URL, found the number 5000"),
        "{err}"
    );
}

#[test]
fn a_rewrite_that_does_not_compile_is_named() {
    let text = "\
mirrors:
  docker.io:
    rewrite:
      \"^ok/(.*)\": \"x/$1\"
      \"^rancher/(.*\": \"mirror/$1\"
";
    let err = parse_err(text);
    assert_eq!(err.line(), Some(5));
    assert_eq!(err.key(), Some("mirrors.docker.io.rewrite.^rancher/(.*"));
    assert!(
        err.to_string()
            .contains("rewrite regex \"^rancher/(.*\" does not compile"),
        "{err}"
    );
}

#[test]
fn a_registry_name_must_be_a_host() {
    for (name, line) in [
        ("https://docker.io", 2),
        ("docker.io/library", 2),
        ("host:port", 2),
    ] {
        let err = parse_err(&format!("mirrors:\n  \"{name}\":\n"));
        assert_eq!(err.line(), Some(line), "{name}");
        assert!(
            err.to_string().contains("a registry is host or host:port"),
            "{err}"
        );
    }
    let err = parse_err("configs:\n  ok.example.com:\n  \"bad host\":\n    auth: {}\n");
    assert_eq!(err.line(), Some(3));
    for ok in ["localhost:5000", "[fd00::1]:5000", "10.0.0.1:5000", "*"] {
        parse_ok(&format!("mirrors:\n  \"{ok}\":\nconfigs:\n  \"{ok}\":\n"));
    }
}

#[test]
fn a_repeated_registry_is_placed_on_the_repeat() {
    let err = parse_err("mirrors:\n  docker.io:\n  quay.io:\n  docker.io:\n");
    assert_eq!(err.line(), Some(4));
    assert_eq!(err.key(), Some("mirrors.docker.io"));
    assert!(err.to_string().contains("appears twice"), "{err}");
}

#[test]
fn a_missing_file_is_an_error_for_load_and_none_for_load_optional() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let path = dir.path().join("registries.yaml");
    let err = load(&path)
        .err()
        .unwrap_or_else(|| panic!("loaded a missing file"));
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(load_optional(&path).ok(), Some(None));
}

/// Regression: a `tls.ca_file` that does not exist was accepted, to fail
/// only at the first pull that needed it.
#[test]
fn files_the_tls_settings_name_are_checked_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not checked here, only that it can be read").unwrap();
    let text = format!(
        "configs:\n  good.example:\n    tls:\n      ca_file: {}\n  bad.example:\n    tls:\n      ca_file: {}\n",
        ca.display(),
        dir.path().join("missing.pem").display()
    );
    let registries = parse_ok(&text);
    assert_eq!(registries.files.len(), 2);
    let error = registries.check_files().unwrap_err();
    assert_eq!(error.line(), Some(7), "{error}");
    assert_eq!(
        error.key(),
        Some("configs.bad.example.tls.ca_file"),
        "{error}"
    );
    assert!(error.to_string().contains("missing.pem"), "{error}");

    let fine = format!(
        "configs:\n  good.example:\n    tls:\n      ca_file: {}\n",
        ca.display()
    );
    parse_ok(&fine).check_files().unwrap();
}

#[test]
fn a_client_certificate_without_its_key_is_refused() {
    let error = parse_err("configs:\n  r.example:\n    tls:\n      cert_file: /c.pem\n");
    assert!(error.to_string().contains("key_file"), "{error}");
    assert_eq!(error.line(), Some(3), "{error}");
}
