//! Index key encodings and the dispatch batch.
//!
//! The index is derived from the commit log: the writer (and recovery) turns each record into
//! entries of one [`KvBatch`], together with the checkpoint "dispatched up to log offset X".
//! Integers are big-endian fixed-width so keys sort numerically; strings are prefixed by
//! their length as u16, so a topic is never a prefix of another topic's keys.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `ConsumeQueue` | topic, queue id u32, queue offset u64 | log offset u64, size u32, tag hash u64, store ts i64 |
//! | `QueueHead` | topic, queue id u32 | next queue offset u64, a floor (see below) |
//! | `MessageId` | message id, log offset u64 | size u32 |
//! | `MessageKey` | topic, key, log offset u64 | size u32 |
//! | `Checkpoint` | `store.dispatched` | log offset u64 up to which the index is complete |
//! | `Checkpoint` | `store.flushed` | log offset u64 known durable (may lag) |
//! | `Transaction` | see [`super::txn_index`] | |
//! | `Schedule` | see [`super::schedule_index`] | |
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

use super::kv::{prefix_end, Cf, KvBatch, KvStore};
use super::record::NewMessage;
use super::StoreError;

/// Checkpoint key: the index holds every record below this log offset.
pub(crate) const CK_DISPATCHED: &[u8] = b"store.dispatched";
/// Checkpoint key: the log was fdatasync'ed at least up to this offset (recorded lazily).
pub(crate) const CK_FLUSHED: &[u8] = b"store.flushed";

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

fn put_str16(k: &mut Vec<u8>, s: &str) {
    // Strings come from records, whose format already limits them to u16 lengths.
    let len = s.len().min(u16::MAX as usize);
    k.extend_from_slice(&(len as u16).to_be_bytes());
    k.extend_from_slice(&s.as_bytes()[..len]);
}

/// Prefix of every key of `topic` in `ConsumeQueue`, `QueueHead` and `MessageKey`.
pub fn topic_prefix(topic: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + topic.len() + 12);
    put_str16(&mut k, topic);
    k
}

fn write_queue_key(k: &mut Vec<u8>, topic: &str, queue_id: u32) {
    put_str16(k, topic);
    k.extend_from_slice(&queue_id.to_be_bytes());
}

/// Key of a queue in `QueueHead`, and prefix of its `ConsumeQueue` entries.
pub fn queue_key(topic: &str, queue_id: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + topic.len() + 12);
    write_queue_key(&mut k, topic, queue_id);
    k
}

fn write_cq_key(k: &mut Vec<u8>, topic: &str, queue_id: u32, queue_offset: u64) {
    write_queue_key(k, topic, queue_id);
    k.extend_from_slice(&queue_offset.to_be_bytes());
}

/// Key of one `ConsumeQueue` entry.
pub fn cq_key(topic: &str, queue_id: u32, queue_offset: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + topic.len() + 12);
    write_cq_key(&mut k, topic, queue_id, queue_offset);
    k
}

/// Prefix of a message id's entries in `MessageId`.
pub fn id_prefix(message_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + message_id.len() + 8);
    put_str16(&mut k, message_id);
    k
}

fn write_key_prefix(k: &mut Vec<u8>, topic: &str, key: &str) {
    put_str16(k, topic);
    put_str16(k, key);
}

/// Prefix of a (topic, key)'s entries in `MessageKey`.
pub fn key_prefix(topic: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + topic.len() + key.len() + 8);
    write_key_prefix(&mut k, topic, key);
    k
}

/// The big-endian u64 that ends `key` (queue offset or log offset).
pub(crate) fn trailing_u64(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// Decodes the (topic, queue id) of a `QueueHead` key.
pub(crate) fn decode_queue_key(key: &[u8]) -> Option<(String, u32)> {
    let len = u16::from_be_bytes(key.get(..2)?.try_into().ok()?) as usize;
    let topic = std::str::from_utf8(key.get(2..2 + len)?).ok()?.to_string();
    let qid: [u8; 4] = key.get(2 + len..)?.try_into().ok()?;
    Some((topic, u32::from_be_bytes(qid)))
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
    let a: [u8; 8] = v.try_into().map_err(|_| {
        StoreError::Index(format!("expected an 8-byte value, found {} bytes", v.len()))
    })?;
    Ok(u64::from_be_bytes(a))
}

impl QueueEntry {
    fn value(&self) -> [u8; 28] {
        let mut v = [0u8; 28];
        v[..8].copy_from_slice(&self.log_offset.to_be_bytes());
        v[8..12].copy_from_slice(&self.size.to_be_bytes());
        v[12..20].copy_from_slice(&self.tag_hash.to_be_bytes());
        v[20..].copy_from_slice(&self.store_timestamp_ms.to_be_bytes());
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
        if v.len() != 28 {
            return Err(bad());
        }
        let be8 = |r: std::ops::Range<usize>| -> [u8; 8] { v[r].try_into().unwrap_or([0; 8]) };
        Ok(QueueEntry {
            queue_offset,
            log_offset: u64::from_be_bytes(be8(0..8)),
            size: u32::from_be_bytes([v[8], v[9], v[10], v[11]]),
            tag_hash: u64::from_be_bytes(be8(12..20)),
            store_timestamp_ms: i64::from_be_bytes(be8(20..28)),
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
    let size_v = size.to_be_bytes();
    let log_offset_be = log_offset.to_be_bytes();
    if !msg.message_id.is_empty() {
        batch.put_built(
            Cf::MessageId,
            |k| {
                put_str16(k, &msg.message_id);
                k.extend_from_slice(&log_offset_be);
            },
            &size_v,
        );
    }
    for (i, key) in msg.keys.iter().enumerate() {
        if key.is_empty() || msg.keys[..i].contains(key) {
            continue;
        }
        batch.put_built(
            Cf::MessageKey,
            |k| {
                write_key_prefix(k, &msg.topic, key);
                k.extend_from_slice(&log_offset_be);
            },
            &size_v,
        );
    }
    if !msg.internal.is_empty() {
        super::txn_index::dispatch(batch, msg, log_offset, size, store_timestamp_ms);
        super::schedule_index::dispatch(batch, msg, log_offset, size, store_timestamp_ms);
    }
}

/// Dispatches one stored record (read back from the log: recovery, or a slave's replicated
/// bytes) and moves its queue head when the record is past it. The one copy of this logic.
pub(crate) fn dispatch_stored(
    batch: &mut KvBatch,
    heads: &mut super::writer::Heads,
    m: &super::record::StoredMessage,
) {
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
        Some(head) => *head = (*head).max(m.queue_offset + 1),
        None => {
            // A queue's first record writes its row (see the module doc).
            queues.insert(m.msg.queue_id, m.queue_offset + 1);
            put_head(batch, &m.msg.topic, m.msg.queue_id, m.queue_offset + 1);
        }
    }
}

pub(crate) fn put_head(batch: &mut KvBatch, topic: &str, queue_id: u32, next_offset: u64) {
    batch.put_built(
        Cf::QueueHead,
        |k| write_queue_key(k, topic, queue_id),
        &next_offset.to_be_bytes(),
    );
}

pub(crate) fn put_checkpoint(batch: &mut KvBatch, dispatched_to: u64) {
    batch.put(Cf::Checkpoint, CK_DISPATCHED, dispatched_to.to_be_bytes());
}

pub(crate) fn put_flushed(batch: &mut KvBatch, flushed_to: u64) {
    batch.put(Cf::Checkpoint, CK_FLUSHED, flushed_to.to_be_bytes());
}
