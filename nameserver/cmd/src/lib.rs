//! What the `apogee-nameserver` and `apogee-controller` command lines share: both processes
//! take the same three flags and run through the one start-up of the NameServer library
//! (`apogee_nameserver::startup`), which knows nothing of clap.

use apogee_nameserver::startup::CommandLine;
use std::path::PathBuf;

/// The flags of both processes.
#[derive(Debug, clap::Args)]
pub struct ProcessArgs {
    /// TOML config file (see deploy/nameserver.toml or deploy/controller.toml); defaults apply
    /// without one.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// host:port to listen on; overrides the config file and APOGEE_NAMESERVER_LISTEN
    /// (APOGEE_CONTROLLER_LISTEN for the controller).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Load and validate the config, print the effective config and exit.
    #[arg(long)]
    check_config: bool,
}

impl From<ProcessArgs> for CommandLine {
    fn from(args: ProcessArgs) -> CommandLine {
        CommandLine {
            config: args.config,
            listen: args.listen,
            check_config: args.check_config,
        }
    }
}
