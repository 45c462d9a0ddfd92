//! Scheduled delivery: DELAY messages wait in the schedule topic and are published once, at
//! their time, in their real topic and queue.
//!
//! Every step is a commit-log record, so the state survives crashes and is rebuilt by recovery
//! (the index side is `store::schedule_index`):
//!
//! - **waiting**: a DELAY send is stored in [`names::SCHEDULE_TOPIC`] with internal properties:
//!   its id (the recall handle, which names this broker group), real topic and queue, due time.
//!   Consumers cannot read system topics.
//! - **delivery** ([`delivery`]): ONE record, the message in its real topic and queue with its
//!   original id, keys, tag, properties and delivery timestamp, carrying the schedule id;
//!   dispatching it records the outcome DELIVERED in the same index batch. Publication and
//!   "done" are one record, so a crash can never separate them.
//! - **recall / drop**: small op records in the schedule topic. A recalled message is never
//!   delivered; a message whose topic is gone at its time is dropped (logged, counted).
//!
//! Every outcome is written under one async mutex held across "read the outcome, append the
//! record", so a recall and a delivery of the same message cannot both happen. Times come from
//! an injectable [`Clock`] (the wall clock in production).

pub mod delivery;

use crate::config::ScheduleSection;
use crate::store::record::internal;
use crate::store::schedule_index::{self, op, Outcome};
use crate::store::{MessageStore, NewMessage};
use crate::topics::TopicTable;
use apogee_proto::cluster::{ScheduleStats, ScheduledInfo};
use apogee_proto::{names, routed_id, ApogeeError};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// Default and largest number of waiting messages one list returns.
pub const DEFAULT_LIST_LIMIT: usize = 1000;
pub const MAX_LIST_LIMIT: usize = 100_000;

/// Milliseconds since the epoch, now. Tests inject their own.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn wall_clock() -> Clock {
    Arc::new(apogee_proto::time::now_ms)
}

/// Counters since the broker started (plain atomics, ready for a metrics endpoint).
#[derive(Default)]
pub struct Stats {
    /// Counted from the index at start (in the background), then kept up to date.
    pub waiting: AtomicI64,
    pub delivered: AtomicU64,
    pub recalled: AtomicU64,
    pub dropped: AtomicU64,
    pub lateness_sum_ms: AtomicU64,
    pub lateness_max_ms: AtomicU64,
    pub late_over_1s: AtomicU64,
}

