//! The `apogee-controller` binary: the controller of automatic failover as its own process
//! (see [`apogee_nameserver::controller_process`]). Parses the command line and runs the
//! controller through the start-up it shares with `apogee-nameserver`
//! ([`apogee_nameserver::startup::main`]) until SIGINT or SIGTERM.

use anyhow::Context;
use apogee_nameserver::controller_process::{self, ControllerProcessConfig};
use apogee_nameserver::startup::{self, CommandLine};
use apogee_nameserver_cmd::ProcessArgs;
use apogee_server::net::Listener;
use apogee_server::process;
use clap::Parser;
use std::process::ExitCode;

/// Apogee controller: the Raft group deciding broker groups' masters, run on its own.
#[derive(Debug, Parser)]
#[command(name = "apogee-controller", version)]
struct Args {
    #[command(flatten)]
    process: ProcessArgs,
}

fn main() -> ExitCode {
    let command_line = CommandLine::from(Args::parse().process);
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
