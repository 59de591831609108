//! Serving the application on a socket, with an accept loop of our own on
//! hyper-util (HTTP/1.1 and HTTP/2), so that each connection can be
//! inspected before HTTP starts on it.
//!
//! A connection goes accept → [`Handshake`] → HTTP. The handshake of plain
//! TCP hands the stream through; a TLS handshake slots in at the same place,
//! and whatever it learns about the client (its certificate, say) it returns
//! as request extensions that every request on the connection carries, next
//! to axum's `ConnectInfo<SocketAddr>`.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections at once (accepting pauses
//! beyond that), a handshake within [`HANDSHAKE_TIMEOUT`], request headers
//! within [`HEADER_READ_TIMEOUT`]. Accept errors (out of file descriptors,
//! say) are logged and retried after a short, growing pause; they never end
//! the loop.

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

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;
/// Time a client has to finish the connection handshake (TLS, say).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request's headers (guards against slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// First and longest pause after a failed accept.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// Time aborted connections get to unwind once the grace period is over.
const ABORT_WAIT: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting (the listener is closed), lets requests in flight finish for
/// up to `grace`, closes whatever is still open, and returns.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> io::Result<()> {
    serve_with(listener, PlainTcp, app, shutdown, grace).await
}

/// The step between accepting a TCP connection and speaking HTTP on it,
/// for [`serve_with`]: a TLS handshake, say.
///
/// One value serves every connection, from one task per connection, so
/// handshakes run concurrently. Each gets 10 seconds;
/// one that fails or runs out of time closes its connection (logged at
/// DEBUG) and never ends the accept loop.
pub trait Handshake: Send + Sync + 'static {
    /// The stream HTTP is spoken on.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Turns an accepted connection into the stream for HTTP, with what it
    /// learned about the client (its certificate, say) as extensions that
    /// each request on the connection carries; handlers read them with
    /// axum's `Extension` extractor. `ConnectInfo<SocketAddr>` is added
    /// to them in any case.
    fn handshake(
        &self,
        tcp: TcpStream,
    ) -> impl Future<Output = io::Result<(Self::Io, Extensions)>> + Send;
}

/// Plain TCP: HTTP straight on the accepted stream.
struct PlainTcp;

impl Handshake for PlainTcp {
    type Io = TcpStream;

    async fn handshake(&self, tcp: TcpStream) -> io::Result<(TcpStream, Extensions)> {
        Ok((tcp, Extensions::new()))
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
    grace: Duration,
) -> io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "registry API listening");
    let handshake = Arc::new(handshake);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
        let connection = Connection {
            handshake: handshake.clone(),
            builder: builder.clone(),
            app: app.clone(),
            peer,
            _permit: permit,
        };
        let watcher = graceful.watcher();
        connections.spawn(async move { connection.run(tcp, watcher).await });
    }
    drop(listener);
    tracing::info!(open = connections.len(), ?grace, "registry API stopping");
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
    handshake: Arc<H>,
    builder: auto::Builder<TokioExecutor>,
    app: axum::Router,
    peer: SocketAddr,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<H: Handshake> Connection<H> {
    async fn run(self, tcp: TcpStream, watcher: hyper_util::server::graceful::Watcher) {
        let peer = self.peer;
        // Small responses (manifests, errors) should not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let (io, mut extensions) =
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake.handshake(tcp)).await {
                Ok(Ok(connected)) => connected,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "handshake timed out");
                    return;
                }
            };
        extensions.insert(ConnectInfo(peer));
        let app = self.app;
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().extend(extensions.clone());
            app.clone().oneshot(request)
        });
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        if let Err(error) = watcher.watch(connection).await {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    }
}
