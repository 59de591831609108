//! Every way a registry request fails, and the one place they become OCI
//! error responses (`{"errors":[{"code","message","detail"}]}`).
//!
//! Client errors say what was wrong in `message` and name the subject in
//! `detail`. Server errors (5xx) say only the code's generic description:
//! their cause goes to the log (see `trace`), never to the client.
//!
//! An unsatisfiable `Range` answers 416 with the code `RANGE_INVALID`,
//! which the distribution spec does not list: it names the failure
//! exactly, and clients act on the status and `Content-Range`, not the code.

use axum::response::{IntoResponse, Response};
use http::header::{ALLOW, CONTENT_RANGE, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode};
use kagami_core::{Digest, ErrorCode, ParseError, Repository, store};
use serde::Serialize;

use crate::path::PathError;
use crate::range;
use crate::trace::Failure;

/// The code of a 500, which the distribution spec's list lacks; the
/// reference registry uses this one.
const INTERNAL_CODE: &str = "UNKNOWN";

/// Why a registry request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A method other than GET or HEAD: this registry is read-only.
    #[error("{method} is not supported: this registry is read-only")]
    MethodNotAllowed {
        /// The method the client used.
        method: Method,
    },
    /// A `/v2/` path that is not a manifest, blob or tag list.
    #[error("unknown endpoint: only manifests, blobs and tags/list are served")]
    PathUnknown,
    /// The repository name in the path is not valid.
    #[error("{source}")]
    NameInvalid {
        /// What the name's grammar refused.
        source: ParseError,
    },
    /// The query string could not be read (`ns` given twice, say).
    #[error("invalid query: {reason}")]
    QueryInvalid {
        /// What was wrong with it.
        reason: String,
    },
    /// The `?ns=` registry is not a valid host.
    #[error("invalid ns parameter: {source}")]
    RegistryInvalid {
        /// What the registry grammar refused.
        source: ParseError,
    },
    /// A blob digest, or a manifest reference with a `:`, is not a digest.
    #[error("{source}")]
    DigestInvalid {
        /// What the digest grammar refused.
        source: ParseError,
    },
    /// A manifest reference without a `:` is not a tag.
    #[error("{source}")]
    TagInvalid {
        /// What the tag grammar refused.
        source: ParseError,
    },
    /// The registry is not one this node mirrors (K3s: not listed under
    /// `mirrors:`), so nothing of it is served, held or not.
    #[error("registry {registry} is not mirrored by this node")]
    RegistryNotMirrored {
        /// The registry asked for (`?ns=`, or the default).
        registry: kagami_core::Registry,
    },
    /// No image of this repository is held.
    #[error("repository {repository} is not known")]
    RepositoryUnknown {
        /// The repository as the client named it.
        repository: Repository,
    },
    /// No manifest of this tag or digest is held.
    #[error("manifest {reference} is not known")]
    ManifestUnknown {
        /// The tag, reference or digest looked up.
        reference: String,
    },
    /// No blob of this digest is held (or the digest is a manifest's).
    #[error("blob {digest} is not known")]
    BlobUnknown {
        /// The digest looked up.
        digest: Digest,
    },
    /// The `Range` selects no byte of the blob.
    #[error("range not satisfiable for {digest} of {size} bytes")]
    RangeNotSatisfiable {
        /// The blob.
        digest: Digest,
        /// Its size, which the 416 response reports.
        size: u64,
    },
    /// The store cannot answer right now.
    #[error("store unavailable")]
    StoreUnavailable {
        /// What the store said.
        source: store::Error,
    },
    /// This node, asked as an origin, could not ask the upstream (it
    /// failed, or timed out): the asker tries the next origin.
    #[error("the upstream of {registry} cannot be reached from this node")]
    UpstreamUnavailable {
        /// The registry pulled through.
        registry: kagami_core::Registry,
    },
    /// The store failed.
    #[error("store failed")]
    Store {
        /// What the store said.
        source: store::Error,
    },
    /// The HTTP client for peers could not be built (see [`crate::Mirror::new`]).
    #[error("failed to build the HTTP client for peers")]
    MirrorClient {
        /// What the client builder said.
        source: reqwest::Error,
    },
    /// The TLS settings of the HTTP client for peers could not be made
    /// (see [`crate::Mirror::new`]).
    #[error("failed to configure TLS for the HTTP client for peers")]
    MirrorTls {
        /// What rustls said.
        source: rustls::Error,
    },
    /// A response could not be put together.
    #[error("failed to render {what}")]
    Render {
        /// The part of the response.
        what: &'static str,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// The OCI code, or `None` for an internal error.
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            Error::MethodNotAllowed { .. } => ErrorCode::Unsupported,
            Error::PathUnknown
            | Error::RepositoryUnknown { .. }
            | Error::RegistryNotMirrored { .. } => ErrorCode::NameUnknown,
            Error::NameInvalid { .. }
            | Error::QueryInvalid { .. }
            | Error::RegistryInvalid { .. } => ErrorCode::NameInvalid,
            Error::DigestInvalid { .. } => ErrorCode::DigestInvalid,
            Error::TagInvalid { .. } => ErrorCode::ManifestInvalid,
            Error::ManifestUnknown { .. } => ErrorCode::ManifestUnknown,
            Error::BlobUnknown { .. } => ErrorCode::BlobUnknown,
            Error::RangeNotSatisfiable { .. } => ErrorCode::RangeInvalid,
            Error::StoreUnavailable { .. } | Error::UpstreamUnavailable { .. } => {
                ErrorCode::Unavailable
            }
            Error::Store { .. }
            | Error::Render { .. }
            | Error::MirrorClient { .. }
            | Error::MirrorTls { .. } => return None,
        })
    }

    /// The HTTP status the error is answered with.
    pub fn status(&self) -> StatusCode {
        self.code()
            .and_then(|code| StatusCode::from_u16(code.status()).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The subject of a client error, for the body's `detail`.
    fn detail(&self) -> Option<serde_json::Value> {
        use serde_json::json;
        match self {
            Error::MethodNotAllowed { method } => Some(json!({ "method": method.as_str() })),
            Error::RepositoryUnknown { repository } => Some(json!({ "name": repository.as_str() })),
            Error::RegistryNotMirrored { registry } => {
                Some(json!({ "registry": registry.as_str() }))
            }
            Error::ManifestUnknown { reference } => Some(json!({ "reference": reference })),
            Error::BlobUnknown { digest } => Some(json!({ "digest": digest.as_str() })),
            Error::RangeNotSatisfiable { digest, size } => {
                Some(json!({ "digest": digest.as_str(), "size": size }))
            }
            _ => None,
        }
    }

    /// A manifest route's view of a store error: missing or non-manifest
    /// content is an unknown manifest, not an unknown blob.
    pub(crate) fn for_manifest(error: store::Error) -> Error {
        match error {
            store::Error::ContentNotFound { digest } | store::Error::NotAManifest { digest } => {
                Error::ManifestUnknown {
                    reference: digest.to_string(),
                }
            }
            other => other.into(),
        }
    }
}

impl From<store::Error> for Error {
    fn from(error: store::Error) -> Error {
        match error {
            store::Error::ImageNotFound { reference } => Error::ManifestUnknown {
                reference: reference.to_string(),
            },
            store::Error::ContentNotFound { digest } => Error::BlobUnknown { digest },
            store::Error::NotAManifest { digest } => Error::ManifestUnknown {
                reference: digest.to_string(),
            },
            store::Error::RangeOutOfBounds { digest, size, .. } => {
                Error::RangeNotSatisfiable { digest, size }
            }
            source @ store::Error::Unavailable { .. } => Error::StoreUnavailable { source },
            source @ store::Error::Backend { .. } => Error::Store { source },
        }
    }
}

impl From<PathError> for Error {
    fn from(error: PathError) -> Error {
        match error {
            PathError::Unknown => Error::PathUnknown,
            PathError::Name(source) => Error::NameInvalid { source },
            PathError::Digest(source) => Error::DigestInvalid { source },
            PathError::Tag(source) => Error::TagInvalid { source },
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    errors: [Entry<'a>; 1],
}

#[derive(Serialize)]
struct Entry<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<serde_json::Value>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let entry = match self.code() {
            Some(code) if !status.is_server_error() => Entry {
                code: code.as_str(),
                message: self.to_string(),
                detail: self.detail(),
            },
            Some(code) => Entry {
                code: code.as_str(),
                message: code.description().to_owned(),
                detail: None,
            },
            None => Entry {
                code: INTERNAL_CODE,
                message: "internal server error".to_owned(),
                detail: None,
            },
        };
        let body = serde_json::to_vec(&Body { errors: [entry] }).unwrap_or_else(|_| {
            br#"{"errors":[{"code":"UNKNOWN","message":"internal server error"}]}"#.to_vec()
        });
        let mut response = (
            status,
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body,
        )
            .into_response();
        let headers = response.headers_mut();
        match &self {
            Error::MethodNotAllowed { .. } => {
                headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            }
            Error::RangeNotSatisfiable { size, .. } => {
                if let Ok(value) = HeaderValue::try_from(range::unsatisfied_range(*size)) {
                    headers.insert(CONTENT_RANGE, value);
                }
            }
            _ => {}
        }
        if status.is_server_error() {
            response.extensions_mut().insert(Failure::of(&self));
        }
        response
    }
}
