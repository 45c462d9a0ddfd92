//! The key-value layer under the index: a small trait, the RocksDB engine and an in-memory twin.
//!
//! One database per broker holds every subsystem's tables, one column family per [`Cf`].
//! Keys sort bytewise, so callers encode integers big-endian and fixed-width. A [`KvBatch`] is
//! applied atomically.
//!
//! Two kinds of write, by what makes them durable:
//! - a **logged** batch (the default) goes through RocksDB's write-ahead log without a sync:
//!   primary state, and the few derived writes that are not dispatch ([`KvStore::flush`]
//!   syncs the log);
//! - an **unlogged** batch ([`KvBatch::unlogged`]: derived column families only, refused
//!   otherwise) skips RocksDB's WAL. The commit log is its log: the writer's and recovery's
//!   dispatch batches carry the dispatched checkpoint, and RocksDB's atomic flush writes the
//!   memtables of every column family out together, so after a kill -9 the derived families
//!   hold exactly the unlogged batches up to the last flush (a prefix, checkpoint included),
//!   plus the logged writes since, which RocksDB replays from its WAL. Recovery re-dispatches
//!   the log from that checkpoint (`recovery.rs`). [`RocksKv`] asks for a background flush
//!   after every [`UNLOGGED_FLUSH_BYTES`] unlogged, which bounds that re-dispatch.
//!
//! [`MemKv`], the in-memory twin, keeps the same contract: [`MemKv::after_kill`] is what a
//! kill -9 would leave (the last flush, then the logged batches since).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::Path;

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, FlushOptions, Options, ReadOptions,
    WriteBatch, WriteOptions, DB,
};

use super::StoreError;

/// A column family. Each has a fixed name in RocksDB (see [`Cf::name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cf {
    ConsumeQueue,
    QueueHead,
    MessageId,
    MessageKey,
    ConsumerOffset,
    ConsumeState,
    TopicConfig,
    GroupConfig,
    Checkpoint,
    Transaction,
    Schedule,
    Meta,
}

impl Cf {
    pub const ALL: [Cf; 12] = [
        Cf::ConsumeQueue,
        Cf::QueueHead,
        Cf::MessageId,
        Cf::MessageKey,
        Cf::ConsumerOffset,
        Cf::ConsumeState,
        Cf::TopicConfig,
        Cf::GroupConfig,
        Cf::Checkpoint,
        Cf::Transaction,
        Cf::Schedule,
        Cf::Meta,
    ];

    /// The RocksDB column family name. Never change one: it names data on disk.
    pub fn name(self) -> &'static str {
        match self {
            Cf::ConsumeQueue => "consume_queue",
            Cf::QueueHead => "queue_head",
            Cf::MessageId => "message_id",
            Cf::MessageKey => "message_key",
            Cf::ConsumerOffset => "consumer_offset",
            Cf::ConsumeState => "consume_state",
            Cf::TopicConfig => "topic_config",
            Cf::GroupConfig => "group_config",
            Cf::Checkpoint => "checkpoint",
            Cf::Transaction => "transaction",
            Cf::Schedule => "schedule",
            Cf::Meta => "meta",
        }
    }
}

impl Cf {
    /// The column families derived from the commit log: dropped and rebuilt from it when the
    /// index format changes (`format.rs`), on `--rebuild-index`, and on a slave's cut-back.
    /// The rest are primary state, which exists nowhere else.
    pub const DERIVED: [Cf; 7] = [
        Cf::ConsumeQueue,
        Cf::QueueHead,
        Cf::MessageId,
        Cf::MessageKey,
        Cf::Checkpoint,
        Cf::Transaction,
        Cf::Schedule,
    ];

    /// The column families of primary state: kept by a rebuild, replicated to slaves (`meta`
    /// only its replicated keys), migrated by `upgrade.rs`. Every other one is derived.
    pub const PRIMARY: [Cf; 5] = [
        Cf::ConsumerOffset,
        Cf::ConsumeState,
        Cf::TopicConfig,
        Cf::GroupConfig,
        Cf::Meta,
    ];

    /// Whether this column family is derived from the commit log ([`Cf::DERIVED`]).
    pub fn is_derived(self) -> bool {
        Cf::DERIVED.contains(&self)
    }

    /// The column family with this on-disk name.
    pub fn from_name(name: &str) -> Option<Cf> {
        Cf::ALL.into_iter().find(|cf| cf.name() == name)
    }
}

