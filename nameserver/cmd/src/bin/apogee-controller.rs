//! The `apogee-controller` binary: the controller of automatic failover as its own process
//! (see [`apogee_nameserver::controller_process`]). Parses the command line and runs the
//! controller through the start-up it shares with `apogee-nameserver`
//! ([`apogee_nameserver::startup::main`]) until SIGINT or SIGTERM.

use anyhow::Context;
use apogee_nameserver::controller_process::{self, ControllerProcessConfig};
use apogee_nameserver::startup::{self, CommandLine};
use apogee_server::net::Listener;
use apogee_server::process;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Apogee controller: the Raft group deciding broker groups' masters, run on its own.
#[derive(Debug, Parser)]
#[command(name = "apogee-controller", version)]
struct Args {
    /// TOML config file (see deploy/controller.toml); defaults apply without one.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// host:port to listen on; overrides the config file and APOGEE_CONTROLLER_LISTEN.
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
    startup::main("controller", command_line, serve)
}

/// Serves the controller on the listener until a signal.
async fn serve(config: ControllerProcessConfig, listener: Listener) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("listener address")?;
    tracing::info!(
        "controller {} listening on {addr} (gRPC)",
        env!("CARGO_PKG_VERSION")
    );
    controller_process::serve(config, listener, process::shutdown_signal()).await?;
    Ok(())
}
