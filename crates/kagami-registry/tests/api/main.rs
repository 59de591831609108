//! The registry API over HTTP: through `app(..).oneshot` with an in-memory
//! store, through `serve` on a real socket, and between served nodes that
//! mirror from each other.

mod blobs;
mod errors;
mod health;
mod logs;
mod manifests;
mod mirror;
mod server;
mod support;
mod tags;
