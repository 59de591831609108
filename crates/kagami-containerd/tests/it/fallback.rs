//! What a real containerd does with the files `render_registry` writes:
//! with fallback disabled it never pulls from the registry itself unless
//! the registry is one of the listed endpoints. Two counting HTTP servers
//! stand in for the registry and a mirror; both answer 404, so containerd
//! tries every host it was given, in order, and the pull fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kagami_containerd::hosts::{self, Endpoint, MirrorEndpoint, RegistryHosts};
use kagami_containerd::testing::Daemon;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An HTTP server on an ephemeral loopback port that answers every request
/// with 404 and counts them; stopped on drop.
struct Counting {
    port: u16,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Counting {
    async fn start() -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let reply =
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                    let _ = stream.write_all(reply).await;
                });
            }
        });
        Counting {
            port,
            requests,
            task,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Pulls `<registry>/app:1` through the files for `registry` and returns
/// how many requests the registry and the mirror each saw.
async fn pull(
    daemon: &Daemon,
    registry: RegistryHosts,
    upstream: &Counting,
    mirror: &Counting,
) -> (usize, usize) {
    let (before_upstream, before_mirror) = (upstream.requests(), mirror.requests());
    let dir = tempfile::tempdir().unwrap();
    // A loopback registry never gets kagami's endpoint, so this one is unused.
    let ours = MirrorEndpoint {
        url: "https://127.0.0.1:1/v2".to_owned(),
        ca: None,
        client: None,
    };
    let text = hosts::render_registry(&ours, &registry).expect("a file");
    let files = BTreeMap::from([(registry.registry.clone(), text)]);
    hosts::apply(dir.path(), &files).unwrap();
    let image = format!("{}/app:1", registry.registry);
    let output = tokio::process::Command::new("ctr")
        .arg("--address")
        .arg(daemon.socket())
        .args(["image", "pull", "--hosts-dir"])
        .arg(dir.path())
        .arg(&image)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), output)
        .await
        .expect("ctr finished")
        .expect("ctr runs");
    assert!(
        !output.status.success(),
        "nothing serves {image}, yet it was pulled"
    );
    (
        upstream.requests() - before_upstream,
        mirror.requests() - before_mirror,
    )
}

#[tokio::test]
async fn disabled_fallback_keeps_pulls_off_the_registry_itself() {
    let daemon = Daemon::start();
    let upstream = Counting::start().await;
    let mirror = Counting::start().await;
    let registry = format!("127.0.0.1:{}", upstream.port);
    let listed = |endpoints: &[&str], default_endpoint| RegistryHosts {
        endpoints: endpoints.iter().map(|e| Endpoint::new(*e)).collect(),
        default_endpoint,
        ..RegistryHosts::new(registry.clone())
    };
    let mirror_url = format!("http://127.0.0.1:{}", mirror.port);

    let (to_upstream, to_mirror) =
        pull(&daemon, listed(&[&mirror_url], true), &upstream, &mirror).await;
    assert!(
        to_mirror > 0 && to_upstream > 0,
        "fallback on: mirror {to_mirror}, upstream {to_upstream}"
    );

    let (to_upstream, to_mirror) =
        pull(&daemon, listed(&[&mirror_url], false), &upstream, &mirror).await;
    assert!(to_mirror > 0, "fallback off: the mirror is still tried");
    assert_eq!(
        to_upstream, 0,
        "fallback off: the registry itself is never asked"
    );

    let itself = format!("http://{registry}");
    let (to_upstream, to_mirror) = pull(
        &daemon,
        listed(&[&mirror_url, &itself], false),
        &upstream,
        &mirror,
    )
    .await;
    assert!(
        to_mirror > 0 && to_upstream > 0,
        "listed itself: mirror {to_mirror}, upstream {to_upstream}"
    );
}
