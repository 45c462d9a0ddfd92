//! Recovery at open: make the log self-consistent, then make the index agree with it.
//!
//! 1. Read the checkpoints: `dispatched` (the index is complete below it) and `flushed` (the
//!    log was known durable below it; recorded lazily, so it may lag, never lead). The first
//!    is written without RocksDB's WAL in the batches whose entries it covers (`kv.rs`): after
//!    a kill -9 it is that of the last flush of the index, and the entries past it are
//!    re-dispatched here, to the same keys and values (a record carries its queue offset). The
//!    second goes through the WAL when it moved (`index::record_flushed`), so a kill -9 does
//!    not take it back.
//! 2. Validate every record from the lower of the checkpoint and the last segment's base to
//!    the end of the log: length, magic and CRC; those at or past the checkpoint are also
//!    decoded field by field and re-dispatched. The last segment is always scanned whole, so
//!    damage there is found at every start, not only after a crash.
//! 3. On damage at offset `p`:
//!    - in the last segment, when only zeros follow `p`: the preallocated tail, not damage;
//!      the records end at `p` and appends continue there (a segment still all zeros after
//!      a roll included);
//!    - in a sealed (non-last) segment: [`StoreError::Corrupt`]; sealed segments were synced;
//!    - in the last segment, if a valid record follows `p` and `p` is below the flushed
//!      checkpoint: [`StoreError::Corrupt`] (the broker must not start on a damaged log);
//!    - a last segment that starts with zeros and holds no valid record after them holds no
//!      Apogee record at all (a segment starting with another format's record was refused
//!      when the log was opened, `foreign.rs`): [`StoreError::Corrupt`];
//!    - a cut at `p` that would drop more data (up to the segment's last non-zero byte) than
//!      could have been in flight, [`max_cut`]: [`StoreError::Corrupt`];
//!    - otherwise it is a torn tail (an interrupted write, or unsynced pages lost with an
//!      async flush): truncate the segment at `p`, fsync, and log a warning.
//!
//!    Every refusal changes nothing on disk.
//! 4. If the index is ahead of the recovered end (its checkpoint is past it: the log tail was
//!    lost after the index was written), delete the consume-queue, id and key entries at or
//!    past the end and move queue heads back, so no entry points past the log.
//! 5. Record `dispatched = flushed = end` after syncing the last segment; when this pass
//!    re-dispatched or pruned anything, flush the index, so its work is durable at once.
//!
//! A rebuild of the derived state ([`Rebuilding`], decided and prepared by `format.rs`) is the
//! same pass over emptied derived tables: the dispatched mark is gone, so step 2 re-dispatches
//! the whole log, reporting progress; the index format is recorded once it is complete.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::sync::Arc;

use super::commitlog::{CommitLog, Segment};
use super::format::{self, ProgressLog, RebuildCause, RebuildProgress};
use super::index::{self, Heads, QueueEntry, CK_DISPATCHED, CK_FLUSHED};
use super::keys::{self, prefix_end, MetaKey};
use super::kv::{Cf, KvBatch, KvStore};
use super::record::{self, HEADER_LEN, MAGIC, MAGIC_V1};
use super::write_queue::MAX_GROUP_BYTES;
use super::StoreError;

/// Records per index batch while re-dispatching.
const REDISPATCH_BATCH: usize = 4096;
/// Entries per page while pruning.
const PRUNE_PAGE: usize = 10_000;

/// What the writer needs to continue where the log ends.
pub(crate) struct Recovered {
    pub heads: Heads,
    pub last_store_ts: i64,
    /// Set when the derived state was rebuilt from the log.
    pub rebuilt: Option<IndexRebuild>,
}

/// A rebuild of the derived state this recovery does (its tables were emptied before).
pub(crate) struct Rebuilding {
    pub cause: RebuildCause,
    pub progress: RebuildProgress,
    /// The topic configs are gone too (the whole index database was lost).
    pub topic_configs_lost: bool,
}

