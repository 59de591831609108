//! `deploy/grafana/` and `deploy/prometheus/`: the dashboard and the alert
//! rules query only what a node exports and what they define.
//!
//! - The alert rules pass `promtool check rules` (linted) and their unit
//!   tests (`promtool test rules`), and every alert has a severity, a
//!   summary, a description and a unit test that makes it fire and one
//!   that keeps it silent.
//! - The dashboard names only variables it defines (or Grafana's own: the
//!   bug of Spegel's dashboard, whose queries name one it never defines),
//!   every panel queries the `${datasource}` variable, and every query is
//!   valid PromQL (checked by promtool, variables filled in).
//! - Both name only metric families that a real node exports: a node is
//!   started and scraped, and the names in the files are checked against
//!   the `# TYPE` lines of its OpenMetrics text.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, LazyLock, Mutex, mpsc};
use std::time::Duration;

use regex::Regex;
use serde_json::{Value, json};

use crate::{run_ok, workspace};

const DASHBOARD: &str = "deploy/grafana/kagami-dashboard.json";
const ALERTS: &str = "deploy/prometheus/kagami-alerts.yaml";
const ALERT_TESTS: &str = "deploy/prometheus/kagami-alerts.test.yaml";

/// The Debian package that provides promtool.
const PROMTOOL_PACKAGE: &str = "prometheus";

/// The variable the dashboard's panels take their data source from.
const DATASOURCE: &str = "${datasource}";

/// Variables Grafana defines itself, usable in any dashboard's queries.
const GRAFANA_BUILT_INS: &[&str] = &[
    "__interval",
    "__interval_ms",
    "__rate_interval",
    "__rate_interval_ms",
    "__range",
    "__range_s",
    "__range_ms",
    "__from",
    "__to",
    "__dashboard",
    "__org",
    "__user",
    "__timezone",
];

/// Families a node exports only once something has happened, so a fresh
/// node's scrape lacks them: `kagami_last_mirror_timestamp_seconds` appears
/// after the node first serves a request from a peer or the upstream
/// (`crates/kagami/src/metrics.rs`), which a single node without network
/// cannot do. It is a gauge: its series has the family's name.
const EXPORTED_LATER: &[&str] = &["kagami_last_mirror_timestamp_seconds"];

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON")
}

fn promtool() -> Command {
    Command::new("promtool")
}

// ------------------------------------------------------------------ checker

/// Every panel of `dashboard`, rows and the panels inside collapsed rows
/// included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The variables of `templating.list`.
fn variables(dashboard: &Value) -> Vec<&Value> {
    dashboard["templating"]["list"]
        .as_array()
        .map(|list| list.iter().collect())
        .unwrap_or_default()
}

/// A variable's query: a string, or an object holding it (the query
/// editor's form).
fn variable_query(variable: &Value) -> Option<&str> {
    match &variable["query"] {
        Value::String(query) => Some(query),
        Value::Object(query) => query.get("query").and_then(Value::as_str),
        _ => None,
    }
}

/// The queries of `dashboard`: every panel target's `expr`, and every
/// variable's `query` and `definition`.
fn queries(dashboard: &Value) -> Vec<String> {
    let targets = panels(dashboard)
        .into_iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .filter_map(|target| target["expr"].as_str());
    let variables = variables(dashboard).into_iter().flat_map(|variable| {
        variable_query(variable)
            .into_iter()
            .chain(variable["definition"].as_str())
    });
    targets.chain(variables).map(str::to_owned).collect()
}

/// The PromQL of `dashboard`: target expressions, and the series selector
/// of each `label_values(SELECTOR, LABEL)` variable.
fn promql(dashboard: &Value) -> Vec<String> {
    let label_values = Regex::new(r"^\s*label_values\((.+),\s*\w+\s*\)\s*$").unwrap();
    let targets = panels(dashboard)
        .into_iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .filter_map(|target| target["expr"].as_str())
        .map(str::to_owned);
    let variables = variables(dashboard)
        .into_iter()
        .filter(|variable| variable["type"] == "query")
        .filter_map(variable_query)
        .filter_map(|query| label_values.captures(query).map(|c| c[1].to_owned()));
    targets.chain(variables).collect()
}

