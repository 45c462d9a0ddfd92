//! `apogee broker status|config|elect`, `apogee controller status` and `apogee cluster
//! rolling-restart`: their arguments and what they print, over the admin library's broker
//! and controller views ([`apogee_admin::broker_status`], [`apogee_admin::controller`]) and
//! the rolling restart ([`crate::rolling_restart`], [`crate::rolling_restart_run`]).

use crate::rolling_restart::RollingRestart;
use apogee_admin::admin::Admin;
use apogee_admin::broker_status::{broker_group_name, broker_target, fetch_status, resolve_broker};
use apogee_admin::controller::render_controller_status;
use apogee_admin::error::{ToolError, ToolResult};
use apogee_admin::output::{render_one, Format};
use apogee_admin::replication_view::{render_status, StatusView};
use apogee_client::ClientConfig;
use apogee_proto::time::now_ms;
use std::time::Duration;

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

/// `apogee cluster rolling-restart`.
#[derive(Debug, clap::Args)]
pub struct RollingRestartArgs {
    /// The command that restarts one member (run with `sh -c`, once per member, with
    /// APOGEE_GROUP, APOGEE_MEMBER (the member id) and APOGEE_ENDPOINT (host:port) set),
    /// e.g. 'ssh "${APOGEE_ENDPOINT%:*}" sudo systemctl restart apogee-broker' or
    /// 'kubectl delete pod "$APOGEE_GROUP-$((APOGEE_MEMBER - 1))" --wait'. A non-zero exit
    /// stops the run.
    #[arg(long, value_name = "CMD", value_parser = restart_command)]
    pub restart_command: String,
    /// A broker group to restart (repeatable; default every group the controller holds).
    #[arg(long = "group", value_parser = broker_group_name, value_name = "BROKER-NAME")]
    pub groups: Vec<String>,
    /// The longest one member's turn may take: the switch (a master), the restart command
    /// and its return to the in-sync set.
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout_per_member: u64,
    /// Print the plan (the order, and what will be done to each member) and do nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn restart_command(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("the restart command is empty".into());
    }
    Ok(s.to_string())
}

impl RollingRestartArgs {
    pub fn spec(&self) -> RollingRestart {
        RollingRestart {
            restart_command: self.restart_command.clone(),
            groups: self.groups.clone(),
            timeout_per_member: Duration::from_secs(self.timeout_per_member),
        }
    }
}

/// Runs `apogee cluster rolling-restart`: the plan with `--dry-run`, else the restart, its
/// progress on stderr and the members' turns (those done, when it stops) as the result.
pub async fn rolling_restart<W: std::io::Write>(
    args: &RollingRestartArgs,
    admin: &Admin,
    config: &ClientConfig,
    f: Format,
    out: &mut W,
) -> ToolResult<()> {
    let spec = args.spec();
    if args.dry_run {
        let plan = crate::rolling_restart_run::dry_run(admin, &spec).await?;
        return crate::cli::write_partial(out, &plan, None, f);
    }
    let (turns, error) =
        crate::rolling_restart_run::run(admin, config, &spec, &mut std::io::stderr()).await;
    crate::cli::write_partial(out, &turns, error, f)
}
