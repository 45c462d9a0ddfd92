//! Offset-based consumption: PullMessage (read a queue from an offset, with
//! long polling), UpdateOffset / GetOffset (a group's stored offset per
//! queue) and QueryOffset (beginning, end or by timestamp): the requests' checks and
//! answers; the pull and the stored offsets are the consume domain's
//! (`crate::consume::pull`, `crate::consume::offsets`), shared with the remoting handlers.

use super::convert::to_v2_message;
use crate::consume::offsets;
use crate::consume::pull::{self, PullSpec, Pulled};
use crate::consume::MessageFilter;
use crate::services::Broker;
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
    let queue = offsets::checked_queue(broker.topics(), &topic, mq.id as i64)?;
    Ok((topic, queue))
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
        let batch = pull::batch_size(req.batch_size as i64);
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
    let store_host = broker.config().advertised_endpoint();
    let offset = req.offset as u64;
    let group = req.group.as_ref().map_or("", |g| g.name.as_str());
    let spec = PullSpec {
        topic: &topic,
        queue,
        offset,
        batch,
        filter: &filter,
        wait: Duration::from_millis(wait as u64),
        exact_offset: false,
    };
    let (matching, next_offset) = match pull::pull(broker.store(), broker.closing(), &spec).await {
        Ok(Pulled::Read {
            matching,
            next_offset,
        }) => (matching, next_offset),
        Ok(Pulled::OutOfRange { end, .. }) => {
            return vec![status(
                ApogeeError::IllegalOffset(format!(
                    "offset {offset} is beyond the queue end {end}"
                ))
                .to_status(),
            )]
        }
        Ok(Pulled::NothingNew { next_offset }) => {
            return vec![
                v2::PullMessageResponse {
                    content: Some(Content::NextOffset(next_offset as i64)),
                },
                status(
                    ApogeeError::MessageNotFound("no message at or after the offset".into())
                        .to_status(),
                ),
            ]
        }
        Err(e) => return vec![status(e.to_status())],
    };
    let bytes = matching.iter().map(|m| m.msg.body.len()).sum();
    broker
        .metrics()
        .delivered(&topic, group, matching.len(), bytes);
    let mut out: Vec<_> = matching
        .iter()
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
        offsets::commit_offset(broker.store(), &group, &topic, queue, req.offset)
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
        offsets::committed_offset(broker.store(), &group, &topic, queue)?.ok_or_else(|| {
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
        let (min, next) = offsets::queue_bounds(broker.store(), &topic, queue)?;
        match QueryOffsetPolicy::try_from(req.query_offset_policy)
            .unwrap_or(QueryOffsetPolicy::Beginning)
        {
            QueryOffsetPolicy::Beginning => Ok(min),
            QueryOffsetPolicy::End => Ok(next),
            QueryOffsetPolicy::Timestamp => {
                let ts = req.timestamp.as_ref().map(timestamp_ms).ok_or_else(|| {
                    ApogeeError::BadRequest("timestamp policy needs a timestamp".into())
                })?;
                offsets::offset_for_time(broker.store(), &topic, queue, ts)
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
