//! Runs the `kagami` binary: one-shot commands, and a server child process
//! that is killed when the test lets go of it; and polling with a deadline.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any condition may take to come true: generous for a loaded
/// 2-core machine, since polling returns as soon as it holds.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` every 100 ms until it gives a value; panics, naming
/// `what`, after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts `check` holds at every poll for `period` (a claim that
/// something never happens can only be watched for a while).
pub async fn stays<F, Fut>(what: &str, period: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + period;
    while Instant::now() < until {
        assert!(check().await, "{what} stopped holding");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The binary under test.
pub fn kagami() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kagami"));
    command.env_remove("RUST_LOG").env("NO_COLOR", "1");
    command
}

/// Runs `kagami ARGS… --data-dir DIR` to completion.
pub fn run(data_dir: &Path, args: &[&str]) -> Output {
    kagami()
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("kagami runs")
}

/// Like [`run`], and fails the test unless the command succeeded.
pub fn run_ok(data_dir: &Path, args: &[&str]) -> String {
    let output = run(data_dir, args);
    assert!(
        output.status.success(),
        "kagami {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// A `kagami server` child on an ephemeral loopback port.
pub struct Server {
    child: Child,
    /// The registry API's address.
    pub addr: SocketAddr,
    /// The metrics address, once its log line has been seen.
    metrics_addr: Mutex<Option<SocketAddr>>,
    metrics_rx: Mutex<std::sync::mpsc::Receiver<SocketAddr>>,
    /// Everything the server wrote to stderr so far.
    log: Arc<Mutex<String>>,
    /// The node's data directory.
    data_dir: std::path::PathBuf,
    /// Whether it serves HTTPS with cluster trust (else `--insecure-http`).
    secure: bool,
    /// Disconnects when stderr has ended (the log is then complete).
    log_done: std::sync::mpsc::Receiver<()>,
}

impl Server {
    /// Starts a server with extra flags and waits until it listens. It
    /// serves plain HTTP (`--insecure-http`) unless `extra` holds the
    /// harness's own `--secure`, for tests that are not about trust.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_as("server", data_dir, extra)
    }

    /// Like [`Server::start`], for `kagami COMMAND` (`server`, `agent`).
    pub fn start_as(command: &str, data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_env(command, data_dir, extra, &[])
    }

    /// Like [`Server::start_as`], with environment variables set.
    pub fn start_env(
        command: &str,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let secure = extra.contains(&"--secure");
        let extra: Vec<&str> = extra.iter().copied().filter(|a| *a != "--secure").collect();
        let mut child = kagami()
            .envs(env.iter().copied())
            .args([command, "--bind-address", "127.0.0.1"])
            // An ephemeral port unless the test names one.
            .args(if extra.contains(&"--https-listen-port") {
                &[][..]
            } else {
                &["--https-listen-port", "0"][..]
            })
            // No test reaches a registry outside loopback: pull-through
            // only where a test turns it on.
            .args(if extra.contains(&"--pull-through") {
                &[][..]
            } else {
                &["--pull-through", "false"][..]
            })
            // Tests run side by side: never the default metrics port.
            .args(if extra.contains(&"--metrics-address") {
                &[][..]
            } else {
                &["--metrics-address", "127.0.0.1:0"][..]
            })
            // A machine running containerd must not change what these tests serve.
            .args(if extra.contains(&"--store") {
                &[][..]
            } else {
                &["--store", "layout"][..]
            })
            .args(if secure {
                &[][..]
            } else {
                &["--insecure-http"][..]
            })
            // containerd's mirror configuration goes to the test's own
            // directory unless the test names one: never /etc.
            .args(if extra.contains(&"--containerd-config-path") {
                vec![]
            } else {
                vec![
                    "--containerd-config-path".to_owned(),
                    data_dir.join("containerd-certs.d").display().to_string(),
                ]
            })
            .arg("--data-dir")
            .arg(data_dir)
            .args(&extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kagami server starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (metrics_tx, metrics_rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        let (done_tx, log_done) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            // Dropped when stderr ends, which wakes `log_done`.
            let _done = done_tx;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("metrics and status page listening")
                    && let Some(addr) = line
                        .split_whitespace()
                        .find_map(|word| word.strip_prefix("listen="))
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                {
                    let _ = metrics_tx.send(addr);
                }
                if line.contains("registry API listening")
                    && let Some(addr) = line
                        .split_whitespace()
                        .find_map(|word| word.strip_prefix("addr="))
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                {
                    let _ = addr_tx.send(addr);
                }
                let mut log = sink.lock().expect("log lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match addr_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start: {}", log.lock().expect("log lock"));
            }
        };
        Server {
            child,
            addr,
            metrics_addr: Mutex::new(None),
            metrics_rx: Mutex::new(metrics_rx),
            log,
            data_dir: data_dir.to_owned(),
            secure,
            log_done,
        }
    }

    /// `http://ADDR` of the node's metrics address (`/metrics` and the
    /// status page); panics when the node does not serve one.
    pub fn metrics_url(&self) -> String {
        let mut known = self.metrics_addr.lock().expect("metrics lock");
        if known.is_none() {
            let rx = self.metrics_rx.lock().expect("metrics lock");
            let addr = rx
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no metrics address in the log: {}", self.log()));
            *known = Some(addr);
        }
        format!("http://{}", known.expect("just set"))
    }

    /// A client of this node: with the node's own certificate when it
    /// serves HTTPS, so it is let in as a member.
    pub fn client(&self) -> reqwest::Client {
        if !self.secure {
            return crate::pull::client();
        }
        let identity = member_identity(&self.data_dir);
        let tls = kagami_cluster::tls::peer_client_config(&identity, None).unwrap();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .build()
            .unwrap()
    }

    /// `http://ADDR`, or `https://ADDR` for a secure node.
    pub fn url(&self) -> String {
        let scheme = if self.secure { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// `ADDR`, as skopeo's `docker://ADDR/…` wants it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// `GET path` on the node, as a member; the body as text.
    pub async fn text(&self, path: &str) -> String {
        self.client()
            .get(format!("{}{path}", self.url()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `GET /debug/p2p`: the node's P2P status document.
    pub async fn status(&self) -> serde_json::Value {
        let response = self
            .client()
            .get(format!("{}/debug/p2p", self.url()))
            .send()
            .await
            .expect("status request reaches the server");
        assert_eq!(response.status(), 200, "GET /debug/p2p");
        let body = response.bytes().await.expect("status body");
        serde_json::from_slice(&body).expect("status is JSON")
    }

    /// The process ID of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process dies at once, its connections cut mid-stream.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns whether it exited cleanly.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait on child") {
                // The last lines may still be in the pipe: read them too.
                let _ = self.log_done.recv_timeout(Duration::from_secs(5));
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server did not stop within {within:?} after SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The TLS identity of the node whose data directory is `data_dir`.
pub fn member_identity(data_dir: &Path) -> kagami_cluster::tls::Identity {
    let read = |name: &str| std::fs::read_to_string(data_dir.join("cluster").join(name)).unwrap();
    kagami_cluster::tls::Identity {
        ca_pem: read("ca.crt"),
        cert_pem: read("node.crt"),
        key_pem: read("node.key"),
    }
}

/// The `kagami server` flags of a P2P node on an ephemeral loopback port
/// in the network of `psk_file`, joining through the `bootstrap` peers.
pub fn p2p_flags(psk_file: &Path, bootstrap: &[&str]) -> Vec<String> {
    let mut flags = vec![
        "--embedded-registry".to_owned(),
        "--p2p-port".to_owned(),
        "0".to_owned(),
        "--psk-file".to_owned(),
        psk_file.display().to_string(),
        // A node shares only what it mirrors, and joins no P2P network
        // when it mirrors nothing.
        "--mirror".to_owned(),
        "*".to_owned(),
    ];
    for peer in bootstrap {
        flags.extend(["--bootstrap-peer".to_owned(), (*peer).to_owned()]);
    }
    flags
}

/// The sha256 digest of a file, as `sha256:<hex>`.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut file = std::fs::File::open(path).expect("open file");
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = file.read(&mut buf).expect("read file");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let hash = hasher.finalize();
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Whether a program is on PATH; the test script installs the ones we use.
pub fn require(program: &str) {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "{program} is not installed: run scripts/install-deps (scripts/test does)"
    );
}
