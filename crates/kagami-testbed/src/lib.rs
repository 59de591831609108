//! kagami's multi-host test bed, for its tests and benchmarks (never a
//! dependency of the product).
//!
//! A [`Bed`] is, per run: a bridge in a network namespace of its own and
//! one namespace per host, joined by veth pairs with addresses in
//! `10.99.0.0/24` (private, and seen nowhere but inside the run's
//! namespaces, so two runs at once never meet); on every host its own
//! containerd and a kagami node writing that containerd's `hosts.toml` (the
//! first host a server, the others agents joined with its token, mTLS as by
//! default, every node on its own address and the default ports); two
//! upstream hosts running Debian's `docker-registry`, one in plain HTTP and
//! one with TLS and htpasswd basic auth, holding the scenario's images
//! (pushed with skopeo, digests preserved); and `tc` rate limits on every
//! link. [`scenario`] runs rollouts on it and measures them ([`Report`]).
//!
//! Everything a run makes it removes when the [`Bed`] is dropped, also when
//! a test fails or panics; namespaces left by a run that was killed are
//! removed by the next one ([`netns::sweep_leftovers`]).

pub mod bed;
pub mod error;
pub mod host;
pub mod images;
pub mod netns;
pub mod process;
pub mod report;
pub mod scenario;
pub mod shape;
pub mod upstream;

pub use bed::{Bed, BedConfig};
pub use error::Error;
pub use report::{HostResult, Report};
pub use shape::Shape;
