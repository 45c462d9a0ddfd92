//! The index format: which encoding the derived column families hold, and their rebuild.
//!
//! The derived column families ([`Cf::DERIVED`]) are a function of the commit log. Their
//! encoding has a version, [`INDEX_FORMAT_VERSION`], kept in the `Checkpoint` column family
//! (itself derived) under [`CK_INDEX_FORMAT`]. At open, before recovery ([`plan`]):
//!
//! - a version newer than this binary's: refuse to open, naming both; nothing is written;
//! - the binary's version and no `--rebuild-index`: nothing to do;
//! - an older version, no version beside a non-empty log or derived table (a directory of the
//!   days before versions, or a lost index database), a rebuild that did not finish, or
//!   `--rebuild-index`: [`drop_derived`] empties every derived column family, and recovery
//!   re-dispatches the whole log into them; [`mark_complete`] writes the version only then.
//!
//! While the derived tables are being rebuilt, [`CK_INDEX_REBUILDING`] holds the version being
//! written, so a kill -9 in the middle leaves a marker the next open finds: it starts the
//! rebuild again, and reads the partial tables in that version's encoding.
//!
//! Two things in the derived tables are not in the log, and a rebuild carries them over in
//! the same atomic write that empties the tables:
//! - a queue's next offset once retention deleted every record of it (its `QueueHead` row
//!   keeps it, so the queue does not restart at 0 under its consumers' offsets);
//! - the flushed mark (`store.flushed`), which bounds how much of a torn tail recovery may cut.
//!
//! The rest of `Checkpoint` (the dispatched mark) and all of `Transaction` and `Schedule` are
//! records' facts (`txn_index.rs`, `schedule_index.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::index;
use super::keys::{CK_COLD_UNINDEXED, CK_FLUSHED, CK_INDEX_FORMAT, CK_INDEX_REBUILDING};
use super::kv::{Cf, KvBatch, KvStore};
use super::StoreError;

/// The encoding of the derived column families this binary writes. Raise it with every change
/// of a derived key or value layout (and teach [`queue_floors`] the old one's queue heads).
/// Format 0 is every directory written before the version existed.
pub(crate) const INDEX_FORMAT_VERSION: u32 = 1;

/// Why this open rebuilds the derived state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RebuildCause {
    /// The operator asked (`apogee-broker --rebuild-index`).
    Requested,
    /// The tables hold an older index format.
    OlderFormat(u32),
    /// No format recorded beside a non-empty log or derived table.
    NoFormat,
    /// A rebuild began and did not finish (the broker was killed during it).
    Interrupted,
    /// A slave cut its log back to its master's (`replica_log.rs`).
    CutBack,
}

impl std::fmt::Display for RebuildCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RebuildCause::Requested => write!(f, "requested by --rebuild-index"),
            RebuildCause::OlderFormat(v) => write!(
                f,
                "the index has format {v}, this binary writes {INDEX_FORMAT_VERSION}"
            ),
            RebuildCause::NoFormat => write!(
                f,
                "the index records no format (written before index formats, or lost)"
            ),
            RebuildCause::Interrupted => write!(f, "an earlier rebuild did not finish"),
            RebuildCause::CutBack => write!(f, "the log was cut back to the master's"),
        }
    }
}

/// A rebuild this open must do: why, and the encoding the derived tables hold now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RebuildPlan {
    pub cause: RebuildCause,
    /// The index format of what is in the derived tables (0: before formats).
    pub found: u32,
}

/// How far a rebuild is, shared with whoever reports it (`/readyz`). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct RebuildProgress(Arc<ProgressInner>);

#[derive(Debug, Default)]
struct ProgressInner {
    running: AtomicBool,
    done_bytes: AtomicU64,
    total_bytes: AtomicU64,
    cause: Mutex<Option<RebuildCause>>,
}

impl RebuildProgress {
    pub fn new() -> Self {
        Self::default()
    }

