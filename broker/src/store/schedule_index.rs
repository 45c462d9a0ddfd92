//! Scheduled-delivery facts derived from the commit log, in the `Schedule` column family.
//!
//! As for transactions (`super::txn_index`), every step is a record (see `crate::schedule`)
//! and dispatch turns it into puts and deletes of this column family in the same index batch
//! as the record's other entries; nothing here is read while dispatching. Every record about a
//! scheduled message carries its id (the recall handle) and its due time, so the due entry can
//! be deleted without a read.
//!
//! Rows: a waiting message (`m`), its outcome (`o`) and the due index (`d`, earliest
//! first); keys and value layouts are in [`super::keys`], values are encoded here.
//!
//! A `d` entry exists exactly while its message waits: the delivery (the message published in
//! its real topic, carrying the id) and the recall and drop records delete it. So scanning `d`
//! up to now costs the number due, and listing waiting messages is a scan of `d`.

use super::keys::prefix_end;
use super::keys::{be_at, decode_due_key, due_from, due_key, id_row, tag};
use super::kv::{Cf, KvBatch, KvStore};
use super::record::{internal, NewMessage};
use super::txn_index::int_prop;
use super::StoreError;
use apogee_proto::names;

const VERSION: u8 = 1;

/// How a scheduled message's wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered = 1,
    Recalled = 2,
    /// Its topic was gone at its time.
    Dropped = 3,
}

/// The record kinds of schedule op records (in the schedule topic, with [`internal::SCHED_OP`]).
pub mod op {
    pub const RECALL: &str = "recall";
    pub const DROP: &str = "drop";
}

/// Where a waiting message sits in the log, and when it is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub log_offset: u64,
    pub size: u32,
    pub due_ms: i64,
    pub store_timestamp_ms: i64,
}

/// Everything the index knows of one scheduled message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    pub waiting: Waiting,
    pub outcome: Option<(Outcome, i64)>,
}

/// One entry of the due index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueEntry {
    pub due_ms: i64,
    pub id: String,
    pub topic: String,
}

fn put_outcome(batch: &mut KvBatch, msg: &NewMessage, id: &str, outcome: Outcome, at_ms: i64) {
    let mut v = vec![VERSION, outcome as u8];
    v.extend_from_slice(&at_ms.to_be_bytes());
    batch.put(Cf::Schedule, id_row(tag::OUTCOME, id), v);
    batch.delete(
        Cf::Schedule,
        due_key(int_prop(msg, internal::SCHED_DUE), id),
    );
}

/// Adds the schedule entries of one record, if it carries a schedule id.
pub(crate) fn dispatch(
    batch: &mut KvBatch,
    msg: &NewMessage,
    log_offset: u64,
    size: u32,
    store_timestamp_ms: i64,
) {
    let Some(id) = msg.internal(internal::SCHED_ID) else {
        return;
    };
    let due_ms = int_prop(msg, internal::SCHED_DUE);
    if msg.topic != names::SCHEDULE_TOPIC {
        // The published message carries its id: delivery and "done" are one record.
        put_outcome(batch, msg, id, Outcome::Delivered, store_timestamp_ms);
        return;
    }
    match msg.internal(internal::SCHED_OP) {
        None => {
            let mut v = vec![VERSION];
            v.extend_from_slice(&log_offset.to_be_bytes());
            v.extend_from_slice(&size.to_be_bytes());
            v.extend_from_slice(&due_ms.to_be_bytes());
            v.extend_from_slice(&store_timestamp_ms.to_be_bytes());
            batch.put(Cf::Schedule, id_row(tag::WAITING, id), v);
            let topic = msg.internal(internal::SCHED_TOPIC).unwrap_or_default();
            let mut due = Vec::with_capacity(1 + topic.len());
            due.push(VERSION);
            due.extend_from_slice(topic.as_bytes());
            batch.put(Cf::Schedule, due_key(due_ms, id), due);
        }
        Some(op::RECALL) => put_outcome(batch, msg, id, Outcome::Recalled, store_timestamp_ms),
        Some(op::DROP) => put_outcome(batch, msg, id, Outcome::Dropped, store_timestamp_ms),
        Some(other) => tracing::warn!(id, other, "unknown schedule op record ignored"),
    }
}

