//! The broker's storage engine: the commit log and the RocksDB index derived from it.
//!
//! The store owns:
//! - the **commit log** (`data_dir/commitlog/`): append-only segment files holding one
//!   self-checking record per message. The log is the truth.
//! - the **index** (`data_dir/index/`, one RocksDB database): consume queues, queue heads,
//!   message-id and key lookups and the dispatch checkpoint. It is derived from the log and
//!   rebuilt from it at open when it lags; entries never point past the log's end. Other
//!   subsystems keep their own column families in the same database ([`MessageStore::kv`]).
//! - the **write queue** and its writer (group commit: a send writes on its own task when the
//!   store is idle, the writer thread drains under load) and, with [`FlushMode::Async`], the
//!   flusher thread.
//!
//! Files: [`record`] (on-disk format), `segment_name` (segment file names), [`commitlog`]
//! (segments), [`keys`] (every key encoding), [`kv`] (key-value layer), [`values`] (the
//! primary values the upgrade rewrites), `config` (settings, retention policy),
//! [`index`] (keys and dispatch), `write_queue` (who writes: leader/follower group commit),
//! `writer` (group commit, flusher), `recovery` (open-time checks), [`format`] (the index
//! format version and the rebuild of the derived state), [`foreign`] (refusing a
//! data dir or segment Apogee did not write), [`epochs`] (the master epochs this member's log
//! holds, for automatic failover),
//! [`wakeups`] (per-queue wake-ups of long-polling readers).

mod cold;
pub mod commitlog;
mod config;
pub mod epochs;
mod fail_stop;
pub mod foreign;
pub mod format;
pub mod index;
pub mod keys;
pub mod kv;
pub mod lite;
mod lookup;
pub mod record;
mod recovery;
pub use recovery::IndexRebuild;
mod replica_log;
pub mod retention;
pub mod schedule_index;
mod segment_name;
mod syncer;
pub mod txn_index;
mod upgrade;
pub(crate) use upgrade::DATA_FORMAT_VERSION;
pub mod values;
pub mod wakeups;
mod write_queue;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fail_stop;
#[cfg(test)]
mod tests_lite;
#[cfg(test)]
mod tests_page_cache;
#[cfg(test)]
mod tests_rebuild;
#[cfg(test)]
mod tests_recovery;
#[cfg(test)]
mod tests_replica;
#[cfg(test)]
mod tests_retention;
#[cfg(test)]
mod tests_unlogged;
#[cfg(test)]
mod tests_write_queue;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use tokio::sync::oneshot;

pub use cold::{ColdSegments, LocalRetention, COLD_CACHE_DIR};
pub use commitlog::CommitLog;
pub use config::{
    disk_ratios, FlushMode, RetentionPolicy, StoreConfig, DEFAULT_ASYNC_FLUSH_INTERVAL,
    DEFAULT_CACHED_TAIL_BYTES, DEFAULT_MAX_RECORD_SIZE, DEFAULT_PREALLOCATE_BYTES,
    DEFAULT_SEGMENT_SIZE,
};
pub use epochs::{EpochFile, EpochStart};
pub use format::{RebuildCause, RebuildProgress};
pub use index::{tag_hash, QueueEntry};
pub use keys::prefix_end;
pub use kv::{Cf, KvBatch, KvOp, KvPair, KvStore, MemKv, RocksKv};
pub use lite::LiteQueueInfo;
pub use record::{NewMessage, StoredMessage};
pub use replica_log::{DroppedRecords, LogSlice, RecordMark};
pub use retention::{DiskSpace, RetentionPass};
pub use segment_name::{segment_file_name, SEGMENT_NAME_DIGITS};
pub use wakeups::{QueueWatch, Wakeups};
pub use writer::ReplicaAppend;

