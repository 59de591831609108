//! A real containerd for tests (this crate's and the binary's): its own
//! root, state, socket and config in a temp dir, the CRI plugin off, killed
//! on drop; and `ctr` against it. Panics, with containerd's log, when
//! containerd cannot be started: tests must fail, not skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Config;

/// How long containerd may take to start serving its socket.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long one `ctr` command may take.
const CTR_DEADLINE: Duration = Duration::from_secs(120);
/// The namespace the tests use, as Kubernetes does.
pub const NAMESPACE: &str = "k8s.io";

/// A running containerd, stopped when dropped.
pub struct Daemon {
    child: Child,
    /// What containerd's command line is run under (`ip netns exec NS`,
    /// say); empty to run it directly.
    wrapper: Vec<String>,
    socket: PathBuf,
    root: PathBuf,
    config: PathBuf,
    log: PathBuf,
    // Dropped last, after the process is gone.
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts containerd and waits (bounded) until its socket answers.
    pub fn start() -> Daemon {
        Daemon::start_wrapped(&[])
    }

    /// Like [`Daemon::start`], with containerd's command run under
    /// `wrapper` (`["ip", "netns", "exec", "host-1"]` runs it in a network
    /// namespace; the wrapper must exec it, so killing the child kills
    /// containerd).
    pub fn start_wrapped(wrapper: &[String]) -> Daemon {
        if Command::new("containerd")
            .arg("--version")
            .output()
            .is_err()
        {
            panic!(
                "containerd is not installed: run scripts/install-deps (Debian's containerd ships containerd and ctr)"
            );
        }
        let dir = tempfile::tempdir().expect("containerd test setup");
        let root = dir.path().join("root");
        let socket = dir.path().join("c.sock");
        let config = dir.path().join("config.toml");
        let log = dir.path().join("containerd.log");
        // Only plugins that start unprivileged and without kernel extras;
        // images are imported without unpacking, so no snapshotter is used.
        let text = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.opt"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"#,
            root = root.display(),
            state = dir.path().join("state").display(),
            socket = socket.display(),
        );
        std::fs::write(&config, text).expect("containerd test setup");
        let child = spawn(wrapper, &config, &log);
        let mut daemon = Daemon {
            child,
            wrapper: wrapper.to_vec(),
            socket,
            root,
            config,
            log,
            _dir: dir,
        };
        daemon.wait_for_socket();
        daemon
    }

    /// Starts containerd again after [`Daemon::kill`], on the same root and
    /// socket, and waits until it serves.
    pub fn restart(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.socket);
        self.child = spawn(&self.wrapper, &self.config, &self.log);
        self.wait_for_socket();
    }

    fn wait_for_socket(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "containerd exited ({status}) before serving:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "containerd did not serve {} within {START_DEADLINE:?}:\n{}",
                    self.socket.display(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What containerd has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// containerd's gRPC socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// containerd's content directory, as the introspection API reports it.
    pub fn content_dir(&self) -> PathBuf {
        self.root.join("io.containerd.content.v1.content")
    }

    /// A store configuration for this containerd, in [`NAMESPACE`].
    pub fn config(&self) -> Config {
        Config {
            address: self.socket.clone(),
            namespace: NAMESPACE.to_owned(),
            content_dir: None,
        }
    }

    /// Runs `ctr` against this containerd in the test namespace; panics
    /// with its output when it fails.
    pub async fn ctr(&self, args: &[&str]) -> String {
        let mut command = tokio::process::Command::new("ctr");
        command
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", NAMESPACE])
            .args(args)
            .kill_on_drop(true);
        let output = tokio::time::timeout(CTR_DEADLINE, command.output())
            .await
            .unwrap_or_else(|_| panic!("ctr {args:?} did not finish within {CTR_DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("cannot run ctr (run scripts/install-deps): {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "ctr {args:?} failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Stops containerd now (tests of a containerd that went away).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process ID of containerd (after [`Daemon::kill`], of the one that
    /// was killed).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Starts containerd on `config` under `wrapper`, appending its output to
/// `log`.
fn spawn(wrapper: &[String], config: &Path, log: &Path) -> Child {
    let output = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("containerd test setup")
    };
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg("containerd");
            command
        }
        None => Command::new("containerd"),
    };
    command
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(output())
        .stderr(output())
        .spawn()
        .expect("containerd test setup")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}
