//! Log setup: `tracing` to stderr, readable at `info`, one line per request
//! at `debug`.

use tracing_subscriber::EnvFilter;

/// `RUST_LOG` wins over the given filter.
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
