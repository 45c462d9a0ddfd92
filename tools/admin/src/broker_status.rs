//! The admin library behind `apogee broker status <addr>` and the replication columns of
//! `apogee cluster list`: asks brokers themselves (their Admin.GetBrokerStatus; a NameServer
//! keeps no log or replication state), one directly or every registered member at once with
//! a short timeout, so that a member that does not answer is shown as unreachable instead
//! of failing the whole listing. The rows are built in [`crate::replication_view`].

use crate::admin::Admin;
use crate::error::{ToolError, ToolResult};
use crate::output::Format;
use crate::replication_view::{
    cluster_rows, render_cluster_rows, ClusterRow, ProbeCause, ProbeFailure, Probes,
};
use apogee_client::transport::{connect_channel, parse_host_port, request};
use apogee_client::ClientConfig;
use apogee_proto::cluster::{self, admin_client::AdminClient, BrokerStatus};
use apogee_proto::time::now_ms;
use std::time::Duration;

/// Longest `cluster list` waits for one member's status (less when `--timeout` is shorter).
pub const MEMBER_STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// A broker group's name (a bad one is a usage error, exit 2).
pub fn broker_group_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':')
    {
        return Err(format!(
            "{s:?} is not a broker name (no spaces, no ':'; `apogee cluster list` shows them)"
        ));
    }
    Ok(s.to_string())
}

/// A `host:port` (a bad one is a usage error, exit 2).
pub fn broker_addr(s: &str) -> Result<String, String> {
    parse_host_port(s)
        .map(|_| s.trim().to_string())
        .map_err(|e| e.to_string())
}

/// A broker given as `host:port` or as a broker name (a bad one is a usage error, exit 2).
pub fn broker_target(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.contains(':') {
        return broker_addr(s);
    }
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{s:?} is neither host:port nor a broker name (a name has no spaces)"
        ));
    }
    Ok(s.to_string())
}

/// The address of the broker `target` names: `host:port` as given, or a broker name's master
/// (broker id 0) as the NameServer's cluster list registers it.
pub async fn resolve_broker(admin: &Admin, target: &str) -> ToolResult<String> {
    if parse_host_port(target).is_ok() {
        return Ok(target.to_string());
    }
    let info = admin.get_cluster_info().await?;
    master_of(&info, target).map_err(ToolError::Usage)
}

/// The registered master endpoint of broker group `name`, or what is registered instead.
fn master_of(info: &cluster::GetClusterInfoResponse, name: &str) -> Result<String, String> {
    let groups: Vec<&cluster::BrokerGroup> = info
        .groups
        .iter()
        .filter(|g| g.broker_name == name)
        .collect();
    if groups.is_empty() {
        let mut names: Vec<&str> = info.groups.iter().map(|g| g.broker_name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        return Err(format!(
            "no broker named {name} is registered (registered: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ));
    }
    let members = groups.iter().flat_map(|g| g.members.iter());
    if let Some(master) = members
        .clone()
        .find(|m| m.broker_id == 0 && !m.endpoint.is_empty())
    {
        return Ok(master.endpoint.clone());
    }
    let others: Vec<String> = members
        .map(|m| format!("id {} at {}", m.broker_id, m.endpoint))
        .collect();
    Err(format!(
        "broker group {name} has no master registered; give a member's address ({})",
        others.join(", ")
    ))
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
) -> Result<BrokerStatus, ProbeFailure> {
    let channel = connect_channel(addr, timeout, config.tls.as_ref())
        .map_err(|e| ProbeFailure::from(e.to_string().as_str()))?;
    let mut client = AdminClient::new(channel);
    let call =
        client.get_broker_status(request(config, cluster::GetBrokerStatusRequest {}, timeout));
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(format!("broker {addr} did not answer in time")
            .as_str()
            .into()),
        Ok(Err(status)) => Err(ProbeFailure {
            cause: ProbeCause::of(status.code()),
            message: status_error(addr, &status),
        }),
        Ok(Ok(resp)) => resp.into_inner().status.ok_or_else(|| ProbeFailure {
            cause: ProbeCause::Failed,
            message: format!("broker {addr} answered without a status"),
        }),
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
    let mut out = render_cluster_rows(&rows, f);
    if !f.is_json() && rows.iter().any(|r| r.member.is_controller_mode()) {
        let controller = admin.controller_status().await.map_err(|e| e.to_string());
        out.push_str(&crate::controller::cluster_footer(
            controller.as_ref().map_err(String::as_str),
            &rows,
            now_ms(),
        ));
    }
    Ok(out)
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
        assert!(e.message.contains("127.0.0.1:1"), "{e}");
        assert_eq!(e.cause, ProbeCause::Unreachable);
    }

    #[test]
    fn a_refused_status_is_forbidden_not_unreachable() {
        assert_eq!(
            ProbeCause::of(tonic::Code::PermissionDenied),
            ProbeCause::Forbidden
        );
        assert_eq!(
            ProbeCause::of(tonic::Code::Unauthenticated),
            ProbeCause::Unauthorized
        );
        assert_eq!(
            ProbeCause::of(tonic::Code::Unavailable),
            ProbeCause::Unreachable
        );
    }

    #[test]
    fn broker_names_resolve_to_their_master() {
        let member = |id: i64, endpoint: &str| cluster::BrokerMember {
            broker_id: id,
            endpoint: endpoint.into(),
            ..Default::default()
        };
        let group = |name: &str, members| cluster::BrokerGroup {
            cluster_name: "c".into(),
            broker_name: name.into(),
            members,
        };
        let info = cluster::GetClusterInfoResponse {
            groups: vec![
                group("broker-a", vec![member(1, "h:2"), member(0, "h:1")]),
                group("broker-b", vec![member(1, "h:4")]),
            ],
        };
        assert_eq!(master_of(&info, "broker-a").unwrap(), "h:1");
        let e = master_of(&info, "broker-b").unwrap_err();
        assert!(e.contains("no master") && e.contains("id 1 at h:4"), "{e}");
        let e = master_of(&info, "broker-x").unwrap_err();
        assert!(e.contains("registered: broker-a, broker-b"), "{e}");
        assert_eq!(broker_target("broker-a").unwrap(), "broker-a");
        assert_eq!(broker_target(" h:10911 ").unwrap(), "h:10911");
        assert!(broker_target("h:0").is_err());
        assert!(broker_target("two words").is_err());
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
