//! The consume engine: the state of every (consumer group, topic, queue) on
//! this broker and the pop / ack / change-invisible-duration operations on it.
//!
//! Each queue of each group has its own lock, so groups and queues never
//! wait for each other; a map from key to queue is locked only to find or add
//! one. What is persisted, and how, is in [`super::keys`].
//!
//! A delivery not acknowledged within its invisible time comes back after
//! the group's backoff for that attempt, with the attempt raised; one that
//! used up the group's delivery attempts (its last attempt has no backoff) is
//! left to the dead-letter task
//! ([`super::dead_letter`]). For a FIFO group, a message whose message group
//! already has a delivery in flight waits (an entry with attempt 0) until that
//! one is acknowledged or dead-lettered.

use super::clients::Clients;
use super::filter::MessageFilter;
use super::queue_state::{load_rows, QueueState};
use super::receipt::{Receipt, ReceiptSigner};
use crate::store::keys::{MetaKey, QueueKey};
use crate::store::values::{decode_secret, encode_offset, encode_secret, Inflight, SUSPENDED};
use crate::store::{Cf, KvBatch, KvStore, MessageStore, StoreError, StoredMessage};
use apogee_proto::group::GroupConfig;
use apogee_proto::ApogeeError;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;

pub(super) const SECRET_KEY: &[u8] = MetaKey::ReceiptSecret.key();
/// How long a receive's `attempt_id` is remembered.
const ATTEMPT_ID_TTL_MS: i64 = 5 * 60 * 1000;
/// Most remembered attempt ids (the oldest are dropped first).
const MAX_ATTEMPT_IDS: usize = 10_000;

/// What a consumer asks to pop.
#[derive(Clone, Copy, Debug)]
pub struct PopRequest<'a> {
    pub group: &'a GroupConfig,
    pub topic: &'a str,
    /// Queues to pop from, in this order.
    pub queue_ids: &'a [u32],
    pub filter: &'a MessageFilter,
    pub max: usize,
    pub invisible_ms: i64,
    /// Auto-renew receive (push consumers): renew the invisible time until then.
    pub renew_until_ms: Option<i64>,
    /// The client's id of this receive: a repeat gets the same deliveries.
    pub attempt_id: Option<&'a str>,
    /// The receiving client (`x-mq-client-id`), owner of auto-renew deliveries.
    pub client_id: &'a str,
    /// Where the group starts in a queue it never consumed from: at the first message
    /// stored at or after this time, or (None) at the first message still stored
    /// (`crate::groups::GroupTable::start_after_ms`).
    pub start_after_ms: Option<i64>,
}

/// One message handed to a consumer.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub message: StoredMessage,
    /// 1 for the first delivery to this group, then 2, 3, ...
    pub attempt: u32,
    pub receipt_handle: String,
    pub invisible_ms: i64,
}

/// The progress of one queue of a group (for `apogee group describe`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueProgress {
    pub topic: String,
    pub queue_id: u32,
    /// Everything below is acknowledged.
    pub consumer_offset: u64,
    /// Next offset not yet handed out or looked at.
    pub pop_offset: u64,
    /// Deliveries in flight (FIFO messages waiting their turn not counted).
    pub inflight: usize,
    pub last_consume_ms: Option<i64>,
}

/// A delivery that used up its group's attempts, for the dead-letter task.
#[derive(Clone, Debug)]
pub struct Expired {
    pub key: QueueKey,
    pub queue_offset: u64,
    pub attempt: u32,
    pub nonce: u64,
}

struct RememberedReceive {
    at_ms: i64,
    /// (queue, offset, nonce) of each delivery, in order.
    deliveries: Vec<(u32, u64, u64)>,
}

pub(super) type SharedQueue = Arc<Mutex<QueueState>>;

pub struct ConsumeEngine {
    pub(super) store: Arc<MessageStore>,
    pub(super) kv: Arc<dyn KvStore>,
    /// Swapped when a slave takes its master's secret (`reload_secret`).
    pub(super) signer: RwLock<ReceiptSigner>,
    pub(super) queues: RwLock<HashMap<QueueKey, SharedQueue>>,
    attempts: Mutex<HashMap<(String, String, String), RememberedReceive>>,
    /// Woken by acks, nacks and dead letters: FIFO message groups may go on.
    pub(super) changed: Notify,
    /// Woken when a pop passes over deliveries that used up their attempts.
    pub(super) expired: Notify,
    clients: Clients,
    /// Whether this broker may hand out and take acks now (controller mode: the master with
    /// a valid lease, or an in-sync slave cut off from its master); None: always.
    serving_gate: RwLock<Option<ServingGate>>,
}

