//! Retention: deleting whole old segments, and refusing sends while the disk is nearly full.
//!
//! A background thread (`apogee-store-retention`) runs one pass every `check_interval`:
//!
//! 1. It measures the file system of the commit log (`statvfs`). At or above `refuse_ratio`
//!    the store refuses appends with [`StoreError::StorageFull`] (reads keep working); below
//!    it, appends are taken again without a restart.
//! 2. With a cold store attached (the object-store tier, `cold.rs`), it first evicts the
//!    local copies of the oldest sealed segments that store holds, by the local retention or
//!    the disk ratio, keeping their index entries ([`RetentionPass::evicted`]).
//! 3. It picks the oldest sealed segments (never the one being written) that are either
//!    older than `max_age` (by the file's modification time, the time of its last write, as
//!    RocketMQ's `fileReservedTime`) or, oldest first, as many as it takes to bring the disk
//!    below `clean_ratio`. With a cold store, age picks none: the cut starts at the end of
//!    the held segments whose cold retention ran out ([`super::ColdSegments::expired_upto`]),
//!    and the pass records it as the cold store's floor.
//! 4. It prunes the index entries that point into them: consume-queue entries (queue by
//!    queue, from the front), message-id and key lookups. A queue's first readable offset is
//!    its first remaining entry, so receives and pulls below it start there.
//! 5. The writer thread deletes the files (so deletion never races a roll or a cut-back).
//!
//! Pruning runs beside appends, which only add entries past a queue's end. Each queue's step
//! holds [`Shared::index_epoch`], the lock a topic purge and a slave's cut-back take, and a pass
//! during which a cut-back rebuilt the index deletes nothing (the next pass starts again).
//!
//! **Cost with many queues.** A broker with lite topics holds one queue per lite topic, up to
//! a million. The queue walk (step 4) only runs in a pass that has segments to delete (a pass
//! with none due reads no queue at all), and within it a queue costs one read, its first
//! consume-queue entry: a queue with no entry, or whose first entry lies at or past the cut
//! (`upto`, the start of the oldest remaining segment), has nothing below the cut (log offsets
//! grow with queue offsets) and is skipped without the lock. Only a queue with an entry below
//! the cut takes the lock and the full step (its head, its end, the first kept entry, the
//! delete), so the rest of the work is proportional to what goes. Every queue with an entry
//! below the cut is still visited, so once a pass completes no index entry points into a
//! deleted segment.
//!
//! **Stopping.** The queue walk and the lookup walks go by pages of [`PAGE`] rows, yield the
//! thread between pages, and ask the pass's stop check before each page: the retention
//! thread's stop (sent or dropped by [`MessageStore::shutdown`], before it waits for the
//! thread) ends a pass within one page, so a store close never waits for a full pass. A pass
//! stopped part way deletes no segment; what it pruned points below the cut, into segments the
//! next pass deletes (it prunes again from the first queue, skipping those already done).
//!
//! [`MessageStore::enforce_retention`] is one pass with the clock and the disk figures passed
//! in; the thread passes the real ones, tests inject theirs.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use super::index::{self, QueueEntry};
use super::keys::prefix_end;
use super::kv::{Cf, KvBatch, KvStore};
use super::write_queue::WriteQueue;
use super::writer::Command;
use super::{MessageStore, RetentionPolicy, Shared, StoreError};

/// Rows read per page while pruning (queue heads, lookups); the stop check runs between pages.
pub(super) const PAGE: usize = 10_000;

/// Space on the file system holding the commit log, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskSpace {
    /// Used by anyone (total minus free).
    pub used: u64,
    /// Free for an unprivileged writer.
    pub available: u64,
}

