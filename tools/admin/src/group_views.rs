//! How `apogee group list|describe` show consumer groups: rows and views of a group's config
//! (retry policy, lite binding), its per-queue progress and its clients, and the note that a
//! receive created a group.

use crate::group::format_ms;
use crate::message_query::rfc3339;
use crate::output::{render_list, Format, Table, TableRow};
use apogee_proto::cluster;
use apogee_proto::group::RetryPolicy;
use apogee_proto::group_convert::retry_from_proto;
use serde::Serialize;

/// A retry policy as JSON shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RetryView {
    Exponential {
        initial_ms: u64,
        max_ms: u64,
        multiplier: f64,
    },
    Custom {
        steps_ms: Vec<u64>,
    },
}

impl From<&RetryPolicy> for RetryView {
    fn from(r: &RetryPolicy) -> Self {
        match r {
            RetryPolicy::Exponential {
                initial_ms,
                max_ms,
                multiplier,
            } => RetryView::Exponential {
                initial_ms: *initial_ms,
                max_ms: *max_ms,
                multiplier: *multiplier,
            },
            RetryPolicy::Custom(steps) => RetryView::Custom {
                steps_ms: steps.clone(),
            },
        }
    }
}

impl RetryView {
    /// "exponential 1s..5m x2", "custom 1s,5s,10s" (long lists shortened).
    pub fn cell(&self) -> String {
        match self {
            RetryView::Exponential {
                initial_ms,
                max_ms,
                multiplier,
            } => format!(
                "exponential {}..{} x{multiplier}",
                format_ms(*initial_ms),
                format_ms(*max_ms)
            ),
            RetryView::Custom { steps_ms } if steps_ms.len() > 6 => format!(
                "custom {},...,{} ({} steps)",
                steps_ms[..4]
                    .iter()
                    .map(|s| format_ms(*s))
                    .collect::<Vec<_>>()
                    .join(","),
                format_ms(steps_ms[steps_ms.len() - 1]),
                steps_ms.len()
            ),
            RetryView::Custom { steps_ms } => format!(
                "custom {}",
                steps_ms
                    .iter()
                    .map(|s| format_ms(*s))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

/// A group as created, updated or listed.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GroupRow {
    pub group: String,
    pub max_delivery_attempts: u32,
    pub retry: RetryView,
    pub fifo: bool,
    /// A lite group's binding; null for any other group.
    pub lite: Option<LiteView>,
    /// Receives ignore message priority.
    pub priority_off: bool,
    /// Broker groups holding the group.
    pub brokers: Vec<String>,
}

/// A lite group's binding as JSON shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LiteView {
    pub bind_topic: String,
    /// `shared` or `exclusive`.
    pub mode: String,
    /// 0: the broker's default.
    pub subscription_quota: u32,
}

impl LiteView {
    /// "chat shared", "chat exclusive quota 100".
    pub fn cell(&self) -> String {
        match self.subscription_quota {
            0 => format!("{} {}", self.bind_topic, self.mode),
            q => format!("{} {} quota {q}", self.bind_topic, self.mode),
        }
    }
}

impl TableRow for GroupRow {
    fn headers() -> Vec<&'static str> {
        vec![
            "GROUP",
            "MAX ATTEMPTS",
            "RETRY",
            "FIFO",
            "LITE",
            "PRIORITY OFF",
            "BROKERS",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.group.clone(),
            self.max_delivery_attempts.to_string(),
            self.retry.cell(),
            self.fifo.to_string(),
            self.lite
                .as_ref()
                .map_or_else(|| "-".into(), LiteView::cell),
            self.priority_off.to_string(),
            self.brokers.join(","),
        ]
    }
}

/// A row from a config off the wire (the defaults where it leaves fields unset).
pub fn group_row(wire: &cluster::GroupConfig, brokers: Vec<String>) -> GroupRow {
    let retry = wire
        .retry
        .as_ref()
        .map(retry_from_proto)
        .unwrap_or_default();
    GroupRow {
        group: wire.name.clone(),
        max_delivery_attempts: match wire.max_delivery_attempts {
            0 => apogee_proto::group::DEFAULT_MAX_DELIVERY_ATTEMPTS,
            n => n,
        },
        retry: (&retry).into(),
        fifo: wire.fifo,
        lite: (!wire.lite_bind_topic.is_empty()).then(|| LiteView {
            bind_topic: wire.lite_bind_topic.clone(),
            mode: if wire.lite_mode == cluster::LiteMode::Exclusive as i32 {
                "exclusive".into()
            } else {
                "shared".into()
            },
            subscription_quota: wire.lite_subscription_quota,
        }),
        priority_off: wire.priority_off,
        brokers,
    }
}

/// A deleted group.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GroupDeleted {
    pub group: String,
    pub brokers: Vec<String>,
}

impl TableRow for GroupDeleted {
    fn headers() -> Vec<&'static str> {
        vec!["GROUP", "DELETED FROM"]
    }
    fn cells(&self) -> Vec<String> {
        vec![self.group.clone(), self.brokers.join(",")]
    }
}

