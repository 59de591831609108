//! Integration tests of kagami-p2p: real libp2p nodes on loopback, and the
//! advertiser against the in-memory router. One binary; shared helpers in
//! `support`.

mod advertiser;
mod network;
mod support;
