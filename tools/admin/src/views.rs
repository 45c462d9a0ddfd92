//! The rows the admin commands print: topics, routes and brokers, built
//! from cluster-protocol answers, plus the short names used in tables.

use crate::output::TableRow;
use apogee_proto::cluster;
use apogee_proto::v2::{MessageType, Permission};
use serde::Serialize;

/// Short name of a permission value.
pub fn perm_name(p: i32) -> String {
    match Permission::try_from(p) {
        Ok(Permission::ReadWrite) => "rw",
        Ok(Permission::Read) => "r",
        Ok(Permission::Write) => "w",
        Ok(Permission::None) => "none",
        _ => "-",
    }
    .to_string()
}

/// Lower-case names of message types; an empty list means NORMAL only.
pub fn type_names(types: &[i32]) -> Vec<String> {
    if types.is_empty() {
        return vec!["normal".into()];
    }
    types
        .iter()
        .map(|t| match MessageType::try_from(*t) {
            Ok(m) => m.as_str_name().to_ascii_lowercase(),
            Err(_) => format!("unknown({t})"),
        })
        .collect()
}

/// Short name of a broker role.
pub fn role_name(r: i32) -> String {
    match cluster::BrokerRole::try_from(r) {
        Ok(cluster::BrokerRole::AsyncMaster) => "async-master",
        Ok(cluster::BrokerRole::SyncMaster) => "sync-master",
        Ok(cluster::BrokerRole::Slave) => "slave",
        _ => "-",
    }
    .to_string()
}

/// "1.5s", "3m12s", "2h5m": how long ago, for tables.
pub fn format_ago(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{}h{}m", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

/// A topic as created, updated or listed.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TopicInfo {
    pub topic: String,
    pub queues: i32,
    pub perm: String,
    pub message_types: Vec<String>,
    pub brokers: Vec<String>,
}

impl TableRow for TopicInfo {
    fn headers() -> Vec<&'static str> {
        vec!["TOPIC", "QUEUES", "PERM", "TYPES", "BROKERS"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.topic.clone(),
            self.queues.to_string(),
            self.perm.clone(),
            self.message_types.join(","),
            self.brokers.join(","),
        ]
    }
}

/// A deleted topic and the broker groups it was removed from.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TopicDeleted {
    pub topic: String,
    pub brokers: Vec<String>,
}

impl TableRow for TopicDeleted {
    fn headers() -> Vec<&'static str> {
        vec!["DELETED", "BROKERS"]
    }
    fn cells(&self) -> Vec<String> {
        vec![self.topic.clone(), self.brokers.join(",")]
    }
}

/// One member of a broker group.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MemberInfo {
    pub id: i64,
    pub endpoint: String,
    pub role: String,
}

/// One broker group hosting a topic.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RouteRow {
    pub broker: String,
    pub cluster: String,
    pub queues: i32,
    pub perm: String,
    pub message_types: Vec<String>,
    /// Endpoint of the master (broker id 0), when it is registered.
    pub master: Option<String>,
    pub members: Vec<MemberInfo>,
}

impl TableRow for RouteRow {
    fn headers() -> Vec<&'static str> {
        vec!["BROKER", "QUEUES", "PERM", "TYPES", "MASTER", "MEMBERS"]
    }
    fn cells(&self) -> Vec<String> {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}:{}({})", m.id, m.endpoint, m.role))
            .collect();
        vec![
            self.broker.clone(),
            self.queues.to_string(),
            self.perm.clone(),
            self.message_types.join(","),
            self.master.clone().unwrap_or_else(|| "-".into()),
            members.join(" "),
        ]
    }
}