/// What a rebuild of the whole index found in the log: enough for the broker to recreate the
/// topics when their configs were lost with the index ([`IndexRebuild::topic_configs_lost`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IndexRebuild {
    pub records: u64,
    /// Per topic: the highest queue id holding records and the message types seen.
    pub topics: std::collections::BTreeMap<String, (u32, std::collections::BTreeSet<u8>)>,
    /// The topic configs were gone (a lost or deleted index database), not only the derived
    /// state: the broker recreates the topics found in the log.
    pub topic_configs_lost: bool,
}

fn get_u64(kv: &dyn KvStore, cf: Cf, key: &[u8]) -> Result<Option<u64>, StoreError> {
    kv.get(cf, key)?.map(|v| index::u64_value(&v)).transpose()
}

/// The most data a torn-tail cut may drop: what may have been unsynced at the crash (the
/// log past the recorded flushed mark, which lags the real one but never leads it; nothing
/// when the index has no mark, i.e. it is new or was lost) plus one write group being
/// written (the writer stops adding requests to a group at `MAX_GROUP_BYTES`, so one record
/// of `max_record_size` more). `data_end` is where the segment's data ends.
pub(crate) fn max_cut(flushed_mark: Option<u64>, data_end: u64, max_record_size: usize) -> u64 {
    let unsynced = flushed_mark.map_or(0, |m| data_end.saturating_sub(m));
    unsynced + MAX_GROUP_BYTES as u64 + max_record_size as u64
}

