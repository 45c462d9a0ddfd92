//! The remoting clients' table: who is connected over the remoting protocol, one entry per
//! connection (client id, language, version, producer groups, consumer groups with their
//! subscriptions, last heartbeat), kept by the remoting handlers (`crate::remoting::clients`)
//! and read by the check-backs, the group descriptions, `apogee clients list`, the
//! consumer lag (the topics a group's members subscribe) and the metrics. It imports
//! nothing of the broker's services, so the broker can hold it.
//!
//! A client silent for [`CLIENT_EXPIRY_MS`] (RocketMQ's channel expiry; clients beat every
//! 30 s) no longer counts as a member. The table lives in memory only: after a restart
//! clients announce themselves again within one heartbeat period.

use apogee_proto::remoting::codes::request as req_code;
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::time::now_ms;
use apogee_server::remoting::RemotingConnection;
use parking_lot::RwLock;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A client silent this long is taken for gone (RocketMQ's channel expiry).
pub const CLIENT_EXPIRY_MS: i64 = 120_000;
/// Silent clients are swept out at most this often (by the heartbeats of others).
const SWEEP_EVERY_MS: i64 = 10_000;
/// Most producer plus consumer groups one heartbeat may name.
pub const MAX_GROUPS_PER_CLIENT: usize = 1_000;
/// Most subscriptions one consumer group entry of a heartbeat may carry.
pub const MAX_SUBSCRIPTIONS_PER_GROUP: usize = 1_000;

/// How a consumer group's members share its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum MessageModel {
    /// Each message to one member (queues divided among the members).
    Clustering,
    /// Each message to every member.
    Broadcasting,
}

impl MessageModel {
    pub(crate) fn parse(text: &str) -> MessageModel {
        if text.eq_ignore_ascii_case("BROADCASTING") {
            MessageModel::Broadcasting
        } else {
            MessageModel::Clustering
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MessageModel::Clustering => "CLUSTERING",
            MessageModel::Broadcasting => "BROADCASTING",
        }
    }
}

/// One topic a consumer group's member subscribes, as its heartbeat states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub topic: String,
    /// `*`, `a || b`, or a SQL92 expression.
    pub expression: String,
    /// `TAG` or `SQL92`.
    pub expression_type: String,
    pub tags: Vec<String>,
    /// The client's version of the subscription (a timestamp).
    pub version: i64,
}

/// What one client declares about one of its consumer groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerMembership {
    /// `CONSUME_PASSIVELY` (push), `CONSUME_ACTIVELY` (pull) or `CONSUME_POP`.
    pub consume_type: String,
    pub message_model: MessageModel,
    /// `CONSUME_FROM_LAST_OFFSET`, `CONSUME_FROM_FIRST_OFFSET`, `CONSUME_FROM_TIMESTAMP`.
    pub consume_from_where: String,
    pub subscriptions: Vec<Subscription>,
}

impl ConsumerMembership {
    /// The topics subscribed, without the group's retry topic, sorted.
    pub fn topics(&self) -> Vec<String> {
        let topics: BTreeSet<String> = self
            .subscriptions
            .iter()
            .filter(|s| !s.topic.starts_with(apogee_proto::names::RETRY_PREFIX))
            .map(|s| s.topic.clone())
            .collect();
        topics.into_iter().collect()
    }
}

/// One remoting client as the table knows it (the clients list and metrics read this).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemotingClient {
    pub client_id: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// Its language by name (`JAVA`, `RUST`, `GO`, ...).
    pub language: String,
    /// Its RocketMQ version number.
    pub version: i32,
    pub producer_groups: BTreeSet<String>,
    pub consumer_groups: BTreeMap<String, ConsumerMembership>,
    /// Unix ms of its last heartbeat.
    pub last_heartbeat_ms: i64,
}

