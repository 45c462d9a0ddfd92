//! ListLiteTopics and DescribeLiteTopic on a broker: the lite topics of a LITE parent this
//! broker hosts, from the store's lite queue listing (`crate::store::lite`), with a group's
//! backlog, its position and deliveries in flight (the consume engine) and the subscribers
//! (`crate::consume::lite::LiteRegistry`).

use crate::services::Broker;
use crate::store::lite::LiteQueueInfo;
use apogee_proto::cluster::{
    DescribeLiteTopicRequest, DescribeLiteTopicResponse, ListLiteTopicsRequest,
    ListLiteTopicsResponse, LiteTopicGroup, LiteTopicSummary,
};
use apogee_proto::names::lite_queue_topic;
use apogee_proto::{limits, ApogeeError};
use std::collections::BTreeSet;

/// A page when the request names no limit.
const DEFAULT_PAGE: usize = 100;
/// The largest page.
const MAX_PAGE: usize = 1000;

fn internal(e: crate::store::StoreError) -> ApogeeError {
    ApogeeError::internal(e)
}

fn checked_parent(broker: &Broker, parent: &str) -> Result<(), ApogeeError> {
    limits::validate_topic(parent)?;
    if broker.topics().get(parent).is_none() {
        return Err(ApogeeError::TopicNotFound(parent.to_string()));
    }
    Ok(())
}

/// (committed offset, in flight) of `group` in a lite queue; a group with no position there
/// counts from the first message still stored.
fn position(broker: &Broker, group: &str, queue: &str, info: &LiteQueueInfo) -> (u64, u32) {
    match broker.consume().lite_position(group, queue) {
        Some((committed, inflight)) => (committed.max(info.min_offset), inflight as u32),
        None => (info.min_offset, 0),
    }
}

fn summary(broker: &Broker, parent: &str, group: &str, info: &LiteQueueInfo) -> LiteTopicSummary {
    let queue = lite_queue_topic(parent, &info.lite);
    let registry = broker.lite();
    let (backlog, subscribers) = if group.is_empty() {
        let subscribers = registry
            .groups_of(&queue)
            .iter()
            .map(|g| registry.subscribers(g, &queue).len())
            .sum::<usize>();
        (info.next_offset - info.min_offset, subscribers)
    } else {
        let (committed, _) = position(broker, group, &queue, info);
        (
            info.next_offset.saturating_sub(committed),
            registry.subscribers(group, &queue).len(),
        )
    };
    LiteTopicSummary {
        lite_topic: info.lite.clone(),
        broker_name: broker.config().broker_name.clone(),
        min_offset: info.min_offset,
        next_offset: info.next_offset,
        last_store_ms: info.last_store_ms.unwrap_or(0),
        backlog,
        subscribers: subscribers as u32,
    }
}

/// One page of a parent's lite topics.
pub fn list(
    broker: &Broker,
    req: &ListLiteTopicsRequest,
) -> Result<ListLiteTopicsResponse, ApogeeError> {
    checked_parent(broker, &req.parent)?;
    let limit = match req.limit as usize {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let after = Some(req.after.as_str()).filter(|a| !a.is_empty());
    let infos = broker
        .store()
        .lite_queues(&req.parent, after, limit)
        .map_err(internal)?;
    let next_after = match infos.last() {
        Some(last) if infos.len() == limit => last.lite.clone(),
        _ => String::new(),
    };
    Ok(ListLiteTopicsResponse {
        lite_topics: infos
            .iter()
            .map(|i| summary(broker, &req.parent, &req.group, i))
            .collect(),
        next_after,
    })
}

/// One lite topic: its bounds and, per group, position, lag, in flight and subscribers.
pub fn describe(
    broker: &Broker,
    req: &DescribeLiteTopicRequest,
) -> Result<DescribeLiteTopicResponse, ApogeeError> {
    checked_parent(broker, &req.parent)?;
    limits::validate_lite_topic(&req.lite_topic, broker.config().lite.max_topic_len)?;
    let info = broker
        .store()
        .lite_queue_info(&req.parent, &req.lite_topic)
        .map_err(internal)?
        .ok_or_else(|| {
            ApogeeError::TopicNotFound(format!(
                "lite topic {} of {} (no message stored, or expired)",
                req.lite_topic, req.parent
            ))
        })?;
    let queue = lite_queue_topic(&req.parent, &req.lite_topic);
    let groups: BTreeSet<String> = if req.group.is_empty() {
        let mut g: BTreeSet<String> = broker.lite().groups_of(&queue).into_iter().collect();
        g.extend(
            broker
                .consume()
                .all_progress()
                .into_iter()
                .filter(|(_, p)| p.topic == queue)
                .map(|(group, _)| group),
        );
        g
    } else {
        BTreeSet::from([req.group.clone()])
    };
    let groups = groups
        .into_iter()
        .map(|group| {
            let (committed, inflight) = position(broker, &group, &queue, &info);
            LiteTopicGroup {
                committed_offset: committed,
                lag: info.next_offset.saturating_sub(committed),
                inflight,
                subscribers: broker.lite().subscribers(&group, &queue),
                group,
            }
        })
        .collect();
    Ok(DescribeLiteTopicResponse {
        lite_topic: Some(summary(broker, &req.parent, &req.group, &info)),
        groups,
    })
}