    /// While a rebuild runs: a line saying why and how far, e.g. for `/readyz`.
    pub fn status(&self) -> Option<String> {
        let p = &self.0;
        if !p.running.load(Ordering::Acquire) {
            return None;
        }
        let cause = p.cause.lock().as_ref().map(|c| c.to_string());
        Some(format!(
            "rebuilding the index from the commit log ({}): {}",
            cause.unwrap_or_default(),
            progress_text(
                p.done_bytes.load(Ordering::Relaxed),
                p.total_bytes.load(Ordering::Relaxed)
            )
        ))
    }

    pub(crate) fn start(&self, cause: &RebuildCause, total_bytes: u64) {
        *self.0.cause.lock() = Some(cause.clone());
        self.0.done_bytes.store(0, Ordering::Relaxed);
        self.0.total_bytes.store(total_bytes, Ordering::Relaxed);
        self.0.running.store(true, Ordering::Release);
    }

    pub(crate) fn advance(&self, done_bytes: u64) {
        self.0.done_bytes.store(done_bytes, Ordering::Relaxed);
    }

    pub(crate) fn finish(&self) {
        self.0.running.store(false, Ordering::Release);
    }
}

/// "`done` of `total` bytes (p%)".
pub(crate) fn progress_text(done: u64, total: u64) -> String {
    let pct = if total == 0 {
        100.0
    } else {
        done as f64 * 100.0 / total as f64
    };
    format!("{done} of {total} bytes of log ({pct:.1}%)")
}

fn u32_row(kv: &dyn KvStore, key: &[u8]) -> Result<Option<u32>, StoreError> {
    let Some(v) = kv.get(Cf::Checkpoint, key)? else {
        return Ok(None);
    };
    let a: [u8; 4] = v.as_slice().try_into().map_err(|_| {
        StoreError::Index(format!(
            "checkpoint {} holds {} bytes, expected a 4-byte version",
            String::from_utf8_lossy(key),
            v.len()
        ))
    })?;
    Ok(Some(u32::from_be_bytes(a)))
}

/// Refuses an index written by a newer binary (it reads only; call it before anything in the
/// data directory is written).
pub(crate) fn refuse_newer(kv: &dyn KvStore) -> Result<(), StoreError> {
    for key in [CK_INDEX_FORMAT, CK_INDEX_REBUILDING] {
        if let Some(found) = u32_row(kv, key)? {
            if found > INDEX_FORMAT_VERSION {
                return Err(StoreError::IndexFormatNewer {
                    found,
                    supported: INDEX_FORMAT_VERSION,
                });
            }
        }
    }
    Ok(())
}

/// Whether this open rebuilds the derived state (module doc). `log_has_records`: the commit
/// log holds at least one byte of records. A new, empty store gets the version row here.
pub(crate) fn plan(
    kv: &dyn KvStore,
    log_has_records: bool,
    requested: bool,
) -> Result<Option<RebuildPlan>, StoreError> {
    refuse_newer(kv)?;
    if let Some(found) = u32_row(kv, CK_INDEX_REBUILDING)? {
        return Ok(Some(RebuildPlan {
            cause: RebuildCause::Interrupted,
            found,
        }));
    }
    let cause = match u32_row(kv, CK_INDEX_FORMAT)? {
        Some(INDEX_FORMAT_VERSION) if requested => RebuildCause::Requested,
        Some(INDEX_FORMAT_VERSION) => return Ok(None),
        Some(older) => RebuildCause::OlderFormat(older),
        None if log_has_records || any_derived_rows(kv)? => RebuildCause::NoFormat,
        None => {
            // A new store: nothing to rebuild, and what it writes is this format.
            mark_complete(kv)?;
            return Ok(None);
        }
    };
    let found = u32_row(kv, CK_INDEX_FORMAT)?.unwrap_or(0);
    Ok(Some(RebuildPlan { cause, found }))
}