/// Whether a row of `cf` at `key` travels to slaves on the replication stream: the state that
/// is not derived from the log (consumer offsets, consume state, topic and group configs) and
/// the `meta` keys the registry marks replicated ([`super::keys::MetaKey`]).
pub fn replicated(cf: Cf, key: &[u8]) -> bool {
    match cf {
        Cf::Meta => super::keys::MetaKey::replicates(key),
        other => !other.is_derived(),
    }
}

/// One operation of a [`KvBatch`], borrowed (see [`KvBatch::ops`]).
#[derive(Clone, Copy, Debug)]
pub enum KvOp<'a> {
    Put(Cf, &'a [u8], &'a [u8]),
    Delete(Cf, &'a [u8]),
    /// Keys in `[from, to)`; an empty `to` is unbounded.
    DeleteRange(Cf, &'a [u8], &'a [u8]),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Put,
    Delete,
    DeleteRange,
}

/// One operation of a [`KvBatch`]: its key (or range start) is `bytes[at..]` for `key_len`
/// bytes, its value (or range end) the `value_len` bytes after it.
#[derive(Clone, Copy, Debug)]
struct Op {
    kind: OpKind,
    cf: Cf,
    at: usize,
    key_len: usize,
    value_len: usize,
}

/// Writes applied together, in order, atomically by [`KvStore::write`].
///
/// The keys and values of all its operations sit back to back in one buffer: adding an
/// operation copies its bytes once and allocates nothing once the buffer has grown (a
/// writer's group of 32 records is one batch of ~70 operations). Key encoders write straight
/// into that buffer through [`KvBatch::put_built`].
#[derive(Clone, Debug, Default)]
pub struct KvBatch {
    bytes: Vec<u8>,
    ops: Vec<Op>,
    unlogged: bool,
}

impl KvBatch {
    pub fn new() -> Self {
        Self::default()
    }
    /// A batch with room for `ops` operations with `bytes` bytes of keys and values in all.
    pub fn with_capacity(ops: usize, bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            ops: Vec::with_capacity(ops),
            unlogged: false,
        }
    }
    /// This batch, written without RocksDB's WAL (module doc). Only for batches of derived
    /// column families that recovery re-creates from the log when a crash drops them: the
    /// dispatch of records together with the dispatched checkpoint, and what recovery writes.
    pub fn unlogged(mut self) -> Self {
        self.unlogged = true;
        self
    }
    /// Whether the batch skips RocksDB's WAL ([`unlogged`](Self::unlogged)).
    pub fn is_unlogged(&self) -> bool {
        self.unlogged
    }
    /// An unlogged batch's refusal when it touches primary state (which has no other log).
    fn check_unlogged(&self) -> Result<(), StoreError> {
        if !self.unlogged {
            return Ok(());
        }
        match self.ops.iter().find(|op| !op.cf.is_derived()) {
            Some(op) => Err(StoreError::Index(format!(
                "an unlogged index write touches column family {}, which is primary state",
                op.cf.name()
            ))),
            None => Ok(()),
        }
    }
    /// Bytes of keys and values.
    fn byte_len(&self) -> usize {
        self.bytes.len()
    }
    fn push(&mut self, kind: OpKind, cf: Cf, write_key: impl FnOnce(&mut Vec<u8>), value: &[u8]) {
        let at = self.bytes.len();
        write_key(&mut self.bytes);
        let key_len = self.bytes.len() - at;
        self.bytes.extend_from_slice(value);
        self.ops.push(Op {
            kind,
            cf,
            at,
            key_len,
            value_len: value.len(),
        });
    }
    pub fn put(&mut self, cf: Cf, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let key = key.as_ref();
        self.push(
            OpKind::Put,
            cf,
            |b| b.extend_from_slice(key),
            value.as_ref(),
        );
    }
    /// A put whose key `write_key` appends to the buffer it is given: the batch's own, so the
    /// key is not built elsewhere and copied in.
    pub fn put_built(&mut self, cf: Cf, write_key: impl FnOnce(&mut Vec<u8>), value: &[u8]) {
        self.push(OpKind::Put, cf, write_key, value);
    }
    pub fn delete(&mut self, cf: Cf, key: impl AsRef<[u8]>) {
        let key = key.as_ref();
        self.push(OpKind::Delete, cf, |b| b.extend_from_slice(key), &[]);
    }
    /// Deletes every key in `[from, to)`.
    pub fn delete_range(&mut self, cf: Cf, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) {
        let from = from.as_ref();
        self.push(
            OpKind::DeleteRange,
            cf,
            |b| b.extend_from_slice(from),
            to.as_ref(),
        );
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// The operations, in order.
    pub fn ops(&self) -> impl Iterator<Item = KvOp<'_>> {
        self.ops.iter().map(|op| {
            let key_end = op.at + op.key_len;
            let key = &self.bytes[op.at..key_end];
            let value = &self.bytes[key_end..key_end + op.value_len];
            match op.kind {
                OpKind::Put => KvOp::Put(op.cf, key, value),
                OpKind::Delete => KvOp::Delete(op.cf, key),
                OpKind::DeleteRange => KvOp::DeleteRange(op.cf, key, value),
            }
        })
    }
    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// A key and its value.