impl DiskSpace {
    /// Measures the file system holding `path`.
    pub fn of(path: &std::path::Path) -> std::io::Result<DiskSpace> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let frsize = st.f_frsize as u64;
        Ok(DiskSpace {
            used: (st.f_blocks as u64).saturating_sub(st.f_bfree as u64) * frsize,
            available: st.f_bavail as u64 * frsize,
        })
    }

    /// Used fraction as `df` shows it: used / (used + available).
    pub fn used_ratio(&self) -> f64 {
        Self::ratio(self.used, self.available)
    }

    fn ratio(used: u64, available: u64) -> f64 {
        let total = used.saturating_add(available);
        if total == 0 {
            return 0.0;
        }
        used as f64 / total as f64
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetentionPass {
    /// (base log offset, bytes) of each deleted segment, oldest first.
    pub deleted: Vec<(u64, u64)>,
    /// (base log offset, bytes) of each segment whose local copy went while a cold store
    /// holds it (`cold.rs`): its messages stay readable.
    pub evicted: Vec<(u64, u64)>,
    /// The first log offset still stored after the pass.
    pub log_start: u64,
    /// Whether sends are being refused.
    pub refusing: bool,
}

impl MessageStore {
    /// The retention policy in force.
    pub fn retention(&self) -> RetentionPolicy {
        self.shared.retention.lock().clone()
    }

    /// Changes the retention policy (the age and the ratios; the next pass uses it).
    pub fn set_retention(&self, policy: RetentionPolicy) -> Result<(), StoreError> {
        policy.validate()?;
        *self.shared.retention.lock() = policy;
        Ok(())
    }

    /// One retention pass as of `now` with the disk as `disk` describes.
    pub fn enforce_retention(
        &self,
        now: SystemTime,
        disk: DiskSpace,
    ) -> Result<RetentionPass, StoreError> {
        enforce(&self.shared, &self.writes, now, disk, &|| false)
    }
}

fn enforce(
    shared: &Shared,
    writes: &WriteQueue,
    now: SystemTime,
    disk: DiskSpace,
    stop: &dyn Fn() -> bool,
) -> Result<RetentionPass, StoreError> {
    let policy = shared.retention.lock().clone();
    let ratio = disk.used_ratio();
    let refusing = ratio >= policy.refuse_ratio;
    shared.set_storage_full(refusing.then(|| {
        format!(
            "the disk holding {} is {:.1}% full; sends are refused at {:.1}% and taken again \
                 below it (old segments are deleted above {:.1}%)",
            shared.log.dir().display(),
            ratio * 100.0,
            policy.refuse_ratio * 100.0,
            policy.clean_ratio * 100.0
        )
    }));
    let evicted = evict_local_copies(shared, writes, now, disk, policy.clean_ratio)?;
    let evicted_bytes: u64 = evicted.iter().map(|e| e.1).sum();
    let segments = shared.log.segments();
    let sealed = &segments[..segments.len().saturating_sub(1)];
    // Everything below the cut goes: index entries, local segments, and (through the cold
    // store's floor) tiered ones. A cold store's expired segments set it first.
    let cold = shared.log.cold();
    let mut upto = shared.log.first_offset();
    let tier_expired = match cold.as_ref().and_then(|c| c.expired_upto(now)) {
        Some(end) if end > upto => {
            upto = end;
            true
        }
        _ => false,
    };
    let (mut freed, mut by_age, mut by_disk) = (evicted_bytes, 0usize, 0usize);
    for seg in sealed {
        if seg.end() <= upto {
            // A local copy of an expired tiered segment.
            freed += seg.len();
            continue;
        }
        let age = seg
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        let disk_over = DiskSpace::ratio(disk.used.saturating_sub(freed), disk.available + freed)
            > policy.clean_ratio;
        // With a cold store, age ends only what it holds, by its own retention (above): a
        // segment it does not hold yet waits for it.
        if cold.is_none() && age >= policy.max_age {
            by_age += 1;
        } else if disk_over {
            by_disk += 1;
        } else {
            break;
        }
        upto = seg.end();
        freed += seg.len();
    }
    if by_age + by_disk == 0 && !tier_expired {
        return Ok(RetentionPass {
            deleted: Vec::new(),
            evicted,
            log_start: shared.log.start_offset(),
            refusing,
        });
    }
    let epoch = *shared.index_epoch.lock();
    let kv = shared.kv.as_ref();
    let pruned = match prune_below(kv, upto, &shared.index_epoch, epoch, PAGE, stop)? {
        Prune::Done(pruned) => pruned,
        stopped_or_rebuilt => {
            if stopped_or_rebuilt == Prune::Rebuilt {
                tracing::info!(
                    "the index was rebuilt during the retention pass; the next pass redoes it"
                );
            } else {
                tracing::info!("retention pass stopped before its end; it deleted nothing");
            }
            return Ok(RetentionPass {
                deleted: Vec::new(),
                evicted,
                log_start: shared.log.start_offset(),
                refusing,
            });
        }
    };
    let (reply, rx) = mpsc::sync_channel(1);
    writes.submit(Command::DeleteSegments { upto, epoch, reply })?;
    let deleted = rx.recv().map_err(|_| StoreError::Closed)??;
    if cold.is_some() {
        shared.log.set_cold_floor(upto);
    }
    let log_start = shared.log.start_offset();
    tracing::info!(
        cut = upto,
        tier_expired,
        segments = deleted.len(),
        bytes = deleted.iter().map(|d| d.1).sum::<u64>(),
        expired = by_age,
        for_disk_space = by_disk,
        disk_used_pct = format_args!("{:.1}", ratio * 100.0),
        queue_entries_pruned = pruned.queue_entries,
        lookups_pruned = pruned.lookups,
        log_start,
        "retention deleted old commit-log segments"
    );
    Ok(RetentionPass {
        deleted,
        evicted,
        log_start,
        refusing,
    })
}

/// Deletes the local files of the oldest sealed segments a cold store holds, while they are
/// older than the local age, the local log is over its byte budget, or the disk is over
/// `clean_ratio` (`cold.rs`). Their index entries stay: their messages are read from the
/// cold store at the same offsets. The index is flushed first, so no entry of theirs is
/// left for a crash's re-dispatch, which reads only local segments.
fn evict_local_copies(
    shared: &Shared,
    writes: &WriteQueue,
    now: SystemTime,
    disk: DiskSpace,
    clean_ratio: f64,
) -> Result<Vec<(u64, u64)>, StoreError> {
    let Some(cold) = shared.log.cold() else {
        return Ok(Vec::new());
    };
    let local = *shared.local_retention.lock();
    let segments = shared.log.segments();
    let mut local_bytes: u64 = segments.iter().map(|s| s.len()).sum();
    let sealed = &segments[..segments.len().saturating_sub(1)];
    let (mut upto, mut freed) = (None, 0u64);
    for seg in sealed {
        if !cold.holds(seg.base(), seg.end()) {
            break;
        }
        let age = seg
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        let too_old = local.max_age.is_some_and(|max| age >= max);
        let too_big = local.max_bytes.is_some_and(|max| local_bytes > max);
        let disk_over =
            DiskSpace::ratio(disk.used.saturating_sub(freed), disk.available + freed) > clean_ratio;
        if !(too_old || too_big || disk_over) {
            break;
        }
        upto = Some(seg.end());
        freed += seg.len();
        local_bytes -= seg.len();
    }
    let Some(upto) = upto else {
        return Ok(Vec::new());
    };
    shared.kv.flush()?;
    let epoch = *shared.index_epoch.lock();
    let (reply, rx) = mpsc::sync_channel(1);
    writes.submit(Command::DeleteSegments { upto, epoch, reply })?;
    let evicted = rx.recv().map_err(|_| StoreError::Closed)??;
    tracing::info!(
        segments = evicted.len(),
        bytes = evicted.iter().map(|d| d.1).sum::<u64>(),
        local_start = shared.log.start_offset(),
        "evicted the local copies of segments the tier holds; their messages stay readable"
    );
    Ok(evicted)
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Pruned {
    pub(super) queue_entries: u64,
    pub(super) lookups: u64,
    /// Queues that had entries below the cut (the others cost one read each).
    pub(super) queues: u64,
}

/// How a prune ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Prune {
    /// Every entry below the cut is gone.
    Done(Pruned),
    /// A cut-back rebuilt the index since the pass's epoch: delete nothing.
    Rebuilt,
    /// The stop check said stop between two pages: delete nothing.
    Stopped,
}

/// Removes index entries pointing below log offset `upto`, each queue's under `rewrites` (see
/// [`Shared::index_epoch`]), so that a topic purged and re-created meanwhile never loses its new
/// entries to a cut computed before. Reads `page` rows at a time and asks `stop` before each
/// page. A queue whose first entry is at or past `upto` costs one read.
pub(super) fn prune_below(
    kv: &dyn KvStore,
    upto: u64,
    rewrites: &Mutex<u64>,
    epoch: u64,
    page: usize,
    stop: &dyn Fn() -> bool,
) -> Result<Prune, StoreError> {
    let page = page.max(1);
    let mut pruned = Pruned::default();
    // Consume queues: log offsets grow with queue offsets, so each queue loses a prefix.
    let mut from = Vec::new();
    loop {
        if stop() {
            return Ok(Prune::Stopped);
        }
        let heads = kv.scan(Cf::QueueHead, &from, &[], page)?;
        for (queue, _) in &heads {
            if !has_entry_below(kv, queue, upto)? {
                continue;
            }
            pruned.queues += 1;
            let rewriting = rewrites.lock();
            if *rewriting != epoch {
                return Ok(Prune::Rebuilt);
            }
            // Read again under the lock: the queue may have been purged since the scan.
            let Some(row) = kv.get(Cf::QueueHead, queue)? else {
                continue;
            };
            let floor = index::u64_value(&row)?;
            let next = index::next_offset(kv, queue, floor)?;
            let kept = first_kept(kv, queue, upto)?;
            let cut = kept.unwrap_or(next);
            let mut first = queue.clone();
            first.extend_from_slice(&0u64.to_be_bytes());
            let mut end = queue.clone();
            end.extend_from_slice(&cut.to_be_bytes());
            let present = kv.scan(Cf::ConsumeQueue, &first, &end, 1)?;
            if let Some((k, _)) = present.first() {
                let low = super::keys::trailing_u64(k).unwrap_or(cut);
                pruned.queue_entries += cut.saturating_sub(low);
                let mut batch = KvBatch::new();
                batch.delete_range(Cf::ConsumeQueue, &first, &end);
                if kept.is_none() && next > floor {
                    // Every entry goes: the row alone keeps the queue's next offset.
                    batch.put(Cf::QueueHead, queue, index::head_value(next));
                }
                kv.write(batch)?;
            }
        }
        match heads.last() {
            Some((k, _)) if heads.len() == page => {
                from = k.clone();
                from.push(0);
                std::thread::yield_now();
            }
            _ => break,
        }
    }
    // Id and key lookups end with the log offset; they are spread over the key space. A stale
    // page only deletes lookups below `upto`, which nothing writes again but a cut-back (the
    // epoch check before the segments go covers that).
    for cf in [Cf::MessageId, Cf::MessageKey] {
        let mut from = Vec::new();
        loop {
            if stop() {
                return Ok(Prune::Stopped);
            }
            let rows = kv.scan(cf, &from, &[], page)?;
            let mut batch = KvBatch::new();
            for (k, _) in &rows {
                if super::keys::trailing_u64(k).is_some_and(|off| off < upto) {
                    batch.delete(cf, k);
                    pruned.lookups += 1;
                }
            }
            if !batch.is_empty() {
                kv.write(batch)?;
            }
            match rows.last() {
                Some((k, _)) if rows.len() == page => {
                    from = k.clone();
                    from.push(0);
                    std::thread::yield_now();
                }
                _ => break,
            }
        }
    }
    Ok(Prune::Done(pruned))
}

/// Whether `queue`'s first consume-queue entry points below `upto` (one read). Without the
/// lock: a queue skipped here has nothing to prune, and one that has is read again under it.
fn has_entry_below(kv: &dyn KvStore, queue: &[u8], upto: u64) -> Result<bool, StoreError> {
    let first = kv.scan(Cf::ConsumeQueue, queue, &prefix_end(queue), 1)?;
    match first.first() {
        Some((k, v)) => Ok(QueueEntry::decode(k, v)?.log_offset < upto),
        None => Ok(false),
    }
}

/// The first queue offset of `queue` whose record lies at or past `upto`.
fn first_kept(kv: &dyn KvStore, queue: &[u8], upto: u64) -> Result<Option<u64>, StoreError> {
    let end = prefix_end(queue);
    let mut from = queue.to_vec();
    loop {
        let page = kv.scan(Cf::ConsumeQueue, &from, &end, PAGE)?;
        for (k, v) in &page {
            let e = QueueEntry::decode(k, v)?;
            if e.log_offset >= upto {
                return Ok(Some(e.queue_offset));
            }
        }
        match page.last() {
            Some((k, _)) if page.len() == PAGE => {
                from = k.clone();
                from.push(0);
            }
            _ => return Ok(None),
        }
    }
}

/// The thread body: a pass every `check_interval` until `stop` fires or is dropped.
pub(crate) fn run_retention(
    shared: Arc<Shared>,
    writes: Arc<WriteQueue>,
    stop: mpsc::Receiver<()>,
) {
    let interval = shared.config.retention.check_interval;
    let mut last_error: Option<String> = None;
    // Set once the stop was sent or dropped (the store shutting down): no pass after it.
    let stopped = std::cell::Cell::new(false);
    let stopping = || {
        if !matches!(stop.try_recv(), Err(mpsc::TryRecvError::Empty)) {
            stopped.set(true);
        }
        stopped.get()
    };
    while !stopped.get() {
        if let Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) = stop.recv_timeout(interval) {
            break;
        }
        let result = DiskSpace::of(shared.log.dir())
            .map_err(StoreError::from)
            .and_then(|disk| enforce(&shared, &writes, SystemTime::now(), disk, &stopping));
        match result {
            Ok(_) => last_error = None,
            Err(e) => {
                let e = e.to_string();
                if last_error.as_ref() != Some(&e) {
                    tracing::error!(error = %e, "retention pass failed");
                }
                last_error = Some(e);
            }
        }
    }
}

impl Shared {
    /// Sets or clears the reason appends are refused for lack of space (logs changes).
    pub(crate) fn set_storage_full(&self, reason: Option<String>) {
        let mut full = self.storage_full.lock();
        match (&*full, &reason) {
            (None, Some(r)) => tracing::warn!("refusing sends: {r}"),
            (Some(_), None) => {
                tracing::info!("disk space is back below the limit; taking sends again")
            }
            _ => {}
        }
        *full = reason;
    }
}
