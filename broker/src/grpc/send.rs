//! SendMessage on the wire: decodes the v2 request into the producer service's input
//! ([`Outgoing`] messages), calls the core's `Broker::send` once and encodes its
//! answer: a result entry per message, all with the request's status. A refused request
//! gets that status on every entry; a request stored but not replicated gets the store's
//! status for it on every entry, with the offsets. A stored message's entry names its
//! transaction id as RocketMQ's does: a TRANSACTION message's own, any other's message id.

use crate::membership::SendAdmission;
use crate::produce::{Outgoing, Sender, Sent};
use crate::services::Broker;
use apogee_proto::error::ok_status;
use apogee_proto::time::{duration_ms, timestamp_ms};
use apogee_proto::v2;
use apogee_proto::ApogeeError;
use std::time::Duration;

/// The producer service's input for one v2 message, its fields moved, not copied.
fn decode(m: v2::Message) -> Outgoing {
    let has_system_properties = m.system_properties.is_some();
    let sp = m.system_properties.unwrap_or_default();
    let mut properties: Vec<(String, String)> = m.user_properties.into_iter().collect();
    properties.sort_unstable();
    Outgoing {
        topic: m.topic.map(|t| t.name).unwrap_or_default(),
        has_system_properties,
        message_id: sp.message_id,
        tag: sp.tag,
        keys: sp.keys,
        message_group: sp.message_group,
        lite_topic: sp.lite_topic,
        priority: sp.priority,
        message_type: sp.message_type,
        body_encoding: sp.body_encoding,
        delivery_timestamp: sp.delivery_timestamp,
        queue_id: sp.queue_id,
        born_timestamp_ms: sp.born_timestamp.as_ref().map(timestamp_ms),
        born_host: sp.born_host,
        first_check: sp
            .orphaned_transaction_recovery_duration
            .as_ref()
            .map(duration_ms)
            .filter(|&ms| ms > 0)
            .map(|ms| Duration::from_millis(ms as u64)),
        properties,
        flag: 0,
        trace_context: sp.trace_context.filter(|t| !t.is_empty()),
        body: m.body,
    }
}

/// The answer refusing a whole request (the messages with `ids`) with `e`.
fn refuse_all(ids: Vec<String>, e: &ApogeeError) -> v2::SendMessageResponse {
    let status = e.to_status();
    v2::SendMessageResponse {
        status: Some(status.clone()),
        entries: ids
            .into_iter()
            .map(|message_id| v2::SendResultEntry {
                status: Some(status.clone()),
                message_id,
                transaction_id: String::new(),
                offset: 0,
                ..Default::default()
            })
            .collect(),
    }
}

/// The answer for a stored request (the messages with `ids`).
fn stored(ids: Vec<String>, sent: Sent) -> v2::SendMessageResponse {
    let status = sent
        .not_replicated
        .as_ref()
        .map_or_else(ok_status, ApogeeError::to_status);
    // As RocketMQ's broker, every stored message's receipt names a transaction id: a
    // TRANSACTION message's own (what EndTransaction names), else the message id.
    let transaction_id = sent.transaction_id;
    v2::SendMessageResponse {
        status: Some(status.clone()),
        entries: ids
            .into_iter()
            .zip(sent.receipts)
            .map(|(message_id, r)| v2::SendResultEntry {
                status: Some(status.clone()),
                transaction_id: transaction_id.clone().unwrap_or_else(|| message_id.clone()),
                message_id,
                offset: r.queue_offset as i64,
                recall_handle: r.recall_handle.unwrap_or_default(),
            })
            .collect(),
    }
}

/// Stores the messages of one SendMessage request through the broker's producer service;
/// `admitted`: the send's pass of the handover gate, when `grpc::forward` took it.
pub async fn send_message(
    broker: &Broker,
    req: v2::SendMessageRequest,
    peer: &str,
    client_id: &str,
    admitted: Option<&SendAdmission>,
) -> v2::SendMessageResponse {
    let messages: Vec<Outgoing> = req.messages.into_iter().map(decode).collect();
    let ids: Vec<String> = messages.iter().map(|m| m.message_id.clone()).collect();
    let sender = Sender {
        client_id,
        peer,
        admitted,
    };
    match broker.send(messages, &sender).await {
        Ok(sent) => stored(ids, sent),
        Err(e) => refuse_all(ids, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::produce::Receipt;

    fn sent(transaction_id: Option<&str>, count: u64) -> Sent {
        Sent {
            receipts: (0..count)
                .map(|queue_offset| Receipt {
                    queue_offset,
                    recall_handle: None,
                })
                .collect(),
            log_offsets: (0..count).collect(),
            transaction_id: transaction_id.map(str::to_string),
            not_replicated: None,
        }
    }

    #[test]
    fn a_receipt_names_the_message_id_as_transaction_id_unless_it_is_a_transactions() {
        let answer = stored(vec!["M1".into(), "M2".into()], sent(None, 2));
        let ids: Vec<(&str, &str)> = answer
            .entries
            .iter()
            .map(|e| (e.message_id.as_str(), e.transaction_id.as_str()))
            .collect();
        assert_eq!(ids, [("M1", "M1"), ("M2", "M2")]);
        // A transaction's own id, which EndTransaction names, stays.
        let answer = stored(vec!["M3".into()], sent(Some("broker-a:T1"), 1));
        assert_eq!(answer.entries[0].message_id, "M3");
        assert_eq!(answer.entries[0].transaction_id, "broker-a:T1");
    }
}
