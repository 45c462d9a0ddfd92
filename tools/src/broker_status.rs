//! The admin library behind `apogee broker status <addr>` and the replication columns of
//! `apogee cluster list`: asks brokers themselves (their Admin.GetBrokerStatus; a NameServer
//! keeps no log or replication state), one directly or every registered member at once with
//! a short timeout, so that a member that does not answer is shown as unreachable instead
//! of failing the whole listing. The rows are built in [`crate::replication_view`].

use crate::admin::Admin;
use crate::error::{ToolError, ToolResult};
use crate::output::{render_list, Format};
use crate::replication_view::{cluster_rows, render_status, ClusterRow, Probes, StatusView};
use apogee_client::transport::{connect_channel, parse_host_port, request};
use apogee_client::ClientConfig;
use apogee_proto::cluster::{self, admin_client::AdminClient, BrokerStatus};
use apogee_proto::time::now_ms;
use std::time::Duration;

/// Longest `cluster list` waits for one member's status (less when `--timeout` is shorter).
pub const MEMBER_STATUS_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, clap::Subcommand)]
pub enum BrokerCommand {
    /// One broker in detail: role, log offsets, topics and groups, and its replication
    /// state (a master's slaves, a slave's link to its master). Asks the broker directly.
    Status {
        /// The broker's address (host:port, as `apogee cluster list` shows it).
        #[arg(value_parser = broker_addr, value_name = "ADDR")]
        addr: String,
    },
    /// A broker's effective config and the settings it can change while running.
    #[command(subcommand)]
    Config(crate::broker_config::ConfigCommand),
}

/// A `host:port` (a bad one is a usage error, exit 2).
pub(crate) fn broker_addr(s: &str) -> Result<String, String> {
    parse_host_port(s)
        .map(|_| s.trim().to_string())
        .map_err(|e| e.to_string())
}

/// What a failed GetBrokerStatus call means, naming the broker.
pub fn status_error(addr: &str, status: &tonic::Status) -> String {
    use tonic::Code;
    let msg = status.message();
    match status.code() {
        Code::Unavailable => format!("cannot reach broker {addr}: {msg}"),
        Code::DeadlineExceeded | Code::Cancelled => format!("broker {addr} did not answer in time"),
        // A NameServer says to ask a broker; an older broker has no such call.
        Code::Unimplemented if !msg.is_empty() => format!("{addr}: {msg}"),
        Code::Unimplemented => format!("{addr} does not serve GetBrokerStatus"),
        code if msg.is_empty() => format!("broker {addr}: request failed: {code:?}"),
        _ => format!("broker {addr}: {msg}"),
    }
}

/// Asks the broker at `addr` for its status, within `timeout` (connecting included), with
/// the metadata (credentials) of `config`.
pub async fn fetch_status(
    addr: &str,
    config: &ClientConfig,
    timeout: Duration,
) -> Result<BrokerStatus, String> {
    let channel = connect_channel(addr, timeout, config.tls.as_ref()).map_err(|e| e.to_string())?;
    let mut client = AdminClient::new(channel);
    let call =
        client.get_broker_status(request(config, cluster::GetBrokerStatusRequest {}, timeout));
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(format!("broker {addr} did not answer in time")),
        Ok(Err(status)) => Err(status_error(addr, &status)),
        Ok(Ok(resp)) => resp
            .into_inner()
            .status
            .ok_or_else(|| format!("broker {addr} answered without a status")),
    }
}

/// Every member's status, asked all at once; a member without an endpoint is not asked.
pub async fn probe_members(
    info: &cluster::GetClusterInfoResponse,
    config: &ClientConfig,
    timeout: Duration,
) -> Probes {
    let asks = info.groups.iter().flat_map(|g| {
        g.members
            .iter()
            .filter(|m| !m.endpoint.is_empty())
            .map(move |m| async move {
                let key = (g.cluster_name.clone(), g.broker_name.clone(), m.broker_id);
                (key, fetch_status(&m.endpoint, config, timeout).await)
            })
    });
    futures::future::join_all(asks).await.into_iter().collect()
}

impl Admin {
    /// Every registered broker process with its log end, replication lag and in-sync state;
    /// each member is asked for at most `member_timeout`.
    pub async fn cluster_list(&self, member_timeout: Duration) -> ToolResult<Vec<ClusterRow>> {
        let info = self.get_cluster_info().await?;
        let probes = probe_members(&info, &self.config, member_timeout).await;
        Ok(cluster_rows(&info, &probes, now_ms()))
    }
}

/// `apogee cluster list`: the NameServer's members with what each of them answered.
pub async fn cluster_list(admin: &Admin, timeout: Duration, f: Format) -> ToolResult<String> {
    let rows = admin
        .cluster_list(timeout.min(MEMBER_STATUS_TIMEOUT))
        .await?;
    Ok(render_list(&rows, f))
}

/// Runs `apogee broker ...` with the timeout and credentials of `config`.
pub async fn run(cmd: &BrokerCommand, config: &ClientConfig, f: Format) -> ToolResult<String> {
    let timeout = config.request_timeout;
    match cmd {
        BrokerCommand::Status { addr } => {
            let status = fetch_status(addr, config, timeout)
                .await
                .map_err(ToolError::Server)?;
            Ok(render_status(&StatusView::new(&status, now_ms()), f))
        }
        BrokerCommand::Config(cmd) => crate::broker_config::run(cmd, config, f).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_broker() {
        let e = status_error("h:1", &tonic::Status::unavailable("connection refused"));
        assert_eq!(e, "cannot reach broker h:1: connection refused");
        let e = status_error("h:1", &tonic::Status::deadline_exceeded(""));
        assert_eq!(e, "broker h:1 did not answer in time");
        let e = status_error(
            "ns:9876",
            &tonic::Status::unimplemented("ask a broker: `apogee broker status <broker addr>`"),
        );
        assert!(e.starts_with("ns:9876: ask a broker"), "{e}");
        let e = status_error("h:1", &tonic::Status::unimplemented(""));
        assert_eq!(e, "h:1 does not serve GetBrokerStatus");
    }

    #[test]
    fn addresses_must_be_host_and_port() {
        assert_eq!(broker_addr(" h:10911 ").unwrap(), "h:10911");
        assert!(broker_addr("h").is_err());
        assert!(broker_addr("h:0").is_err());
    }

    #[tokio::test]
    async fn a_broker_that_does_not_answer_is_an_error_not_a_hang() {
        // Port 1 on the loopback refuses connections.
        let e = fetch_status(
            "127.0.0.1:1",
            &ClientConfig::default(),
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
        assert!(e.contains("127.0.0.1:1"), "{e}");
    }

    #[tokio::test]
    async fn every_member_is_asked_and_one_without_an_endpoint_is_not() {
        let member = |id: i64, endpoint: &str| cluster::BrokerMember {
            broker_id: id,
            endpoint: endpoint.into(),
            ..Default::default()
        };
        let info = cluster::GetClusterInfoResponse {
            groups: vec![cluster::BrokerGroup {
                cluster_name: "c".into(),
                broker_name: "b".into(),
                members: vec![member(0, "127.0.0.1:1"), member(1, "")],
            }],
        };
        let probes = probe_members(&info, &ClientConfig::default(), Duration::from_secs(2)).await;
        assert_eq!(probes.len(), 1);
        assert!(probes[&("c".to_string(), "b".to_string(), 0)].is_err());
    }
}