/// Grafana's variable syntaxes: `$var`, `${var}`, `${var:format}`,
/// `${var.field}`, `[[var]]`, `[[var:format]]`.
static VARIABLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\$\{(\w+)(?:\.[^:}]+)?(?::[^}]+)?\}|\[\[(\w+?)(?::\w+)?\]\]|\$(\w+)").unwrap()
});

/// A kagami metric name, or what looks like one.
static METRIC: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\bkagami_[A-Za-z0-9_:]*").unwrap());

/// The variables `text` names. `$1` and the like are regex references
/// (`label_replace`), which Grafana leaves alone.
fn variable_references(text: &str) -> Vec<String> {
    VARIABLE
        .captures_iter(text)
        .filter_map(|c| c.get(1).or(c.get(2)).or(c.get(3)))
        .map(|name| name.as_str().to_owned())
        .filter(|name| !name.starts_with(|c: char| c.is_ascii_digit()))
        .collect()
}

/// Every string in `value`, but for variables' `current` selections
/// (Grafana's own `$__all` lives there).
fn strings(value: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    fn walk<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::String(s) => out.push(s),
            Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            Value::Object(fields) => fields
                .iter()
                .filter(|(key, _)| *key != "current")
                .for_each(|(_, item)| walk(item, out)),
            _ => {}
        }
    }
    walk(value, &mut out);
    out
}

/// The variables `dashboard` names anywhere (queries, titles, data
/// sources) that neither it nor Grafana defines.
fn undefined_variables(dashboard: &Value) -> BTreeSet<String> {
    let defined: BTreeSet<&str> = variables(dashboard)
        .into_iter()
        .filter_map(|variable| variable["name"].as_str())
        .chain(GRAFANA_BUILT_INS.iter().copied())
        .collect();
    strings(dashboard)
        .into_iter()
        .flat_map(variable_references)
        .filter(|name| !defined.contains(name.as_str()))
        .collect()
}

/// What is wrong with the panels and variables of `dashboard`, beyond
/// undefined variables: a panel without the `${datasource}` data source or
/// without a query, a variable whose data source is another one.
fn panel_problems(dashboard: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let datasource_variable = variables(dashboard).into_iter().any(|variable| {
        variable["name"] == "datasource"
            && variable["type"] == "datasource"
            && variable["query"] == "prometheus"
    });
    if !datasource_variable {
        problems.push("no variable `datasource` of type datasource, query prometheus".to_owned());
    }
    for variable in variables(dashboard) {
        if variable["type"] == "query" && variable["datasource"]["uid"] != DATASOURCE {
            problems.push(format!(
                "variable {} does not query {DATASOURCE}",
                variable["name"]
            ));
        }
    }
    let mut ids = BTreeSet::new();
    for panel in panels(dashboard) {
        let name = format!("panel {} ({})", panel["id"], panel["title"]);
        if !ids.insert(panel["id"].to_string()) {
            problems.push(format!("{name}: its id is not unique"));
        }
        if panel["type"] == "row" {
            if panel["targets"].as_array().is_some_and(|t| !t.is_empty()) {
                problems.push(format!("{name}: a row with queries"));
            }
            continue;
        }
        if panel["datasource"]["uid"] != DATASOURCE {
            problems.push(format!(
                "{name}: its data source is {}, not {DATASOURCE}",
                panel["datasource"]
            ));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{name}: no query"));
        }
        for target in &targets {
            if target["expr"]
                .as_str()
                .is_none_or(|expr| expr.trim().is_empty())
            {
                problems.push(format!("{name}: target {} has no expr", target["refId"]));
            }
            // A target without its own data source uses the panel's.
            if !target["datasource"].is_null() && target["datasource"]["uid"] != DATASOURCE {
                problems.push(format!(
                    "{name}: target {} queries {}, not {DATASOURCE}",
                    target["refId"], target["datasource"]
                ));
            }
        }
    }
    problems
}

