//! The `apogee-nameserver` binary: parses the command line, loads the config,
//! sets up logging, binds the listener and runs [`apogee_nameserver::serve`]
//! until SIGINT or SIGTERM.

/// mimalloc: the glibc allocator was a sixth of the CPU profile of the send path
/// (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use apogee_nameserver::NameServerConfig;
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

fn load_config(args: &Args) -> Result<NameServerConfig, apogee_server::config_file::ConfigError> {
    let mut config = NameServerConfig::load(args.config.as_deref())?;
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
async fn run(config: NameServerConfig) -> anyhow::Result<()> {
    let listener = apogee_server::net::Listener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
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
    apogee_nameserver::serve(config, listener, ops, process::shutdown_signal()).await?;
    tracing::info!("nameserver stopped");
    Ok(())
}
