//! What RocketMQ's tools read of consumer groups on this broker (`mqadmin consumerProgress`,
//! `consumerConnection`, `exportMetadata`, the dashboard's consumer pages):
//!
//! - GET_CONSUME_STATS (208): a group's progress per queue and its consume rate
//!   ([`Broker::consume_stats`]) as RocketMQ's `ConsumeStats`, keyed by `MessageQueue`
//!   objects as fastjson writes them (see `topic_reads`); SUB on the group and the topics
//!   named;
//! - GET_CONSUMER_CONNECTION_LIST (203): a group's clients connected here with their
//!   subscriptions ([`Broker::group_connections`]) as `ConsumerConnection`, or
//!   CONSUMER_NOT_ONLINE when none is, as RocketMQ answers; SUB on the group;
//! - GET_ALL_CONSUMER_OFFSET (43), GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201) and
//!   GET_ALL_TOPIC_CONFIG (21): the tables RocketMQ's broker keeps in its
//!   `consumerOffset.json`, `subscriptionGroup.json` and `topics.json`, whole (no pages: the
//!   answers carry no total, so the tools take them as complete); admin only.
//!
//! Apogee keeps no data version of its groups and offsets: those tables answer RocketMQ's
//! empty one (counter 0) stamped with the time of the answer; the topic table's counter is
//! its own.

use super::args;
use crate::actions::admin::{
    ClientVersion, ConsumerOffsetTable, GroupConnections, GroupConsumeStats,
};
use crate::services::Broker;
use apogee_proto::auth::acl::{Action, ResourceKind};
use apogee_proto::group::{GroupConfig, RetryPolicy};
use apogee_proto::remoting::codes::response;
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::time::now_ms;
use apogee_proto::{names, ApogeeError};
use apogee_server::remoting::Caller;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::sync::Arc;

/// RocketMQ's version number (`MQVersion.Version` ordinal) of 5.0.0; each later 5.x.y
/// release is two on (its SNAPSHOT, then itself), up to 5.9.9.
const ROCKETMQ_V5_0_0: i32 = 413;

/// The separator of GET_CONSUME_STATS's `topicList`.
const TOPIC_LIST_SEPARATOR: char = ';';

/// Answers GET_CONSUME_STATS (consumerGroup, topic, topicList).
pub fn consume_stats(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    let group = match args::string(request, "consumerGroup") {
        Ok(g) => g,
        Err(e) => return e.answer(request),
    };
    let named = |field: &str| {
        request
            .ext(field)
            .filter(|v| !v.trim().is_empty() && *v != "null")
    };
    // A topic list, when given, wins over the topic (as RocketMQ reads the header).
    let topics: Vec<String> = match (named("topicList"), named("topic")) {
        (Some(list), _) => list
            .split(TOPIC_LIST_SEPARATOR)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        (None, Some(topic)) => vec![topic.trim().to_string()],
        (None, None) => Vec::new(),
    };
    let mut resources = vec![(ResourceKind::Group, group)];
    resources.extend(topics.iter().map(|t| (ResourceKind::Topic, t.as_str())));
    if let Err(e) = caller.authorize(&resources, Action::Sub) {
        return RemotingCommand::refusal(request, &e);
    }
    match broker.consume_stats(group, &topics) {
        Ok(stats) => RemotingCommand::success(request)
            .with_body(consume_stats_body(&broker.config().broker_name, &stats)),
        Err(e) => RemotingCommand::refusal(request, &e),
    }
}

/// `stats` on broker `broker_name` as RocketMQ's `ConsumeStats`.
fn consume_stats_body(broker_name: &str, stats: &GroupConsumeStats) -> String {
    let quoted = |s: &str| Value::from(s).to_string();
    let broker_name = quoted(broker_name);
    let mut body = String::with_capacity(64 + stats.queues.len() * 200);
    let _ = write!(
        body,
        "{{\"consumeTps\":{:?},\"offsetTable\":{{",
        stats.consume_tps
    );
    for (i, q) in stats.queues.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            "{{\"brokerName\":{broker_name},\"queueId\":{},\"topic\":{}}}:\
             {{\"brokerOffset\":{},\"consumerOffset\":{},\"lastTimestamp\":{},\"pullOffset\":{}}}",
            q.queue_id,
            quoted(&q.topic),
            q.broker_offset,
            q.consumer_offset,
            q.last_timestamp_ms,
            q.pull_offset
        );
    }
    body.push_str("}}");
    body
}

