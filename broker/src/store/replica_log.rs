//! What replication needs from the store, on both sides.
//!
//! Master side: whole records to stream ([`MessageStore::read_records`]), record marks to
//! check a slave's log against ours ([`MessageStore::record_mark_at`]), and the SYNC_MASTER
//! wait ([`ReplicaWaits`]): the writer registers each request under the log offset its
//! records end at and goes on; the request is answered when a slave reported that offset
//! written ([`MessageStore::set_replicated`]), at once with "not replicated" when no slave is
//! in sync, or after the timeout.
//!
//! Slave side: [`MessageStore::append_replicated`] writes the master's bytes as they are (same
//! offsets, same segment rolls) after checking every record, and indexes them with recovery's
//! dispatch; [`MessageStore::truncate_replica`] cuts the log back to a common prefix,
//! drops the epoch-file entries that start beyond it and rebuilds the derived index from
//! what remains. [`MessageStore::records_beyond`] says what a cut would drop (bytes,
//! records, message ids), for the warning that names them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::index;
use super::kv::KvBatch;
use super::record::{self, HEADER_LEN};
use super::writer::{AppendReply, Command, ReplicaAppend, Writer};
use super::{AppendResult, EpochFile, FlushMode, MessageStore, StoreError};

/// Whole records of one segment, as the master streams them.
#[derive(Clone, Debug)]
pub struct LogSlice {
    pub offset: u64,
    pub segment_base: u64,
    pub bytes: Vec<u8>,
}

/// One record of the log: where it starts, its length and its CRC field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMark {
    pub offset: u64,
    pub size: u32,
    pub crc: u32,
}

/// What a cut of the log back to an offset drops ([`MessageStore::records_beyond`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DroppedRecords {
    pub bytes: u64,
    pub records: u64,
    /// The message ids of the first records dropped, at most the cap asked for.
    pub message_ids: Vec<String>,
}

impl DroppedRecords {
    /// The ids for a log line: all of them, then "and N more" past the cap.
    pub fn ids_text(&self) -> String {
        let mut text = self.message_ids.join(", ");
        let more = self.records.saturating_sub(self.message_ids.len() as u64);
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
        text
    }
}

struct Waiting {
    results: Vec<AppendResult>,
    reply: AppendReply,
    deadline: Instant,
}

#[derive(Default)]
struct WaitState {
    replicated: u64,
    in_sync: bool,
    waiting: BTreeMap<u64, Vec<Waiting>>,
}

/// SYNC_MASTER requests waiting for a slave, keyed by the log offset they end at.
#[derive(Default)]
pub(crate) struct ReplicaWaits {
    state: Mutex<WaitState>,
}

impl ReplicaWaits {
    /// Answers `reply` once the slaves have `end`, or with NotReplicated.
    pub(crate) fn register(
        &self,
        end: u64,
        results: Vec<AppendResult>,
        reply: AppendReply,
        timeout: Duration,
    ) {
        let mut st = self.state.lock();
        if st.replicated >= end {
            drop(st);
            let _ = reply.send(Ok(results));
        } else if !st.in_sync {
            drop(st);
            let _ = reply.send(Err(StoreError::NotReplicated {
                results,
                timed_out: false,
                reason: "no slave is in sync".into(),
            }));
        } else {
            st.waiting.entry(end).or_default().push(Waiting {
                results,
                reply,
                deadline: Instant::now() + timeout,
            });
        }
    }

    fn set_replicated(&self, offset: u64) {
        let done = {
            let mut st = self.state.lock();
            st.replicated = st.replicated.max(offset);
            let rest = st.waiting.split_off(&(offset + 1));
            std::mem::replace(&mut st.waiting, rest)
        };
        for w in done.into_values().flatten() {
            let _ = w.reply.send(Ok(w.results));
        }
    }

    fn set_in_sync(&self, in_sync: bool) {
        self.state.lock().in_sync = in_sync;
    }

    /// Sets the replicated offset to `offset` even below where it was (the ack rule of
    /// controller mode: the slowest member of the committed in-sync set), answering the
    /// requests it covers.
    fn set_replicated_exact(&self, offset: u64) {
        let done = {
            let mut st = self.state.lock();
            st.replicated = offset;
            let rest = st.waiting.split_off(&offset.saturating_add(1));
            std::mem::replace(&mut st.waiting, rest)
        };
        for w in done.into_values().flatten() {
            let _ = w.reply.send(Ok(w.results));
        }
    }

