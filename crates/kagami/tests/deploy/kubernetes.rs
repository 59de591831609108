//! `deploy/kubernetes/`: every manifest is valid for the API server, and
//! the DaemonSet, ConfigMap and Secret fit together and fit kagami.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{kagami_long_flags, run_ok, workspace};

const NAMESPACE: &str = "kagami-system";

fn dir() -> PathBuf {
    workspace().join("deploy/kubernetes")
}

/// `deploy/check-kubernetes ARGS…`, which makes (once) the virtualenv
/// holding kubernetes-validate and PyYAML.
fn check(args: &[&Path]) -> String {
    run_ok(
        Command::new(workspace().join("deploy/check-kubernetes")).args(args),
        "python3 and python3-venv",
    )
}

/// The YAML documents of `files`, each parsed with PyYAML.
fn documents(files: &[PathBuf]) -> Vec<(PathBuf, Value)> {
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let mut args = vec![Path::new("--json")];
    args.extend(paths);
    let parsed: serde_json::Map<String, Value> =
        serde_json::from_str(&check(&args)).expect("check-kubernetes --json prints JSON");
    files
        .iter()
        .flat_map(|file| {
            let docs = parsed[file.to_str().unwrap()].as_array().unwrap().clone();
            docs.into_iter().map(move |doc| (file.clone(), doc))
        })
        .collect()
}

fn yaml_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every API object of the directory, by kind.
struct Manifests(Vec<(PathBuf, Value)>);

impl Manifests {
    fn load() -> Manifests {
        Manifests(documents(&yaml_files()))
    }

    fn one(&self, kind: &str) -> &Value {
        let found: Vec<&Value> = self
            .0
            .iter()
            .map(|(_, doc)| doc)
            .filter(|doc| doc["kind"] == kind)
            .collect();
        assert_eq!(found.len(), 1, "one {kind} in deploy/kubernetes");
        found[0]
    }
}

/// A YAML text held in a ConfigMap, parsed like the files.
fn parse_yaml_text(text: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("embedded.yaml");
    std::fs::write(&file, text).unwrap();
    let mut docs = documents(std::slice::from_ref(&file));
    assert_eq!(docs.len(), 1, "one document in {text}");
    docs.remove(0).1
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"))
}

/// The port of a `host:port` setting.
fn port_of(address: &str) -> u64 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("{address} has no port"))
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    // Strict, for Kubernetes 1.30 and 1.37: a misspelt or misplaced field
    // is an error, not silently dropped as kubectl would.
    check(&[]);

    // `kubectl apply -k` applies all of them but the example Secret, which
    // would replace the real token with its placeholder.
    let kustomization = documents(&[dir().join("kustomization.yaml")]).remove(0).1;
    assert_eq!(kustomization["kind"], "Kustomization");
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("kustomization resources")
        .iter()
        .map(|r| str_of(r, "a resource").to_owned())
        .collect();
    let expected: BTreeSet<String> = yaml_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .filter(|name| name != "kustomization.yaml" && name != "secret.yaml")
        .collect();
    assert_eq!(listed, expected, "kustomization.yaml resources");

    let manifests = Manifests::load();
    for (file, doc) in &manifests.0 {
        if doc["kind"] == "Kustomization" {
            continue;
        }
        let meta = &doc["metadata"];
        assert_eq!(
            meta["labels"]["app.kubernetes.io/name"],
            "kagami",
            "{} {}: labels",
            file.display(),
            doc["kind"]
        );
        if doc["kind"] != "Namespace" {
            assert_eq!(
                meta["namespace"],
                NAMESPACE,
                "{} {}",
                file.display(),
                doc["kind"]
            );
        }
    }
    // hostNetwork and hostPath need the privileged Pod Security level.
    let namespace = manifests.one("Namespace");
    assert_eq!(namespace["metadata"]["name"], NAMESPACE);
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    assert_eq!(
        manifests.one("ServiceAccount")["automountServiceAccountToken"],
        false,
        "kagami never calls the API server, so it gets no token"
    );
}

