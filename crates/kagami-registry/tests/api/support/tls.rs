//! Cluster trust for served nodes, made with kagami-cluster: a CA, node
//! identities that bind peer IDs, the mTLS handshake a node is served
//! with (which counts its attempts), and the `PeerTls` a node fetches
//! with (which counts the configurations it makes, and reads an identity
//! the test may swap, as a renewal would).

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};

use http::Extensions;
use kagami_cluster::tls::{self, Identity};
use kagami_cluster::{ClusterCa, NODE_CERT_VALIDITY, NodeKey, NodeNames};
use kagami_registry::{Accepted, Admission, Handshake, PeerTls};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Installs the `ring` provider for the process, once: reqwest clients
/// built without a configuration of their own (the tests' clients) need
/// one.
pub fn install_crypto() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A cluster CA, which issues node identities.
pub struct Pki {
    ca: ClusterCa,
}

impl Pki {
    pub fn new() -> Pki {
        Pki {
            ca: ClusterCa::generate().unwrap(),
        }
    }

    /// An identity for 127.0.0.1 whose certificate binds `peer_id`.
    pub fn identity(&self, peer_id: &str) -> Identity {
        let key = NodeKey::generate().unwrap();
        let names = NodeNames {
            dns: vec!["localhost".to_owned()],
            ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            peer_id: Some(peer_id.to_owned()),
        };
        let cert = self.ca.issue(&key, &names, NODE_CERT_VALIDITY).unwrap();
        Identity {
            ca_pem: self.ca.cert_pem().to_owned(),
            cert_pem: cert.pem().to_owned(),
            key_pem: key.pem().to_owned(),
        }
    }
}

/// A client configuration that presents `identity` and accepts any
/// server of its CA, whatever peer it binds.
pub fn client_config(identity: &Identity) -> rustls::ClientConfig {
    tls::peer_client_config(identity, None).unwrap()
}

/// The TLS side of a served node.
#[derive(Clone)]
pub struct NodeTls {
    /// What the node fetches from peers with; swap it to renew.
    pub identity: Arc<Mutex<Identity>>,
    /// Connections that started a TLS handshake with the node.
    pub handshakes: Arc<AtomicUsize>,
    /// Client configurations the node's mirror made.
    pub configs: Arc<AtomicUsize>,
}

impl NodeTls {
    pub fn new(identity: Identity) -> NodeTls {
        NodeTls {
            identity: Arc::new(Mutex::new(identity)),
            handshakes: Arc::default(),
            configs: Arc::default(),
        }
    }

    /// Fetching from peers with the current identity, checking that each
    /// peer's certificate binds the peer ID the router named.
    pub fn peer_tls(&self) -> PeerTls {
        let (identity, configs) = (self.identity.clone(), self.configs.clone());
        PeerTls::new(move |peer_id| {
            configs.fetch_add(1, Ordering::Relaxed);
            let identity = identity.lock().unwrap().clone();
            tls::peer_client_config(&identity, Some(peer_id)).map_err(|e| e.to_string())
        })
    }

    /// The handshake serving the node with `identity` (mutual TLS against
    /// its CA), counting into `handshakes`.
    pub fn handshake(&self, identity: &Identity) -> MutualTls {
        MutualTls {
            acceptor: TlsAcceptor::from(tls::server_config(identity).unwrap()),
            attempts: self.handshakes.clone(),
        }
    }

    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::Relaxed)
    }

    pub fn configs(&self) -> usize {
        self.configs.load(Ordering::Relaxed)
    }
}

/// The server side of mutual TLS, for `serve_with`.
pub struct MutualTls {
    acceptor: TlsAcceptor,
    attempts: Arc<AtomicUsize>,
}

impl Handshake for MutualTls {
    type Io = TlsStream<TcpStream>;

    async fn handshake(&self, tcp: TcpStream) -> io::Result<Accepted<Self::Io>> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let stream = self.acceptor.accept(tcp).await?;
        Ok(Accepted {
            io: stream,
            extensions: Extensions::new(),
            admission: Admission::Member,
        })
    }
}
