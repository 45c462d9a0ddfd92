//! `apogee controller status` and `apogee broker elect`: the controller of automatic failover
//! embedded in the NameServers (Admin.ControllerStatus and Admin.ElectMaster), and the views
//! they print: the node's Raft figures, then per broker group its master, epochs and
//! in-sync set, then every member; a planned election's new master and epochs.

use crate::admin::Admin;
use crate::error::ToolResult;
use crate::output::{render_list, render_value, Format, TableRow};
use apogee_proto::cluster;
use serde::Serialize;

/// One member of a broker group in the controller's state.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ControllerMemberView {
    pub broker: String,
    pub member_id: u64,
    pub address: String,
    pub priority: u32,
    pub last_epoch: u64,
    pub log_end: u64,
    pub is_master: bool,
    pub in_sync: bool,
}

impl TableRow for ControllerMemberView {
    fn headers() -> Vec<&'static str> {
        vec![
            "BROKER",
            "MEMBER",
            "ROLE",
            "ADDRESS",
            "PRIORITY",
            "LAST EPOCH",
            "LOG END",
            "IN SYNC",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.broker.clone(),
            self.member_id.to_string(),
            if self.is_master { "master" } else { "-" }.into(),
            self.address.clone(),
            self.priority.to_string(),
            self.last_epoch.to_string(),
            self.log_end.to_string(),
            if self.in_sync { "yes" } else { "no" }.into(),
        ]
    }
}

/// One broker group in the controller's state.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ControllerGroupView {
    pub broker: String,
    /// The master's member id; null when the group has none.
    pub master: Option<u64>,
    pub master_epoch: u64,
    pub in_sync: Vec<u64>,
    pub in_sync_epoch: u64,
    pub members: Vec<ControllerMemberView>,
}

impl TableRow for ControllerGroupView {
    fn headers() -> Vec<&'static str> {
        vec![
            "BROKER",
            "MASTER",
            "MASTER EPOCH",
            "IN SYNC",
            "IN-SYNC EPOCH",
        ]
    }
    fn cells(&self) -> Vec<String> {
        let in_sync: Vec<String> = self.in_sync.iter().map(u64::to_string).collect();
        vec![
            self.broker.clone(),
            self.master.map_or("-".into(), |m| m.to_string()),
            self.master_epoch.to_string(),
            if in_sync.is_empty() {
                "-".into()
            } else {
                in_sync.join(",")
            },
            self.in_sync_epoch.to_string(),
        ]
    }
}

/// `apogee controller status`, for JSON and the detail.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ControllerStatusView {
    pub node_id: u64,
    /// The leader this node knows of; null when none is known.
    pub leader_id: Option<u64>,
    pub is_leader: bool,
    pub term: u64,
    /// The last log entry this node applied (index and term); null before any.
    pub last_applied_index: Option<u64>,
    pub last_applied_term: u64,
    /// The groups are this node's applied state, not confirmed by the leader.
    pub stale: bool,
    pub stale_reason: Option<String>,
    pub groups: Vec<ControllerGroupView>,
}

impl ControllerStatusView {
    pub fn new(s: &cluster::ControllerStatusResponse) -> Self {
        let groups = s
            .groups
            .iter()
            .map(|g| ControllerGroupView {
                broker: g.broker_name.clone(),
                master: (g.master != 0).then_some(g.master),
                master_epoch: g.master_epoch,
                in_sync: g.in_sync.clone(),
                in_sync_epoch: g.in_sync_epoch,
                members: g
                    .members
                    .iter()
                    .map(|m| ControllerMemberView {
                        broker: g.broker_name.clone(),
                        member_id: m.member_id,
                        address: m.address.clone(),
                        priority: m.priority,
                        last_epoch: m.last_epoch,
                        log_end: m.log_end,
                        is_master: g.master != 0 && m.member_id == g.master,
                        in_sync: g.in_sync.contains(&m.member_id),
                    })
                    .collect(),
            })
            .collect();
        ControllerStatusView {
            node_id: s.node_id,
            leader_id: s.leader_id,
            is_leader: s.is_leader,
            term: s.term,
            last_applied_index: s.last_applied_index,
            last_applied_term: s.last_applied_term,
            stale: s.stale,
            stale_reason: (!s.stale_reason.is_empty()).then(|| s.stale_reason.clone()),
            groups,
        }
    }
}

