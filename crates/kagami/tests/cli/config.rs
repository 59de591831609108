//! `--config FILE` and `--private-registry FILE`: K3s-style files that set
//! flags and say what is shared; flags on the command line win; mistakes
//! name the file, the line and the key.

use std::path::Path;

use crate::harness::{Server, kagami};

/// Runs `kagami server` with `args` expecting a quick failure; returns
/// its stderr.
fn fails(data_dir: &Path, args: &[&str]) -> String {
    let output = kagami()
        .args([
            "server",
            "--insecure-http",
            "--store",
            "layout",
            "--https-listen-port",
            "0",
            "--bind-address",
            "127.0.0.1",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap();
    assert!(!output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_file_sets_flags_and_the_command_line_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        "# as K3s's config.yaml\nembedded-registry: true\nmirror:\n  - \"*\"\np2p-port: 0\nhttps-listen-port: 1\n",
    )
    .unwrap();
    let psk = tmp.path().join("psk");
    kagami_p2p::Psk::generate().write(&psk).unwrap();
    // The harness passes --https-listen-port 0, which beats the file's 1.
    let node = Server::start(
        &tmp.path().join("n"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--psk-file",
            psk.to_str().unwrap(),
        ],
    );
    let log = node.log();
    assert!(log.contains("config file read"), "{log}");
    assert_ne!(node.addr.port(), 1);
    // `embedded-registry` and `mirror` came from the file.
    assert!(log.contains("P2P node started"), "{log}");
}

#[test]
fn mistakes_in_the_config_file_name_the_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("n");
    let config = tmp.path().join("config.yaml");
    let path = config.to_str().unwrap();

    std::fs::write(&config, "data-dir: /x\nno-such-flag: 1\n").unwrap();
    let error = fails(&data, &["--config", path]);
    assert!(error.contains(&format!("{path}:2")), "{error}");
    assert!(error.contains("no-such-flag"), "{error}");

    std::fs::write(
        &config,
        "embedded-registry: true\nhttps-listen-port:\n  - 1\n  - 2\n",
    )
    .unwrap();
    let error = fails(&data, &["--config", path]);
    assert!(error.contains(&format!("{path}:2")), "{error}");
    assert!(error.contains("https-listen-port"), "{error}");

    std::fs::write(&config, "embedded-registry: [unclosed\n").unwrap();
    let error = fails(&data, &["--config", path]);
    assert!(error.contains(path), "{error}");

    let missing = tmp.path().join("missing.yaml");
    let error = fails(&data, &["--config", missing.to_str().unwrap()]);
    assert!(error.contains("missing.yaml"), "{error}");
}

#[test]
fn an_unmodified_k3s_config_works_and_its_other_keys_are_listed_at_debug() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("k3s.yaml");
    std::fs::write(
        &config,
        "write-kubeconfig-mode: \"0644\"\ntls-san:\n  - my.example\ncluster-init: true\nnode-label:\n  - foo=bar\nembedded-registry: true\ndisable:\n  - traefik\n",
    )
    .unwrap();
    let node = Server::start(
        &tmp.path().join("n"),
        &["--config", config.to_str().unwrap(), "--log-level", "debug"],
    );
    let log = node.log();
    for key in [
        "write-kubeconfig-mode",
        "tls-san",
        "cluster-init",
        "node-label",
        "disable",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("kagami has no use for") && l.contains(key)),
            "{key}: {log}"
        );
    }
    // embedded-registry was taken: on, but nothing is mirrored yet.
    assert!(log.contains("no registry is mirrored"), "{log}");
}

#[test]
fn registries_yaml_mirrors_decide_what_is_shared() {
    let tmp = tempfile::tempdir().unwrap();
    let registries = tmp.path().join("registries.yaml");
    std::fs::write(
        &registries,
        "mirrors:\n  docker.io:\n  registry.example.com:\n    endpoint:\n      - \"https://mirror.example.com\"\n  localhost:5000:\n",
    )
    .unwrap();
    let psk = tmp.path().join("psk");
    kagami_p2p::Psk::generate().write(&psk).unwrap();
    let node = Server::start(
        &tmp.path().join("n"),
        &[
            "--private-registry",
            registries.to_str().unwrap(),
            "--embedded-registry",
            "--p2p-port",
            "0",
            "--psk-file",
            psk.to_str().unwrap(),
        ],
    );
    let log = node.log();
    assert!(
        log.contains("registries=docker.io, registry.example.com"),
        "{log}"
    );
    assert!(log.contains("a local registry is never shared"), "{log}");

    // A bare * is a YAML alias: a clear error.
    std::fs::write(&registries, "mirrors:\n  *:\n").unwrap();
    let error = fails(
        &tmp.path().join("m"),
        &["--private-registry", registries.to_str().unwrap()],
    );
    assert!(error.contains("write \"*\" (quoted)"), "{error}");
    assert!(error.contains("registries.yaml:2"), "{error}");
}

