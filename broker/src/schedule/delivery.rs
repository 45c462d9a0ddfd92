//! The delivery loop: it takes the waiting messages due now from the due index (ordered by
//! due time, so the cost is the number due, not the number waiting), publishes them in one
//! append (a group commit), then sleeps until the next due time, at most
//! `schedule.scan_interval_ms`, and is woken at once when a message due earlier is stored.
//! The scan starts at a low-water mark (nothing due before it waits: a complete pass raises it
//! to now, every store lowers it to its due time), so it does not wade through the deleted
//! entries of earlier deliveries.
//!
//! "Due" means due time <= the clock. A wall clock that jumps back delays deliveries by the
//! jump (none is early, none is repeated: a delivered message has left the due index in the
//! same batch that indexed its publication); one that jumps forward delivers early by at most
//! the jump.

use super::{op_record, Schedule};
use crate::consume::ServingGate;
use crate::store::record::internal;
use crate::store::schedule_index::{self, op, DueEntry};
use crate::store::NewMessage;
use apogee_proto::ApogeeError;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Most messages published per pass (the rest follow at once in the next pass).
const MAX_PER_PASS: usize = 1024;

impl Schedule {
    /// Runs the delivery loop until `closing` turns true, delivering only while `gate`
    /// allows (controller mode: while this master's lease runs).
    pub fn spawn_delivery(
        self: Arc<Self>,
        gate: ServingGate,
        mut closing: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.clone().count_waiting());
        tokio::spawn(async move {
            loop {
                let sleep = if let Err(why) = gate() {
                    tracing::debug!("scheduled deliveries wait: {why}");
                    Duration::from_millis(self.config.scan_interval_ms)
                } else {
                    self.deliver_pass().await
                };
                tokio::select! {
                    _ = tokio::time::sleep(sleep) => {}
                    _ = self.wake.notified() => {}
                    _ = closing.wait_for(|c| *c) => break,
                }
            }
        })
    }

    /// One delivery pass; how long to sleep after it.
    async fn deliver_pass(&self) -> Duration {
        match self.deliver_due().await {
            Ok(n) if n >= MAX_PER_PASS => Duration::ZERO,
            Ok(_) => self.until_next_due(),
            Err(e) => {
                tracing::warn!(error = %e, "scheduled delivery pass failed");
                Duration::from_millis(self.config.scan_interval_ms)
            }
        }
    }

    /// Counts the waiting messages in the background (neither start-up nor the first
    /// deliveries wait for it).
    async fn count_waiting(self: Arc<Self>) {
        let kv = self.store.kv();
        match tokio::task::spawn_blocking(move || schedule_index::count_waiting(kv.as_ref())).await
        {
            Ok(Ok(n)) => {
                self.stats.waiting.fetch_add(n as i64, Ordering::Relaxed);
                tracing::info!(waiting = n, "scheduled messages waiting");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "counting scheduled messages failed"),
            Err(e) => tracing::warn!(error = %e, "counting scheduled messages failed"),
        }
    }

    /// How long to sleep: until the next due time, at most the scan interval (at least 1 ms).
    /// Records when the loop will look again, so an earlier new message wakes it.
    fn until_next_due(&self) -> Duration {
        let cap = self.config.scan_interval_ms as i64;
        let now = self.now_ms();
        let from = self.low_water_ms.load(Ordering::SeqCst);
        let next = schedule_index::next_due(self.store.kv().as_ref(), from)
            .ok()
            .flatten()
            .unwrap_or(i64::MAX);
        let wait = next.saturating_sub(now).clamp(1, cap);
        self.next_look_ms.store(now + wait, Ordering::SeqCst);
        Duration::from_millis(wait as u64)
    }

    /// One pass: publishes (or drops) every message due now, up to [`MAX_PER_PASS`], in one
    /// append. Returns how many were due.
    pub async fn deliver_due(&self) -> Result<usize, ApogeeError> {
        // From here until the loop sleeps again, any new message wakes it.
        self.next_look_ms.store(i64::MAX, Ordering::SeqCst);
        let _serial = self.serial.lock().await;
        let now = self.now_ms();
        let kv = self.store.kv();
        // Nothing waits below the low-water mark: the scan starts there, past the deleted
        // entries of earlier deliveries (RocksDB tombstones until compaction).
        let from = self.low_water_ms.swap(i64::MAX, Ordering::SeqCst);
        let due = match schedule_index::due(kv.as_ref(), from, now, MAX_PER_PASS) {
            Ok(due) => due,
            Err(e) => {
                self.low_water_ms.fetch_min(from, Ordering::SeqCst);
                return Err(ApogeeError::from(e));
            }
        };
        // A full pass leaves nothing due up to now; a truncated one resumes at its last entry.
        let next_from = match due.last() {
            Some(last) if due.len() >= MAX_PER_PASS => last.due_ms,
            _ => now.saturating_add(1),
        };
        let mut records = Vec::with_capacity(due.len());
        let mut ready_at = Vec::with_capacity(due.len());
        for entry in &due {
            let Some(facts) =
                schedule_index::load(kv.as_ref(), &entry.id).map_err(ApogeeError::from)?
            else {
                continue;
            };
            if facts.outcome.is_some() {
                continue; // cannot happen: an outcome deletes the due entry in the same batch
            }
            let waiting = self
                .store
                .read_at(facts.waiting.log_offset, facts.waiting.size)
                .map_err(ApogeeError::from)?;
            records.push(self.publication(waiting.msg, entry));
            // A message sent with a past time became deliverable when it was stored.
            ready_at.push(entry.due_ms.max(facts.waiting.store_timestamp_ms));
        }
        if records.is_empty() {
            self.low_water_ms.fetch_min(next_from, Ordering::SeqCst);
            return Ok(due.len());
        }
        let dropped: Vec<bool> = records
            .iter()
            .map(|r| r.internal(internal::SCHED_OP) == Some(op::DROP))
            .collect();
        if let Err(e) = self.store.append_internal(records).await {
            self.low_water_ms.fetch_min(from, Ordering::SeqCst);
            return Err(ApogeeError::from(e));
        }
        self.low_water_ms.fetch_min(next_from, Ordering::SeqCst);
        let published_at = self.now_ms();
        for (ready, dropped) in ready_at.into_iter().zip(dropped) {
            self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
            if dropped {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                self.stats.delivered(published_at - ready);
            }
        }
        Ok(due.len())
    }

    /// The record that ends a wait: the message in its real topic and queue carrying its
    /// schedule id, or a drop record when the topic no longer exists.
    fn publication(&self, mut msg: NewMessage, entry: &DueEntry) -> NewMessage {
        let Some(config) = self.topics.get(&entry.topic) else {
            tracing::warn!(
                topic = %entry.topic,
                message_id = %msg.message_id,
                "scheduled message dropped at its time: its topic no longer exists"
            );
            return op_record(&entry.id, op::DROP, entry.due_ms);
        };
        let queue: u32 = msg
            .internal(internal::SCHED_QUEUE)
            .and_then(|q| q.parse().ok())
            .unwrap_or(0);
        msg.topic = entry.topic.clone();
        // The topic may have been recreated with fewer queues since.
        msg.queue_id = queue % config.queues.max(1);
        msg.internal.retain(internal::is_carried);
        msg.internal.extend([
            (internal::SCHED_ID.into(), entry.id.clone()),
            (internal::SCHED_DUE.into(), entry.due_ms.to_string()),
        ]);
        msg
    }
}