/// Answers GET_CONSUMER_CONNECTION_LIST (consumerGroup).
pub fn consumer_connections(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    let group = match args::string(request, "consumerGroup") {
        Ok(g) => g,
        Err(e) => return e.answer(request),
    };
    if let Err(e) = caller.authorize(&[(ResourceKind::Group, group)], Action::Sub) {
        return RemotingCommand::refusal(request, &e);
    }
    match broker.group_connections(group) {
        Ok(c) if c.clients.is_empty() => RemotingCommand::error(
            request,
            response::CONSUMER_NOT_ONLINE,
            format!("the consumer group[{group}] not online"),
        ),
        Ok(c) => RemotingCommand::success(request).with_body(connections_body(&c)),
        Err(e) => RemotingCommand::refusal(request, &e),
    }
}

/// `c` as RocketMQ's `ConsumerConnection`.
fn connections_body(c: &GroupConnections) -> String {
    let text_or_null = |s: &str| {
        if s.is_empty() {
            Value::Null
        } else {
            Value::from(s)
        }
    };
    let connections: Vec<Value> = c
        .clients
        .iter()
        .map(|client| {
            json!({
                "clientAddr": client.address,
                "clientId": client.client_id,
                "language": text_or_null(&client.language),
                "version": rocketmq_version(&client.version),
            })
        })
        .collect();
    let subscriptions: serde_json::Map<String, Value> = c
        .subscriptions
        .iter()
        .map(|s| {
            let codes: Vec<i32> = s.tags.iter().map(|t| java_string_hash(t)).collect();
            let data = json!({
                "classFilterMode": false,
                "codeSet": codes,
                "expressionType": s.expression_type,
                "subString": s.expression,
                "subVersion": s.version,
                "tagsSet": s.tags,
                "topic": s.topic,
            });
            (s.topic.clone(), data)
        })
        .collect();
    json!({
        "connectionSet": connections,
        "consumeFromWhere": text_or_null(&c.consume_from_where),
        "consumeType": text_or_null(&c.consume_type),
        "messageModel": c.message_model.as_str(),
        "subscriptionTable": subscriptions,
    })
    .to_string()
}

/// A client's version as RocketMQ numbers it: a remoting client's own number; a gRPC SDK's
/// `5.y.z` as `MQVersion`'s `V5_y_z` (5.0.0 when it cannot be read: every gRPC client is 5.x).
fn rocketmq_version(version: &ClientVersion) -> i32 {
    match version {
        ClientVersion::Remoting(n) => *n,
        ClientVersion::Sdk(text) => {
            let mut parts = text.split(['.', '-']).map(|p| p.parse::<i32>().ok());
            match (
                parts.next().flatten(),
                parts.next().flatten(),
                parts.next().flatten(),
            ) {
                (Some(5), Some(minor @ 0..=9), Some(patch @ 0..=9)) => {
                    ROCKETMQ_V5_0_0 + 2 * (minor * 10 + patch)
                }
                _ => ROCKETMQ_V5_0_0,
            }
        }
    }
}

/// Java's `String.hashCode` of `s` (RocketMQ's subscription `codeSet` holds its tags').
fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The refusal of an admin-only read to a caller who is not an admin, if it is one.
fn refuse_non_admin(caller: &Caller, request: &RemotingCommand) -> Option<RemotingCommand> {
    (!caller.is_admin()).then(|| {
        RemotingCommand::refusal(
            request,
            &ApogeeError::Forbidden(format!(
                "request code {} reads the broker's whole tables: admin only",
                request.code
            )),
        )
    })
}

/// RocketMQ's `DataVersion` with `counter`, stamped now.
fn data_version(counter: i64) -> Value {
    json!({"counter": counter, "stateVersion": 0, "timestamp": now_ms()})
}

/// Answers GET_ALL_CONSUMER_OFFSET: every group's acknowledged offsets here, as RocketMQ's
/// `ConsumerOffsetSerializeWrapper`.
pub fn all_consumer_offsets(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    if let Some(refusal) = refuse_non_admin(caller, request) {
        return refusal;
    }
    match broker.all_consumer_offsets() {
        Ok(table) => RemotingCommand::success(request).with_body(offsets_body(&table)),
        Err(e) => RemotingCommand::refusal(request, &e),
    }
}

