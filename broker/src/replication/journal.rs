//! The journal of replicated key-value writes.
//!
//! Some state is not derived from the log and must travel beside it so a slave can serve
//! consumers where its master left off: consumer offsets, consume state (pop offsets,
//! in-flight and waiting entries), topic and group configs, and the `meta` keys the registry
//! marks replicated (the receipt secret, data versions, users and ACLs, runtime config); see
//! [`crate::store::kv::replicated`] and [`crate::store::keys::MetaKey`].
//! [`JournaledKv`] wraps the broker's index database: every write goes to it unchanged, and
//! the part of a batch on replicated keys is published, after the write, to the master's
//! replication sessions. Callers serialise the writes of one key under their own locks, so
//! the journal's order per key is the database's.
//!
//! On a slave, [`JournaledKv::apply`] writes the master's state without publishing it. While
//! the slave's master is away, the wrapper notes which consume queues the broker changed
//! itself (persisted as [`MetaKey::Handback`] markers in `meta`, so a restart keeps them): the
//! handback that a returning master adopts ([`JournaledKv::take_handback`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use apogee_proto::cluster::{state_op::Kind, StateOp};
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::store::keys::{
    config_key, decode_handback_key, handback_key, meta_range_touches_local, meta_replicated_part,
    meta_replicated_range, tag, MetaKey, QueueKey, MARKER,
};
use crate::store::kv::replicated;
use crate::store::{prefix_end, Cf, KvBatch, KvOp, KvPair, KvStore, StoreError};

/// State batches buffered per session before a slow slave needs a new snapshot.
const JOURNAL_CAPACITY: usize = 4096;
/// Rows read per scan while paging through a table.
const SCAN_PAGE: usize = 4096;
/// Tables that hold replicated rows (`meta` only its replicated part).
const REPLICATED_TABLES: [Cf; 5] = Cf::PRIMARY;

/// What an applied batch of replicated ops changed, for the in-memory tables to follow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyEffects {
    /// Consume queues with changed rows (consume state or consumer offset), sorted.
    pub queues: Vec<QueueKey>,
    /// A range delete spanned more than one queue: every queue must be re-read.
    pub all_queues: bool,
    pub topics: bool,
    pub groups: bool,
    /// `meta` keys changed (the receipt secret, the topic and group data versions).
    pub meta: bool,
}

/// The consume queue a consume-state or consumer-offset key belongs to.
fn queue_of(cf: Cf, key: &[u8]) -> Option<QueueKey> {
    match cf {
        Cf::ConsumeState => QueueKey::of_row(true, key),
        Cf::ConsumerOffset => QueueKey::of_row(false, key),
        _ => None,
    }
}

