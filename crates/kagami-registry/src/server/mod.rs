//! Serving the application on a socket, with an accept loop of our own on
//! hyper-util (HTTP/1.1 and HTTP/2), so that each connection can be
//! inspected before HTTP starts on it.
//!
//! A connection goes accept → [`Handshake`] → HTTP. The handshake of plain
//! TCP hands the stream through; a TLS handshake slots in at the same place,
//! and whatever it learns about the client (its certificate, say) it returns
//! as request extensions that every request on the connection carries, next
//! to axum's `ConnectInfo<SocketAddr>`, together with its [`Admission`]:
//! a member, or a client that proved nothing (a node joining).
//!
//! Every state of a connection has a budget ([`Limits`]): a cap on
//! connections in their handshake and on unauthenticated ones, each well
//! below the total, so that no one who merely reaches the port can take the
//! slots members need; a time to finish the handshake; a lifetime for
//! unauthenticated connections; an idle timeout for members' (no byte
//! moved either way); and HTTP/2 streams and send buffers per connection.
//! A connection refused or closed by a budget is counted
//! ([`ConnectionStats`]) and logged at most once a minute per reason.
//! Accept errors (out of file descriptors, say) are logged and retried after
//! a short, growing pause; they never end the loop.

mod activity;
mod limits;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use http::{Extensions, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

pub use limits::{Admission, Closed, ConnectionStats, Limits};

use crate::throttle::Throttle;
use activity::{Activity, Tracked};
use limits::State;

/// First and longest pause after a failed accept.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// Time aborted connections get to unwind once the grace period is over.
const ABORT_WAIT: Duration = Duration::from_secs(1);
/// How often a refusal of each kind may be logged.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// How a port is served: its limits, where it counts, and how long
/// requests in flight may run on after shutdown is asked for.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long requests in flight may run on once shutdown is asked for;
    /// then what is still open is closed. Default 10 s.
    pub grace: Duration,
    /// The connections' budgets.
    pub limits: Limits,
    /// Where connections are counted.
    pub stats: ConnectionStats,
    /// What the listener serves, for its log line: `"{name} listening"`
    /// (default `registry API`).
    pub name: &'static str,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            grace: Duration::from_secs(10),
            limits: Limits::default(),
            stats: ConnectionStats::default(),
            name: "registry API",
        }
    }
}

/// A connection past its handshake, ready for HTTP.
#[derive(Debug)]
pub struct Accepted<Io> {
    /// The stream HTTP is spoken on.
    pub io: Io,
    /// What the handshake learned about the client, as extensions each
    /// request on the connection carries.
    pub extensions: Extensions,
    /// How the connection is to be treated.
    pub admission: Admission,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting (the listener is closed), lets requests in flight finish for
/// up to `options.grace`, closes whatever is still open, and returns.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> io::Result<()> {
    serve_with(listener, PlainTcp, app, shutdown, options).await
}

/// The step between accepting a TCP connection and speaking HTTP on it,
/// for [`serve_with`]: a TLS handshake, say.
///
/// One value serves every connection, from one task per connection, so
/// handshakes run concurrently. Each gets [`Limits::handshake_timeout`];
/// one that fails or runs out of time closes its connection (counted, and
/// logged at DEBUG) and never ends the accept loop.
pub trait Handshake: Send + Sync + 'static {
    /// The stream HTTP is spoken on.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Turns an accepted connection into the stream for HTTP, with what it
    /// learned about the client (its certificate, say) as extensions that
    /// each request on the connection carries (handlers read them with
    /// axum's `Extension` extractor; `ConnectInfo<SocketAddr>` is added to
    /// them in any case), and whether the client proved itself a member.
    fn handshake(
        &self,
        tcp: TcpStream,
    ) -> impl Future<Output = io::Result<Accepted<Self::Io>>> + Send;
}

/// Plain TCP: HTTP straight on the accepted stream. There is nothing to
/// prove, so every connection is a member's.
struct PlainTcp;

impl Handshake for PlainTcp {
    type Io = TcpStream;

    async fn handshake(&self, tcp: TcpStream) -> io::Result<Accepted<TcpStream>> {
        Ok(Accepted {
            io: tcp,
            extensions: Extensions::new(),
            admission: Admission::Member,
        })
    }
}

/// What every connection of one port shares.
struct Shared<H> {
    handshake: H,
    builder: auto::Builder<TokioExecutor>,
    app: axum::Router,
    limits: Limits,
    stats: ConnectionStats,
    handshakes: Arc<Semaphore>,
    unauthenticated: Arc<Semaphore>,
    refusals: Throttle<Closed>,
}

impl<H> Shared<H> {
    /// Counts a refusal or closing, and logs it when the throttle lets it.
    fn refused(&self, reason: Closed, peer: SocketAddr) {
        self.stats.count(reason);
        let Some(count) = self.refusals.hit(reason) else {
            return;
        };
        let limits = &self.limits;
        match reason {
            Closed::HandshakesFull => tracing::warn!(
                %peer, count, max = limits.max_handshakes,
                "refusing connections: too many are in their TLS handshake (clients that connect and say nothing?)"
            ),
            Closed::UnauthenticatedFull => tracing::warn!(
                %peer, count, max = limits.max_unauthenticated,
                "refusing join connections: too many are open"
            ),
            Closed::HandshakeTimeout => tracing::info!(
                %peer, count, timeout = ?limits.handshake_timeout,
                "closed connections that did not finish their handshake in time"
            ),
            Closed::Lifetime => tracing::info!(
                %peer, count, lifetime = ?limits.unauthenticated_lifetime,
                "closed join connections at the end of their lifetime"
            ),
            Closed::Idle | Closed::HandshakeFailed => {}
        }
    }
}

