//! How far behind a consumer group is on this broker: per queue, the queue's next offset
//! minus the group's committed offset. `apogee group describe` (through
//! `grpc/admin_groups.rs`) and the `rocketmq_consumer_lag_*` gauges both read it, through
//! [`LagSources`], the one place that decides which queues count and from where.
//!
//! Where a group is in a queue: its consume engine progress when it popped there (gRPC
//! receives, remoting pops); else the offset it committed there (gRPC UpdateOffset,
//! remoting pull and push consumers: `crate::consume::offsets`), kept within the queue's
//! stored offsets; else where it would start: the first message still stored, or, for a
//! group that starts at the latest (`consume.auto_create_start`), the first message stored
//! after it was created. A queue with both progress and a committed offset counts the
//! progress (the engine commits its acknowledged offset there too).
//!
//! The queues counted are every queue of every topic held here that the group consumes: the
//! topics it has progress or committed offsets in, the topics its live clients subscribe to
//! (gRPC sessions' Settings, remoting members' heartbeats, without retry topics), and the
//! topics a caller names (the NameServer passes the ones other broker groups reported).

use super::offsets::committed_offsets;
use super::state::{internal, ConsumeEngine, QueueProgress};
use crate::groups::GroupTable;
use crate::topics::TopicTable;
use apogee_proto::time::now_ms;
use apogee_proto::ApogeeError;
use apogee_server::telemetry::Sessions;
use std::collections::{BTreeMap, BTreeSet};

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

/// A group's lag and in-flight deliveries summed over every queue it consumes here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LagTotals {
    pub lag: u64,
    pub inflight: u64,
}

/// Topic name -> queue count: the topics a group consumes here.
pub type ConsumedTopics = BTreeMap<String, u32>;

