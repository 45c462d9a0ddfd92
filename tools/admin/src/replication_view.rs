//! The replication view, as pure functions of what the servers answered: the rows of
//! `apogee cluster list` (each registered broker with its log end, replication lag and
//! in-sync state, merged from the NameServer's cluster info and every member's
//! GetBrokerStatus) and the detail of `apogee broker status` (one broker, with a master's
//! slaves or a slave's link to its master).

use crate::message_query::rfc3339;
use crate::output::{render_list, Format, TableRow};
use crate::views::{broker_rows, format_ago, role_name, BrokerRow};
use apogee_proto::cluster::{self, BrokerStatus, SlaveStatus};
use serde::Serialize;
use std::collections::HashMap;

/// Which member a status belongs to: (cluster, broker name, broker id).
pub type MemberKey = (String, String, i64);

/// What each member answered to GetBrokerStatus: its status, or why there is none.
pub type Probes = HashMap<MemberKey, Result<BrokerStatus, ProbeFailure>>;

/// Why a member gave no status, in a word for the table.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProbeCause {
    /// No connection, or no answer in time.
    Unreachable,
    /// It answered: the caller's credentials may not ask (not an admin).
    Forbidden,
    /// It answered: the credentials are missing or wrong.
    Unauthorized,
    /// It answered with another error.
    Failed,
}

impl ProbeCause {
    /// The cause a failed call's gRPC status code stands for.
    pub fn of(code: tonic::Code) -> Self {
        use tonic::Code;
        match code {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => Self::Unreachable,
            Code::PermissionDenied => Self::Forbidden,
            Code::Unauthenticated => Self::Unauthorized,
            _ => Self::Failed,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Forbidden => "forbidden",
            Self::Unauthorized => "unauthorized",
            Self::Failed => "failed",
        }
    }
}

/// A member's failed GetBrokerStatus: the cause and the message naming the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeFailure {
    pub cause: ProbeCause,
    pub message: String,
}

impl std::fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A message without a status code: the broker could not be reached.
impl From<&str> for ProbeFailure {
    fn from(message: &str) -> Self {
        ProbeFailure {
            cause: ProbeCause::Unreachable,
            message: message.to_string(),
        }
    }
}

/// "0B", "512B", "1.5KiB", "12.0MiB", "3.2GiB": a byte count for tables.
pub fn format_bytes(n: i64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n.abs() < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1}{}", UNITS[unit])
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// A master's view of one of its slaves.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SlaveView {
    pub id: i64,
    pub endpoint: String,
    pub connected: bool,
    /// Log offsets the slave reported written and synced.
    pub written_offset: i64,
    pub synced_offset: i64,
    /// The master's log end minus the slave's written offset.
    pub lag_bytes: i64,
    /// How long the slave has been behind (0 when it has everything).
    pub lag_ms: i64,
    /// Counts for SYNC_MASTER acknowledgements.
    pub in_sync: bool,
    /// Unix ms of the slave's last report; null when it never reported.
    pub last_report_ms: Option<i64>,
    pub last_report_ago_ms: Option<i64>,
}

impl SlaveView {
    pub fn new(s: &SlaveStatus, now: i64) -> Self {
        let reported = (s.last_report_ms > 0).then_some(s.last_report_ms);
        SlaveView {
            id: s.broker_id,
            endpoint: s.endpoint.clone(),
            connected: s.connected,
            written_offset: s.written_offset,
            synced_offset: s.synced_offset,
            lag_bytes: s.lag_bytes,
            lag_ms: s.lag_ms,
            in_sync: s.in_sync,
            last_report_ms: reported,
            last_report_ago_ms: reported.map(|t| (now - t).max(0)),
        }
    }
}