/// One broker process in the cluster.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BrokerRow {
    pub cluster: String,
    pub broker: String,
    /// The broker id clients see (a group's master is 0).
    pub id: i64,
    /// The member's own id: its broker id, or in controller mode its member id for life.
    pub member_id: i64,
    /// The master epoch it registered with (controller mode; 0 otherwise).
    pub master_epoch: u64,
    pub role: String,
    pub endpoint: String,
    pub topics: i32,
    pub last_seen_ms: i64,
    pub last_seen_ago_ms: i64,
    /// The broker's data version (bumped when its topics, groups or ACLs change); not the
    /// build version, which only the broker itself tells (`cluster list`'s VERSION).
    pub data_version: i64,
}

impl BrokerRow {
    /// Registered in controller mode: its member id is not its presented id, or it names a
    /// master epoch.
    pub fn is_controller_mode(&self) -> bool {
        self.member_id != self.id || self.master_epoch > 0
    }
}

/// A member as the NameServer registered it: its own id (MEMBER), its role, the master epoch
/// it registered with (EPOCH: controller mode; "-" in static mode).
impl TableRow for BrokerRow {
    fn headers() -> Vec<&'static str> {
        vec![
            "CLUSTER",
            "BROKER",
            "MEMBER",
            "ROLE",
            "EPOCH",
            "ENDPOINT",
            "TOPICS",
            "LAST SEEN",
            "DATA VERSION",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.cluster.clone(),
            self.broker.clone(),
            self.member_id.to_string(),
            self.role.clone(),
            if self.master_epoch > 0 {
                self.master_epoch.to_string()
            } else {
                "-".into()
            },
            self.endpoint.clone(),
            self.topics.to_string(),
            format!("{} ago", format_ago(self.last_seen_ago_ms)),
            self.data_version.to_string(),
        ]
    }
}

