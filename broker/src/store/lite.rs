//! Lite queues in the store: the queues of RIP-83 lite topics.
//!
//! A lite topic's messages are records of the broker-internal topic
//! `%LITE%<parent>%<lite>` (`apogee_proto::names::lite_queue_topic`), queue 0, so the log,
//! the index, recovery, rebuilds, replication and retention handle them like any queue: no
//! column family, file or task per lite topic. A lite topic exists while its `queue_head`
//! row does (written with its first record, removed by a purge: the expiry of
//! `crate::lite_topics`).
//!
//! This module adds what lite topics need on top:
//! - [`LiteCounts`]: how many lite queues there are, per parent and in all (for the
//!   broker's lite-topic quota and the metrics), computed from the queue heads at open and
//!   kept up to date by the writer (a new lite queue's first record, a purge, a slave's
//!   replicated records, a cut-back's rebuild);
//! - lookups over the `queue_head` rows: [`MessageStore::lite_queue_exists`] (one point
//!   read), [`MessageStore::lite_queues`] (a page of one parent's lite queues) and
//!   [`MessageStore::lite_queue_info`].
//!
//! Lite queue names are length-prefixed keys (`keys.rs`), so one parent's lite queues sort by
//! the length of their lite name, then by name; a listing pages in that order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use apogee_proto::names;
use parking_lot::Mutex;

use super::index::Heads;
use super::index::{self, QueueEntry};
use super::keys;
use super::keys::prefix_end;
use super::kv::Cf;
use super::{MessageStore, StoreError};

/// The longest lite name a listing looks for: `lite.max_topic_len`'s upper bound (a name
/// longer than the configured limit at the time is never written).
pub const MAX_LITE_NAME_LEN: usize = 255;

/// One lite queue of a parent, as its index rows say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiteQueueInfo {
    /// The lite topic's name (without the parent).
    pub lite: String,
    /// The first queue offset still readable (== `next_offset` when none is).
    pub min_offset: u64,
    /// The queue offset its next message gets.
    pub next_offset: u64,
    /// Store time (Unix ms) of its newest message still indexed; `None` when retention
    /// removed all of them.
    pub last_store_ms: Option<i64>,
}

/// Lite queues per parent and in all, and how many were created since open.
#[derive(Default)]
pub(crate) struct LiteCounts {
    per_parent: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
    created: AtomicU64,
    removed: AtomicU64,
}

impl LiteCounts {
    /// Counts the lite queues among `heads` (at open, after a cut-back's rebuild).
    pub(crate) fn reset(&self, heads: &Heads) {
        let mut per_parent: HashMap<String, u64> = HashMap::new();
        let mut total = 0;
        for topic in heads.keys() {
            if let Some((parent, _)) = names::split_lite_queue_topic(topic) {
                *per_parent.entry(parent.to_string()).or_default() += 1;
                total += 1;
            }
        }
        let mut guard = self.per_parent.lock();
        *guard = per_parent;
        self.total.store(total, Ordering::SeqCst);
    }

    /// Notes a queue new to the store; nothing for a topic that is not a lite queue.
    pub(crate) fn queue_created(&self, topic: &str) {
        if let Some((parent, _)) = names::split_lite_queue_topic(topic) {
            *self
                .per_parent
                .lock()
                .entry(parent.to_string())
                .or_default() += 1;
            self.total.fetch_add(1, Ordering::SeqCst);
            self.created.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Notes a purged topic (`had_queue`: it had a queue head); nothing for other topics.
    pub(crate) fn topic_purged(&self, topic: &str, had_queue: bool) {
        let Some((parent, _)) = names::split_lite_queue_topic(topic) else {
            return;
        };
        if !had_queue {
            return;
        }
        let mut per_parent = self.per_parent.lock();
        if let Some(n) = per_parent.get_mut(parent) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_parent.remove(parent);
            }
        }
        self.removed.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .total
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(1))
            });
    }
}

impl MessageStore {
    /// Lite queues in the store, all parents together.
    pub fn lite_queue_count(&self) -> u64 {
        self.shared.lite.total.load(Ordering::SeqCst)
    }

    /// Lite queues per parent topic, sorted by parent (parents with none left out).
    pub fn lite_queue_counts(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .shared
            .lite
            .per_parent
            .lock()
            .iter()
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        out.sort();
        out
    }

    /// Lite queues created (first record stored) since the store opened.
    pub fn lite_queues_created(&self) -> u64 {
        self.shared.lite.created.load(Ordering::Relaxed)
    }