impl TableRow for SlaveView {
    fn headers() -> Vec<&'static str> {
        vec![
            "SLAVE",
            "ENDPOINT",
            "CONNECTED",
            "WRITTEN",
            "SYNCED",
            "LAG",
            "LAG TIME",
            "IN SYNC",
            "LAST REPORT",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            if self.endpoint.is_empty() {
                "-".into()
            } else {
                self.endpoint.clone()
            },
            yes_no(self.connected),
            self.written_offset.to_string(),
            self.synced_offset.to_string(),
            format_bytes(self.lag_bytes),
            format_ago(self.lag_ms),
            yes_no(self.in_sync),
            self.last_report_ago_ms
                .map_or_else(|| "never".into(), |a| format!("{} ago", format_ago(a))),
        ]
    }
}

/// A slave's link to its master, as the slave sees it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MasterLinkView {
    /// The master's endpoint; null while the slave does not know it.
    pub endpoint: Option<String>,
    pub connected: bool,
    /// The master's log end as last heard.
    pub master_end_offset: i64,
    /// master_end_offset minus this slave's log end.
    pub lag_bytes: i64,
    /// Unix ms of the last message from the master; null when never heard.
    pub last_contact_ms: Option<i64>,
    pub last_contact_ago_ms: Option<i64>,
}

/// One broker's GetBrokerStatus answer, for JSON and the `broker status` detail.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StatusView {
    pub cluster: String,
    pub broker: String,
    pub id: i64,
    pub role: String,
    pub endpoint: String,
    pub version: String,
    /// Unix ms when the broker started; null when it does not say.
    pub started_at_ms: Option<i64>,
    pub uptime_ms: Option<i64>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub flushed_offset: i64,
    pub topics: i32,
    pub groups: i32,
    pub nameservers: Vec<String>,
    /// A master: its slaves (connected now or earlier since it started).
    pub slaves: Vec<SlaveView>,
    /// A slave: its link to the master.
    pub master: Option<MasterLinkView>,
    /// Controller mode, the master: Unix ms when the controller made it master (its group's
    /// last failover or planned switch); null otherwise.
    pub master_since_ms: Option<i64>,
    /// Its object-store tier (`apogee tier status`'s row); null without one.
    pub tier: Option<crate::tier::TierRow>,
}

fn is_slave_role(role: i32) -> bool {
    role == cluster::BrokerRole::Slave as i32
}

impl StatusView {
    pub fn new(s: &BrokerStatus, now: i64) -> Self {
        let started = (s.started_at_ms > 0).then_some(s.started_at_ms);
        let contact = (s.last_master_contact_ms > 0).then_some(s.last_master_contact_ms);
        StatusView {
            cluster: s.cluster_name.clone(),
            broker: s.broker_name.clone(),
            id: s.broker_id,
            role: role_name(s.role),
            endpoint: s.endpoint.clone(),
            version: s.version.clone(),
            started_at_ms: started,
            uptime_ms: started.map(|t| (now - t).max(0)),
            log_start_offset: s.log_start_offset,
            log_end_offset: s.log_end_offset,
            flushed_offset: s.flushed_offset,
            topics: s.topic_count,
            groups: s.group_count,
            nameservers: s.nameservers.clone(),
            slaves: s.slaves.iter().map(|x| SlaveView::new(x, now)).collect(),
            master: is_slave_role(s.role).then(|| MasterLinkView {
                endpoint: (!s.master_endpoint.is_empty()).then(|| s.master_endpoint.clone()),
                connected: s.master_connected,
                master_end_offset: s.master_end_offset,
                lag_bytes: s.lag_bytes,
                last_contact_ms: contact,
                last_contact_ago_ms: contact.map(|t| (now - t).max(0)),
            }),
            master_since_ms: (s.master_since_ms > 0).then_some(s.master_since_ms),
            tier: s
                .tier
                .clone()
                .map(|t| crate::tier::TierRow::of(&s.broker_name, s.broker_id, s.role, t)),
        }
    }

    fn is_slave(&self) -> bool {
        self.master.is_some()
    }
}

/// `name  value` lines, the names padded to one width ("-" for an empty value).
fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| {
            let v = if v.is_empty() { "-" } else { v.as_str() };
            format!("{k:width$}  {v}\n")
        })
        .collect()
}

