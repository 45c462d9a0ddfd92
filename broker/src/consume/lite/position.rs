//! Where a lite consumer group starts in a lite queue, and what the consume engine tells the
//! lite receive about one lite queue.
//!
//! A subscription's `offset_option` (RocketMQ's `OffsetOption`) sets the group's position in
//! each lite topic of a PARTIAL_ADD; without one (or with LAST) a position the group already
//! has is kept. A group without a position in a lite topic starts at the subscription: at
//! the messages stored after it (RocketMQ initialises a lite queue at its max offset too; for
//! a lite topic with no message yet, that is its first message). The position is persisted at
//! once, so a resync after a restart resumes there.

use super::StartOffset;
use crate::consume::state::{internal, ConsumeEngine};
use crate::store::keys::QueueKey;
use apogee_proto::ApogeeError;

impl ConsumeEngine {
    /// Sets `group`'s position in lite queue `queue` for a new subscription: `start` when
    /// given (and not LAST), else where a group without a position starts.
    pub fn lite_start(
        &self,
        group: &str,
        queue: &str,
        start: Option<StartOffset>,
    ) -> Result<(), ApogeeError> {
        let key = QueueKey::new(group, queue, 0);
        let (min, next) = self.store.queue_bounds(queue, 0).map_err(internal)?;
        let current = self.existing(&key).map(|q| q.lock().committed());
        let target = match (start, current) {
            (None | Some(StartOffset::Last), Some(_)) => return Ok(()),
            // Kept (persisted) also for a lite topic with nothing stored yet, so a client's
            // resync after a broker restart does not skip what came in between.
            (None | Some(StartOffset::Last), None) => next,
            (Some(StartOffset::Min), _) => min,
            (Some(StartOffset::Max), _) => next,
            (Some(StartOffset::Offset(o)), _) => o.clamp(min, next),
            (Some(StartOffset::TailN(n)), c) => c.unwrap_or(next).saturating_sub(n).max(min),
            (Some(StartOffset::Timestamp(ms)), _) => self
                .store
                .queue_offset_for_time(queue, 0, ms)
                .map_err(internal)?
                .clamp(min, next),
        };
        if current == Some(target) {
            return Ok(());
        }
        self.reset_queue(group, queue, 0, target)
    }

    /// When the delivery in flight of `group` in lite queue `queue` may be handed out again
    /// (None: nothing in flight, or only what the dead-letter task takes).
    pub fn lite_next_due(&self, group: &str, queue: &str, max_attempts: u32) -> Option<i64> {
        let q = self.existing(&QueueKey::new(group, queue, 0))?;
        let s = q.lock();
        s.inflight
            .values()
            .filter(|f| f.attempt < max_attempts || f.is_suspended())
            .map(|f| f.visible_at_ms)
            .min()
    }

    /// (committed offset, deliveries in flight) of `group` in lite queue `queue`; None when
    /// the group has no position there.
    pub fn lite_position(&self, group: &str, queue: &str) -> Option<(u64, usize)> {
        let q = self.existing(&QueueKey::new(group, queue, 0))?;
        let s = q.lock();
        Some((s.committed(), s.inflight.len()))
    }
}
