//! The upstream client against real registries: Debian's `docker-registry`
//! (CNCF distribution) in plain HTTP, with TLS and htpasswd basic auth, and
//! with `auth: token` and a token issuer of the test's own; a test proxy
//! that redirects blob reads to another host; and registries that answer
//! badly.

mod auth;
mod faults;
mod plain;
mod support;