use kv::Cf as C;
use write_queue::WriteQueue;
use writer::{Command, Writer};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// Damage in the middle of the log: the broker refuses to start.
    #[error("commit log corrupt at log offset {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    #[error("index error: {0}")]
    Index(String),
    #[error("record of {size} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge { size: usize, max: usize },
    /// A field does not fit the record format (e.g. a string over 65535 bytes).
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// The log offset is not (or no longer) in the log.
    #[error("log offset {offset} is outside the commit log [{start}, {end})")]
    OffsetOutOfRange { offset: u64, start: u64, end: u64 },
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// The data directory cannot be used (missing permission, another broker holds it, ...).
    #[error("data dir {}: {reason}", dir.display())]
    DataDir { dir: PathBuf, reason: String },
    /// A write or fdatasync failed earlier; the store accepts no more writes until restarted.
    #[error("the store stopped accepting writes: {0}")]
    Failed(String),
    #[error("the store is closed")]
    Closed,
    /// No room for the records (the disk is full, or above the refuse ratio). Nothing of the
    /// refused request is stored; reads keep working and appends resume when space returns.
    #[error("{0}")]
    StorageFull(String),
    /// This store is a slave's copy: only its master's records are written to it.
    #[error("this broker is a slave: {0}")]
    Replica(String),
    /// SYNC_MASTER: the records ARE stored (and indexed) here, but no slave confirmed them.
    #[error("stored on this broker but not replicated: {reason}")]
    NotReplicated {
        results: Vec<AppendResult>,
        /// A slave was in sync but did not confirm in time (else none was in sync).
        timed_out: bool,
        reason: String,
    },
    /// The index was written by a newer Apogee (`format.rs`): nothing was written to it.
    #[error(
        "the index has format version {found}, newer than this binary's {supported}: it was \
         written by a newer Apogee; run that version (or newer) on this data directory. \
         Nothing was changed"
    )]
    IndexFormatNewer { found: u32, supported: u32 },
    /// The primary state was written by a newer Apogee (`upgrade.rs`): nothing was written.
    #[error(
        "the index's primary state has data format {found}, newer than this binary's \
         {supported}: it was written by a newer Apogee; run that version (or newer) on this \
         data directory. Nothing was changed"
    )]
    DataFormatNewer { found: u32, supported: u32 },
    /// A record below the local log could not be read from the cold store (the object
    /// store is down, slow or refusing): nothing is lost, the read may be tried again.
    #[error("reading a tiered segment failed: {0}")]
    Cold(String),
}

/// The one mapping of store errors to what a client or operator sees.
impl From<StoreError> for apogee_proto::ApogeeError {
    fn from(e: StoreError) -> Self {
        use apogee_proto::ApogeeError as A;
        match e {
            StoreError::Replica(_) => A::Forbidden(e.to_string()),
            StoreError::NotReplicated {
                timed_out: true,
                reason,
                ..
            } => A::SlavePersistenceTimeout(reason),
            StoreError::NotReplicated { reason, .. } => A::NotReplicated(reason),
            StoreError::StorageFull(reason) => A::StorageFull(reason),
            StoreError::Cold(_) => A::Unavailable(e.to_string()),
            StoreError::MessageTooLarge { size, max } => A::PayloadTooLarge(format!(
                "a record of {size} bytes exceeds the store limit of {max} bytes"
            )),
            other => A::internal(other),
        }
    }
}

/// Where an appended message landed.
#[derive(Clone, Copy, Debug)]
pub struct AppendResult {
    pub queue_offset: u64,
    pub log_offset: u64,
    pub store_timestamp_ms: i64,
}