/// The metric names (`kagami_…`) `texts` name that are not in `known`.
fn unknown_metrics<'a>(
    texts: impl IntoIterator<Item = &'a str>,
    known: &BTreeSet<String>,
) -> BTreeSet<String> {
    texts
        .into_iter()
        .flat_map(|text| METRIC.find_iter(text).map(|m| m.as_str().to_owned()))
        .filter(|name| !known.contains(name))
        .collect()
}

/// The families of an OpenMetrics text, by name, with their type.
fn families(open_metrics: &str) -> BTreeMap<String, String> {
    open_metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
        .collect()
}

/// The series names a query may use for `families`: the family's name, and
/// the suffixed names its type gives its samples.
fn series_names(families: &BTreeMap<String, String>) -> BTreeSet<String> {
    families
        .iter()
        .flat_map(|(name, kind)| {
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total"],
                "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["_sum", "_count"],
                "info" => &["_info"],
                _ => &[],
            };
            std::iter::once(name.clone()).chain(suffixes.iter().map(move |s| format!("{name}{s}")))
        })
        .collect()
}

/// `expr` with the dashboard's variables filled in as Grafana would, for
/// promtool to parse.
fn interpolated(expr: &str) -> String {
    VARIABLE
        .replace_all(expr, |c: &regex::Captures| {
            let name = c
                .get(1)
                .or(c.get(2))
                .or(c.get(3))
                .map_or("", |m| m.as_str());
            match name {
                "__interval" | "__rate_interval" => "1m".to_owned(),
                "__range" => "6h".to_owned(),
                name if name.starts_with(|c: char| c.is_ascii_digit()) => c[0].to_owned(),
                // Every other variable of the dashboard is a label matcher's
                // regex, its "All" value `.*`.
                _ => ".*".to_owned(),
            }
        })
        .into_owned()
}

// ------------------------------------------------------------------ a node

/// A `kagami server` with P2P and pull-through on, on ephemeral loopback
/// ports, in temporary directories; killed when dropped.
struct Node {
    child: Child,
    metrics: SocketAddr,
    registry: SocketAddr,
    log: Arc<Mutex<String>>,
    _dirs: [tempfile::TempDir; 2],
}

impl Node {
    fn start() -> Node {
        let data = tempfile::tempdir().unwrap();
        let containerd_config = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kagami"))
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .arg("server")
            .arg("--data-dir")
            .arg(data.path())
            .arg("--containerd-config-path")
            .arg(containerd_config.path())
            .args([
                "--bind-address",
                "127.0.0.1",
                "--https-listen-port",
                "0",
                "--metrics-address",
                "127.0.0.1:0",
                "--p2p-port",
                "0",
                "--store",
                "layout",
                "--embedded-registry",
                "--mirror",
                "docker.io",
                "--insecure-http",
                "--log-level",
                "info",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the kagami binary under test starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        // Reads stderr to its end, so the node never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let field = |message: &str, key: &str| {
                    line.contains(message)
                        .then(|| {
                            line.split_whitespace()
                                .find_map(|word| word.strip_prefix(key))
                                .and_then(|addr| addr.parse::<SocketAddr>().ok())
                        })
                        .flatten()
                };
                if let Some(addr) = field("metrics and status page listening", "listen=") {
                    let _ = tx.send(("metrics", addr));
                }
                if let Some(addr) = field("registry API listening", "addr=") {
                    let _ = tx.send(("registry", addr));
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut addrs = BTreeMap::new();
        while addrs.len() < 2 {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok((what, addr)) => {
                    addrs.insert(what, addr);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "the node did not log both addresses:\n{}",
                        log.lock().unwrap()
                    );
                }
            }
        }
        Node {
            child,
            metrics: addrs["metrics"],
            registry: addrs["registry"],
            log,
            _dirs: [data, containerd_config],
        }
    }

