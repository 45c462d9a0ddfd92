//! ReceiveMessage (long polling), AckMessage and ChangeInvisibleDuration:
//! the consumer side of the v2 protocol over the consume engine.

use super::convert::delivery_to_v2;
use crate::consume::long_poll::{Attempt, LongPoll, Polled};
use crate::consume::{MessageFilter, PopRequest};
use crate::services::Broker;
use apogee_proto::error::ok_status;
use apogee_proto::group::GroupConfig;
use apogee_proto::time::{duration_ms, now_ms, timestamp};
use apogee_proto::v2::{self, receive_message_response::Content, Permission};
use apogee_proto::{limits, ApogeeError};
use std::sync::Arc;
use std::time::Duration;

/// A validated receive request.
pub struct ReceivePlan {
    pub group: String,
    pub group_config: Arc<GroupConfig>,
    pub topic: String,
    pub namespace: String,
    /// Queues to pop from, the requested one first.
    pub queues: Vec<u32>,
    pub filter: MessageFilter,
    pub batch: usize,
    pub invisible_ms: i64,
    /// Auto-renew receive (push consumers): the broker renews the invisible
    /// time until acked or nacked, at most this long.
    pub auto_renew_ms: Option<i64>,
    pub attempt_id: Option<String>,
    /// The receiving client (`x-mq-client-id`).
    pub client_id: String,
    pub long_polling_ms: i64,
    /// Where the group starts in queues it never consumed from (`PopRequest::start_after_ms`).
    pub group_start_after_ms: Option<i64>,
    /// Set when this receive created the group: where it starts.
    pub created_group: Option<crate::config::AutoCreateStart>,
    /// A lite group's receive on its LITE parent: pops the client's ready lite queues
    /// (`super::receive_lite`).
    pub lite: bool,
}

/// Default batch when the client leaves it 0.
const DEFAULT_RECEIVE_BATCH: i32 = 32;

