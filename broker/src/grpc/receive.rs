//! ReceiveMessage (long polling), AckMessage and ChangeInvisibleDuration:
//! the consumer side of the v2 protocol over the consume engine; a receive is the broker's
//! pop action (`crate::actions`).

use super::convert::delivery_to_v2;
use crate::actions::{Answered, PopOrder, QueueChoice};
use crate::config::AutoCreateStart;
use crate::consume::MessageFilter;
use crate::services::Broker;
use apogee_proto::error::ok_status;
use apogee_proto::time::{duration_ms, timestamp};
use apogee_proto::v2::{self, receive_message_response::Content};
use apogee_proto::{limits, ApogeeError};
use std::time::Duration;

/// Default batch when the client leaves it 0.
const DEFAULT_RECEIVE_BATCH: i32 = 32;

/// ReceiveMessage: the pop action ([`Broker::pop`]) for the request. `deadline_ms` is the
/// time the client's gRPC deadline leaves (if it sent one): long polling ends well before
/// it. Returns the whole stream of responses (the messages, then exactly one status) and,
/// when this receive created the group, where it starts.
pub async fn receive(
    broker: &Broker,
    req: &v2::ReceiveMessageRequest,
    client_id: &str,
    deadline_ms: Option<i64>,
) -> (Vec<v2::ReceiveMessageResponse>, Option<AutoCreateStart>) {
    let decoded = decode_read(
        req.message_queue.as_ref(),
        req.filter_expression.as_ref(),
        req.long_polling_timeout.as_ref(),
        deadline_ms,
    );
    let (mq, filter, wait) = match decoded {
        Ok(d) => d,
        Err(e) => return (vec![status_response(e.to_status())], None),
    };
    let topic = mq.topic.as_ref();
    let order = PopOrder {
        group: req.group.as_ref().map_or("", |g| g.name.as_str()),
        topic: topic.map_or("", |t| t.name.as_str()),
        queues: QueueChoice::StartingAt(mq.id as i64),
        filter,
        batch: match req.batch_size {
            0 => DEFAULT_RECEIVE_BATCH,
            n => n,
        } as i64,
        invisible_ms: req.invisible_duration.as_ref().map(duration_ms),
        auto_renew: req.auto_renew,
        attempt_id: req.attempt_id.as_deref().filter(|a| !a.is_empty()),
        client_id,
        wait,
    };
    let popped = match broker.pop(&order).await {
        Ok(p) => p,
        Err(e) => return (vec![status_response(e.to_status())], None),
    };
    let created = popped.created_group;
    if popped.deliveries.is_empty() {
        let none =
            ApogeeError::MessageNotFound("no new message within the long-polling time".into());
        return (vec![status_response(none.to_status())], created);
    }
    let namespace = topic.map_or("", |t| t.resource_namespace.as_str());
    let store_host = broker.config().advertised_endpoint();
    let messages = popped
        .deliveries
        .iter()
        .map(|d| v2::ReceiveMessageResponse {
            content: Some(Content::Message(delivery_to_v2(d, namespace, &store_host))),
        });
    let responses = std::iter::once(hand_out_time_response(popped.at_ms))
        .chain(messages)
        .chain(std::iter::once(status_response(ok_status())))
        .collect();
    (responses, created)
}

/// The queue, filter and wait of a read (ReceiveMessage, PullMessage).
pub(super) fn decode_read<'r>(
    queue: Option<&'r v2::MessageQueue>,
    filter: Option<&v2::FilterExpression>,
    long_polling: Option<&prost_types::Duration>,
    deadline_ms: Option<i64>,
) -> Result<(&'r v2::MessageQueue, MessageFilter, Duration), ApogeeError> {
    let queue = queue.ok_or_else(|| ApogeeError::BadRequest("message_queue is required".into()))?;
    let filter = MessageFilter::from_expression(filter)?;
    let wait = long_polling_ms(long_polling, deadline_ms)?;
    Ok((queue, filter, Duration::from_millis(wait as u64)))
}

/// How long a request may long-poll: what the client asked for, shortened
/// to the server's maximum and to the client's gRPC deadline less a margin
/// (the answer must reach the client before it gives up). Negative is refused.
pub fn long_polling_ms(
    asked: Option<&prost_types::Duration>,
    deadline_ms: Option<i64>,
) -> Result<i64, ApogeeError> {
    const DEADLINE_MARGIN_MS: i64 = 500;
    let asked = asked.map(duration_ms).unwrap_or(0);
    if asked < 0 {
        return Err(ApogeeError::IllegalPollingTime(format!(
            "long-polling time {asked} ms is negative"
        )));
    }
    let mut granted = asked.min(limits::MAX_LONG_POLLING_MS);
    if let Some(d) = deadline_ms {
        granted = granted.min((d - DEADLINE_MARGIN_MS).max(0));
    }
    Ok(granted)
}

