//! Checks of the deployment files in `deploy/`, which nothing else runs:
//! the systemd unit and its environment file (`systemd-analyze verify`, and
//! every variable is one kagami reads), the Kubernetes manifests (validated
//! against the API schemas by `deploy/check-kubernetes`, and the DaemonSet
//! wired the way kagami needs: host network, containerd's paths, probes on
//! the healthz port), and the image `deploy/image/build` makes (blobs that
//! match their digests, the same bytes on every build, and a container that
//! runs in a real containerd), and the Grafana dashboard and Prometheus
//! alert rules (promtool checks and unit tests, and every metric they name
//! is one a running node exports).
//!
//! Tools these need (systemd-analyze, python3 with venv, containerd, ctr,
//! runc, promtool) make the tests fail, naming the Debian package, when
//! missing.

mod image;
mod kubernetes;
mod observability;
mod systemd;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::process::{Command, Output};

/// The workspace root, where `deploy/` lives.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Runs `command` to completion; a missing program fails the test naming
/// the Debian `package` that provides it, so a bare machine never passes by
/// skipping.
pub fn run(command: &mut Command, package: &str) -> Output {
    match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "{:?} is not installed: install the Debian package {package}",
            command.get_program()
        ),
        Err(e) => panic!("cannot run {command:?}: {e}"),
    }
}

/// Like [`run`], and fails the test, with the command's output, unless it
/// succeeded; returns its stdout.
pub fn run_ok(command: &mut Command, package: &str) -> String {
    let output = run(command, package);
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// `kagami agent --help` and `kagami server --help`: what the deployment
/// files may name is what the binary under test accepts.
fn node_help() -> String {
    ["agent", "server"]
        .iter()
        .map(|command| {
            run_ok(
                Command::new(env!("CARGO_BIN_EXE_kagami"))
                    .args([command, "--help"])
                    .env_remove("RUST_LOG"),
                "(the kagami binary under test)",
            )
        })
        .collect()
}

/// The environment variables `kagami agent` and `kagami server` read.
pub fn kagami_env_vars() -> BTreeSet<String> {
    let env = regex::Regex::new(r"\[env: ([A-Z0-9_]+)").unwrap();
    let help = node_help();
    let vars: BTreeSet<String> = env.captures_iter(&help).map(|c| c[1].to_owned()).collect();
    assert!(
        vars.contains("KAGAMI_DATA_DIR"),
        "--help lists no env vars?\n{help}"
    );
    vars
}

/// The long flags of `kagami agent` and `kagami server`, without dashes:
/// the keys a config file may have.
pub fn kagami_long_flags() -> BTreeSet<String> {
    let flag = regex::Regex::new(r"(?m)^\s+(?:-\w, )?--([a-z0-9-]+)").unwrap();
    let help = node_help();
    let flags: BTreeSet<String> = flag.captures_iter(&help).map(|c| c[1].to_owned()).collect();
    assert!(flags.contains("data-dir"), "--help lists no flags?\n{help}");
    flags
}