/// Validates a receive request. `deadline_ms` is the time the client's
/// gRPC deadline leaves (if it sent one): long polling ends well before it.
pub fn plan_receive(
    broker: &Broker,
    req: &v2::ReceiveMessageRequest,
    client_id: String,
    deadline_ms: Option<i64>,
) -> Result<ReceivePlan, ApogeeError> {
    let group = req
        .group
        .as_ref()
        .map(|g| g.name.clone())
        .unwrap_or_default();
    limits::validate_group(&group)?;
    let mq = req
        .message_queue
        .as_ref()
        .ok_or_else(|| ApogeeError::BadRequest("message_queue is required".into()))?;
    let topic_res = mq.topic.clone().unwrap_or_default();
    limits::validate_topic(&topic_res.name)?;
    let config = broker
        .topics()
        .get(&topic_res.name)
        .ok_or_else(|| ApogeeError::TopicNotFound(topic_res.name.clone()))?;
    if config.permission == Permission::Write as i32 || config.permission == Permission::None as i32
    {
        return Err(ApogeeError::Forbidden(format!(
            "topic {} is not readable on this broker",
            topic_res.name
        )));
    }
    let filter = MessageFilter::from_expression(req.filter_expression.as_ref())?;
    let batch = if req.batch_size == 0 {
        DEFAULT_RECEIVE_BATCH
    } else {
        req.batch_size
    };
    if !(1..=limits::MAX_RECEIVE_BATCH).contains(&batch) {
        return Err(ApogeeError::BadRequest(format!(
            "batch size {batch} is outside 1..={}",
            limits::MAX_RECEIVE_BATCH
        )));
    }
    // Push consumers ask the broker to keep their messages invisible until
    // they answer (`auto_renew`) and send no invisible duration.
    let auto_renew_ms = req
        .auto_renew
        .then_some(broker.config().consume.max_auto_renew_ms as i64);
    let invisible_ms = match (req.invisible_duration.as_ref(), auto_renew_ms) {
        (Some(d), _) => duration_ms(d),
        (None, Some(_)) => broker.config().consume.auto_renew_period_ms as i64,
        (None, None) => {
            return Err(ApogeeError::IllegalInvisibleTime(
                "invisible_duration is required unless auto_renew is set".into(),
            ))
        }
    };
    if !(limits::MIN_INVISIBLE_MS..=limits::MAX_INVISIBLE_MS).contains(&invisible_ms) {
        return Err(ApogeeError::IllegalInvisibleTime(format!(
            "{invisible_ms} ms is outside {}..={} ms",
            limits::MIN_INVISIBLE_MS,
            limits::MAX_INVISIBLE_MS
        )));
    }
    let long_polling_ms = long_polling_ms(req.long_polling_timeout.as_ref(), deadline_ms)?;
    let count = config.queue_count.max(0) as u32;
    let first = if (0..config.queue_count).contains(&mq.id) {
        mq.id as u32
    } else {
        0
    };
    let queues = (0..count).map(|i| (first + i) % count).collect();
    // Last, so a request refused for another reason creates no group. A receive on a LITE
    // parent needs (or creates) a lite group bound to it.
    let lite = super::lite::is_lite_parent(broker, &topic_res.name);
    if lite {
        super::lite::lite_group(broker, &group, &topic_res.name, &client_id)?;
    }
    let receiving =
        broker
            .groups()
            .resolve_for_receive(&group, &topic_res.name, &client_id, now_ms())?;
    // A PRIORITY topic is served from its highest priority queue down (`consume::priority`).
    let queues = crate::consume::priority::receive_order(
        &config,
        &receiving.config,
        broker.config().priority.order,
        queues,
    );
    Ok(ReceivePlan {
        group,
        group_config: receiving.config,
        group_start_after_ms: receiving.start_after_ms,
        created_group: receiving.created,
        topic: topic_res.name,
        namespace: topic_res.resource_namespace,
        queues,
        filter,
        batch: batch as usize,
        invisible_ms,
        auto_renew_ms,
        attempt_id: req.attempt_id.clone().filter(|a| !a.is_empty()),
        client_id,
        long_polling_ms,
        lite,
    })
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

/// Pops for a plan, waiting up to its long-polling time (`consume::long_poll`) for messages
/// to arrive or for in-flight ones to become visible again. Returns the whole
/// stream of responses: the messages, then exactly one status.
pub async fn receive(broker: &Broker, plan: ReceivePlan) -> Vec<v2::ReceiveMessageResponse> {
    let _place = match broker.quotas().long_poll() {
        Ok(p) => p,
        Err(e) => return vec![status_response(e.to_status())],
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(plan.long_polling_ms as u64);
    let store_host = broker.config().advertised_endpoint();
    if plan.lite {
        let (polled, plan) = super::receive_lite::receive(broker, plan, deadline).await;
        return answer(broker, &plan, polled, &store_host);
    }
    // A restarted master first takes back what a slave served while it was away.
    if broker.replication().handback_pending() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !broker.replication().wait_handback(left).await {
            return vec![status_response(
                ApogeeError::MessageNotFound(
                    "this master is waiting for its slave's consume state after a restart".into(),
                )
                .to_status(),
            )];
        }
    }
    // The watch is made before the first look, so an append to a queue of the plan in between
    // wakes the poll; acks and nacks wake it too (one may free a FIFO message group).
    let poll = LongPoll::new(
        deadline,
        broker.store().watch_queues(&plan.topic, &plan.queues),
        broker.closing(),
    )
    .woken_by(broker.consume().changed());
    let polled = poll
        .run(|| {
            let now = now_ms();
            let request = PopRequest {
                group: &plan.group_config,
                topic: &plan.topic,
                queue_ids: &plan.queues,
                filter: &plan.filter,
                max: plan.batch,
                invisible_ms: plan.invisible_ms,
                renew_until_ms: plan.auto_renew_ms.map(|ms| now + ms),
                attempt_id: plan.attempt_id.as_deref(),
                client_id: &plan.client_id,
                start_after_ms: plan.group_start_after_ms,
            };
            match broker.consume().pop(&request, now) {
                Ok(d) if d.is_empty() => Attempt::Nothing {
                    empty: (),
                    // Look again when a redelivery comes due.
                    look_again_in: broker
                        .consume()
                        .next_redelivery_ms(&plan.group_config, &plan.topic)
                        .map(|at| Duration::from_millis((at - now).max(1) as u64)),
                },
                popped => Attempt::Done(popped.map(|d| (d, now))),
            }
        })
        .await;
    answer(broker, &plan, polled, &store_host)
}

/// What a receive answers: its deliveries (after their hand-out time) and one status.
fn answer(
    broker: &Broker,
    plan: &ReceivePlan,
    polled: Polled<Result<(Vec<crate::consume::Delivery>, i64), ApogeeError>, ()>,
    store_host: &str,
) -> Vec<v2::ReceiveMessageResponse> {
    let (deliveries, handed_out_ms) = match polled {
        Polled::Done(Ok(found)) => found,
        Polled::Done(Err(e)) => return vec![status_response(e.to_status())],
        Polled::DeadlinePassed(()) => {
            return vec![status_response(
                ApogeeError::MessageNotFound("no new message within the long-polling time".into())
                    .to_status(),
            )]
        }
    };
    let bytes = deliveries.iter().map(|d| d.message.msg.body.len()).sum();
    broker.metrics().delivered(
        &plan.topic,
        &plan.group_config.name,
        deliveries.len(),
        bytes,
    );
    let messages = deliveries.iter().map(|d| v2::ReceiveMessageResponse {
        content: Some(Content::Message(delivery_to_v2(
            d,
            &plan.namespace,
            store_host,
        ))),
    });
    std::iter::once(hand_out_time_response(handed_out_ms))
        .chain(messages)
        .chain(std::iter::once(status_response(ok_status())))
        .collect()
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