fn bad(what: &str, id: &str) -> StoreError {
    StoreError::Index(format!("malformed schedule {what} entry for {id}"))
}

/// The facts of scheduled message `id`, or None when no waiting message has that id.
pub fn load(kv: &dyn KvStore, id: &str) -> Result<Option<Facts>, StoreError> {
    let Some(m) = kv.get(Cf::Schedule, &id_row(tag::WAITING, id))? else {
        return Ok(None);
    };
    let waiting = (|| {
        (m.first() == Some(&VERSION)).then_some(())?;
        Some(Waiting {
            log_offset: u64::from_be_bytes(be_at(&m, 1)?),
            size: u32::from_be_bytes(be_at(&m, 9)?),
            due_ms: i64::from_be_bytes(be_at(&m, 13)?),
            store_timestamp_ms: i64::from_be_bytes(be_at(&m, 21)?),
        })
    })()
    .ok_or_else(|| bad("message", id))?;
    let outcome = match kv.get(Cf::Schedule, &id_row(tag::OUTCOME, id))? {
        None => None,
        Some(o) => Some(
            (|| {
                let kind = match (o.first()?, o.get(1)?) {
                    (&VERSION, 1) => Outcome::Delivered,
                    (&VERSION, 2) => Outcome::Recalled,
                    (&VERSION, 3) => Outcome::Dropped,
                    _ => return None,
                };
                Some((kind, i64::from_be_bytes(be_at(&o, 2)?)))
            })()
            .ok_or_else(|| bad("outcome", id))?,
        ),
    };
    Ok(Some(Facts { waiting, outcome }))
}

fn decode_due(k: &[u8], v: &[u8]) -> Option<DueEntry> {
    let (due_ms, id) = decode_due_key(k)?;
    let topic = v.strip_prefix(&[VERSION])?;
    Some(DueEntry {
        due_ms,
        id,
        topic: String::from_utf8(topic.to_vec()).ok()?,
    })
}

/// Waiting messages due in `[from_ms, to_ms)` (to_ms None: no bound), earliest first, at
/// most `max`; `topic` (when not empty) filters.
pub fn waiting(
    kv: &dyn KvStore,
    from_ms: i64,
    to_ms: Option<i64>,
    topic: &str,
    max: usize,
) -> Result<Vec<DueEntry>, StoreError> {
    let mut from = due_from(from_ms);
    let to = match to_ms {
        Some(t) => due_from(t),
        None => prefix_end(&[tag::DUE]),
    };
    let mut out = Vec::new();
    // Without a topic filter every row counts: read no more than asked for.
    let page = if topic.is_empty() {
        max.min(1024)
    } else {
        1024
    };
    while out.len() < max {
        let rows = kv.scan(Cf::Schedule, &from, &to, page)?;
        let Some((last, _)) = rows.last() else {
            break;
        };
        from = last.clone();
        from.push(0);
        for (k, v) in &rows {
            let entry = decode_due(k, v).ok_or_else(|| bad("due", "?"))?;
            if (topic.is_empty() || entry.topic == topic) && out.len() < max {
                out.push(entry);
            }
        }
    }
    Ok(out)
}

/// Up to `max` messages due in `[from_ms, now_ms]`, earliest first.
pub fn due(
    kv: &dyn KvStore,
    from_ms: i64,
    now_ms: i64,
    max: usize,
) -> Result<Vec<DueEntry>, StoreError> {
    waiting(kv, from_ms, Some(now_ms.saturating_add(1)), "", max)
}

/// When the earliest waiting message due at or after `from_ms` is due.
pub fn next_due(kv: &dyn KvStore, from_ms: i64) -> Result<Option<i64>, StoreError> {
    Ok(waiting(kv, from_ms, None, "", 1)?.first().map(|e| e.due_ms))
}

/// How many messages wait (a scan of the due index).
pub fn count_waiting(kv: &dyn KvStore) -> Result<u64, StoreError> {
    let (mut from, to) = super::keys::due_range();
    let mut n = 0u64;
    loop {
        let rows = kv.scan(Cf::Schedule, &from, &to, 4096)?;
        let Some((last, _)) = rows.last() else {
            return Ok(n);
        };
        n += rows.len() as u64;
        from = last.clone();
        from.push(0);
    }
}
