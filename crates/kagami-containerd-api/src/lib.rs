//! containerd's gRPC API, as much of it as kagami calls: content, images,
//! events, leases, introspection and version, and the types they share.
//!
//! The bindings in `src/generated/` are generated from the protos in
//! `proto/` (containerd's own, unmodified) by `scripts/gen-containerd-api`
//! and committed, so that building kagami needs neither `protoc` nor a build
//! script; the test `tests/bindings.rs` fails when they no longer match what
//! the generator writes. The modules follow the protobuf packages, which is
//! what the generated cross-package paths (`super::super::…`) expect.
//!
//! [`connect`] makes the one kind of channel kagami uses: lazily connecting
//! to containerd's unix socket.

use std::path::Path;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

pub use prost_types;
pub use tonic;

/// containerd's packages (`containerd.*`).
#[allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]
pub mod containerd {
    /// `containerd.types`: descriptors, platforms and what events carry.
    pub mod types {
        include!("generated/containerd.types.rs");
    }
    /// `containerd.services.*.v1`: the services kagami calls.
    pub mod services {
        /// The content store: blobs by digest, readers and writers.
        pub mod content {
            /// Version 1.
            pub mod v1 {
                include!("generated/containerd.services.content.v1.rs");
            }
        }
        /// The events service.
        pub mod events {
            /// Version 1.
            pub mod v1 {
                include!("generated/containerd.services.events.v1.rs");
            }
        }
        /// Image records: names pointing at descriptors.
        pub mod images {
            /// Version 1.
            pub mod v1 {
                include!("generated/containerd.services.images.v1.rs");
            }
        }
        /// Plugins and their exports.
        pub mod introspection {
            /// Version 1.
            pub mod v1 {
                include!("generated/containerd.services.introspection.v1.rs");
            }
        }
        /// Leases, which keep content from the garbage collector.
        pub mod leases {
            /// Version 1.
            pub mod v1 {
                include!("generated/containerd.services.leases.v1.rs");
            }
        }
        /// The daemon's version.
        pub mod version {
            /// Version 1.
            pub mod v1 {
                include!("generated/containerd.services.version.v1.rs");
            }
        }
    }
}

/// `google.rpc`, which introspection's answers use.
#[allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]
pub mod google {
    /// `google.rpc.Status`.
    pub mod rpc {
        include!("generated/google.rpc.rs");
    }
}

/// A channel to containerd's socket at `socket` that connects on first use
/// and reconnects by itself, so a containerd that restarts comes back without
/// a new channel. `connect_timeout` bounds each dial; `call_timeout` bounds
/// the wait for a call's answer (streamed bodies are not limited by it).
pub fn connect(socket: &Path, connect_timeout: Duration, call_timeout: Duration) -> Channel {
    let socket = socket.to_path_buf();
    // tonic requires a URI, but the connector below dials the unix socket
    // and never looks at it.
    Endpoint::from_static("http://[::]:50051")
        .connect_timeout(connect_timeout)
        .timeout(call_timeout)
        .connect_with_connector_lazy(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
}