pub type KvPair = (Vec<u8>, Vec<u8>);

type Table = BTreeMap<Vec<u8>, Vec<u8>>;

/// The index database as other subsystems see it.
pub trait KvStore: Send + Sync {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Applies the whole batch atomically.
    fn write(&self, batch: KvBatch) -> Result<(), StoreError>;
    /// Entries with `from <= key < to`, ascending, at most `limit`. An empty `to` means no upper
    /// bound; for a prefix scan pass `to = prefix_end(prefix)`.
    fn scan(&self, cf: Cf, from: &[u8], to: &[u8], limit: usize)
        -> Result<Vec<KvPair>, StoreError>;
    /// The entry with the greatest key in `[from, to)` (empty `to`: no upper bound).
    fn last_in(&self, cf: Cf, from: &[u8], to: &[u8]) -> Result<Option<KvPair>, StoreError>;
    /// Makes everything written so far durable, unlogged batches included: the real engine
    /// writes every memtable out in one atomic flush (so the next open replays no log either).
    fn flush(&self) -> Result<(), StoreError>;
    /// Empties the column families `cfs` and applies `then`, in one atomic write: a crash
    /// leaves either everything as it was or the tables empty with `then` applied.
    fn clear(&self, cfs: &[Cf], then: KvBatch) -> Result<(), StoreError> {
        let mut batch = KvBatch::with_capacity(cfs.len() + then.len(), 0);
        for &cf in cfs {
            batch.delete_range(cf, b"", b"");
        }
        for op in then.ops() {
            match op {
                KvOp::Put(cf, k, v) => batch.put(cf, k, v),
                KvOp::Delete(cf, k) => batch.delete(cf, k),
                KvOp::DeleteRange(cf, from, to) => batch.delete_range(cf, from, to),
            }
        }
        self.write(batch)
    }
}

fn rocks_err(e: rocksdb::Error) -> StoreError {
    StoreError::Index(e.into_string())
}

/// The real engine: RocksDB with one column family per [`Cf`], LZ4-compressed, with atomic
/// flush (module doc).
pub struct RocksKv {
    db: DB,
    /// Bytes of unlogged batches since the last flush was asked for.
    unlogged_since_flush: AtomicU64,
}

/// Most bytes of write-ahead log RocksDB keeps: past it, the memtables are flushed, so the
/// log can go. Without a bound RocksDB allows four times all memtables (12 column families x
/// 2 x 64 MiB: 6 GiB), and a column family written little but often keeps every log alive
/// until then; a start after a crash replays all of it. Only primary state and the derived
/// writes that are not dispatch go through this log.
pub const MAX_WAL_BYTES: u64 = 256 << 20;

/// Bytes of keys and values written unlogged after which [`RocksKv`] asks RocksDB for a
/// flush (in the background: the write does not wait for it). This bounds what a kill -9 may
/// leave to re-dispatch at the next start: about 32 MiB of index is some 300,000 records,
/// well under a second of recovery. RocksDB also flushes when a memtable fills (64 MiB).
pub const UNLOGGED_FLUSH_BYTES: u64 = 32 << 20;