/// The one queue whose rows `[from, to)` of `cf` stay within, if they do. A range starts
/// at a whole key (a queue's rows of one tag) or at a prefix of one (its in-flight rows).
fn queue_of_range(cf: Cf, from: &[u8], to: &[u8]) -> Option<QueueKey> {
    let (q, end) = match cf {
        Cf::ConsumeState => {
            let (&tag, rest) = from.split_first()?;
            let (q, _) = QueueKey::parse(rest)?;
            let (_, end) = q.tagged_range(tag);
            (q, end)
        }
        Cf::ConsumerOffset => {
            let (q, _) = QueueKey::parse(from)?;
            let end = prefix_end(&q.prefix());
            (q, end)
        }
        _ => return None,
    };
    (!to.is_empty() && to <= end.as_slice()).then_some(q)
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

fn refused(o: &StateOp, why: &str) -> StoreError {
    StoreError::Index(format!(
        "replicated state op on table {:?} (key {:02x?}): {why}",
        o.table, o.key
    ))
}

/// The consume queues a slave changed itself while its master was away.
#[derive(Default)]
struct Handback {
    /// Queue -> number of the last change noted to it.
    touched: BTreeMap<QueueKey, u64>,
    /// Changes noted so far (numbers the entries of `touched`).
    seq: u64,
    /// `seq` when the last handback was taken: entries up to it were handed back.
    taken: Option<u64>,
    /// Whether the markers persisted by an earlier run are merged into `touched`.
    loaded: bool,
}

/// Every replicated row of `kv`, as PUTs, in batches of at most `max_ops_per_batch`: what a
/// slave's snapshot and the tier's state snapshot (`crate::tier::state`) carry.
pub fn replicated_rows(
    kv: &dyn KvStore,
    max_ops_per_batch: usize,
) -> Result<Vec<Vec<StateOp>>, StoreError> {
    let max = max_ops_per_batch.max(1);
    let mut out: Vec<Vec<StateOp>> = Vec::new();
    let mut cur = Vec::new();
    for cf in REPLICATED_TABLES {
        let (from, to) = match cf {
            Cf::Meta => meta_replicated_range(),
            _ => (Vec::new(), Vec::new()),
        };
        for_each_row(kv, cf, &from, &to, |k, v| {
            // A key of an unregistered kind (a newer version's) is not shipped.
            if replicated(cf, &k) {
                cur.push(op(Kind::Put, cf, &k, &v, &[]));
                if cur.len() >= max {
                    out.push(std::mem::take(&mut cur));
                }
            }
        })?;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Calls `f` with every row of `cf` in `[from, to)` (empty `to`: no bound), page by page.
fn for_each_row(
    kv: &dyn KvStore,
    cf: Cf,
    from: &[u8],
    to: &[u8],
    mut f: impl FnMut(Vec<u8>, Vec<u8>),
) -> Result<(), StoreError> {
    let mut from = from.to_vec();
    loop {
        let page: Vec<KvPair> = kv.scan(cf, &from, to, SCAN_PAGE)?;
        let full = page.len() == SCAN_PAGE;
        if let Some((k, _)) = page.last() {
            from = k.clone();
            from.push(0);
        }
        for (k, v) in page {
            f(k, v);
        }
        if !full {
            return Ok(());
        }
    }
}

/// The index database with its journal of replicated writes.
pub struct JournaledKv {
    inner: Arc<dyn KvStore>,
    changes: broadcast::Sender<Arc<Vec<StateOp>>>,
    /// A slave whose master is away notes the queues it changes.
    away: AtomicBool,
    /// Static mode: a returning master takes a handback. Controller mode: never (a rejoining
    /// member takes the master's snapshot instead), so nothing is noted.
    keeps_handback: AtomicBool,
    handback: Mutex<Handback>,
}

impl JournaledKv {
    pub fn new(inner: Arc<dyn KvStore>) -> Self {
        JournaledKv {
            inner,
            changes: broadcast::channel(JOURNAL_CAPACITY).0,
            away: AtomicBool::new(false),
            keeps_handback: AtomicBool::new(true),
            handback: Mutex::new(Handback::default()),
        }
    }

    /// Every replicated write from now on, one message per written batch.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Vec<StateOp>>> {
        self.changes.subscribe()
    }

    /// Every replicated row, as PUTs, in batches of at most `max_ops_per_batch`.
    pub fn snapshot(&self, max_ops_per_batch: usize) -> Result<Vec<Vec<StateOp>>, StoreError> {
        replicated_rows(self.inner.as_ref(), max_ops_per_batch)
    }

    /// Slave: drops every replicated row (before applying a snapshot of its master).
    pub fn clear_replicated(&self) -> Result<(), StoreError> {
        let mut batch = KvBatch::new();
        for cf in REPLICATED_TABLES {
            let (from, to) = match cf {
                Cf::Meta => meta_replicated_range(),
                _ => (Vec::new(), Vec::new()),
            };
            batch.delete_range(cf, from, to);
        }
        self.inner.write(batch)
    }

    /// Slave in controller mode, after its log was cut back: drops every consumer offset and
    /// consume-state row (they may point into what was cut) until its master's snapshot
    /// brings the master's.
    pub fn clear_consume_progress(&self) -> Result<(), StoreError> {
        let mut batch = KvBatch::new();
        for cf in [Cf::ConsumeState, Cf::ConsumerOffset] {
            batch.delete_range(cf, Vec::new(), Vec::new());
        }
        self.inner.write(batch)
    }

    /// Slave: applies its master's ops in one batch, neither published nor noted for a
    /// handback. Ops on tables (or `meta` keys) that do not replicate are refused, and then
    /// nothing is applied.
    pub fn apply(&self, ops: &[StateOp]) -> Result<ApplyEffects, StoreError> {
        let (batch, effects) = to_batch(ops)?;
        self.inner.write(batch)?;
        Ok(effects)
    }

    /// Master: adopts a slave's handback in one batch, published like any write so the
    /// other slaves follow. Refuses what [`apply`](Self::apply) refuses.
    pub fn adopt(&self, ops: &[StateOp]) -> Result<ApplyEffects, StoreError> {
        let (batch, effects) = to_batch(ops)?;
        self.write(batch)?;
        Ok(effects)
    }

    /// Slave: whether its master is away. While it is, the consume queues this broker
    /// changes itself are noted for the handback.
    pub fn set_master_away(&self, away: bool) {
        self.away.store(away, Ordering::SeqCst);
    }

    /// Controller mode: no handback is ever taken or given, so none is noted (whatever
    /// [`set_master_away`](Self::set_master_away) says).
    pub fn keep_no_handback(&self) {
        self.keeps_handback.store(false, Ordering::SeqCst);
    }

    /// Whether consume changes are noted for a handback.
    pub fn master_away(&self) -> bool {
        self.away.load(Ordering::SeqCst) && self.keeps_handback.load(Ordering::SeqCst)
    }

    /// Slave: the state of every consume queue it changed while its master was away (this
    /// run or an earlier one): per queue, the deletes of all its rows (pop offset, in-flight
    /// and waiting entries, consumer offset) followed by PUTs of its current rows; then the
    /// config of each group of those queues, so a group first used here while the master
    /// was away is one the master knows with its offsets (not one it creates again as new).
    /// Empty when there is nothing to hand back. Call
    /// [`clear_handback`](Self::clear_handback) once the master took it; changes noted after
    /// this call stay for the next handback.
    pub fn take_handback(&self) -> Result<Vec<StateOp>, StoreError> {
        // Held while reading: the rows handed back are those of the changes up to `taken`.
        let mut h = self.handback.lock();
        if !h.loaded {
            let (from, to) = MetaKey::Handback.range();
            for (k, _) in self.inner.scan(Cf::Meta, &from, &to, usize::MAX)? {
                if let Some(q) = decode_handback_key(&k) {
                    h.touched.entry(q).or_insert(0);
                }
            }
            h.loaded = true;
        }
        h.taken = Some(h.seq);
        let mut ops = Vec::new();
        for q in h.touched.keys() {
            self.queue_rows(q, &mut ops)?;
        }
        let groups: BTreeSet<&str> = h.touched.keys().map(|q| q.group.as_str()).collect();
        for group in groups {
            let key = config_key(group);
            if let Some(v) = self.inner.get(Cf::GroupConfig, &key)? {
                ops.push(op(Kind::Put, Cf::GroupConfig, &key, &v, &[]));
            }
        }
        Ok(ops)
    }

    /// The ops that replace a queue's rows on the master with ours.
    fn queue_rows(&self, q: &QueueKey, ops: &mut Vec<StateOp>) -> Result<(), StoreError> {
        let prefix = q.prefix();
        let pop = q.pop_key();
        let (inflight, inflight_end) = q.tagged_range(tag::INFLIGHT);
        ops.push(op(Kind::Delete, Cf::ConsumeState, &pop, &[], &[]));
        ops.push(op(
            Kind::DeleteRange,
            Cf::ConsumeState,
            &inflight,
            &[],
            &inflight_end,
        ));
        ops.push(op(Kind::Delete, Cf::ConsumerOffset, &prefix, &[], &[]));
        if let Some(v) = self.inner.get(Cf::ConsumeState, &pop)? {
            ops.push(op(Kind::Put, Cf::ConsumeState, &pop, &v, &[]));
        }
        for_each_row(
            self.inner.as_ref(),
            Cf::ConsumeState,
            &inflight,
            &inflight_end,
            |k, v| {
                ops.push(op(Kind::Put, Cf::ConsumeState, &k, &v, &[]));
            },
        )?;
        if let Some(v) = self.inner.get(Cf::ConsumerOffset, &prefix)? {
            ops.push(op(Kind::Put, Cf::ConsumerOffset, &prefix, &v, &[]));
        }
        Ok(())
    }

    /// Slave: the master took the last handback; forgets the queues it covered (those
    /// changed again since stay noted).
    pub fn clear_handback(&self) -> Result<(), StoreError> {
        let mut h = self.handback.lock();
        let Some(taken) = h.taken.take() else {
            return Ok(());
        };
        let done: Vec<QueueKey> = h
            .touched
            .iter()
            .filter(|&(_, &seq)| seq <= taken)
            .map(|(q, _)| q.clone())
            .collect();
        let mut batch = KvBatch::new();
        for q in &done {
            batch.delete(Cf::Meta, handback_key(q));
        }
        // Under the lock: a queue noted again from now on writes its marker after this.
        self.inner.write(batch)?;
        for q in done {
            h.touched.remove(&q);
        }
        Ok(())
    }

    /// Notes the queues `batch` changes for the handback (adding their markers to it), and
    /// writes it while no handback is being taken.
    fn write_noting(&self, mut batch: KvBatch) -> Result<(), StoreError> {
        let mut noted = BTreeSet::new();
        for o in batch.ops() {
            let q = match o {
                KvOp::Put(cf, k, _) | KvOp::Delete(cf, k) => queue_of(cf, k),
                KvOp::DeleteRange(cf, from, to) => queue_of_range(cf, from, to),
            };
            noted.extend(q);
        }
        if noted.is_empty() {
            return self.inner.write(batch);
        }
        let mut h = self.handback.lock();
        for q in noted {
            h.seq += 1;
            let seq = h.seq;
            if h.touched.insert(q.clone(), seq).is_none() {
                batch.put(Cf::Meta, handback_key(&q), MARKER);
            }
        }
        self.inner.write(batch)
    }
}

/// A batch of replicated ops and what it changes; refuses ops that do not replicate.
fn to_batch(ops: &[StateOp]) -> Result<(KvBatch, ApplyEffects), StoreError> {
    let mut batch = KvBatch::new();
    let mut queues = BTreeSet::new();
    let mut fx = ApplyEffects::default();
    for o in ops {
        let cf = Cf::from_name(&o.table).ok_or_else(|| refused(o, "no such table"))?;
        // A `meta` range is checked against the registry's local range below.
        let range_on_meta = cf == Cf::Meta && o.kind == Kind::DeleteRange as i32;
        if !range_on_meta && !replicated(cf, &o.key) {
            return Err(refused(o, "the table or key does not replicate"));
        }
        match Kind::try_from(o.kind) {
            Ok(Kind::Put) => {
                batch.put(cf, &o.key, &o.value);
                queues.extend(queue_of(cf, &o.key));
            }
            Ok(Kind::Delete) => {
                batch.delete(cf, &o.key);
                queues.extend(queue_of(cf, &o.key));
            }
            Ok(Kind::DeleteRange) => {
                if cf == Cf::Meta && meta_range_touches_local(&o.end) {
                    return Err(refused(o, "the range covers local meta keys"));
                }
                batch.delete_range(cf, &o.key, &o.end);
                if matches!(cf, Cf::ConsumeState | Cf::ConsumerOffset) {
                    match queue_of_range(cf, &o.key, &o.end) {
                        Some(q) => {
                            queues.insert(q);
                        }
                        None => fx.all_queues = true,
                    }
                }
            }
            _ => return Err(refused(o, &format!("unknown op kind {}", o.kind))),
        }
        match cf {
            Cf::TopicConfig => fx.topics = true,
            Cf::GroupConfig => fx.groups = true,
            Cf::Meta => fx.meta = true,
            _ => {}
        }
    }
    fx.queues = queues.into_iter().collect();
    Ok((batch, fx))
}

/// The replicated part of `batch`, as ops (`meta` range deletes without the local keys).
fn replicated_ops(batch: &KvBatch) -> Vec<StateOp> {
    let mut ops = Vec::new();
    for o in batch.ops() {
        match o {
            KvOp::Put(cf, k, v) if replicated(cf, k) => ops.push(op(Kind::Put, cf, k, v, &[])),
            KvOp::Delete(cf, k) if replicated(cf, k) => ops.push(op(Kind::Delete, cf, k, &[], &[])),
            KvOp::DeleteRange(Cf::Meta, from, to) => {
                if let Some((f, t)) = meta_replicated_part(from, to) {
                    ops.push(op(Kind::DeleteRange, Cf::Meta, &f, &[], &t));
                }
            }
            KvOp::DeleteRange(cf, from, to) if replicated(cf, from) => {
                ops.push(op(Kind::DeleteRange, cf, from, &[], to))
            }
            _ => {}
        }
    }
    ops
}

impl KvStore for JournaledKv {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(cf, key)
    }

    fn write(&self, batch: KvBatch) -> Result<(), StoreError> {
        let listening = self.changes.receiver_count() > 0;
        let away = self.master_away();
        if !listening && !away {
            return self.inner.write(batch);
        }
        let ops = if listening {
            replicated_ops(&batch)
        } else {
            Vec::new()
        };
        if away {
            self.write_noting(batch)?;
        } else {
            self.inner.write(batch)?;
        }
        if !ops.is_empty() {
            // No receiver left since the check: nothing to do.
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

#[cfg(test)]
#[path = "tests_journal.rs"]
mod tests;