    /// Answers every waiting request: OK, or "not replicated" with `refusal`.
    fn answer_all(&self, refusal: Option<&str>) {
        let all = std::mem::take(&mut self.state.lock().waiting);
        for w in all.into_values().flatten() {
            let answer = match refusal {
                None => Ok(w.results),
                Some(reason) => Err(StoreError::NotReplicated {
                    results: w.results,
                    timed_out: false,
                    reason: reason.to_string(),
                }),
            };
            let _ = w.reply.send(answer);
        }
    }

    /// Answers the requests whose wait ran out; with `all`, every one still waiting.
    fn expire(&self, timeout: Duration, all: bool) {
        let now = Instant::now();
        let expired: Vec<Waiting> = {
            let mut st = self.state.lock();
            let mut out = Vec::new();
            st.waiting.retain(|_, ws| {
                let (gone, keep): (Vec<_>, Vec<_>) =
                    ws.drain(..).partition(|w| all || w.deadline <= now);
                out.extend(gone);
                *ws = keep;
                !ws.is_empty()
            });
            out
        };
        for w in expired {
            let _ = w.reply.send(Err(StoreError::NotReplicated {
                results: w.results,
                timed_out: true,
                reason: format!("no slave confirmed it within {} ms", timeout.as_millis()),
            }));
        }
    }
}

