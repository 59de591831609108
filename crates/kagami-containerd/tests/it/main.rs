//! kagami-containerd's integration tests: the `Store` backend against a
//! real containerd started per test, the `hosts.toml` golden files, and
//! what containerd makes of them.

mod fallback;
mod golden;
mod harness;
mod hosts;
mod ingest;
mod store;
mod watch;
