//! What a killed run leaves behind, the next run removes: its namespaces,
//! the processes still running in them, and its directory.

use std::process::Command;
use std::time::{Duration, Instant};

/// A process ID that is no longer anyone's.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn netns_exists(name: &str) -> bool {
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&list.stdout)
        .lines()
        .any(|line| line.split_whitespace().next() == Some(name))
}

#[test]
fn a_killed_runs_namespaces_processes_and_files_are_swept() {
    kagami_testbed::bed::preflight().unwrap_or_else(|e| panic!("{e}"));
    let pid = dead_pid();
    let name = format!("kgtb{pid}x0-switch");
    let status = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .unwrap();
    assert!(status.success());
    // A process the killed run left running in its namespace.
    let mut orphan = Command::new("ip")
        .args(["netns", "exec", &name, "sleep", "600"])
        .spawn()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("kgtb{pid}x-leftover"));
    std::fs::create_dir_all(dir.join("host-0")).unwrap();
    // A live run's namespace is left alone.
    let live = format!("kgtb{}x999-switch", std::process::id());
    assert!(
        Command::new("ip")
            .args(["netns", "add", &live])
            .status()
            .unwrap()
            .success()
    );

    kagami_testbed::netns::sweep_leftovers();

    assert!(
        !netns_exists(&name),
        "the killed run's namespace is still there"
    );
    assert!(!dir.exists(), "the killed run's directory is still there");
    let deadline = Instant::now() + Duration::from_secs(10);
    while orphan.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the process in it still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(netns_exists(&live), "a live run's namespace was swept");
    Command::new("ip")
        .args(["netns", "del", &live])
        .status()
        .unwrap();
}