impl Stats {
    fn delivered(&self, lateness_ms: i64) {
        let late = lateness_ms.max(0) as u64;
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.lateness_sum_ms.fetch_add(late, Ordering::Relaxed);
        self.lateness_max_ms.fetch_max(late, Ordering::Relaxed);
        if late > 1000 {
            self.late_over_1s.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The scheduled messages of one broker.
pub struct Schedule {
    store: Arc<MessageStore>,
    topics: Arc<TopicTable>,
    config: ScheduleSection,
    broker_name: String,
    clock: Clock,
    /// Held across "read the outcome, append the record" by deliveries and recalls.
    serial: tokio::sync::Mutex<()>,
    /// Wakes the delivery loop for a message due before it planned to look again.
    wake: Notify,
    /// When the delivery loop plans to look again (ms); i64::MAX while it is looking.
    next_look_ms: AtomicI64,
    /// No message due before this (ms) waits: where the due scan starts. Lowered by every
    /// store, raised by each complete pass.
    low_water_ms: AtomicI64,
    stats: Stats,
}

impl Schedule {
    pub fn new(
        store: Arc<MessageStore>,
        topics: Arc<TopicTable>,
        config: ScheduleSection,
        broker_name: String,
        clock: Clock,
    ) -> Arc<Schedule> {
        Arc::new(Schedule {
            store,
            topics,
            config,
            broker_name,
            clock,
            serial: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            next_look_ms: AtomicI64::new(i64::MAX),
            low_water_ms: AtomicI64::new(0),
            stats: Stats::default(),
        })
    }

    fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    /// The counters.
    pub fn counters(&self) -> &Stats {
        &self.stats
    }

    /// Refuses a delivery time beyond `max_delay_ms` from now (one in the past or now is
    /// delivered at once).
    pub fn check_delivery_time(&self, msg: &NewMessage) -> Result<(), ApogeeError> {
        let due_ms = msg.delivery_timestamp_ms.ok_or_else(|| {
            ApogeeError::IllegalDeliveryTime("a DELAY message needs a delivery timestamp".into())
        })?;
        let latest = self
            .now_ms()
            .saturating_add(self.config.max_delay_ms as i64);
        if due_ms > latest {
            return Err(ApogeeError::IllegalDeliveryTime(format!(
                "delivery time {due_ms} ms is more than {} ms from now (the broker's \
                 schedule.max_delay_ms)",
                self.config.max_delay_ms
            )));
        }
        Ok(())
    }

    /// Turns a validated DELAY message into its waiting record in place; returns its recall
    /// handle.
    pub fn to_waiting(&self, msg: &mut NewMessage) -> String {
        let due_ms = msg.delivery_timestamp_ms.unwrap_or(0).max(0);
        let id = routed_id::new_recall_handle(&self.broker_name);
        msg.internal.retain(internal::is_carried);
        msg.internal.extend([
            (internal::SCHED_ID.into(), id.clone()),
            (internal::SCHED_TOPIC.into(), std::mem::take(&mut msg.topic)),
            (internal::SCHED_QUEUE.into(), msg.queue_id.to_string()),
            (internal::SCHED_DUE.into(), due_ms.to_string()),
        ]);
        msg.topic = names::SCHEDULE_TOPIC.to_string();
        msg.queue_id = 0;
        id
    }

    /// Tells the delivery loop that waiting records due at `due_ms` were stored.
    pub fn stored(&self, due_ms: impl IntoIterator<Item = i64>) {
        let (mut n, mut earliest) = (0, i64::MAX);
        for d in due_ms {
            n += 1;
            earliest = earliest.min(d);
        }
        self.stats.waiting.fetch_add(n, Ordering::Relaxed);
        self.low_water_ms
            .fetch_min(earliest.max(0), Ordering::SeqCst);
        if n > 0 && earliest < self.next_look_ms.load(Ordering::SeqCst) {
            self.wake.notify_one();
        }
    }

    /// Cancels a waiting message. Already recalled: OK again. Already delivered (or dropped):
    /// PRECONDITION_FAILED. A handle of no waiting message (or of another topic):
    /// MESSAGE_NOT_FOUND; one that is not a recall handle at all: BAD_REQUEST. Returns the
    /// message id.
    #[tracing::instrument(skip(self))]
    pub async fn recall(&self, topic: &str, handle: &str) -> Result<String, ApogeeError> {
        let Some(broker) = routed_id::broker_of_recall_handle(handle) else {
            return Err(ApogeeError::BadRequest(format!(
                "{handle:?} is not a recall handle issued by an Apogee broker"
            )));
        };
        let not_found = || {
            ApogeeError::MessageNotFound(format!(
                "no scheduled message of topic {topic:?} has recall handle {handle} on broker {}",
                self.broker_name
            ))
        };
        if broker != self.broker_name {
            return Err(not_found());
        }
        let _serial = self.serial.lock().await;
        let kv = self.store.kv();
        let facts = schedule_index::load(kv.as_ref(), handle)
            .map_err(ApogeeError::from)?
            .ok_or_else(not_found)?;
        let waiting = self
            .store
            .read_at(facts.waiting.log_offset, facts.waiting.size)
            .map_err(ApogeeError::from)?;
        let real_topic = waiting.msg.internal(internal::SCHED_TOPIC).unwrap_or("");
        if !topic.is_empty() && topic != real_topic {
            return Err(not_found());
        }
        let message_id = waiting.msg.message_id.clone();
        match facts.outcome {
            Some((Outcome::Recalled, _)) => return Ok(message_id),
            Some((Outcome::Delivered, at)) => {
                return Err(ApogeeError::PreconditionFailed(format!(
                    "message {message_id} was already delivered (at {at} ms); it cannot be recalled"
                )))
            }
            Some((Outcome::Dropped, _)) => {
                return Err(ApogeeError::PreconditionFailed(format!(
                    "message {message_id} was dropped at its time (its topic was gone)"
                )))
            }
            None => {}
        }
        let record = op_record(handle, op::RECALL, facts.waiting.due_ms);
        self.store
            .append_internal(vec![record])
            .await
            .map_err(ApogeeError::from)?;
        self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
        self.stats.recalled.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(message_id, "scheduled message recalled");
        Ok(message_id)
    }

    /// Waiting messages, earliest due first; `topic` (when not empty) filters.
    pub fn list(&self, topic: &str, limit: usize) -> Result<Vec<ScheduledInfo>, ApogeeError> {
        let limit = match limit {
            0 => DEFAULT_LIST_LIMIT,
            n => n.min(MAX_LIST_LIMIT),
        };
        let kv = self.store.kv();
        let entries = schedule_index::waiting(kv.as_ref(), 0, None, topic, limit)
            .map_err(ApogeeError::from)?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let Some(facts) =
                schedule_index::load(kv.as_ref(), &e.id).map_err(ApogeeError::from)?
            else {
                continue;
            };
            let waiting = self
                .store
                .read_at(facts.waiting.log_offset, facts.waiting.size)
                .map_err(ApogeeError::from)?;
            out.push(ScheduledInfo {
                recall_handle: e.id,
                topic: e.topic,
                queue_id: int_internal(&waiting.msg, internal::SCHED_QUEUE) as i32,
                message_id: waiting.msg.message_id,
                due_ms: e.due_ms,
                store_timestamp_ms: facts.waiting.store_timestamp_ms,
                broker_name: self.broker_name.clone(),
            });
        }
        Ok(out)
    }

    /// The counters as the Admin service reports them.
    pub fn stats(&self) -> ScheduleStats {
        let s = &self.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ScheduleStats {
            broker_name: self.broker_name.clone(),
            waiting: s.waiting.load(Ordering::Relaxed).max(0) as u64,
            delivered: get(&s.delivered),
            recalled: get(&s.recalled),
            dropped: get(&s.dropped),
            lateness_sum_ms: get(&s.lateness_sum_ms),
            lateness_max_ms: get(&s.lateness_max_ms),
            late_over_1s: get(&s.late_over_1s),
        }
    }
}

fn int_internal(msg: &NewMessage, key: &str) -> i64 {
    msg.internal(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A schedule op record (recall or drop) for message `id`, due at `due_ms`.
fn op_record(id: &str, kind: &str, due_ms: i64) -> NewMessage {
    let internal = [
        (internal::SCHED_ID, id.to_string()),
        (internal::SCHED_OP, kind.to_string()),
        (internal::SCHED_DUE, due_ms.to_string()),
    ];
    NewMessage::op_record(
        names::SCHEDULE_TOPIC,
        internal.map(|(k, v)| (k.to_string(), v)).to_vec(),
    )
}

#[cfg(test)]
mod tests;
