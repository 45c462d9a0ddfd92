//! The group-commit writer and the async flusher thread.
//!
//! Every mutation of the log and of the store's own index entries is run by the [`Writer`],
//! one group or command at a time, by whoever leads the write queue (`write_queue.rs`: a send
//! on its own task when the broker is idle, else the writer thread). For one group of appends
//! it:
//!
//! 1. assigns queue offsets from the in-memory queue heads and one store timestamp (never
//!    going backwards) and encodes every record into one buffer, rolling to a new segment
//!    when a record does not fit (a roll fdatasyncs the sealed segment);
//! 2. writes the buffer;
//! 3. writes ONE index batch (consume queue, ids, keys, the head row of a queue new to it,
//!    checkpoint), without RocksDB's WAL: the log is its log (`kv.rs`, `recovery.rs`);
//! 4. wakes the long-polling readers of the queues that got entries, and answers the callers
//!    or hands them to what they wait for: under [`FlushMode::Sync`](super::FlushMode::Sync) the sync thread
//!    (`syncer.rs`: it fdatasyncs while the writer goes on with the next group), on a
//!    SYNC_MASTER a slave's confirmation (`replica_log.rs`).
//!
//! The records of one request are contiguous. A request that fails validation is answered at
//! once and takes no part in the group. A write that fails for lack of space (ENOSPC, EDQUOT)
//! is undone: the log is cut back to where the group began, its requests are refused with
//! [`StoreError::StorageFull`], and the next group tries again. Any other I/O or index failure
//! fails the store (`fail_stop.rs`): the writer answers this and every later append with an
//! error, because the state of a file after a failed fdatasync cannot be trusted and RocksDB
//! takes no write after a failed one; the broker stops, and a restart recovers from the log. The log lines of a failed group carry a `writer_group` span (its log offset,
//! requests, messages and topics), made only then.
//!
//! Under [`FlushMode::Async`](super::FlushMode::Async) a flusher thread fdatasyncs the last segment every
//! `async_flush_interval` and records the flushed offset.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use super::commitlog::is_out_of_space;
use super::index::{self, Heads};
use super::keys::prefix_end;
use super::kv::{Cf, KvBatch};
use super::record::{self, NewMessage};
use super::{AppendResult, Shared, StoreError};

/// Where a replicated append left the slave's log.
#[derive(Clone, Copy, Debug)]
pub struct ReplicaAppend {
    pub written: u64,
    pub flushed: u64,
}

pub(crate) type AppendReply = oneshot::Sender<Result<Vec<AppendResult>, StoreError>>;

/// An append group: the requests' messages and where to answer each.
pub(crate) type Group = Vec<(Vec<NewMessage>, AppendReply)>;

