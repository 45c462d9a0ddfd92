//! What each Apogee binary's `main` does the same way: wait for the signal that stops it,
//! print a checked config, set up logging, and turn the outcome into an exit code (2 for a
//! bad config, 1 for any other failure, in one line on stderr, without a backtrace).

use std::process::ExitCode;

/// Completes on SIGINT (Ctrl-C) or SIGTERM (logged which). A signal that cannot be listened
/// for is logged and never completes, so the other still stops the process.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("received SIGINT"),
        _ = term => tracing::info!("received SIGTERM"),
    }
}

/// `--check-config`: prints "config OK" and the effective config `toml`. A reader that
/// closes early (`| head -1`) ends the output, not in a failure.
pub fn print_checked_config(toml: &str) -> ExitCode {
    match crate::stdout::print(&format!("config OK\n{toml}")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing the config: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up logging as the config says; a bad setting is printed and is exit code 2.
pub fn init_logging(
    level: Option<&str>,
    format: crate::logging::LogFormat,
) -> Result<(), ExitCode> {
    crate::logging::init(level, format).map_err(|e| {
        eprintln!("config error: {e}");
        ExitCode::from(2)
    })
}

/// The exit code of a server that ran: success, or the error logged and printed (exit 1).
pub fn exit_code(outcome: Result<(), impl std::fmt::Display>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