/// `apogee broker status`: the broker's fields, then a master's slaves (as a table); or one
/// JSON object.
pub fn render_status(s: &StatusView, f: Format) -> String {
    if let Some(text) = crate::output::render_value(s, f) {
        return text;
    }
    let started = match (s.started_at_ms, s.uptime_ms) {
        (Some(t), Some(up)) => format!("{} (up {})", rfc3339(t), format_ago(up)),
        _ => "-".into(),
    };
    let mut pairs: Vec<(&str, String)> = vec![
        ("cluster", s.cluster.clone()),
        ("broker", s.broker.clone()),
        ("id", s.id.to_string()),
        ("role", s.role.clone()),
        ("endpoint", s.endpoint.clone()),
        ("version", s.version.clone()),
        ("started", started),
        ("log start", s.log_start_offset.to_string()),
        ("log end", s.log_end_offset.to_string()),
        ("flushed", s.flushed_offset.to_string()),
        ("topics", s.topics.to_string()),
        ("groups", s.groups.to_string()),
        ("nameservers", s.nameservers.join(",")),
    ];
    if let Some(t) = s.master_since_ms {
        let ago = s
            .started_at_ms
            .zip(s.uptime_ms)
            .map(|(start, up)| start + up - t);
        pairs.push((
            "master since",
            match ago {
                Some(ago) => format!("{} ({} ago)", rfc3339(t), format_ago(ago.max(0))),
                None => rfc3339(t),
            },
        ));
    }
    if let Some(m) = &s.master {
        pairs.extend([
            ("master", m.endpoint.clone().unwrap_or_else(|| "-".into())),
            ("master connected", yes_no(m.connected)),
            ("master log end", m.master_end_offset.to_string()),
            ("lag", format_bytes(m.lag_bytes)),
            (
                "last master contact",
                m.last_contact_ago_ms
                    .map_or_else(|| "never".into(), |a| format!("{} ago", format_ago(a))),
            ),
        ]);
    }
    let mut out = fields(&pairs);
    if !s.is_slave() {
        out.push('\n');
        if s.slaves.is_empty() {
            out.push_str("no slaves seen since the broker started\n");
        } else {
            out.push_str(&render_list(&s.slaves, Format::Table));
        }
    }
    out
}

/// Where a slave row's lag and in-sync state come from.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LagSource {
    /// The master's table of slaves (authoritative).
    Master,
    /// The slave's own view of its link to the master.
    Slave,
}

/// One registered broker process with its replication state (`apogee cluster list`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ClusterRow {
    /// What the NameServer knows of it.
    #[serde(flatten)]
    pub member: BrokerRow,
    /// The build version it runs (from its status; none when it did not answer).
    pub version: Option<String>,
    /// It answered GetBrokerStatus.
    pub reachable: bool,
    /// Why it gave no status: unreachable, forbidden, unauthorized or failed.
    pub cause: Option<ProbeCause>,
    /// Why it did not answer.
    pub error: Option<String>,
    pub log_end_offset: Option<i64>,
    /// A slave: how far behind its master it is; null on a master or when unknown.
    pub lag_bytes: Option<i64>,
    pub lag_ms: Option<i64>,
    pub in_sync: Option<bool>,
    pub lag_source: Option<LagSource>,
    /// Its whole answer.
    pub status: Option<StatusView>,
}

/// Where `cluster list` puts the build version among the registered member's columns: just
/// before the data version, so the two are read as two things.
const BUILD_VERSION_AT: usize = 8;

impl TableRow for ClusterRow {
    fn headers() -> Vec<&'static str> {
        let mut h = BrokerRow::headers();
        h.insert(BUILD_VERSION_AT, "VERSION");
        h.extend(["LOG END", "LAG", "LAG TIME", "IN SYNC"]);
        h
    }
    fn cells(&self) -> Vec<String> {
        let mut c = self.member.cells();
        c.insert(
            BUILD_VERSION_AT,
            self.version.clone().unwrap_or_else(|| "-".into()),
        );
        c.push(match (self.log_end_offset, self.cause) {
            (Some(end), _) if self.reachable => end.to_string(),
            (_, Some(cause)) => cause.word().into(),
            _ => "unreachable".into(),
        });
        c.push(or_dash(self.lag_bytes.map(format_bytes)));
        c.push(or_dash(self.lag_ms.map(format_ago)));
        c.push(or_dash(self.in_sync.map(yes_no)));
        c
    }
}

