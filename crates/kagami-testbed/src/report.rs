//! What a scenario measured, as a table for people and JSON for tools.

use serde::Serialize;

/// One host's part in a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    /// `host-0`, …
    pub host: String,
    /// Wall time of its `ctr images pull`, seconds; `None` when it did not
    /// pull in this scenario (or was killed).
    pub pull_seconds: Option<f64>,
    /// Bytes its kagami received from peers during the scenario.
    pub bytes_from_peers: u64,
}

/// A scenario's measurements.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `rolling`, `cold`, …
    pub scenario: String,
    /// Hosts with containerd and kagami.
    pub hosts: usize,
    /// Bytes of the image's blobs.
    pub image_bytes: u64,
    /// Layers of the image.
    pub layers: usize,
    /// Bytes the upstream host sent on its link during the scenario.
    pub upstream_bytes: u64,
    /// Each host's figures.
    pub results: Vec<HostResult>,
    /// Anything worth knowing about the run (what was killed, cut…).
    pub notes: Vec<String>,
}

impl Report {
    /// Upstream bytes as a multiple of the image.
    pub fn upstream_multiple(&self) -> f64 {
        self.upstream_bytes as f64 / self.image_bytes.max(1) as f64
    }

    /// The pull times, sorted.
    fn times(&self) -> Vec<f64> {
        let mut times: Vec<f64> = self.results.iter().filter_map(|r| r.pull_seconds).collect();
        times.sort_by(f64::total_cmp);
        times
    }

    /// The median pull time.
    pub fn p50(&self) -> Option<f64> {
        let times = self.times();
        (!times.is_empty()).then(|| times[(times.len() - 1) / 2])
    }

    /// The longest pull time.
    pub fn max(&self) -> Option<f64> {
        self.times().last().copied()
    }

    /// The share of the bytes pulled that came from peers.
    pub fn peer_share(&self) -> f64 {
        let pulled = self
            .results
            .iter()
            .filter(|r| r.pull_seconds.is_some())
            .count() as f64
            * self.image_bytes as f64;
        let from_peers: u64 = self.results.iter().map(|r| r.bytes_from_peers).sum();
        if pulled == 0.0 {
            0.0
        } else {
            (from_peers as f64 / pulled).min(1.0)
        }
    }

    /// The report as a table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "scenario {}: {} hosts, image {:.1} MB in {} layers\n",
            self.scenario,
            self.hosts,
            self.image_bytes as f64 / 1e6,
            self.layers
        );
        out.push_str("host        pull (s)   from peers (MB)\n");
        for r in &self.results {
            let pull = r
                .pull_seconds
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.2}"));
            out.push_str(&format!(
                "{:<10}  {:>8}   {:>15.1}\n",
                r.host,
                pull,
                r.bytes_from_peers as f64 / 1e6
            ));
        }
        let show = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |s| format!("{s:.2} s"));
        out.push_str(&format!(
            "upstream sent {:.1} MB = {:.2} × the image; pull p50 {}, max {}; {:.0}% of the bytes from peers\n",
            self.upstream_bytes as f64 / 1e6,
            self.upstream_multiple(),
            show(self.p50()),
            show(self.max()),
            self.peer_share() * 100.0
        ));
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out
    }

    /// The report as JSON, with the derived figures.
    pub fn json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        value["upstream_multiple"] = self.upstream_multiple().into();
        value["p50_seconds"] = self.p50().into();
        value["max_seconds"] = self.max().into();
        value["peer_share"] = self.peer_share().into();
        value
    }
}
