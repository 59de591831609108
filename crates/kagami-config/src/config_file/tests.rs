use std::path::Path;

use super::*;

const KNOWN: &[KnownKey<'static>] = &[
    KnownKey::bool("embedded-registry"),
    KnownKey::bool("disable-default-registry-endpoint"),
    KnownKey::scalar("data-dir"),
    KnownKey::scalar("https-listen-port"),
    KnownKey::scalar("token"),
    KnownKey::scalar("server"),
    KnownKey::scalar("private-registry"),
    KnownKey::scalar("node-name"),
    KnownKey::list("node-ip"),
    KnownKey::list("peer"),
];

fn parse_ok(text: &str) -> ConfigFile {
    match parse(text, Path::new("/etc/kagami/config.yaml"), KNOWN) {
        Ok(config) => config,
        Err(err) => panic!("{err}"),
    }
}

fn parse_err(text: &str) -> Error {
    match parse(text, Path::new("/etc/kagami/config.yaml"), KNOWN) {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(err) => err,
    }
}

fn entry(key: &str, value: Value, line: usize) -> Entry {
    Entry {
        key: key.to_owned(),
        value,
        line,
        append: false,
    }
}

#[test]
fn takes_each_kind_in_file_order_with_lines() {
    let config = parse_ok(
        "# kagami\n\
         embedded-registry: true\n\
         data-dir: /var/lib/kagami\n\
         \n\
         https-listen-port: 6443\n\
         node-ip:\n  - 10.0.0.5\n  - fd00::5\n\
         disable-default-registry-endpoint: false\n",
    );
    assert_eq!(
        config.entries,
        vec![
            entry("embedded-registry", Value::Bool(true), 2),
            entry("data-dir", Value::Scalar("/var/lib/kagami".into()), 3),
            entry("https-listen-port", Value::Scalar("6443".into()), 5),
            entry(
                "node-ip",
                Value::List(vec!["10.0.0.5".into(), "fd00::5".into()]),
                6
            ),
            entry("disable-default-registry-endpoint", Value::Bool(false), 9),
        ]
    );
    assert!(config.ignored.is_empty());
    assert_eq!(config.path, Path::new("/etc/kagami/config.yaml"));
    assert_eq!(config.get("data-dir").map(|e| e.line), Some(3));
    assert_eq!(config.get("token"), None);
}

#[test]
fn scalars_take_numbers_and_bools_as_text() {
    let config = parse_ok("token: 12345\nnode-name: true\nserver: \"https://10.0.0.1:6443\"\n");
    assert_eq!(config.entries[0].value, Value::Scalar("12345".into()));
    assert_eq!(config.entries[1].value, Value::Scalar("true".into()));
    assert_eq!(
        config.entries[2].value,
        Value::Scalar("https://10.0.0.1:6443".into())
    );
}

#[test]
fn a_list_key_takes_one_scalar_a_flow_list_or_nothing() {
    let config = parse_ok("node-ip: 10.0.0.5\npeer: [a, 2]\npeer+:\n");
    assert_eq!(
        config.entries[0].value,
        Value::List(vec!["10.0.0.5".into()])
    );
    assert_eq!(
        config.entries[1].value,
        Value::List(vec!["a".into(), "2".into()])
    );
    assert_eq!(config.entries[2].value, Value::List(vec![]));
}

#[test]
fn a_plus_on_a_list_key_means_append() {
    let config = parse_ok("node-ip: [10.0.0.5]\nnode-ip+:\n  - fd00::5\n");
    assert_eq!(config.entries.len(), 2);
    assert!(!config.entries[0].append);
    let appended = &config.entries[1];
    assert_eq!(appended.key, "node-ip");
    assert!(appended.append);
    assert_eq!(appended.line, 2);
    assert_eq!(appended.value, Value::List(vec!["fd00::5".into()]));
}

#[test]
fn a_plus_on_another_kind_is_refused() {
    let err = parse_err("data-dir+: /x\n");
    assert_eq!(err.line(), Some(1));
    assert_eq!(err.key(), Some("data-dir+"));
    assert!(err.to_string().contains("only list keys"), "{err}");
}

#[test]
fn an_empty_file_or_only_comments_sets_nothing() {
    assert_eq!(parse_ok("").entries, vec![]);
    assert_eq!(parse_ok("# nothing yet\n---\n").entries, vec![]);
}

#[test]
fn an_unknown_key_is_an_error_with_its_line() {
    let err = parse_err("embedded-registry: true\n\nfoo-bar: 1\n");
    assert_eq!(err.line(), Some(3));
    assert_eq!(err.key(), Some("foo-bar"));
    assert_eq!(
        err.to_string(),
        "/etc/kagami/config.yaml:3: key \"foo-bar\": unknown key: neither a kagami flag nor a K3s key"
    );
}

#[test]
fn an_unknown_key_near_a_flag_gets_a_suggestion() {
    let err = parse_err("data-dir: /x\nhttps-listen-prot: 1\n");
    assert_eq!(err.line(), Some(2));
    assert!(
        err.to_string()
            .ends_with("did you mean \"https-listen-port\"?"),
        "{err}"
    );
}

#[test]
fn a_scalar_key_given_a_list_names_file_line_and_key() {
    let err = parse_err("data-dir: /x\n\nhttps-listen-port:\n  - 1\n  - 2\n");
    assert_eq!(
        err.to_string(),
        "/etc/kagami/config.yaml:3: key \"https-listen-port\": expected one value (text or a number), found a list"
    );
}

