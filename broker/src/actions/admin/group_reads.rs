//! What an operator's tools read of the consumer groups on this broker, whatever the
//! transport (RocketMQ's `mqadmin consumerProgress`, `consumerConnection`, `exportMetadata`
//! and its dashboard read them over remoting):
//!
//! - [`Broker::consume_stats`]: a group's progress per queue (the queue's next offset, the
//!   group's acknowledged offset, how far it has handed out, the last consume) from
//!   [`crate::consume::lag`], the same view as `apogee group describe`, for gRPC, POP and
//!   remoting consumers alike, and its consume rate over the last minute from the traffic
//!   history (`crate::metrics::traffic`);
//! - [`Broker::group_connections`]: a group's connected clients (gRPC sessions and remoting
//!   members) with their subscriptions, how they consume and where a new one starts;
//! - [`Broker::all_consumer_offsets`]: every group's acknowledged offset per queue.

use crate::consume::lag::QueueLag;
use crate::consume::offsets::committed_offsets;
use crate::remoting_state::clients::MessageModel;
use crate::services::Broker;
use apogee_proto::cluster::TrafficHistoryRequest;
use apogee_proto::time::now_ms;
use apogee_proto::v2::ClientType;
use apogee_proto::{limits, ApogeeError};
use std::collections::{BTreeMap, BTreeSet};

/// The window a consume rate is measured over (RocketMQ's consume TPS is per minute).
const RATE_WINDOW_MS: i64 = 60_000;

/// One queue of a group's consume stats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConsumeStats {
    pub topic: String,
    pub queue_id: u32,
    /// The queue's next offset.
    pub broker_offset: u64,
    /// Everything below is acknowledged by the group (where it would start, in a queue it
    /// never consumed from).
    pub consumer_offset: u64,
    /// The next offset not yet handed out to the group (never below `consumer_offset`).
    pub pull_offset: u64,
    /// Unix ms of the group's last consume from the queue when the consume engine knows it
    /// (it popped there); else the store time of the last message the group acknowledged
    /// (RocketMQ's own figure); 0 when neither exists.
    pub last_timestamp_ms: i64,
}

/// A group's consume stats on this broker.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupConsumeStats {
    /// Sorted by topic and queue.
    pub queues: Vec<QueueConsumeStats>,
    /// Messages delivered to the group per second over the last minute, from the traffic
    /// history of the topics of `queues`.
    pub consume_tps: f64,
}

/// How a client's version is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientVersion {
    /// A remoting client's RocketMQ version number (`MQVersion`'s ordinal), as it sends it.
    Remoting(i32),
    /// A gRPC client's SDK version from its user agent (`5.0.7`; "" when it sent none).
    Sdk(String),
}

/// One client of a consumer group connected here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConnection {
    pub client_id: String,
    /// ip:port ("" when unknown).
    pub address: String,
    /// Its language by RocketMQ's name (`JAVA`, `GO`, `DOTNET`, ...; "" when unknown).
    pub language: String,
    pub version: ClientVersion,
}

/// One subscription of a group's clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSubscription {
    pub topic: String,
    /// `*`, `a || b`, or a SQL92 expression.
    pub expression: String,
    /// `TAG` or `SQL92`.
    pub expression_type: String,
    /// The tags of a tag filter (none for `*` and SQL92).
    pub tags: Vec<String>,
    /// The client's version of it (a remoting client's timestamp; 0 for gRPC clients,
    /// whose Settings carry none).
    pub version: i64,
}

/// A consumer group's clients connected to this broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConnections {
    /// Sorted by client id (gRPC sessions, then remoting members).
    pub clients: Vec<GroupConnection>,
    /// By topic, one per topic (a remoting member's newest version first).
    pub subscriptions: Vec<GroupSubscription>,
    /// RocketMQ's `ConsumeType` name of the member heard from last: `CONSUME_PASSIVELY`
    /// (push), `CONSUME_ACTIVELY` (pull, and gRPC simple consumers, as RocketMQ's proxy
    /// registers them) or `CONSUME_POP`.
    pub consume_type: String,
    pub message_model: MessageModel,
    /// RocketMQ's `ConsumeFromWhere` name: a remoting member's own; for gRPC members where
    /// Apogee starts the group in a queue it never consumed from.
    pub consume_from_where: String,
}

/// A group's acknowledged offsets: (topic, group) -> queue id -> offset.
pub type ConsumerOffsetTable = BTreeMap<(String, String), BTreeMap<u32, u64>>;

