//! What a node shares: nothing unless the embedded registry is on (a
//! cluster-wide switch the servers own) and a registry is mirrored; only
//! the mirrored registries, local content included; never a local one.

use std::path::Path;

use kagami_store::testing::{ArchiveFormat, BuiltImage, Compression, ImageSpec, write_archive};

use crate::cluster::keys;
use crate::harness::{Server, eventually, run_ok};

fn import(data_dir: &Path, dir: &Path, spec: ImageSpec) -> BuiltImage {
    std::fs::create_dir_all(dir).unwrap();
    let (archive, mut built) =
        write_archive(dir, &[spec], ArchiveFormat::Oci, Compression::None).unwrap();
    run_ok(data_dir, &["image", "import", archive.to_str().unwrap()]);
    built.remove(0)
}

fn p2p(extra: &[&'static str]) -> Vec<&'static str> {
    let mut flags = vec![
        "--embedded-registry",
        "--p2p-port",
        "0",
        "--store",
        "layout",
    ];
    flags.extend_from_slice(extra);
    flags
}

#[tokio::test]
async fn a_node_that_mirrors_nothing_stays_out_of_the_p2p_network() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Server::start(&tmp.path().join("n"), &p2p(&[]));
    assert!(
        node.log().contains("no registry is mirrored"),
        "{}",
        node.log()
    );
    assert!(!node.log().contains("P2P node started"), "{}", node.log());
    let status = node
        .client()
        .get(format!("{}/debug/p2p", node.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 404);
}

#[tokio::test]
async fn only_mirrored_registries_are_served_and_advertised() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("n");
    let hub = import(
        &data,
        &tmp.path().join("a"),
        ImageSpec::new("docker.io/library/open:1", &[10_000]).seed(91),
    );
    let private = import(
        &data,
        &tmp.path().join("b"),
        ImageSpec::new("quay.io/team/private:1", &[20_000]).seed(92),
    );
    let node = Server::start(&data, &p2p(&["--mirror", "docker.io"]));
    let get = |path: String| {
        let node = &node;
        async move {
            node.client()
                .get(format!("{}{path}", node.url()))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        get("/v2/library/open/manifests/1".into()).await.status(),
        200
    );
    let refused = get("/v2/team/private/manifests/1?ns=quay.io".into()).await;
    assert_eq!(refused.status(), 404);
    let body: serde_json::Value = serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], "NAME_UNKNOWN", "{body}");
    let (layer, _) = private.blobs.iter().next_back().unwrap();
    let blob = get(format!("/v2/team/private/blobs/{layer}?ns=quay.io")).await;
    assert_eq!(blob.status(), 404);

    // Exactly the Hub image's keys are advertised: its tag, manifest,
    // config and layer; nothing of quay.io's.
    eventually("the Hub image's keys to be advertised", || async {
        (node.status().await["advertised_keys"].as_u64() == Some(keys(&hub) as u64)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn agents_follow_the_servers_embedded_registry_switch() {
    let tmp = tempfile::tempdir().unwrap();
    let s_data = tmp.path().join("s");
    let s = Server::start(
        &s_data,
        &[
            "--secure",
            "--embedded-registry",
            "--mirror",
            "*",
            "--p2p-port",
            "0",
        ],
    );
    let token = run_ok(&s_data, &["token"]).trim().to_owned();
    let url = s.url();
    // No --embedded-registry of its own: the cluster's switch is on.
    let a = Server::start_as(
        "agent",
        &tmp.path().join("a"),
        &[
            "--secure",
            "--server",
            &url,
            "--token",
            &token,
            "--mirror",
            "*",
            "--p2p-port",
            "0",
        ],
    );
    assert!(a.log().contains("P2P node started"), "{}", a.log());

    // A server with the switch off: its agent stays out, and says why.
    let off_data = tmp.path().join("off");
    let off = Server::start(&off_data, &["--secure", "--mirror", "*"]);
    let off_token = run_ok(&off_data, &["token"]).trim().to_owned();
    let off_url = off.url();
    let b = Server::start_as(
        "agent",
        &tmp.path().join("b"),
        &[
            "--secure",
            "--server",
            &off_url,
            "--token",
            &off_token,
            "--embedded-registry",
            "--mirror",
            "*",
            "--p2p-port",
            "0",
        ],
    );
    let log = b.log();
    assert!(
        log.contains("this agent's --embedded-registry is ignored"),
        "{log}"
    );
    assert!(log.contains("embedded registry mirror off"), "{log}");
    assert!(!log.contains("P2P node started"), "{log}");
}

#[test]
fn latest_is_shared_only_when_k3s_or_kagami_says_so_and_then_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let flags = [
        "--embedded-registry",
        "--mirror",
        "*",
        "--p2p-port",
        "0",
        "--store",
        "layout",
    ];
    let quiet = Server::start(&tmp.path().join("a"), &flags);
    assert!(!quiet.log().contains("unsupported"), "{}", quiet.log());
    for (i, var) in ["K3S_P2P_ENABLE_LATEST", "KAGAMI_P2P_ENABLE_LATEST"]
        .iter()
        .enumerate()
    {
        let node = Server::start_env(
            "server",
            &tmp.path().join(format!("b{i}")),
            &flags,
            &[(var, "true")],
        );
        let log = node.log();
        assert!(
            log.contains("`latest` tags are shared") && log.contains("unsupported"),
            "{var}: {log}"
        );
    }
}

#[test]
fn a_changed_switch_reaches_agents_at_their_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let s_data = tmp.path().join("s");
    let on = [
        "--secure",
        "--embedded-registry",
        "--mirror",
        "*",
        "--p2p-port",
        "0",
    ];
    let mut s = Server::start(&s_data, &on);
    let token = run_ok(&s_data, &["token"]).trim().to_owned();
    let url = s.url();
    let a_data = tmp.path().join("a");
    let agent_flags = [
        "--secure",
        "--server",
        &url,
        "--token",
        &token,
        "--mirror",
        "*",
        "--p2p-port",
        "0",
    ];
    let mut a = Server::start_as("agent", &a_data, &agent_flags);
    assert!(a.log().contains("P2P node started"), "{}", a.log());
    assert!(a.terminate(std::time::Duration::from_secs(15)));

    // The server restarts with the switch off, on the same port.
    let port = s.addr.port().to_string();
    assert!(s.terminate(std::time::Duration::from_secs(15)));
    let _s = Server::start(
        &s_data,
        &["--secure", "--mirror", "*", "--https-listen-port", &port],
    );
    let again = Server::start_as("agent", &a_data, &agent_flags);
    let log = again.log();
    assert!(log.contains("the cluster's settings changed"), "{log}");
    assert!(log.contains("embedded registry mirror off"), "{log}");
    assert!(!log.contains("P2P node started"), "{log}");
}