/// `apogee controller status`: the node's fields, then the groups and their members as
/// tables; or one JSON object.
pub fn render_controller_status(s: &ControllerStatusView, f: Format) -> String {
    if let Some(text) = render_value(s, f) {
        return text;
    }
    let pairs = [
        ("node", s.node_id.to_string()),
        (
            "leader",
            s.leader_id.map_or("none known".into(), |l| l.to_string()),
        ),
        (
            "role",
            if s.is_leader { "leader" } else { "follower" }.into(),
        ),
        ("term", s.term.to_string()),
        (
            "last applied",
            s.last_applied_index.map_or("-".into(), |i| {
                format!("{i} (term {})", s.last_applied_term)
            }),
        ),
        (
            "state",
            match (&s.stale, &s.stale_reason) {
                (false, _) => "confirmed by the leader".to_string(),
                (true, Some(why)) => format!("STALE, this node's own: {why}"),
                (true, None) => "STALE, this node's own".to_string(),
            },
        ),
    ];
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out: String = pairs
        .iter()
        .map(|(k, v)| format!("{k:width$}  {v}\n"))
        .collect();
    out.push('\n');
    if s.groups.is_empty() {
        out.push_str("no broker group in the controller yet\n");
        return out;
    }
    out.push_str(&render_list(&s.groups, Format::Table));
    out.push('\n');
    let members: Vec<ControllerMemberView> =
        s.groups.iter().flat_map(|g| g.members.clone()).collect();
    out.push_str(&render_list(&members, Format::Table));
    out
}

/// The answer to a planned election.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ElectedView {
    pub broker: String,
    pub master: u64,
    pub master_epoch: u64,
    pub in_sync_epoch: u64,
}

impl TableRow for ElectedView {
    fn headers() -> Vec<&'static str> {
        vec!["BROKER", "NEW MASTER", "MASTER EPOCH", "IN-SYNC EPOCH"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.broker.clone(),
            self.master.to_string(),
            self.master_epoch.to_string(),
            self.in_sync_epoch.to_string(),
        ]
    }
}

impl Admin {
    /// The NameServer's controller status.
    pub async fn controller_status(&self) -> ToolResult<ControllerStatusView> {
        let resp = self
            .admin
            .clone()
            .controller_status(self.req(cluster::ControllerStatusRequest::default()))
            .await
            .map_err(self.err(None))?
            .into_inner();
        Ok(ControllerStatusView::new(&resp))
    }

    /// A planned switch of `broker`'s master to `member` (none: the best in-sync member
    /// other than the current master).
    pub async fn elect_master(&self, broker: &str, member: Option<u64>) -> ToolResult<ElectedView> {
        let resp = self
            .admin
            .clone()
            .elect_master(self.req(cluster::ElectMasterRequest {
                broker_name: broker.to_string(),
                member: member.unwrap_or(0),
                here_only: false,
            }))
            .await
            .map_err(self.err(None))?
            .into_inner();
        Ok(ElectedView {
            broker: broker.to_string(),
            master: resp.master,
            master_epoch: resp.master_epoch,
            in_sync_epoch: resp.in_sync_epoch,
        })
    }
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;

/// When `group`'s master took over (its last failover or planned switch), from the master's
/// own status among `rows`; None without a master or its answer.
pub fn master_since(
    group: &ControllerGroupView,
    rows: &[crate::replication_view::ClusterRow],
) -> Option<i64> {
    let master = group.master?;
    rows.iter()
        .filter(|r| r.member.broker == group.broker && r.member.member_id == master as i64)
        .find_map(|r| r.status.as_ref().and_then(|s| s.master_since_ms))
}

/// What `apogee cluster list` adds below its table in controller mode: the controller's
/// leader and term, and per broker group its master, epoch, in-sync set and when the master
/// took over (its last failover or planned switch, from the master's own status in `rows`).
pub fn cluster_footer(
    controller: Result<&ControllerStatusView, &str>,
    rows: &[crate::replication_view::ClusterRow],
    now: i64,
) -> String {
    let status = match controller {
        Ok(s) => s,
        Err(why) => return format!("\ncontroller: not answering ({why})\n"),
    };
    let mut out = match status.leader_id {
        Some(leader) => format!("\ncontroller: leader node {leader}, term {}", status.term),
        None => format!("\ncontroller: no leader known (term {})", status.term),
    };
    if let Some(why) = &status.stale_reason {
        out.push_str(&format!(" (state not confirmed by the leader: {why})"));
    }
    out.push('\n');
    for g in &status.groups {
        let in_sync: Vec<String> = g.in_sync.iter().map(u64::to_string).collect();
        let Some(master) = g.master else {
            out.push_str(&format!(
                "  {}: no master (epoch {})\n",
                g.broker, g.master_epoch
            ));
            continue;
        };
        let since = master_since(g, rows).map_or_else(String::new, |t| {
            format!(
                "; master since {} ({} ago)",
                crate::message_query::rfc3339(t),
                crate::views::format_ago((now - t).max(0))
            )
        });
        out.push_str(&format!(
            "  {}: master member {master}, epoch {}, in sync {}{since}\n",
            g.broker,
            g.master_epoch,
            in_sync.join(",")
        ));
    }
    out
}
