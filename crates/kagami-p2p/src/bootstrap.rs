//! Bootstrap peers: parsing what operators write (`--bootstrap-peer`), and
//! turning DNS names into addresses at dial time, so that a headless
//! service's changing members are found again on every re-bootstrap.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

use crate::Error;
use crate::config::DEFAULT_PORT;

/// How long one DNS lookup of a bootstrap name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses a bootstrap peer: a multiaddr over TCP (`/ip4/10.0.0.1/tcp/5001`,
/// `/dns/kagami.svc/tcp/5001/p2p/12D3…`, the `/p2p/<id>` part optional), or
/// a bare `host[:port]` (IPv4, `[IPv6]`, or a DNS name), which becomes
/// `/ip4|ip6|dns/<host>/tcp/<port>`. The port defaults to
/// [`DEFAULT_PORT`], which K3s runs on every node.
pub fn parse_bootstrap(input: &str) -> Result<Multiaddr, Error> {
    let err = |reason: &str| Error::ParseBootstrap {
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(err("empty"));
    }
    if text.starts_with('/') {
        let addr: Multiaddr = text.parse().map_err(|e| err(&format!("{e}")))?;
        check_tcp(&addr).map_err(err)?;
        return Ok(addr);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Ok(tcp(ip_protocol(socket.ip()), socket.port()));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(tcp(ip_protocol(ip), DEFAULT_PORT));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| err("invalid port"))?),
        None => (text, DEFAULT_PORT),
    };
    if port == 0 {
        return Err(err("port 0 cannot be dialed"));
    }
    if !is_dns_name(host) {
        return Err(err("not a multiaddr, an IP address or a DNS name"));
    }
    Ok(tcp(Protocol::Dns(host.to_owned().into()), port))
}

/// Checks that an address can carry the private network: an IP or DNS
/// host, then TCP, then at most a peer ID.
fn check_tcp(addr: &Multiaddr) -> Result<(), &'static str> {
    let mut parts = addr.iter();
    match parts.next() {
        Some(Protocol::Ip4(_) | Protocol::Ip6(_)) => {}
        Some(Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_)) => {}
        _ => return Err("must start with /ip4, /ip6, /dns, /dns4 or /dns6"),
    }
    match parts.next() {
        Some(Protocol::Tcp(port)) if port != 0 => {}
        Some(Protocol::Tcp(_)) => return Err("port 0 cannot be dialed"),
        _ => return Err("the host must be followed by /tcp/<port> (the PSK works over TCP only)"),
    }
    match (parts.next(), parts.next()) {
        (None, _) | (Some(Protocol::P2p(_)), None) => Ok(()),
        _ => Err("only /p2p/<peer id> may follow /tcp/<port>"),
    }
}

fn ip_protocol(ip: IpAddr) -> Protocol<'static> {
    match ip {
        IpAddr::V4(ip) => Protocol::Ip4(ip),
        IpAddr::V6(ip) => Protocol::Ip6(ip),
    }
}

fn tcp(host: Protocol<'static>, port: u16) -> Multiaddr {
    Multiaddr::empty().with(host).with(Protocol::Tcp(port))
}

fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The dialable forms of a bootstrap address: itself when it names an IP,
/// else one address per IP its DNS name resolves to (filtered by family
/// for `/dns4` and `/dns6`). A failed lookup gives none, logged.
pub(crate) async fn resolve(addr: Multiaddr) -> Vec<Multiaddr> {
    let mut parts = addr.iter();
    let (name, family) = match parts.next() {
        Some(Protocol::Dns(name)) => (name, None),
        Some(Protocol::Dns4(name)) => (name, Some(true)),
        Some(Protocol::Dns6(name)) => (name, Some(false)),
        _ => return vec![addr],
    };
    let rest: Vec<Protocol<'_>> = parts.collect();
    let port = match rest.first() {
        Some(Protocol::Tcp(port)) => *port,
        _ => return Vec::new(),
    };
    let lookup = tokio::net::lookup_host((name.as_ref(), port));
    let ips = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(found)) => found.map(|s| s.ip()).collect::<Vec<_>>(),
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "cannot resolve bootstrap peer");
            return Vec::new();
        }
        Err(_) => {
            tracing::debug!(%addr, "resolving bootstrap peer timed out");
            return Vec::new();
        }
    };
    let mut out: Vec<Multiaddr> = Vec::new();
    for ip in ips {
        if family.is_some_and(|v4| v4 != ip.is_ipv4()) {
            continue;
        }
        let resolved = rest
            .iter()
            .fold(Multiaddr::empty().with(ip_protocol(ip)), |a, p| {
                a.with(p.clone())
            });
        if !out.contains(&resolved) {
            out.push(resolved);
        }
    }
    out
}

