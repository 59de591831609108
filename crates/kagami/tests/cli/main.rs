//! End-to-end tests of the `kagami` binary and of nodes pulling through
//! each other: the image commands (imports killed part-way too), the node
//! serving real clients
//! (skopeo), logs and shutdown; the P2P mirror between real libp2p nodes,
//! in-process (`cluster`) and as killable child processes (`harness`).

mod airgap;
mod budgets;
mod cluster;
mod config;
mod containerd;
mod corrupt;
mod ctr_pull;
mod demo;
mod failover;
mod harness;
mod hosts;
mod images;
mod join_guard;
mod killed_import;
mod library;
mod logs;
mod measure;
mod metrics;
mod mirror;
mod psk;
mod pull;
mod pull_through;
mod server;
mod sharing;
mod skopeo;
mod status_page;
mod trust;
mod withdraw;
