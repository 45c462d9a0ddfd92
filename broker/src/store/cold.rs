//! Segments held outside the local disk: the object-store tier (`crate::tier`) seen from the
//! store, which knows nothing of buckets.
//!
//! With a [`ColdSegments`] attached ([`MessageStore::attach_cold`]):
//!
//! - **Reads below the local log** (`CommitLog::read`, `read_bytes`) go to it, so every read
//!   path (receive, pull, by id or key, dead-letter resend, a slave catching up, a check
//!   of a record boundary) finds a record whether its segment is on local disk or only in
//!   the tier. A local read never asks it: only an offset below the first local segment
//!   does. [`ColdSegments::read_exact_at`] blocks its caller until the bytes are there.
//! - **The log starts at the cold run** ([`MessageStore::log_start_offset`]): the first offset
//!   of the contiguous run of held segments that ends where the local log begins. A new
//!   slave replicates from there (its master reads the run through this trait), so its
//!   index holds every message the master's does.
//! - **Retention evicts local copies** ([`LocalRetention`], `retention.rs`): a sealed segment
//!   the cold store holds loses its local file once it is older than the local age or the
//!   local log is over its byte budget, or the disk is over `store.disk_clean_ratio`; its
//!   index entries stay, so its messages stay readable at the same offsets. An eviction
//!   first flushes the index (`KvStore::flush`), so a crash never leaves index entries to
//!   re-dispatch from a segment no longer on disk.
//! - **A rebuilt index gets the cold records back** ([`MessageStore::dispatch_cold`]): a
//!   rebuild of the derived tables (a new index format, a lost `index/`, a slave's
//!   cut-back) re-dispatches the local log only and leaves a mark
//!   ([`MessageStore::cold_unindexed`]); the cold store's owner dispatches what it holds
//!   below the local log (the tier: from each segment's index object, else the segment)
//!   before the store serves, and clears the mark.
//! - **The cold store's retention ends messages** ([`ColdSegments::expired_upto`]): the
//!   store's age rule no longer deletes local segments (a segment not held yet waits for its
//!   upload; one held ends by the cold store's rule). When held segments expire, a pass
//!   prunes the index below their end, deletes any local copy left, and records the cut
//!   ([`MessageStore::cold_floor`]): the cold store may then delete them. The disk-space
//!   rule is unchanged.

use std::time::{Duration, SystemTime};

use std::collections::HashMap;

use super::keys::{self, CK_COLD_UNINDEXED};
use super::kv::{Cf, KvBatch};
use super::record::StoredMessage;
use super::{index, MessageStore, StoreError};

/// The data dir's directory a cold store may keep its read cache in (`foreign.rs` lets it
/// be): derived data, emptied at each start by its owner.
pub const COLD_CACHE_DIR: &str = "tier-cache";

/// Segments another store holds (the object-store tier), by log offset.
pub trait ColdSegments: Send + Sync + 'static {
    /// The held segment holding log offset `offset`, as (base, end).
    fn segment_of(&self, offset: u64) -> Option<(u64, u64)>;
    /// The first offset of the contiguous run of held segments ending at `local_start`;
    /// None when no held segment ends there.
    fn run_start(&self, local_start: u64) -> Option<u64>;
    /// Whether the segment `[base, end)` is held whole (its local copy may go).
    fn holds(&self, base: u64, end: u64) -> bool;
    /// Fills `buf` with the bytes at log offset `offset` of the held segment starting at
    /// `base` (the range lies inside it); blocks until they are here.
    fn read_exact_at(&self, base: u64, offset: u64, buf: &mut [u8]) -> Result<(), StoreError>;
    /// The end of the oldest held segments (from the first, without a gap) whose retention
    /// ran out by `now`; None when the first has not.
    fn expired_upto(&self, now: SystemTime) -> Option<u64>;
}

/// When retention evicts the local copy of a segment the cold store holds. Either limit
/// may be off; the disk-space rule (`store.disk_clean_ratio`) evicts whatever it needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalRetention {
    /// Held segments last written longer ago than this lose their local copy.
    pub max_age: Option<Duration>,
    /// The local log (every local segment) is kept at or below this many bytes by evicting
    /// held segments, oldest first.
    pub max_bytes: Option<u64>,
}

impl MessageStore {
    /// Whether the derived tables were rebuilt from the local log since a cold store last
    /// dispatched its records into them (module doc).
    pub fn cold_unindexed(&self) -> Result<bool, StoreError> {
        Ok(self
            .shared
            .kv
            .get(Cf::Checkpoint, CK_COLD_UNINDEXED)?
            .is_some())
    }

    /// Indexes records a cold store holds below the local log (their consume-queue entries,
    /// lookups and transaction and schedule rows, as a dispatch of the log writes them).
    /// `records` may lack their bodies; their sizes are the records' in the log. A queue
    /// known only from them gets its head row. Written without the WAL, as all dispatch;
    /// [`MessageStore::finish_cold_dispatch`] flushes and clears the mark.
    pub fn dispatch_cold(&self, records: &[StoredMessage]) -> Result<(), StoreError> {
        let kv = self.shared.kv.as_ref();
        let mut batch = KvBatch::new().unlogged();
        let mut heads: HashMap<(String, u32), Option<u64>> = HashMap::new();
        for m in records {
            index::dispatch(
                &mut batch,
                &m.msg,
                m.queue_offset,
                m.log_offset,
                m.record_size,
                m.store_timestamp_ms,
            );
            let queue = (m.msg.topic.clone(), m.msg.queue_id);
            let head = match heads.get(&queue) {
                Some(head) => *head,
                None => {
                    let row = kv.get(Cf::QueueHead, &keys::queue_key(&queue.0, queue.1))?;
                    let head = row.map(|r| index::u64_value(&r)).transpose()?;
                    heads.insert(queue.clone(), head);
                    head
                }
            };
            let next = m.queue_offset + 1;
            if head.is_none_or(|h| h < next) {
                index::put_head(&mut batch, &queue.0, queue.1, next);
                heads.insert(queue, Some(next));
            }
        }
        kv.write(batch)
    }

    /// Marks the derived tables as lacking the cold store's records, so its owner dispatches
    /// them before the store serves (a restore from the cold store, `crate::tier::restore`).
    pub fn mark_cold_unindexed(&self) -> Result<(), StoreError> {
        let mut batch = KvBatch::new();
        batch.put(Cf::Checkpoint, CK_COLD_UNINDEXED, [1u8]);
        self.shared.kv.write(batch)
    }

    /// Ends a cold dispatch: the index is flushed (what was dispatched survives a crash),
    /// then the mark is cleared.
    pub fn finish_cold_dispatch(&self) -> Result<(), StoreError> {
        let kv = self.shared.kv.as_ref();
        kv.flush()?;
        let mut batch = KvBatch::new();
        batch.delete(Cf::Checkpoint, CK_COLD_UNINDEXED);
        kv.write(batch)
    }
}