/// Says whether deliveries may be handed out and acked now, or why not.
pub type ServingGate = Arc<dyn Fn() -> Result<(), ApogeeError> + Send + Sync>;

pub(super) fn internal(e: StoreError) -> ApogeeError {
    ApogeeError::internal(e)
}

impl ConsumeEngine {
    /// Loads the persisted consume state and the receipt-signing secret.
    pub fn open(store: Arc<MessageStore>) -> Result<Self, ApogeeError> {
        let kv = store.kv();
        let stored = kv.get(Cf::Meta, SECRET_KEY).map_err(internal)?;
        let secret = match stored.as_deref().and_then(decode_secret) {
            Some(s) => s,
            None => {
                let s: [u8; 32] = rand::random();
                let mut b = KvBatch::new();
                b.put(Cf::Meta, SECRET_KEY, encode_secret(&s));
                kv.write(b).map_err(internal)?;
                s
            }
        };
        let queues = load_rows(kv.as_ref(), b"", &[0xff]).map_err(internal)?;
        Ok(ConsumeEngine {
            store,
            kv,
            signer: RwLock::new(ReceiptSigner::new(secret)),
            queues: RwLock::new(
                queues
                    .into_iter()
                    .map(|(k, s)| (k, Arc::new(Mutex::new(s))))
                    .collect(),
            ),
            attempts: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            expired: Notify::new(),
            clients: Clients::default(),
            serving_gate: RwLock::new(None),
        })
    }

    /// Pops, acks and invisible-time changes are refused with `gate`'s error while it
    /// refuses (controller mode: `Membership::check_consumable`).
    pub fn set_serving_gate(&self, gate: ServingGate) {
        *self.serving_gate.write() = Some(gate);
    }

    pub(super) fn check_gate(&self) -> Result<(), ApogeeError> {
        match &*self.serving_gate.read() {
            Some(gate) => gate(),
            None => Ok(()),
        }
    }

    /// Woken by acks, nacks and dead letters.
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Which clients are alive (auto-renew deliveries are renewed for them only).
    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    /// Woken when deliveries that used up their attempts were seen.
    pub fn expired(&self) -> &Notify {
        &self.expired
    }

    pub(super) fn existing(&self, key: &QueueKey) -> Option<SharedQueue> {
        self.queues.read().get(key).cloned()
    }