/// Recovers the log and the index at open (module doc); `max_record_size` bounds the cut of
/// a torn tail ([`max_cut`]); `rebuilding` when the derived tables were emptied for a rebuild.
pub(crate) fn recover(
    log: &CommitLog,
    kv: &dyn KvStore,
    max_record_size: usize,
    rebuilding: Option<Rebuilding>,
) -> Result<Recovered, StoreError> {
    let checkpoint = get_u64(kv, Cf::Checkpoint, CK_DISPATCHED)?.unwrap_or(0);
    let known_mark = get_u64(kv, Cf::Checkpoint, CK_FLUSHED)?;
    let flushed_mark = known_mark.unwrap_or(0);
    let _recovery = tracing::info_span!(
        "recovery",
        dir = %log.dir().display(),
        checkpoint,
        flushed = flushed_mark
    )
    .entered();
    let mut heads = load_heads(kv)?;
    let purged = load_purge_marks(kv)?;
    let segments = log.segments();
    let last = segments
        .last()
        .cloned()
        .ok_or_else(|| StoreError::Corrupt {
            offset: 0,
            reason: "the commit log has no segment".into(),
        })?;
    let scan_from = checkpoint.max(log.start_offset()).min(last.base());
    let topic_configs_lost = rebuilding.as_ref().is_some_and(|r| r.topic_configs_lost);
    if topic_configs_lost {
        tracing::warn!(
            log_start = log.start_offset(),
            log_end = log.end_offset(),
            segments = segments.len(),
            "the index database is empty but the commit log is not (index directory lost or \
             deleted): rebuilding it from the log. Queue offsets come back as they were; \
             consumer offsets, in-flight and retry state, topic and group configs lived only \
             in the index and are LOST"
        );
    }
    let progress = rebuilding
        .as_ref()
        .map(|r| ProgressLog::begin(r.progress.clone(), &r.cause, scan_from, log.end_offset()));
    let mut state = Scan {
        kv,
        checkpoint,
        batch: KvBatch::new().unlogged(),
        queued: 0,
        heads: &mut heads,
        purged,
        last_ts: 0,
        rebuild: rebuilding.as_ref().map(|_| IndexRebuild {
            topic_configs_lost,
            ..IndexRebuild::default()
        }),
        progress,
    };
    let mut redispatched = 0u64;
    for seg in segments
        .iter()
        .filter(|s| s.end() > scan_from || Arc::ptr_eq(s, &last))
    {
        let is_last = Arc::ptr_eq(seg, &last);
        let start = scan_from.saturating_sub(seg.base());
        let Some((p, reason)) = scan_segment(seg, start, &mut state, &mut redispatched)? else {
            continue;
        };
        if is_last && seg.zeros_from(p - seg.base())? {
            // The unused preallocated tail (`commitlog.rs`): the records end here, cleanly.
            seg.set_records_end(p - seg.base());
            continue;
        }
        if !is_last {
            return Err(StoreError::Corrupt {
                offset: p,
                reason: format!("{reason}, in sealed segment {}", seg.path().display()),
            });
        }
        let follows = find_valid_record(seg, p - seg.base() + 1)?;
        if let Some(q) = follows {
            if p < flushed_mark {
                return Err(StoreError::Corrupt {
                    offset: p,
                    reason: format!(
                        "{reason}, in segment {}, yet a valid record follows at log offset {} and \
                         the log was flushed up to {flushed_mark}",
                        seg.path().display(),
                        seg.base() + q
                    ),
                });
            }
        }
        let data_end = seg.base() + seg.data_end()?;
        let cut_by_hand = format!(
            "Refusing to start; nothing was changed. If those bytes are not wanted, cut the \
             file there by hand (truncate -s {} {})",
            p - seg.base(),
            seg.path().display()
        );
        if p == seg.base() && follows.is_none() && starts_with_zeros(seg)? {
            return Err(StoreError::Corrupt {
                offset: p,
                reason: format!(
                    "segment {} holds no Apogee record: it starts with zeros, yet data follows \
                     up to file position {} and none of it is a valid record; that is not a \
                     torn tail. {cut_by_hand}",
                    seg.path().display(),
                    data_end - seg.base()
                ),
            });
        }
        let dropped = data_end.saturating_sub(p);
        let bound = max_cut(known_mark, data_end, max_record_size);
        if dropped > bound {
            let unsynced = match known_mark {
                Some(m) => format!(
                    "the {} bytes past the flushed mark at log offset {m}",
                    data_end.saturating_sub(m)
                ),
                None => "nothing known unsynced (the index has no flushed mark)".to_string(),
            };
            return Err(StoreError::Corrupt {
                offset: p,
                reason: format!(
                    "{reason}, in segment {}: cutting the log there would drop {dropped} bytes \
                     of data (up to log offset {data_end}), more than could have been in \
                     flight ({unsynced}, plus one write group: at most {bound} bytes); that \
                     is damage, not a torn tail. {cut_by_hand}",
                    seg.path().display(),
                ),
            });
        }
        tracing::warn!(
            offset = p,
            dropped_bytes = dropped,
            segment = %seg.path().display(),
            "torn tail in the commit log ({reason}); truncating at the last whole record"
        );
        log.truncate_last(p)?;
    }
    state.commit()?;
    let progress = state.progress.take();
    let last_ts = state.last_ts;
    let rebuilt = state.rebuild.take().map(|mut r| {
        r.records = redispatched;
        r
    });
    let end = last.end();
    log.set_end(end);
    if redispatched > 0 {
        tracing::info!(
            records = redispatched,
            from = checkpoint,
            to = end,
            "re-dispatched the log tail into the index"
        );
    }
    if checkpoint > end {
        prune(kv, end, &mut heads)?;
    }
    last.sync_data()?;
    log.mark_flushed(end);
    let mut batch = KvBatch::new().unlogged();
    index::put_checkpoint(&mut batch, end);
    kv.write(batch)?;
    index::record_flushed(kv, end)?;
    if redispatched > 0 || checkpoint > end {
        // What this pass wrote (unlogged) made durable at once: a crash right after the
        // start does not leave the same work to the next one.
        kv.flush()?;
    }
    if let Some(progress) = progress {
        // Only now: a rebuild cut short leaves its marker, and the next open starts it again.
        format::mark_complete(kv)?;
        progress.end(redispatched);
    }
    Ok(Recovered {
        heads,
        last_store_ts: last_ts,
        rebuilt,
    })
}

/// Every deleted topic's purge mark: the log offset below which its records stay unindexed.
fn load_purge_marks(kv: &dyn KvStore) -> Result<HashMap<String, u64>, StoreError> {
    let (mut from, to) = MetaKey::TopicPurged.range();
    let mut marks = HashMap::new();
    loop {
        let page = kv.scan(Cf::Meta, &from, &to, PRUNE_PAGE)?;
        for (k, v) in &page {
            let (Some(topic), Some(below)) =
                (keys::decode_topic_purged_key(k), keys::decode_u64(v))
            else {
                return Err(StoreError::Index(format!("malformed purge mark {k:02x?}")));
            };
            marks.insert(topic, below);
        }
        match page.last() {
            Some((last, _)) if page.len() == PRUNE_PAGE => {
                from = last.clone();
                from.push(0);
            }
            _ => return Ok(marks),
        }
    }
}