/// State shared by the store handle, the writer and the flusher.
pub(crate) struct Shared {
    pub(crate) config: StoreConfig,
    pub(crate) log: CommitLog,
    pub(crate) kv: Arc<dyn KvStore>,
    pub(crate) wakeups: Wakeups,
    /// SYNC flush: appends waiting for an fdatasync.
    pub(crate) flush_waits: syncer::FlushWaits,
    /// SYNC_MASTER appends waiting for a slave.
    pub(crate) replicas: replica_log::ReplicaWaits,
    /// A slave's copy (`append` refused): `config.replica` at open, then the broker's role.
    replica: AtomicBool,
    /// Whether appends are taken (the opposite of `replica`), for sends that wait out a
    /// promotion ([`MessageStore::wait_takes_writes`]).
    takes_writes: tokio::sync::watch::Sender<bool>,
    /// Appends wait for slaves (`replica_log.rs`): `config.sync_replicas` at open, then the
    /// broker's role and the ack rule.
    sync_replicas: AtomicBool,
    /// Which master epoch wrote which part of the log (`epochs.rs`).
    pub(crate) epochs: EpochFile,
    /// The log end, for the replication streamers.
    pub(crate) end_watch: tokio::sync::watch::Sender<u64>,
    /// Why the store stopped accepting writes, once it did (see [`MessageStore::failed`]).
    failure: fail_stop::Failure,
    /// Why appends are refused for lack of space, while they are ([`retention`]).
    storage_full: Mutex<Option<String>>,
    /// The retention policy in force: `config.retention` at open, changed at runtime by
    /// [`MessageStore::set_retention`].
    pub(crate) retention: Mutex<RetentionPolicy>,
    /// Taken by whatever removes or rewrites consume-queue entries and queue-head rows other
    /// than by appending: retention's pruning (one queue at a time), a topic purge and a
    /// slave's cut-back. Appends need not take it, because pruning never touches a queue at or
    /// past the next offset it read. The value counts the cut-backs (each rebuilds the whole
    /// index), so a retention pass that began before one can tell and start again.
    pub(crate) index_epoch: Mutex<u64>,
    /// Lite queues per parent and in all (`lite.rs`), kept by the writer.
    pub(crate) lite: lite::LiteCounts,
    /// When retention evicts local copies of segments a cold store holds (`cold.rs`).
    pub(crate) local_retention: Mutex<LocalRetention>,
}

impl Shared {
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.get()
    }
    /// Records the first failure (later ones keep it) and wakes [`MessageStore::failed`].
    pub(crate) fn set_failed(&self, reason: String) {
        self.failure.set(reason);
    }
    pub(crate) fn storage_full(&self) -> Option<String> {
        self.storage_full.lock().clone()
    }
    /// Whether appends wait for slaves now.
    pub(crate) fn sync_replicas(&self) -> bool {
        self.sync_replicas.load(Ordering::SeqCst)
    }
}

/// How an open treats the derived state (`format.rs`).
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Drop and rebuild the derived state from the log even when its format is current
    /// (`apogee-broker --rebuild-index`).
    pub rebuild_index: bool,
    /// Where a rebuild at this open reports how far it is (`/readyz`).
    pub progress: RebuildProgress,
}

/// A background thread's stop signal (dropped to stop it) and handle.
type StopAndJoin = (mpsc::Sender<()>, JoinHandle<()>);

/// The commit log, its index and the writer. Cheap reads from any thread; appends are
/// funnelled through the write queue.
pub struct MessageStore {
    shared: Arc<Shared>,
    writes: Arc<WriteQueue>,
    writer: Mutex<Option<JoinHandle<()>>>,
    flusher: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
    /// The thread expiring slave waits: started at open with `sync_replicas`, else when a
    /// broker becomes a SYNC master while running; the flag says the store shut down.
    replica_timer: Mutex<(bool, Option<StopAndJoin>)>,
    syncer: Mutex<Option<JoinHandle<()>>>,
    rebuilt: Option<IndexRebuild>,
    retention: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

impl MessageStore {
    /// Opens (creating if needed) the log and the RocksDB index, and runs recovery.
    pub fn open(config: StoreConfig) -> Result<Arc<MessageStore>, StoreError> {
        Self::open_wrapped(config, |kv| kv)
    }

    /// Like [`open`](Self::open) with `options`.
    pub fn open_with(
        config: StoreConfig,
        options: OpenOptions,
    ) -> Result<Arc<MessageStore>, StoreError> {
        Self::open_wrapped_with(config, options, |kv| kv)
    }

    /// Like [`open`](Self::open), with the RocksDB index passed through `wrap` first (the
    /// store and every user of [`kv`](Self::kv) see the wrapped one).
    pub fn open_wrapped(
        config: StoreConfig,
        wrap: impl FnOnce(Arc<dyn KvStore>) -> Arc<dyn KvStore>,
    ) -> Result<Arc<MessageStore>, StoreError> {
        Self::open_wrapped_with(config, OpenOptions::default(), wrap)
    }

