//! `kagami server --mirror …` writes containerd's `hosts.toml` files with
//! this node first and the operator's own hosts kept; `kagami cleanup`
//! puts the directory back byte for byte.

use std::time::Duration;

use crate::harness::{Server, kagami, p2p_flags};

const OPERATOR: &str = "server = \"https://registry-1.docker.io\"\n\n[host.\"https://mirror.example.com\"]\n  capabilities = [\"pull\"]\n";

#[test]
fn server_writes_mirror_files_and_cleanup_restores_the_operators() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs.d");
    std::fs::create_dir_all(certs.join("docker.io")).unwrap();
    std::fs::write(certs.join("docker.io/hosts.toml"), OPERATOR).unwrap();
    let psk = tmp.path().join("psk");
    kagami_p2p::Psk::generate().write(&psk).unwrap();

    // The files are for the node's containerd: only a node serving
    // containerd's store writes them.
    let daemon = kagami_containerd::testing::Daemon::start();
    let mut flags = p2p_flags(&psk, &[]);
    flags.extend(
        [
            "--store",
            "containerd",
            "--containerd-address",
            daemon.socket().to_str().unwrap(),
            "--containerd-config-path",
            certs.to_str().unwrap(),
            "--mirror",
            "docker.io",
            "--mirror",
            "*",
        ]
        .map(String::from),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut server = Server::start(&tmp.path().join("data"), &flags);
    let ours = format!("http://{}/v2", server.addr);

    let docker: toml_edit::DocumentMut =
        std::fs::read_to_string(certs.join("docker.io/hosts.toml"))
            .unwrap()
            .parse()
            .unwrap();
    let hosts: Vec<&str> = docker["host"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(hosts, [ours.as_str(), "https://mirror.example.com"]);
    assert_eq!(
        docker["host"][ours.as_str()]["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect::<Vec<_>>(),
        ["pull", "resolve"]
    );
    assert_eq!(
        docker["server"].as_str(),
        Some("https://registry-1.docker.io")
    );
    let all = std::fs::read_to_string(certs.join("_default/hosts.toml")).unwrap();
    assert!(all.contains(&format!("[host.\"{ours}\"]")), "{all}");
    assert!(!all.contains("server ="), "{all}");

    // The files outlive the node: containerd keeps pulling through it.
    assert!(server.terminate(Duration::from_secs(15)));
    assert!(certs.join("_default/hosts.toml").exists());

    let out = kagami()
        .args([
            "cleanup",
            "--containerd-config-path",
            certs.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restored"),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(certs.join("docker.io/hosts.toml")).unwrap(),
        OPERATOR
    );
    assert!(!certs.join("_default").join("hosts.toml").exists());
    let left: Vec<_> = walk(&certs);
    assert_eq!(left, [certs.join("docker.io/hosts.toml")], "{left:?}");
}

#[test]
fn mirror_without_the_embedded_registry_writes_nothing_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs.d");
    let mut server = Server::start(
        &tmp.path().join("data"),
        &[
            "--containerd-config-path",
            certs.to_str().unwrap(),
            "--mirror",
            "docker.io",
        ],
    );
    assert!(server.terminate(Duration::from_secs(15)));
    assert!(!certs.exists());
    assert!(
        server.log().contains("--mirror has no effect"),
        "{}",
        server.log()
    );
}

/// Every file under `dir`, sorted.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}
