//! The journal of replicated key-value writes.
//!
//! Some state is not derived from the log and must travel beside it so a slave can serve
//! consumers where its master left off: consumer offsets, consume state (pop offsets,
//! in-flight and waiting entries), topic and group configs, and the `meta` keys that are not
//! `local.` (the receipt secret, data versions). [`JournaledKv`] wraps the broker's index
//! database: every write goes to it unchanged, and the part of a batch on replicated keys is
//! published, after the write, to the masters' replication sessions. Callers serialise the
//! writes of one key under their own locks, so the journal's order per key is the database's.
//!
//! On a slave cut off from its master, the same wrapper notes which consume queues the
//! broker changed itself (persisted as `local.handback.*` keys in `meta`), for the handback.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use apogee_proto::cluster::{state_op::Kind, StateOp};
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::consume::keys::QueueKey;
use crate::store::{prefix_end, Cf, KvBatch, KvOp, KvPair, KvStore, StoreError};

/// State batches buffered per session before a slow slave needs a new snapshot.
const JOURNAL_CAPACITY: usize = 4096;
/// Meta keys with this prefix belong to this broker alone.
const LOCAL_PREFIX: &[u8] = b"local.";
/// `meta` keys marking the consume queues to hand back (followed by the queue prefix).
const HANDBACK_PREFIX: &[u8] = b"local.handback.";
/// Tables whose rows replicate (`meta` only outside `local.`).
const REPLICATED: [Cf; 5] = [
    Cf::ConsumerOffset,
    Cf::ConsumeState,
    Cf::TopicConfig,
    Cf::GroupConfig,
    Cf::Meta,
];

/// Whether a row of `cf` at `key` is replicated to slaves.
pub fn replicated(cf: Cf, key: &[u8]) -> bool {
    match cf {
        Cf::ConsumerOffset | Cf::ConsumeState | Cf::TopicConfig | Cf::GroupConfig => true,
        Cf::Meta => !key.starts_with(LOCAL_PREFIX),
        _ => false,
    }
}

/// The consume queue a consume-state or consumer-offset row belongs to.
fn queue_of(cf: Cf, key: &[u8]) -> Option<QueueKey> {
    let rest = match cf {
        Cf::ConsumeState => key.get(1..)?,
        Cf::ConsumerOffset => key,
        _ => return None,
    };
    QueueKey::parse(rest).map(|(q, _)| q)
}

fn op(kind: Kind, cf: Cf, key: &[u8], value: &[u8], end: &[u8]) -> StateOp {
    StateOp {
        kind: kind as i32,
        table: cf.name().to_string(),
        key: key.to_vec(),
        value: value.to_vec(),
        end: end.to_vec(),
    }
}

/// The index database with its journal of replicated writes.
pub struct JournaledKv {
    inner: Arc<dyn KvStore>,
    changes: broadcast::Sender<Arc<Vec<StateOp>>>,
    /// A slave whose master is away notes the queues it changes.
    away: AtomicBool,
    touched: Mutex<BTreeSet<QueueKey>>,
}

impl JournaledKv {
    pub fn new(inner: Arc<dyn KvStore>) -> Self {
        JournaledKv {
            inner,
            changes: broadcast::channel(JOURNAL_CAPACITY).0,
            away: AtomicBool::new(false),
            touched: Mutex::new(BTreeSet::new()),
        }
    }

