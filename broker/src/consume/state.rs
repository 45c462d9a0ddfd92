//! The consume state of every (consumer group, topic, queue) on this broker,
//! and the pop / ack / change-invisible-duration operations on it.
//!
//! In the index database (column family `ConsumeState`):
//! - `p` group 0 topic 0 queue(be32) -> next queue offset to hand out
//! - `i` group 0 topic 0 queue(be32) offset(be64) -> visible-at ms (be64),
//!   delivery attempt (be32), nonce (be64): one delivery in flight
//!
//! and in `ConsumerOffset`: group 0 topic 0 queue(be32) -> the committed
//! offset (everything below it is acknowledged), which offset queries and
//! lag read. A new group starts at the earliest offset still stored.

use super::filter::TagFilter;
use super::receipt::{Receipt, ReceiptSigner};
use crate::store::{Cf, KvBatch, KvStore, MessageStore, StoreError, StoredMessage};
use apogee_proto::ApogeeError;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const SECRET_KEY: &[u8] = b"consume/receipt_secret";

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct QueueKey {
    group: String,
    topic: String,
    queue_id: u32,
}

impl QueueKey {
    fn prefix(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.group.len() + self.topic.len() + 6);
        k.extend_from_slice(self.group.as_bytes());
        k.push(0);
        k.extend_from_slice(self.topic.as_bytes());
        k.push(0);
        k.extend_from_slice(&self.queue_id.to_be_bytes());
        k
    }

    fn pop_key(&self) -> Vec<u8> {
        let mut k = vec![b'p'];
        k.extend(self.prefix());
        k
    }

    fn inflight_key(&self, offset: u64) -> Vec<u8> {
        let mut k = vec![b'i'];
        k.extend(self.prefix());
        k.extend_from_slice(&offset.to_be_bytes());
        k
    }

    /// Parses `group 0 topic 0 queue(be32)` and returns the rest.
    fn parse(bytes: &[u8]) -> Option<(QueueKey, &[u8])> {
        let g = bytes.iter().position(|b| *b == 0)?;
        let rest = &bytes[g + 1..];
        let t = rest.iter().position(|b| *b == 0)?;
        let q = rest.get(t + 1..t + 5)?;
        Some((
            QueueKey {
                group: String::from_utf8(bytes[..g].to_vec()).ok()?,
                topic: String::from_utf8(rest[..t].to_vec()).ok()?,
                queue_id: u32::from_be_bytes(q.try_into().ok()?),
            },
            &rest[t + 5..],
        ))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Inflight {
    visible_at_ms: i64,
    attempt: u32,
    nonce: u64,
}

impl Inflight {
    fn encode(&self) -> [u8; 20] {
        let mut v = [0u8; 20];
        v[..8].copy_from_slice(&self.visible_at_ms.to_be_bytes());
        v[8..12].copy_from_slice(&self.attempt.to_be_bytes());
        v[12..].copy_from_slice(&self.nonce.to_be_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<Inflight> {
        Some(Inflight {
            visible_at_ms: i64::from_be_bytes(v.get(..8)?.try_into().ok()?),
            attempt: u32::from_be_bytes(v.get(8..12)?.try_into().ok()?),
            nonce: u64::from_be_bytes(v.get(12..20)?.try_into().ok()?),
        })
    }
}

#[derive(Debug, Default)]
struct QueueState {
    pop_offset: u64,
    inflight: BTreeMap<u64, Inflight>,
}

impl QueueState {
    fn committed(&self) -> u64 {
        self.inflight
            .keys()
            .next()
            .copied()
            .unwrap_or(self.pop_offset)
    }
}

/// What a consumer asks to pop.
#[derive(Clone, Copy, Debug)]
pub struct PopRequest<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    /// Queues to pop from, in this order.
    pub queue_ids: &'a [u32],
    pub filter: &'a TagFilter,
    pub max: usize,
    pub invisible_ms: i64,
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

pub struct ConsumeEngine {
    store: Arc<MessageStore>,
    kv: Arc<dyn KvStore>,
    signer: ReceiptSigner,
    queues: Mutex<HashMap<QueueKey, QueueState>>,
}

fn internal(e: StoreError) -> ApogeeError {
    ApogeeError::Internal(e.to_string())
}

impl ConsumeEngine {
    /// Loads the persisted consume state and the receipt-signing secret.
    pub fn open(store: Arc<MessageStore>) -> Result<Self, ApogeeError> {
        let kv = store.kv();
        let secret = match kv.get(Cf::Meta, SECRET_KEY).map_err(internal)? {
            Some(s) if s.len() == 32 => s.try_into().expect("32 bytes"),
            _ => {
                let s: [u8; 32] = rand::random();
                let mut b = KvBatch::new();
                b.put(Cf::Meta, SECRET_KEY, s);
                kv.write(b).map_err(internal)?;
                s
            }
        };
        let mut queues: HashMap<QueueKey, QueueState> = HashMap::new();
        for (key, value) in kv
            .scan(Cf::ConsumeState, b"", &[0xff], usize::MAX)
            .map_err(internal)?
        {
            let Some((&kind, rest)) = key.split_first() else {
                continue;
            };
            let Some((qk, tail)) = QueueKey::parse(rest) else {
                tracing::warn!("skipping unreadable consume-state key {key:?}");
                continue;
            };
            let state = queues.entry(qk).or_default();
            match kind {
                b'p' => {
                    if let Ok(v) = value.as_slice().try_into() {
                        state.pop_offset = u64::from_be_bytes(v);
                    }
                }
                b'i' => {
                    let (Ok(off), Some(inf)) = (
                        tail.try_into().map(u64::from_be_bytes),
                        Inflight::decode(&value),
                    ) else {
                        continue;
                    };
                    state.inflight.insert(off, inf);
                }
                _ => {}
            }
        }
        Ok(ConsumeEngine {
            store,
            kv,
            signer: ReceiptSigner::new(secret),
            queues: Mutex::new(queues),
        })
    }

    fn handle(&self, key: &QueueKey, offset: u64, nonce: u64) -> String {
        self.signer.encode(&Receipt {
            topic: key.topic.clone(),
            group: key.group.clone(),
            queue_id: key.queue_id,
            queue_offset: offset,
            nonce,
        })
    }

    fn persist_queue(batch: &mut KvBatch, key: &QueueKey, state: &QueueState) {
        batch.put(
            Cf::ConsumeState,
            key.pop_key(),
            state.pop_offset.to_be_bytes(),
        );
        batch.put(
            Cf::ConsumerOffset,
            key.prefix(),
            state.committed().to_be_bytes(),
        );
    }

    /// Hands out up to `max` messages of `topic` to `group` from the given
    /// queues, in that order: first deliveries whose invisible time is over
    /// (attempt + 1), then new messages matching `filter`.
    pub fn pop(&self, req: &PopRequest<'_>, now_ms: i64) -> Result<Vec<Delivery>, ApogeeError> {
        let PopRequest {
            group,
            topic,
            queue_ids,
            filter,
            max,
            invisible_ms,
        } = *req;
        let mut out = Vec::new();
        let mut batch = KvBatch::new();
        let mut queues = self.queues.lock();
        for &queue_id in queue_ids {
            if out.len() >= max {
                break;
            }
            let key = QueueKey {
                group: group.into(),
                topic: topic.into(),
                queue_id,
            };
            let (min, next) = self.store.queue_bounds(topic, queue_id).map_err(internal)?;
            let state = queues.entry(key.clone()).or_insert_with(|| QueueState {
                pop_offset: min,
                ..Default::default()
            });
            let before = (state.pop_offset, state.inflight.len());

            // Redeliveries first, oldest offset first.
            let due: Vec<u64> = state
                .inflight
                .iter()
                .filter(|(_, f)| f.visible_at_ms <= now_ms)
                .map(|(o, _)| *o)
                .take(max - out.len())
                .collect();
            for offset in due {
                let Some(message) = self.read_one(topic, queue_id, offset)? else {
                    // Gone from the store (retention): nothing to redeliver.
                    state.inflight.remove(&offset);
                    batch.delete(Cf::ConsumeState, key.inflight_key(offset));
                    continue;
                };
                let f = state.inflight.get_mut(&offset).expect("listed above");
                f.attempt += 1;
                f.nonce = rand::random();
                f.visible_at_ms = now_ms + invisible_ms;
                batch.put(Cf::ConsumeState, key.inflight_key(offset), f.encode());
                out.push(self.delivery(&key, message, *f, invisible_ms));
            }

            // New messages.
            if state.pop_offset < min {
                state.pop_offset = min;
            }
            while out.len() < max && state.pop_offset < next {
                let want = (max - out.len()).max(1);
                let entries = self
                    .store
                    .queue_entries(topic, queue_id, state.pop_offset, want.max(32))
                    .map_err(internal)?;
                if entries.is_empty() {
                    break;
                }
                for e in entries {
                    if out.len() >= max {
                        break;
                    }
                    state.pop_offset = e.queue_offset + 1;
                    if !filter.may_match_hash(e.tag_hash) {
                        continue;
                    }
                    let message = self.store.read_at(e.log_offset, e.size).map_err(internal)?;
                    if !filter.matches(message.msg.tag.as_deref()) {
                        continue;
                    }
                    let f = Inflight {
                        visible_at_ms: now_ms + invisible_ms,
                        attempt: 1,
                        nonce: rand::random(),
                    };
                    state.inflight.insert(e.queue_offset, f);
                    batch.put(
                        Cf::ConsumeState,
                        key.inflight_key(e.queue_offset),
                        f.encode(),
                    );
                    out.push(self.delivery(&key, message, f, invisible_ms));
                }
            }
            if before != (state.pop_offset, state.inflight.len()) || !batch.is_empty() {
                Self::persist_queue(&mut batch, &key, state);
            }
        }
        if !batch.is_empty() {
            self.kv.write(batch).map_err(internal)?;
        }
        Ok(out)
    }

    fn read_one(
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

    fn delivery(
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

    /// Resolves a handle to its queue and in-flight entry, refusing forged,
    /// foreign and stale handles.
    fn current<'a>(
        queues: &'a mut HashMap<QueueKey, QueueState>,
        signer: &ReceiptSigner,
        group: &str,
        topic: &str,
        handle: &str,
    ) -> Result<(QueueKey, Receipt, &'a mut QueueState), ApogeeError> {
        let r = signer.decode(handle, group)?;
        if r.topic != topic {
            return Err(ApogeeError::InvalidReceiptHandle(format!(
                "receipt handle is for topic {:?}, not {topic:?}",
                r.topic
            )));
        }
        let key = QueueKey {
            group: r.group.clone(),
            topic: r.topic.clone(),
            queue_id: r.queue_id,
        };
        let stale = || {
            ApogeeError::InvalidReceiptHandle(
                "receipt handle is stale: the message was already acknowledged or delivered again"
                    .into(),
            )
        };
        let state = queues.get_mut(&key).ok_or_else(stale)?;
        match state.inflight.get(&r.queue_offset) {
            Some(f) if f.nonce == r.nonce => Ok((key, r, state)),
            _ => Err(stale()),
        }
    }

    /// Acknowledges one delivery.
    pub fn ack(&self, group: &str, topic: &str, handle: &str) -> Result<(), ApogeeError> {
        let mut queues = self.queues.lock();
        let (key, r, state) = Self::current(&mut queues, &self.signer, group, topic, handle)?;
        state.inflight.remove(&r.queue_offset);
        let mut batch = KvBatch::new();
        batch.delete(Cf::ConsumeState, key.inflight_key(r.queue_offset));
        Self::persist_queue(&mut batch, &key, state);
        self.kv.write(batch).map_err(internal)
    }

    /// Sets a delivery's remaining invisible time; returns the new handle
    /// (the old one becomes stale).
    pub fn change_invisible(
        &self,
        group: &str,
        topic: &str,
        handle: &str,
        invisible_ms: i64,
        now_ms: i64,
    ) -> Result<String, ApogeeError> {
        let mut queues = self.queues.lock();
        let (key, r, state) = Self::current(&mut queues, &self.signer, group, topic, handle)?;
        let f = state
            .inflight
            .get_mut(&r.queue_offset)
            .expect("checked by current");
        f.visible_at_ms = now_ms + invisible_ms;
        f.nonce = rand::random();
        let mut batch = KvBatch::new();
        batch.put(
            Cf::ConsumeState,
            key.inflight_key(r.queue_offset),
            f.encode(),
        );
        let nonce = f.nonce;
        self.kv.write(batch).map_err(internal)?;
        Ok(self.handle(&key, r.queue_offset, nonce))
    }

    /// The earliest time an in-flight delivery of `group` on `topic`
    /// becomes visible again (long polling wakes up then).
    pub fn next_redelivery_ms(&self, group: &str, topic: &str) -> Option<i64> {
        let queues = self.queues.lock();
        queues
            .iter()
            .filter(|(k, _)| k.group == group && k.topic == topic)
            .flat_map(|(_, s)| s.inflight.values().map(|f| f.visible_at_ms))
            .min()
    }

    /// Drops all consume state of a deleted topic.
    pub fn forget_topic(&self, topic: &str) -> Result<(), ApogeeError> {
        let mut queues = self.queues.lock();
        let mut batch = KvBatch::new();
        queues.retain(|k, s| {
            if k.topic != topic {
                return true;
            }
            batch.delete(Cf::ConsumeState, k.pop_key());
            batch.delete(Cf::ConsumerOffset, k.prefix());
            for off in s.inflight.keys() {
                batch.delete(Cf::ConsumeState, k.inflight_key(*off));
            }
            false
        });
        self.kv.write(batch).map_err(internal)
    }
}

/// Key of a consumer offset in `Cf::ConsumerOffset` (shared with the
/// offset RPCs so both read and write the same entries).
pub fn consumer_offset_key(group: &str, topic: &str, queue_id: u32) -> Vec<u8> {
    QueueKey {
        group: group.into(),
        topic: topic.into(),
        queue_id,
    }
    .prefix()
}
