//! Reading consume state from the index: every queue when the engine opens, and again when
//! the rows changed under it — a slave applying its master's replicated state, a master
//! adopting the state a slave served while it was away. A reload replaces a queue's state
//! under the queue's own lock; a queue without rows any more is dropped.

use std::collections::BTreeSet;

use apogee_proto::ApogeeError;

use super::queue_state::{load_rows, read_queue, QueueState};
use super::receipt::ReceiptSigner;
use super::state::{internal, ConsumeEngine, SECRET_KEY};
use crate::store::keys::QueueKey;
use crate::store::values::decode_secret;
use crate::store::Cf;

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
        keys.extend(
            load_rows(self.kv.as_ref(), b"", b"")
                .map_err(internal)?
                .into_keys(),
        );
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
            if let Some(fresh) = read_queue(self.kv.as_ref(), key).map_err(internal)? {
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
                read_queue(self.kv.as_ref(), key)
                    .map_err(internal)?
                    .is_none()
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