impl RocksKv {
    /// Opens or creates the database at `path` with all column families.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_wal_bound(path, MAX_WAL_BYTES)
    }

    /// [`open`](Self::open) with another write-ahead log bound (0: RocksDB's own default).
    pub(crate) fn open_with_wal_bound(
        path: impl AsRef<Path>,
        max_wal_bytes: u64,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_keep_log_file_num(4);
        opts.set_max_total_wal_size(max_wal_bytes);
        // Every flush, asked for or automatic, writes all column families' memtables out as
        // one: the unlogged derived writes that survive a crash are a prefix (module doc).
        opts.set_atomic_flush(true);
        // Column families this version does not know (written by a newer one) must be listed to
        // open the database; keep them.
        let mut names: Vec<String> = Cf::ALL.iter().map(|c| c.name().to_string()).collect();
        if let Ok(existing) = DB::list_cf(&opts, path) {
            for n in existing {
                if n != "default" && !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        let cfs = names.into_iter().map(|n| {
            let mut o = Options::default();
            o.set_compression_type(DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(n, o)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(rocks_err)?;
        Ok(Self {
            db,
            unlogged_since_flush: AtomicU64::new(0),
        })
    }

    /// Flushes every column family's memtables in one atomic flush; `wait` for it to end.
    fn flush_all(&self, wait: bool) -> Result<(), StoreError> {
        let cfs = Cf::ALL
            .iter()
            .map(|&cf| self.cf(cf))
            .collect::<Result<Vec<_>, _>>()?;
        let mut fo = FlushOptions::default();
        fo.set_wait(wait);
        self.db.flush_cfs_opt(&cfs, &fo).map_err(rocks_err)
    }

    fn cf(&self, cf: Cf) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(cf.name())
            .ok_or_else(|| StoreError::Index(format!("column family {} missing", cf.name())))
    }

    fn bounded(from: &[u8], to: &[u8]) -> ReadOptions {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(from.to_vec());
        if !to.is_empty() {
            ro.set_iterate_upper_bound(to.to_vec());
        }
        ro
    }
}

impl KvStore for RocksKv {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf(self.cf(cf)?, key).map_err(rocks_err)
    }

    fn write(&self, batch: KvBatch) -> Result<(), StoreError> {
        batch.check_unlogged()?;
        // RocksDB's batch holds each operation's bytes with a tag and two lengths.
        let mut wb = WriteBatch::with_capacity_bytes(batch.byte_len() + 16 * batch.ops.len() + 12);
        // Each column family's handle looked up once per batch, not once per operation.
        let mut handles: [Option<&ColumnFamily>; Cf::ALL.len()] = [None; Cf::ALL.len()];
        let mut handle = |cf: Cf| -> Result<&ColumnFamily, StoreError> {
            match handles[cf as usize] {
                Some(h) => Ok(h),
                None => {
                    let h = self.cf(cf)?;
                    handles[cf as usize] = Some(h);
                    Ok(h)
                }
            }
        };
        for op in batch.ops() {
            match op {
                KvOp::Put(cf, k, v) => wb.put_cf(handle(cf)?, k, v),
                KvOp::Delete(cf, k) => wb.delete_cf(handle(cf)?, k),
                KvOp::DeleteRange(cf, from, to) => {
                    if to.is_empty() {
                        // Unbounded: RocksDB needs an end key, so end at the last existing key.
                        if let Some((last, _)) = self.last_in(cf, from, &[])? {
                            wb.delete_range_cf(handle(cf)?, from, &last);
                            wb.delete_cf(handle(cf)?, &last);
                        }
                    } else if from < to {
                        wb.delete_range_cf(handle(cf)?, from, to);
                    }
                }
            }
        }
        if !batch.is_unlogged() {
            return self.db.write(wb).map_err(rocks_err);
        }
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.db.write_opt(wb, &wo).map_err(rocks_err)?;
        let bytes = batch.byte_len() as u64;
        let since = self
            .unlogged_since_flush
            .fetch_add(bytes, Ordering::Relaxed)
            + bytes;
        if since >= UNLOGGED_FLUSH_BYTES {
            self.unlogged_since_flush.store(0, Ordering::Relaxed);
            self.flush_all(false)?;
        }
        Ok(())
    }

    fn scan(
        &self,
        cf: Cf,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 || (!to.is_empty() && from >= to) {
            return Ok(out);
        }
        let mut it = self
            .db
            .raw_iterator_cf_opt(self.cf(cf)?, Self::bounded(from, to));
        it.seek(from);
        while out.len() < limit {
            match (it.key(), it.value()) {
                (Some(k), Some(v)) => out.push((k.to_vec(), v.to_vec())),
                _ => break,
            }
            it.next();
        }
        it.status().map_err(rocks_err)?;
        Ok(out)
    }

    fn last_in(&self, cf: Cf, from: &[u8], to: &[u8]) -> Result<Option<KvPair>, StoreError> {
        if !to.is_empty() && from >= to {
            return Ok(None);
        }
        let mut it = self
            .db
            .raw_iterator_cf_opt(self.cf(cf)?, Self::bounded(from, to));
        it.seek_to_last();
        let found = match (it.key(), it.value()) {
            (Some(k), Some(v)) if k >= from && (to.is_empty() || k < to) => {
                Some((k.to_vec(), v.to_vec()))
            }
            _ => None,
        };
        it.status().map_err(rocks_err)?;
        Ok(found)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true).map_err(rocks_err)?;
        // Memtables out to tables too: the unlogged writes become durable, and the next open
        // has no WAL to replay (after a large backlog that replay took seconds).
        self.unlogged_since_flush.store(0, Ordering::Relaxed);
        self.flush_all(true)
    }
}

/// In-memory [`KvStore`] for unit tests: a `BTreeMap` per [`Cf`] behind one mutex, with the
/// engine's crash contract (module doc): [`flush`](KvStore::flush) takes a snapshot, and
/// [`after_kill`](MemKv::after_kill) is that snapshot with the logged batches since replayed.
#[derive(Default)]
pub struct MemKv {
    state: Mutex<MemState>,
}

#[derive(Default)]
struct MemState {
    live: HashMap<Cf, Table>,
    /// Every table at the last flush.
    flushed: HashMap<Cf, Table>,
    /// The logged batches since the last flush: what RocksDB's WAL would replay.
    logged_since_flush: Vec<KvBatch>,
}

impl MemKv {
    pub fn new() -> Self {
        Self::default()
    }

    /// The database a kill -9 now would leave: every table as at the last flush, then the
    /// logged batches written since, in order. Unlogged batches since the flush are gone.
    pub fn after_kill(&self) -> MemKv {
        let state = self.state.lock();
        let mut tables = state.flushed.clone();
        for batch in &state.logged_since_flush {
            apply(&mut tables, batch);
        }
        MemKv {
            state: Mutex::new(MemState {
                live: tables.clone(),
                flushed: tables,
                logged_since_flush: Vec::new(),
            }),
        }
    }
}

fn apply(maps: &mut HashMap<Cf, Table>, batch: &KvBatch) {
    for op in batch.ops() {
        match op {
            KvOp::Put(cf, k, v) => {
                maps.entry(cf).or_default().insert(k.to_vec(), v.to_vec());
            }
            KvOp::Delete(cf, k) => {
                maps.entry(cf).or_default().remove(k);
            }
            KvOp::DeleteRange(cf, from, to) => {
                if to.is_empty() || from < to {
                    let m = maps.entry(cf).or_default();
                    let doomed: Vec<Vec<u8>> = m
                        .range::<[u8], _>(range_of(from, to))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in doomed {
                        m.remove(&k);
                    }
                }
            }
        }
    }
}

fn range_of<'a>(from: &'a [u8], to: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    let hi = if to.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(to)
    };
    (Bound::Included(from), hi)
}