#[test]
fn registries_yaml_endpoints_follow_kagami_in_containerds_hosts_toml() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = kagami_containerd::testing::Daemon::start();
    let registries = tmp.path().join("registries.yaml");
    std::fs::write(
        &registries,
        "mirrors:\n  docker.io:\n    endpoint:\n      - \"https://mirror.example.com\"\n    rewrite:\n      \"^rancher/(.*)\": \"mirrorproject/rancher-images/$1\"\n  registry.k8s.io:\n",
    )
    .unwrap();
    let psk = tmp.path().join("psk");
    kagami_p2p::Psk::generate().write(&psk).unwrap();
    let certs = tmp.path().join("certs.d");
    let node = Server::start(
        &tmp.path().join("n"),
        &[
            "--store",
            "containerd",
            "--containerd-address",
            daemon.socket().to_str().unwrap(),
            "--containerd-config-path",
            certs.to_str().unwrap(),
            "--private-registry",
            registries.to_str().unwrap(),
            "--disable-default-registry-endpoint",
            "--embedded-registry",
            "--p2p-port",
            "0",
            "--psk-file",
            psk.to_str().unwrap(),
        ],
    );
    let hub: toml_edit::DocumentMut = std::fs::read_to_string(certs.join("docker.io/hosts.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let ours = format!("http://{}/v2", node.addr);
    let hosts: Vec<&str> = hub["host"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        hosts,
        [ours.as_str(), "https://mirror.example.com/v2"],
        "{hub}"
    );
    // Rewrites go to the listed endpoint only.
    assert!(hub["host"][ours.as_str()].get("rewrite").is_none(), "{hub}");
    assert_eq!(
        hub["host"]["https://mirror.example.com/v2"]["rewrite"]["^rancher/(.*)"].as_str(),
        Some("mirrorproject/rancher-images/$1")
    );
    // No fallback to the upstream: it may only be pushed to.
    let server_caps = hub.get("capabilities").and_then(|c| c.as_array());
    let caps: Vec<&str> = server_caps
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(caps, ["push"], "{hub}");
    assert!(certs.join("registry.k8s.io/hosts.toml").exists());
}

/// Regression: a wrong-typed value lost its line; a missing `tls.ca_file`
/// was accepted; `--node-cert-validity 0s` gave an expired certificate and
/// `--renew-before 400d` renewed at every check.
#[test]
fn config_gaps_are_refused_with_the_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.yaml");
    std::fs::write(&config, "data-dir: /nowhere\nhttps-listen-port: abc\n").unwrap();
    let error = fails(
        &tmp.path().join("a"),
        &["--config", config.to_str().unwrap()],
    );
    assert!(
        error.contains("config.yaml:2: key \"https-listen-port\": invalid value 'abc'"),
        "{error}"
    );

    std::fs::write(&config, "- embedded-registry\n- mirror\n").unwrap();
    let error = fails(
        &tmp.path().join("b"),
        &["--config", config.to_str().unwrap()],
    );
    assert!(error.contains("config.yaml:1:"), "{error}");

    let registries = tmp.path().join("registries.yaml");
    std::fs::write(
        &registries,
        "mirrors:\n  docker.io:\nconfigs:\n  docker.io:\n    tls:\n      ca_file: /nonexistent/ca.pem\n",
    )
    .unwrap();
    let error = fails(
        &tmp.path().join("c"),
        &["--private-registry", registries.to_str().unwrap()],
    );
    assert!(
        error.contains("registries.yaml:6: key \"configs.docker.io.tls.ca_file\""),
        "{error}"
    );
    assert!(error.contains("/nonexistent/ca.pem"), "{error}");

    for (flags, expected) in [
        (
            &["--node-cert-validity", "0s"][..],
            "--node-cert-validity 0s",
        ),
        (&["--renew-before", "400d"][..], "every check would renew"),
        (
            &["--max-connections", "3"][..],
            "--max-connections 3 is too few",
        ),
        (
            &["--resolve-timeout", "0s"][..],
            "--resolve-timeout 0s is too short",
        ),
    ] {
        let data = tmp
            .path()
            .join(format!("d{}", flags[0].len() + flags[1].len()));
        let output = kagami()
            .args(["server", "--store", "layout", "--https-listen-port", "0"])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--embedded-registry",
                "--mirror",
                "*",
            ])
            .args(["--p2p-port", "0", "--data-dir"])
            .arg(&data)
            .args(flags)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{flags:?} accepted");
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(error.contains(expected), "{flags:?}: {error}");
    }
}
