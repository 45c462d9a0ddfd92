//! Offset-based consumption: PullMessage (read a queue from an offset, with
//! long polling), UpdateOffset / GetOffset (a group's stored offset per
//! queue) and QueryOffset (beginning, end or by timestamp).

use super::convert::to_v2_message;
use crate::consume::long_poll::{Attempt, LongPoll, Polled};
use crate::consume::values::{decode_offset, encode_offset};
use crate::consume::MessageFilter;
use crate::services::Broker;
use crate::store::keys::consumer_offset_key;
use crate::store::{Cf, KvBatch};
use apogee_proto::error::ok_status;
use apogee_proto::time::timestamp_ms;
use apogee_proto::v2::{self, pull_message_response::Content, QueryOffsetPolicy};
use apogee_proto::{limits, ApogeeError};
use std::time::Duration;

/// Topic name and queue id of a request's queue, checked against the topic.
fn queue_of(broker: &Broker, mq: Option<&v2::MessageQueue>) -> Result<(String, u32), ApogeeError> {
    let mq = mq.ok_or_else(|| ApogeeError::BadRequest("message_queue is required".into()))?;
    let topic = mq
        .topic
        .as_ref()
        .map(|t| t.name.clone())
        .unwrap_or_default();
    limits::validate_topic(&topic)?;
    let config = broker
        .topics()
        .get(&topic)
        .ok_or_else(|| ApogeeError::TopicNotFound(topic.clone()))?;
    if mq.id < 0 || mq.id >= config.queue_count {
        return Err(ApogeeError::BadRequest(format!(
            "queue {} does not exist; topic {topic} has {} queues",
            mq.id, config.queue_count
        )));
    }
    Ok((topic, mq.id as u32))
}

fn group_of(g: Option<&v2::Resource>) -> Result<String, ApogeeError> {
    let group = g.map(|g| g.name.clone()).unwrap_or_default();
    limits::validate_group(&group)?;
    Ok(group)
}

pub async fn pull(
    broker: &Broker,
    req: v2::PullMessageRequest,
    deadline_ms: Option<i64>,
) -> Vec<v2::PullMessageResponse> {
    let status = |s: v2::Status| v2::PullMessageResponse {
        content: Some(Content::Status(s)),
    };
    let plan = (|| {
        group_of(req.group.as_ref())?;
        let (topic, queue) = queue_of(broker, req.message_queue.as_ref())?;
        let filter = MessageFilter::from_expression(req.filter_expression.as_ref())?;
        let batch = if req.batch_size <= 0 {
            32
        } else {
            req.batch_size.min(limits::MAX_RECEIVE_BATCH)
        } as usize;
        let wait = super::receive::long_polling_ms(req.long_polling_timeout.as_ref(), deadline_ms)?;
        if req.offset < 0 {
            return Err(ApogeeError::IllegalOffset(format!(
                "offset {} is negative",
                req.offset
            )));
        }
        Ok((topic, queue, filter, batch, wait))
    })();
    let (topic, queue, filter, batch, wait) = match plan {
        Ok(p) => p,
        Err(e) => return vec![status(e.to_status())],
    };
    let namespace = req
        .message_queue
        .as_ref()
        .and_then(|m| m.topic.as_ref())
        .map(|t| t.resource_namespace.clone())
        .unwrap_or_default();
    let _place = match broker.quotas().long_poll() {
        Ok(p) => p,
        Err(e) => return vec![status(e.to_status())],
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait as u64);
    let store_host = broker.config().advertised_endpoint();
    let offset = req.offset as u64;
    let group = req.group.as_ref().map_or("", |g| g.name.as_str());
    // The watch is made before the first look, so an append in between wakes the poll.
    let poll = LongPoll::new(
        deadline,
        broker.store().watch_queues(&topic, &[queue]),
        broker.closing(),
    );
    let polled = poll
        .run(|| {
            let (min, next) = match broker.store().queue_bounds(&topic, queue) {
                Ok(b) => b,
                Err(e) => return Attempt::Done(Err(ApogeeError::from(e))),
            };
            if offset > next {
                return Attempt::Done(Err(ApogeeError::IllegalOffset(format!(
                    "offset {offset} is beyond the queue end {next}"
                ))));
            }
            let from = offset.max(min);
            if from >= next {
                // Nothing yet: a pull that ends now tells the client where to pull next.
                return Attempt::Nothing {
                    empty: from,
                    look_again_in: None,
                };
            }
            Attempt::Done(
                broker
                    .store()
                    .read_queue(&topic, queue, from, batch, limits::MAX_BATCH_BYTES)
                    .map(|messages| (messages, from))
                    .map_err(ApogeeError::from),
            )
        })
        .await;
    let (messages, from) = match polled {
        Polled::Done(Ok(read)) => read,
        Polled::Done(Err(e)) => return vec![status(e.to_status())],
        Polled::DeadlinePassed(from) => {
            return vec![
                v2::PullMessageResponse {
                    content: Some(Content::NextOffset(from as i64)),
                },
                status(
                    ApogeeError::MessageNotFound("no message at or after the offset".into())
                        .to_status(),
                ),
            ]
        }
    };
    let next_offset = messages.last().map(|m| m.queue_offset + 1).unwrap_or(from);
    let matching: Vec<_> = messages.iter().filter(|m| filter.matches(&m.msg)).collect();
    let bytes = matching.iter().map(|m| m.msg.body.len()).sum();
    broker
        .metrics()
        .delivered(&topic, group, matching.len(), bytes);
    let mut out: Vec<_> = matching
        .into_iter()
        .map(|m| v2::PullMessageResponse {
            content: Some(Content::Message(to_v2_message(m, &namespace, &store_host))),
        })
        .collect();
    out.push(v2::PullMessageResponse {
        content: Some(Content::NextOffset(next_offset as i64)),
    });
    out.push(status(ok_status()));
    out
}

