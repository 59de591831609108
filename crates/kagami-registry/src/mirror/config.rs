//! The mirror's settings: which registries and tags are looked up on
//! peers, and the budget of every wait on the way.

use std::net::SocketAddr;
use std::time::Duration;

use super::tls::PeerTls;

/// Which registries' content a node looks up on its peers (and serves at
/// all): a miss for any other is answered 404 with no lookup.
pub type Mirrored = kagami_core::RegistrySet;

/// Settings of the mirror path (a local miss served from peers). Each
/// field's default is the associated `DEFAULT_*` constant.
#[derive(Clone, Debug)]
pub struct MirrorConfig {
    /// The registries whose misses are looked up on peers.
    pub mirrored: Mirrored,
    /// Whether a `latest` tag is looked up on peers. Off by default: a
    /// peer's `latest` may be older than the registry's, and a node would
    /// then run a stale image without knowing it (pin a tag or a digest).
    pub resolve_latest: bool,
    /// Whether this node advertises its `latest` tags. The registry does
    /// not read it; it lives here so one section configures both ends.
    pub advertise_latest: bool,
    /// Longest wait for the router to name providers of a key.
    pub resolve_timeout: Duration,
    /// Longest wait for a TCP connection to a peer.
    pub connect_timeout: Duration,
    /// Wait for a peer's first response byte before a second peer is
    /// raced against it. Once enough answers have been timed, the wait is
    /// `max(2 × p90, 100 ms)` of recent answers, never above this value.
    pub first_byte_timeout: Duration,
    /// Longest a peer may go without sending anything (its response head,
    /// or the next bytes of a body) before it is given up on: a blob then
    /// resumes from another peer.
    pub stall_timeout: Duration,
    /// Slowest a peer may send a blob body, in bytes per second, measured
    /// over [`rate_window`](Self::rate_window): a slower peer is given up
    /// on as a stalled one is (the body resumes from another provider;
    /// with none, it ends with an error, so the client's retry goes to its
    /// next endpoint) and skipped for [`bad_peer_ttl`](Self::bad_peer_ttl).
    /// 0 turns the check off.
    pub min_peer_rate: u64,
    /// The window [`min_peer_rate`](Self::min_peer_rate) is measured over.
    pub rate_window: Duration,
    /// Overall budget of a manifest request, a `HEAD`, or a blob's
    /// response head through the mirror, lookup included. Blob bodies
    /// have no overall limit, only [`stall_timeout`](Self::stall_timeout).
    pub manifest_timeout: Duration,
    /// Longest wait for an origin's response head when pulling through
    /// (it may have to ask the upstream first); then the next closest
    /// node is asked.
    pub origin_timeout: Duration,
    /// How long a tag resolved at the upstream is trusted before it is
    /// asked again.
    pub tag_ttl: Duration,
    /// Most providers asked for, and tried, per key.
    pub max_providers: usize,
    /// How long a peer that served bytes not matching their digest, or
    /// failed the TLS checks of [`peer_tls`](Self::peer_tls), is skipped.
    pub bad_peer_ttl: Duration,
    /// Addresses this node's own registry is reached at. The router never
    /// names this node, but a provider at one of these is skipped anyway,
    /// so a misconfigured router cannot make a node ask itself.
    pub own_addrs: Vec<SocketAddr>,
    /// How peers are reached: `None` (the default) over plain HTTP, or
    /// over HTTPS with the configurations a [`PeerTls`] makes, one client
    /// per peer ID.
    pub peer_tls: Option<PeerTls>,
}

impl MirrorConfig {
    /// Spegel's 20 ms assumes a warm routing table on a small cluster. A
    /// Kademlia lookup over a cold or large table takes several round
    /// trips, each of which may first dial a peer; 2 s lets that finish
    /// while keeping a miss well within containerd's patience (it then
    /// falls back to the next endpoint). Lookups are cached for a few
    /// seconds, negative ones too, so a burst of misses pays this once.
    pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
    /// Peers are on the same network: a connection that takes a second is
    /// to a dead host.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// Before any answer has been timed; Spegel's adaptive floor is 100 ms.
    pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_millis(300);
    /// Long enough for a busy peer's disk, short enough that a dead one
    /// does not hang a pull (users complain of 30 s hangs).
    pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(10);
    /// 512 KiB/s (4 Mbit/s): far below what a peer on a LAN sends even to
    /// a dozen readers at once, far above a peer whose link or disk is
    /// failing (a 2 Mbit/s provider kept three readers for minutes).
    pub const DEFAULT_MIN_PEER_RATE: u64 = 512 * 1024;
    /// Long enough not to judge a peer by one slow round trip.
    pub const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(3);
    /// Spegel's budget for a manifest or `HEAD`.
    pub const DEFAULT_MANIFEST_TIMEOUT: Duration = Duration::from_secs(3);
    /// Above the upstream client's own budget for a response head, so an
    /// origin that is fetching is not abandoned for another that would
    /// fetch again.
    pub const DEFAULT_ORIGIN_TIMEOUT: Duration = Duration::from_secs(20);
    /// Seconds: a rollout asks once, a moved tag is followed soon.
    pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(5);
    /// Spegel's: three holders are enough to hedge and resume.
    pub const DEFAULT_MAX_PROVIDERS: usize = 3;
    /// Long enough to stop a corrupt or untrusted peer being picked again
    /// at once, short enough that a peer that was repaired comes back.
    pub const DEFAULT_BAD_PEER_TTL: Duration = Duration::from_secs(60);
}

impl Default for MirrorConfig {
    fn default() -> MirrorConfig {
        MirrorConfig {
            mirrored: Mirrored::All,
            resolve_latest: false,
            advertise_latest: false,
            resolve_timeout: MirrorConfig::DEFAULT_RESOLVE_TIMEOUT,
            connect_timeout: MirrorConfig::DEFAULT_CONNECT_TIMEOUT,
            first_byte_timeout: MirrorConfig::DEFAULT_FIRST_BYTE_TIMEOUT,
            stall_timeout: MirrorConfig::DEFAULT_STALL_TIMEOUT,
            min_peer_rate: MirrorConfig::DEFAULT_MIN_PEER_RATE,
            rate_window: MirrorConfig::DEFAULT_RATE_WINDOW,
            manifest_timeout: MirrorConfig::DEFAULT_MANIFEST_TIMEOUT,
            origin_timeout: MirrorConfig::DEFAULT_ORIGIN_TIMEOUT,
            tag_ttl: MirrorConfig::DEFAULT_TAG_TTL,
            max_providers: MirrorConfig::DEFAULT_MAX_PROVIDERS,
            bad_peer_ttl: MirrorConfig::DEFAULT_BAD_PEER_TTL,
            own_addrs: Vec::new(),
            peer_tls: None,
        }
    }
}