#[test]
fn a_scalar_key_with_no_value_is_refused() {
    let err = parse_err("data-dir:\n");
    assert_eq!(err.line(), Some(1));
    assert!(err.to_string().contains("found nothing"), "{err}");
}

#[test]
fn a_bool_key_needs_a_yaml_bool() {
    for (text, found) in [
        ("embedded-registry: \"true\"\n", "the text \"true\""),
        ("embedded-registry: yes\n", "the text \"yes\""),
        ("embedded-registry: 1\n", "the number 1"),
        ("embedded-registry:\n", "nothing"),
    ] {
        let err = parse_err(text);
        assert_eq!(err.line(), Some(1), "{text}");
        assert_eq!(err.key(), Some("embedded-registry"));
        assert!(
            err.to_string()
                .ends_with(&format!("expected true or false, found {found}")),
            "{err}"
        );
    }
}

#[test]
fn a_list_item_that_is_not_a_scalar_is_placed_on_its_own_line() {
    let err = parse_err("node-ip:\n  - 10.0.0.5\n  - {a: b}\n");
    assert_eq!(err.line(), Some(3));
    assert_eq!(err.key(), Some("node-ip[1]"));
    assert!(err.to_string().contains("found a mapping in it"), "{err}");
    let err = parse_err("node-ip:\n  a: b\n");
    assert_eq!(err.line(), Some(1));
}

#[test]
fn bad_yaml_gives_the_parsers_line() {
    let err = parse_err("data-dir: /x\ntoken: [a, b\nserver: y\n");
    assert!(matches!(err, Error::Parse { key: None, .. }), "{err:?}");
    assert_eq!(err.line(), Some(3));
    assert!(
        err.to_string().starts_with("/etc/kagami/config.yaml:3: "),
        "{err}"
    );
    let err = parse_err("data-dir: /x\n\tnode-ip: y\n");
    assert_eq!(err.line(), Some(2));
}

#[test]
fn a_repeated_key_is_placed_on_the_repeat() {
    let err = parse_err("data-dir: /a\ntoken: t\ndata-dir: /b\n");
    assert_eq!(err.line(), Some(3));
    assert_eq!(err.key(), Some("data-dir"));
    assert!(err.to_string().contains("appears twice"), "{err}");
}

#[test]
fn a_document_that_is_not_a_mapping_is_refused() {
    let err = parse_err("\n- data-dir\n");
    assert_eq!(err.line(), Some(2));
    assert!(
        err.to_string().contains("expected keys and values"),
        "{err}"
    );
}

#[test]
fn a_key_that_is_not_text_is_refused() {
    let err = parse_err("[a]: 1\n");
    assert!(err.to_string().contains("a key must be text"), "{err}");
    let err = parse_err("6443: x\n");
    assert_eq!(err.key(), Some("6443"));
    assert_eq!(err.line(), Some(1));
}

#[test]
fn a_bare_star_is_explained() {
    let err = parse_err("node-ip: *\n");
    assert_eq!(err.line(), Some(1));
    assert!(
        err.to_string().contains("a bare * is a YAML alias"),
        "{err}"
    );
}

#[test]
fn two_documents_are_refused() {
    let err = parse_err("data-dir: /a\n---\ntoken: t\n");
    assert!(
        err.to_string().contains("more than one YAML document"),
        "{err}"
    );
}

#[test]
fn an_unmodified_k3s_config_gives_kagamis_keys_and_lists_the_rest() {
    // The K3s docs' server example plus common keys of a real K3s node.
    let text = "\
write-kubeconfig-mode: \"0644\"
tls-san:
  - \"foo.local\"
node-label:
  - \"foo=bar\"
  - \"something=amazing\"
cluster-init: true
token: \"secret\"
debug: true
disable:
  - traefik
  - servicelb
embedded-registry: true
node-ip: 10.0.0.5
node-taint+:
  - charlie=delta:NoSchedule
kubelet-arg:
  - \"max-pods=250\"
flannel-backend: none
disable-default-registry-endpoint: true
data-dir: /var/lib/rancher/k3s
cluster-cidr: 10.42.0.0/16
";
    let config = parse_ok(text);
    let taken: Vec<(&str, usize)> = config
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.line))
        .collect();
    assert_eq!(
        taken,
        vec![
            ("token", 8),
            ("embedded-registry", 13),
            ("node-ip", 14),
            ("disable-default-registry-endpoint", 20),
            ("data-dir", 21),
        ]
    );
    let ignored: Vec<(&str, usize)> = config
        .ignored
        .iter()
        .map(|i| (i.key.as_str(), i.line))
        .collect();
    assert_eq!(
        ignored,
        vec![
            ("write-kubeconfig-mode", 1),
            ("tls-san", 2),
            ("node-label", 4),
            ("cluster-init", 7),
            ("debug", 9),
            ("disable", 10),
            ("node-taint+", 15),
            ("kubelet-arg", 17),
            ("flannel-backend", 19),
            ("cluster-cidr", 22),
        ]
    );
}

#[test]
fn a_known_key_wins_over_the_k3s_list() {
    // `token` is K3s's too; a caller that has the flag gets it.
    let config = parse_ok("token: abc\n");
    assert_eq!(config.entries.len(), 1);
    assert!(config.ignored.is_empty());
    // And a caller without it sees it ignored, not refused.
    let config = parse(
        "token: abc\n",
        Path::new("c.yaml"),
        &[KnownKey::scalar("data-dir")],
    )
    .unwrap_or_else(|err| panic!("{err}"));
    assert!(config.entries.is_empty());
    assert_eq!(
        config.ignored,
        vec![Ignored {
            key: "token".into(),
            line: 1
        }]
    );
}