    /// `GET path` in HTTP/1.0 (so the body is never chunked): the status
    /// and the response's head and body.
    fn get(&self, addr: SocketAddr, path: &str, accept: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.log.lock().unwrap()));
        let (head, body) = response
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP response head: {response}"));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head}"));
        (status, head.to_owned(), body.to_owned())
    }

    /// The families the node exports, from its OpenMetrics text.
    fn families(&self) -> BTreeMap<String, String> {
        let (status, head, body) = self.get(
            self.metrics,
            "/metrics",
            "application/openmetrics-text; version=1.0.0",
        );
        assert_eq!(status, 200, "GET /metrics: {head}\n{body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/openmetrics-text"),
            "not OpenMetrics: {head}"
        );
        assert!(
            body.ends_with("# EOF\n"),
            "a whole OpenMetrics text: {body}"
        );
        families(&body)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ tests

#[test]
fn dashboard_and_alerts_name_only_families_a_node_exports() {
    let node = Node::start();
    // The request-duration histogram has no series, and so no family, until
    // the registry API has answered a request.
    let (status, head, _) = node.get(node.registry, "/v2/", "application/json");
    assert_eq!(status, 200, "GET /v2/: {head}");
    let families = node.families();
    for family in [
        "kagami_build_info",
        "kagami_http_request_duration_seconds",
        "kagami_resolve_duration_seconds",
        "kagami_p2p_routing_peers",
        "kagami_pull_through",
    ] {
        assert!(
            families.contains_key(family),
            "the node (P2P and pull-through on) exports {family}: {families:?}"
        );
    }
    let mut known = series_names(&families);
    known.extend(EXPORTED_LATER.iter().map(|name| (*name).to_owned()));

    let dashboard = dashboard();
    let queries = queries(&dashboard);
    let unknown = unknown_metrics(queries.iter().map(String::as_str), &known);
    assert!(
        unknown.is_empty(),
        "{DASHBOARD} queries metrics no node exports: {unknown:?}\nexported: {known:?}"
    );
    // Also the rules, and the series their unit tests feed them: a test
    // of a misspelt metric would prove nothing.
    for file in [ALERTS, ALERT_TESTS] {
        let text = read(file);
        let unknown = unknown_metrics([text.as_str()], &known);
        assert!(
            unknown.is_empty(),
            "{file} names metrics no node exports: {unknown:?}\nexported: {known:?}"
        );
    }
}

#[test]
fn dashboard_defines_every_variable_it_names_and_queries_the_datasource_variable() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "kagami");
    assert!(
        dashboard["schemaVersion"]
            .as_u64()
            .is_some_and(|v| (36..=41).contains(&v)),
        "schemaVersion {}",
        dashboard["schemaVersion"]
    );
    let undefined = undefined_variables(&dashboard);
    assert!(
        undefined.is_empty(),
        "{DASHBOARD} names variables it does not define: {undefined:?}"
    );
    let problems = panel_problems(&dashboard);
    assert!(problems.is_empty(), "{DASHBOARD}:\n{}", problems.join("\n"));

    let names: BTreeSet<&str> = variables(&dashboard)
        .into_iter()
        .filter_map(|variable| variable["name"].as_str())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["datasource", "instance", "registry"])
    );
    let instance = variables(&dashboard)
        .into_iter()
        .find(|variable| variable["name"] == "instance")
        .unwrap();
    assert_eq!(
        variable_query(instance),
        Some("label_values(kagami_build_info, instance)")
    );
    assert_eq!(instance["multi"], true);
    assert_eq!(instance["includeAll"], true);
    // Every panel but the rows shows something, and a collapsed row's
    // panels are found too.
    let queried = panels(&dashboard)
        .into_iter()
        .filter(|panel| panel["type"] != "row")
        .count();
    assert!(queried >= 20, "only {queried} panels");
    assert!(
        panels(&dashboard)
            .iter()
            .any(|panel| panel["type"] == "row" && panel["collapsed"] == true),
        "a collapsed row, whose panels the checks must reach"
    );
}