    /// Like [`open_wrapped`](Self::open_wrapped) with `options`.
    pub fn open_wrapped_with(
        config: StoreConfig,
        options: OpenOptions,
        wrap: impl FnOnce(Arc<dyn KvStore>) -> Arc<dyn KvStore>,
    ) -> Result<Arc<MessageStore>, StoreError> {
        config.validate()?;
        let data_dir = |reason: String| StoreError::DataDir {
            dir: config.data_dir.clone(),
            reason,
        };
        // Before RocksDB creates anything: a directory Apogee did not write is left as it is.
        foreign::check_data_dir(&config.data_dir)?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| data_dir(format!("cannot create it: {e}")))?;
        let kv = RocksKv::open(config.data_dir.join("index")).map_err(|e| match e {
            StoreError::Index(m) if m.contains("lock") && m.contains("unavailable") => {
                data_dir("in use by another broker process (its index lock is held)".into())
            }
            other => other,
        })?;
        // Before anything reads or writes the index, and on the bare database: the upgrade
        // of the primary state is this member's own, never published to slaves (`upgrade.rs`).
        upgrade::run(&kv)?;
        Self::open_with_kv_options(config, wrap(Arc::new(kv)), options)
    }

    /// Like [`open`](Self::open) over a given index database (e.g. [`MemKv`] in tests).
    pub fn open_with_kv(
        config: StoreConfig,
        kv: Arc<dyn KvStore>,
    ) -> Result<Arc<MessageStore>, StoreError> {
        Self::open_with_kv_options(config, kv, OpenOptions::default())
    }

    /// Like [`open_with_kv`](Self::open_with_kv) with `options`.
    pub fn open_with_kv_options(
        config: StoreConfig,
        kv: Arc<dyn KvStore>,
        options: OpenOptions,
    ) -> Result<Arc<MessageStore>, StoreError> {
        config.validate()?;
        // Before the log is opened or anything written: an index of a newer format is not ours
        // to touch.
        format::refuse_newer(kv.as_ref())?;
        let prealloc = commitlog::Preallocation {
            ahead: config.preallocate_bytes,
            limit: config.segment_size,
        };
        let log = CommitLog::open(
            &config.data_dir.join(foreign::COMMITLOG_DIR),
            prealloc,
            config.cached_tail_bytes,
        )?;
        let failure = fail_stop::Failure::new();
        let kv = fail_stop::FailStopKv::wrap(kv, failure.clone());
        let rebuilding = Self::prepare_rebuild(&log, kv.as_ref(), &options)?;
        let recovered = recovery::recover(&log, kv.as_ref(), config.max_record_size, rebuilding)?;
        tracing::info!(
            log_start = log.start_offset(),
            log_end = log.end_offset(),
            segments = log.segments().len(),
            "message store opened"
        );
        let flush_mode = config.flush_mode;
        let sync_replicas = config.sync_replicas;
        let end = log.end_offset();
        let epochs = EpochFile::open(&config.data_dir)?;
        let shared = Arc::new(Shared {
            replica: AtomicBool::new(config.replica),
            takes_writes: tokio::sync::watch::channel(!config.replica).0,
            sync_replicas: AtomicBool::new(config.sync_replicas),
            epochs,
            retention: Mutex::new(config.retention.clone()),
            config,
            log,
            kv,
            wakeups: Wakeups::new(),
            flush_waits: syncer::FlushWaits::default(),
            replicas: replica_log::ReplicaWaits::default(),
            end_watch: tokio::sync::watch::channel(end).0,
            failure,
            storage_full: Mutex::new(None),
            index_epoch: Mutex::new(0),
            lite: lite::LiteCounts::default(),
            local_retention: Mutex::new(LocalRetention::default()),
        });
        let (kick, syncer) = if flush_mode == FlushMode::Sync {
            let (kick, kicks) = mpsc::channel();
            let s = shared.clone();
            let handle = std::thread::Builder::new()
                .name("apogee-store-sync".into())
                .spawn(move || syncer::run_syncer(s, kicks))?;
            (Some(kick), Some(handle))
        } else {
            (None, None)
        };
        let rebuilt = recovered.rebuilt;
        let writer = Writer::new(
            shared.clone(),
            recovered.heads,
            recovered.last_store_ts,
            kick,
        );
        let writes = WriteQueue::new(writer);
        let writer = {
            let w = writes.clone();
            std::thread::Builder::new()
                .name("apogee-store-writer".into())
                .spawn(move || w.run_thread())?
        };
        let flusher = if flush_mode == FlushMode::Async {
            let (stop_tx, stop_rx) = mpsc::channel();
            let s = shared.clone();
            let handle = std::thread::Builder::new()
                .name("apogee-store-flusher".into())
                .spawn(move || writer::run_flusher(s, stop_rx))?;
            Some((stop_tx, handle))
        } else {
            None
        };
        let replica_timer = if sync_replicas {
            Some(replica_log::spawn_replica_timer(shared.clone())?)
        } else {
            None
        };
        let retention = {
            let (stop_tx, stop_rx) = mpsc::channel();
            let (s, w) = (shared.clone(), writes.clone());
            let handle = std::thread::Builder::new()
                .name("apogee-store-retention".into())
                .spawn(move || retention::run_retention(s, w, stop_rx))?;
            (stop_tx, handle)
        };
        Ok(Arc::new(MessageStore {
            shared,
            rebuilt,
            retention: Mutex::new(Some(retention)),
            writes,
            writer: Mutex::new(Some(writer)),
            flusher: Mutex::new(flusher),
            replica_timer: Mutex::new((false, replica_timer)),
            syncer: Mutex::new(syncer),
        }))
    }

