//! `apogee broker status|config|elect` and `apogee controller status`: their arguments and
//! what they print, over the admin library's broker and controller views
//! ([`apogee_admin::broker_status`], [`apogee_admin::controller`]).

use apogee_admin::admin::Admin;
use apogee_admin::broker_status::{broker_group_name, broker_target, fetch_status, resolve_broker};
use apogee_admin::controller::render_controller_status;
use apogee_admin::error::{ToolError, ToolResult};
use apogee_admin::output::{render_one, Format};
use apogee_admin::replication_view::{render_status, StatusView};
use apogee_client::ClientConfig;
use apogee_proto::time::now_ms;

#[derive(Debug, clap::Subcommand)]
pub enum BrokerCommand {
    /// One broker in detail: role, log offsets, topics and groups, and its replication
    /// state (a master's slaves, a slave's link to its master). Asks the broker directly.
    Status {
        /// The broker: its address (host:port, as `apogee cluster list` shows it) or its
        /// broker name (the group's master, looked up in the NameServer's cluster list).
        #[arg(value_parser = broker_target, value_name = "ADDR|NAME")]
        addr: String,
    },
    /// A broker's effective config and the settings it can change while running.
    #[command(subcommand)]
    Config(crate::broker_config::ConfigCommand),
    /// A planned switch of a broker group's master (controller mode): to the member named,
    /// which must be in sync, or to the best in-sync member other than the current master.
    /// Asks the NameServers' controller.
    Elect {
        /// The broker group's name.
        #[arg(value_parser = broker_group_name, value_name = "BROKER-NAME")]
        broker: String,
        /// The member id to make master (member ids start at 1).
        #[arg(long, value_name = "ID", value_parser = clap::value_parser!(u64).range(1..))]
        member: Option<u64>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ControllerCommand {
    /// The NameServer's controller: node, leader, term, last applied entry, and each broker
    /// group's master, master epoch, in-sync set and members (as the leader confirms them;
    /// marked stale when the leader could not be asked).
    Status,
}

/// Runs `apogee broker ...` with the timeout and credentials of `config`; a broker given by
/// name is looked up through `admin`.
pub async fn run(
    cmd: &BrokerCommand,
    admin: &Admin,
    config: &ClientConfig,
    f: Format,
) -> ToolResult<String> {
    let timeout = config.request_timeout;
    match cmd {
        BrokerCommand::Status { addr } => {
            let addr = resolve_broker(admin, addr).await?;
            let status = fetch_status(&addr, config, timeout)
                .await
                .map_err(|e| ToolError::Server(e.message))?;
            Ok(render_status(&StatusView::new(&status, now_ms()), f))
        }
        BrokerCommand::Config(cmd) => crate::broker_config::run(cmd, admin, config, f).await,
        BrokerCommand::Elect { broker, member } => elect(admin, broker, *member, f).await,
    }
}

/// Runs `apogee controller ...`.
pub async fn run_controller(
    admin: &Admin,
    cmd: &ControllerCommand,
    f: Format,
) -> ToolResult<String> {
    match cmd {
        ControllerCommand::Status => Ok(render_controller_status(
            &admin.controller_status().await?,
            f,
        )),
    }
}

/// Runs `apogee broker elect`.
pub async fn elect(
    admin: &Admin,
    broker: &str,
    member: Option<u64>,
    f: Format,
) -> ToolResult<String> {
    Ok(render_one(&admin.elect_master(broker, member).await?, f))
}
