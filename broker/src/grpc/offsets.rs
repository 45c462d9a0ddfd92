//! Offset-based consumption: PullMessage (read a queue from an offset, with
//! long polling), UpdateOffset / GetOffset (a group's stored offset per
//! queue) and QueryOffset (beginning, end or by timestamp): the requests decoded onto the
//! core's actions ([`Broker::pull`], [`Broker::offset_at`], [`Broker::committed_offset`],
//! [`Broker::commit_offset`]), shared with the remoting handlers, and their answers encoded.

use super::convert::to_v2_message;
use crate::actions::{PullOrder, QueuePosition};
use crate::consume::pull::Pulled;
use crate::services::Broker;
use apogee_proto::error::ok_status;
use apogee_proto::time::timestamp_ms;
use apogee_proto::v2::{self, pull_message_response::Content, QueryOffsetPolicy};
use apogee_proto::ApogeeError;

/// Topic name and queue id of a request's queue, checked against the topic.
fn queue_of(broker: &Broker, mq: Option<&v2::MessageQueue>) -> Result<(String, u32), ApogeeError> {
    let mq = mq.ok_or_else(|| ApogeeError::BadRequest("message_queue is required".into()))?;
    let topic = mq
        .topic
        .as_ref()
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let queue = broker.checked_queue(&topic, mq.id as i64)?;
    Ok((topic, queue))
}

fn group_of(g: Option<&v2::Resource>) -> String {
    g.map(|g| g.name.clone()).unwrap_or_default()
}

/// PullMessage: the pull action ([`Broker::pull`]) for the request.
pub async fn pull(
    broker: &Broker,
    req: v2::PullMessageRequest,
    client_id: &str,
    deadline_ms: Option<i64>,
) -> Vec<v2::PullMessageResponse> {
    let status = |s: v2::Status| v2::PullMessageResponse {
        content: Some(Content::Status(s)),
    };
    let decoded = super::receive::decode_read(
        req.message_queue.as_ref(),
        req.filter_expression.as_ref(),
        req.long_polling_timeout.as_ref(),
        deadline_ms,
    );
    let (mq, filter, wait) = match decoded {
        Ok(d) => d,
        Err(e) => return vec![status(e.to_status())],
    };
    let topic = mq.topic.as_ref();
    let order = PullOrder {
        group: req.group.as_ref().map_or("", |g| g.name.as_str()),
        topic: topic.map_or("", |t| t.name.as_str()),
        queue_id: mq.id as i64,
        offset: req.offset,
        batch: req.batch_size as i64,
        filter: &filter,
        wait,
        exact_offset: false,
        commit_offset: None,
        client_id,
    };
    let offset = req.offset;
    let (matching, next_offset) = match broker.pull(&order).await.map(|p| p.pulled) {
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
    let namespace = topic.map_or("", |t| t.resource_namespace.as_str());
    let store_host = broker.config().advertised_endpoint();
    let mut out: Vec<_> = matching
        .iter()
        .map(|m| v2::PullMessageResponse {
            content: Some(Content::Message(to_v2_message(m, namespace, &store_host))),
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
        let group = group_of(req.group.as_ref());
        let (topic, queue) = queue_of(broker, req.message_queue.as_ref())?;
        broker.commit_offset(&group, &topic, queue, req.offset)
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
        let group = group_of(req.group.as_ref());
        let (topic, queue) = queue_of(broker, req.message_queue.as_ref())?;
        broker
            .committed_offset(&group, &topic, queue)?
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
        let position = match QueryOffsetPolicy::try_from(req.query_offset_policy)
            .unwrap_or(QueryOffsetPolicy::Beginning)
        {
            QueryOffsetPolicy::Beginning => QueuePosition::Beginning,
            QueryOffsetPolicy::End => QueuePosition::End,
            QueryOffsetPolicy::Timestamp => {
                QueuePosition::Time(req.timestamp.as_ref().map(timestamp_ms).ok_or_else(|| {
                    ApogeeError::BadRequest("timestamp policy needs a timestamp".into())
                })?)
            }
        };
        broker.offset_at(&topic, queue, position)
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
