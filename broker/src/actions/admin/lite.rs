//! The lite topics of a LITE parent this broker hosts, as an operator lists and describes
//! them: from the store's lite queue listing (`crate::store::lite`), with a group's backlog,
//! its position and deliveries in flight (the consume engine) and the subscribers
//! (`crate::consume::lite::LiteRegistry`). A group with no position in a lite queue counts
//! from the first message still stored.

use crate::services::Broker;
use crate::store::lite::LiteQueueInfo;
use apogee_proto::names::lite_queue_topic;
use apogee_proto::{limits, ApogeeError};
use std::collections::BTreeSet;

/// A page when the request names no limit.
const DEFAULT_PAGE: usize = 100;
/// The largest page.
const MAX_PAGE: usize = 1000;

/// One lite topic: its stored bounds, and the backlog and subscribers of one group or, with
/// no group named, of what is stored and every group subscribed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiteTopicState {
    pub lite_topic: String,
    pub min_offset: u64,
    pub next_offset: u64,
    /// Store time (Unix ms) of its last message; 0 when unknown.
    pub last_store_ms: i64,
    pub backlog: u64,
    pub subscribers: u32,
}

/// One page of a parent's lite topics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiteTopicPage {
    pub lite_topics: Vec<LiteTopicState>,
    /// The last lite topic of a full page (ask for the page after it); "" at the end.
    pub next_after: String,
}

/// One group's progress in a lite topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiteGroupState {
    pub group: String,
    pub committed_offset: u64,
    pub lag: u64,
    pub inflight: u32,
    /// The clients subscribed.
    pub subscribers: Vec<String>,
}

impl Broker {
    /// One page of `parent`'s lite topics after `after` ("" from the first), at most
    /// `limit` (0: 100; at most 1000), with `group`'s backlog ("" for what is stored).
    pub fn lite_topics(
        &self,
        parent: &str,
        group: &str,
        after: &str,
        limit: u32,
    ) -> Result<LiteTopicPage, ApogeeError> {
        self.check_lite_parent(parent)?;
        let limit = match limit as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let after = Some(after).filter(|a| !a.is_empty());
        let infos = self
            .store()
            .lite_queues(parent, after, limit)
            .map_err(ApogeeError::internal)?;
        let next_after = match infos.last() {
            Some(last) if infos.len() == limit => last.lite.clone(),
            _ => String::new(),
        };
        Ok(LiteTopicPage {
            lite_topics: infos
                .iter()
                .map(|i| self.lite_topic_state(parent, group, i))
                .collect(),
            next_after,
        })
    }

    /// One lite topic: its bounds and, per group (`group`, or every group subscribed or with
    /// a position there), position, lag, in flight and subscribers.
    pub fn describe_lite_topic(
        &self,
        parent: &str,
        lite_topic: &str,
        group: &str,
    ) -> Result<(LiteTopicState, Vec<LiteGroupState>), ApogeeError> {
        self.check_lite_parent(parent)?;
        limits::validate_lite_topic(lite_topic, self.config().lite.max_topic_len)?;
        let info = self
            .store()
            .lite_queue_info(parent, lite_topic)
            .map_err(ApogeeError::internal)?
            .ok_or_else(|| {
                ApogeeError::TopicNotFound(format!(
                    "lite topic {lite_topic} of {parent} (no message stored, or expired)"
                ))
            })?;
        let queue = lite_queue_topic(parent, lite_topic);
        let groups: BTreeSet<String> = if group.is_empty() {
            let mut g: BTreeSet<String> = self.lite().groups_of(&queue).into_iter().collect();
            g.extend(
                self.consume()
                    .all_progress()
                    .into_iter()
                    .filter(|(_, p)| p.topic == queue)
                    .map(|(group, _)| group),
            );
            g
        } else {
            BTreeSet::from([group.to_string()])
        };
        let groups = groups
            .into_iter()
            .map(|group| {
                let (committed, inflight) = self.lite_group_position(&group, &queue, &info);
                LiteGroupState {
                    committed_offset: committed,
                    lag: info.next_offset.saturating_sub(committed),
                    inflight,
                    subscribers: self.lite().subscribers(&group, &queue),
                    group,
                }
            })
            .collect();
        Ok((self.lite_topic_state(parent, group, &info), groups))
    }

    /// The parent is a topic here.
    fn check_lite_parent(&self, parent: &str) -> Result<(), ApogeeError> {
        limits::validate_topic(parent)?;
        if self.topics().get(parent).is_none() {
            return Err(ApogeeError::TopicNotFound(parent.to_string()));
        }
        Ok(())
    }

    /// (committed offset, in flight) of `group` in a lite queue; a group with no position
    /// there counts from the first message still stored.
    fn lite_group_position(&self, group: &str, queue: &str, info: &LiteQueueInfo) -> (u64, u32) {
        match self.consume().lite_position(group, queue) {
            Some((committed, inflight)) => (committed.max(info.min_offset), inflight as u32),
            None => (info.min_offset, 0),
        }
    }

    fn lite_topic_state(&self, parent: &str, group: &str, info: &LiteQueueInfo) -> LiteTopicState {
        let queue = lite_queue_topic(parent, &info.lite);
        let registry = self.lite();
        let (backlog, subscribers) = if group.is_empty() {
            let subscribers = registry
                .groups_of(&queue)
                .iter()
                .map(|g| registry.subscribers(g, &queue).len())
                .sum::<usize>();
            (info.next_offset - info.min_offset, subscribers)
        } else {
            let (committed, _) = self.lite_group_position(group, &queue, info);
            (
                info.next_offset.saturating_sub(committed),
                registry.subscribers(group, &queue).len(),
            )
        };
        LiteTopicState {
            lite_topic: info.lite.clone(),
            min_offset: info.min_offset,
            next_offset: info.next_offset,
            last_store_ms: info.last_store_ms.unwrap_or(0),
            backlog,
            subscribers: subscribers as u32,
        }
    }
}