impl KvStore for MemKv {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .state
            .lock()
            .live
            .get(&cf)
            .and_then(|m| m.get(key).cloned()))
    }

    fn write(&self, batch: KvBatch) -> Result<(), StoreError> {
        batch.check_unlogged()?;
        let mut state = self.state.lock();
        apply(&mut state.live, &batch);
        if !batch.is_unlogged() {
            state.logged_since_flush.push(batch);
        }
        Ok(())
    }

    fn scan(
        &self,
        cf: Cf,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        if !to.is_empty() && from >= to {
            return Ok(Vec::new());
        }
        let state = self.state.lock();
        let Some(m) = state.live.get(&cf) else {
            return Ok(Vec::new());
        };
        Ok(m.range::<[u8], _>(range_of(from, to))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn last_in(&self, cf: Cf, from: &[u8], to: &[u8]) -> Result<Option<KvPair>, StoreError> {
        if !to.is_empty() && from >= to {
            return Ok(None);
        }
        let state = self.state.lock();
        let Some(m) = state.live.get(&cf) else {
            return Ok(None);
        };
        Ok(m.range::<[u8], _>(range_of(from, to))
            .next_back()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut state = self.state.lock();
        state.flushed = state.live.clone();
        state.logged_since_flush.clear();
        Ok(())
    }
}