/// A heartbeat's body (RocketMQ's `HeartbeatData` JSON).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Heartbeat {
    #[serde(rename = "clientID")]
    pub client_id: String,
    pub producer_data_set: Vec<ProducerData>,
    pub consumer_data_set: Vec<ConsumerData>,
    /// The consumer groups come without their subscriptions (unchanged since the last
    /// full heartbeat).
    #[serde(rename = "withoutSub")]
    pub without_subscriptions: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    pub group_name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    pub group_name: String,
    #[serde(deserialize_with = "text")]
    pub consume_type: String,
    #[serde(deserialize_with = "text")]
    pub message_model: String,
    #[serde(deserialize_with = "text")]
    pub consume_from_where: String,
    pub subscription_data_set: Vec<SubscriptionData>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    pub topic: String,
    pub sub_string: String,
    pub tags_set: Vec<String>,
    #[serde(deserialize_with = "text")]
    pub expression_type: String,
    pub sub_version: i64,
}

/// An enum field as its name (clients write names; a number or null is kept as text).
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    })
}

impl ConsumerData {
    fn membership(&self) -> ConsumerMembership {
        ConsumerMembership {
            consume_type: self.consume_type.clone(),
            message_model: MessageModel::parse(&self.message_model),
            consume_from_where: self.consume_from_where.clone(),
            subscriptions: self
                .subscription_data_set
                .iter()
                .map(|s| Subscription {
                    topic: s.topic.clone(),
                    expression: s.sub_string.clone(),
                    expression_type: if s.expression_type.is_empty() {
                        "TAG".to_string()
                    } else {
                        s.expression_type.clone()
                    },
                    tags: s.tags_set.clone(),
                    version: s.sub_version,
                })
                .collect(),
        }
    }
}

struct Entry {
    conn: Arc<RemotingConnection>,
    client: RemotingClient,
}

impl Entry {
    fn live(&self, now_ms: i64) -> bool {
        !self.conn.is_closed() && now_ms - self.client.last_heartbeat_ms <= CLIENT_EXPIRY_MS
    }
}

/// The remoting clients by connection.
#[derive(Default)]
pub struct RemotingClients {
    by_connection: RwLock<HashMap<u64, Entry>>,
    last_sweep_ms: AtomicI64,
}

/// Consumer groups whose members changed (to be notified), sorted.
pub type ChangedGroups = Vec<String>;

impl RemotingClients {
    pub fn new() -> RemotingClients {
        RemotingClients::default()
    }

    /// Records a heartbeat of `conn`; returns the consumer groups it joined, or whose
    /// subscriptions it changed.
    pub fn heartbeat(
        &self,
        conn: &Arc<RemotingConnection>,
        language: &str,
        version: i32,
        beat: &Heartbeat,
        now_ms: i64,
    ) -> ChangedGroups {
        let mut table = self.by_connection.write();
        let previous = table.remove(&conn.id());
        let mut consumer_groups = BTreeMap::new();
        for c in &beat.consumer_data_set {
            let mut membership = c.membership();
            if beat.without_subscriptions {
                // Unchanged since the last full heartbeat: keep what it said.
                if let Some(known) = previous
                    .as_ref()
                    .and_then(|p| p.client.consumer_groups.get(&c.group_name))
                {
                    membership.subscriptions = known.subscriptions.clone();
                }
            }
            consumer_groups.insert(c.group_name.clone(), membership);
        }
        let mut changed: BTreeSet<String> = BTreeSet::new();
        for (group, membership) in &consumer_groups {
            let before = previous
                .as_ref()
                .filter(|p| p.live(now_ms))
                .and_then(|p| p.client.consumer_groups.get(group));
            if before.is_none_or(|b| b.subscriptions != membership.subscriptions) {
                changed.insert(group.clone());
            }
        }
        if let Some(p) = &previous {
            for group in p.client.consumer_groups.keys() {
                if !consumer_groups.contains_key(group) {
                    changed.insert(group.clone());
                }
            }
        }
        // The same client on a connection that closed: its entry is replaced by this one.
        table.retain(|_, e| !(e.client.client_id == beat.client_id && e.conn.is_closed()));
        table.insert(
            conn.id(),
            Entry {
                conn: conn.clone(),
                client: RemotingClient {
                    client_id: beat.client_id.clone(),
                    peer: conn.peer(),
                    language: language.to_string(),
                    version,
                    producer_groups: beat
                        .producer_data_set
                        .iter()
                        .map(|p| p.group_name.clone())
                        .collect(),
                    consumer_groups,
                    last_heartbeat_ms: now_ms,
                },
            },
        );
        changed.into_iter().collect()
    }

