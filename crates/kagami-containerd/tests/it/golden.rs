//! Golden files for `hosts.toml`: each case under `tests/golden/<case>/`
//! has a `before/` tree (absent means an empty directory) and an
//! `expected/` tree. `apply` on a copy of `before/` must give `expected/`
//! byte for byte, and `restore` must give `before/` back.
//! `KAGAMI_UPDATE_GOLDEN=1` rewrites the `expected/` trees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kagami_containerd::hosts::{
    self, Endpoint, EndpointTls, MirrorEndpoint, RegistryHosts, Rewrite,
};

/// A case: what is known of each registry, as `registries.yaml` would say
/// it (the K3s cases quote the K3s documentation's example next to them).
struct Case {
    name: &'static str,
    registries: fn() -> Vec<RegistryHosts>,
}

const CASES: &[Case] = &[
    Case {
        name: "empty-docker-io",
        registries: || vec![RegistryHosts::new("docker.io")],
    },
    Case {
        name: "registry-k8s-io",
        registries: || vec![RegistryHosts::new("registry.k8s.io")],
    },
    Case {
        name: "default",
        registries: || vec![RegistryHosts::new("_default")],
    },
    Case {
        name: "extra-endpoint",
        registries: || vec![listed("docker.io", &["https://mirror.example.com"])],
    },
    Case {
        name: "operator-file",
        registries: || {
            vec![
                RegistryHosts::new("docker.io"),
                RegistryHosts::new("quay.io"),
            ]
        },
    },
    Case {
        // IPv6 in brackets and ports, as containerd looks directories up.
        name: "ipv6-and-port",
        registries: || {
            vec![
                RegistryHosts::new("[2001:db8::1]:5000"),
                RegistryHosts::new("registry.example:5000"),
            ]
        },
    },
    // docs.k3s.io/installation/registry-mirror, "Enabling Registry Mirroring":
    //   mirrors:
    //     docker.io:
    //     registry.k8s.io:
    Case {
        name: "k3s-docker-io-and-registry-k8s-io",
        registries: || {
            vec![
                RegistryHosts::new("docker.io"),
                RegistryHosts::new("registry.k8s.io"),
            ]
        },
    },
    // Same page: "images pull attempts will first try the embedded mirror,
    // then mirror.example.com, then finally docker.io":
    //   mirrors:
    //     docker.io:
    //       endpoint:
    //         - https://mirror.example.com
    Case {
        name: "k3s-extra-endpoint",
        registries: || vec![listed("docker.io", &["https://mirror.example.com"])],
    },
    // Same page, a private registry used directly, mirrored by name:
    //   mirrors:
    //     mirror.example.com:
    Case {
        name: "k3s-private-registry",
        registries: || vec![RegistryHosts::new("mirror.example.com")],
    },
    // Same page, every registry (`"*"` is containerd's `_default`):
    //   mirrors:
    //     "*":
    Case {
        name: "k3s-wildcard",
        registries: || vec![RegistryHosts::new("_default")],
    },
    // Same page, "Default Endpoint Fallback", with
    // --disable-default-registry-endpoint:
    //   mirrors:
    //     docker.io:           # no default endpoint, pulls will fail if not available on a node
    //     registry.k8s.io:     # no default endpoint, pulls will fail if not available on a node
    //     mirror.example.com:  # explicit default endpoint, can pull from upstream if not available on a node
    //       endpoint:
    //         - https://mirror.example.com
    Case {
        name: "k3s-no-default-endpoint",
        registries: || {
            let no_fallback = |hosts: RegistryHosts| RegistryHosts {
                default_endpoint: false,
                ..hosts
            };
            vec![
                no_fallback(RegistryHosts::new("docker.io")),
                no_fallback(RegistryHosts::new("registry.k8s.io")),
                no_fallback(listed(
                    "mirror.example.com",
                    &["https://mirror.example.com"],
                )),
            ]
        },
    },
    // docs.k3s.io/installation/private-registry, "Rewrites" and "With TLS"
    // (auth is containerd's CRI configuration, not hosts.toml; the paths the
    // docs leave blank are filled in; registry.example.com:5000 also
    // mirrored by name, so its own file shows TLS for the upstream):
    //   mirrors:
    //     docker.io:
    //       endpoint:
    //         - "https://registry.example.com:5000"
    //       rewrite:
    //         "^rancher/(.*)": "mirrorproject/rancher-images/$1"
    //     registry.example.com:5000:
    //   configs:
    //     "registry.example.com:5000":
    //       tls:
    //         cert_file: /etc/rancher/k3s/registry/client.crt
    //         key_file: /etc/rancher/k3s/registry/client.key
    //         ca_file: /etc/rancher/k3s/registry/ca.crt
    Case {
        name: "k3s-tls-and-rewrites",
        registries: || {
            let tls = EndpointTls {
                ca_file: Some("/etc/rancher/k3s/registry/ca.crt".into()),
                cert_file: Some("/etc/rancher/k3s/registry/client.crt".into()),
                key_file: Some("/etc/rancher/k3s/registry/client.key".into()),
                insecure_skip_verify: false,
            };
            let endpoint = Endpoint {
                rewrites: vec![Rewrite {
                    pattern: "^rancher/(.*)".into(),
                    replacement: "mirrorproject/rancher-images/$1".into(),
                }],
                tls: Some(tls.clone()),
                ..Endpoint::new("https://registry.example.com:5000")
            };
            vec![
                RegistryHosts {
                    endpoints: vec![endpoint],
                    ..RegistryHosts::new("docker.io")
                },
                RegistryHosts {
                    upstream_tls: Some(tls),
                    ..RegistryHosts::new("registry.example.com:5000")
                },
            ]
        },
    },
    // K3s's own test "localhost registry - https endpoint on odd port with
    // tls verification disabled", plus a localhost registry with nothing
    // to say (no file). Neither gets kagami's endpoint:
    //   mirrors:
    //     localhost:5000:
    //       endpoint:
    //         - https://localhost:5000
    //     localhost:5001:
    //   configs:
    //     localhost:5000:
    //       tls:
    //         insecure_skip_verify: true
    Case {
        name: "k3s-localhost",
        registries: || {
            let skip = EndpointTls {
                insecure_skip_verify: true,
                ..EndpointTls::default()
            };
            let endpoint = Endpoint {
                tls: Some(skip.clone()),
                ..Endpoint::new("https://localhost:5000")
            };
            vec![
                RegistryHosts {
                    endpoints: vec![endpoint],
                    upstream_tls: Some(skip),
                    ..RegistryHosts::new("localhost:5000")
                },
                RegistryHosts::new("localhost:5001"),
            ]
        },
    },
];