fn any_derived_rows(kv: &dyn KvStore) -> Result<bool, StoreError> {
    for cf in Cf::DERIVED {
        if !kv.scan(cf, b"", &[], 1)?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether the topic configs are gone (an index database lost or deleted beside its log):
/// the broker then recreates the topics the rebuild finds in the log.
pub(crate) fn topic_configs_lost(kv: &dyn KvStore) -> Result<bool, StoreError> {
    Ok(kv.scan(Cf::TopicConfig, b"", &[], 1)?.is_empty())
}

/// What [`drop_derived`] keeps of the derived tables.
pub(crate) enum Carry {
    /// Nothing (a slave's cut-back: the log lost records, so the marks are wrong).
    Nothing,
    /// Queue heads' next offsets and the flushed mark, the tables being in this index format.
    Marks { found: u32 },
}

/// Empties every derived column family in one atomic write that also records the rebuild as
/// begun and puts back what [`Carry`] says (module doc). `local_start`: where the local log
/// begins; above 0, records a cold store may hold below it are left for it to dispatch.
pub(crate) fn drop_derived(
    kv: &dyn KvStore,
    carry: Carry,
    local_start: u64,
) -> Result<(), StoreError> {
    let mut then = KvBatch::new();
    if let Carry::Marks { found } = carry {
        for (topic, queue_id, next) in queue_floors(kv, found)? {
            index::put_head(&mut then, &topic, queue_id, next);
        }
        // Read in the found format, written in the current one (index format 0 had no
        // version byte on it). Only a hint (it lets recovery cut a longer torn tail): an
        // unreadable one is dropped.
        if let Some(v) = kv.get(Cf::Checkpoint, CK_FLUSHED)? {
            let flushed = match found {
                0 => v0::u64_value(&v),
                _ => index::u64_value(&v).ok(),
            };
            if let Some(flushed) = flushed {
                index::put_flushed(&mut then, flushed);
            }
        }
    }
    then.put(
        Cf::Checkpoint,
        CK_INDEX_REBUILDING,
        INDEX_FORMAT_VERSION.to_be_bytes(),
    );
    // Recovery re-dispatches the local log; a cold store's records below it wait for
    // `MessageStore::dispatch_cold` (`cold.rs`).
    if local_start > 0 {
        then.put(Cf::Checkpoint, CK_COLD_UNINDEXED, [1u8]);
    }
    kv.clear(&Cf::DERIVED, then)
}

/// Records the derived tables as complete in this binary's format.
pub(crate) fn mark_complete(kv: &dyn KvStore) -> Result<(), StoreError> {
    let mut batch = KvBatch::new();
    batch.put(
        Cf::Checkpoint,
        CK_INDEX_FORMAT,
        INDEX_FORMAT_VERSION.to_be_bytes(),
    );
    batch.delete(Cf::Checkpoint, CK_INDEX_REBUILDING);
    kv.write(batch)
}

/// Rows per page when reading queue heads.
const PAGE: usize = 10_000;

/// Every queue's next offset (topic, queue id, next), read in index format `found`.
pub(crate) fn queue_floors(
    kv: &dyn KvStore,
    found: u32,
) -> Result<Vec<(String, u32, u64)>, StoreError> {
    if found != 0 && found != INDEX_FORMAT_VERSION {
        return Err(StoreError::Index(format!(
            "no reader for the queue heads of index format {found}"
        )));
    }
    let mut out = Vec::new();
    let mut unreadable = 0u64;
    let mut from = Vec::new();
    loop {
        let page = kv.scan(Cf::QueueHead, &from, &[], PAGE)?;
        for (k, v) in &page {
            let head = if found == 0 {
                v0::decode_queue_key(k).zip(v0::u64_value(v))
            } else {
                index::decode_queue_key(k).zip(index::u64_value(v).ok())
            };
            // A rebuild may be what repairs damaged derived state: a head it cannot read
            // costs only its floor (the queue's records in the log still give its offsets).
            let Some(((topic, queue_id), floor)) = head else {
                unreadable += 1;
                continue;
            };
            let next = if found == 0 {
                v0::next_offset(kv, k, floor)?
            } else {
                index::next_offset(kv, k, floor)?
            };
            out.push((topic, queue_id, next));
        }
        match page.last() {
            Some((k, _)) if page.len() == PAGE => {
                from = k.clone();
                from.push(0);
            }
            _ => break,
        }
    }
    if unreadable > 0 {
        tracing::warn!(
            unreadable,
            format = found,
            "queue heads unreadable in their index format were dropped: a queue whose records \
             are all gone from the log restarts at 0"
        );
    }
    Ok(out)
}

/// Index format 0 (every directory written before the format existed), frozen: what a
/// rebuild reads of it.
mod v0 {
    use super::super::keys::prefix_end;
    use super::super::kv::{Cf, KvStore};
    use super::super::StoreError;

    /// A `queue_head` key: topic as u16 length and bytes, queue id u32.
    pub(super) fn decode_queue_key(key: &[u8]) -> Option<(String, u32)> {
        let len = u16::from_be_bytes(key.get(..2)?.try_into().ok()?) as usize;
        let topic = std::str::from_utf8(key.get(2..2 + len)?).ok()?.to_string();
        let qid: [u8; 4] = key.get(2 + len..)?.try_into().ok()?;
        Some((topic, u32::from_be_bytes(qid)))
    }

    /// A `queue_head` value: the floor, u64, no version byte.
    pub(super) fn u64_value(v: &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(v.try_into().ok()?))
    }

    /// One past the queue's last `consume_queue` entry (its key: the queue-head key, then the
    /// queue offset u64), or `floor` when that is higher.
    pub(super) fn next_offset(
        kv: &dyn KvStore,
        queue: &[u8],
        floor: u64,
    ) -> Result<u64, StoreError> {
        let last = kv.last_in(Cf::ConsumeQueue, queue, &prefix_end(queue))?;
        let tail = last.and_then(|(k, _)| {
            let at = k.len().checked_sub(8)?;
            Some(u64::from_be_bytes(k[at..].try_into().ok()?))
        });
        Ok(tail.map_or(floor, |offset| floor.max(offset + 1)))
    }
}

/// Logs a rebuild's progress every [`LOG_EVERY`], and publishes it to a [`RebuildProgress`].
pub(crate) struct ProgressLog {
    progress: RebuildProgress,
    start: u64,
    total: u64,
    began: Instant,
    last_log: Instant,
}

/// How often a rebuild logs how far it is.
pub(crate) const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl ProgressLog {
    /// A rebuild of the log from `start` to `end`.
    pub(crate) fn begin(
        progress: RebuildProgress,
        cause: &RebuildCause,
        start: u64,
        end: u64,
    ) -> Self {
        let total = end.saturating_sub(start);
        progress.start(cause, total);
        tracing::warn!(
            cause = %cause,
            log_bytes = total,
            "rebuilding the index from the commit log (its derived state: consume queues, \
             queue heads, id and key lookups, transaction and schedule state)"
        );
        let now = Instant::now();
        Self {
            progress,
            start,
            total,
            began: now,
            last_log: now,
        }
    }

    /// The rebuild has dispatched the log up to `at`.
    pub(crate) fn at(&mut self, at: u64) {
        let done = at.saturating_sub(self.start).min(self.total);
        self.progress.advance(done);
        if self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            tracing::info!("rebuilding the index: {}", progress_text(done, self.total));
        }
    }

    /// The rebuild is complete (its version row written).
    pub(crate) fn end(self, records: u64) {
        self.progress.advance(self.total);
        self.progress.finish();
        tracing::info!(
            records,
            log_bytes = self.total,
            seconds = format!("{:.3}", self.began.elapsed().as_secs_f64()),
            "index rebuild complete"
        );
    }
}
