//! Error text for logs and answers: an error with all its causes on one
//! line (TLS and I/O failures hide the useful part in the causes).

/// `error: cause: cause …`.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