pub(crate) enum Command {
    Append {
        msgs: Vec<NewMessage>,
        reply: AppendReply,
    },
    PurgeTopic {
        topic: String,
        reply: SyncSender<Result<(), StoreError>>,
    },
    /// Expiry of a lite queue (`lite.rs`): purge it unless it got a record stored at or
    /// after `idle_before_ms`; answers whether it was purged.
    PurgeIdleLite {
        topic: String,
        idle_before_ms: i64,
        reply: SyncSender<Result<bool, StoreError>>,
    },
    /// A slave writing its master's bytes (`replica_log.rs`).
    AppendReplicated {
        offset: u64,
        segment_base: u64,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<ReplicaAppend, StoreError>>,
    },
    /// Retention: delete the oldest segments ending at or below `upto` (`retention.rs`).
    /// Nothing is deleted when the index was rebuilt since the pass read `epoch` (the rebuild
    /// may have indexed those segments again).
    DeleteSegments {
        upto: u64,
        epoch: u64,
        reply: SyncSender<Result<Vec<(u64, u64)>, StoreError>>,
    },
    /// A slave cutting its log back to the common prefix with its master.
    CutBack {
        to: u64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Shutdown,
}

struct Request {
    msgs: Vec<NewMessage>,
    sizes: Vec<u32>,
    reply: AppendReply,
}

pub(crate) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) heads: Heads,
    pub(super) last_store_ts: i64,
    /// FlushMode::Sync: wakes the sync thread (`syncer.rs`) after a group.
    kick: Option<std::sync::mpsc::Sender<()>>,
    /// The flushed mark last recorded in the index ([`index::record_flushed`]).
    recorded_flushed: u64,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        heads: Heads,
        last_store_ts: i64,
        kick: Option<std::sync::mpsc::Sender<()>>,
    ) -> Self {
        shared.lite.reset(&heads);
        let recorded_flushed = shared.log.flushed_offset();
        Writer {
            shared,
            heads,
            last_store_ts,
            kick,
            recorded_flushed,
        }
    }

    /// Whether writing about `bytes` more would start a new segment (which first fdatasyncs the
    /// full one: work for the writer thread, not for a send's task).
    pub(crate) fn would_roll(&self, bytes: usize) -> bool {
        let used = self.shared.log.last_segment().map_or(0, |s| s.len());
        used + bytes as u64 > self.shared.config.segment_size
    }

    /// Runs one command; the write queue (`write_queue.rs`) sends appends in groups to
    /// [`append_group`](Self::append_group) instead.
    pub(crate) fn run_command(&mut self, cmd: Command) {
        match cmd {
            Command::Append { msgs, reply } => self.append_group(vec![(msgs, reply)]),
            Command::PurgeIdleLite {
                topic,
                idle_before_ms,
                reply,
            } => {
                let _ = reply.send(self.purge_idle_lite(&topic, idle_before_ms));
            }
            Command::PurgeTopic { topic, reply } => {
                let _ = reply.send(self.purge(&topic));
            }
            Command::AppendReplicated {
                offset,
                segment_base,
                bytes,
                reply,
            } => {
                let result = self.append_replicated(offset, segment_base, &bytes);
                if let Err(e @ (StoreError::Io(_) | StoreError::Index(_))) = &result {
                    let reason = format!("replicated append failed: {e}");
                    tracing::error!("{reason}");
                    self.shared.set_failed(reason);
                }
                let _ = reply.send(result);
            }
            Command::DeleteSegments { upto, epoch, reply } => {
                let result = if *self.shared.index_epoch.lock() == epoch {
                    self.shared.log.delete_segments_below(upto)
                } else {
                    Ok(Vec::new())
                };
                let _ = reply.send(result);
            }
            Command::CutBack { to, reply } => {
                let _ = reply.send(self.cut_back(to));
            }
            Command::Shutdown => self.close(),
        }
    }

    pub(crate) fn append_group(&mut self, group: Group) {
        if let Some(reason) = self.shared.failure() {
            for (_, reply) in group {
                let _ = reply.send(Err(StoreError::Failed(reason.clone())));
            }
            return;
        }
        let max = self.shared.config.max_record_size;
        let mut reqs = Vec::with_capacity(group.len());
        for (msgs, reply) in group {
            let sizes: Result<Vec<u32>, StoreError> = msgs
                .iter()
                .map(|m| {
                    let size = record::encoded_len(m)?;
                    if size > max {
                        return Err(StoreError::MessageTooLarge { size, max });
                    }
                    Ok(size as u32)
                })
                .collect();
            match sizes {
                Ok(sizes) => reqs.push(Request { msgs, sizes, reply }),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        if reqs.is_empty() {
            return;
        }
        let start = self.shared.log.end_offset();
        match self.write_group(&reqs) {
            Ok(results) => {
                let cfg = &self.shared.config;
                for (req, res) in reqs.into_iter().zip(results) {
                    let end = res.last().map_or(0, |r| r.log_offset)
                        + u64::from(req.sizes.last().copied().unwrap_or(0));
                    if self.kick.is_some() {
                        // SYNC flush: answered by the sync thread (`syncer.rs`).
                        self.shared.flush_waits.register(end, res, req.reply);
                    } else if self.shared.sync_replicas() {
                        // SYNC_MASTER: answered once a slave has the bytes (`replica_log.rs`).
                        self.shared
                            .replicas
                            .register(end, res, req.reply, cfg.replica_timeout);
                    } else {
                        let _ = req.reply.send(Ok(res));
                    }
                }
                if let Some(kick) = &self.kick {
                    // One wake-up of the sync thread for the whole group.
                    let _ = kick.send(());
                }
            }
            Err(StoreError::Io(e)) if is_out_of_space(&e) => {
                let _group = group_span(start, &reqs).entered();
                // Nothing of the group was indexed or answered: cut the log back to where the
                // group began, refuse its requests, and let the next group try again.
                let reason = format!(
                    "no space left on the disk holding {} ({e}); the send was not stored",
                    self.shared.log.dir().display()
                );
                match self.shared.log.discard_from(start) {
                    Ok(()) => {
                        tracing::warn!("{reason}");
                        for req in reqs {
                            let _ = req.reply.send(Err(StoreError::StorageFull(reason.clone())));
                        }
                    }
                    Err(e2) => {
                        let reason = format!(
                            "{reason}; undoing the partial write failed too ({e2}), the store \
                             accepts no more writes"
                        );
                        tracing::error!("{reason}");
                        self.shared.set_failed(reason.clone());
                        for req in reqs {
                            let _ = req.reply.send(Err(StoreError::Failed(reason.clone())));
                        }
                    }
                }
            }
            Err(e) => {
                let _group = group_span(start, &reqs).entered();
                let reason = format!("append failed, the store accepts no more writes: {e}");
                tracing::error!("{reason}");
                self.shared.set_failed(reason.clone());
                for req in reqs {
                    let _ = req.reply.send(Err(StoreError::Failed(reason.clone())));
                }
            }
        }
    }

    /// The queue offset of the group's next record on (topic, queue), and whether the queue is
    /// new (no record before it: its head row goes into the group's batch, `index.rs`).
    fn next_queue_offset(&self, new_heads: &mut Heads, topic: &str, queue_id: u32) -> (u64, bool) {
        let lookup = |h: &Heads| h.get(topic).and_then(|q| q.get(&queue_id)).copied();
        let known = lookup(new_heads).or_else(|| lookup(&self.heads));
        let cur = known.unwrap_or(0);
        match new_heads.get_mut(topic) {
            Some(q) => {
                q.insert(queue_id, cur + 1);
            }
            None => {
                new_heads.insert(topic.to_string(), HashMap::from([(queue_id, cur + 1)]));
            }
        }
        (cur, known.is_none())
    }

    /// Writes, syncs and indexes a group of validated requests; one result list per request.
    fn write_group(&mut self, reqs: &[Request]) -> Result<Vec<Vec<AppendResult>>, StoreError> {
        let shared = self.shared.clone();
        let (cfg, log) = (&shared.config, &shared.log);
        let store_ts = now_ms().max(self.last_store_ts);
        let mut seg = log.last_segment()?;
        let total: u64 = reqs
            .iter()
            .flat_map(|r| r.sizes.iter())
            .map(|&s| u64::from(s))
            .sum();
        let mut buf = Vec::with_capacity(total.min(cfg.segment_size) as usize);
        // Room for the usual two entries a message (queue and id; ~100 bytes of keys and
        // values), the queue heads and the checkpoints: one allocation each, not one a key.
        let records: usize = reqs.iter().map(|r| r.msgs.len()).sum();
        let mut batch = KvBatch::with_capacity(2 * records + 8, 100 * records + 64).unlogged();
        let mut new_heads = Heads::new();
        let mut new_lite_queues: Vec<&str> = Vec::new();
        let mut all = Vec::with_capacity(reqs.len());
        for req in reqs {
            let mut results = Vec::with_capacity(req.msgs.len());
            for (msg, &size) in req.msgs.iter().zip(&req.sizes) {
                let used = seg.len() + buf.len() as u64;
                if used > 0 && used + u64::from(size) > cfg.segment_size {
                    seg.append(&buf)?;
                    buf.clear();
                    seg = log.roll()?;
                }
                let log_offset = seg.end() + buf.len() as u64;
                let (queue_offset, new_queue) =
                    self.next_queue_offset(&mut new_heads, &msg.topic, msg.queue_id);
                let written = record::encode_into(
                    &mut buf,
                    msg,
                    queue_offset,
                    store_ts,
                    cfg.max_record_size,
                )?;
                if written != size {
                    return Err(StoreError::Index(format!(
                        "record size changed while encoding ({size} -> {written})"
                    )));
                }
                index::dispatch(&mut batch, msg, queue_offset, log_offset, size, store_ts);
                if new_queue {
                    // Later records move the queue's next offset by their entries alone.
                    index::put_head(&mut batch, &msg.topic, msg.queue_id, queue_offset + 1);
                    if msg.topic.starts_with(apogee_proto::names::LITE_PREFIX) {
                        new_lite_queues.push(&msg.topic);
                    }
                }
                results.push(AppendResult {
                    queue_offset,
                    log_offset,
                    store_timestamp_ms: store_ts,
                });
            }
            all.push(results);
        }
        seg.append(&buf)?;
        let end = seg.end();
        log.set_end(end);
        index::put_checkpoint(&mut batch, end);
        shared.kv.write(batch)?;
        // The flushed mark may lag the log (recovery only needs it never to lead): the group
        // records the latest one when it moved, so the sync thread writes nothing to the index.
        let flushed = log.flushed_offset();
        if flushed > self.recorded_flushed {
            index::record_flushed(shared.kv.as_ref(), flushed)?;
            self.recorded_flushed = flushed;
        }
        for topic in new_lite_queues {
            shared.lite.queue_created(topic);
        }
        let touched = new_heads
            .iter()
            .flat_map(|(t, qs)| qs.keys().map(move |&q| (t.as_str(), q)));
        shared.wakeups.notify(touched);
        shared.end_watch.send_replace(end);
        for (topic, queues) in new_heads {
            self.heads.entry(topic).or_default().extend(queues);
        }
        self.last_store_ts = store_ts;
        Ok(all)
    }

    /// A lite queue's purge when its last record is older than `idle_before_ms` (or gone);
    /// run here, between groups, so no append slips between the look and the purge.
    fn purge_idle_lite(&mut self, topic: &str, idle_before_ms: i64) -> Result<bool, StoreError> {
        let queue = super::keys::queue_key(topic, 0);
        let kv = self.shared.kv.as_ref();
        if kv.get(Cf::QueueHead, &queue)?.is_none() {
            return Ok(false);
        }
        if let Some((k, v)) = kv.last_in(Cf::ConsumeQueue, &queue, &prefix_end(&queue))? {
            if index::QueueEntry::decode(&k, &v)?.store_timestamp_ms >= idle_before_ms {
                return Ok(false);
            }
        }
        self.purge(topic)?;
        Ok(true)
    }

    fn purge(&mut self, topic: &str) -> Result<(), StoreError> {
        let from = super::keys::topic_prefix(topic);
        let to = prefix_end(&from);
        let mut batch = KvBatch::new();
        for cf in [Cf::ConsumeQueue, Cf::QueueHead, Cf::MessageKey] {
            batch.delete_range(cf, &from, &to);
        }
        // The records stay in the log: the mark (primary state, replicated) keeps a rebuild
        // of the index from the log from bringing them back under a topic of the same name.
        // Lite queues get none: they expire by the million and marks are never dropped; a
        // rebuild indexes an expired lite queue's records again until the next expiry scan
        // (their store times are as old as before) drops it again (`lite.rs`).
        if apogee_proto::names::split_lite_queue_topic(topic).is_none() {
            batch.put(
                Cf::Meta,
                super::keys::topic_purged_key(topic),
                super::keys::encode_u64(self.shared.log.end_offset()),
            );
        }
        let _rewriting = self.shared.index_epoch.lock();
        self.shared.kv.write(batch)?;
        let had_queue = self.heads.remove(topic).is_some();
        self.shared.lite.topic_purged(topic, had_queue);
        if apogee_proto::names::split_lite_queue_topic(topic).is_some() {
            // Lite topics expire by the thousand: not one info line each.
            tracing::debug!(topic, "purged the lite queue");
        } else {
            tracing::info!(topic, "purged the topic's consume queues and key index");
        }
        Ok(())
    }

    /// Final fdatasync and index flush; the writer takes no more work after it.
    pub(crate) fn close(&mut self) {
        let log = &self.shared.log;
        let end = log.end_offset();
        let synced = log
            .last_segment()
            .and_then(|s| s.sync_data().map_err(StoreError::from));
        match synced {
            Ok(()) => {
                log.mark_flushed(end);
                if let Err(e) = index::record_flushed(self.shared.kv.as_ref(), end) {
                    tracing::warn!(error = %e, "could not record the flushed offset at shutdown");
                }
            }
            Err(e) => tracing::error!(error = %e, "fdatasync of the commit log failed at shutdown"),
        }
        if let Err(e) = self.shared.kv.flush() {
            tracing::warn!(error = %e, "could not flush the index at shutdown");
        }
        // Ends the sync thread: its last pass answers whatever still waits for a sync.
        self.kick = None;
    }
}

/// Topics a failed group's span names at most (then how many more).
const GROUP_SPAN_TOPICS: usize = 8;

/// The span of a failed group's log lines: where in the log it began, its requests, messages
/// and topics. Made only when there is something to log, so a group that succeeds pays
/// nothing for it; it has no parent, because the group holds other clients' sends than the
/// one whose task may be leading the write queue (and whose request span is current).
fn group_span(start: u64, reqs: &[Request]) -> tracing::Span {
    let messages: usize = reqs.iter().map(|r| r.msgs.len()).sum();
    let topics = group_topics(
        reqs.iter()
            .flat_map(|r| r.msgs.iter().map(|m| m.topic.as_str())),
    );
    tracing::info_span!(
        parent: None,
        "writer_group",
        log_offset = start,
        requests = reqs.len(),
        messages,
        topics = %topics
    )
}

/// The distinct topics of a group, sorted, the first [`GROUP_SPAN_TOPICS`] by name and the
/// rest counted.
fn group_topics<'a>(topics: impl Iterator<Item = &'a str>) -> String {
    let mut topics: Vec<&str> = topics.collect();
    topics.sort_unstable();
    topics.dedup();
    let more = topics.len().saturating_sub(GROUP_SPAN_TOPICS);
    topics.truncate(GROUP_SPAN_TOPICS);
    let named = topics.join(",");
    match more {
        0 => named,
        more => format!("{named} and {more} more"),
    }
}

