//! The `apogee-nameserver` binary: parses the command line and runs
//! [`apogee_nameserver::serve`] with the web console (apogee-console) through the start-up it shares with `apogee-controller`
//! ([`apogee_nameserver::startup::main`]) until SIGINT or SIGTERM.

/// mimalloc: the glibc allocator was a sixth of the CPU profile of the send path
/// (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use apogee_nameserver::startup::{self, CommandLine};
use apogee_nameserver::NameServerConfig;
use apogee_nameserver_cmd::ProcessArgs;
use apogee_server::net::Listener;
use apogee_server::process;
use clap::Parser;
use std::process::ExitCode;

/// Apogee NameServer: broker registry, topic routes and the clients' access point.
#[derive(Debug, Parser)]
#[command(name = "apogee-nameserver", version)]
struct Args {
    #[command(flatten)]
    process: ProcessArgs,
}

fn main() -> ExitCode {
    let command_line = CommandLine::from(Args::parse().process);
    startup::main("nameserver", command_line, serve)
}

/// Binds the operations endpoint beside the gRPC listener and serves until a signal.
async fn serve(config: NameServerConfig, listener: Listener) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("listener address")?;
    let ops = match config.http_listen.as_str() {
        "" => None,
        http => Some(
            apogee_server::ops::OpsListener::bind(http)
                .await
                .with_context(|| format!("cannot listen on {http} (http_listen)"))?,
        ),
    };
    let http = ops.as_ref().and_then(|o| o.local_addr().ok()).map_or_else(
        || "off".to_string(),
        |a| match config.tls.enabled() {
            true => format!("https://{a}"),
            false => format!("http://{a}"),
        },
    );
    tracing::info!(
        "nameserver {} listening on {addr} (gRPC); metrics and health on {http}",
        env!("CARGO_PKG_VERSION")
    );
    apogee_nameserver::serve(
        config,
        listener,
        ops,
        Some(apogee_console::routes),
        process::shutdown_signal(),
    )
    .await?;
    Ok(())
}
