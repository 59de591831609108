//! The transport, built by hand: TCP, then the private-network (PSK)
//! handshake, then noise, then yamux, all under one timeout. QUIC is not
//! offered because libp2p's PSK works over TCP only.

use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, Transport as _};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::PnetConfig;
use libp2p::{PeerId, noise, tcp, yamux};

use crate::{Error, Psk};

/// A transport whose every connection, in or out, first proves knowledge of
/// `psk`. The timeout covers the whole dial (TCP connect included) and the
/// whole upgrade of an inbound connection: with a wrong key, the noise
/// handshake reads garbage lengths and would otherwise wait forever.
pub(crate) fn build(
    keypair: &Keypair,
    psk: &Psk,
    timeout: Duration,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, Error> {
    let noise = noise::Config::new(keypair).map_err(|source| Error::BuildTransport { source })?;
    let psk = psk.pnet();
    let transport = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
        .upgrade(Version::V1)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .timeout(timeout)
        .boxed();
    Ok(transport)
}