#[test]
fn daemonset_runs_the_agent_as_the_node_needs() {
    let manifests = Manifests::load();
    let daemonset = manifests.one("DaemonSet");
    let spec = &daemonset["spec"];
    let pod = &spec["template"]["spec"];

    let selector = spec["selector"]["matchLabels"].as_object().unwrap();
    for (key, value) in selector {
        assert_eq!(
            &spec["template"]["metadata"]["labels"][key], value,
            "the selector matches the pods"
        );
    }
    assert_eq!(spec["updateStrategy"]["type"], "RollingUpdate");
    assert!(spec["updateStrategy"]["rollingUpdate"]["maxUnavailable"].is_string());
    // Host ports cannot surge: the new pod would never start.
    assert_eq!(spec["updateStrategy"]["rollingUpdate"]["maxSurge"], 0);

    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert!(
        pod["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["operator"] == "Exists" && t.get("key").is_none()),
        "tolerates every taint"
    );
    assert_eq!(
        pod["serviceAccountName"],
        manifests.one("ServiceAccount")["metadata"]["name"]
    );
    assert_eq!(pod["automountServiceAccountToken"], false);

    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    // The reference deploy/image/build tags by default, so an imported
    // image is found without a pull.
    assert_eq!(
        container["image"],
        format!("docker.io/kagami/kagami:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(container["args"], serde_json::json!(["agent"]));

    let secret = manifests.one("Secret");
    let env = container["env"].as_array().unwrap();
    let token = env
        .iter()
        .find(|e| e["name"] == "KAGAMI_TOKEN")
        .expect("KAGAMI_TOKEN in the container's env");
    let reference = &token["valueFrom"]["secretKeyRef"];
    assert_eq!(reference["name"], secret["metadata"]["name"]);
    let key = str_of(&reference["key"], "the token's key");
    assert!(
        secret["stringData"].get(key).is_some(),
        "the example Secret has the key {key}"
    );

    // Each host path at the same path inside: containerd names its content
    // directory by its own path, and reads the certificates hosts.toml
    // names under /var/lib/kagami.
    let volumes = pod["volumes"].as_array().unwrap();
    let mounts = container["volumeMounts"].as_array().unwrap();
    let mount = |path: &str| -> (&Value, &Value) {
        let m = mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        let v = volumes
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap_or_else(|| panic!("no volume {}", m["name"]));
        (m, v)
    };
    for (path, writable) in [
        ("/run/containerd/containerd.sock", true),
        (
            "/var/lib/containerd/io.containerd.content.v1.content",
            false,
        ),
        ("/etc/containerd/certs.d", true),
        ("/var/lib/kagami", true),
    ] {
        let (m, v) = mount(path);
        assert_eq!(v["hostPath"]["path"], path, "the volume at {path}");
        assert_eq!(
            m["readOnly"].as_bool().unwrap_or(false),
            !writable,
            "{path} read-only?"
        );
    }
    assert_eq!(
        mount("/run/containerd/containerd.sock").1["hostPath"]["type"],
        "Socket"
    );
    let (_, config_volume) = mount("/etc/kagami");
    assert_eq!(
        config_volume["configMap"]["name"],
        manifests.one("ConfigMap")["metadata"]["name"]
    );
    // The root file system is read-only; whatever kagami puts in /tmp goes
    // to a volume.
    assert!(mount("/tmp").1.get("emptyDir").is_some());

    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert_ne!(security["privileged"], true);

    let resources = &container["resources"];
    assert!(resources["requests"]["cpu"].is_string());
    assert!(resources["requests"]["memory"].is_string());
    assert!(resources["limits"]["memory"].is_string());

    // The probes reach --healthz-address: the kubelet shares the node's
    // network with this pod, so loopback is where it listens.
    let config = config_yaml(&manifests);
    let healthz = str_of(&config["healthz-address"], "healthz-address");
    assert!(
        healthz.starts_with("127.0.0.1:"),
        "healthz stays on loopback: {healthz}"
    );
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["host"], "127.0.0.1", "{probe}");
        assert_eq!(get["port"], port_of(healthz), "{probe}");
        assert_ne!(get["scheme"], "HTTPS", "{probe}: healthz is plain HTTP");
    }

    // The declared host ports are the ones kagami binds.
    let ports = container["ports"].as_array().unwrap();
    let port = |name: &str| {
        ports
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no port {name}"))["containerPort"]
            .clone()
    };
    let registry_port = config["https-listen-port"].as_u64().unwrap_or(6443);
    assert_eq!(port("registry"), registry_port);
    assert_eq!(port("p2p"), config["p2p-port"].as_u64().unwrap_or(5001));
}

/// The ConfigMap's `config.yaml`, parsed.
fn config_yaml(manifests: &Manifests) -> Value {
    let data = &manifests.one("ConfigMap")["data"];
    parse_yaml_text(str_of(&data["config.yaml"], "config.yaml"))
}

#[test]
fn configmap_holds_files_kagami_reads() {
    let manifests = Manifests::load();
    let config = config_yaml(&manifests);
    // kagami stops at an unknown key, so every key must be a flag of the
    // binary under test.
    let flags = kagami_long_flags();
    let config = config.as_object().expect("config.yaml is a mapping");
    for key in config.keys() {
        assert!(
            flags.contains(key.trim_end_matches('+')),
            "config.yaml: kagami has no --{key} (it has {flags:?})"
        );
    }
    assert!(
        config.get("token").is_none(),
        "the token belongs in the Secret"
    );
    for (key, value) in [
        ("data-dir", "/var/lib/kagami"),
        // auto would serve kagami's own, empty, store on a node where
        // containerd's socket is not there yet.
        ("store", "containerd"),
        ("containerd-address", "/run/containerd/containerd.sock"),
        (
            "containerd-content-dir",
            "/var/lib/containerd/io.containerd.content.v1.content",
        ),
        ("containerd-config-path", "/etc/containerd/certs.d"),
    ] {
        assert_eq!(
            config[key], value,
            "config.yaml {key} is what the DaemonSet mounts"
        );
    }
    assert!(config["server"].as_str().unwrap().starts_with("https://"));

    let data = &manifests.one("ConfigMap")["data"];
    let registries = parse_yaml_text(str_of(&data["registries.yaml"], "registries.yaml"));
    let mirrors = registries["mirrors"].as_object().expect("mirrors:");
    assert!(mirrors.contains_key("docker.io"), "mirrors: {mirrors:?}");
}