    /// `client_id` on `conn` leaves `producer_group` and/or `consumer_group` (the entry
    /// goes when it is left in no group); returns the consumer group if it was left.
    pub fn unregister(
        &self,
        conn: &Arc<RemotingConnection>,
        client_id: &str,
        producer_group: Option<&str>,
        consumer_group: Option<&str>,
    ) -> ChangedGroups {
        let mut table = self.by_connection.write();
        let Some(entry) = table.get_mut(&conn.id()) else {
            return Vec::new();
        };
        if entry.client.client_id != client_id {
            return Vec::new();
        }
        if let Some(g) = producer_group {
            entry.client.producer_groups.remove(g);
        }
        let changed = consumer_group
            .filter(|g| entry.client.consumer_groups.remove(*g).is_some())
            .map(|g| vec![g.to_string()])
            .unwrap_or_default();
        if entry.client.producer_groups.is_empty() && entry.client.consumer_groups.is_empty() {
            table.remove(&conn.id());
        }
        changed
    }

    /// The connection `conn_id` closed: its client is gone; returns its consumer groups.
    pub fn closed(&self, conn_id: u64) -> ChangedGroups {
        match self.by_connection.write().remove(&conn_id) {
            Some(e) => e.client.consumer_groups.into_keys().collect(),
            None => Vec::new(),
        }
    }

    /// Removes the clients silent past [`CLIENT_EXPIRY_MS`] at `now_ms`: their connections
    /// and the consumer groups they leave.
    pub fn expire(&self, now_ms: i64) -> (Vec<Arc<RemotingConnection>>, ChangedGroups) {
        let mut table = self.by_connection.write();
        let silent: Vec<u64> = table
            .iter()
            .filter(|(_, e)| !e.live(now_ms))
            .map(|(id, _)| *id)
            .collect();
        let mut conns = Vec::new();
        let mut groups = BTreeSet::new();
        for id in silent {
            if let Some(e) = table.remove(&id) {
                tracing::info!(
                    client = %e.client.client_id, peer = %e.client.peer,
                    "remoting client silent for {} s (or its connection closed): removed",
                    CLIENT_EXPIRY_MS / 1000
                );
                groups.extend(e.client.consumer_groups.into_keys());
                conns.push(e.conn);
            }
        }
        (conns, groups.into_iter().collect())
    }

