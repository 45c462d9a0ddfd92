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
use apogee_server::net::Listener;
use apogee_server::process;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Apogee NameServer: broker registry, topic routes and the clients' access point.
#[derive(Debug, Parser)]
#[command(name = "apogee-nameserver", version)]
struct Args {
    /// TOML config file (see deploy/nameserver.toml); defaults apply without one.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// host:port to listen on; overrides the config file and APOGEE_NAMESERVER_LISTEN.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Load and validate the config, print the effective config and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let command_line = CommandLine {
        config: args.config,
        listen: args.listen,
        check_config: args.check_config,
    };
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