impl Broker {
    /// `group`'s consume stats on this broker: every queue of every topic it consumes here,
    /// or only those of `topics` when it names any. A group without progress, offsets or
    /// clients here has none (an empty table, as RocketMQ's broker answers).
    pub fn consume_stats(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<GroupConsumeStats, ApogeeError> {
        limits::validate_group(group)?;
        for topic in topics {
            limits::validate_topic(topic)?;
        }
        let mut lags = self.lag_sources().group_lag(group, topics)?;
        if !topics.is_empty() {
            lags.retain(|q| topics.contains(&q.topic));
        }
        let mut queues = Vec::with_capacity(lags.len());
        for q in &lags {
            let last_timestamp_ms = match q.last_consume_ms {
                Some(ms) => ms,
                None => last_acknowledged_store_ms(self, q)?,
            };
            queues.push(QueueConsumeStats {
                topic: q.topic.clone(),
                queue_id: q.queue_id,
                broker_offset: q.next_offset,
                consumer_offset: q.consumer_offset,
                pull_offset: q.pop_offset.max(q.consumer_offset),
                last_timestamp_ms,
            });
        }
        let consumed: BTreeSet<&str> = queues.iter().map(|q| q.topic.as_str()).collect();
        let consume_tps = self.consume_rate(group, &consumed);
        Ok(GroupConsumeStats {
            queues,
            consume_tps,
        })
    }

    /// Messages of `topics` delivered to `group` per second over the last minute (up to
    /// now: the current, partial bucket of the traffic history and the ones before it).
    fn consume_rate(&self, group: &str, topics: &BTreeSet<&str>) -> f64 {
        let history = self.metrics().traffic().history(&TrafficHistoryRequest {
            topic: String::new(),
            group: group.to_string(),
        });
        let bucket_ms = i64::from(history.bucket_secs) * 1000;
        if bucket_ms <= 0 {
            return 0.0;
        }
        let window_buckets = (RATE_WINDOW_MS / bucket_ms).max(1) as usize;
        // The newest bucket counts up to the sample, so the window ends there.
        let partial_ms =
            (history.sampled_at_ms - (history.newest_end_ms - bucket_ms)).clamp(0, bucket_ms);
        let span_ms = (window_buckets as i64 - 1) * bucket_ms + partial_ms;
        if span_ms <= 0 {
            return 0.0;
        }
        let messages: u64 = history
            .series
            .iter()
            .filter(|s| topics.contains(s.topic.as_str()))
            .map(|s| s.counts.iter().rev().take(window_buckets).sum::<u64>())
            .sum();
        messages as f64 * 1000.0 / span_ms as f64
    }

    /// `group`'s clients connected here with their subscriptions; no clients when none is.
    pub fn group_connections(&self, group: &str) -> Result<GroupConnections, ApogeeError> {
        limits::validate_group(group)?;
        let sessions = self.sessions().clients_of_group(group);
        let members: Vec<_> = self
            .remoting_clients()
            .list()
            .into_iter()
            .filter_map(|c| {
                let m = c.consumer_groups.get(group)?.clone();
                Some((c, m))
            })
            .collect();
        let mut clients: Vec<GroupConnection> = sessions
            .iter()
            .map(|s| GroupConnection {
                client_id: s.client_id.clone(),
                address: s.address.clone(),
                language: rocketmq_language(s.language).to_string(),
                version: ClientVersion::Sdk(s.version.clone()),
            })
            .collect();
        clients.extend(members.iter().map(|(c, _)| GroupConnection {
            client_id: c.client_id.clone(),
            address: c.peer.to_string(),
            language: c.language.clone(),
            version: ClientVersion::Remoting(c.version),
        }));

        let mut by_topic: BTreeMap<String, GroupSubscription> = BTreeMap::new();
        for (_, m) in &members {
            for s in &m.subscriptions {
                let newer = by_topic
                    .get(&s.topic)
                    .is_none_or(|known| known.version < s.version);
                if newer {
                    by_topic.insert(
                        s.topic.clone(),
                        GroupSubscription {
                            topic: s.topic.clone(),
                            expression: s.expression.clone(),
                            expression_type: s.expression_type.clone(),
                            tags: s.tags.clone(),
                            version: s.version,
                        },
                    );
                }
            }
        }
        for s in &sessions {
            for sub in &s.subscriptions {
                by_topic
                    .entry(sub.topic.clone())
                    .or_insert_with(|| grpc_subscription(sub));
            }
        }

        // The member heard from last says how the group consumes, as in RocketMQ.
        let newest_member = members.iter().max_by_key(|(c, _)| c.last_heartbeat_ms);
        let (consume_type, message_model, consume_from_where) =
            match (newest_member, sessions.first()) {
                (Some((_, m)), _) => (
                    m.consume_type.clone(),
                    m.message_model,
                    m.consume_from_where.clone(),
                ),
                (None, Some(s)) => {
                    let starts_late = self.groups().start_after_ms(group, now_ms()).is_some();
                    (
                        grpc_consume_type(s.kind).to_string(),
                        MessageModel::Clustering,
                        if starts_late {
                            "CONSUME_FROM_LAST_OFFSET"
                        } else {
                            "CONSUME_FROM_FIRST_OFFSET"
                        }
                        .to_string(),
                    )
                }
                (None, None) => (String::new(), MessageModel::Clustering, String::new()),
            };
        Ok(GroupConnections {
            clients,
            subscriptions: by_topic.into_values().collect(),
            consume_type,
            message_model,
            consume_from_where,
        })
    }

    /// Every group's acknowledged offset per queue here: the consume engine's progress where
    /// a group popped, else the offset it committed (remoting pull and push consumers, gRPC
    /// UpdateOffset), as stored.
    pub fn all_consumer_offsets(&self) -> Result<ConsumerOffsetTable, ApogeeError> {
        let mut table = ConsumerOffsetTable::new();
        for (q, offset) in committed_offsets(self.store(), None)? {
            table
                .entry((q.topic, q.group))
                .or_default()
                .insert(q.queue_id, offset);
        }
        for (group, p) in self.consume().all_progress() {
            table
                .entry((p.topic, group))
                .or_default()
                .insert(p.queue_id, p.consumer_offset);
        }
        Ok(table)
    }
}

/// The store time of the last message `q`'s group acknowledged in its queue; 0 when the
/// group acknowledged none or that message is no longer stored.
fn last_acknowledged_store_ms(broker: &Broker, q: &QueueLag) -> Result<i64, ApogeeError> {
    let Some(last) = q.consumer_offset.checked_sub(1) else {
        return Ok(0);
    };
    let store = broker.store();
    let (min, _) = store
        .queue_bounds(&q.topic, q.queue_id)
        .map_err(ApogeeError::from)?;
    if last < min {
        return Ok(0);
    }
    Ok(store
        .queue_entries(&q.topic, q.queue_id, last, 1)
        .map_err(ApogeeError::from)?
        .first()
        .map_or(0, |e| e.store_timestamp_ms))
}

/// A gRPC consumer's subscription as RocketMQ's tools list it.
fn grpc_subscription(sub: &apogee_server::telemetry::SessionSubscription) -> GroupSubscription {
    let expression = if sub.expression.trim().is_empty() {
        "*".to_string()
    } else {
        sub.expression.clone()
    };
    let tags = if sub.sql {
        Vec::new()
    } else {
        expression
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty() && *t != "*")
            .map(str::to_string)
            .collect()
    };
    GroupSubscription {
        topic: sub.topic.clone(),
        expression,
        expression_type: if sub.sql { "SQL92" } else { "TAG" }.to_string(),
        tags,
        version: 0,
    }
}

/// How RocketMQ's proxy registers a gRPC consumer of `kind` (`ConsumeType`).
fn grpc_consume_type(kind: ClientType) -> &'static str {
    match kind {
        ClientType::PushConsumer => "CONSUME_PASSIVELY",
        _ => "CONSUME_ACTIVELY",
    }
}

/// A gRPC client's language by RocketMQ's `LanguageCode` name (`OTHER` for the ones it
/// lacks, "" when the client named none).
fn rocketmq_language(language: apogee_proto::v2::Language) -> &'static str {
    use apogee_proto::v2::Language as L;
    match language {
        L::Unspecified => "",
        L::Java => "JAVA",
        L::Cpp => "CPP",
        L::DotNet => "DOTNET",
        L::Golang => "GO",
        L::Rust => "RUST",
        L::Python => "PYTHON",
        L::Php => "PHP",
        L::NodeJs => "NODE_JS",
        L::Ruby => "RUBY",
        L::ObjectiveC | L::Dart | L::Kotlin => "OTHER",
    }
}
