//! The hosts.toml writer's promises beyond the golden cases: files someone
//! changed are never lost, dropped registries are put back, bad input
//! changes nothing.

use std::collections::BTreeMap;

use kagami_containerd::hosts::{self, MirrorEndpoint};

fn ours(registry: &str) -> String {
    let mirror = MirrorEndpoint {
        url: "http://127.0.0.1:6443/v2".to_owned(),
        ca: None,
        client: None,
    };
    hosts::render_registry(&mirror, &hosts::RegistryHosts::new(registry)).unwrap()
}

fn files(registries: &[&str]) -> BTreeMap<String, String> {
    registries
        .iter()
        .map(|r| ((*r).to_owned(), ours(r)))
        .collect()
}

#[test]
fn a_file_changed_after_kagami_wrote_it_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker.io/hosts.toml");
    hosts::apply(dir.path(), &files(&["docker.io"])).unwrap();
    std::fs::write(&path, "server = \"https://edited.example\"\n").unwrap();

    // Neither a new apply nor cleanup touches it.
    hosts::apply(dir.path(), &files(&["docker.io"])).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "server = \"https://edited.example\"\n"
    );
    assert_eq!(hosts::restore(dir.path()).unwrap(), vec![path.clone()]);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "server = \"https://edited.example\"\n"
    );
    assert!(!dir.path().join(".kagami-state.json").exists());
}

#[test]
fn a_registry_no_longer_mirrored_gets_the_operator_file_back() {
    let dir = tempfile::tempdir().unwrap();
    let quay = dir.path().join("quay.io/hosts.toml");
    std::fs::create_dir_all(quay.parent().unwrap()).unwrap();
    std::fs::write(&quay, "server = \"https://quay.io\"\n").unwrap();
    hosts::apply(dir.path(), &files(&["docker.io", "quay.io"])).unwrap();
    assert!(
        std::fs::read_to_string(&quay)
            .unwrap()
            .contains("127.0.0.1:6443")
    );

    hosts::apply(dir.path(), &files(&["docker.io"])).unwrap();
    assert_eq!(
        std::fs::read_to_string(&quay).unwrap(),
        "server = \"https://quay.io\"\n"
    );
    assert!(!dir.path().join("quay.io/hosts.toml.kagami-orig").exists());
    assert!(dir.path().join("docker.io/hosts.toml").exists());
}

#[test]
fn an_unparsable_operator_file_stays_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker.io/hosts.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "server = [unclosed\n").unwrap();
    let err = hosts::apply(dir.path(), &files(&["docker.io"])).unwrap_err();
    assert!(
        matches!(err, kagami_containerd::Error::ParseHosts { .. }),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "server = [unclosed\n"
    );
    assert!(!dir.path().join("docker.io/hosts.toml.kagami-orig").exists());
}

#[test]
fn names_that_are_not_hosts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["", "..", "a/b", ".kagami-state.json"] {
        let files = BTreeMap::from([(name.to_owned(), ours("docker.io"))]);
        assert!(
            hosts::apply(dir.path(), &files).is_err(),
            "{name:?} was accepted"
        );
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