    /// Decides whether this open rebuilds the derived state (`format.rs`) and, when it does,
    /// empties the derived tables for recovery to refill.
    fn prepare_rebuild(
        log: &CommitLog,
        kv: &dyn KvStore,
        options: &OpenOptions,
    ) -> Result<Option<recovery::Rebuilding>, StoreError> {
        let has_records = log.end_offset() > log.start_offset();
        let Some(plan) = format::plan(kv, has_records, options.rebuild_index)? else {
            return Ok(None);
        };
        let topic_configs_lost = has_records && format::topic_configs_lost(kv)?;
        format::drop_derived(
            kv,
            format::Carry::Marks { found: plan.found },
            log.start_offset(),
        )?;
        Ok(Some(recovery::Rebuilding {
            cause: plan.cause,
            progress: options.progress.clone(),
            topic_configs_lost,
        }))
    }

    /// Appends a batch (all messages of one send request); its records are contiguous in the
    /// log. Returns once the records are written, fdatasync'ed under [`FlushMode::Sync`], and
    /// indexed. Dropping the future does not cancel the append. When no other write is under
    /// way, the records are written on the calling thread (a few microseconds of blocking file
    /// and RocksDB writes; see `write_queue.rs`): before the first await when no other send is
    /// in flight, else after one yield that lets the sends runnable beside it join the group.
    pub async fn append(&self, msgs: Vec<NewMessage>) -> Result<Vec<AppendResult>, StoreError> {
        if msgs.is_empty() {
            return Ok(Vec::new());
        }
        self.refuse_on_replica()?;
        if let Some(reason) = self.shared.storage_full() {
            return Err(StoreError::StorageFull(reason));
        }
        let in_flight = self.writes.enter();
        let (reply, rx) = oneshot::channel();
        if let Some(lead) = self.writes.append(msgs, reply)? {
            if in_flight.has_company() {
                // Let the sends that are ready to run on this worker queue up behind this one
                // first: they share its write. A lone send does not wait.
                tokio::task::yield_now().await;
            }
            self.writes.write_group(lead);
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Like [`append`](Self::append) for the broker's own records (dead letters, due scheduled
    /// messages, transaction ops): stored on this broker is enough, so "not replicated" counts
    /// as stored; those records reach the slaves with the rest of the log.
    pub async fn append_internal(
        &self,
        msgs: Vec<NewMessage>,
    ) -> Result<Vec<AppendResult>, StoreError> {
        match self.append(msgs).await {
            Err(StoreError::NotReplicated { results, .. }) => Ok(results),
            other => other,
        }
    }

    /// What this open's rebuild of the derived state found in the log, when it rebuilt.
    pub fn index_rebuild(&self) -> Option<&IndexRebuild> {
        self.rebuilt.as_ref()
    }

    fn refuse_on_replica(&self) -> Result<(), StoreError> {
        if self.is_replica() {
            return Err(StoreError::Replica(
                "its log only takes its master's records".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn send_command(&self, cmd: Command) -> Result<(), StoreError> {
        self.writes.submit(cmd)
    }

    /// Up to `max_count` consecutive messages of a queue from the first entry at or after
    /// `from_offset` (no tag filtering). Stops before the bodies exceed `max_bytes`, but returns
    /// at least one message when there is one.
    pub fn read_queue(
        &self,
        topic: &str,
        queue_id: u32,
        from_offset: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for e in self.queue_entries(topic, queue_id, from_offset, max_count)? {
            let m = match self.read_at(e.log_offset, e.size) {
                Ok(m) => m,
                // Its segment was deleted by retention after the entry was read: the queue
                // now starts later, and so does this read.
                Err(StoreError::OffsetOutOfRange { offset, start, .. }) if offset < start => {
                    continue
                }
                Err(e) => return Err(e),
            };
            if m.msg.topic != topic
                || m.msg.queue_id != queue_id
                || m.queue_offset != e.queue_offset
            {
                return Err(StoreError::Index(format!(
                    "consume-queue entry {topic}/{queue_id}@{} points at a record of {}/{}@{}",
                    e.queue_offset, m.msg.topic, m.msg.queue_id, m.queue_offset
                )));
            }
            bytes += m.msg.body.len();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(m);
        }
        Ok(out)
    }

    /// Just the consume-queue entries (cheap: no log reads), consecutive from the first entry
    /// at or after `from_offset`.
    pub fn queue_entries(
        &self,
        topic: &str,
        queue_id: u32,
        from_offset: u64,
        max_count: usize,
    ) -> Result<Vec<QueueEntry>, StoreError> {
        let prefix = keys::queue_key(topic, queue_id);
        let from = keys::cq_key(topic, queue_id, from_offset);
        let rows = self
            .shared
            .kv
            .scan(C::ConsumeQueue, &from, &prefix_end(&prefix), max_count)?;
        let mut out: Vec<QueueEntry> = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            let e = QueueEntry::decode(&k, &v)?;
            if out
                .last()
                .is_some_and(|p| p.queue_offset + 1 != e.queue_offset)
            {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }

    /// Reads and validates the record of `size` bytes at `log_offset`.
    pub fn read_at(&self, log_offset: u64, size: u32) -> Result<StoredMessage, StoreError> {
        self.shared.log.read_record(log_offset, size)
    }

    /// (min offset still readable, next offset to be assigned); (0, 0) for an unknown queue.
    pub fn queue_bounds(&self, topic: &str, queue_id: u32) -> Result<(u64, u64), StoreError> {
        let key = keys::queue_key(topic, queue_id);
        let Some(row) = self.shared.kv.get(C::QueueHead, &key)? else {
            return Ok((0, 0));
        };
        let next = index::next_offset(self.shared.kv.as_ref(), &key, index::u64_value(&row)?)?;
        let first = self
            .shared
            .kv
            .scan(C::ConsumeQueue, &key, &prefix_end(&key), 1)?;
        let min = match first.first() {
            Some((k, _)) => keys::trailing_u64(k).unwrap_or(next).min(next),
            None => next,
        };
        Ok((min, next))
    }

    /// First queue offset whose store time is >= `ts_ms` (the next offset if none).
    pub fn queue_offset_for_time(
        &self,
        topic: &str,
        queue_id: u32,
        ts_ms: i64,
    ) -> Result<u64, StoreError> {
        let (mut lo, mut hi) = self.queue_bounds(topic, queue_id)?;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let key = keys::cq_key(topic, queue_id, mid);
            let Some(v) = self.shared.kv.get(C::ConsumeQueue, &key)? else {
                return Err(StoreError::Index(format!(
                    "consume queue {topic}/{queue_id} has no entry {mid}"
                )));
            };
            if QueueEntry::decode(&key, &v)?.store_timestamp_ms >= ts_ms {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }

    /// Registers interest in `queue_ids` of `topic`: the watch wakes once entries appended to
    /// one of them are readable. Make it before reading the queues so no append is missed.
    pub fn watch_queues(&self, topic: &str, queue_ids: &[u32]) -> QueueWatch<'_> {
        self.shared.wakeups.watch(topic, queue_ids)
    }

    /// The wake-up registry of this store's appends (long-lived listeners register here).
    pub fn wakeups(&self) -> &Wakeups {
        &self.shared.wakeups
    }

    /// The shared index database, for other subsystems' column families.
    /// Waits until the store stops accepting writes (a failed write or fdatasync: the
    /// state of the files cannot be trusted until a restart recovers from the log) and
    /// returns why. Pending for as long as the store is sound.
    pub async fn failed(&self) -> String {
        self.shared.failure.wait().await
    }

    pub fn kv(&self) -> Arc<dyn KvStore> {
        self.shared.kv.clone()
    }

    /// Log offset just past the last written record.
    pub fn log_end_offset(&self) -> u64 {
        self.shared.log.end_offset()
    }

    /// First log offset readable: on local disk, or in a cold store's run of segments that
    /// ends where the local log begins (`cold.rs`).
    pub fn log_start_offset(&self) -> u64 {
        self.shared.log.first_offset()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.shared.config.data_dir
    }

    /// First log offset on local disk.
    pub fn local_start_offset(&self) -> u64 {
        self.shared.log.start_offset()
    }

    /// Reads below the local log go to `cold` from now on, and retention evicts the local
    /// copies of the segments it holds by `local` (module doc of `cold.rs`).
    pub fn attach_cold(&self, cold: Arc<dyn ColdSegments>, local: LocalRetention) {
        *self.shared.local_retention.lock() = local;
        self.shared.log.attach_cold(cold);
    }

    /// Everything below this log offset is on stable storage.
    pub fn flushed_offset(&self) -> u64 {
        self.shared.log.flushed_offset()
    }

    /// fdatasyncs of the commit log since open.
    pub fn sync_count(&self) -> u64 {
        self.shared.log.sync_count()
    }

    /// The commit log's sealed segments (every one but the last), oldest first.
    pub fn sealed_segments(&self) -> Vec<Arc<commitlog::Segment>> {
        let mut segments = self.shared.log.segments();
        segments.pop();
        segments
    }

    /// The cold store's retention cut (`cold.rs`): below it nothing is indexed, and the
    /// cold store may delete what it holds there.
    pub fn cold_floor(&self) -> u64 {
        self.shared.log.cold_floor()
    }

    /// Raw log bytes from `log_offset` (at most `max`, never across a segment end), for
    /// replication. Empty at the end of the log.
    pub fn read_log_bytes(&self, log_offset: u64, max: usize) -> Result<Vec<u8>, StoreError> {
        self.shared.log.read_bytes(log_offset, max)
    }

    /// Deletes the topic's consume queues, queue heads and key entries (topic delete); the topic
    /// then restarts at queue offset 0. Message-id entries stay (they are global and checked on
    /// lookup). A purge mark (the log end, in `meta`, replicated) goes in the same batch, so a
    /// rebuild of the index from the log does not index the topic's older records again.
    /// Serialized with appends on the writer thread; blocks until done.
    pub fn purge_topic(&self, topic: &str) -> Result<(), StoreError> {
        self.refuse_on_replica()?;
        let (reply, rx) = mpsc::sync_channel(1);
        self.send_command(Command::PurgeTopic {
            topic: topic.to_string(),
            reply,
        })?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// Flushes and stops the writer; further appends get [`StoreError::Closed`]. Idempotent.
    /// Reads keep working. The index database closes when the last handle to it (this store
    /// and the [`kv`](Self::kv) clones) is dropped; reopening the same directory needs that.
    pub fn shutdown(&self) {
        // First: it submits writer commands.
        if let Some((stop, handle)) = self.retention.lock().take() {
            drop(stop);
            let _ = handle.join();
        }
        if let Some((stop, handle)) = self.flusher.lock().take() {
            drop(stop);
            let _ = handle.join();
        }
        self.writes.close();

        if let Some(handle) = self.writer.lock().take() {
            if handle.join().is_err() {
                tracing::error!("the store writer thread panicked");
            }
        }
        // After the writer (which owns the sync thread's kicks): its last pass answers the rest.
        if let Some(handle) = self.syncer.lock().take() {
            let _ = handle.join();
        }
        // After the writer: it registers no more waits, and the timer answers the rest.
        let timer = {
            let mut timer = self.replica_timer.lock();
            timer.0 = true;
            timer.1.take()
        };
        if let Some((stop, handle)) = timer {
            drop(stop);
            let _ = handle.join();
        }
    }
}

impl Drop for MessageStore {
    fn drop(&mut self) {
        self.shutdown();
    }
}
