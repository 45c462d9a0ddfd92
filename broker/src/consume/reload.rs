//! Reading consume state from the index: every queue when the engine opens, and again when
//! the rows changed under it — a slave applying its master's replicated state, a master
//! adopting the state a slave served while it was away. A reload replaces a queue's state
//! under the queue's own lock; a queue without rows any more is dropped.

use std::collections::{BTreeSet, HashMap};

use apogee_proto::ApogeeError;

use super::queue::QueueState;
use super::receipt::ReceiptSigner;
use super::state::{internal, ConsumeEngine, SECRET_KEY};
use super::values::{decode_offset, decode_secret, Inflight};
use crate::store::keys::{tag, ConsumeRow, QueueKey};
use crate::store::{Cf, KvStore};

impl ConsumeEngine {
    /// Re-reads the given queues from the index (pop offset, in-flight and waiting entries)
    /// and replaces their in-memory state, each under its own lock. Queues with no rows left
    /// are dropped. Auto-renew owners of deliveries still in flight are kept.
    pub fn reload_queues(&self, keys: &[QueueKey]) -> Result<(), ApogeeError> {
        for key in keys {
            self.reload_queue(key)?;
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// Re-reads the receipt secret and every queue (known here or in the index): a slave
    /// after a snapshot of its master, whose handles must then be valid here.
    pub fn reload_all(&self) -> Result<(), ApogeeError> {
        self.reload_secret()?;
        let mut keys: BTreeSet<QueueKey> = self.queues.read().keys().cloned().collect();
        keys.extend(load_rows(self.kv.as_ref(), b"", b"")?.into_keys());
        for key in &keys {
            self.reload_queue(key)?;
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// Takes the receipt secret stored in the index (a slave takes its master's).
    pub fn reload_secret(&self) -> Result<(), ApogeeError> {
        let stored = self.kv.get(Cf::Meta, SECRET_KEY).map_err(internal)?;
        if let Some(secret) = stored.as_deref().and_then(decode_secret) {
            *self.signer.write() = ReceiptSigner::new(secret);
        }
        Ok(())
    }

    fn reload_queue(&self, key: &QueueKey) -> Result<(), ApogeeError> {
        let queue = self.queue(key, 0);
        {
            let mut state = queue.lock();
            if let Some(fresh) = read_queue(self.kv.as_ref(), key)? {
                replace_state(&mut state, fresh);
                return Ok(());
            }
        }
        // No rows: drop it (the map's lock before the queue's, as everywhere), unless rows
        // came back in between.
        let mut queues = self.queues.write();
        let gone = match queues.get(key) {
            Some(q) => {
                let _state = q.lock();
                read_queue(self.kv.as_ref(), key)?.is_none()
            }
            None => false,
        };
        if gone {
            queues.remove(key);
        }
        Ok(())
    }
}

/// Replaces a queue's persisted state with `fresh`, keeping what is only in memory.
fn replace_state(state: &mut QueueState, mut fresh: QueueState) {
    fresh.owners = std::mem::take(&mut state.owners)
        .into_iter()
        .filter(|(offset, _)| fresh.inflight.contains_key(offset))
        .collect();
    fresh.last_consume_ms = state.last_consume_ms;
    *state = fresh;
}

/// One queue's rows; `None` when it has none.
fn read_queue(kv: &dyn KvStore, key: &QueueKey) -> Result<Option<QueueState>, ApogeeError> {
    let (rows, end) = key.tagged_range(tag::INFLIGHT);
    let pop = kv.get(Cf::ConsumeState, &key.pop_key()).map_err(internal)?;
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
) -> Result<HashMap<QueueKey, QueueState>, ApogeeError> {
    let mut queues: HashMap<QueueKey, QueueState> = HashMap::new();
    for (key, value) in kv
        .scan(Cf::ConsumeState, from, to, usize::MAX)
        .map_err(internal)?
    {
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
