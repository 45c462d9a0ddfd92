//! `apogee broker config get|set <addr|name>` (mqadmin's getBrokerConfig and
//! updateBrokerConfig): a broker's effective configuration and the allow-list
//! of settings it can change while running, asked of the broker itself (a
//! broker name stands for its group's master). A change is the group's: made on
//! the master, kept across restarts and elections, and applied by every member.

use crate::admin::Admin;
use crate::broker_status::{resolve_broker, status_error};
use crate::error::{ToolError, ToolResult};
use crate::output::{render_list, render_one, Format, TableRow};
use apogee_client::transport::{connect_channel, request};
use apogee_client::ClientConfig;
use apogee_proto::cluster::{self, admin_client::AdminClient};
use serde::Serialize;
use std::time::{Duration, Instant};
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
    /// Change one runtime setting of a broker group (see `get` for the keys) on its master,
    /// which keeps it across restarts and elections and passes it to every member (a slave
    /// refuses a change, naming its master).
    Set {
        /// The group's master: its broker name (looked up in the NameServer's cluster list)
        /// or its address (host:port).
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

/// A changed setting with its previous value, and what each member of the group runs with.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ChangedRow {
    pub key: String,
    pub previous: String,
    pub value: String,
    /// Every member of the group the NameServers list (the master included).
    pub members: Vec<MemberSetting>,
}

/// The value of a setting one member of the group runs with after a change.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MemberSetting {
    pub address: String,
    pub value: String,
}

impl TableRow for MemberSetting {
    fn headers() -> Vec<&'static str> {
        vec!["MEMBER", "RUNS WITH"]
    }
    fn cells(&self) -> Vec<String> {
        vec![self.address.clone(), self.value.clone()]
    }
}

/// How long `set` waits for the group's other members to run with a change (they apply it
/// as it replicates, within milliseconds while linked to their master).
const MEMBER_WAIT: Duration = Duration::from_secs(5);

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

/// The broker at `addr`'s effective config and runtime settings.
async fn fetch(addr: &str, config: &ClientConfig) -> ToolResult<cluster::GetBrokerConfigResponse> {
    let req = request(
        config,
        cluster::GetBrokerConfigRequest {},
        config.request_timeout,
    );
    Ok(client(addr, config)?
        .get_broker_config(req)
        .await
        .map_err(|s| ToolError::Server(status_error(addr, &s)))?
        .into_inner())
}

/// Every member of the group whose master is at `master` (per the NameServers; just the
/// master when they do not list it) with the value of `key` it runs with: `value` once it
/// does, else what it has after [`MEMBER_WAIT`].
async fn members_running(
    admin: &Admin,
    config: &ClientConfig,
    master: &str,
    key: &str,
    value: &str,
) -> Vec<MemberSetting> {
    let mut endpoints: Vec<String> = match admin.get_cluster_info().await {
        Ok(info) => info
            .groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m.endpoint == master))
            .flat_map(|g| &g.members)
            .map(|m| m.endpoint.clone())
            .filter(|e| !e.is_empty())
            .collect(),
        Err(_) => Vec::new(),
    };
    if !endpoints.iter().any(|e| e == master) {
        endpoints.push(master.to_string());
    }
    endpoints.sort();
    endpoints.dedup();
    let deadline = Instant::now() + MEMBER_WAIT;
    let mut members = Vec::with_capacity(endpoints.len());
    for address in endpoints {
        let running = loop {
            let now = match fetch(&address, config).await {
                Ok(r) => r
                    .runtime
                    .into_iter()
                    .find(|s| s.key == key)
                    .map_or_else(|| "(not listed)".to_string(), |s| s.value),
                Err(e) => format!("(unknown: {e})"),
            };
            if now == value || Instant::now() >= deadline {
                break now;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        members.push(MemberSetting {
            address,
            value: running,
        });
    }
    members
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
            let resp = fetch(addr, config).await?;
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
            let members = members_running(admin, config, addr, &setting.key, &setting.value).await;
            let changed = ChangedRow {
                key: setting.key,
                previous: resp.previous,
                value: setting.value,
                members,
            };
            Ok(match f {
                Format::Table => format!(
                    "{}\n{}",
                    render_one(&changed, f),
                    render_list(&changed.members, f)
                ),
                Format::Json | Format::Jsonl => render_one(&changed, f),
            })
        }
    }
}
