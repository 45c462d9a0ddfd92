//! Moving a consumer group's position in one queue (`apogee group
//! reset-offset`): everything below the new offset counts as acknowledged,
//! everything from it on is delivered (again). The group's in-flight and
//! waiting FIFO deliveries on the queue are dropped; their receipt handles no
//! longer match anything.

use super::state::{internal, ConsumeEngine};
use crate::store::keys::QueueKey;
use crate::store::{Cf, KvBatch};
use apogee_proto::ApogeeError;

/// Where one queue of a group stands before a reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePosition {
    /// Everything below is acknowledged (the queue's first offset when the group never
    /// consumed it).
    pub committed: u64,
    /// Deliveries in flight plus FIFO messages waiting for their turn.
    pub inflight: u64,
}

impl ConsumeEngine {
    /// Where `group` stands in a queue whose first stored offset is `min`.
    pub fn position(&self, group: &str, topic: &str, queue_id: u32, min: u64) -> QueuePosition {
        let key = QueueKey::new(group, topic, queue_id);
        match self.existing(&key) {
            Some(q) => {
                let s = q.lock();
                QueuePosition {
                    committed: s.committed(),
                    inflight: (s.inflight.len() + s.waiting_count) as u64,
                }
            }
            None => QueuePosition {
                committed: min,
                inflight: 0,
            },
        }
    }

    /// Moves `group` in a queue to `offset`, dropping what it has in flight there, and
    /// persists it. Consumers waiting on the queue are woken.
    pub fn reset_queue(
        &self,
        group: &str,
        topic: &str,
        queue_id: u32,
        offset: u64,
    ) -> Result<(), ApogeeError> {
        let key = QueueKey::new(group, topic, queue_id);
        let queue = self.queue(&key, offset);
        {
            let mut state = queue.lock();
            let mut batch = KvBatch::new();
            let waiting = state.waiting.values().flatten();
            for off in state.inflight.keys().chain(waiting) {
                batch.delete(Cf::ConsumeState, key.inflight_key(*off));
            }
            state.inflight.clear();
            state.waiting.clear();
            state.waiting_count = 0;
            state.owners.clear();
            state.pop_offset = offset;
            Self::persist_queue(&mut batch, &key, &state);
            self.kv.write(batch).map_err(internal)?;
        }
        self.changed.notify_waiters();
        Ok(())
    }
}
