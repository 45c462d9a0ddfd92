//! The commit log: append-only segment files, the truth the index is derived from.
//!
//! Segments live under `data_dir/commitlog/`, each named by its base log offset as 20
//! zero-padded digits (`00000000000000000000`, ...). A record never spans two segments: the
//! writer rolls to a new segment when the next record would not fit in `segment_size`.
//! Segments are not padded, so the next segment's base is the previous base plus the previous
//! length, and log offsets are contiguous across segments. A segment is fdatasync'ed when it is
//! sealed by a roll, so only the last segment can hold unsynced bytes.
//!
//! **Preallocation.** The last segment's file is kept zero-filled a little ahead of its last
//! record ([`Preallocation`]): zeros are written, not `fallocate`d, so the blocks are
//! allocated and initialised and the file's size stays ahead of the records. An fdatasync
//! of bytes written inside the file then flushes only data: ext4 and XFS skip the journal
//! commit that a growing file (a new size, new or unwritten extents) needs on every sync,
//! which is what a SYNC_FLUSH send waits for. A roll cuts the zeros off the sealed segment,
//! so only the last segment can end in zeros; recovery takes an all-zero tail after the last
//! record as the end of the log (a record never starts with a zero length).
//!
//! **Page cache.** Only the newest `cached_tail` bytes of the log are left in the OS page
//! cache: each time a sync moves the flushed offset, the flushed bytes older than that are
//! dropped from it (`posix_fadvise(DONTNEED)`, in steps of at least [`MIN_DROP_STEP`]). The
//! page cache the broker fills stays bounded, and the kernel hands the pages it frees back
//! out for the next writes: warm pages, instead of fresh ones that, on a virtual machine whose
//! free memory is reported back to the host, each cost a host fault on first touch. Readers
//! further behind read from the disk (with the kernel's read-ahead). Flushed pages are clean,
//! so dropping them writes nothing; 0 leaves the page cache to the kernel.
//!
//! Reads use `pread` and need no lock besides a short one on the segment map. Only the writer
//! thread appends, rolls or truncates.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::cold::ColdSegments;
use super::record::{self, StoredMessage};
use super::segment_name::{parse_segment_name, segment_file_name};
use super::StoreError;

/// How far the last segment's file is kept zero-filled past its records (module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preallocation {
    /// Zeros kept ahead of the last record: when fewer than half remain, an append fills up
    /// to this many past its end again. 0 turns preallocation off.
    pub ahead: u64,
    /// A segment's file never grows past this by zeros alone (the segment size).
    pub limit: u64,
}

/// The page cache is trimmed in steps of at least this many bytes (module doc), and of at
/// most [`MAX_DROP_STEP`] (an eighth of the cached tail in between).
pub const MIN_DROP_STEP: u64 = 64 << 10;
const MAX_DROP_STEP: u64 = 4 << 20;
/// Each trimming starts this far before where the last one ended, so that a page or large
/// folio the last one covered only in part (and so kept) goes now.
pub const DROP_OVERLAP: u64 = 2 << 20;

/// Zeros written per `pwrite` while preallocating.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// One segment file.
pub struct Segment {
    base: u64,
    path: PathBuf,
    file: File,
    /// Bytes written (and visible to readers).
    len: AtomicU64,
    /// Bytes of the file known to exist (records, then zeros); at least `len`.
    filled: AtomicU64,
    prealloc: Preallocation,
}

impl Segment {
    fn open(path: PathBuf, base: u64, prealloc: Preallocation) -> Result<Self, StoreError> {
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let len = file.metadata()?.len();
        Ok(Segment {
            base,
            path,
            file,
            len: AtomicU64::new(len),
            filled: AtomicU64::new(len),
            prealloc,
        })
    }

    pub fn base(&self) -> u64 {
        self.base
    }
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Log offset just past the segment's last byte.
    pub fn end(&self) -> u64 {
        self.base + self.len()
    }
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads exactly `buf.len()` bytes at file position `pos`.
    pub(crate) fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> std::io::Result<()> {
        self.file.read_exact_at(buf, pos)
    }