    /// Whether a sweep of silent clients is due at `now_ms` (true at most once per
    /// [`SWEEP_EVERY_MS`]).
    pub(crate) fn sweep_due(&self, now_ms: i64) -> bool {
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        now_ms - last >= SWEEP_EVERY_MS
            && self
                .last_sweep_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// The live connections of a producer group's clients (for transaction check-backs).
    pub fn producers_of(&self, group: &str) -> Vec<Arc<RemotingConnection>> {
        let now = now_ms();
        let mut found: Vec<_> = self
            .by_connection
            .read()
            .values()
            .filter(|e| e.live(now) && e.client.producer_groups.contains(group))
            .map(|e| (e.client.last_heartbeat_ms, e.conn.clone()))
            .collect();
        // The most recently heard from first.
        found.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        found.into_iter().map(|(_, c)| c).collect()
    }

    /// The live members of a consumer group: client id and connection, sorted by client id,
    /// one per client id (its latest heartbeat's).
    pub fn consumers_of(&self, group: &str) -> Vec<(String, Arc<RemotingConnection>)> {
        let now = now_ms();
        let mut by_id: BTreeMap<String, (i64, Arc<RemotingConnection>)> = BTreeMap::new();
        for e in self.by_connection.read().values() {
            if !e.live(now) || !e.client.consumer_groups.contains_key(group) {
                continue;
            }
            let newer = by_id
                .get(&e.client.client_id)
                .is_none_or(|(at, _)| *at < e.client.last_heartbeat_ms);
            if newer {
                by_id.insert(
                    e.client.client_id.clone(),
                    (e.client.last_heartbeat_ms, e.conn.clone()),
                );
            }
        }
        by_id.into_iter().map(|(id, (_, c))| (id, c)).collect()
    }

    /// The subscription a live member of `group` declared for `topic` (the newest version).
    pub fn subscription(&self, group: &str, topic: &str) -> Option<Subscription> {
        let now = now_ms();
        self.by_connection
            .read()
            .values()
            .filter(|e| e.live(now))
            .filter_map(|e| e.client.consumer_groups.get(group))
            .flat_map(|m| m.subscriptions.iter())
            .filter(|s| s.topic == topic)
            .max_by_key(|s| s.version)
            .cloned()
    }

    /// The topics the live members of each consumer group subscribe, without retry topics
    /// (group -> topics; for the consumer lag).
    pub fn subscribed_topics(&self) -> BTreeMap<String, BTreeSet<String>> {
        let now = now_ms();
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for e in self.by_connection.read().values().filter(|e| e.live(now)) {
            for (group, m) in &e.client.consumer_groups {
                out.entry(group.clone()).or_default().extend(m.topics());
            }
        }
        out
    }

    /// The live clients, sorted by client id (for `apogee clients list`, group descriptions
    /// and metrics).
    pub fn list(&self) -> Vec<RemotingClient> {
        let now = now_ms();
        let mut all: Vec<_> = self
            .by_connection
            .read()
            .values()
            .filter(|e| e.live(now))
            .map(|e| e.client.clone())
            .collect();
        all.sort_by(|a, b| a.client_id.cmp(&b.client_id).then(a.peer.cmp(&b.peer)));
        all
    }

    /// The live clients as `apogee clients list` shows them beside the gRPC sessions: a row
    /// per consumer group (a push or pull consumer), and one for a producer of no consumer
    /// group; `at` names this broker. The version reads `remoting/<RocketMQ version number>`.
    pub fn connected_clients(&self, at: &str) -> Vec<apogee_proto::cluster::ConnectedClient> {
        let mut rows = Vec::new();
        for c in self.list() {
            let row = |kind: &str, group: &str, topics: Vec<String>| {
                apogee_proto::cluster::ConnectedClient {
                    client_id: c.client_id.clone(),
                    kind: kind.to_string(),
                    language: c.language.clone(),
                    version: format!("remoting/{}", c.version),
                    address: c.peer.to_string(),
                    group: group.to_string(),
                    topics,
                    connected_to: vec![at.to_string()],
                }
            };
            for (group, m) in &c.consumer_groups {
                let kind = if m.consume_type == "CONSUME_ACTIVELY" {
                    "pull_consumer"
                } else {
                    "push_consumer"
                };
                rows.push(row(kind, group, m.topics()));
            }
            if c.consumer_groups.is_empty() {
                rows.push(row("producer", "", Vec::new()));
            }
        }
        rows
    }

    /// The live members of `group` as a group description lists them; `at` names this broker.
    pub fn group_clients(&self, group: &str, at: &str) -> Vec<apogee_proto::cluster::GroupClient> {
        self.list()
            .into_iter()
            .filter_map(|c| {
                let m = c.consumer_groups.get(group)?;
                Some(apogee_proto::cluster::GroupClient {
                    client_id: c.client_id.clone(),
                    language: c.language.clone(),
                    version: format!("remoting/{}", c.version),
                    topics: m.topics(),
                    connected_to: vec![at.to_string()],
                })
            })
            .collect()
    }

    /// Tells every live member of each group to rebalance (oneway
    /// NOTIFY_CONSUMER_IDS_CHANGED; a member whose connection is backlogged is skipped).
    pub fn notify_changed(&self, groups: &[String]) {
        for group in groups {
            for (client, conn) in self.consumers_of(group) {
                let notice = RemotingCommand::request(req_code::NOTIFY_CONSUMER_IDS_CHANGED)
                    .with_ext("consumerGroup", group);
                if let Err(e) = conn.send_oneway(notice) {
                    tracing::debug!(group, client, "consumer ids changed notice not sent: {e}");
                }
            }
        }
    }
}

impl crate::metrics::RemotingClientList for RemotingClients {
    fn connected(&self) -> Vec<crate::metrics::RemotingClientRow> {
        self.list()
            .into_iter()
            .map(|c| crate::metrics::RemotingClientRow {
                language: c.language,
                version: c.version,
                producer: !c.producer_groups.is_empty(),
                consumer_groups: c.consumer_groups.into_keys().collect(),
            })
            .collect()
    }

    fn subscribed_topics(&self) -> BTreeMap<String, BTreeSet<String>> {
        RemotingClients::subscribed_topics(self)
    }
}