/// (Topic, queue id) -> the offset a group committed there, as stored.
pub type CommittedOffsets = BTreeMap<(String, u32), u64>;

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
    /// `committed` its committed offsets, `topics` every topic it consumes here. A queue of
    /// `topics` without progress counts from its committed offset (raised to the queue's
    /// first stored offset, lowered to its next), else from where the group would start
    /// (`start_after_ms`, see [`Self::start_offset`]). Sorted by topic and queue.
    pub fn lag_of(
        &self,
        progress: Vec<QueueProgress>,
        committed: &CommittedOffsets,
        topics: &ConsumedTopics,
        start_after_ms: Option<i64>,
    ) -> Result<Vec<QueueLag>, ApogeeError> {
        let bounds = |topic: &str, queue_id: u32| {
            self.store
                .queue_bounds(topic, queue_id)
                .map_err(|e| ApogeeError::internal_in(format!("queue {topic}/{queue_id}"), e))
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
                let queue = (topic.clone(), queue_id);
                if consumed.contains(&queue) {
                    continue;
                }
                let (min, next) = bounds(topic, queue_id)?;
                let start = match committed.get(&queue) {
                    Some(&offset) => offset.max(min).min(next),
                    None => self.start_offset(topic, queue_id, min, start_after_ms)?,
                };
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

/// What a group's lag is read from: the consume engine (progress, queue bounds, the store
/// with the committed offsets), the topics held here, the groups' start points and the live
/// clients' subscriptions (gRPC sessions and remoting members).
pub struct LagSources<'a> {
    pub consume: &'a ConsumeEngine,
    pub topics: &'a TopicTable,
    pub groups: &'a GroupTable,
    pub sessions: &'a Sessions,
    /// Consumer group -> the topics its live remoting members subscribe, without retry
    /// topics (`RemotingClients::subscribed_topics`).
    pub remoting_subscriptions: BTreeMap<String, BTreeSet<String>>,
}

/// What one group has on this broker, from every source.
#[derive(Default)]
struct GroupSources {
    progress: Vec<QueueProgress>,
    committed: CommittedOffsets,
    /// The topics its live clients subscribe and the ones a caller names.
    subscribed: BTreeSet<String>,
}

impl LagSources<'_> {
    /// The topics of `named` this broker holds, with their queue counts.
    fn held<'n>(&self, named: impl IntoIterator<Item = &'n String>) -> ConsumedTopics {
        named
            .into_iter()
            .filter_map(|t| {
                let config = self.topics.get(t)?;
                Some((t.clone(), config.queues))
            })
            .collect()
    }

    /// What every group consuming here has from each source (only `only`'s when given):
    /// progress, committed offsets, live gRPC and remoting subscriptions.
    fn gather(&self, only: Option<&str>) -> Result<BTreeMap<String, GroupSources>, ApogeeError> {
        let mut by_group: BTreeMap<String, GroupSources> = BTreeMap::new();
        let progress = match only {
            Some(g) => self
                .consume
                .group_progress(g)
                .into_iter()
                .map(|p| (g.to_string(), p))
                .collect(),
            None => self.consume.all_progress(),
        };
        for (group, p) in progress {
            by_group.entry(group).or_default().progress.push(p);
        }
        for (q, offset) in committed_offsets(&self.consume.store, only)? {
            let committed = &mut by_group.entry(q.group).or_default().committed;
            committed.insert((q.topic, q.queue_id), offset);
        }
        let sessions = match only {
            Some(g) => self.sessions.clients_of_group(g),
            None => self.sessions.list(),
        };
        for s in sessions {
            if let Some(group) = s.group {
                by_group
                    .entry(group)
                    .or_default()
                    .subscribed
                    .extend(s.topics);
            }
        }
        for (group, topics) in &self.remoting_subscriptions {
            if only.is_none_or(|g| g == group) {
                let subscribed = &mut by_group.entry(group.clone()).or_default().subscribed;
                subscribed.extend(topics.iter().cloned());
            }
        }
        Ok(by_group)
    }

    /// The lag of `group` from what it has here (the one place the sources are merged).
    fn lag_from(
        &self,
        group: &str,
        sources: GroupSources,
        now_ms: i64,
    ) -> Result<Vec<QueueLag>, ApogeeError> {
        let named = sources
            .progress
            .iter()
            .map(|p| &p.topic)
            .chain(sources.committed.keys().map(|(topic, _)| topic))
            .chain(&sources.subscribed);
        let topics = self.held(named);
        let start = self.groups.start_after_ms(group, now_ms);
        self.consume
            .lag_of(sources.progress, &sources.committed, &topics, start)
    }

    /// Every queue of `group` on this broker (see the module doc); `extra_topics` are
    /// consumed topics the caller knows of besides the ones this broker does.
    pub fn group_lag(
        &self,
        group: &str,
        extra_topics: &[String],
    ) -> Result<Vec<QueueLag>, ApogeeError> {
        let mut sources = self.gather(Some(group))?.remove(group).unwrap_or_default();
        sources.subscribed.extend(extra_topics.iter().cloned());
        self.lag_from(group, sources, now_ms())
    }

    /// Every group's lag summed over its queues, from one pass over all of them
    /// ([`Self::all_lags`]): `apogee group list --lag`.
    pub fn all_totals(&self) -> Result<BTreeMap<String, LagTotals>, ApogeeError> {
        Ok(self
            .all_lags()?
            .into_iter()
            .map(|(group, queues)| {
                let totals = queues.iter().fold(LagTotals::default(), |t, q| LagTotals {
                    lag: t.lag + q.lag(),
                    inflight: t.inflight + q.inflight as u64,
                });
                (group, totals)
            })
            .collect())
    }

    /// The lag of every group that consumes on this broker (it has progress or committed
    /// offsets here, or live gRPC or remoting members), by group; for the metrics.
    pub fn all_lags(&self) -> Result<Vec<(String, Vec<QueueLag>)>, ApogeeError> {
        let now = now_ms();
        self.gather(None)?
            .into_iter()
            .map(|(group, sources)| {
                let lags = self.lag_from(&group, sources, now)?;
                Ok((group, lags))
            })
            .collect()
    }
}