/// Starts the thread of [`run_replica_timer`]; returns its stop and handle.
pub(crate) fn spawn_replica_timer(
    shared: Arc<super::Shared>,
) -> std::io::Result<(mpsc::Sender<()>, std::thread::JoinHandle<()>)> {
    let (stop_tx, stop_rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("apogee-store-replica-timer".into())
        .spawn(move || run_replica_timer(shared, stop_rx))?;
    Ok((stop_tx, handle))
}

/// Expires SYNC_MASTER waits until `stop` fires or is dropped; then answers the rest.
fn run_replica_timer(shared: Arc<super::Shared>, stop: mpsc::Receiver<()>) {
    let timeout = shared.config.replica_timeout;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(Duration::from_millis(20)) {
        shared.replicas.expire(timeout, false);
    }
    shared.replicas.expire(timeout, true);
}

impl MessageStore {
    /// Waits until the members the ack rule counts hold the log up to where it ends now: the
    /// answer about a record appended earlier (a retried EndTransaction finds its record
    /// already written) may then say what a fresh append would. At once when appends do not
    /// wait for slaves; "not replicated" after `replica_timeout`, as for an append.
    pub async fn wait_replicated_to_end(&self) -> Result<(), StoreError> {
        if !self.shared.sync_replicas() {
            return Ok(());
        }
        let end = self.log_end_offset();
        let (reply, rx) = oneshot::channel();
        self.shared
            .replicas
            .register(end, Vec::new(), reply, self.shared.config.replica_timeout);
        rx.await.map_err(|_| StoreError::Closed)?.map(|_| ())
    }

    /// Master: slaves have written everything below `offset` (monotonic).
    pub fn set_replicated(&self, offset: u64) {
        self.shared.replicas.set_replicated(offset);
    }

    /// Master: whether a slave is in sync; when none is, SYNC_MASTER sends do not wait.
    pub fn set_replica_in_sync(&self, in_sync: bool) {
        self.shared.replicas.set_in_sync(in_sync);
    }

    /// Master in controller mode: the slowest member of the committed in-sync set has written
    /// everything below `offset` (may move back when the set grows; u64::MAX: no member
    /// but the master).
    pub fn set_replicated_exact(&self, offset: u64) {
        self.shared.replicas.set_replicated_exact(offset);
    }

    /// Whether this store is a slave's copy (appends refused).
    pub fn is_replica(&self) -> bool {
        self.shared.replica.load(Ordering::SeqCst)
    }

    /// Makes this store a slave's copy (appends refused; the requests waiting for slaves are
    /// answered "not replicated": this broker is no longer the master) or a master's.
    pub fn set_replica(&self, replica: bool) {
        if !self.shared.replica.swap(replica, Ordering::SeqCst) && replica {
            self.shared
                .replicas
                .answer_all(Some("this broker stopped being the master"));
        }
        self.shared.takes_writes.send_replace(!replica);
    }

    /// Waits at most `max` for this store to take appends (a promotion to finish); true when
    /// it does.
    pub async fn wait_takes_writes(&self, max: std::time::Duration) -> bool {
        let mut rx = self.shared.takes_writes.subscribe();
        let taken = tokio::time::timeout(max, rx.wait_for(|takes| *takes)).await;
        matches!(taken, Ok(Ok(_)))
    }

    /// Whether appends wait for slaves ([`set_replicated`](Self::set_replicated)).
    pub fn sync_replicas(&self) -> bool {
        self.shared.sync_replicas()
    }

    /// Makes appends wait for slaves (starting the thread that expires the waits, when this
    /// store has none yet) or not (the requests waiting are answered OK: no slave is needed
    /// any more).
    pub fn set_sync_replicas(&self, on: bool) -> Result<(), StoreError> {
        if on {
            let mut timer = self.replica_timer.lock();
            if !timer.0 && timer.1.is_none() {
                timer.1 = Some(spawn_replica_timer(self.shared.clone())?);
            }
        }
        if self.shared.sync_replicas.swap(on, Ordering::SeqCst) && !on {
            self.shared.replicas.answer_all(None);
        }
        Ok(())
    }

    /// Which master epoch wrote which part of the log.
    pub fn epochs(&self) -> &EpochFile {
        &self.shared.epochs
    }

    /// fdatasyncs the log to its end now (whatever the flush mode); returns the flushed offset.
    pub async fn sync_log(&self) -> Result<u64, StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            shared.log.sync_to_end()?;
            Ok(shared.log.flushed_offset())
        })
        .await
        .map_err(|e| StoreError::Index(format!("the log sync task failed: {e}")))?
    }

    /// Changes whenever the log end advances (or is cut back).
    pub fn log_end_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.end_watch.subscribe()
    }

    /// Whole records from `offset` (at least one, even when larger than `max_bytes`), never
    /// across a segment end. None at the log end.
    pub fn read_records(
        &self,
        offset: u64,
        max_bytes: usize,
    ) -> Result<Option<LogSlice>, StoreError> {
        let log = &self.shared.log;
        if offset == log.end_offset() {
            return Ok(None);
        }
        let bytes = log.read_bytes(offset, max_bytes.max(HEADER_LEN))?;
        let seg_base = log.segment_base(offset);
        let mut cut = 0usize;
        while cut + HEADER_LEN <= bytes.len() {
            let len = u32::from_be_bytes(bytes[cut..cut + 4].try_into().expect("4 bytes")) as usize;
            if len < record::MIN_RECORD_LEN {
                return Err(StoreError::Corrupt {
                    offset: offset + cut as u64,
                    reason: format!("record length {len} while reading for a slave"),
                });
            }
            if cut + len > bytes.len() {
                break;
            }
            cut += len;
        }
        if cut == 0 {
            // One record larger than max_bytes: send it whole.
            let len = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"));
            let whole = log.read(offset, len)?;
            return Ok(Some(LogSlice {
                offset,
                segment_base: seg_base,
                bytes: whole,
            }));
        }
        let mut bytes = bytes;
        bytes.truncate(cut);
        Ok(Some(LogSlice {
            offset,
            segment_base: seg_base,
            bytes,
        }))
    }

    /// The mark of the whole, CRC-valid record starting exactly at `offset`, if there is one.
    pub fn record_mark_at(&self, offset: u64) -> Result<Option<RecordMark>, StoreError> {
        let log = &self.shared.log;
        if offset < log.first_offset() || offset + HEADER_LEN as u64 > log.end_offset() {
            return Ok(None);
        }
        let header = match log.read(offset, HEADER_LEN as u32) {
            Ok(h) => h,
            Err(StoreError::OffsetOutOfRange { .. } | StoreError::Corrupt { .. }) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let room = log.end_offset() - offset;
        let Ok(size) = record::check_header(&header, room) else {
            return Ok(None);
        };
        let rec = match log.read(offset, size) {
            Ok(r) => r,
            Err(StoreError::OffsetOutOfRange { .. } | StoreError::Corrupt { .. }) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        if record::verify(&rec).is_err() {
            return Ok(None);
        }
        Ok(Some(RecordMark {
            offset,
            size,
            crc: u32::from_be_bytes(rec[8..12].try_into().expect("4 bytes")),
        }))
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_bases(&self) -> Vec<u64> {
        self.shared
            .log
            .segments()
            .iter()
            .map(|s| s.base())
            .collect()
    }

    /// Every record of the segment starting at `base` (headers only; a slave's search for the
    /// common prefix). Stops at the first header that does not parse.
    pub fn segment_records(&self, base: u64) -> Result<Vec<RecordMark>, StoreError> {
        let Some(seg) = self
            .shared
            .log
            .segments()
            .into_iter()
            .find(|s| s.base() == base)
        else {
            return Ok(Vec::new());
        };
        let len = seg.len();
        let mut out = Vec::new();
        let mut pos = 0u64;
        let mut header = [0u8; HEADER_LEN];
        while pos + HEADER_LEN as u64 <= len {
            seg.read_exact_at(&mut header, pos)?;
            let Ok(size) = record::check_header(&header, len - pos) else {
                break;
            };
            out.push(RecordMark {
                offset: base + pos,
                size,
                crc: u32::from_be_bytes(header[8..12].try_into().expect("4 bytes")),
            });
            pos += u64::from(size);
        }
        Ok(out)
    }

    /// The record that ends at the log end (None for an empty log).
    pub fn last_record(&self) -> Option<RecordMark> {
        let bases = self.segment_bases();
        for base in bases.into_iter().rev() {
            match self.segment_records(base) {
                Ok(marks) if !marks.is_empty() => return marks.last().copied(),
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the last record");
                    return None;
                }
            }
        }
        None
    }

    /// Slave: appends the master's bytes at `offset` (must be our log end). See the module doc.
    pub async fn append_replicated(
        &self,
        offset: u64,
        segment_base: u64,
        bytes: Vec<u8>,
    ) -> Result<ReplicaAppend, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send_command(Command::AppendReplicated {
            offset,
            segment_base,
            bytes,
            reply,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// What cutting the log back to `to` would drop: its bytes, records and the message ids
    /// of the first `max_ids` of them (a record that does not decode is counted under its
    /// offset).
    pub fn records_beyond(&self, to: u64, max_ids: usize) -> Result<DroppedRecords, StoreError> {
        let log = &self.shared.log;
        let end = log.end_offset();
        let mut out = DroppedRecords {
            bytes: end.saturating_sub(to),
            ..DroppedRecords::default()
        };
        let bases = self.segment_bases();
        for (i, &base) in bases.iter().enumerate() {
            if bases.get(i + 1).is_some_and(|&next| next <= to) {
                continue;
            }
            for mark in self.segment_records(base)? {
                if mark.offset < to {
                    continue;
                }
                out.records += 1;
                if out.message_ids.len() < max_ids {
                    let id = match log.read(mark.offset, mark.size) {
                        Ok(bytes) => record::decode(&bytes, mark.offset)
                            .map(|m| m.msg.message_id)
                            .unwrap_or_else(|_| format!("<record at {}>", mark.offset)),
                        Err(_) => format!("<record at {}>", mark.offset),
                    };
                    out.message_ids.push(id);
                }
            }
        }
        Ok(out)
    }

    /// Slave: cuts the log back to `to` and rebuilds the derived index; returns the new end.
    pub async fn truncate_replica(&self, to: u64) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send_command(Command::CutBack { to, reply })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

impl Writer {
    /// Writer thread: the slave's append (see [`MessageStore::append_replicated`]).
    pub(super) fn append_replicated(
        &mut self,
        offset: u64,
        segment_base: u64,
        bytes: &[u8],
    ) -> Result<ReplicaAppend, StoreError> {
        if let Some(reason) = self.shared.failure() {
            return Err(StoreError::Failed(reason));
        }
        let shared = self.shared.clone();
        let log = &shared.log;
        let end = log.end_offset();
        let mut seg = log.last_segment()?;
        let empty = end == log.start_offset() && seg.is_empty();
        if offset != end {
            if !(empty && offset == segment_base) {
                return Err(StoreError::Replica(format!(
                    "the master sent records at log offset {offset}, but this log ends at {end}"
                )));
            }
            // A new slave starts at the master's oldest retained segment.
            log.cut_back(offset)?;
            seg = log.last_segment()?;
        }
        if segment_base > seg.base() {
            if segment_base != offset {
                return Err(StoreError::Replica(format!(
                    "the master's segment {segment_base} does not start at our log end {offset}"
                )));
            }
            if !seg.is_empty() {
                seg = log.roll()?;
            }
        } else if segment_base < seg.base() {
            return Err(StoreError::Replica(format!(
                "the master's segment {segment_base} is older than our last segment {}",
                seg.base()
            )));
        }
        // Check every record before writing any.
        let mut msgs = Vec::new();
        let mut pos = 0usize;
        while pos < bytes.len() {
            let room = (bytes.len() - pos) as u64;
            if room < HEADER_LEN as u64 {
                return Err(StoreError::Replica(
                    "a partial record from the master".into(),
                ));
            }
            let size = record::check_header(&bytes[pos..pos + HEADER_LEN], room)
                .map_err(|r| StoreError::Replica(format!("a bad record from the master: {r}")))?
                as usize;
            let m = record::decode(&bytes[pos..pos + size], offset + pos as u64)?;
            msgs.push(m);
            pos += size;
        }
        seg.append(bytes)?;
        let new_end = seg.end();
        log.set_end(new_end);
        if shared.config.flush_mode == FlushMode::Sync {
            seg.sync_data()?;
            log.mark_flushed(new_end);
            index::record_flushed(shared.kv.as_ref(), new_end)?;
        }
        // Derived state with its checkpoint: no WAL, re-dispatched after a crash (`kv.rs`).
        let mut batch = KvBatch::new().unlogged();
        let mut touched: Vec<(String, u32)> = Vec::new();
        let mut new_queues: Vec<&str> = Vec::new();
        for m in &msgs {
            if index::dispatch_stored(&mut batch, &mut self.heads, m) {
                new_queues.push(&m.msg.topic);
            }
            self.last_store_ts = self.last_store_ts.max(m.store_timestamp_ms);
            if !touched
                .iter()
                .any(|(t, q)| *t == m.msg.topic && *q == m.msg.queue_id)
            {
                touched.push((m.msg.topic.clone(), m.msg.queue_id));
            }
        }
        index::put_checkpoint(&mut batch, new_end);
        shared.kv.write(batch)?;
        for topic in new_queues {
            shared.lite.queue_created(topic);
        }
        shared
            .wakeups
            .notify(touched.iter().map(|(t, q)| (t.as_str(), *q)));
        shared.end_watch.send_replace(new_end);
        Ok(ReplicaAppend {
            written: new_end,
            flushed: log.flushed_offset(),
        })
    }

    /// Writer thread: cut back to `to`, then rebuild the derived index from the log.
    pub(super) fn cut_back(&mut self, to: u64) -> Result<u64, StoreError> {
        let shared = self.shared.clone();
        let mut epoch = shared.index_epoch.lock();
        *epoch += 1;
        let before = shared.log.end_offset();
        shared.log.cut_back(to)?;
        super::format::drop_derived(
            shared.kv.as_ref(),
            super::format::Carry::Nothing,
            shared.log.start_offset(),
        )?;
        let recovered = super::recovery::recover(
            &shared.log,
            shared.kv.as_ref(),
            shared.config.max_record_size,
            Some(super::recovery::Rebuilding {
                cause: super::format::RebuildCause::CutBack,
                progress: super::format::RebuildProgress::new(),
                topic_configs_lost: false,
            }),
        )?;
        self.heads = recovered.heads;
        shared.lite.reset(&self.heads);
        self.last_store_ts = recovered.last_store_ts;
        let end = shared.log.end_offset();
        let epochs = shared.epochs.drop_after(end)?;
        if !epochs.is_empty() {
            tracing::warn!(
                log_end = end,
                dropped_epochs = ?epochs,
                "dropped the epochs that started beyond the cut from the epoch file"
            );
        }
        shared.end_watch.send_replace(end);
        tracing::warn!(
            from = before,
            to = end,
            dropped_bytes = before.saturating_sub(end),
            "cut the commit log back and rebuilt the index from it"
        );
        Ok(end)
    }
}
