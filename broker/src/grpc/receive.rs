//! ReceiveMessage (long polling), AckMessage and ChangeInvisibleDuration:
//! the consumer side of the v2 protocol over the consume engine; a receive is the broker's
//! pop action (`crate::actions`).

use super::convert::delivery_to_v2;
use crate::actions::{PopOrder, QueueChoice};
use crate::config::AutoCreateStart;
use crate::consume::MessageFilter;
use crate::services::Broker;
use apogee_proto::error::ok_status;
use apogee_proto::time::{duration_ms, now_ms, timestamp};
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
    let decoded = (|| {
        let mq = req
            .message_queue
            .as_ref()
            .ok_or_else(|| ApogeeError::BadRequest("message_queue is required".into()))?;
        let filter = MessageFilter::from_expression(req.filter_expression.as_ref())?;
        let wait = long_polling_ms(req.long_polling_timeout.as_ref(), deadline_ms)?;
        Ok::<_, ApogeeError>((mq, filter, wait))
    })();
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
        wait: Duration::from_millis(wait as u64),
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

fn group_and_topic(
    group: Option<&v2::Resource>,
    topic: Option<&v2::Resource>,
) -> Result<(String, String), ApogeeError> {
    let group = group.map(|g| g.name.clone()).unwrap_or_default();
    limits::validate_group(&group)?;
    let topic = topic.map(|t| t.name.clone()).unwrap_or_default();
    limits::validate_topic(&topic)?;
    Ok((group, topic))
}

/// The topic whose queue holds the message: a lite message's lite queue (`lite_topic` under
/// the parent `topic`), else `topic`.
fn queue_topic(broker: &Broker, topic: &str, lite: Option<&str>) -> Result<String, ApogeeError> {
    match lite.filter(|l| !l.is_empty()) {
        Some(l) => {
            limits::validate_lite_topic(l, broker.config().lite.max_topic_len)?;
            Ok(apogee_proto::names::lite_queue_topic(topic, l))
        }
        None => Ok(topic.to_string()),
    }
}

/// After an ack, a nack or a dead letter of a lite message: its lite queue may hand out its
/// next message (or this one again at `due_ms`).
fn lite_queue_moved(broker: &Broker, group: &str, queue: &str, due_ms: Option<i64>) {
    if apogee_proto::names::split_lite_queue_topic(queue).is_none() {
        return;
    }
    match due_ms {
        Some(at) => broker.lite().due_at(group, queue, at),
        None => broker.lite().mark_ready(group, queue),
    }
}

pub fn ack(broker: &Broker, req: v2::AckMessageRequest) -> v2::AckMessageResponse {
    let entries_of = |status: &v2::Status| {
        req.entries
            .iter()
            .map(|e| v2::AckMessageResultEntry {
                message_id: e.message_id.clone(),
                receipt_handle: e.receipt_handle.clone(),
                status: Some(status.clone()),
            })
            .collect::<Vec<_>>()
    };
    let (group, topic) = match group_and_topic(req.group.as_ref(), req.topic.as_ref()) {
        Ok(gt) => gt,
        Err(e) => {
            let s = e.to_status();
            return v2::AckMessageResponse {
                status: Some(s.clone()),
                entries: entries_of(&s),
            };
        }
    };
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
        .map(|e| v2::AckMessageResultEntry {
            message_id: e.message_id.clone(),
            receipt_handle: e.receipt_handle.clone(),
            status: Some(
                match queue_topic(broker, &topic, e.lite_topic.as_deref()).and_then(|queue| {
                    broker.consume().ack(&group, &queue, &e.receipt_handle)?;
                    lite_queue_moved(broker, &group, &queue, None);
                    Ok(())
                }) {
                    Ok(()) => ok_status(),
                    Err(err) => err.to_status(),
                },
            ),
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

pub fn change_invisible(
    broker: &Broker,
    req: v2::ChangeInvisibleDurationRequest,
) -> v2::ChangeInvisibleDurationResponse {
    let result = (|| {
        let (group, topic) = group_and_topic(req.group.as_ref(), req.topic.as_ref())?;
        let ms = req
            .invisible_duration
            .as_ref()
            .map(duration_ms)
            .ok_or_else(|| {
                ApogeeError::IllegalInvisibleTime("invisible_duration is required".into())
            })?;
        if !(limits::MIN_INVISIBLE_MS..=limits::MAX_INVISIBLE_MS).contains(&ms) {
            return Err(ApogeeError::IllegalInvisibleTime(format!(
                "{ms} ms is out of range"
            )));
        }
        let queue = queue_topic(broker, &topic, req.lite_topic.as_deref())?;
        let now = now_ms();
        let handle = broker.consume().change_invisible_with(
            &group,
            &queue,
            &req.receipt_handle,
            ms,
            now,
            req.suspend.unwrap_or(false),
        )?;
        lite_queue_moved(broker, &group, &queue, Some(now + ms));
        Ok(handle)
    })();
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

/// ForwardMessageToDeadLetterQueue: a consumer (the FIFO push consumers)
/// gives up on a delivery. OK once the dead letter is stored, also when it
/// was stored by an earlier call (Java's FIFO consumer repeats the call
/// until it gets OK).
pub async fn forward_to_dead_letter(
    broker: &Broker,
    req: v2::ForwardMessageToDeadLetterQueueRequest,
) -> v2::ForwardMessageToDeadLetterQueueResponse {
    let result = async {
        let (group, topic) = group_and_topic(req.group.as_ref(), req.topic.as_ref())?;
        let topic = queue_topic(broker, &topic, req.lite_topic.as_deref())?;
        match broker
            .consume()
            .expired_by_handle(&group, &topic, &req.receipt_handle)
        {
            Ok(e) => {
                let moved = crate::consume::dead_letter::dead_letter(
                    broker.store(),
                    broker.topics(),
                    broker.consume(),
                    &e,
                )
                .await?;
                if moved {
                    broker.metrics().dead_lettered(&e.key.topic, &e.key.group);
                }
                lite_queue_moved(broker, &group, &topic, None);
                Ok(())
            }
            Err(ApogeeError::InvalidReceiptHandle(why)) => {
                let dlq = apogee_proto::names::dlq_topic(&group);
                let stored = broker
                    .store()
                    .lookup_all_by_id(&req.message_id, 64)
                    .map_err(|e| ApogeeError::Internal(e.to_string()))?
                    .iter()
                    .any(|m| m.msg.topic == dlq);
                if stored {
                    Ok(())
                } else {
                    Err(ApogeeError::InvalidReceiptHandle(why))
                }
            }
            Err(e) => Err(e),
        }
    }
    .await;
    v2::ForwardMessageToDeadLetterQueueResponse {
        status: Some(match result {
            Ok(()) => ok_status(),
            Err(e) => e.to_status(),
        }),
    }
}
