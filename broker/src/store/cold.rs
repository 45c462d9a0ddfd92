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
//!   re-dispatch from a segment no longer on disk. Deleting messages for good (their index
//!   entries and the objects) stays the store's age rule.

use std::time::Duration;

use super::StoreError;

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