#[test]
fn dashboard_queries_are_valid_promql() {
    let dashboard = dashboard();
    let exprs = promql(&dashboard);
    assert!(exprs.len() >= 30, "{} queries", exprs.len());
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, expr)| json!({ "record": format!("dashboard:query{i}"), "expr": interpolated(expr) }))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yaml");
    // JSON is YAML.
    std::fs::write(
        &file,
        json!({ "groups": [{ "name": "dashboard", "rules": rules }] }).to_string(),
    )
    .unwrap();
    let output = run_ok(
        promtool().args(["check", "rules"]).arg(&file),
        PROMTOOL_PACKAGE,
    );
    assert!(
        output.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{output}"
    );
}

#[test]
fn dashboard_checker_catches_undefined_variables_unknown_metrics_and_bad_panels() {
    let datasource = json!({ "type": "prometheus", "uid": "${datasource}" });
    let good_panel = json!({
        "id": 1,
        "type": "timeseries",
        "title": "good",
        "datasource": datasource,
        "targets": [{
            "refId": "A",
            "datasource": datasource,
            "expr": "sum(rate(kagami_served_bytes_total{instance=~\"$instance\"}[$__rate_interval]))"
                .to_owned()
                + " + label_replace(kagami_build_info, \"v\", \"$1\", \"version\", \"(.*)\")",
        }],
    });
    let templating = json!({ "list": [
        { "name": "datasource", "type": "datasource", "query": "prometheus",
          "current": { "value": "$__all" } },
        { "name": "instance", "type": "query", "datasource": datasource,
          "query": { "query": "label_values(kagami_build_info, instance)" } },
    ]});
    let good = json!({ "templating": templating, "panels": [good_panel] });
    let known = series_names(&families(
        "# TYPE kagami_served_bytes counter\n# TYPE kagami_build_info gauge\n\
         # TYPE kagami_resolve_duration_seconds histogram\n# EOF\n",
    ));
    assert_eq!(
        known,
        [
            "kagami_build_info",
            "kagami_resolve_duration_seconds",
            "kagami_resolve_duration_seconds_bucket",
            "kagami_resolve_duration_seconds_count",
            "kagami_resolve_duration_seconds_sum",
            "kagami_served_bytes",
            "kagami_served_bytes_total",
        ]
        .map(str::to_owned)
        .into()
    );
    assert_eq!(undefined_variables(&good), BTreeSet::new());
    assert_eq!(panel_problems(&good), Vec::<String>::new());
    assert_eq!(
        unknown_metrics(queries(&good).iter().map(String::as_str), &known),
        BTreeSet::new()
    );

    // The bad ones hide in a collapsed row, and in every variable syntax.
    let bad = json!({
        "templating": templating,
        "panels": [good_panel, {
            "id": 2,
            "type": "row",
            "collapsed": true,
            "panels": [{
                "id": 3,
                "type": "timeseries",
                "title": "bad",
                "datasource": datasource,
                "targets": [{
                    "refId": "A",
                    "expr": "rate(kagami_nonexistent_total{node=~\"$undefined\"}[${__rate_interval}])\
                             / kagami_resolve_duration_seconds_total{a=\"${other:regex}\", b=\"[[third]]\"}",
                }],
            }, {
                "id": 4,
                "type": "stat",
                "title": "no data source, no query",
                "targets": [],
            }, {
                "id": 5,
                "type": "stat",
                "title": "another data source",
                "datasource": { "type": "prometheus", "uid": "P1809F7CD0C75ACF3" },
                "targets": [{ "refId": "A", "expr": "kagami_build_info" }],
            }],
        }],
    });
    assert_eq!(
        undefined_variables(&bad),
        ["other", "third", "undefined"].map(str::to_owned).into()
    );
    assert_eq!(
        unknown_metrics(queries(&bad).iter().map(String::as_str), &known),
        [
            "kagami_nonexistent_total",
            "kagami_resolve_duration_seconds_total"
        ]
        .map(str::to_owned)
        .into()
    );
    let problems = panel_problems(&bad).join("\n");
    for expected in [
        "panel 4 (\"no data source, no query\"): its data source is null",
        "panel 4 (\"no data source, no query\"): no query",
        "panel 5 (\"another data source\"): its data source is",
    ] {
        assert!(problems.contains(expected), "{expected} in\n{problems}");
    }
    assert_eq!(problems.lines().count(), 3, "{problems}");
}

