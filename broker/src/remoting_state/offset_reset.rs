//! Telling a group's remoting consumers that its offsets on a topic were moved: a 4.x
//! consumer keeps its position in memory and commits it back every few seconds, so a move
//! made on the broker alone would be overwritten by the next commit. The broker pushes
//! RESET_CONSUMER_CLIENT_OFFSET (oneway) to every live member of the group, with the new
//! offsets as RocketMQ's `ResetOffsetBody`; the client drops its queues of the topic, takes
//! the offsets, and pulls from them after its next rebalance. The same body answers
//! INVOKE_BROKER_TO_RESET_OFFSET (`crate::remoting::admin_writes`).

use super::clients::RemotingClients;
use apogee_proto::remoting::codes::request as req_code;
use apogee_proto::remoting::RemotingCommand;
use std::fmt::Write as _;

/// RocketMQ's `ResetOffsetBody` (fastjson): `offsetTable` maps `MessageQueue` objects, each
/// key an object literal with its fields in name order, to the queue's new offset. Not JSON
/// a standard parser reads, but what RocketMQ's clients and tools parse.
pub fn reset_offset_body(broker_name: &str, topic: &str, offsets: &[(u32, u64)]) -> String {
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let (broker_name, topic) = (quoted(broker_name), quoted(topic));
    let mut body =
        String::with_capacity(32 + offsets.len() * (broker_name.len() + topic.len() + 60));
    body.push_str("{\"offsetTable\":{");
    for (i, (queue_id, offset)) in offsets.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            "{{\"brokerName\":{broker_name},\"queueId\":{queue_id},\"topic\":{topic}}}:{offset}"
        );
    }
    body.push_str("}}");
    body
}

impl RemotingClients {
    /// Pushes the move of `group`'s offsets on `topic` (to `offsets`, on broker
    /// `broker_name`; `timestamp_ms` the time asked for, -1 for the queues' ends) to the
    /// group's live remoting consumers; answers how many were told. A member whose
    /// connection is backlogged or closed is skipped (logged): it resumes from its own
    /// position and commits it over the move.
    pub fn tell_offsets_reset(
        &self,
        group: &str,
        topic: &str,
        broker_name: &str,
        timestamp_ms: i64,
        offsets: &[(u32, u64)],
    ) -> usize {
        let members = self.consumers_of(group);
        if members.is_empty() {
            return 0;
        }
        let body = reset_offset_body(broker_name, topic, offsets);
        let mut told = 0;
        for (client, conn) in members {
            let push = RemotingCommand::request(req_code::RESET_CONSUMER_CLIENT_OFFSET)
                .with_ext_str("topic", topic)
                .with_ext_str("group", group)
                .with_ext_int("queueId", -1)
                .with_ext_int("timestamp", timestamp_ms)
                .with_ext_str("isForce", "true")
                .with_body(body.clone());
            match conn.send_oneway(push) {
                Ok(()) => told += 1,
                Err(e) => tracing::warn!(group, topic, client, "offset reset not pushed: {e}"),
            }
        }
        told
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_maps_message_queue_objects_to_offsets_as_rocketmq_writes_it() {
        assert_eq!(
            reset_offset_body("broker-a", "orders", &[(0, 5), (1, 0)]),
            "{\"offsetTable\":{\
             {\"brokerName\":\"broker-a\",\"queueId\":0,\"topic\":\"orders\"}:5,\
             {\"brokerName\":\"broker-a\",\"queueId\":1,\"topic\":\"orders\"}:0}}"
        );
        assert_eq!(reset_offset_body("b", "t", &[]), "{\"offsetTable\":{}}");
    }
}
