//! The request log: a span per request, one DEBUG line when its response
//! starts (status, bytes, latency) and nothing at INFO, so a busy node's
//! log stays quiet. A 5xx is logged at WARN with its cause chain, which
//! the error put in the response's extensions since the client never
//! sees it.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use http::header::CONTENT_LENGTH;
use http::{Request, Response};
use tower_http::trace::TraceLayer;
use tracing::{Span, field};

/// The cause of a 5xx response, for the log only.
#[derive(Debug, Clone)]
pub(crate) struct Failure(Arc<str>);

impl Failure {
    /// The error and its causes.
    pub(crate) fn chain(&self) -> &str {
        &self.0
    }

    /// The error and its sources, joined with `: `.
    pub(crate) fn of(error: &dyn std::error::Error) -> Failure {
        let mut chain = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            let _ = write!(chain, ": {cause}");
            source = cause.source();
        }
        Failure(chain.into())
    }
}

/// Wraps every route of `router` in the request log.
pub(crate) fn layer(router: Router) -> Router {
    router.layer(
        TraceLayer::new_for_http()
            .make_span_with(make_span as fn(&Request<Body>) -> Span)
            .on_request(())
            .on_response(on_response as fn(&Response<Body>, Duration, &Span))
            .on_eos(())
            .on_failure(()),
    )
}

fn make_span(request: &Request<Body>) -> Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri(),
        status = field::Empty,
    )
}

fn on_response(response: &Response<Body>, latency: Duration, span: &Span) {
    let status = response.status().as_u16();
    span.record("status", status);
    // Streamed bodies announce their length in the header; small ones
    // (errors, manifests) may only know it from the body itself.
    let bytes = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .or_else(|| response.body().size_hint().exact());
    tracing::debug!(bytes, ?latency, "served");
    if let Some(Failure(chain)) = response.extensions().get::<Failure>() {
        tracing::warn!(error = %chain, "request failed");
    }
}