/// The async flusher: fdatasyncs every interval until `stop` fires or is dropped.
pub(crate) fn run_flusher(shared: Arc<Shared>, stop: Receiver<()>) {
    let interval = shared.config.async_flush_interval;
    loop {
        let stopping = !matches!(stop.recv_timeout(interval), Err(RecvTimeoutError::Timeout));
        if let Err(e) = flush_once(&shared) {
            let reason =
                format!("periodic fdatasync failed, the store accepts no more writes: {e}");
            tracing::error!("{reason}");
            shared.set_failed(reason);
            break;
        }
        if stopping {
            break;
        }
    }
}

/// fdatasyncs what was written since the last sync and records the flushed offset in the index
/// (the async flusher; the sync thread calls [`CommitLog::sync_to_end`] alone and leaves the
/// recording to the writer's next group).
///
/// [`CommitLog::sync_to_end`]: super::commitlog::CommitLog::sync_to_end
pub(crate) fn flush_once(shared: &Shared) -> Result<(), StoreError> {
    if let Some(end) = shared.log.sync_to_end()? {
        index::record_flushed(shared.kv.as_ref(), end)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_groups_span_names_its_topics_once_and_counts_the_rest() {
        assert_eq!(group_topics(["b", "a", "b"].into_iter()), "a,b");
        let many: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
        assert_eq!(
            group_topics(many.iter().map(String::as_str)),
            "t0,t1,t2,t3,t4,t5,t6,t7 and 2 more"
        );
    }
}