#[test]
fn alert_rules_pass_promtool_check_with_every_lint() {
    let output = run_ok(
        promtool()
            .args(["check", "rules", "--lint=all", "--lint-fatal"])
            .arg(workspace().join(ALERTS)),
        PROMTOOL_PACKAGE,
    );
    assert!(output.contains("SUCCESS"), "{output}");
}

#[test]
fn alert_rules_unit_tests_pass() {
    // promtool finds `rule_files` beside the test file.
    let output = run_ok(
        promtool()
            .args(["test", "rules"])
            .arg(workspace().join(ALERT_TESTS)),
        PROMTOOL_PACKAGE,
    );
    assert!(output.contains("SUCCESS"), "{output}");
}

/// The YAML documents of `path`, parsed with PyYAML by
/// `deploy/check-kubernetes --json`.
fn yaml(path: &str) -> Value {
    let file: PathBuf = workspace().join(path);
    let json = run_ok(
        Command::new(workspace().join("deploy/check-kubernetes"))
            .arg("--json")
            .arg(&file),
        "python3 and python3-venv",
    );
    let mut parsed: serde_json::Map<String, Value> =
        serde_json::from_str(&json).expect("check-kubernetes --json prints JSON");
    let docs = parsed
        .remove(file.to_str().unwrap())
        .expect("the file's documents");
    let [doc] = <[Value; 1]>::try_from(docs.as_array().cloned().unwrap())
        .unwrap_or_else(|docs| panic!("one document in {path}: {docs:?}"));
    doc
}

#[test]
fn every_alert_explains_itself_and_is_tested_firing_and_silent() {
    let rules = yaml(ALERTS);
    let alerts: Vec<&Value> = rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().expect("rules"))
        .collect();
    assert!(alerts.len() >= 6, "{} rules", alerts.len());
    let mut names = BTreeSet::new();
    for alert in &alerts {
        let name = alert["alert"]
            .as_str()
            .unwrap_or_else(|| panic!("not an alert: {alert}"));
        assert!(name.starts_with("Kagami"), "{name}: named Kagami…");
        assert!(names.insert(name), "{name} twice");
        assert!(
            alert["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
            "{name}: expr"
        );
        assert!(alert["for"].is_string(), "{name}: `for` says how long");
        let severity = alert["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        let summary = alert["annotations"]["summary"].as_str().unwrap_or_default();
        assert!(!summary.trim().is_empty(), "{name}: summary");
        // A description says what happened, what it costs and what to do.
        let description = alert["annotations"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(
            description.split_whitespace().count() >= 30,
            "{name}: a description that explains: {description:?}"
        );
    }

    let tests = yaml(ALERT_TESTS);
    assert_eq!(tests["rule_files"], json!(["kagami-alerts.yaml"]));
    let mut firing = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for case in tests["tests"].as_array().expect("tests") {
        for check in case["alert_rule_test"].as_array().into_iter().flatten() {
            let name = check["alertname"].as_str().expect("alertname").to_owned();
            let expected = check["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected == 0 {
                silent.insert(name);
            } else {
                firing.insert(name);
            }
        }
    }
    let names: BTreeSet<String> = names.into_iter().map(str::to_owned).collect();
    assert_eq!(firing, names, "every alert has a test that makes it fire");
    assert_eq!(silent, names, "every alert has a test that keeps it silent");
}

/// The files these tests read exist where deploy/README.md says.
#[test]
fn files_are_where_the_readme_says() {
    let readme = read("deploy/README.md");
    for path in [DASHBOARD, ALERTS, ALERT_TESTS] {
        assert!(workspace().join(path).is_file(), "{path}");
        assert!(readme.contains(path), "deploy/README.md names {path}");
    }
}