    pub(super) fn queue(&self, key: &QueueKey, start: u64) -> SharedQueue {
        if let Some(q) = self.existing(key) {
            return q;
        }
        self.queues
            .write()
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Mutex::new(QueueState {
                    pop_offset: start,
                    ..Default::default()
                }))
            })
            .clone()
    }

    /// Queues matching `pred`, for scans that look at many.
    fn matching(&self, pred: impl Fn(&QueueKey) -> bool) -> Vec<(QueueKey, SharedQueue)> {
        self.queues
            .read()
            .iter()
            .filter(|(k, _)| pred(k))
            .map(|(k, q)| (k.clone(), q.clone()))
            .collect()
    }

    fn handle(&self, key: &QueueKey, offset: u64, nonce: u64) -> String {
        self.signer.read().encode(&Receipt {
            topic: key.topic.clone(),
            group: key.group.clone(),
            queue_id: key.queue_id,
            queue_offset: offset,
            nonce,
        })
    }

    pub(super) fn persist_queue(batch: &mut KvBatch, key: &QueueKey, state: &QueueState) {
        batch.put(
            Cf::ConsumeState,
            key.pop_key(),
            encode_offset(state.pop_offset),
        );
        batch.put(
            Cf::ConsumerOffset,
            key.prefix(),
            encode_offset(state.committed()),
        );
    }

    pub(super) fn remember(&self, req: &PopRequest<'_>, id: &str, out: &[Delivery], now_ms: i64) {
        let deliveries = out
            .iter()
            .filter_map(|d| {
                let r = self
                    .signer
                    .read()
                    .decode(&d.receipt_handle, &req.group.name)
                    .ok()?;
                Some((r.queue_id, r.queue_offset, r.nonce))
            })
            .collect();
        let mut attempts = self.attempts.lock();
        if attempts.len() >= MAX_ATTEMPT_IDS {
            attempts.retain(|_, r| now_ms - r.at_ms < ATTEMPT_ID_TTL_MS);
            if attempts.len() >= MAX_ATTEMPT_IDS {
                let oldest = attempts
                    .iter()
                    .min_by_key(|(_, r)| r.at_ms)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    attempts.remove(&k);
                }
            }
        }
        attempts.insert(
            (
                req.group.name.clone(),
                req.topic.to_string(),
                id.to_string(),
            ),
            RememberedReceive {
                at_ms: now_ms,
                deliveries,
            },
        );
    }

    /// The deliveries of an earlier receive with the same attempt id that
    /// are still in flight with the same nonce; None if there is no such receive.
    pub(super) fn repeat(
        &self,
        req: &PopRequest<'_>,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<Vec<Delivery>>, ApogeeError> {
        let remembered = {
            let attempts = self.attempts.lock();
            match attempts.get(&(
                req.group.name.clone(),
                req.topic.to_string(),
                id.to_string(),
            )) {
                Some(r) if now_ms - r.at_ms < ATTEMPT_ID_TTL_MS => r.deliveries.clone(),
                _ => return Ok(None),
            }
        };
        let mut out = Vec::new();
        for (queue_id, offset, nonce) in remembered {
            let key = QueueKey::new(&req.group.name, req.topic, queue_id);
            let Some(queue) = self.existing(&key) else {
                continue;
            };
            let f = match queue.lock().inflight.get(&offset) {
                Some(f) if f.nonce == nonce => *f,
                _ => continue,
            };
            if let Some(message) = self.read_one(req.topic, queue_id, offset)? {
                out.push(self.delivery(&key, message, f, req.invisible_ms));
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }

    pub(super) fn read_one(
        &self,
        topic: &str,
        queue_id: u32,
        offset: u64,
    ) -> Result<Option<StoredMessage>, ApogeeError> {
        let mut v = self
            .store
            .read_queue(topic, queue_id, offset, 1, usize::MAX)
            .map_err(internal)?;
        Ok(v.pop().filter(|m| m.queue_offset == offset))
    }

    pub(super) fn delivery(
        &self,
        key: &QueueKey,
        message: StoredMessage,
        f: Inflight,
        invisible_ms: i64,
    ) -> Delivery {
        Delivery {
            receipt_handle: self.handle(key, message.queue_offset, f.nonce),
            attempt: f.attempt + message.msg.reconsume_times,
            message,
            invisible_ms,
        }
    }

    /// Resolves a handle to its queue, refusing forged and foreign handles.
    fn resolve(
        &self,
        group: &str,
        topic: &str,
        handle: &str,
    ) -> Result<(QueueKey, Receipt, SharedQueue), ApogeeError> {
        let r = self.signer.read().decode(handle, group)?;
        if r.topic != topic {
            return Err(ApogeeError::InvalidReceiptHandle(format!(
                "receipt handle is for topic {:?}, not {topic:?}",
                r.topic
            )));
        }
        let key = QueueKey::new(&r.group, &r.topic, r.queue_id);
        let queue = self.existing(&key).ok_or_else(stale)?;
        Ok((key, r, queue))
    }

    /// Acknowledges one delivery.
    pub fn ack(&self, group: &str, topic: &str, handle: &str) -> Result<(), ApogeeError> {
        self.check_gate()?;
        let (key, r, queue) = self.resolve(group, topic, handle)?;
        let mut state = queue.lock();
        match state.inflight.get(&r.queue_offset) {
            Some(f) if f.nonce == r.nonce => {}
            _ => return Err(stale()),
        }
        state.inflight.remove(&r.queue_offset);
        state.owners.remove(&r.queue_offset);
        let mut batch = KvBatch::new();
        batch.delete(Cf::ConsumeState, key.inflight_key(r.queue_offset));
        Self::persist_queue(&mut batch, &key, &state);
        self.kv.write(batch).map_err(internal)?;
        drop(state);
        self.changed.notify_waiters();
        Ok(())
    }

    /// Sets a delivery's remaining invisible time (ends any auto-renewal);
    /// returns the new handle (the old one becomes stale).
    pub fn change_invisible(
        &self,
        group: &str,
        topic: &str,
        handle: &str,
        invisible_ms: i64,
        now_ms: i64,
    ) -> Result<String, ApogeeError> {
        self.change_invisible_with(group, topic, handle, invisible_ms, now_ms, false)
    }

    /// [`change_invisible`](Self::change_invisible); with `suspend` the next delivery of
    /// the message does not count an attempt (the consumer put it off, it did not fail).
    pub fn change_invisible_with(
        &self,
        group: &str,
        topic: &str,
        handle: &str,
        invisible_ms: i64,
        now_ms: i64,
        suspend: bool,
    ) -> Result<String, ApogeeError> {
        self.check_gate()?;
        let (key, r, queue) = self.resolve(group, topic, handle)?;
        let mut state = queue.lock();
        let f = match state.inflight.get_mut(&r.queue_offset) {
            Some(f) if f.nonce == r.nonce => f,
            _ => return Err(stale()),
        };
        f.visible_at_ms = now_ms + invisible_ms;
        f.renew_until_ms = if suspend { SUSPENDED } else { 0 };
        f.nonce = rand::random();
        let offset = r.queue_offset;
        let mut batch = KvBatch::new();
        batch.put(
            Cf::ConsumeState,
            key.inflight_key(r.queue_offset),
            f.encode(),
        );
        let nonce = f.nonce;
        state.owners.remove(&offset);
        self.kv.write(batch).map_err(internal)?;
        drop(state);
        self.changed.notify_waiters();
        Ok(self.handle(&key, r.queue_offset, nonce))
    }

    /// The delivery a valid handle names (for ForwardMessageToDeadLetterQueue).
    pub fn expired_by_handle(
        &self,
        group: &str,
        topic: &str,
        handle: &str,
    ) -> Result<Expired, ApogeeError> {
        let (key, r, queue) = self.resolve(group, topic, handle)?;
        let state = queue.lock();
        match state.inflight.get(&r.queue_offset) {
            Some(f) if f.nonce == r.nonce => Ok(Expired {
                queue_offset: r.queue_offset,
                attempt: f.attempt,
                nonce: f.nonce,
                key,
            }),
            _ => Err(stale()),
        }
    }

    /// Deliveries whose invisible time is over and that used up their
    /// group's attempts (`max_attempts` gives a group's maximum).
    pub fn expired_deliveries(
        &self,
        now_ms: i64,
        max_attempts: impl Fn(&str) -> u32,
    ) -> Vec<Expired> {
        let mut out = Vec::new();
        for (key, queue) in self.matching(|_| true) {
            let max = max_attempts(&key.group);
            let state = queue.lock();
            for (off, f) in &state.inflight {
                if f.visible_at_ms <= now_ms && f.attempt >= max && !f.is_suspended() {
                    out.push(Expired {
                        key: key.clone(),
                        queue_offset: *off,
                        attempt: f.attempt,
                        nonce: f.nonce,
                    });
                }
            }
        }
        out
    }

    /// Removes a delivery that was written to the dead-letter topic, if it
    /// is still the same delivery (an ack may have come in between).
    pub fn finish_dead_letter(&self, e: &Expired) -> Result<bool, ApogeeError> {
        let Some(queue) = self.existing(&e.key) else {
            return Ok(false);
        };
        let mut state = queue.lock();
        match state.inflight.get(&e.queue_offset) {
            Some(f) if f.nonce == e.nonce => {}
            _ => return Ok(false),
        }
        state.inflight.remove(&e.queue_offset);
        state.owners.remove(&e.queue_offset);
        let mut batch = KvBatch::new();
        batch.delete(Cf::ConsumeState, e.key.inflight_key(e.queue_offset));
        Self::persist_queue(&mut batch, &e.key, &state);
        self.kv.write(batch).map_err(internal)?;
        drop(state);
        self.changed.notify_waiters();
        Ok(true)
    }

    /// Pushes the invisible time of auto-renew deliveries that end within
    /// half a period to `now + period_ms` (never past their renewal limit);
    /// ends the renewal of deliveries whose client is gone, so they come
    /// back at the end of their current period.
    pub fn renew(&self, now_ms: i64, period_ms: i64) -> Result<usize, ApogeeError> {
        let mut renewed = 0;
        for (key, queue) in self.matching(|_| true) {
            let mut guard = queue.lock();
            let state = &mut *guard;
            let mut batch = KvBatch::new();
            for (off, f) in state.inflight.iter_mut() {
                if f.renew_until_ms <= now_ms {
                    continue;
                }
                let owner_gone = state
                    .owners
                    .get(off)
                    .is_some_and(|c| !self.clients.alive(c, now_ms));
                if owner_gone {
                    f.renew_until_ms = now_ms;
                    state.owners.remove(off);
                    batch.put(Cf::ConsumeState, key.inflight_key(*off), f.encode());
                    continue;
                }
                if f.visible_at_ms - now_ms > period_ms / 2 {
                    continue;
                }
                let next = (now_ms + period_ms).min(f.renew_until_ms);
                if next > f.visible_at_ms {
                    f.visible_at_ms = next;
                    batch.put(Cf::ConsumeState, key.inflight_key(*off), f.encode());
                    renewed += 1;
                }
            }
            if !batch.is_empty() {
                self.kv.write(batch).map_err(internal)?;
            }
        }
        Ok(renewed)
    }

    /// The earliest time a delivery of `group` on `topic` may be handed out
    /// again (long polling wakes up then); deliveries past their attempts are
    /// the dead-letter task's.
    pub fn next_redelivery_ms(&self, group: &GroupConfig, topic: &str) -> Option<i64> {
        self.matching(|k| k.group == group.name && k.topic == topic)
            .iter()
            .filter_map(|(_, q)| {
                q.lock()
                    .inflight
                    .values()
                    .filter(|f| f.attempt < group.max_delivery_attempts || f.is_suspended())
                    .map(|f| f.visible_at_ms)
                    .min()
            })
            .min()
    }

    /// Progress of every queue `group` has consumed from.
    pub fn group_progress(&self, group: &str) -> Vec<QueueProgress> {
        let mut out: Vec<QueueProgress> = self
            .progress_of(|k| k.group == group)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        out.sort_by(|a, b| (&a.topic, a.queue_id).cmp(&(&b.topic, b.queue_id)));
        out
    }

    /// The progress of every queue of every group, with its group (unordered; for metrics).
    pub fn all_progress(&self) -> Vec<(String, QueueProgress)> {
        self.progress_of(|_| true)
    }

    fn progress_of(&self, pred: impl Fn(&QueueKey) -> bool) -> Vec<(String, QueueProgress)> {
        self.matching(pred)
            .into_iter()
            .map(|(k, q)| {
                let s = q.lock();
                let progress = QueueProgress {
                    consumer_offset: s.committed(),
                    pop_offset: s.pop_offset,
                    inflight: s.inflight.len(),
                    last_consume_ms: s.last_consume_ms,
                    topic: k.topic,
                    queue_id: k.queue_id,
                };
                (k.group, progress)
            })
            .collect()
    }

    /// Delivery attempts so far of one message, per group that has it in flight.
    pub fn attempts_of(&self, topic: &str, queue_id: u32, queue_offset: u64) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = self
            .matching(|k| k.topic == topic && k.queue_id == queue_id)
            .into_iter()
            .filter_map(|(k, q)| {
                let f = q.lock().inflight.get(&queue_offset).copied()?;
                Some((k.group, f.attempt))
            })
            .collect();
        out.sort();
        out
    }

    /// Drops all consume state of a deleted topic.
    pub fn forget_topic(&self, topic: &str) -> Result<(), ApogeeError> {
        self.forget(|k| k.topic == topic)
    }

    /// Drops all consume state of a deleted group.
    pub fn forget_group(&self, group: &str) -> Result<(), ApogeeError> {
        self.forget(|k| k.group == group)?;
        // Also the offsets committed in queues this engine never loaded (offset-based
        // consumers: remoting pulls, UpdateOffset), so a group made again starts afresh.
        let (from, to) = crate::store::keys::group_offsets_range(group);
        let mut batch = KvBatch::new();
        batch.delete_range(Cf::ConsumerOffset, from, to);
        self.kv.write(batch).map_err(internal)
    }

    fn forget(&self, pred: impl Fn(&QueueKey) -> bool) -> Result<(), ApogeeError> {
        let mut queues = self.queues.write();
        let mut batch = KvBatch::new();
        queues.retain(|k, q| {
            if !pred(k) {
                return true;
            }
            batch.delete(Cf::ConsumeState, k.pop_key());
            batch.delete(Cf::ConsumerOffset, k.prefix());
            let state = q.lock();
            let waiting = state.waiting.values().flatten();
            for off in state.inflight.keys().chain(waiting) {
                batch.delete(Cf::ConsumeState, k.inflight_key(*off));
            }
            false
        });
        self.kv.write(batch).map_err(internal)
    }
}

fn stale() -> ApogeeError {
    ApogeeError::InvalidReceiptHandle(
        "receipt handle is stale: the message was already acknowledged or delivered again".into(),
    )
}
