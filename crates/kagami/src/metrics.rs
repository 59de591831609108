//! `GET /metrics`: the node's Prometheus metrics in the OpenMetrics text
//! format. Every value is read at scrape time from the live sources (the
//! mirror's counters, the router, the advertiser) by one collector, so
//! there is no second set of counters to keep in step with the first.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use kagami_registry::{Closed, ConnectionStats, Kind, Outcome, RequestStats, TagSource, Through};

use crate::p2p::P2p;

/// The content type of what `prometheus_client::encoding::text` writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the classic text format.
const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `peer` label of bytes from peers beyond those the mirror counts
/// one by one (a peer ID is a multihash, never a word this short).
const OTHER_PEERS: &str = "other";

/// The metrics route, to merge into the registry's application; with P2P
/// off, only the families that mean something without it.
pub fn routes(
    p2p: Option<P2p>,
    connections: ConnectionStats,
    requests: RequestStats,
) -> axum::Router {
    let mut registry = Registry::with_prefix("kagami");
    // Histograms are their own live source: registered as they are.
    registry.register_with_unit(
        "http_request_duration",
        "How long the registry API took to answer (to the response head), by route and status class.",
        Unit::Seconds,
        requests.durations(),
    );
    if let Some(p2p) = &p2p {
        registry.register_with_unit(
            "resolve_duration",
            "How long provider lookups in the DHT took, answered or not.",
            Unit::Seconds,
            p2p.mirror().stats().lookup_durations(),
        );
    }
    registry.register_collector(Box::new(Sources {
        p2p,
        connections,
        requests,
    }));
    axum::Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(registry))
}

async fn scrape(State(registry): State<Arc<Registry>>, headers: HeaderMap) -> Response {
    let mut body = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut body, &registry) {
        tracing::error!(%error, "cannot encode the metrics");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let open_metrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|accept| accept.contains("application/openmetrics-text"));
    if open_metrics {
        ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
    } else {
        let text = classic_text(&body);
        ([(header::CONTENT_TYPE, CLASSIC_CONTENT_TYPE)], text).into_response()
    }
}