/// A group's progress in one queue.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct QueueRow {
    pub topic: String,
    pub queue_id: u32,
    pub broker: String,
    pub broker_offset: u64,
    pub consumer_offset: u64,
    pub pop_offset: u64,
    pub lag: u64,
    pub inflight: u64,
    /// Ms since the epoch; null when the group never consumed here.
    pub last_consume_ms: Option<i64>,
}

impl TableRow for QueueRow {
    fn headers() -> Vec<&'static str> {
        vec![
            "TOPIC",
            "QUEUE",
            "BROKER",
            "BROKER OFFSET",
            "CONSUMER OFFSET",
            "LAG",
            "INFLIGHT",
            "LAST CONSUME",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.topic.clone(),
            self.queue_id.to_string(),
            self.broker.clone(),
            self.broker_offset.to_string(),
            self.consumer_offset.to_string(),
            self.lag.to_string(),
            self.inflight.to_string(),
            self.last_consume_ms.map_or("-".into(), rfc3339),
        ]
    }
}

/// A live client of the group.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ClientRow {
    pub client_id: String,
    pub language: String,
    pub version: String,
    pub topics: Vec<String>,
    /// Broker groups (or "nameserver") its Telemetry sessions are open with.
    pub connected_to: Vec<String>,
}

impl TableRow for ClientRow {
    fn headers() -> Vec<&'static str> {
        vec!["CLIENT", "LANGUAGE", "VERSION", "TOPICS", "CONNECTED TO"]
    }
    fn cells(&self) -> Vec<String> {
        let dash = |s: &str| {
            if s.is_empty() {
                "-".into()
            } else {
                s.to_string()
            }
        };
        vec![
            self.client_id.clone(),
            dash(&self.language),
            dash(&self.version),
            self.topics.join(","),
            self.connected_to.join(","),
        ]
    }
}

/// What `group describe` shows.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GroupDescription {
    #[serde(flatten)]
    pub group: GroupRow,
    /// Sums over the queues.
    pub lag: u64,
    pub inflight: u64,
    pub queues: Vec<QueueRow>,
    pub clients: Vec<ClientRow>,
}

pub fn description(resp: cluster::DescribeGroupResponse) -> GroupDescription {
    let queues: Vec<QueueRow> = resp
        .queues
        .into_iter()
        .map(|q| QueueRow {
            topic: q.topic,
            queue_id: q.queue_id,
            broker: q.broker_name,
            broker_offset: q.broker_offset,
            consumer_offset: q.consumer_offset,
            pop_offset: q.pop_offset,
            lag: q.lag,
            inflight: q.inflight,
            last_consume_ms: (q.last_consume_ms > 0).then_some(q.last_consume_ms),
        })
        .collect();
    GroupDescription {
        group: group_row(&resp.config.unwrap_or_default(), resp.broker_names),
        lag: queues.iter().map(|q| q.lag).sum(),
        inflight: queues.iter().map(|q| q.inflight).sum(),
        queues,
        clients: resp
            .clients
            .into_iter()
            .map(|c| ClientRow {
                client_id: c.client_id,
                language: c.language,
                version: c.version,
                topics: c.topics,
                connected_to: c.connected_to,
            })
            .collect(),
    }
}

/// The description as text: the group's settings, its queues with a total line, its clients;
/// or one JSON object (on one line with `-o jsonl`).
pub fn render_description(d: &GroupDescription, f: Format) -> String {
    if let Some(text) = crate::output::render_value(d, f) {
        return text;
    }
    let mut out = render_list(std::slice::from_ref(&d.group), f);
    out.push('\n');
    let mut queues = Table::new(QueueRow::headers());
    for q in &d.queues {
        queues.push(q.cells());
    }
    let mut total = vec![String::new(); QueueRow::headers().len()];
    total[0] = "TOTAL".into();
    total[5] = d.lag.to_string();
    total[6] = d.inflight.to_string();
    queues.push(total);
    out.push_str(&queues.render());
    out.push('\n');
    if d.clients.is_empty() {
        out.push_str("no connected clients\n");
    } else {
        out.push_str(&render_list(&d.clients, f));
    }
    out
}

/// What `apogee consume` says when its receives created the group: a mistyped group
/// name is new, and (starting at the earliest offset) replays the whole topic.
pub fn created_note(group: &str, created: &[apogee_client::GroupCreated]) -> Option<String> {
    let mut by_start: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for c in created {
        by_start
            .entry(c.start.as_str())
            .or_default()
            .push(&c.broker_name);
    }
    let parts: Vec<String> = by_start
        .into_iter()
        .map(|(start, brokers)| {
            format!(
                "created on {}, starting at the {start} offset",
                brokers.join(", ")
            )
        })
        .collect();
    (!parts.is_empty()).then(|| format!("group {group} did not exist: {}", parts.join("; ")))
}
