//! The index entries of a record, and the dispatch batch.
//!
//! The index is derived from the commit log: the writer (and recovery) turns each record into
//! entries of one [`KvBatch`], together with the checkpoint "dispatched up to log offset X".
//! The keys are [`super::keys`]'s (its module doc has every column family's key and value
//! layout); this module owns the values of `ConsumeQueue`, `QueueHead`, `MessageId`,
//! `MessageKey` and `Checkpoint`.
//!
//! A queue's `QueueHead` row is written with its first record and whenever entries are
//! removed (retention, recovery's pruning), not with every group: its next offset is the
//! larger of the row and one past the queue's last `ConsumeQueue` entry ([`next_offset`]).
//! Writing it per group put one more key a message into RocksDB's memtable when sends spread
//! over thousands of queues. The row also lists the queues, so a queue emptied by retention
//! keeps its next offset.
//!
//! A message id may occur more than once (a resend keeps its id), hence the log offset in the
//! `MessageId` key; lookups take the newest entry whose record really carries that id.

use std::collections::HashMap;

use super::keys::{
    self, prefix_end, write_cq_key, write_id_key, write_msg_key, write_queue_key, V1,
};
// recovery.rs (the rebuild work's) takes these from here.
pub(crate) use super::keys::{
    decode_queue_key, queue_key, trailing_u64, CK_DISPATCHED, CK_FLUSHED,
};
use super::kv::{Cf, KvBatch, KvStore};
use super::record::NewMessage;
use super::StoreError;

/// One consume-queue entry: where a queue's message sits in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueEntry {
    pub queue_offset: u64,
    pub log_offset: u64,
    pub size: u32,
    /// [`tag_hash`] of the tag, 0 when the message has no tag.
    pub tag_hash: u64,
    pub store_timestamp_ms: i64,
}

