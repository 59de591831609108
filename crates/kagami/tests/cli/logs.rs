//! What `kagami server` children log at the default level and at `debug`:
//! a node alone says so once and warns of nothing; peers coming and going
//! are a line per change; a pull that misses everywhere is one line, not
//! one per key; `debug` is kagami's own lines, a library's detail only
//! when a filter names it.

use std::time::Duration;

use kagami_core::Reference;
use kagami_p2p::Psk;

use crate::harness::{Server, eventually, p2p_flags, stays};
use crate::pull::{blob, manifest};

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|line| line.contains(needle)).count()
}

fn node(
    data: &std::path::Path,
    psk: &std::path::Path,
    bootstrap: &[&str],
    extra: &[&str],
) -> Server {
    let mut flags = p2p_flags(psk, bootstrap);
    flags.extend(extra.iter().map(|s| (*s).to_owned()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start(data, &flags)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_alone_says_so_once_and_warns_of_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let psk = tmp.path().join("psk");
    Psk::generate().write(&psk).unwrap();
    // Secure, as by default: a lab node's own warning is not the point.
    let alone = node(&tmp.path().join("a"), &psk, &[], &["--secure"]);
    eventually("the node to say it has no peers", || async {
        (count(&alone.log(), "no peers yet") == 1).then_some(())
    })
    .await;
    // libp2p's own bootstrap runs half a second after listening, and
    // kagami's first retries within seconds: watch past both.
    stays(
        "no warning and no repetition",
        Duration::from_secs(4),
        || async {
            let log = alone.log();
            count(&log, " WARN ") == 0 && count(&log, "no peers yet") == 1
        },
    )
    .await;
    assert_eq!(count(&alone.log(), "libp2p"), 0, "{}", alone.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_coming_and_going_are_a_line_per_change() {
    let tmp = tempfile::tempdir().unwrap();
    let psk = tmp.path().join("psk");
    Psk::generate().write(&psk).unwrap();
    let first = node(&tmp.path().join("first"), &psk, &[], &[]);
    let status = first.status().await;
    let first_addr = status["listen"][0].as_str().unwrap().to_owned();
    let second_dir = tmp.path().join("second");
    let mut second = node(&second_dir, &psk, &[&first_addr], &[]);
    let second_id = second.status().await["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lines = |what: &'static str| {
        let id = second_id.clone();
        let log = first.log();
        log.lines()
            .filter(|l| l.contains(what) && l.contains(&id))
            .count()
    };
    eventually("the first node to note the second", || async {
        (lines("peer joined") == 1).then_some(())
    })
    .await;
    second.kill();
    eventually("the first node to note the second gone", || async {
        (lines("peer left") + lines("peer unreachable") == 1).then_some(())
    })
    .await;
    let _again = node(&second_dir, &psk, &[&first_addr], &[]);
    eventually("the first node to note the second back", || async {
        (lines("peer is back") == 1).then_some(())
    })
    .await;
    assert_eq!(lines("peer joined"), 1, "{}", first.log());
    assert_eq!(
        lines("peer left") + lines("peer unreachable"),
        1,
        "{}",
        first.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_that_misses_everywhere_is_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let psk = tmp.path().join("psk");
    Psk::generate().write(&psk).unwrap();
    let alone = node(&tmp.path().join("a"), &psk, &[], &[]);
    let image: Reference = "docker.io/kagami/nowhere:1".parse().unwrap();
    // As containerd asks for an image: the tag, then the content.
    assert_eq!(manifest(alone.addr, &image, "1").await.status(), 404);
    for n in 0..6u8 {
        let digest = format!("sha256:{}", format!("{n:02x}").repeat(32))
            .parse()
            .unwrap();
        assert_eq!(blob(alone.addr, &image, &digest).await.status, 404);
    }
    let line = "not held here nor served by the cluster; the client moves on";
    eventually("the miss to be logged", || async {
        (count(&alone.log(), line) == 1).then_some(())
    })
    .await;
    let log = alone.log();
    // One line for the pull, and none per key.
    let about_it = log
        .lines()
        .filter(|l| {
            !l.contains(" DEBUG ") && (l.contains("kagami/nowhere") || l.contains("sha256:"))
        })
        .count();
    assert_eq!(about_it, 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_is_kagamis_own_lines_and_a_filter_reaches_a_library() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = Server::start(
        &tmp.path().join("ours"),
        &["--secure", "--log-level", "debug"],
    );
    let filtered = Server::start(
        &tmp.path().join("filtered"),
        &["--secure", "--log-level", "info,kagami=debug,h2=debug"],
    );
    for server in [&ours, &filtered] {
        let response = server
            .client()
            .get(format!("{}/v2/", server.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        eventually("the request's line", || async {
            (count(&server.log(), "served") >= 1).then_some(())
        })
        .await;
    }
    let log = ours.log();
    let libraries = log
        .lines()
        .filter(|l| !l.contains(" kagami") && (l.contains(" DEBUG ") || l.contains(" INFO ")))
        .count();
    assert_eq!(libraries, 0, "library lines at debug:\n{log}");
    assert!(count(&filtered.log(), " h2::") > 0, "{}", filtered.log());
}
