//! `kagami demo`: the one-command tour must work and say what it did.

use std::process::Stdio;
use std::time::Duration;

/// The demo waits up to 30 s for its network; a little more on top.
const DEMO_TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn the_demo_pulls_through_a_peer_and_verifies_every_digest() {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kagami"))
        .arg("demo")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(DEMO_TIMEOUT, child.wait_with_output())
        .await
        .expect("the demo finishes in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for node in ["node-0", "node-1", "node-2"] {
        assert!(
            stdout.lines().any(|line| line.starts_with(node)),
            "{node} missing from the table:\n{stdout}"
        );
    }
    assert!(stdout.contains("every digest verified"), "{stdout}");
    // The demo runs secure: the others joined node-0 with its token.
    assert!(stdout.contains("joined with its token"), "{stdout}");
    assert!(stdout.contains("from node-0"), "no relay named:\n{stdout}");
}