/// The classic Prometheus text format (0.0.4) of an OpenMetrics text, for
/// clients that do not ask for OpenMetrics (curl, `promtool check
/// metrics`): a counter's `HELP` and `TYPE` name its `_total` samples, and
/// there are no `UNIT` or `EOF` lines. Samples are the same in both.
fn classic_text(open_metrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in open_metrics.lines() {
        if let Some(family) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_suffix(" counter"))
        {
            counters.insert(family.to_owned());
        }
    }
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let comment = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| line.strip_prefix(prefix).map(|rest| (prefix, rest)));
        match comment {
            Some((prefix, rest)) => {
                let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{suffix} {text}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Where the values come from.
#[derive(Debug)]
struct Sources {
    p2p: Option<P2p>,
    connections: ConnectionStats,
    requests: RequestStats,
}

impl Collector for Sources {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        Reading::take(self.p2p.as_ref(), &self.connections, &self.requests).encode(encoder)
    }
}

/// The values of one scrape.
#[derive(Debug)]
struct Reading {
    version: &'static str,
    connections: ConnectionReading,
    requests: RequestsReading,
    p2p: Option<P2pReading>,
}

/// What the registry API served.
#[derive(Debug, Default)]
struct RequestsReading {
    /// By registry, kind and outcome.
    counts: Vec<(Arc<str>, Kind, Outcome, u64)>,
    served_bytes: u64,
    in_flight: u64,
    /// Unix seconds of the last request served from a peer or upstream.
    last_mirrored: Option<f64>,
}

impl RequestsReading {
    fn take(stats: &RequestStats) -> RequestsReading {
        RequestsReading {
            counts: stats.requests(),
            served_bytes: stats.served_bytes(),
            in_flight: stats.transfers_in_flight(),
            last_mirrored: stats.last_mirrored().and_then(|at| {
                at.duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs_f64())
            }),
        }
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let mut requests = encoder.encode_descriptor(
            "requests",
            "Manifest and blob requests answered, by registry, kind (manifest, blob) and outcome: \
             local (this node's store or cache), peer, upstream (pulled through), miss (404).",
            None,
            MetricType::Counter,
        )?;
        for (registry, kind, outcome, count) in &self.counts {
            requests
                .encode_family(&[
                    ("registry", &**registry),
                    ("kind", kind.as_str()),
                    ("outcome", outcome.as_str()),
                ])?
                .encode_counter::<NoLabelSet, _, u64>(count, None)?;
        }
        encoder
            .encode_descriptor(
                "served",
                "Body bytes of manifests and blobs sent to clients (containerd and peers).",
                Some(&Unit::Bytes),
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&self.served_bytes, None)?;
        encoder
            .encode_descriptor(
                "transfers_in_flight",
                "Blob bodies streaming to clients now.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&self.in_flight)?;
        if let Some(at) = self.last_mirrored {
            encoder
                .encode_descriptor(
                    "last_mirror_timestamp",
                    "When a request was last served from a peer or the upstream (Unix time).",
                    Some(&Unit::Seconds),
                    MetricType::Gauge,
                )?
                .encode_gauge(&at)?;
        }
        Ok(())
    }
}

/// The registry port's connections.
#[derive(Debug, Default)]
struct ConnectionReading {
    /// By reason, in [`Closed::ALL`]'s order.
    closed: Vec<(&'static str, u64)>,
    members: u64,
    unauthenticated: u64,
    handshakes: u64,
}

impl ConnectionReading {
    fn take(stats: &ConnectionStats) -> ConnectionReading {
        let (members, unauthenticated, handshakes) = stats.open();
        ConnectionReading {
            closed: Closed::ALL
                .iter()
                .map(|reason| (reason.as_str(), stats.closed(*reason)))
                .collect(),
            members,
            unauthenticated,
            handshakes,
        }
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let mut closed = encoder.encode_descriptor(
            "connections_closed",
            "Registry connections refused or closed by a budget, by reason: handshakes_full and \
             unauthenticated_full (refused at a cap), handshake_failed, handshake_timeout, idle \
             (a member's connection that moved no byte), lifetime (a join connection's end).",
            None,
            MetricType::Counter,
        )?;
        for (reason, count) in &self.closed {
            closed
                .encode_family(&[("reason", *reason)])?
                .encode_counter::<NoLabelSet, _, u64>(count, None)?;
        }
        let mut open = encoder.encode_descriptor(
            "connections_open",
            "Registry connections open now, by state: member, unauthenticated (joining), handshake.",
            None,
            MetricType::Gauge,
        )?;
        for (state, count) in [
            ("member", self.members),
            ("unauthenticated", self.unauthenticated),
            ("handshake", self.handshakes),
        ] {
            open.encode_family(&[("state", state)])?
                .encode_gauge(&count)?;
        }
        Ok(())
    }
}

/// The values that exist only with P2P on.
#[derive(Debug, Default)]
struct P2pReading {
    routing_peers: u64,
    /// Digests and tags.
    advertised_keys: (u64, u64),
    lookups: u64,
    lookup_failures: u64,
    verify_failures: u64,
    resumes: u64,
    hedges: u64,
    tls_failures: u64,
    /// By peer ID, sorted so that scrapes list peers in one order.
    bytes_relayed: BTreeMap<String, u64>,
    bytes_unattributed: u64,
    /// Pull-through, when on.
    through: Option<ThroughReading>,
}

/// Pull-through's figures.
#[derive(Debug, Default)]
struct ThroughReading {
    upstream_bytes: u64,
    /// By outcome, in `Through::ALL`'s order.
    outcomes: Vec<(&'static str, u64)>,
    /// By source, in `TagSource::ALL`'s order.
    tags: Vec<(&'static str, u64)>,
    tag_disagreements: u64,
    cache_bytes: u64,
    cache_entries: u64,
    cache_hits: u64,
}

impl ThroughReading {
    fn take(p2p: &P2p) -> Option<ThroughReading> {
        let cache = p2p.cache()?;
        let stats = p2p.mirror().stats();
        let usage = cache.usage();
        Some(ThroughReading {
            upstream_bytes: stats.upstream_bytes(),
            outcomes: Through::ALL
                .iter()
                .map(|how| (how.as_str(), stats.through(*how)))
                .collect(),
            tags: TagSource::ALL
                .iter()
                .map(|source| (source.as_str(), stats.tags(*source)))
                .collect(),
            tag_disagreements: stats.tag_disagreements(),
            cache_bytes: usage.bytes,
            cache_entries: (usage.kept + usage.arriving) as u64,
            cache_hits: p2p.layered().map_or(0, kagami_store::Layered::cache_hits),
        })
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        encoder
            .encode_descriptor(
                "upstream",
                "Bytes this node received from upstream registries (pull-through).",
                Some(&Unit::Bytes),
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&self.upstream_bytes, None)?;
        let mut outcomes = encoder.encode_descriptor(
            "pull_through",
            "Pull-through requests by outcome: fetched (this node, the origin, fetched or found it \
             in its cache), from_origin (another node served it), not_found (the upstream has no \
             such content or tag), unavailable (no origin could get it).",
            None,
            MetricType::Counter,
        )?;
        for (outcome, count) in &self.outcomes {
            outcomes
                .encode_family(&[("outcome", *outcome)])?
                .encode_counter::<NoLabelSet, _, u64>(count, None)?;
        }
        let mut tags = encoder.encode_descriptor(
            "tag_resolutions",
            "Tags resolved for clients, by source: upstream (by the tag's origin), peers (their tag \
             records, the upstream being unreachable).",
            None,
            MetricType::Counter,
        )?;
        for (source, count) in &self.tags {
            tags.encode_family(&[("source", *source)])?
                .encode_counter::<NoLabelSet, _, u64>(count, None)?;
        }
        encoder
            .encode_descriptor(
                "tag_disagreements",
                "Peers' tag records seen to name another manifest than the upstream does (stale, or \
                 forged); each tag and digest counted once.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&self.tag_disagreements, None)?;
        encoder
            .encode_descriptor(
                "cache_hits",
                "Reads answered by the pull-through cache.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&self.cache_hits, None)?;
        encoder
            .encode_descriptor(
                "cache",
                "Bytes the pull-through cache holds or is receiving.",
                Some(&Unit::Bytes),
                MetricType::Gauge,
            )?
            .encode_gauge(&self.cache_bytes)?;
        encoder
            .encode_descriptor(
                "cache_entries",
                "Entries the pull-through cache holds or is receiving.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&self.cache_entries)?;
        Ok(())
    }
}

impl Reading {
    fn take(p2p: Option<&P2p>, connections: &ConnectionStats, requests: &RequestStats) -> Reading {
        Reading {
            version: env!("CARGO_PKG_VERSION"),
            connections: ConnectionReading::take(connections),
            requests: RequestsReading::take(requests),
            p2p: p2p.map(|p2p| {
                let stats = p2p.mirror().stats();
                P2pReading {
                    routing_peers: p2p.router().routing_peers() as u64,
                    advertised_keys: p2p.advertised_keys_by_kind(),
                    lookups: stats.lookups(),
                    lookup_failures: stats.lookup_failures(),
                    verify_failures: stats.verify_failures(),
                    resumes: stats.resumes(),
                    hedges: stats.hedges(),
                    tls_failures: stats.tls_failures(),
                    bytes_relayed: stats.bytes_relayed().into_iter().collect(),
                    bytes_unattributed: stats.bytes_relayed_unattributed(),
                    through: ThroughReading::take(p2p),
                }
            }),
        }
    }

    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        encoder
            .encode_descriptor(
                "build_info",
                "Always 1; the version label says which kagami this node runs.",
                None,
                MetricType::Gauge,
            )?
            .encode_family(&[("version", self.version)])?
            .encode_gauge(&1u64)?;
        self.connections.encode(&mut encoder)?;
        self.requests.encode(&mut encoder)?;
        let Some(p2p) = &self.p2p else {
            return Ok(());
        };
        let counters = [
            (
                "mirror_lookups",
                "Provider lookups the mirror sent to the P2P router (cached and shared lookups not counted).",
                p2p.lookups,
            ),
            (
                "mirror_lookup_failures",
                "Provider lookups that named no peer: the router failed, timed out or knew none.",
                p2p.lookup_failures,
            ),
            (
                "mirror_verify_failures",
                "Responses from peers whose bytes did not match their digest.",
                p2p.verify_failures,
            ),
            (
                "mirror_resumes",
                "Blob transfers continued from another peer after a break.",
                p2p.resumes,
            ),
            (
                "mirror_hedges",
                "Extra requests raced against a peer slow to answer.",
                p2p.hedges,
            ),
            (
                "mirror_tls_failures",
                "Peer connections refused because the peer's certificate was not the cluster's or did not bind the peer ID the DHT named.",
                p2p.tls_failures,
            ),
        ];
        for (name, help, value) in counters {
            encoder
                .encode_descriptor(name, help, None, MetricType::Counter)?
                .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        }
        let mut relayed = encoder.encode_descriptor(
            "mirror_peer",
            "Bytes of manifests and blobs received from each peer and passed on to clients; \
             the peer named other sums the peers beyond the first 256.",
            Some(&Unit::Bytes),
            MetricType::Counter,
        )?;
        let other = (p2p.bytes_unattributed > 0).then_some((OTHER_PEERS, &p2p.bytes_unattributed));
        let named = p2p.bytes_relayed.iter().map(|(id, n)| (id.as_str(), n));
        for (peer, bytes) in named.chain(other) {
            relayed
                .encode_family(&[("peer", peer)])?
                .encode_counter::<NoLabelSet, _, u64>(bytes, None)?;
        }
        encoder
            .encode_descriptor(
                "p2p_routing_peers",
                "Peers in this node's Kademlia routing table.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&p2p.routing_peers)?;
        let mut advertised = encoder.encode_descriptor(
            "p2p_advertised_keys",
            "Keys this node currently provides to the P2P network, by kind (digest, tag).",
            None,
            MetricType::Gauge,
        )?;
        let (digests, tags) = p2p.advertised_keys;
        for (kind, count) in [("digest", digests), ("tag", tags)] {
            advertised
                .encode_family(&[("kind", kind)])?
                .encode_gauge(&count)?;
        }
        if let Some(through) = &p2p.through {
            through.encode(&mut encoder)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A collector of a fixed reading.
    #[derive(Debug)]
    struct Fixed(fn() -> Reading);

    impl Collector for Fixed {
        fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
            (self.0)().encode(encoder)
        }
    }

    fn encoded(reading: fn() -> Reading) -> String {
        let mut registry = Registry::with_prefix("kagami");
        registry.register_collector(Box::new(Fixed(reading)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn without_p2p_only_build_info_and_connections_are_encoded() {
        let text = encoded(|| Reading {
            version: "1.2.3",
            connections: ConnectionReading {
                closed: vec![("handshakes_full", 3), ("idle", 4)],
                members: 5,
                unauthenticated: 6,
                handshakes: 7,
            },
            requests: RequestsReading {
                counts: vec![
                    ("docker.io".into(), Kind::Blob, Outcome::Local, 8),
                    ("quay.io".into(), Kind::Manifest, Outcome::Miss, 9),
                ],
                served_bytes: 10,
                in_flight: 2,
                last_mirrored: None,
            },
            p2p: None,
        });
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "kagami_build_info{version=\"1.2.3\"} 1",
                "kagami_connections_closed_total{reason=\"handshakes_full\"} 3",
                "kagami_connections_closed_total{reason=\"idle\"} 4",
                "kagami_connections_open{state=\"member\"} 5",
                "kagami_connections_open{state=\"unauthenticated\"} 6",
                "kagami_connections_open{state=\"handshake\"} 7",
                "kagami_requests_total{registry=\"docker.io\",kind=\"blob\",outcome=\"local\"} 8",
                "kagami_requests_total{registry=\"quay.io\",kind=\"manifest\",outcome=\"miss\"} 9",
                "kagami_served_bytes_total 10",
                "kagami_transfers_in_flight 2",
            ]
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn p2p_values_are_encoded_as_counters_and_gauges_with_peers_in_order() {
        let text = encoded(|| Reading {
            version: "1.2.3",
            connections: ConnectionReading::default(),
            requests: RequestsReading::default(),
            p2p: Some(P2pReading {
                routing_peers: 2,
                advertised_keys: (5, 2),
                lookups: 5,
                lookup_failures: 1,
                verify_failures: 3,
                resumes: 4,
                hedges: 6,
                tls_failures: 8,
                bytes_relayed: [("12D3KooWB".to_owned(), 20), ("12D3KooWA".to_owned(), 10)]
                    .into_iter()
                    .collect(),
                bytes_unattributed: 99,
                through: Some(ThroughReading {
                    upstream_bytes: 11,
                    outcomes: vec![("fetched", 1), ("from_origin", 2)],
                    tags: vec![("upstream", 3)],
                    tag_disagreements: 12,
                    cache_bytes: 5,
                    cache_entries: 6,
                    cache_hits: 4,
                }),
            }),
        });
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "kagami_build_info{version=\"1.2.3\"} 1",
                "kagami_connections_open{state=\"member\"} 0",
                "kagami_connections_open{state=\"unauthenticated\"} 0",
                "kagami_connections_open{state=\"handshake\"} 0",
                "kagami_served_bytes_total 0",
                "kagami_transfers_in_flight 0",
                "kagami_mirror_lookups_total 5",
                "kagami_mirror_lookup_failures_total 1",
                "kagami_mirror_verify_failures_total 3",
                "kagami_mirror_resumes_total 4",
                "kagami_mirror_hedges_total 6",
                "kagami_mirror_tls_failures_total 8",
                "kagami_mirror_peer_bytes_total{peer=\"12D3KooWA\"} 10",
                "kagami_mirror_peer_bytes_total{peer=\"12D3KooWB\"} 20",
                "kagami_mirror_peer_bytes_total{peer=\"other\"} 99",
                "kagami_p2p_routing_peers 2",
                "kagami_p2p_advertised_keys{kind=\"digest\"} 5",
                "kagami_p2p_advertised_keys{kind=\"tag\"} 2",
                "kagami_upstream_bytes_total 11",
                "kagami_pull_through_total{outcome=\"fetched\"} 1",
                "kagami_pull_through_total{outcome=\"from_origin\"} 2",
                "kagami_tag_resolutions_total{source=\"upstream\"} 3",
                "kagami_tag_disagreements_total 12",
                "kagami_cache_hits_total 4",
                "kagami_cache_bytes 5",
                "kagami_cache_entries 6",
            ]
        );
        for family in [
            "# TYPE kagami_mirror_lookups counter",
            "# TYPE kagami_mirror_peer_bytes counter",
            "# UNIT kagami_mirror_peer_bytes bytes",
            "# TYPE kagami_p2p_routing_peers gauge",
        ] {
            assert!(text.lines().any(|l| l == family), "{family} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn the_classic_format_names_counters_by_their_samples() {
        let open = "# HELP kagami_served Bytes sent.\n# TYPE kagami_served counter\n\
                    # UNIT kagami_served bytes\nkagami_served_total 3\n\
                    # HELP kagami_in_flight Now.\n# TYPE kagami_in_flight gauge\n\
                    kagami_in_flight 1\n# EOF\n";
        assert_eq!(
            classic_text(open),
            "# HELP kagami_served_total Bytes sent.\n# TYPE kagami_served_total counter\n\
             kagami_served_total 3\n# HELP kagami_in_flight Now.\n\
             # TYPE kagami_in_flight gauge\nkagami_in_flight 1\n"
        );
    }

    #[test]
    fn no_other_peers_label_until_bytes_go_unattributed() {
        let text = encoded(|| Reading {
            version: "1.2.3",
            connections: ConnectionReading::default(),
            requests: RequestsReading::default(),
            p2p: Some(P2pReading::default()),
        });
        assert!(text.contains("# TYPE kagami_mirror_peer_bytes counter"));
        assert!(!text.contains("kagami_mirror_peer_bytes_total"), "{text}");
    }
}
