//! What RocketMQ's tools read of one topic on this broker (`mqadmin topicStatus`, the
//! dashboard's topic page), SUB on the topic:
//!
//! - GET_TOPIC_CONFIG: the topic's config as RocketMQ's `TopicConfig` (its tools ask it of
//!   every broker of the route first, for a static topic's queue mapping, which Apogee never
//!   has);
//! - GET_TOPIC_STATS_INFO: each queue with its oldest and next offset and the store time of
//!   its last message, from the same action as the admin protocol's TopicStatus
//!   ([`Broker::topic_queues`]). The body is RocketMQ's `TopicStatsTable` as its broker writes
//!   it (fastjson): a map keyed by `MessageQueue` objects, each key an object literal, fields
//!   in name order. That is not JSON a standard parser reads, but it is what RocketMQ's tools
//!   parse.

use super::args;
use crate::actions::admin::QueueState;
use crate::services::Broker;
use crate::topics::{MessageKind, TopicConfig};
use apogee_proto::auth::acl::{Action, ResourceKind};
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::ApogeeError;
use apogee_server::remoting::Caller;
use std::fmt::Write as _;

/// The topic a topic read names, once the caller may read it; else the answer refusing it.
fn readable_topic<'r>(
    caller: &Caller,
    request: &'r RemotingCommand,
) -> Result<&'r str, Box<RemotingCommand>> {
    let topic = args::string(request, "topic").map_err(|e| Box::new(e.answer(request)))?;
    caller
        .authorize(&[(ResourceKind::Topic, topic)], Action::Sub)
        .map_err(|e| Box::new(RemotingCommand::refusal(request, &e)))?;
    Ok(topic)
}

/// Answers GET_TOPIC_CONFIG for the topic the request names.
pub fn topic_config(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    let topic = match readable_topic(caller, request) {
        Ok(t) => t,
        Err(answer) => return *answer,
    };
    match broker.topics().get(topic) {
        Some(config) => RemotingCommand::success(request).with_body(config_body(&config)),
        None => RemotingCommand::refusal(request, &ApogeeError::TopicNotFound(topic.to_string())),
    }
}

/// `config` as RocketMQ's `TopicConfig` JSON: read = write queues, `perm` in RocketMQ's bits
/// (read 4, write 2), and the attribute `message.type` RocketMQ 5 checks sends against
/// (`MIXED` for a topic that takes more than one type).
pub(super) fn config_body(config: &TopicConfig) -> String {
    let perm = (if config.permission.readable() { 4 } else { 0 })
        | (if config.permission.writable() { 2 } else { 0 });
    let kinds: Vec<MessageKind> = config.kinds.iter().collect();
    let message_type = match kinds.as_slice() {
        [one] => one.to_wire().as_str_name(),
        _ => "MIXED",
    };
    serde_json::json!({
        "attributes": {"message.type": message_type},
        "order": false,
        "perm": perm,
        "readQueueNums": config.queues,
        "topicFilterType": "SINGLE_TAG",
        "topicName": config.name,
        "topicSysFlag": 0,
        "writeQueueNums": config.queues,
    })
    .to_string()
}

/// Answers GET_TOPIC_STATS_INFO for the topic the request names.
pub fn topic_stats(broker: &Broker, caller: &Caller, request: &RemotingCommand) -> RemotingCommand {
    let topic = match readable_topic(caller, request) {
        Ok(t) => t,
        Err(answer) => return *answer,
    };
    match broker.topic_queues(topic) {
        Ok(queues) => RemotingCommand::success(request).with_body(stats_table(
            &broker.config().broker_name,
            topic,
            &queues,
        )),
        Err(e) => RemotingCommand::refusal(request, &e),
    }
}

/// `queues` of `topic` on broker `broker_name` as a `TopicStatsTable` body.
fn stats_table(broker_name: &str, topic: &str, queues: &[QueueState]) -> String {
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let (broker_name, topic) = (quoted(broker_name), quoted(topic));
    let mut body =
        String::with_capacity(32 + queues.len() * (broker_name.len() + topic.len() + 120));
    body.push_str("{\"offsetTable\":{");
    for (i, q) in queues.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            "{{\"brokerName\":{broker_name},\"queueId\":{},\"topic\":{topic}}}:\
             {{\"lastUpdateTimestamp\":{},\"maxOffset\":{},\"minOffset\":{}}}",
            q.queue_id, q.last_store_ms, q.max_offset, q.min_offset
        );
    }
    body.push_str("}}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_keyed_by_message_queue_objects_as_rocketmq_writes_it() {
        let queues = [
            QueueState {
                queue_id: 0,
                min_offset: 3,
                max_offset: 10,
                last_store_ms: 1_795_000_000_000,
            },
            QueueState {
                queue_id: 1,
                min_offset: 0,
                max_offset: 0,
                last_store_ms: 0,
            },
        ];
        assert_eq!(
            stats_table("broker-a", "orders", &queues),
            "{\"offsetTable\":{\
             {\"brokerName\":\"broker-a\",\"queueId\":0,\"topic\":\"orders\"}:\
             {\"lastUpdateTimestamp\":1795000000000,\"maxOffset\":10,\"minOffset\":3},\
             {\"brokerName\":\"broker-a\",\"queueId\":1,\"topic\":\"orders\"}:\
             {\"lastUpdateTimestamp\":0,\"maxOffset\":0,\"minOffset\":0}}}"
        );
        assert_eq!(stats_table("b", "t", &[]), "{\"offsetTable\":{}}");
    }

    #[test]
    fn a_config_reads_as_rocketmqs_topic_config() {
        use crate::topics::TopicPermission;
        let fifo = TopicConfig::new("orders", 4).with_kinds(&[MessageKind::Fifo]);
        let v: serde_json::Value = serde_json::from_str(&config_body(&fifo)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "attributes": {"message.type": "FIFO"},
                "order": false,
                "perm": 6,
                "readQueueNums": 4,
                "topicFilterType": "SINGLE_TAG",
                "topicName": "orders",
                "topicSysFlag": 0,
                "writeQueueNums": 4,
            })
        );
        let mixed = TopicConfig::new("t", 1)
            .with_kinds(&[MessageKind::Normal, MessageKind::Delay])
            .with_permission(TopicPermission::Read);
        let v: serde_json::Value = serde_json::from_str(&config_body(&mixed)).unwrap();
        assert_eq!(v["attributes"]["message.type"], "MIXED");
        assert_eq!(v["perm"], 4);
    }
}