/// Rows of `topic route` from a GetRoute answer.
pub fn route_rows(resp: &cluster::GetRouteResponse) -> Vec<RouteRow> {
    let mut rows: Vec<RouteRow> = resp
        .placements
        .iter()
        .map(|p| {
            let group = p.group.clone().unwrap_or_default();
            let config = p.config.clone().unwrap_or_default();
            let mut members: Vec<MemberInfo> = group
                .members
                .iter()
                .map(|m| MemberInfo {
                    id: m.broker_id,
                    endpoint: m.endpoint.clone(),
                    role: role_name(m.role),
                })
                .collect();
            members.sort_by_key(|m| m.id);
            RouteRow {
                broker: group.broker_name,
                cluster: group.cluster_name,
                queues: config.queue_count,
                perm: perm_name(config.permission),
                message_types: type_names(&config.message_types),
                master: members
                    .iter()
                    .find(|m| m.id == 0)
                    .map(|m| m.endpoint.clone()),
                members,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.broker.cmp(&b.broker));
    rows
}

/// Rows of `cluster list` from a GetClusterInfo answer, `now` in Unix ms.
pub fn broker_rows(resp: &cluster::GetClusterInfoResponse, now: i64) -> Vec<BrokerRow> {
    let mut rows: Vec<BrokerRow> = resp
        .groups
        .iter()
        .flat_map(|g| {
            g.members.iter().map(move |m| BrokerRow {
                cluster: g.cluster_name.clone(),
                broker: g.broker_name.clone(),
                id: m.broker_id,
                // NameServers of earlier releases send no member id (0: never a member id).
                member_id: if m.member_id == 0 {
                    m.broker_id
                } else {
                    m.member_id
                },
                master_epoch: m.master_epoch,
                role: role_name(m.role),
                endpoint: m.endpoint.clone(),
                topics: m.topic_count,
                last_seen_ms: m.last_seen_ms,
                last_seen_ago_ms: (now - m.last_seen_ms).max(0),
                data_version: m.data_version,
            })
        })
        .collect();
    rows.sort_by(|a, b| (&a.cluster, &a.broker, a.id).cmp(&(&b.cluster, &b.broker, b.id)));
    rows
}

pub(crate) fn info(topic: &cluster::TopicConfig, mut brokers: Vec<String>) -> TopicInfo {
    brokers.sort();
    TopicInfo {
        topic: topic.name.clone(),
        queues: topic.queue_count,
        perm: perm_name(topic.permission),
        message_types: type_names(&topic.message_types),
        brokers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{render_list, Format};

    fn member(id: i64, ep: &str, role: cluster::BrokerRole, seen: i64) -> cluster::BrokerMember {
        cluster::BrokerMember {
            broker_id: id,
            endpoint: ep.into(),
            role: role as i32,
            last_seen_ms: seen,
            data_version: 3,
            topic_count: 2,
            ..cluster::BrokerMember::default()
        }
    }

    fn group(name: &str) -> cluster::BrokerGroup {
        cluster::BrokerGroup {
            cluster_name: "c1".into(),
            broker_name: name.into(),
            members: vec![
                member(1, "h:2", cluster::BrokerRole::Slave, 9_000),
                member(0, "h:1", cluster::BrokerRole::SyncMaster, 9_500),
            ],
        }
    }

    #[test]
    fn route_rows_show_master_and_members() {
        let resp = cluster::GetRouteResponse {
            topic: "T".into(),
            placements: vec![cluster::TopicPlacement {
                group: Some(group("b1")),
                config: Some(cluster::TopicConfig {
                    name: "T".into(),
                    queue_count: 8,
                    permission: Permission::ReadWrite as i32,
                    message_types: vec![],
                    lite_expire_after_secs: 0,
                }),
            }],
        };
        let rows = route_rows(&resp);
        assert_eq!(rows[0].master.as_deref(), Some("h:1"));
        assert_eq!(rows[0].message_types, vec!["normal"]);
        let text = render_list(&rows, Format::Table);
        assert_eq!(
            text,
            "BROKER  QUEUES  PERM  TYPES   MASTER  MEMBERS\n\
             b1      8       rw    normal  h:1     0:h:1(sync-master) 1:h:2(slave)\n"
        );
    }

    #[test]
    fn broker_rows_are_sorted_with_age() {
        let resp = cluster::GetClusterInfoResponse {
            groups: vec![group("b2"), group("b1")],
        };
        let rows = broker_rows(&resp, 10_000);
        let keys: Vec<(&str, i64)> = rows.iter().map(|r| (r.broker.as_str(), r.id)).collect();
        assert_eq!(keys, vec![("b1", 0), ("b1", 1), ("b2", 0), ("b2", 1)]);
        assert_eq!(rows[0].last_seen_ago_ms, 500);
        assert_eq!(rows[0].role, "sync-master");
        let json: serde_json::Value =
            serde_json::from_str(&render_list(&rows, Format::Json)).unwrap();
        assert_eq!(json[1]["endpoint"], "h:2");
        assert_eq!(json[1]["data_version"], 3);
        assert_eq!(json[1]["member_id"], 1);
    }

    #[test]
    fn every_row_has_one_cell_per_header() {
        let t = info(&cluster::TopicConfig::default(), vec!["b".into()]);
        assert_eq!(TopicInfo::headers().len(), t.cells().len());
        let d = TopicDeleted {
            topic: "T".into(),
            brokers: vec![],
        };
        assert_eq!(TopicDeleted::headers().len(), d.cells().len());
        let rows = broker_rows(
            &cluster::GetClusterInfoResponse {
                groups: vec![group("b")],
            },
            0,
        );
        assert_eq!(BrokerRow::headers().len(), rows[0].cells().len());
    }

    #[test]
    fn names_and_durations_are_short() {
        assert_eq!(perm_name(Permission::Read as i32), "r");
        assert_eq!(perm_name(99), "-");
        assert_eq!(
            type_names(&[MessageType::Fifo as i32, MessageType::Transaction as i32]),
            vec!["fifo", "transaction"]
        );
        assert_eq!(format_ago(1_500), "1.5s");
        assert_eq!(format_ago(192_000), "3m12s");
        assert_eq!(format_ago(7_500_000), "2h5m");
    }
}