    /// Appends `bytes` at the current end (only by the write queue's leader), then tops up
    /// the zeros ahead of it when fewer than half of [`Preallocation::ahead`] remain.
    pub(crate) fn append(&self, bytes: &[u8]) -> std::io::Result<()> {
        let len = self.len();
        let end = len + bytes.len() as u64;
        self.file.write_all_at(bytes, len)?;
        self.len.store(end, Ordering::Release);
        let mut filled = self.filled.load(Ordering::Relaxed).max(end);
        let Preallocation { ahead, limit } = self.prealloc;
        if ahead > 0 && end + ahead / 2 > filled && filled < limit {
            filled = self.fill_zeros(filled, (end + ahead).min(limit))?;
        }
        self.filled.store(filled, Ordering::Relaxed);
        Ok(())
    }

    /// Writes zeros over `[from, to)` of the file; returns where they end. Running out of
    /// space only stops the preallocation early (the records are written; the next record's
    /// own write reports a full disk); any other error is the caller's.
    fn fill_zeros(&self, from: u64, to: u64) -> std::io::Result<u64> {
        let mut pos = from;
        while pos < to {
            let n = (to - pos).min(ZEROS.len() as u64) as usize;
            match self.file.write_all_at(&ZEROS[..n], pos) {
                Ok(()) => pos += n as u64,
                Err(e) if is_out_of_space(&e) => {
                    tracing::debug!(segment = %self.path.display(), "no space to preallocate");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(pos)
    }

    /// Whether every byte of the file from position `pos` to its end is zero (the unused
    /// preallocated tail of the last segment).
    pub(crate) fn zeros_from(&self, pos: u64) -> std::io::Result<bool> {
        let file_len = self.file.metadata()?.len();
        let mut buf = vec![0u8; ZEROS.len()];
        let mut at = pos;
        while at < file_len {
            let n = (file_len - at).min(buf.len() as u64) as usize;
            self.file.read_exact_at(&mut buf[..n], at)?;
            if buf[..n] != ZEROS[..n] {
                return Ok(false);
            }
            at += n as u64;
        }
        Ok(true)
    }

    /// File position just past the last byte of the file that is not zero (0 when all are):
    /// where its data ends, the preallocated zeros after it left out. Reads backwards from
    /// the end, so only the zeros and the last non-zero chunk are read.
    pub(crate) fn data_end(&self) -> std::io::Result<u64> {
        let mut end = self.file.metadata()?.len();
        let mut buf = vec![0u8; ZEROS.len()];
        while end > 0 {
            let n = end.min(buf.len() as u64) as usize;
            let from = end - n as u64;
            self.file.read_exact_at(&mut buf[..n], from)?;
            if let Some(i) = buf[..n].iter().rposition(|&b| b != 0) {
                return Ok(from + i as u64 + 1);
            }
            end = from;
        }
        Ok(0)
    }

    /// Recovery found the records end at file position `len` with only zeros after it: the
    /// segment continues there, keeping the zeros as its preallocation.
    pub(crate) fn set_records_end(&self, len: u64) {
        self.len.store(len, Ordering::Release);
    }

    /// When the file was last written.
    pub fn modified(&self) -> std::io::Result<std::time::SystemTime> {
        self.file.metadata()?.modified()
    }

    pub(crate) fn sync_data(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Cuts the file to `len` bytes and syncs it (recovery only).
    pub(crate) fn truncate(&self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_all()?;
        self.len.store(len, Ordering::Release);
        self.filled.store(len, Ordering::Relaxed);
        Ok(())
    }

    /// Asks the kernel to drop the cached pages of file positions `[from, to)`, or from `from`
    /// to the end of the file when `to` is `None` (advice: a failure only leaves them cached).
    /// The kernel keeps a page (or a large folio) that the range covers only in part.
    fn drop_cached(&self, from: u64, to: Option<u64>) {
        use std::os::fd::AsRawFd;
        let len = to.map_or(0, |to| to.saturating_sub(from)); // 0: to the end of the file
        let (Ok(start), Ok(len)) = (i64::try_from(from), i64::try_from(len)) else {
            return;
        };
        // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is ours and
        // open for as long as `self` lives.
        let rc = unsafe {
            libc::posix_fadvise(self.file.as_raw_fd(), start, len, libc::POSIX_FADV_DONTNEED)
        };
        if rc != 0 {
            tracing::debug!(segment = %self.path.display(), errno = rc, "posix_fadvise failed");
        }
    }

    /// Makes the segment's records durable and its file exactly their length (a roll seals
    /// the last segment before the next one exists, so only the last can end in zeros).
    fn seal(&self) -> std::io::Result<()> {
        let len = self.len();
        if self.file.metadata()?.len() != len {
            self.truncate(len)
        } else {
            self.file.sync_data()
        }
    }
}

/// The segments of the log plus its end and flushed offsets.
pub struct CommitLog {
    dir: PathBuf,
    segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    end: AtomicU64,
    flushed: AtomicU64,
    /// fdatasyncs of the log by the writer, the sync thread and the flusher (group commit
    /// shows as far fewer syncs than appends).
    syncs: AtomicU64,
    prealloc: Preallocation,
    /// Flushed bytes older than the newest this-many are dropped from the page cache (0: off).
    cached_tail: u64,
    /// Log offset below which the page cache has been trimmed; the lock keeps two syncing
    /// threads from trimming at once (the second skips its turn).
    uncached_to: Mutex<u64>,
    /// Held by [`sync_to_end`](Self::sync_to_end) from reading the end to moving the flushed
    /// offset, and by [`discard_from`](Self::discard_from) and [`cut_back`](Self::cut_back):
    /// a sync cannot mark flushed an end that was cut back meanwhile.
    sync_lock: Mutex<()>,
    /// Segments held elsewhere (the object-store tier), read below the first local segment.
    cold: RwLock<Option<Arc<dyn ColdSegments>>>,
    /// The cold store's retention cut: nothing below it is readable (`cold.rs`).
    cold_floor: AtomicU64,
    /// Tests: runs between a sync's fdatasync and its move of the flushed offset.
    #[cfg(test)]
    pub(crate) before_mark: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl CommitLog {
    /// Prepares the empty data dir `data_dir` for a store whose log starts at `start` (its
    /// first segment, empty): what a restore from the cold store does before the store's
    /// first open (`crate::tier::restore`), so the records it writes follow the held ones at
    /// their offsets. Refuses a data dir whose log already exists.
    pub fn create_starting_at(data_dir: &Path, start: u64) -> Result<(), StoreError> {
        let dir = data_dir.join(super::foreign::COMMITLOG_DIR);
        if dir.exists() {
            return Err(StoreError::Failed(format!(
                "{} exists: a log starting at {start} is created only in an empty data dir",
                dir.display()
            )));
        }
        Self::create_empty(&dir, start)
    }

    /// Creates `dir` holding one empty segment at `base`: a log that starts there.
    fn create_empty(dir: &Path, base: u64) -> Result<(), StoreError> {
        std::fs::create_dir_all(dir)?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join(segment_file_name(base)))?;
        sync_dir(dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }

    /// Opens the segments in `dir` (creating the directory and a first empty segment if needed)
    /// and checks that sealed segments are contiguous. A segment of another format
    /// (`foreign.rs`) is refused before anything is created or changed; files that are not
    /// segments are ignored. Content is validated by recovery, which also finds where the
    /// records of the last segment end.
    pub fn open(dir: &Path, prealloc: Preallocation, cached_tail: u64) -> Result<Self, StoreError> {
        super::foreign::check_commitlog_dir(dir)?;
        std::fs::create_dir_all(dir)?;
        let mut segments = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(base) = name.to_str().and_then(parse_segment_name) else {
                tracing::warn!(file = ?entry.path(), "ignoring a file that is not a commit-log segment");
                continue;
            };
            segments.insert(base, Arc::new(Segment::open(entry.path(), base, prealloc)?));
        }
        if segments.is_empty() {
            let path = dir.join(segment_file_name(0));
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            sync_dir(dir)?;
            segments.insert(0, Arc::new(Segment::open(path, 0, prealloc)?));
        }
        let mut prev: Option<&Arc<Segment>> = None;
        for seg in segments.values() {
            if let Some(p) = prev {
                if p.end() != seg.base() {
                    return Err(StoreError::Corrupt {
                        offset: p.end().min(seg.base()),
                        reason: format!(
                            "segment {} ends at log offset {} but the next segment starts at {} \
                             (a segment is missing, truncated or too long)",
                            p.path().display(),
                            p.end(),
                            seg.base()
                        ),
                    });
                }
            }
            prev = Some(seg);
        }
        let end = prev.map_or(0, |s| s.end());
        Ok(CommitLog {
            dir: dir.to_path_buf(),
            segments: RwLock::new(segments),
            end: AtomicU64::new(end),
            flushed: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            prealloc,
            cached_tail,
            uncached_to: Mutex::new(0),
            sync_lock: Mutex::new(()),
            cold: RwLock::new(None),
            cold_floor: AtomicU64::new(0),
            #[cfg(test)]
            before_mark: Mutex::new(None),
        })
    }

    /// First log offset present on local disk.
    pub fn start_offset(&self) -> u64 {
        self.segments.read().values().next().map_or(0, |s| s.base())
    }

    /// First log offset readable: the start of the cold run ending at the local start, else
    /// the local start (`cold.rs`).
    pub fn first_offset(&self) -> u64 {
        let local = self.start_offset();
        self.cold()
            .and_then(|c| c.run_start(local))
            .map_or(local, |start| start.max(self.cold_floor()).min(local))
    }

    /// The cold store's retention cut (0: none yet).
    pub fn cold_floor(&self) -> u64 {
        self.cold_floor.load(Ordering::Acquire)
    }

    pub(crate) fn set_cold_floor(&self, upto: u64) {
        self.cold_floor.fetch_max(upto, Ordering::AcqRel);
    }

    /// Reads below the first local segment go to `cold` from now on.
    pub(crate) fn attach_cold(&self, cold: Arc<dyn ColdSegments>) {
        *self.cold.write() = Some(cold);
    }

    pub(crate) fn cold(&self) -> Option<Arc<dyn ColdSegments>> {
        self.cold.read().clone()
    }

    /// The held segment, as (base, end), that holds `offset` when it lies below the first
    /// local segment (None otherwise, or when no cold store holds it).
    fn cold_segment(&self, offset: u64) -> Option<(Arc<dyn ColdSegments>, u64, u64)> {
        if offset >= self.start_offset() {
            return None;
        }
        let cold = self.cold()?;
        let (base, end) = cold.segment_of(offset)?;
        Some((cold, base, end))
    }

    /// The base of the segment (local or cold) holding `offset`.
    pub(crate) fn segment_base(&self, offset: u64) -> u64 {
        if let Some((_, base, _)) = self.cold_segment(offset) {
            return base;
        }
        self.segments
            .read()
            .range(..=offset)
            .next_back()
            .map_or(0, |(b, _)| *b)
    }
    /// Log offset just past the last written record.
    pub fn end_offset(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }
    /// Everything below this offset is known to be on stable storage.
    pub fn flushed_offset(&self) -> u64 {
        self.flushed.load(Ordering::Acquire)
    }

    pub(crate) fn set_end(&self, end: u64) {
        self.end.store(end, Ordering::Release);
    }
    /// fdatasyncs since open.
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// fdatasyncs the last segment (the only one that can hold unsynced bytes).
    pub(crate) fn sync_last(&self) -> Result<(), StoreError> {
        self.last_segment()?.sync_data()?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// fdatasyncs the log if anything was written since the last sync and moves the flushed
    /// offset (in memory); returns the new flushed offset.
    pub(crate) fn sync_to_end(&self) -> Result<Option<u64>, StoreError> {
        let _sync = self.sync_lock.lock();
        // Read the end first: bytes below it are in the last segment or in sealed (synced) ones.
        let end = self.end_offset();
        if end <= self.flushed_offset() {
            return Ok(None);
        }
        self.sync_last()?;
        #[cfg(test)]
        {
            let hook = self.before_mark.lock().clone();
            if let Some(hook) = hook {
                hook();
            }
        }
        self.mark_flushed(end);
        Ok(Some(end))
    }

    /// Moves the flushed offset (after an fdatasync that covers `offset`) and trims the page
    /// cache behind it.
    pub(crate) fn mark_flushed(&self, offset: u64) {
        self.flushed.fetch_max(offset, Ordering::AcqRel);
        self.drop_cached_behind(offset);
    }

    /// Drops the flushed bytes older than the newest `cached_tail` from the page cache (module
    /// doc), once at least a step of them has gathered.
    fn drop_cached_behind(&self, flushed: u64) {
        if self.cached_tail == 0 {
            return;
        }
        let to = flushed.saturating_sub(self.cached_tail);
        let step = (self.cached_tail / 8).clamp(MIN_DROP_STEP, MAX_DROP_STEP);
        let Some(mut uncached_to) = self.uncached_to.try_lock() else {
            return;
        };
        let from = *uncached_to;
        if to < from.saturating_add(step) {
            return;
        }
        // Start a little before the last trimming ended (pages it covered only in part).
        let start = from.saturating_sub(DROP_OVERLAP);
        let segments: Vec<Arc<Segment>> = self
            .segments
            .read()
            .range(..to)
            .rev()
            .map(|(_, s)| s)
            .take_while(|s| s.end() > start)
            .cloned()
            .collect();
        for seg in segments {
            let base = seg.base();
            // A segment wholly behind goes to its end, its last partial page included.
            let until = (to < seg.end()).then(|| to - base);
            seg.drop_cached(start.max(base) - base, until);
        }
        *uncached_to = to;
    }

    /// All segments, oldest first.
    pub fn segments(&self) -> Vec<Arc<Segment>> {
        self.segments.read().values().cloned().collect()
    }

    /// The segment being appended to.
    pub(crate) fn last_segment(&self) -> Result<Arc<Segment>, StoreError> {
        self.segments
            .read()
            .values()
            .next_back()
            .cloned()
            .ok_or_else(|| StoreError::Corrupt {
                offset: 0,
                reason: "the commit log has no segment".into(),
            })
    }

    fn segment_for(&self, offset: u64) -> Result<Arc<Segment>, StoreError> {
        let segs = self.segments.read();
        let out_of_range = || StoreError::OffsetOutOfRange {
            offset,
            start: segs.values().next().map_or(0, |s| s.base()),
            end: self.end_offset(),
        };
        let seg = segs
            .range(..=offset)
            .next_back()
            .map(|(_, s)| s)
            .ok_or_else(out_of_range)?;
        if offset >= seg.end() {
            return Err(out_of_range());
        }
        Ok(seg.clone())
    }

    /// Reads `len` bytes at `offset`; the range must lie inside one segment and below the end.
    pub fn read(&self, offset: u64, len: u32) -> Result<Vec<u8>, StoreError> {
        if let Some((cold, base, end)) = self.cold_segment(offset) {
            if offset.saturating_add(u64::from(len)) > end {
                return Err(StoreError::Corrupt {
                    offset,
                    reason: format!(
                        "a read of {len} bytes runs past the end of the tiered segment at {base}"
                    ),
                });
            }
            let mut buf = vec![0u8; len as usize];
            cold.read_exact_at(base, offset, &mut buf)?;
            return Ok(buf);
        }
        let seg = self.segment_for(offset)?;
        let end = offset.saturating_add(u64::from(len));
        if end > self.end_offset() {
            return Err(StoreError::OffsetOutOfRange {
                offset: end,
                start: self.start_offset(),
                end: self.end_offset(),
            });
        }
        if end > seg.end() {
            return Err(StoreError::Corrupt {
                offset,
                reason: format!(
                    "a read of {len} bytes runs past the end of segment {}",
                    seg.path().display()
                ),
            });
        }
        let mut buf = vec![0u8; len as usize];
        seg.read_exact_at(&mut buf, offset - seg.base())?;
        Ok(buf)
    }

    /// Reads and validates the record of `size` bytes at `offset`.
    pub fn read_record(&self, offset: u64, size: u32) -> Result<StoredMessage, StoreError> {
        let bytes = self.read(offset, size)?;
        record::decode_shared(bytes.into(), offset)
    }

    /// Raw log bytes from `offset`, at most `max` and never past the end of its segment
    /// (replication streams these). Empty at the end of the log.
    pub fn read_bytes(&self, offset: u64, max: usize) -> Result<Vec<u8>, StoreError> {
        if offset == self.end_offset() {
            return Ok(Vec::new());
        }
        if let Some((cold, base, end)) = self.cold_segment(offset) {
            let mut buf = vec![0u8; (end - offset).min(max as u64) as usize];
            cold.read_exact_at(base, offset, &mut buf)?;
            return Ok(buf);
        }
        let seg = self.segment_for(offset)?;
        let avail = seg.end().min(self.end_offset()).saturating_sub(offset);
        let n = avail.min(max as u64) as usize;
        let mut buf = vec![0u8; n];
        seg.read_exact_at(&mut buf, offset - seg.base())?;
        Ok(buf)
    }

    /// Seals the last segment (fdatasync, zeros cut off) and starts a new one at the log end
    /// (writer only).
    pub(crate) fn roll(&self) -> Result<Arc<Segment>, StoreError> {
        let last = self.last_segment()?;
        last.seal()?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.mark_flushed(last.end());
        let base = last.end();
        let path = self.dir.join(segment_file_name(base));
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        sync_dir(&self.dir)?;
        let seg = Arc::new(Segment::open(path, base, self.prealloc)?);
        self.segments.write().insert(base, seg.clone());
        tracing::debug!(base, "commit log rolled to a new segment");
        Ok(seg)
    }

    /// Cuts the log back to log offset `at` (a slave dropping records its master never
    /// wrote): deletes every segment starting at or after `at`, truncates the one holding it.
    /// When `at` is not inside the log (or at its very start) the log restarts empty at `at`.
    /// Writer thread only.
    pub(crate) fn cut_back(&self, at: u64) -> Result<(), StoreError> {
        let _no_sync = self.sync_lock.lock();
        let mut segs = self.segments.write();
        let start = segs.values().next().map_or(0, |s| s.base());
        if at <= start || at > self.end_offset() {
            for seg in segs.values() {
                std::fs::remove_file(seg.path())?;
            }
            segs.clear();
            let path = self.dir.join(segment_file_name(at));
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            segs.insert(at, Arc::new(Segment::open(path, at, self.prealloc)?));
        } else {
            let doomed: Vec<u64> = segs.range(at..).map(|(b, _)| *b).collect();
            for base in doomed {
                if let Some(seg) = segs.remove(&base) {
                    std::fs::remove_file(seg.path())?;
                }
            }
            match segs.values().next_back() {
                Some(last) => last.truncate(at - last.base())?,
                None => unreachable!("at > start keeps the first segment"),
            }
            // A cut exactly at a segment end leaves that segment whole and last.
        }
        sync_dir(&self.dir)?;
        self.set_end(at);
        self.flushed.store(at, Ordering::Release);
        Ok(())
    }

    /// Undoes a failed group append (writer only): drops every segment that starts after
    /// `at` and cuts the segment holding `at` back to it, so bytes a failed write left
    /// behind are gone before the next write. The log end never moved past `at`.
    pub(crate) fn discard_from(&self, at: u64) -> Result<(), StoreError> {
        let _no_sync = self.sync_lock.lock();
        let mut segs = self.segments.write();
        let later: Vec<u64> = segs.range(at + 1..).map(|(b, _)| *b).collect();
        for base in &later {
            if let Some(seg) = segs.remove(base) {
                std::fs::remove_file(seg.path())?;
            }
        }
        let last = segs
            .values()
            .next_back()
            .cloned()
            .ok_or_else(|| StoreError::Corrupt {
                offset: at,
                reason: "the commit log has no segment".into(),
            })?;
        drop(segs);
        last.truncate(at.saturating_sub(last.base()))?;
        if !later.is_empty() {
            sync_dir(&self.dir)?;
        }
        self.set_end(at);
        self.flushed.fetch_min(at, Ordering::AcqRel);
        Ok(())
    }

    /// Deletes the oldest segments that end at or below `upto` (never the last one);
    /// returns (base, bytes) of each deleted segment. Readers holding a segment keep reading
    /// it until they drop it. Writer thread only (it serialises with rolls and cut-backs).
    pub(crate) fn delete_segments_below(&self, upto: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut segs = self.segments.write();
        let last_base = segs.keys().next_back().copied().unwrap_or(0);
        let doomed: Vec<u64> = segs
            .iter()
            .take_while(|(b, s)| **b < last_base && s.end() <= upto)
            .map(|(b, _)| *b)
            .collect();
        let mut out = Vec::with_capacity(doomed.len());
        for base in doomed {
            if let Some(seg) = segs.remove(&base) {
                std::fs::remove_file(seg.path())?;
                out.push((base, seg.len()));
            }
        }
        drop(segs);
        if !out.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(out)
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Truncates the last segment at log offset `at` (recovery only).
    pub(crate) fn truncate_last(&self, at: u64) -> Result<(), StoreError> {
        let last = self.last_segment()?;
        if at < last.base() || at > last.end() {
            return Err(StoreError::Corrupt {
                offset: at,
                reason: format!(
                    "cannot truncate outside the last segment {}",
                    last.path().display()
                ),
            });
        }
        last.truncate(at - last.base())?;
        self.set_end(at);
        Ok(())
    }
}

/// Whether an I/O error means the file system is out of space.
pub(crate) fn is_out_of_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