/// Serves `app` on `listener` as [`serve`] does, with `handshake` run on
/// each accepted connection before HTTP (HTTP/1.1, or HTTP/2 by its
/// preface: with TLS, offer both by ALPN).
pub async fn serve_with<H: Handshake>(
    listener: TcpListener,
    handshake: H,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> io::Result<()> {
    let ServeOptions {
        grace,
        limits,
        stats,
        name,
    } = options;
    let addr = listener.local_addr()?;
    if name == ServeOptions::default().name {
        tracing::info!(%addr, "registry API listening");
    } else {
        // Another field name than the registry's `addr`, which tools and
        // tests read from the log to find the registry.
        tracing::info!(listen = %addr, "{name} listening");
    }
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams_per_connection)
        .max_send_buf_size(limits.max_send_buffer_per_stream);
    let shared = Arc::new(Shared {
        handshake,
        builder,
        app,
        handshakes: Arc::new(Semaphore::new(limits.max_handshakes)),
        unauthenticated: Arc::new(Semaphore::new(limits.max_unauthenticated)),
        limits: limits.clone(),
        stats,
        refusals: Throttle::new(REFUSAL_LOG_INTERVAL),
    });
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF.0;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (accepted, permit) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = accept(&listener, &permits) => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF.0;
                accepted
            }
            Err(error) => {
                tracing::warn!(%error, pause = ?backoff, "accept failed");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        shared.stats.count_accepted();
        let Ok(handshake_permit) = shared.handshakes.clone().try_acquire_owned() else {
            shared.refused(Closed::HandshakesFull, peer);
            continue;
        };
        let connection = Connection {
            shared: shared.clone(),
            peer,
            _permit: permit,
        };
        let watcher = graceful.watcher();
        connections.spawn(async move { connection.run(tcp, handshake_permit, watcher).await });
    }
    drop(listener);
    tracing::info!(open = connections.len(), ?grace, "{name} stopping");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still busy after the grace period; closing them"
        );
        connections.abort_all();
    }
    // Aborted connections unwind (dropping their store streams) before we return.
    let _ = tokio::time::timeout(ABORT_WAIT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// Waits for a free connection slot, then for a connection.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> (
    io::Result<(TcpStream, SocketAddr)>,
    Option<OwnedSemaphorePermit>,
) {
    // The semaphore is never closed, so a permit always comes.
    let permit = permits.clone().acquire_owned().await.ok();
    (listener.accept().await, permit)
}

/// One accepted connection, until it closes.
struct Connection<H> {
    shared: Arc<Shared<H>>,
    peer: SocketAddr,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<H: Handshake> Connection<H> {
    async fn run(
        self,
        tcp: TcpStream,
        handshake_permit: OwnedSemaphorePermit,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let peer = self.peer;
        let shared = &self.shared;
        let limits = &shared.limits;
        // Small responses (manifests, errors) should not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let handshaking = shared.stats.opened(State::Handshake);
        let handshake =
            tokio::time::timeout(limits.handshake_timeout, shared.handshake.handshake(tcp)).await;
        drop((handshaking, handshake_permit));
        let accepted = match handshake {
            Ok(Ok(accepted)) => accepted,
            Ok(Err(error)) => {
                shared.stats.count(Closed::HandshakeFailed);
                tracing::debug!(%peer, %error, "handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "handshake timed out");
                shared.refused(Closed::HandshakeTimeout, peer);
                return;
            }
        };
        // An unauthenticated connection holds one of its own slots for its
        // whole life, and has that life cut short.
        let (_slot, _open, lifetime) = match accepted.admission {
            Admission::Member => (None, shared.stats.opened(State::Member), None),
            Admission::Unauthenticated => {
                let Ok(slot) = shared.unauthenticated.clone().try_acquire_owned() else {
                    shared.refused(Closed::UnauthenticatedFull, peer);
                    return;
                };
                let open = shared.stats.opened(State::Unauthenticated);
                (Some(slot), open, Some(limits.unauthenticated_lifetime))
            }
        };
        let mut extensions = accepted.extensions;
        extensions.insert(ConnectInfo(peer));
        let app = shared.app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().extend(extensions.clone());
            app.clone().oneshot(request)
        });
        let activity = Activity::new();
        let io = TokioIo::new(Tracked::new(accepted.io, activity.clone()));
        let connection = shared.builder.serve_connection_with_upgrades(io, service);
        let connection = watcher.watch(connection);
        let mut connection = std::pin::pin!(connection);
        let started = tokio::time::Instant::now();
        let end_of_life = lifetime.map(|lifetime| started + lifetime);
        loop {
            let idle_until = activity.last() + limits.idle_timeout;
            let wake = end_of_life.map_or(idle_until, |end| end.min(idle_until));
            tokio::select! {
                ended = &mut connection => {
                    if let Err(error) = ended {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                    return;
                }
                () = tokio::time::sleep_until(wake) => {}
            }
            let now = tokio::time::Instant::now();
            if end_of_life.is_some_and(|end| now >= end) {
                tracing::debug!(%peer, "unauthenticated connection reached its lifetime");
                shared.refused(Closed::Lifetime, peer);
                return;
            }
            if now >= activity.last() + limits.idle_timeout {
                tracing::debug!(%peer, idle = ?limits.idle_timeout, "closing an idle connection");
                shared.refused(Closed::Idle, peer);
                return;
            }
        }
    }
}
