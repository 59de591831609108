//! The error codes of the OCI distribution spec that a read-only registry
//! answers with, and the HTTP status each goes with.

/// An OCI distribution error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The blob is not known to the registry.
    BlobUnknown,
    /// The manifest is not known to the registry.
    ManifestUnknown,
    /// The repository name is not valid.
    NameInvalid,
    /// The repository is not known to the registry.
    NameUnknown,
    /// The digest is not valid.
    DigestInvalid,
    /// The manifest (or tag) reference is not valid.
    ManifestInvalid,
    /// The operation is not supported (all pushes, on this registry).
    Unsupported,
    /// The client is not authenticated.
    Unauthorized,
    /// The client may not access the resource.
    Denied,
    /// The client sent too many requests.
    TooManyRequests,
    /// The requested range cannot be served.
    RangeInvalid,
    /// The registry could not serve the request right now.
    Unavailable,
}

impl ErrorCode {
    /// The code as it appears in an error body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }

    /// The HTTP status the distribution registry answers this code with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BlobUnknown | ErrorCode::ManifestUnknown | ErrorCode::NameUnknown => 404,
            ErrorCode::NameInvalid | ErrorCode::DigestInvalid | ErrorCode::ManifestInvalid => 400,
            ErrorCode::Unsupported => 405,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Denied => 403,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::RangeInvalid => 416,
            ErrorCode::Unavailable => 503,
        }
    }

    /// The spec's one-line description, used as the default message.
    pub fn description(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "blob unknown to registry",
            ErrorCode::ManifestUnknown => "manifest unknown",
            ErrorCode::NameInvalid => "invalid repository name",
            ErrorCode::NameUnknown => "repository name not known to registry",
            ErrorCode::DigestInvalid => "provided digest did not match uploaded content",
            ErrorCode::ManifestInvalid => "manifest invalid",
            ErrorCode::Unsupported => "the operation is unsupported",
            ErrorCode::Unauthorized => "authentication required",
            ErrorCode::Denied => "requested access to the resource is denied",
            ErrorCode::TooManyRequests => "too many requests",
            ErrorCode::RangeInvalid => "requested range not satisfiable",
            ErrorCode::Unavailable => "service unavailable",
        }
    }
}
