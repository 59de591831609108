//! The registry port's TLS handshake. One port serves two kinds of
//! connection, told apart by the ALPN protocol the client offers before
//! anything is decided:
//!
//! - `kagami-join/1`: a node joining, which has no certificate yet. No
//!   client certificate is asked for, only the join call is served, and
//!   the connection counts as unauthenticated (its own cap, a short life).
//! - anything else: members. A client certificate signed by the cluster CA
//!   is required, so a client without one (or with an expired one, or one
//!   of another CA) fails the handshake and never reaches HTTP.
//!
//! The configurations are read from [`NodeTrust`] per connection, so a
//! renewed certificate is used from the next connection on.

use std::io;

use http::Extensions;
use kagami_cluster::tls::{JOIN_ALPN, names_of_der};
use kagami_registry::{Accepted, Admission};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::join::Channel;
use crate::trust::NodeTrust;

/// The handshake of a node with cluster trust.
pub(crate) struct ClusterTls {
    pub(crate) trust: NodeTrust,
}

impl kagami_registry::Handshake for ClusterTls {
    type Io = TlsStream<TcpStream>;

    async fn handshake(&self, tcp: TcpStream) -> io::Result<Accepted<Self::Io>> {
        let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
        let start = acceptor.await?;
        let joining = start
            .client_hello()
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == JOIN_ALPN));
        let config = if joining {
            self.trust.join_config()
        } else {
            self.trust.server_config()
        };
        let stream = start.into_stream(config).await?;
        let (channel, admission) = if joining {
            (Channel::Join, Admission::Unauthenticated)
        } else {
            let channel = Channel::Member {
                certified: stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(|cert| names_of_der(cert.as_ref()))
                    .unwrap_or_default(),
            };
            (channel, Admission::Member)
        };
        let mut extensions = Extensions::new();
        extensions.insert(channel);
        Ok(Accepted {
            io: stream,
            extensions,
            admission,
        })
    }
}

/// Lets each kind of connection reach only its own routes: join calls on
/// join connections, everything else on members' connections.
pub(crate) async fn guard(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let join_call = request.uri().path() == crate::join::JOIN_PATH;
    let allowed = match request.extensions().get::<Channel>() {
        Some(Channel::Join) => join_call,
        Some(Channel::Member { .. }) => !join_call,
        // Plain HTTP (insecure mode) has no join endpoint.
        None => !join_call,
    };
    if allowed {
        next.run(request).await
    } else {
        (http::StatusCode::NOT_FOUND, "not served on this connection").into_response()
    }
}
