//! Offset-based consumption's stored state and queue lookups, one function each, shared by
//! both transports: a consumer group's committed offset per queue (gRPC UpdateOffset and
//! GetOffset, remoting's UPDATE_CONSUMER_OFFSET, QUERY_CONSUMER_OFFSET and a pull's commit
//! bit), the committed offsets of a group or of every group (the lag reads them,
//! `crate::consume::lag`), a queue checked against its topic, and a queue's offsets by
//! position or time (gRPC QueryOffset, remoting's GET_MIN_OFFSET, GET_MAX_OFFSET,
//! SEARCH_OFFSET_BY_TIMESTAMP and GET_EARLIEST_MSG_STORETIME).

use crate::store::keys::{consumer_offset_key, group_offsets_range, QueueKey};
use crate::store::values::{decode_offset, encode_offset};
use crate::store::{Cf, KvBatch, MessageStore};
use crate::topics::{TopicConfig, TopicTable};
use apogee_proto::{limits, ApogeeError};

/// `queue_id` of `topic` as a queue number, the topic existing and having that queue.
pub fn checked_queue(topics: &TopicTable, topic: &str, queue_id: i64) -> Result<u32, ApogeeError> {
    limits::validate_topic(topic)?;
    let config = topics
        .get_shared(topic)
        .ok_or_else(|| ApogeeError::TopicNotFound(topic.to_string()))?;
    queue_of_topic(&config, queue_id)
}

/// The queue `queue_id` of the topic `config`, refused when the topic has no such queue.
pub fn queue_of_topic(config: &TopicConfig, queue_id: i64) -> Result<u32, ApogeeError> {
    config.queue(queue_id).ok_or_else(|| {
        ApogeeError::BadRequest(format!(
            "queue {queue_id} does not exist; topic {} has {} queues",
            config.name, config.queues
        ))
    })
}

/// The oldest stored offset of a queue and the offset its next message will get.
pub fn queue_bounds(
    store: &MessageStore,
    topic: &str,
    queue: u32,
) -> Result<(u64, u64), ApogeeError> {
    store.queue_bounds(topic, queue).map_err(ApogeeError::from)
}

/// The offset `group` committed for a queue, raised to the oldest stored message (retention
/// deleted what it pointed at); `None` when it never committed one.
pub fn committed_offset(
    store: &MessageStore,
    group: &str,
    topic: &str,
    queue: u32,
) -> Result<Option<u64>, ApogeeError> {
    let stored = store
        .kv()
        .get(
            Cf::ConsumerOffset,
            &consumer_offset_key(group, topic, queue),
        )
        .map_err(ApogeeError::from)?;
    let Some(offset) = stored.and_then(|v| decode_offset(&v)) else {
        return Ok(None);
    };
    let (min, _) = queue_bounds(store, topic, queue)?;
    Ok(Some(offset.max(min)))
}

/// Every offset committed by `group`, or by every group with `None`, as stored (not raised
/// to the queue's oldest message): the queue (group, topic, queue id) and the offset, in key
/// order. The consume engine stores its groups' acknowledged offsets here too.
pub fn committed_offsets(
    store: &MessageStore,
    group: Option<&str>,
) -> Result<Vec<(QueueKey, u64)>, ApogeeError> {
    let (from, to) = group.map(group_offsets_range).unwrap_or_default();
    let rows = store
        .kv()
        .scan(Cf::ConsumerOffset, &from, &to, usize::MAX)
        .map_err(ApogeeError::from)?;
    Ok(rows
        .into_iter()
        .filter_map(|(key, value)| {
            let decoded = QueueKey::decode_offset_key(&key).zip(decode_offset(&value));
            if decoded.is_none() {
                tracing::warn!("skipping an unreadable committed offset (key {key:02x?})");
            }
            decoded
        })
        .collect())
}

/// Stores `offset` as `group`'s offset for a queue (0 up to the queue's end).
pub fn commit_offset(
    store: &MessageStore,
    group: &str,
    topic: &str,
    queue: u32,
    offset: i64,
) -> Result<(), ApogeeError> {
    let (_, next) = queue_bounds(store, topic, queue)?;
    if offset < 0 || offset as u64 > next {
        return Err(ApogeeError::IllegalOffset(format!(
            "offset {offset} is outside 0..={next}"
        )));
    }
    let mut b = KvBatch::new();
    b.put(
        Cf::ConsumerOffset,
        consumer_offset_key(group, topic, queue),
        encode_offset(offset as u64),
    );
    store.kv().write(b).map_err(ApogeeError::from)
}

/// The first offset of a queue whose store time is at or after `ts_ms` (the queue's end
/// when there is none).
pub fn offset_for_time(
    store: &MessageStore,
    topic: &str,
    queue: u32,
    ts_ms: i64,
) -> Result<u64, ApogeeError> {
    store
        .queue_offset_for_time(topic, queue, ts_ms)
        .map_err(ApogeeError::from)
}

/// The store time (unix ms) of a queue's oldest stored message; `None` for an empty queue.
pub fn earliest_store_time(
    store: &MessageStore,
    topic: &str,
    queue: u32,
) -> Result<Option<i64>, ApogeeError> {
    let (min, next) = queue_bounds(store, topic, queue)?;
    if min >= next {
        return Ok(None);
    }
    let entries = store
        .queue_entries(topic, queue, min, 1)
        .map_err(ApogeeError::from)?;
    Ok(entries.first().map(|e| e.store_timestamp_ms))
}
