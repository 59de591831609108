//! Log setup: `tracing` to stderr, readable at `info`, one line per request
//! at `debug`.
//!
//! A bare level (`--log-level debug`) is kagami's own: the libraries it
//! uses log only their warnings, so `debug` shows kagami's lines and not,
//! say, every HTTP/2 frame. A filter (`--log-level info,h2=trace`, or
//! `RUST_LOG`, which wins) is taken as written, which is how a library's
//! detail is reached.

use tracing_subscriber::EnvFilter;

/// Quiet always, unless a filter names them: expected conditions that
/// libraries log as warnings. libp2p-kad warns "Failed to trigger
/// bootstrap: No known peers" whenever a node alone starts listening
/// (its own automatic bootstrap, which cannot be turned off); kagami says
/// once that it has no peers yet. Its only other warning is for record
/// replication, which kagami does not use.
const QUIETED: &str = "libp2p_kad::behaviour=error";

/// `RUST_LOG` wins over the given filter.
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(directives(level)))
        .unwrap_or_else(|_| EnvFilter::new(directives("info")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The filter for `--log-level VALUE`.
fn directives(value: &str) -> String {
    let value = value.trim();
    if value.contains(['=', ',']) {
        return value.to_owned();
    }
    match value.to_ascii_lowercase().as_str() {
        // Libraries at `warn`, kagami's crates (every target starting
        // with `kagami`) at the level asked for.
        level @ ("info" | "debug" | "trace") => format!("warn,{QUIETED},kagami={level}"),
        level @ ("warn" | "error" | "off") => format!("{level},{QUIETED}"),
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_level_is_kagamis_and_a_filter_is_taken_as_written() {
        assert_eq!(
            directives("debug"),
            "warn,libp2p_kad::behaviour=error,kagami=debug"
        );
        assert_eq!(
            directives("INFO"),
            "warn,libp2p_kad::behaviour=error,kagami=info"
        );
        assert_eq!(directives("warn"), "warn,libp2p_kad::behaviour=error");
        assert_eq!(directives("info,h2=trace"), "info,h2=trace");
        assert_eq!(directives("kagami_registry=debug"), "kagami_registry=debug");
        for value in ["debug", "warn", "info,h2=trace"] {
            assert!(EnvFilter::try_new(directives(value)).is_ok(), "{value}");
        }
    }
}