/// `registry` with plain listed endpoints.
fn listed(registry: &str, endpoints: &[&str]) -> RegistryHosts {
    RegistryHosts {
        endpoints: endpoints.iter().map(|e| Endpoint::new(*e)).collect(),
        ..RegistryHosts::new(registry)
    }
}

fn mirror() -> MirrorEndpoint {
    MirrorEndpoint {
        url: "https://127.0.0.1:6443/v2".to_owned(),
        ca: Some(PathBuf::from("/var/lib/kagami/tls/ca.crt")),
        client: Some((
            PathBuf::from("/var/lib/kagami/tls/node.crt"),
            PathBuf::from("/var/lib/kagami/tls/node.key"),
        )),
    }
}

fn files(case: &Case) -> BTreeMap<String, String> {
    (case.registries)()
        .iter()
        .filter_map(|registry| {
            let text = hosts::render_registry(&mirror(), registry)?;
            Some((registry.registry.clone(), text))
        })
        .collect()
}

/// Every file and directory under `root`: path → contents (`None` for a
/// directory).
fn tree(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut entries = BTreeMap::new();
    if !root.exists() {
        return entries;
    }
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            if path.is_dir() {
                entries.insert(relative, None);
                pending.push(path);
            } else {
                entries.insert(relative, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    entries
}

fn write_tree(root: &Path, entries: &BTreeMap<PathBuf, Option<Vec<u8>>>) {
    std::fs::create_dir_all(root).unwrap();
    for (path, contents) in entries {
        match contents {
            None => std::fs::create_dir_all(root.join(path)).unwrap(),
            Some(bytes) => {
                std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
                std::fs::write(root.join(path), bytes).unwrap();
            }
        }
    }
}

fn show(entries: &BTreeMap<PathBuf, Option<Vec<u8>>>) -> String {
    let mut out = String::new();
    for (path, contents) in entries {
        match contents {
            None => out.push_str(&format!("{}/\n", path.display())),
            Some(bytes) => out.push_str(&format!(
                "--- {}\n{}\n",
                path.display(),
                String::from_utf8_lossy(bytes)
            )),
        }
    }
    out
}

#[test]
fn hosts_toml_golden_files() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("KAGAMI_UPDATE_GOLDEN").is_some();
    for case in CASES {
        let before = tree(&golden.join(case.name).join("before"));
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("certs.d");
        write_tree(&dir, &before);

        hosts::apply(&dir, &files(case)).unwrap();
        let applied = tree(&dir);
        let expected_dir = golden.join(case.name).join("expected");
        if update {
            let _ = std::fs::remove_dir_all(&expected_dir);
            write_tree(&expected_dir, &applied);
        }
        let expected = tree(&expected_dir);
        assert!(
            applied == expected,
            "case {}: apply gave\n{}\nwant\n{}",
            case.name,
            show(&applied),
            show(&expected)
        );

        // Applying again changes nothing.
        hosts::apply(&dir, &files(case)).unwrap();
        assert!(
            tree(&dir) == expected,
            "case {}: a second apply changed the files",
            case.name
        );

        let kept = hosts::restore(&dir).unwrap();
        assert!(kept.is_empty(), "case {}: restore kept {kept:?}", case.name);
        let restored = tree(&dir);
        assert!(
            restored == before,
            "case {}: restore gave\n{}\nwant\n{}",
            case.name,
            show(&restored),
            show(&before)
        );
    }
}