fn load_heads(kv: &dyn KvStore) -> Result<Heads, StoreError> {
    let mut heads = Heads::new();
    let mut from = Vec::new();
    loop {
        let page = kv.scan(Cf::QueueHead, &from, &[], PRUNE_PAGE)?;
        let Some((last_key, _)) = page.last() else {
            break;
        };
        from = last_key.clone();
        from.push(0);
        for (k, v) in &page {
            let (topic, qid) = index::decode_queue_key(k)
                .ok_or_else(|| StoreError::Index(format!("malformed queue-head key {k:02x?}")))?;
            let next = index::next_offset(kv, k, index::u64_value(v)?)?;
            heads.entry(topic).or_default().insert(qid, next);
        }
        if page.len() < PRUNE_PAGE {
            break;
        }
    }
    Ok(heads)
}

/// Re-dispatch state shared across segments.
struct Scan<'a> {
    kv: &'a dyn KvStore,
    checkpoint: u64,
    batch: KvBatch,
    queued: usize,
    heads: &'a mut Heads,
    /// Deleted topics: their records below the log offset are not indexed again.
    purged: HashMap<String, u64>,
    last_ts: i64,
    rebuild: Option<IndexRebuild>,
    progress: Option<ProgressLog>,
}

impl Scan<'_> {
    /// Re-dispatches a valid record the index lacks (one at or past the checkpoint).
    fn redispatch(&mut self, m: &record::StoredMessage) -> Result<(), StoreError> {
        self.last_ts = self.last_ts.max(m.store_timestamp_ms);
        let deleted = self
            .purged
            .get(&m.msg.topic)
            .is_some_and(|&below| m.log_offset < below);
        if deleted {
            // A record of a topic deleted since: the purge removed its entries, and a topic
            // created again under the name starts its queues afresh.
            self.checkpoint = m.log_offset + u64::from(m.record_size);
            return Ok(());
        }
        // New queues are counted from the heads once recovery is done (`lite.rs`).
        let _ = index::dispatch_stored(&mut self.batch, self.heads, m);
        if let Some(r) = &mut self.rebuild {
            let (max_qid, types) = r.topics.entry(m.msg.topic.clone()).or_default();
            *max_qid = (*max_qid).max(m.msg.queue_id);
            types.insert(m.msg.message_type);
        }
        self.checkpoint = m.log_offset + u64::from(m.record_size);
        self.queued += 1;
        if self.queued >= REDISPATCH_BATCH {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        if self.queued > 0 {
            let mut batch = std::mem::replace(&mut self.batch, KvBatch::new().unlogged());
            index::put_checkpoint(&mut batch, self.checkpoint);
            self.kv.write(batch)?;
            self.queued = 0;
            if let Some(p) = &mut self.progress {
                p.at(self.checkpoint);
            }
        }
        Ok(())
    }
}

/// Validates records of `seg` from file position `start` to its end. Returns the log offset
/// and reason of the first damage, or None when the segment ends on a record boundary.
fn scan_segment(
    seg: &Segment,
    start: u64,
    state: &mut Scan<'_>,
    count: &mut u64,
) -> Result<Option<(u64, String)>, StoreError> {
    let len = seg.len();
    let mut reader = BufReader::with_capacity(1 << 20, File::open(seg.path())?);
    reader.seek(SeekFrom::Start(start))?;
    let mut pos = start;
    let mut rec = Vec::new();
    while pos < len {
        let room = len - pos;
        let at = seg.base() + pos;
        if room < HEADER_LEN as u64 {
            return Ok(Some((
                at,
                format!("a partial record header of {room} bytes"),
            )));
        }
        let mut header = [0u8; HEADER_LEN];
        reader.read_exact(&mut header)?;
        let size = match record::check_header(&header, room) {
            Ok(size) => size,
            Err(reason) => return Ok(Some((at, reason))),
        };
        rec.clear();
        rec.extend_from_slice(&header);
        rec.resize(size as usize, 0);
        reader.read_exact(&mut rec[HEADER_LEN..])?;
        if at < state.checkpoint {
            // Indexed already (decoded when it was dispatched): the CRC is the check, and the
            // store timestamp all that is needed of it.
            if let Err(reason) = record::verify(&rec) {
                return Ok(Some((at, reason)));
            }
            state.last_ts = state.last_ts.max(record::store_timestamp(&rec));
            pos += u64::from(size);
            continue;
        }
        let m = match record::decode(&rec, at) {
            Ok(m) => m,
            Err(StoreError::Corrupt { reason, .. }) => return Ok(Some((at, reason))),
            Err(e) => return Err(e),
        };
        state.redispatch(&m)?;
        *count += 1;
        pos += u64::from(size);
    }
    Ok(None)
}

