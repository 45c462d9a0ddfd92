//! How far behind a consumer group is on this broker: per queue, the queue's next offset
//! minus the group's committed offset. `apogee group describe` (through
//! `grpc/admin_groups.rs`) and the `rocketmq_consumer_lag_messages` gauge both read it.
//!
//! The queues counted are every queue of every topic the group consumes here: the topics
//! it has state in (it received from them), the topics its live clients subscribe to (their
//! Settings), and the topics a caller names (the NameServer passes the ones other broker
//! groups reported). A queue the group never received from counts from where the group
//! would start there: the first message still stored, or, for a group that starts at the
//! latest (`consume.auto_create_start`), the first message stored after it was created.

use super::state::{internal, ConsumeEngine, QueueProgress};
use crate::groups::GroupTable;
use crate::topics::TopicTable;
use apogee_proto::time::now_ms;
use apogee_proto::ApogeeError;
use apogee_server::telemetry::Sessions;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One queue of a group's lag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueLag {
    pub topic: String,
    pub queue_id: u32,
    /// The queue's next offset (what the broker holds).
    pub next_offset: u64,
    /// Everything below is acknowledged; in a queue the group never received from, where
    /// it would start.
    pub consumer_offset: u64,
    /// Next offset not yet handed out or looked at.
    pub pop_offset: u64,
    /// Deliveries in flight.
    pub inflight: usize,
    pub last_consume_ms: Option<i64>,
}

impl QueueLag {
    /// Messages stored and not acknowledged by the group.
    pub fn lag(&self) -> u64 {
        self.next_offset.saturating_sub(self.consumer_offset)
    }
}

/// Topic name -> queue count: the topics a group consumes here.
pub type ConsumedTopics = BTreeMap<String, u32>;

impl ConsumeEngine {
    /// Where a group starts in a queue it never consumed from, whose first stored offset is
    /// `min`: there, or with `start_after_ms` at the first message stored at or after it.
    pub(super) fn start_offset(
        &self,
        topic: &str,
        queue_id: u32,
        min: u64,
        start_after_ms: Option<i64>,
    ) -> Result<u64, ApogeeError> {
        match start_after_ms {
            None => Ok(min),
            Some(ms) => Ok(self
                .store
                .queue_offset_for_time(topic, queue_id, ms)
                .map_err(internal)?
                .max(min)),
        }
    }

    /// The lag of one group: `progress` is its state here ([`Self::group_progress`]),
    /// `topics` every topic it consumes here; queues of `topics` without progress count from
    /// where the group would start (`start_after_ms`, see [`Self::start_offset`]). Sorted by
    /// topic and queue.
    pub fn lag_of(
        &self,
        progress: Vec<QueueProgress>,
        topics: &ConsumedTopics,
        start_after_ms: Option<i64>,
    ) -> Result<Vec<QueueLag>, ApogeeError> {
        let bounds = |topic: &str, queue_id: u32| {
            self.store
                .queue_bounds(topic, queue_id)
                .map_err(|e| ApogeeError::Internal(format!("queue {topic}/{queue_id}: {e}")))
        };
        let mut out = Vec::with_capacity(progress.len());
        let mut consumed: BTreeSet<(String, u32)> = BTreeSet::new();
        for p in progress {
            let (_, next) = bounds(&p.topic, p.queue_id)?;
            consumed.insert((p.topic.clone(), p.queue_id));
            out.push(QueueLag {
                next_offset: next,
                consumer_offset: p.consumer_offset,
                pop_offset: p.pop_offset,
                inflight: p.inflight,
                last_consume_ms: p.last_consume_ms,
                topic: p.topic,
                queue_id: p.queue_id,
            });
        }
        for (topic, &count) in topics {
            for queue_id in 0..count {
                if consumed.contains(&(topic.clone(), queue_id)) {
                    continue;
                }
                let (min, next) = bounds(topic, queue_id)?;
                let start = self.start_offset(topic, queue_id, min, start_after_ms)?;
                out.push(QueueLag {
                    topic: topic.clone(),
                    queue_id,
                    next_offset: next,
                    consumer_offset: start,
                    pop_offset: start,
                    inflight: 0,
                    last_consume_ms: None,
                });
            }
        }
        out.sort_by(|a, b| (&a.topic, a.queue_id).cmp(&(&b.topic, b.queue_id)));
        Ok(out)
    }
}

/// What a group's lag is read from: the consume engine (progress, queue bounds), the topics
/// held here, the groups' start points and the live clients' subscriptions.
pub struct LagSources<'a> {
    pub consume: &'a ConsumeEngine,
    pub topics: &'a TopicTable,
    pub groups: &'a GroupTable,
    pub sessions: &'a Sessions,
}

impl LagSources<'_> {
    /// The topics of `named` this broker holds, with their queue counts.
    fn held<'n>(&self, named: impl IntoIterator<Item = &'n String>) -> ConsumedTopics {
        named
            .into_iter()
            .filter_map(|t| {
                let config = self.topics.get(t)?;
                Some((t.clone(), config.queue_count.max(0) as u32))
            })
            .collect()
    }

    /// Every queue of `group` on this broker (see the module doc); `extra_topics` are
    /// consumed topics the caller knows of besides the ones this broker does.
    pub fn group_lag(
        &self,
        group: &str,
        extra_topics: &[String],
    ) -> Result<Vec<QueueLag>, ApogeeError> {
        let progress = self.consume.group_progress(group);
        let subscribed: Vec<String> = self
            .sessions
            .clients_of_group(group)
            .into_iter()
            .flat_map(|s| s.topics)
            .collect();
        let named = progress
            .iter()
            .map(|p| &p.topic)
            .chain(&subscribed)
            .chain(extra_topics);
        let topics = self.held(named);
        let start = self.groups.start_after_ms(group, now_ms());
        self.consume.lag_of(progress, &topics, start)
    }

    /// The lag of every group that consumes on this broker (it has progress here or live
    /// clients), by group; for the metrics.
    pub fn all_lags(&self) -> Result<Vec<(String, Vec<QueueLag>)>, ApogeeError> {
        let mut progress: HashMap<String, Vec<QueueProgress>> = HashMap::new();
        for (group, p) in self.consume.all_progress() {
            progress.entry(group).or_default().push(p);
        }
        let mut subscribed: HashMap<String, Vec<String>> = HashMap::new();
        for s in self.sessions.list() {
            if let Some(group) = s.group {
                subscribed.entry(group).or_default().extend(s.topics);
            }
        }
        let groups: BTreeSet<String> = progress.keys().chain(subscribed.keys()).cloned().collect();
        let now = now_ms();
        let mut out = Vec::with_capacity(groups.len());
        for group in groups {
            let progress = progress.remove(&group).unwrap_or_default();
            let named = progress
                .iter()
                .map(|p| &p.topic)
                .chain(subscribed.get(&group).into_iter().flatten());
            let topics = self.held(named);
            let start = self.groups.start_after_ms(&group, now);
            let lags = self.consume.lag_of(progress, &topics, start)?;
            out.push((group, lags));
        }
        Ok(out)
    }
}