/// `table` as RocketMQ's broker writes it: `topic@group` -> queue id -> offset, the queue
/// ids unquoted (fastjson's integer keys).
fn offsets_body(table: &ConsumerOffsetTable) -> String {
    let mut body = String::with_capacity(64 + table.len() * 64);
    let _ = write!(
        body,
        "{{\"dataVersion\":{},\"offsetTable\":{{",
        data_version(0)
    );
    for (i, ((topic, group), queues)) in table.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let key = Value::from(format!("{topic}@{group}"));
        let _ = write!(body, "{key}:{{");
        for (j, (queue_id, offset)) in queues.iter().enumerate() {
            if j > 0 {
                body.push(',');
            }
            let _ = write!(body, "{queue_id}:{offset}");
        }
        body.push('}');
    }
    body.push_str("}}");
    body
}

/// Answers GET_ALL_SUBSCRIPTIONGROUP_CONFIG: the consumer groups configured here, as
/// RocketMQ's `SubscriptionGroupWrapper`.
pub async fn all_subscription_groups(
    broker: &Arc<Broker>,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    if let Some(refusal) = refuse_non_admin(caller, request) {
        return refusal;
    }
    match broker.list_groups(false).await {
        Ok(groups) => {
            let table: serde_json::Map<String, Value> = groups
                .iter()
                .filter(|g| g.configured)
                .map(|g| (g.config.name.clone(), subscription_group(&g.config)))
                .collect();
            let body = json!({
                "dataVersion": data_version(0),
                "forbiddenTable": {},
                "subscriptionGroupTable": table,
            });
            RemotingCommand::success(request).with_body(body.to_string())
        }
        Err(e) => RemotingCommand::refusal(request, &e),
    }
}

/// `config` as RocketMQ's `SubscriptionGroupConfig`: its retries (`retryMaxTimes` counts the
/// redeliveries after the first, `groupRetryPolicy` the backoff) and order; the switches
/// Apogee has not (consume enable, broadcast, slow-consumer broker, timeout) at RocketMQ's
/// defaults, which is how Apogee behaves.
fn subscription_group(config: &GroupConfig) -> Value {
    let retry = match &config.retry {
        RetryPolicy::Custom(steps) => json!({
            "customizedRetryPolicy": {"next": steps},
            "type": "CUSTOMIZED",
        }),
        RetryPolicy::Exponential {
            initial_ms,
            max_ms,
            multiplier,
        } => {
            // RocketMQ's multiplier is a whole number; Apogee's may not be.
            let multiplier = if multiplier.fract() == 0.0 {
                json!(*multiplier as i64)
            } else {
                json!(multiplier)
            };
            json!({
                "exponentialRetryPolicy": {"initial": initial_ms, "max": max_ms, "multiplier": multiplier},
                "type": "EXPONENTIAL",
            })
        }
    };
    json!({
        "attributes": {},
        "brokerId": 0,
        "consumeBroadcastEnable": true,
        "consumeEnable": true,
        "consumeFromMinEnable": true,
        "consumeMessageOrderly": config.fifo,
        "consumeTimeoutMinute": 15,
        "groupName": config.name,
        "groupRetryPolicy": retry,
        "groupSysFlag": 0,
        "notifyConsumerIdsChangedEnable": true,
        "retryMaxTimes": config.max_delivery_attempts.saturating_sub(1),
        "retryQueueNums": 1,
        "whichBrokerWhenConsumeSlowly": 1,
    })
}

/// Answers GET_ALL_TOPIC_CONFIG: every topic here but lite topics' queues (system topics
/// included, as RocketMQ's broker lists them), as RocketMQ's
/// `TopicConfigAndMappingSerializeWrapper` (no static topic mappings: Apogee has none).
pub fn all_topic_configs(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    if let Some(refusal) = refuse_non_admin(caller, request) {
        return refusal;
    }
    let mut body = String::new();
    let _ = write!(
        body,
        "{{\"dataVersion\":{},\"mappingDataVersion\":{},\"topicConfigTable\":{{",
        data_version(broker.topics().data_version()),
        data_version(0)
    );
    let mut topics = broker.list_topics(true);
    topics.retain(|t| names::split_lite_queue_topic(&t.name).is_none());
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    for (i, topic) in topics.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            "{}:{}",
            Value::from(topic.name.as_str()),
            super::topic_reads::config_body(topic)
        );
    }
    body.push_str("},\"topicQueueMappingDetailMap\":{}}");
    RemotingCommand::success(request).with_body(body)
}

#[cfg(test)]
#[path = "group_reads_tests.rs"]
mod tests;