/// Whether the segment file's first 8 bytes (length and magic of its first record) are there
/// and all zero.
fn starts_with_zeros(seg: &Segment) -> Result<bool, StoreError> {
    let mut head = [0u8; 8];
    if seg.len() < head.len() as u64 {
        return Ok(false);
    }
    seg.read_exact_at(&mut head, 0)?;
    Ok(head == [0u8; 8])
}

/// File position of the first whole, valid record starting at or after `from`, if any.
fn find_valid_record(seg: &Segment, from: u64) -> Result<Option<u64>, StoreError> {
    const CHUNK: u64 = 1 << 20;
    let len = seg.len();
    let magics = [MAGIC.to_be_bytes(), MAGIC_V1.to_be_bytes()];
    let mut pos = from;
    let mut buf = Vec::new();
    while pos + HEADER_LEN as u64 <= len {
        let n = CHUNK.min(len - pos);
        buf.resize(n as usize, 0);
        seg.read_exact_at(&mut buf, pos)?;
        for i in 0..=(buf.len() - HEADER_LEN) {
            if !magics.iter().any(|m| buf[i + 4..i + 8] == m[..]) {
                continue;
            }
            let at = pos + i as u64;
            let Ok(size) = record::check_header(&buf[i..i + HEADER_LEN], len - at) else {
                continue;
            };
            let mut rec = vec![0u8; size as usize];
            seg.read_exact_at(&mut rec, at)?;
            if record::verify(&rec).is_ok() {
                return Ok(Some(at));
            }
        }
        if pos + n >= len {
            break;
        }
        pos += n - (HEADER_LEN as u64 - 1);
    }
    Ok(None)
}

/// Removes index entries at or past `end` and moves queue heads back accordingly.
fn prune(kv: &dyn KvStore, end: u64, heads: &mut Heads) -> Result<(), StoreError> {
    let unlogged = || KvBatch::new().unlogged();
    let mut batch = unlogged();
    let mut removed = 0usize;
    for (topic, queues) in heads.iter_mut() {
        for (&qid, head) in queues.iter_mut() {
            let prefix = index::queue_key(topic, qid);
            let mut upper = prefix_end(&prefix);
            let mut new_head = *head;
            while let Some((k, v)) = kv.last_in(Cf::ConsumeQueue, &prefix, &upper)? {
                let e = QueueEntry::decode(&k, &v)?;
                if e.log_offset < end {
                    break;
                }
                batch.delete(Cf::ConsumeQueue, &k);
                new_head = e.queue_offset;
                removed += 1;
                upper = k;
            }
            if new_head != *head {
                *head = new_head;
                index::put_head(&mut batch, topic, qid, new_head);
            }
        }
    }
    kv.write(std::mem::replace(&mut batch, unlogged()))?;
    for cf in [Cf::MessageId, Cf::MessageKey] {
        let mut from = Vec::new();
        loop {
            let page = kv.scan(cf, &from, &[], PRUNE_PAGE)?;
            for (k, _) in &page {
                if index::trailing_u64(k).is_some_and(|off| off >= end) {
                    batch.delete(cf, k);
                    removed += 1;
                }
            }
            kv.write(std::mem::replace(&mut batch, unlogged()))?;
            match page.last() {
                Some((k, _)) if page.len() == PRUNE_PAGE => {
                    from = k.clone();
                    from.push(0);
                }
                _ => break,
            }
        }
    }
    tracing::warn!(
        entries = removed,
        log_end = end,
        "the index was ahead of the commit log; pruned entries past the end"
    );
    Ok(())
}