    /// Lite queues purged (expired) since the store opened.
    pub fn lite_queues_removed(&self) -> u64 {
        self.shared.lite.removed.load(Ordering::Relaxed)
    }

    /// Whether lite topic `lite` of `parent` exists (has a queue head): one point read.
    pub fn lite_queue_exists(&self, parent: &str, lite: &str) -> Result<bool, StoreError> {
        let key = keys::queue_key(&names::lite_queue_topic(parent, lite), 0);
        Ok(self.shared.kv.get(Cf::QueueHead, &key)?.is_some())
    }

    /// Up to `limit` lite queues of `parent`, in index order (shorter lite names first, then
    /// by name), starting after lite name `after` (the last one of the previous page).
    pub fn lite_queues(
        &self,
        parent: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<LiteQueueInfo>, StoreError> {
        let prefix = names::lite_queue_prefix(parent);
        let kv = self.shared.kv.as_ref();
        let mut out = Vec::new();
        let first_len = after.map_or(1, str::len);
        for len in first_len..=MAX_LITE_NAME_LEN {
            if out.len() >= limit {
                break;
            }
            let (mut from, to) = keys::lite_heads_of_len(&prefix, len);
            if let Some(after) = after.filter(|a| a.len() == len) {
                from = keys::queue_key(&names::lite_queue_topic(parent, after), 0);
                from.push(0);
            }
            for (k, v) in kv.scan(Cf::QueueHead, &from, &to, limit - out.len())? {
                let Some((topic, 0)) = keys::decode_queue_key(&k) else {
                    continue;
                };
                let Some((_, lite)) = names::split_lite_queue_topic(&topic) else {
                    continue;
                };
                out.push(self.lite_info_of_row(lite, &k, &v)?);
            }
        }
        Ok(out)
    }

    /// Expires lite topic `lite` of `parent` unless a message was stored in it at or after
    /// `idle_before_ms` (Unix ms): its consume-queue entries, key entries and queue head go,
    /// as in a topic purge, and a later send creates it anew from offset 0. Decided and done
    /// on the writer, between appends, so a message stored meanwhile keeps it. Answers
    /// whether it was dropped. The records stay in the log until their segment ages out,
    /// unreachable; unlike a topic's purge no purge mark is kept (lite topics come and go by
    /// the million), so a rebuild of the index from the log brings an expired lite topic
    /// back until the next expiry scan drops it again.
    pub fn expire_lite_queue(
        &self,
        parent: &str,
        lite: &str,
        idle_before_ms: i64,
    ) -> Result<bool, StoreError> {
        if self.is_replica() {
            return Err(StoreError::Replica(
                "only the master expires lite topics".into(),
            ));
        }
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        self.send_command(super::writer::Command::PurgeIdleLite {
            topic: names::lite_queue_topic(parent, lite),
            idle_before_ms,
            reply,
        })?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// One lite queue of `parent`, when it exists.
    pub fn lite_queue_info(
        &self,
        parent: &str,
        lite: &str,
    ) -> Result<Option<LiteQueueInfo>, StoreError> {
        let key = keys::queue_key(&names::lite_queue_topic(parent, lite), 0);
        match self.shared.kv.get(Cf::QueueHead, &key)? {
            Some(row) => Ok(Some(self.lite_info_of_row(lite, &key, &row)?)),
            None => Ok(None),
        }
    }

    /// A lite queue's info from its `queue_head` key and row.
    fn lite_info_of_row(
        &self,
        lite: &str,
        queue: &[u8],
        row: &[u8],
    ) -> Result<LiteQueueInfo, StoreError> {
        let kv = self.shared.kv.as_ref();
        let floor = index::u64_value(row)?;
        let end = prefix_end(queue);
        let last = kv.last_in(Cf::ConsumeQueue, queue, &end)?;
        let (next_offset, last_store_ms) = match &last {
            Some((k, v)) => {
                let e = QueueEntry::decode(k, v)?;
                (floor.max(e.queue_offset + 1), Some(e.store_timestamp_ms))
            }
            None => (floor, None),
        };
        let min_offset = match last {
            None => next_offset,
            Some(_) => kv
                .scan(Cf::ConsumeQueue, queue, &end, 1)?
                .first()
                .and_then(|(k, _)| keys::trailing_u64(k))
                .map_or(next_offset, |m| m.min(next_offset)),
        };
        Ok(LiteQueueInfo {
            lite: lite.to_string(),
            min_offset,
            next_offset,
            last_store_ms,
        })
    }
}
