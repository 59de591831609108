//! The `kagami` command: run a node, and manage the images of its built-in
//! store. Errors end here, as `anyhow` reports with their causes.

mod cli;
mod config_flags;
mod demo;
mod image;
mod logging;
mod measure;
mod p2p_flags;
mod trust_flags;

/// The soft limit on open files is often 1024, as many as the registry
/// port's connection budget alone: raise it to the hard limit, so that the
/// budgets, not file descriptors running out, decide what is refused.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
}

fn main() -> std::process::ExitCode {
    let (cli, file) = match config_flags::parse(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("kagami: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    logging::init(cli.log_filter());
    if let Some(file) = &file {
        tracing::info!(path = %file.path.display(), keys = file.entries.len(), "config file read");
        for ignored in &file.ignored {
            tracing::debug!(key = %ignored.key, line = ignored.line, "a K3s key kagami has no use for; ignored");
        }
    }
    raise_open_file_limit();
    // One TLS provider for the whole process (ring, as every configuration
    // kagami builds names), before any HTTPS client exists.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kagami: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kagami: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
