//! One queue of one group as the engine keeps it ([`QueueState`]: pop offset, deliveries in
//! flight, FIFO messages waiting per message group, owners of auto-renew deliveries) and
//! the reading of it from its rows in the index ([`load_rows`], [`read_queue`]): at open
//! (`super::state`) and on a reload (`super::reload`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::store::keys::{tag, ConsumeRow, QueueKey};
use crate::store::values::{decode_offset, Inflight};
use crate::store::{Cf, KvStore, StoreError};

#[derive(Debug, Default)]
pub(super) struct QueueState {
    /// Next queue offset not yet looked at.
    pub(super) pop_offset: u64,
    /// Deliveries in flight (attempt >= 1), by queue offset.
    pub(super) inflight: BTreeMap<u64, Inflight>,
    /// FIFO messages waiting for their message group's turn: offsets per
    /// message group, so a pop looks at each group once, not at every
    /// waiting message.
    pub(super) waiting: HashMap<u64, BTreeSet<u64>>,
    pub(super) waiting_count: usize,
    /// The client that received each auto-renew delivery (renewed while it is alive).
    pub(super) owners: HashMap<u64, Arc<str>>,
    pub(super) last_consume_ms: Option<i64>,
}

impl QueueState {
    /// Everything below is acknowledged.
    pub(super) fn committed(&self) -> u64 {
        let waiting = self
            .waiting
            .values()
            .filter_map(|o| o.first().copied())
            .min();
        [self.inflight.keys().next().copied(), waiting]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.pop_offset)
    }

    pub(super) fn add_waiting(&mut self, offset: u64, group: u64) {
        if self.waiting.entry(group).or_default().insert(offset) {
            self.waiting_count += 1;
        }
    }

    pub(super) fn remove_waiting(&mut self, offset: u64, group: u64) {
        if let Some(offsets) = self.waiting.get_mut(&group) {
            if offsets.remove(&offset) {
                self.waiting_count -= 1;
            }
            if offsets.is_empty() {
                self.waiting.remove(&group);
            }
        }
    }

    /// Message groups with a delivery in flight.
    pub(super) fn busy_groups(&self) -> HashSet<u64> {
        self.inflight
            .values()
            .filter(|f| f.message_group != 0)
            .map(|f| f.message_group)
            .collect()
    }
}

/// One queue's rows; `None` when it has none.
pub(super) fn read_queue(
    kv: &dyn KvStore,
    key: &QueueKey,
) -> Result<Option<QueueState>, StoreError> {
    let (rows, end) = key.tagged_range(tag::INFLIGHT);
    let pop = kv.get(Cf::ConsumeState, &key.pop_key())?;
    let mut found = load_rows(kv, &rows, &end)?;
    let state = found.remove(key);
    if pop.is_none() && state.is_none() {
        return Ok(None);
    }
    let mut state = state.unwrap_or_default();
    if let Some(v) = pop {
        decode_pop(&mut state, &v);
    }
    Ok(Some(state))
}

fn decode_pop(state: &mut QueueState, value: &[u8]) {
    match decode_offset(value) {
        Some(offset) => state.pop_offset = offset,
        None => tracing::warn!("skipping an unreadable pop offset ({} bytes)", value.len()),
    }
}

/// Decodes the consume-state rows in `[from, to)` (empty `to`: no bound): pop offsets and
/// in-flight / waiting entries, by queue.
pub(super) fn load_rows(
    kv: &dyn KvStore,
    from: &[u8],
    to: &[u8],
) -> Result<HashMap<QueueKey, QueueState>, StoreError> {
    let mut queues: HashMap<QueueKey, QueueState> = HashMap::new();
    for (key, value) in kv.scan(Cf::ConsumeState, from, to, usize::MAX)? {
        let Some((qk, row)) = QueueKey::decode_state_key(&key) else {
            tracing::warn!("skipping unreadable consume-state key {key:?}");
            continue;
        };
        let state = queues.entry(qk).or_default();
        match row {
            ConsumeRow::Pop => decode_pop(state, &value),
            ConsumeRow::Inflight(off) => {
                let Some(inf) = Inflight::decode(&value) else {
                    tracing::warn!("skipping unreadable in-flight entry {key:?}");
                    continue;
                };
                if inf.is_waiting() {
                    state.add_waiting(off, inf.message_group);
                } else {
                    state.inflight.insert(off, inf);
                }
            }
        }
    }
    Ok(queues)
}
