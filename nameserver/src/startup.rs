//! The start-up the `apogee-nameserver` and `apogee-controller` executables share once their
//! command lines are parsed: the config loaded (`--listen` over it), `--check-config`,
//! logging, the runtime, the gRPC listener bound, and the outcome as the exit code
//! ([`apogee_server::process`] holds the steps every Apogee binary shares).

use crate::controller_process::ControllerProcessConfig;
use crate::NameServerConfig;
use anyhow::Context;
use apogee_server::config_file::ConfigError;
use apogee_server::logging::LogFormat;
use apogee_server::net::Listener;
use apogee_server::process::{exit_code, init_logging, print_checked_config};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
/// The flags every server process's command line has (the NameServer's, the controller's),
/// parsed by its executable; [`main`] acts on them.
#[derive(Clone, Debug, Default)]
pub struct CommandLine {
    /// `--config`: the TOML file; defaults apply without one.
    pub config: Option<PathBuf>,
    /// `--listen`: host:port to listen on, over the file and the environment.
    pub listen: Option<String>,
    /// `--check-config`: load and validate the config, print the effective config and exit.
    pub check_config: bool,
}

/// What [`main`] needs of a server process's config.
pub trait ProcessConfig: Sized {
    /// The file (defaults without one) with its environment overrides, validated.
    fn load(file: Option<&Path>) -> Result<Self, ConfigError>;
    /// Checks the settings together (again after `--listen` replaced the address).
    fn validate(&self) -> Result<(), ConfigError>;
    /// The gRPC listener's host:port.
    fn listen(&self) -> &str;
    /// The same, for `--listen` to replace.
    fn listen_mut(&mut self) -> &mut String;
    /// The effective config as TOML, for `--check-config`.
    fn to_toml(&self) -> String;
    /// The log filter used when RUST_LOG is not set.
    fn log_level(&self) -> Option<&str>;
    /// How log lines are written.
    fn log_format(&self) -> LogFormat;
}

/// A server process's `main` once its command line is parsed: loads the config (a bad one is
/// printed and is exit code 2), prints it and exits for `--check-config`, sets up logging,
/// then on a multi-threaded runtime binds the gRPC listener and runs `serve` with the config
/// and the listener (`serve` stops at SIGINT or SIGTERM: [`apogee_server::process::shutdown_signal`]), logging
/// "`name` stopped" when it returns. The outcome is the exit code ([`apogee_server::process::exit_code`]).
pub fn main<C, Serve, Served>(name: &str, command_line: CommandLine, serve: Serve) -> ExitCode
where
    C: ProcessConfig,
    Serve: FnOnce(C, Listener) -> Served,
    Served: Future<Output = anyhow::Result<()>>,
{
    let config = match load::<C>(&command_line) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if command_line.check_config {
        return print_checked_config(&config.to_toml());
    }
    if let Err(code) = init_logging(config.log_level(), config.log_format()) {
        return code;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return exit_code(Err(format!("starting the async runtime: {e}"))),
    };
    let outcome = runtime.block_on(async {
        let listener = Listener::bind(config.listen())
            .await
            .with_context(|| format!("cannot listen on {}", config.listen()))?;
        serve(config, listener).await?;
        tracing::info!("{name} stopped");
        Ok::<(), anyhow::Error>(())
    });
    drop(runtime);
    exit_code(outcome)
}

/// The config file's settings with `--listen` over them.
fn load<C: ProcessConfig>(command_line: &CommandLine) -> Result<C, ConfigError> {
    let mut config = C::load(command_line.config.as_deref())?;
    if let Some(listen) = &command_line.listen {
        config.listen_mut().clone_from(listen);
        config.validate()?;
    }
    Ok(config)
}

impl ProcessConfig for NameServerConfig {
    fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        NameServerConfig::load(file)
    }
    fn validate(&self) -> Result<(), ConfigError> {
        NameServerConfig::validate(self)
    }
    fn listen(&self) -> &str {
        &self.listen
    }
    fn listen_mut(&mut self) -> &mut String {
        &mut self.listen
    }
    fn to_toml(&self) -> String {
        NameServerConfig::to_toml(self)
    }
    fn log_level(&self) -> Option<&str> {
        self.log_level.as_deref()
    }
    fn log_format(&self) -> LogFormat {
        self.log_format
    }
}

impl ProcessConfig for ControllerProcessConfig {
    fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        ControllerProcessConfig::load(file)
    }
    fn validate(&self) -> Result<(), ConfigError> {
        ControllerProcessConfig::validate(self)
    }
    fn listen(&self) -> &str {
        &self.listen
    }
    fn listen_mut(&mut self) -> &mut String {
        &mut self.listen
    }
    fn to_toml(&self) -> String {
        ControllerProcessConfig::to_toml(self)
    }
    fn log_level(&self) -> Option<&str> {
        self.log_level.as_deref()
    }
    fn log_format(&self) -> LogFormat {
        self.log_format
    }
}