/// FNV-1a 64 of the tag's bytes: stable across restarts and versions.
pub fn tag_hash(tag: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tag.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The next offset of the queue whose `QueueHead` key is `queue` and whose row says `floor`:
/// one past its last consume-queue entry when that is higher.
pub(crate) fn next_offset(kv: &dyn KvStore, queue: &[u8], floor: u64) -> Result<u64, StoreError> {
    let last = kv.last_in(Cf::ConsumeQueue, queue, &prefix_end(queue))?;
    Ok(match last.and_then(|(k, _)| trailing_u64(&k)) {
        Some(offset) => floor.max(offset + 1),
        None => floor,
    })
}

pub(crate) fn u64_value(v: &[u8]) -> Result<u64, StoreError> {
    keys::decode_u64(v).ok_or_else(|| {
        StoreError::Index(format!(
            "expected a version-1 u64 value (9 bytes), found {v:02x?}"
        ))
    })
}

/// A queue head's value (v1, next offset u64).
pub(crate) fn head_value(next_offset: u64) -> [u8; 9] {
    keys::encode_u64(next_offset)
}

/// A `MessageId` or `MessageKey` value: v1, the record's size u32.
fn size_value(size: u32) -> [u8; 5] {
    let mut v = [V1; 5];
    v[1..].copy_from_slice(&size.to_be_bytes());
    v
}

/// Reads a [`size_value`].
pub(crate) fn decode_size_value(v: &[u8]) -> Option<u32> {
    match v.split_first() {
        Some((&V1, n)) => Some(u32::from_be_bytes(n.try_into().ok()?)),
        _ => None,
    }
}

/// Length of a `ConsumeQueue` value: v1 and four fields.
const ENTRY_LEN: usize = 1 + 8 + 4 + 8 + 8;

impl QueueEntry {
    fn value(&self) -> [u8; ENTRY_LEN] {
        let mut v = [V1; ENTRY_LEN];
        v[1..9].copy_from_slice(&self.log_offset.to_be_bytes());
        v[9..13].copy_from_slice(&self.size.to_be_bytes());
        v[13..21].copy_from_slice(&self.tag_hash.to_be_bytes());
        v[21..].copy_from_slice(&self.store_timestamp_ms.to_be_bytes());
        v
    }

    /// Decodes a `ConsumeQueue` key and value.
    pub(crate) fn decode(key: &[u8], v: &[u8]) -> Result<Self, StoreError> {
        let bad = || {
            StoreError::Index(format!(
                "malformed consume-queue entry ({} byte value)",
                v.len()
            ))
        };
        let queue_offset = trailing_u64(key).ok_or_else(bad)?;
        if v.len() != ENTRY_LEN || v[0] != V1 {
            return Err(bad());
        }
        let be8 = |at: usize| -> [u8; 8] { keys::be_at(v, at).unwrap_or([0; 8]) };
        Ok(QueueEntry {
            queue_offset,
            log_offset: u64::from_be_bytes(be8(1)),
            size: u32::from_be_bytes(keys::be_at(v, 9).unwrap_or([0; 4])),
            tag_hash: u64::from_be_bytes(be8(13)),
            store_timestamp_ms: i64::from_be_bytes(be8(21)),
        })
    }
}

/// Adds the consume-queue, message-id and message-key entries of one record to `batch`.
/// Queue heads and the checkpoint are the caller's (one per batch, not per record).
pub fn dispatch(
    batch: &mut KvBatch,
    msg: &NewMessage,
    queue_offset: u64,
    log_offset: u64,
    size: u32,
    store_timestamp_ms: i64,
) {
    let entry = QueueEntry {
        queue_offset,
        log_offset,
        size,
        tag_hash: msg.tag.as_deref().map_or(0, tag_hash),
        store_timestamp_ms,
    };
    // Keys are written straight into the batch (no key built apart and copied in).
    batch.put_built(
        Cf::ConsumeQueue,
        |k| write_cq_key(k, &msg.topic, msg.queue_id, queue_offset),
        &entry.value(),
    );
    let size_v = size_value(size);
    if !msg.message_id.is_empty() {
        batch.put_built(
            Cf::MessageId,
            |k| write_id_key(k, &msg.message_id, log_offset),
            &size_v,
        );
    }
    for (i, key) in msg.keys.iter().enumerate() {
        if key.is_empty() || msg.keys[..i].contains(key) {
            continue;
        }
        batch.put_built(
            Cf::MessageKey,
            |k| write_msg_key(k, &msg.topic, key, log_offset),
            &size_v,
        );
    }
    if !msg.internal.is_empty() {
        super::txn_index::dispatch(batch, msg, log_offset, size, store_timestamp_ms);
        super::schedule_index::dispatch(batch, msg, log_offset, size, store_timestamp_ms);
    }
}

/// Next queue offset per topic and queue id.
pub(crate) type Heads = HashMap<String, HashMap<u32, u64>>;

/// Dispatches one stored record (read back from the log: recovery, or a slave's replicated
/// bytes) and moves its queue head when the record is past it. The one copy of this logic.
/// True when the record's queue is new (its head row goes into `batch`).
pub(crate) fn dispatch_stored(
    batch: &mut KvBatch,
    heads: &mut Heads,
    m: &super::record::StoredMessage,
) -> bool {
    dispatch(
        batch,
        &m.msg,
        m.queue_offset,
        m.log_offset,
        m.record_size,
        m.store_timestamp_ms,
    );
    let queues = heads.entry(m.msg.topic.clone()).or_default();
    match queues.get_mut(&m.msg.queue_id) {
        Some(head) => {
            *head = (*head).max(m.queue_offset + 1);
            false
        }
        None => {
            // A queue's first record writes its row (see the module doc).
            queues.insert(m.msg.queue_id, m.queue_offset + 1);
            put_head(batch, &m.msg.topic, m.msg.queue_id, m.queue_offset + 1);
            true
        }
    }
}

pub(crate) fn put_head(batch: &mut KvBatch, topic: &str, queue_id: u32, next_offset: u64) {
    batch.put_built(
        Cf::QueueHead,
        |k| write_queue_key(k, topic, queue_id),
        &head_value(next_offset),
    );
}

pub(crate) fn put_checkpoint(batch: &mut KvBatch, dispatched_to: u64) {
    batch.put(
        Cf::Checkpoint,
        CK_DISPATCHED,
        keys::encode_u64(dispatched_to),
    );
}

pub(crate) fn put_flushed(batch: &mut KvBatch, flushed_to: u64) {
    batch.put(Cf::Checkpoint, CK_FLUSHED, keys::encode_u64(flushed_to));
}

/// Records the flushed mark through RocksDB's WAL, on its own. It is not derived from what
/// the log holds: recovery reads it to tell damage from a torn tail, so a kill -9 must not
/// take it back to the last flush of the index as it takes the dispatch batches. Written
/// when it moved (by the writer with its next group, the async flusher, a slave's sync), not
/// with every group.
pub(crate) fn record_flushed(kv: &dyn KvStore, flushed_to: u64) -> Result<(), StoreError> {
    let mut batch = KvBatch::new();
    put_flushed(&mut batch, flushed_to);
    kv.write(batch)
}
