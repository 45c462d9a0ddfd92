//! `apogee broker config get|set <addr|name>` (mqadmin's getBrokerConfig and
//! updateBrokerConfig): a broker's effective configuration and the allow-list
//! of settings it can change while running, asked of the broker itself (a
//! broker name stands for its group's master). A change is kept by the broker
//! across restarts.

use crate::admin::Admin;
use crate::broker_status::{resolve_broker, status_error};
use crate::error::{ToolError, ToolResult};
use crate::output::{render_list, render_one, Format, TableRow};
use apogee_client::transport::{connect_channel, request};
use apogee_client::ClientConfig;
use apogee_proto::cluster::{self, admin_client::AdminClient};
use serde::Serialize;
use tonic::transport::Channel;

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// The settings that can change at runtime, with their values; `--full` prints the
    /// whole effective config as TOML.
    Get {
        /// The broker: its address (host:port) or its broker name (the group's master, looked
        /// up in the NameServer's cluster list).
        #[arg(value_parser = crate::broker_status::broker_target, value_name = "ADDR|NAME")]
        addr: String,
        /// The whole effective config (TOML; in JSON output as a string).
        #[arg(long)]
        full: bool,
    },
    /// Change one runtime setting (see `get` for the keys); the broker keeps it across
    /// restarts.
    Set {
        /// The broker: its address (host:port) or its broker name (the group's master, looked
        /// up in the NameServer's cluster list).
        #[arg(value_parser = crate::broker_status::broker_target, value_name = "ADDR|NAME")]
        addr: String,
        /// The setting's key, e.g. store.retention_hours.
        key: String,
        /// Its new value, as the config file would write it.
        value: String,
    },
}

/// One runtime setting.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SettingRow {
    pub key: String,
    pub value: String,
    /// Changed at runtime (and kept) rather than taken from the config file.
    pub overridden: bool,
    pub description: String,
}

impl TableRow for SettingRow {
    fn headers() -> Vec<&'static str> {
        vec!["KEY", "VALUE", "SOURCE", "DESCRIPTION"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.key.clone(),
            self.value.clone(),
            if self.overridden { "runtime" } else { "config" }.to_string(),
            self.description.clone(),
        ]
    }
}

fn row(s: cluster::RuntimeSetting) -> SettingRow {
    SettingRow {
        key: s.key,
        value: s.value,
        overridden: s.overridden,
        description: s.description,
    }
}

/// A changed setting with its previous value.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ChangedRow {
    pub key: String,
    pub previous: String,
    pub value: String,
}

impl TableRow for ChangedRow {
    fn headers() -> Vec<&'static str> {
        vec!["KEY", "PREVIOUS", "VALUE"]
    }
    fn cells(&self) -> Vec<String> {
        vec![self.key.clone(), self.previous.clone(), self.value.clone()]
    }
}

#[derive(Serialize)]
struct FullConfig {
    config_toml: String,
    runtime: Vec<SettingRow>,
}

fn client(addr: &str, config: &ClientConfig) -> ToolResult<AdminClient<Channel>> {
    let channel = connect_channel(addr, config.request_timeout, config.tls.as_ref())?;
    Ok(AdminClient::new(channel))
}

/// Runs `apogee broker config ...` with the timeout and credentials of `config`; a broker
/// given by name is looked up through `admin`.
pub async fn run(
    cmd: &ConfigCommand,
    admin: &Admin,
    config: &ClientConfig,
    f: Format,
) -> ToolResult<String> {
    let timeout = config.request_timeout;
    match cmd {
        ConfigCommand::Get { addr, full } => {
            let addr = &resolve_broker(admin, addr).await?;
            let resp = client(addr, config)?
                .get_broker_config(request(config, cluster::GetBrokerConfigRequest {}, timeout))
                .await
                .map_err(|s| ToolError::Server(status_error(addr, &s)))?
                .into_inner();
            let rows: Vec<SettingRow> = resp.runtime.into_iter().map(row).collect();
            Ok(match (full, f) {
                (false, _) => render_list(&rows, f),
                (true, Format::Table) => resp.toml,
                (true, Format::Json | Format::Jsonl) => {
                    let full = FullConfig {
                        config_toml: resp.toml,
                        runtime: rows,
                    };
                    crate::output::render_value(&full, f).unwrap_or_default()
                }
            })
        }
        ConfigCommand::Set { addr, key, value } => {
            let addr = &resolve_broker(admin, addr).await?;
            let req = cluster::UpdateBrokerConfigRequest {
                key: key.clone(),
                value: value.clone(),
            };
            let resp = client(addr, config)?
                .update_broker_config(request(config, req, timeout))
                .await
                .map_err(|s| ToolError::Server(status_error(addr, &s)))?
                .into_inner();
            let setting = resp.setting.unwrap_or_default();
            let changed = ChangedRow {
                key: setting.key,
                previous: resp.previous,
                value: setting.value,
            };
            Ok(render_one(&changed, f))
        }
    }
}