/// The `delivery_timestamp` entry of a stream that carries messages: when they were handed
/// out. RocketMQ's proxy sends one on every receive stream; the official Python client
/// (5.1.2) reads it for every batch and handles nothing without it. It goes first, so the
/// stream still ends with its one status; the clients read the entries in any order.
fn hand_out_time_response(handed_out_ms: i64) -> v2::ReceiveMessageResponse {
    v2::ReceiveMessageResponse {
        content: Some(Content::DeliveryTimestamp(timestamp(handed_out_ms))),
    }
}

fn status_response(status: v2::Status) -> v2::ReceiveMessageResponse {
    v2::ReceiveMessageResponse {
        content: Some(Content::Status(status)),
    }
}

/// The delivery a request answers, named by its group, topic, lite topic and handle.
fn answered<'r>(
    group: Option<&'r v2::Resource>,
    topic: Option<&'r v2::Resource>,
    lite_topic: Option<&'r str>,
    receipt_handle: &'r str,
) -> Answered<'r> {
    Answered {
        group: group.map_or("", |g| g.name.as_str()),
        topic: topic.map_or("", |t| t.name.as_str()),
        lite_topic,
        receipt_handle,
    }
}

/// AckMessage: the ack action ([`Broker::ack`]) for each entry.
pub fn ack(broker: &Broker, req: v2::AckMessageRequest) -> v2::AckMessageResponse {
    if req.entries.is_empty() {
        let s = ApogeeError::BadRequest("no entries to acknowledge".into()).to_status();
        return v2::AckMessageResponse {
            status: Some(s),
            entries: vec![],
        };
    }
    let entries: Vec<v2::AckMessageResultEntry> = req
        .entries
        .iter()
        .map(|e| {
            let delivery = answered(
                req.group.as_ref(),
                req.topic.as_ref(),
                e.lite_topic.as_deref(),
                &e.receipt_handle,
            );
            v2::AckMessageResultEntry {
                message_id: e.message_id.clone(),
                receipt_handle: e.receipt_handle.clone(),
                status: Some(match broker.ack(&delivery) {
                    Ok(()) => ok_status(),
                    Err(err) => err.to_status(),
                }),
            }
        })
        .collect();
    v2::AckMessageResponse {
        status: Some(overall(entries.iter().filter_map(|e| e.status.as_ref()))),
        entries,
    }
}

/// One status for many: the common one, or MULTIPLE_RESULTS when they differ.
fn overall<'a>(mut statuses: impl Iterator<Item = &'a v2::Status>) -> v2::Status {
    let Some(first) = statuses.next() else {
        return ok_status();
    };
    if statuses.all(|s| s.code == first.code) {
        first.clone()
    } else {
        v2::Status {
            code: v2::Code::MultipleResults as i32,
            message: "entries have different results".into(),
        }
    }
}

/// ChangeInvisibleDuration: the action [`Broker::change_invisible`].
pub fn change_invisible(
    broker: &Broker,
    req: v2::ChangeInvisibleDurationRequest,
) -> v2::ChangeInvisibleDurationResponse {
    let delivery = answered(
        req.group.as_ref(),
        req.topic.as_ref(),
        req.lite_topic.as_deref(),
        &req.receipt_handle,
    );
    let result = req
        .invisible_duration
        .as_ref()
        .map(duration_ms)
        .ok_or_else(|| ApogeeError::IllegalInvisibleTime("invisible_duration is required".into()))
        .and_then(|ms| broker.change_invisible(&delivery, ms, req.suspend.unwrap_or(false)));
    match result {
        Ok(handle) => v2::ChangeInvisibleDurationResponse {
            status: Some(ok_status()),
            receipt_handle: handle,
        },
        Err(e) => v2::ChangeInvisibleDurationResponse {
            status: Some(e.to_status()),
            receipt_handle: String::new(),
        },
    }
}

/// ForwardMessageToDeadLetterQueue: the action [`Broker::dead_letter`].
pub async fn forward_to_dead_letter(
    broker: &Broker,
    req: v2::ForwardMessageToDeadLetterQueueRequest,
) -> v2::ForwardMessageToDeadLetterQueueResponse {
    let delivery = answered(
        req.group.as_ref(),
        req.topic.as_ref(),
        req.lite_topic.as_deref(),
        &req.receipt_handle,
    );
    v2::ForwardMessageToDeadLetterQueueResponse {
        status: Some(match broker.dead_letter(&delivery, &req.message_id).await {
            Ok(()) => ok_status(),
            Err(e) => e.to_status(),
        }),
    }
}