    /// Every replicated write from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Vec<StateOp>>> {
        self.changes.subscribe()
    }

    /// Every replicated row, as PUTs, in batches of at most `max_ops`.
    pub fn snapshot(&self, max_ops: usize) -> Result<Vec<Vec<StateOp>>, StoreError> {
        let mut out: Vec<Vec<StateOp>> = Vec::new();
        let mut cur = Vec::new();
        for cf in REPLICATED {
            for (k, v) in self.scan_all(cf)? {
                if !replicated(cf, &k) {
                    continue;
                }
                cur.push(op(Kind::Put, cf, &k, &v, &[]));
                if cur.len() >= max_ops {
                    out.push(std::mem::take(&mut cur));
                }
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        Ok(out)
    }

    fn scan_all(&self, cf: Cf) -> Result<Vec<KvPair>, StoreError> {
        const PAGE: usize = 10_000;
        let mut all = Vec::new();
        let mut from = Vec::new();
        loop {
            let page = self.inner.scan(cf, &from, &[], PAGE)?;
            let full = page.len() == PAGE;
            if let Some((k, _)) = page.last() {
                from = k.clone();
                from.push(0);
            }
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }

    /// Slave: drops every replicated row (before a snapshot).
    pub fn clear_replicated(&self) -> Result<(), StoreError> {
        let mut batch = KvBatch::new();
        for cf in [
            Cf::ConsumerOffset,
            Cf::ConsumeState,
            Cf::TopicConfig,
            Cf::GroupConfig,
        ] {
            batch.delete_range(cf, b"", b"");
        }
        for (k, _) in self.scan_all(Cf::Meta)? {
            if replicated(Cf::Meta, &k) {
                batch.delete(Cf::Meta, &k);
            }
        }
        self.inner.write(batch)
    }

    /// Slave: applies the master's writes (not journaled, not noted for a handback).
    /// Returns the consume queues touched and whether topic or group configs changed.
    pub fn apply(&self, ops: &[StateOp]) -> Result<(Vec<QueueKey>, bool), StoreError> {
        let (batch, queues, configs) = to_batch(ops)?;
        self.inner.write(batch)?;
        Ok((queues, configs))
    }

    /// Master: adopts a slave's handback; journaled like any write, so slaves follow.
    pub fn adopt(&self, ops: &[StateOp]) -> Result<Vec<QueueKey>, StoreError> {
        let (batch, queues, _) = to_batch(ops)?;
        self.write(batch)?;
        Ok(queues)
    }

    /// Slave: whether its master is away (consume changes are then noted for the handback).
    pub fn set_master_away(&self, away: bool) {
        self.away.store(away, Ordering::SeqCst);
    }

    /// Slave: the state of every consume queue it changed while its master was away: per
    /// queue, deletes of all its rows followed by its current rows.
    pub fn take_handback(&self) -> Result<Vec<StateOp>, StoreError> {
        let mut queues: BTreeSet<QueueKey> = self.touched.lock().clone();
        let marks = self.inner.scan(
            Cf::Meta,
            HANDBACK_PREFIX,
            &prefix_end(HANDBACK_PREFIX),
            usize::MAX,
        )?;
        for (k, _) in marks {
            if let Some((q, _)) = QueueKey::parse(&k[HANDBACK_PREFIX.len()..]) {
                queues.insert(q);
            }
        }
        let mut ops = Vec::new();
        for q in queues {
            let prefix = q.prefix();
            let mut inflight = vec![b'i'];
            inflight.extend(&prefix);
            ops.push(op(Kind::Delete, Cf::ConsumeState, &q.pop_key(), &[], &[]));
            ops.push(op(
                Kind::DeleteRange,
                Cf::ConsumeState,
                &inflight,
                &[],
                &prefix_end(&inflight),
            ));
            ops.push(op(Kind::Delete, Cf::ConsumerOffset, &prefix, &[], &[]));
            if let Some(v) = self.inner.get(Cf::ConsumeState, &q.pop_key())? {
                ops.push(op(Kind::Put, Cf::ConsumeState, &q.pop_key(), &v, &[]));
            }
            let end = prefix_end(&inflight);
            for (k, v) in self
                .inner
                .scan(Cf::ConsumeState, &inflight, &end, usize::MAX)?
            {
                ops.push(op(Kind::Put, Cf::ConsumeState, &k, &v, &[]));
            }
            if let Some(v) = self.inner.get(Cf::ConsumerOffset, &prefix)? {
                ops.push(op(Kind::Put, Cf::ConsumerOffset, &prefix, &v, &[]));
            }
        }
        Ok(ops)
    }

    /// Slave: the master took the handback.
    pub fn clear_handback(&self) -> Result<(), StoreError> {
        self.touched.lock().clear();
        let mut batch = KvBatch::new();
        batch.delete_range(Cf::Meta, HANDBACK_PREFIX, prefix_end(HANDBACK_PREFIX));
        self.inner.write(batch)
    }
}

/// A batch of replicated ops; refuses ops on tables that do not replicate.
fn to_batch(ops: &[StateOp]) -> Result<(KvBatch, Vec<QueueKey>, bool), StoreError> {
    let mut batch = KvBatch::new();
    let mut queues = BTreeSet::new();
    let mut configs = false;
    for o in ops {
        let cf = Cf::from_name(&o.table)
            .filter(|&cf| replicated(cf, &o.key))
            .ok_or_else(|| {
                StoreError::Index(format!(
                    "replicated state names table {:?} (key {:02x?}), which does not replicate",
                    o.table, o.key
                ))
            })?;
        match Kind::try_from(o.kind) {
            Ok(Kind::Put) => batch.put(cf, &o.key, &o.value),
            Ok(Kind::Delete) => batch.delete(cf, &o.key),
            Ok(Kind::DeleteRange) => batch.delete_range(cf, &o.key, &o.end),
            _ => {
                return Err(StoreError::Index(format!(
                    "unknown replicated state op {}",
                    o.kind
                )))
            }
        }
        if let Some(q) = queue_of(cf, &o.key) {
            queues.insert(q);
        }
        configs |= matches!(cf, Cf::TopicConfig | Cf::GroupConfig);
    }
    Ok((batch, queues.into_iter().collect(), configs))
}

impl KvStore for JournaledKv {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(cf, key)
    }

    fn write(&self, mut batch: KvBatch) -> Result<(), StoreError> {
        let listening = self.changes.receiver_count() > 0;
        let away = self.away.load(Ordering::Relaxed);
        if !listening && !away {
            return self.inner.write(batch);
        }
        let mut ops = Vec::new();
        let mut noted = Vec::new();
        for o in batch.ops() {
            let (cf, key) = match o {
                KvOp::Put(cf, k, _) | KvOp::Delete(cf, k) | KvOp::DeleteRange(cf, k, _) => (cf, k),
            };
            if !replicated(cf, key) {
                continue;
            }
            if away {
                if let Some(q) = queue_of(cf, key) {
                    noted.push(q);
                }
            }
            if listening {
                ops.push(match o {
                    KvOp::Put(cf, k, v) => op(Kind::Put, cf, k, v, &[]),
                    KvOp::Delete(cf, k) => op(Kind::Delete, cf, k, &[], &[]),
                    KvOp::DeleteRange(cf, f, t) => op(Kind::DeleteRange, cf, f, &[], t),
                });
            }
        }
        if !noted.is_empty() {
            let mut touched = self.touched.lock();
            for q in noted {
                if !touched.contains(&q) {
                    let mut k = HANDBACK_PREFIX.to_vec();
                    k.extend(q.prefix());
                    batch.put(Cf::Meta, k, [1u8]);
                    touched.insert(q);
                }
            }
        }
        self.inner.write(batch)?;
        if !ops.is_empty() {
            let _ = self.changes.send(Arc::new(ops));
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
        self.inner.scan(cf, from, to, limit)
    }

    fn last_in(&self, cf: Cf, from: &[u8], to: &[u8]) -> Result<Option<KvPair>, StoreError> {
        self.inner.last_in(cf, from, to)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
}
