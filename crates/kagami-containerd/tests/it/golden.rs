//! Golden files for `hosts.toml`: each case under `tests/golden/<case>/`
//! has a `before/` tree (absent means an empty directory) and an
//! `expected/` tree. `apply` on a copy of `before/` must give `expected/`
//! byte for byte, and `restore` must give `before/` back.
//! `KAGAMI_UPDATE_GOLDEN=1` rewrites the `expected/` trees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kagami_containerd::hosts::{self, MirrorEndpoint};

/// A case: the registries written, each with its extra listed endpoints.
struct Case {
    name: &'static str,
    registries: &'static [(&'static str, &'static [&'static str])],
}

const CASES: &[Case] = &[
    Case {
        name: "empty-docker-io",
        registries: &[("docker.io", &[])],
    },
    Case {
        name: "registry-k8s-io",
        registries: &[("registry.k8s.io", &[])],
    },
    Case {
        name: "default",
        registries: &[("_default", &[])],
    },
    Case {
        name: "extra-endpoint",
        registries: &[("docker.io", &["https://mirror.example.com"])],
    },
    Case {
        name: "operator-file",
        registries: &[("docker.io", &[]), ("quay.io", &[])],
    },
    Case {
        name: "ipv6-and-port",
        registries: &[("[::1]:5000", &[]), ("registry.example:5000", &[])],
    },
];

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
    case.registries
        .iter()
        .map(|(registry, endpoints)| {
            let endpoints: Vec<String> = endpoints.iter().map(|e| (*e).to_owned()).collect();
            let text = hosts::render(&mirror(), registry, &endpoints, None);
            ((*registry).to_owned(), text)
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