/// When an isolated node next dials its bootstrap peers: every `interval`
/// while it has peers (a cheap check), and with a doubling delay up to
/// `max` while attempts bring none, so a single-node cluster neither spins
/// nor floods its log.
#[derive(Debug)]
pub(crate) struct Backoff {
    interval: Duration,
    max: Duration,
    delay: Duration,
    next: Instant,
}

impl Backoff {
    pub(crate) fn new(interval: Duration, max: Duration, now: Instant) -> Backoff {
        Backoff {
            interval,
            max: max.max(interval),
            delay: interval,
            next: now,
        }
    }

    pub(crate) fn next(&self) -> Instant {
        self.next
    }

    /// The node has peers: check again one interval from now.
    pub(crate) fn healthy(&mut self, now: Instant) {
        self.delay = self.interval;
        self.next = now + self.interval;
    }

    /// An attempt was made (or could not be): wait longer before the next.
    pub(crate) fn attempted(&mut self, now: Instant) {
        self.next = now + self.delay;
        self.delay = (self.delay * 2).min(self.max);
    }

    /// The node just lost its last peer: try again now.
    pub(crate) fn isolated(&mut self, now: Instant) {
        self.delay = self.interval;
        self.next = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

    #[test]
    fn parses_multiaddrs_and_host_ports() {
        let table: &[(&str, String)] = &[
            ("/ip4/10.0.0.1/tcp/5001", "/ip4/10.0.0.1/tcp/5001".into()),
            (
                &format!("/ip4/10.0.0.1/tcp/5001/p2p/{ID}"),
                format!("/ip4/10.0.0.1/tcp/5001/p2p/{ID}"),
            ),
            ("/dns4/node-1/tcp/7000", "/dns4/node-1/tcp/7000".into()),
            ("/ip6/::1/tcp/5001", "/ip6/::1/tcp/5001".into()),
            ("10.0.0.1:5002", "/ip4/10.0.0.1/tcp/5002".into()),
            ("10.0.0.1", "/ip4/10.0.0.1/tcp/5001".into()),
            ("[fd00::1]:5003", "/ip6/fd00::1/tcp/5003".into()),
            ("fd00::1", "/ip6/fd00::1/tcp/5001".into()),
            (
                "kagami.kube-system.svc.cluster.local:5001",
                "/dns/kagami.kube-system.svc.cluster.local/tcp/5001".into(),
            ),
            ("server-1", "/dns/server-1/tcp/5001".into()),
            (" server-1:6000 \n", "/dns/server-1/tcp/6000".into()),
        ];
        for (input, want) in table {
            let got = parse_bootstrap(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(got.to_string(), *want, "{input:?}");
        }
    }

    #[test]
    fn refuses_what_cannot_be_dialed_over_tcp() {
        for bad in [
            "",
            "   ",
            "/ip4/10.0.0.1/udp/5001/quic-v1",
            "/ip4/10.0.0.1",
            "/ip4/10.0.0.1/tcp/0",
            "/ip4/10.0.0.1/tcp/5001/ws",
            "/tcp/5001",
            "/ip4/nonsense/tcp/1",
            "host:port",
            "host:70000",
            "host:0",
            "bad_name:5001",
            "-bad:5001",
            "http://host:5001",
        ] {
            let err = parse_bootstrap(bad).expect_err(bad);
            assert!(matches!(err, Error::ParseBootstrap { .. }), "{bad:?}");
        }
    }

    #[test]
    fn isolated_nodes_back_off_up_to_the_maximum() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let mut backoff = Backoff::new(s(10), s(40), now);
        assert_eq!(backoff.next(), now);
        let waits: Vec<Duration> = (0..4)
            .map(|_| {
                backoff.attempted(now);
                backoff.next() - now
            })
            .collect();
        assert_eq!(waits, [s(10), s(20), s(40), s(40)]);
        backoff.healthy(now);
        assert_eq!(backoff.next(), now + s(10));
        backoff.attempted(now);
        backoff.attempted(now);
        backoff.isolated(now);
        assert_eq!(backoff.next(), now);
        backoff.attempted(now);
        assert_eq!(backoff.next(), now + s(10));
    }

    #[tokio::test]
    async fn dns_names_resolve_to_ip_addresses_keeping_the_peer_id() {
        let addr: Multiaddr = format!("/dns4/localhost/tcp/5001/p2p/{ID}")
            .parse()
            .unwrap();
        let resolved = resolve(addr).await;
        let want: Multiaddr = format!("/ip4/127.0.0.1/tcp/5001/p2p/{ID}").parse().unwrap();
        assert_eq!(resolved, vec![want]);
        let ip: Multiaddr = "/ip4/10.0.0.1/tcp/5001".parse().unwrap();
        assert_eq!(resolve(ip.clone()).await, vec![ip]);
    }
}
