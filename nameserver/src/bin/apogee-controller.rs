//! The `apogee-controller` binary: the controller of automatic failover as its own process
//! (see [`apogee_nameserver::controller_process`]). Parses the command line, loads the
//! config, sets up logging, binds the listener and runs the controller until SIGINT or
//! SIGTERM.

use anyhow::Context;
use apogee_nameserver::controller_process::{self, ControllerProcessConfig};
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

fn load_config(
    args: &Args,
) -> Result<ControllerProcessConfig, apogee_server::config_file::ConfigError> {
    let mut config = ControllerProcessConfig::load(args.config.as_deref())?;
    if let Some(listen) = &args.listen {
        config.listen = listen.clone();
        config.validate()?;
    }
    Ok(config)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        return process::print_checked_config(&config.to_toml());
    }
    if let Err(code) = process::init_logging(config.log_level.as_deref(), config.log_format) {
        return code;
    }
    process::exit_code(run(config))
}

#[tokio::main]
async fn run(config: ControllerProcessConfig) -> anyhow::Result<()> {
    let listener = apogee_server::net::Listener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr().context("listener address")?;
    tracing::info!(
        "controller {} listening on {addr} (gRPC)",
        env!("CARGO_PKG_VERSION")
    );
    controller_process::serve(config, listener, process::shutdown_signal()).await?;
    tracing::info!("controller stopped");
    Ok(())
}