pub fn update_offset(broker: &Broker, req: v2::UpdateOffsetRequest) -> v2::UpdateOffsetResponse {
    let result = (|| {
        let group = group_of(req.group.as_ref())?;
        let (topic, queue) = queue_of(broker, req.message_queue.as_ref())?;
        let (_, next) = broker
            .store()
            .queue_bounds(&topic, queue)
            .map_err(ApogeeError::from)?;
        if req.offset < 0 || req.offset as u64 > next {
            return Err(ApogeeError::IllegalOffset(format!(
                "offset {} is outside 0..={next}",
                req.offset
            )));
        }
        let mut b = KvBatch::new();
        b.put(
            Cf::ConsumerOffset,
            consumer_offset_key(&group, &topic, queue),
            encode_offset(req.offset as u64),
        );
        broker.store().kv().write(b).map_err(ApogeeError::from)
    })();
    v2::UpdateOffsetResponse {
        status: Some(
            result
                .map(|_| ok_status())
                .unwrap_or_else(|e| e.to_status()),
        ),
    }
}

pub fn get_offset(broker: &Broker, req: v2::GetOffsetRequest) -> v2::GetOffsetResponse {
    let result = (|| {
        let group = group_of(req.group.as_ref())?;
        let (topic, queue) = queue_of(broker, req.message_queue.as_ref())?;
        let stored = broker
            .store()
            .kv()
            .get(
                Cf::ConsumerOffset,
                &consumer_offset_key(&group, &topic, queue),
            )
            .map_err(ApogeeError::from)?;
        // An offset behind the oldest stored message (retention deleted what it pointed
        // at) has moved up to it.
        let (min, _) = broker
            .store()
            .queue_bounds(&topic, queue)
            .map_err(ApogeeError::from)?;
        stored
            .and_then(|v| decode_offset(&v))
            .map(|o| o.max(min))
            .ok_or_else(|| {
                ApogeeError::OffsetNotFound(format!(
                    "group {group} has no offset for {topic} queue {queue}"
                ))
            })
    })();
    match result {
        Ok(o) => v2::GetOffsetResponse {
            status: Some(ok_status()),
            offset: o as i64,
        },
        Err(e) => v2::GetOffsetResponse {
            status: Some(e.to_status()),
            offset: 0,
        },
    }
}

pub fn query_offset(broker: &Broker, req: v2::QueryOffsetRequest) -> v2::QueryOffsetResponse {
    let result = (|| {
        let (topic, queue) = queue_of(broker, req.message_queue.as_ref())?;
        let (min, next) = broker
            .store()
            .queue_bounds(&topic, queue)
            .map_err(ApogeeError::from)?;
        match QueryOffsetPolicy::try_from(req.query_offset_policy)
            .unwrap_or(QueryOffsetPolicy::Beginning)
        {
            QueryOffsetPolicy::Beginning => Ok(min),
            QueryOffsetPolicy::End => Ok(next),
            QueryOffsetPolicy::Timestamp => {
                let ts = req.timestamp.as_ref().map(timestamp_ms).ok_or_else(|| {
                    ApogeeError::BadRequest("timestamp policy needs a timestamp".into())
                })?;
                broker
                    .store()
                    .queue_offset_for_time(&topic, queue, ts)
                    .map_err(ApogeeError::from)
            }
        }
    })();
    match result {
        Ok(o) => v2::QueryOffsetResponse {
            status: Some(ok_status()),
            offset: o as i64,
        },
        Err(e) => v2::QueryOffsetResponse {
            status: Some(e.to_status()),
            offset: 0,
        },
    }
}
