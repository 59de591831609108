//! End-to-end tests of the `kagami` binary: the image commands, the node
//! serving real clients (skopeo), logs and shutdown.

mod harness;
mod images;
mod server;
mod skopeo;