/// `apogee cluster list` as a table or JSON. One story in both modes: MEMBER is the member's
/// own id (its `broker_id`; in controller mode its member id for life, whatever its role),
/// ROLE what it registered as, EPOCH the master epoch it registered with ("-" in static
/// mode), VERSION the Apogee build it runs, DATA VERSION the counter of its topics, groups
/// and ACLs the NameServers compare. JSON also has `id`, the broker id clients see (a
/// group's master is 0, as RocketMQ presents it).
pub fn render_cluster_rows(rows: &[ClusterRow], f: Format) -> String {
    render_list(rows, f)
}

/// Lag, lag time, in-sync state and their source of the slave `id`: from its master's
/// entry for it when the master answered and has one; else from the slave's own status;
/// else "not in sync" when the master answered without an entry (it has not seen the slave
/// since it started); else unknown.
fn slave_lag(
    id: i64,
    master: Option<&BrokerStatus>,
    own: Option<&BrokerStatus>,
) -> (Option<i64>, Option<i64>, Option<bool>, Option<LagSource>) {
    if let Some(entry) = master.and_then(|m| m.slaves.iter().find(|s| s.broker_id == id)) {
        return (
            Some(entry.lag_bytes),
            Some(entry.lag_ms),
            Some(entry.in_sync),
            Some(LagSource::Master),
        );
    }
    if let Some(own) = own {
        // A slave that never heard from a master knows nothing of its lag.
        let lag = (own.last_master_contact_ms > 0).then_some(own.lag_bytes.max(0));
        return (
            lag,
            None,
            Some(own.master_connected),
            Some(LagSource::Slave),
        );
    }
    if master.is_some() {
        return (None, None, Some(false), Some(LagSource::Master));
    }
    (None, None, None, None)
}

/// The rows of `apogee cluster list`: every member the NameServer lists (sorted by cluster,
/// broker name, id) with what it and its group's master (broker id 0) answered; `now` in
/// Unix ms.
pub fn cluster_rows(
    info: &cluster::GetClusterInfoResponse,
    probes: &Probes,
    now: i64,
) -> Vec<ClusterRow> {
    let answered = |cluster: &str, broker: &str, id: i64| {
        probes
            .get(&(cluster.to_string(), broker.to_string(), id))
            .and_then(|p| p.as_ref().ok())
    };
    broker_rows(info, now)
        .into_iter()
        .map(|member| {
            let key = (member.cluster.clone(), member.broker.clone(), member.id);
            let probe = probes.get(&key);
            let own = probe.and_then(|p| p.as_ref().ok());
            let (lag_bytes, lag_ms, in_sync, lag_source) = if member.id == 0 {
                (None, None, None, None)
            } else {
                slave_lag(member.id, answered(&member.cluster, &member.broker, 0), own)
            };
            ClusterRow {
                version: own.map(|s| s.version.clone()).filter(|v| !v.is_empty()),
                reachable: own.is_some(),
                cause: match probe {
                    Some(Err(e)) => Some(e.cause),
                    Some(Ok(_)) => None,
                    None => Some(ProbeCause::Unreachable),
                },
                error: match probe {
                    Some(Err(e)) => Some(e.message.clone()),
                    Some(Ok(_)) => None,
                    None => Some("not asked: no endpoint registered".into()),
                },
                log_end_offset: own.map(|s| s.log_end_offset),
                lag_bytes,
                lag_ms,
                in_sync,
                lag_source,
                status: own.map(|s| StatusView::new(s, now)),
                member,
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "replication_view_tests.rs"]
mod tests;
