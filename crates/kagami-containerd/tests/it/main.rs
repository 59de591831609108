//! kagami-containerd's integration tests: the `Store` backend against a
//! real containerd started per test, and the `hosts.toml` golden files.

mod golden;
mod harness;
mod hosts;
mod ingest;
mod store;
mod watch;
