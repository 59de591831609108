//! `deploy/systemd/`: the unit verifies clean and its environment file
//! names only variables kagami reads.

use std::process::Command;

use crate::{kagami_env_vars, run, workspace};

const INSTALLED: &str = "/usr/local/bin/kagami";

fn unit() -> String {
    std::fs::read_to_string(workspace().join("deploy/systemd/kagami.service")).unwrap()
}

#[test]
fn unit_verifies_without_a_warning() {
    let unit = unit();
    let exec: Vec<&str> = unit
        .lines()
        .filter(|line| line.starts_with("ExecStart="))
        .collect();
    assert_eq!(
        exec,
        [format!("ExecStart={INSTALLED} agent")],
        "the unit runs the installed binary as an agent"
    );
    for line in [
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "StateDirectory=kagami",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    for needed in ["containerd.service", "network-online.target"] {
        for key in ["After=", "Wants="] {
            assert!(
                unit.lines()
                    .any(|l| l.starts_with(key) && l.split(['=', ' ']).any(|w| w == needed)),
                "the unit lacks {key}{needed}"
            );
        }
    }
    // kagami writes hosts.toml there, and ProtectSystem=strict makes the
    // rest read-only.
    let writable: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ReadWritePaths="))
        .flat_map(|l| l.split_whitespace())
        .collect();
    assert!(
        writable.contains(&"/etc/containerd/certs.d") && writable.contains(&"/var/lib/kagami"),
        "ReadWritePaths: {writable:?}"
    );

    // verify insists that ExecStart's binary exists: point it at the one
    // under test, in a copy.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("kagami.service");
    std::fs::write(
        &copy,
        unit.replace(
            &format!("ExecStart={INSTALLED} "),
            &format!("ExecStart={} ", env!("CARGO_BIN_EXE_kagami")),
        ),
    )
    .unwrap();
    let output = run(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .current_dir(dir.path()),
        "systemd",
    );
    // Unknown keys and bad values are only warnings, with exit status 0.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify ({}):\n{stderr}",
        output.status
    );
}

#[test]
fn environment_file_names_only_variables_kagami_reads() {
    let text = std::fs::read_to_string(workspace().join("deploy/systemd/kagami.env")).unwrap();
    let known = kagami_env_vars();
    let assignment = regex::Regex::new(r"^#?([A-Z][A-Z0-9_]*)=(.*)$").unwrap();
    let mut set = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line_no = number + 1;
        if line.trim().is_empty() {
            continue;
        }
        // Commented-out examples must be right too: they are what an
        // operator uncomments.
        let Some(captures) = assignment.captures(line) else {
            assert!(
                line.starts_with("# ") || line == "#",
                "kagami.env:{line_no}: neither KEY=value nor a comment: {line:?}"
            );
            continue;
        };
        let name = &captures[1];
        assert!(
            known.contains(name),
            "kagami.env:{line_no}: kagami reads no {name} (it reads {known:?})"
        );
        if !line.starts_with('#') {
            set.push(name.to_owned());
        }
    }
    for name in [
        "KAGAMI_SERVER",
        "KAGAMI_TOKEN",
        "KAGAMI_MIRRORS",
        "KAGAMI_DATA_DIR",
        "KAGAMI_HEALTHZ_ADDRESS",
        "KAGAMI_METRICS_ADDRESS",
    ] {
        assert!(set.iter().any(|n| n == name), "kagami.env sets no {name}");
    }
    // The unit's sandbox lets kagami write only there.
    assert!(
        text.lines().any(|l| l == "KAGAMI_DATA_DIR=/var/lib/kagami"),
        "KAGAMI_DATA_DIR must be the unit's StateDirectory"
    );
    assert!(
        unit()
            .lines()
            .any(|l| l == "EnvironmentFile=-/etc/default/kagami"),
        "the unit reads the environment file from /etc/default/kagami"
    );
}
