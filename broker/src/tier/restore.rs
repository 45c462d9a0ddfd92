//! Restoring a broker group from its tier onto empty disks (`apogee-broker
//! --restore-from-tier`), before the store first opens:
//!
//! 1. **Refused** unless the data dir is empty (or absent), `[tier]` names a bucket whose
//!    prefix holds this cluster's claim, and the member is not a static slave (a slave
//!    copies its master; restore the master).
//! 2. **What the bucket holds**: the newest state snapshot of the group ([`super::state`])
//!    and the group's segment objects. A segment the snapshot's manifest records is taken
//!    as recorded; one uploaded after the snapshot is taken from its object (its size, and
//!    the SHA-256 its upload recorded; an object without one is left out). Of two objects
//!    at one base offset (a segment a later master uploaded again), the later epoch's.
//! 3. **The restored log** is the contiguous run of segments that ends at the highest
//!    offset; a segment before a gap is left out and named.
//! 4. **The store**: a log that starts where the run ends, the snapshot's rows applied, the
//!    run recorded in the manifest (rows of objects no longer there forgotten), and the
//!    index marked as lacking the tier's records. The tier then indexes them from each
//!    segment's index object (or the segment), as for a rebuilt index, so every tiered
//!    message is served at its old queue offset and found by id and key.
//! 5. **Consumer progress** the snapshot holds beyond what was restored (offsets of
//!    messages that were never uploaded) moves back to the queue's end, and in-flight
//!    deliveries past it are dropped, each named.
//! 6. **The report** ([`RestoreReport::lines`]) says what was restored and what window was
//!    lost: every message stored after the last restored one, and every change of state
//!    after the snapshot was taken.
//!
//! A restore that fails (or is killed) leaves a partial data dir, which the next
//! `--restore-from-tier` refuses: empty it and run the restore again.

use std::collections::BTreeMap;
use std::sync::Arc;

use apogee_proto::cluster::TierStateSnapshot;

use super::{index_object, Bucket, Manifest, PrefixState, Tier, TierError, TieredSegment};
use crate::config::{BrokerConfig, Role};
use crate::replication::journal::JournaledKv;
use crate::store::keys::{ConsumeRow, MetaKey, QueueKey};
use crate::store::{values, Cf, CommitLog, KvBatch, MessageStore, OpenOptions, StoreConfig};

/// State rows applied per write.
const APPLY_BATCH: usize = 4096;

/// What a restore found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// The bucket and prefix restored from.
    pub location: String,
    /// The restored segments: how many, their log offsets and bytes.
    pub segments: usize,
    pub from: u64,
    pub to: u64,
    pub bytes: u64,
    /// When the last restored message was stored, and when its segment was uploaded
    /// (Unix ms).
    pub last_stored_ms: Option<i64>,
    pub last_uploaded_ms: Option<i64>,
    /// The state snapshot applied: its object, when it was taken, the master's log end then,
    /// and its rows.
    pub snapshot: Option<SnapshotApplied>,
    /// Segment objects left out, each with why.
    pub left_out: Vec<String>,
    /// Consumer progress moved back to what was restored, each named.
    pub moved_back: Vec<String>,
}

/// The state snapshot a restore applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotApplied {
    pub object: String,
    pub taken_at_ms: i64,
    pub log_end: u64,
    pub rows: usize,
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| format!("{ms} ms"), |t| t.to_rfc3339())
}

impl RestoreReport {
    /// The report as the broker logs it: what was restored, then what was lost.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "restored from {}: {} segments, log offsets {}..{} ({} bytes)",
            self.location, self.segments, self.from, self.to, self.bytes
        )];
        match (self.last_stored_ms, self.last_uploaded_ms) {
            (Some(stored), uploaded) => out.push(format!(
                "lost: every message stored after {} (log offset {} on){}; they had not been \
                 uploaded",
                time(stored),
                self.to,
                uploaded.map_or(String::new(), |u| format!(
                    ", the last restored segment was uploaded at {}",
                    time(u)
                ))
            )),
            (None, _) => out.push(
                "lost: every message (no segment of this group was in the bucket)".to_string(),
            ),
        }
        match &self.snapshot {
            Some(s) => {
                out.push(format!(
                    "state restored from {} taken at {}: {} rows (topic and group configs, \
                     consumer offsets, users, ACLs, runtime settings)",
                    s.object,
                    time(s.taken_at_ms),
                    s.rows
                ));
                out.push(format!(
                    "lost: every change of topics, groups, offsets, users and ACLs after {}",
                    time(s.taken_at_ms)
                ));
                if s.log_end > self.to {
                    out.push(format!(
                        "lost: at least {} bytes of messages (the master's log reached {} when \
                         the snapshot was taken)",
                        s.log_end - self.to,
                        s.log_end
                    ));
                }
            }
            None => out.push(
                "no state snapshot was in the bucket: topics are restored from their \
                 messages, every group starts without offsets"
                    .to_string(),
            ),
        }
        out.extend(self.left_out.iter().map(|l| format!("left out: {l}")));
        out.extend(
            self.moved_back
                .iter()
                .map(|m| format!("moved back to what was restored: {m}")),
        );
        out
    }
}

/// A segment object's base offset and epoch, from its name (`<base>-e<epoch>.log`).
fn segment_of_object(name: &str) -> Option<(u64, u64)> {
    let file = name.rsplit('/').next()?;
    let (base, epoch) = file.strip_suffix(".log")?.split_once("-e")?;
    if base.len() != 20 || epoch.len() != 10 {
        return None;
    }
    Some((base.parse().ok()?, epoch.parse().ok()?))
}

/// The manifest rows a snapshot holds, by base offset.
fn recorded_in(snapshot: &TierStateSnapshot) -> BTreeMap<u64, TieredSegment> {
    snapshot
        .ops
        .iter()
        .filter(|op| {
            op.table == Cf::Meta.name() && MetaKey::of(&op.key) == Some(MetaKey::TierSegment)
        })
        .filter_map(|op| TieredSegment::decode(&op.key, &op.value))
        .map(|t| (t.base, t))
        .collect()
}

/// The contiguous run of `segments` (by base offset) that ends at the highest offset, and
/// what is left out (before a gap, or overlapping the run).
fn contiguous_run(
    segments: BTreeMap<u64, TieredSegment>,
) -> (Vec<TieredSegment>, Vec<TieredSegment>) {
    let mut run: Vec<TieredSegment> = Vec::new();
    let mut left_out = Vec::new();
    let mut gap = false;
    for t in segments.into_values().rev() {
        match run.last() {
            None => run.push(t),
            Some(next) if !gap && t.end == next.base => run.push(t),
            Some(next) => {
                // One ending short of the run is before a gap; one reaching into it overlaps.
                gap |= t.end < next.base;
                left_out.push(t);
            }
        }
    }
    run.reverse();
    left_out.reverse();
    (run, left_out)
}

/// Restores the data dir of `config`'s broker, whose store `store` configures, from its tier
/// (module doc); the store is closed again when it returns, for the broker's start to open.
pub async fn restore(
    config: &BrokerConfig,
    store: StoreConfig,
) -> Result<RestoreReport, TierError> {
    if !config.tier.enabled() {
        return Err(TierError::Restore(
            "the broker's config has no [tier] bucket to restore from".into(),
        ));
    }
    restore_from(config, store, Bucket::open(&config.tier)?).await
}

/// [`restore`] from `bucket` (unit tests pass an in-memory one).
pub async fn restore_from(
    config: &BrokerConfig,
    store: StoreConfig,
    bucket: Bucket,
) -> Result<RestoreReport, TierError> {
    let refuse = |why: String| Err(TierError::Restore(why));
    if config.role == Role::Slave && !config.controller_mode() {
        return refuse(
            "this member is a slave: restore its group's master, then start the slaves with \
             empty data dirs (they copy it)"
                .into(),
        );
    }
    match std::fs::read_dir(&config.data_dir) {
        Ok(mut entries) => {
            if let Some(entry) = entries.next() {
                let entry = entry.map_err(|e| TierError::Local(e.to_string()))?;
                return refuse(format!(
                    "the data dir {} is not empty (it holds {}): a restore writes only into an \
                     empty one; refused, nothing touched (a restore that did not finish leaves \
                     a partial one: empty it and restore again)",
                    config.data_dir.display(),
                    entry.file_name().to_string_lossy()
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(TierError::Local(format!(
                "{}: {e}",
                config.data_dir.display()
            )))
        }
    }
    let (cluster, group) = (config.cluster_name.as_str(), config.broker_name.as_str());
    if bucket.inspect(cluster).await? == PrefixState::Empty {
        return refuse(format!(
            "{} is empty: there is nothing to restore",
            bucket.location()
        ));
    }
    let snapshot = super::state::newest_snapshot(&bucket, cluster, group).await?;
    let recorded = snapshot
        .as_ref()
        .map(|(_, s)| recorded_in(s))
        .unwrap_or_default();
    let mut report = RestoreReport {
        location: bucket.location(),
        ..RestoreReport::default()
    };

    // Every segment object, the later epoch's at a base offset.
    let mut objects: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    for name in bucket.list(&format!("{group}/segments")).await? {
        if let Some((base, epoch)) = segment_of_object(&name) {
            if objects.get(&base).is_none_or(|(e, _)| *e < epoch) {
                objects.insert(base, (epoch, name));
            }
        }
    }
    let mut segments = BTreeMap::new();
    for (base, (epoch, name)) in objects {
        if let Some(t) = recorded.get(&base).filter(|t| t.epoch == epoch) {
            segments.insert(base, t.clone());
            continue;
        }
        let head = bucket
            .head(&object_store::path::Path::from(name.as_str()))
            .await?;
        let sha256 = head
            .sha256_hex
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok());
        match sha256 {
            Some(sha256) if head.size > 0 => {
                segments.insert(
                    base,
                    TieredSegment {
                        base,
                        end: base + head.size,
                        epoch,
                        sha256,
                        uploaded_at_ms: head.modified_ms,
                        object: name,
                    },
                );
            }
            _ => report.left_out.push(format!(
                "{name}: no SHA-256 recorded with it (not a whole upload of Apogee's)"
            )),
        }
    }
    let (run, before_gap) = contiguous_run(segments);
    report.left_out.extend(before_gap.iter().map(|t| {
        format!(
            "{} (log offsets {}..{}): not contiguous with the restored log",
            t.object, t.base, t.end
        )
    }));
    if run.is_empty() && snapshot.is_none() {
        return refuse(format!(
            "{} holds no segment and no state snapshot of group {group:?}",
            bucket.location()
        ));
    }
    if let (Some(first), Some(last)) = (run.first(), run.last()) {
        report.segments = run.len();
        report.from = first.base;
        report.to = last.end;
        report.bytes = last.end - first.base;
        report.last_uploaded_ms = Some(last.uploaded_at_ms);
        // The last record's time, from the last segment's index object.
        let index = bucket
            .read_if_there(&bucket.index_object(group, last.base, last.epoch))
            .await?;
        report.last_stored_ms = index
            .and_then(|b| index_object::decode(&b, last.base, last.end).ok())
            .and_then(|records| records.iter().map(|r| r.store_timestamp_ms).max())
            .or(Some(last.uploaded_at_ms));
    }
    report.snapshot = snapshot.as_ref().map(|(object, s)| SnapshotApplied {
        object: object.clone(),
        taken_at_ms: s.taken_at_ms,
        log_end: s.log_end,
        rows: s.ops.len(),
    });

    let config = config.clone();
    let moved_back = tokio::task::spawn_blocking(move || {
        restore_store(&config, store, bucket, &run, snapshot.map(|(_, s)| s))
    })
    .await
    .map_err(|e| TierError::Local(e.to_string()))??;
    report.moved_back = moved_back;
    Ok(report)
}

/// The store's part (blocking): the log, the state, the manifest, the index, the progress.
fn restore_store(
    config: &BrokerConfig,
    store_cfg: StoreConfig,
    bucket: Bucket,
    run: &[TieredSegment],
    snapshot: Option<TierStateSnapshot>,
) -> Result<Vec<String>, TierError> {
    let local = |e: crate::store::StoreError| TierError::Local(e.to_string());
    let start = run.last().map_or(0, |t| t.end);
    if start > 0 {
        CommitLog::create_starting_at(&store_cfg.data_dir, start).map_err(local)?;
    }
    let mut journal = None;
    let store = MessageStore::open_wrapped_with(store_cfg, OpenOptions::default(), |kv| {
        let j = Arc::new(JournaledKv::new(kv));
        journal = Some(j.clone());
        j
    })
    .map_err(local)?;
    let journal = journal.expect("the store wraps its index");
    let result = (|| {
        if let Some(s) = &snapshot {
            for ops in s.ops.chunks(APPLY_BATCH) {
                journal.apply(ops).map_err(local)?;
            }
        }
        let manifest = Manifest::new(store.kv());
        for row in manifest.segments().map_err(local)? {
            if !run.iter().any(|t| t.base == row.base) {
                manifest.forget(row.base).map_err(local)?;
            }
        }
        for t in run {
            manifest.record(t).map_err(local)?;
        }
        store.mark_cold_unindexed().map_err(local)?;
        // Indexes the run (module doc, step 4).
        drop(Tier::with_bucket(
            bucket,
            &config.tier,
            &config.cluster_name,
            &config.broker_name,
            store.clone(),
        )?);
        settle_consume_progress(&store).map_err(local)
    })();
    store.shutdown();
    result
}

/// Moves consumer offsets and pop offsets beyond a queue's restored end back to it, and
/// drops in-flight entries at or past it; returns each change, named.
fn settle_consume_progress(store: &MessageStore) -> Result<Vec<String>, crate::store::StoreError> {
    let kv = store.kv();
    let mut moved = Vec::new();
    let mut batch = KvBatch::new();
    for cf in [Cf::ConsumerOffset, Cf::ConsumeState] {
        let mut from = Vec::new();
        loop {
            let page = kv.scan(cf, &from, &[], APPLY_BATCH)?;
            let full = page.len() == APPLY_BATCH;
            if let Some((k, _)) = page.last() {
                from = k.clone();
                from.push(0);
            }
            for (k, v) in page {
                let (queue, row): (QueueKey, Option<ConsumeRow>) = match cf {
                    Cf::ConsumerOffset => match QueueKey::decode_offset_key(&k) {
                        Some(q) => (q, None),
                        None => continue,
                    },
                    _ => match QueueKey::decode_state_key(&k) {
                        Some((q, row)) => (q, Some(row)),
                        None => continue,
                    },
                };
                let (_, end) = store.queue_bounds(&queue.topic, queue.queue_id)?;
                let name = format!(
                    "group {:?} topic {:?} queue {}",
                    queue.group, queue.topic, queue.queue_id
                );
                match row {
                    Some(ConsumeRow::Inflight(offset)) if offset >= end => {
                        batch.delete(cf, k);
                        moved.push(format!(
                            "{name}: the delivery in flight at {offset} dropped"
                        ));
                    }
                    Some(ConsumeRow::Inflight(_)) => {}
                    None | Some(ConsumeRow::Pop) => {
                        let Some(offset) = values::decode_offset(&v) else {
                            continue;
                        };
                        if offset > end {
                            batch.put(cf, k, values::encode_offset(end));
                            let what = if row.is_none() {
                                "offset"
                            } else {
                                "pop offset"
                            };
                            moved.push(format!("{name}: {what} {offset} -> {end}"));
                        }
                    }
                }
            }
            if !full {
                break;
            }
        }
    }
    kv.write(batch)?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: u64, end: u64) -> TieredSegment {
        TieredSegment {
            base,
            end,
            epoch: 0,
            sha256: [0; 32],
            uploaded_at_ms: 0,
            object: format!("g/segments/{base:020}-e0000000000.log"),
        }
    }

    #[test]
    fn the_run_is_the_contiguous_one_ending_at_the_highest_offset() {
        let all: BTreeMap<u64, TieredSegment> = [
            seg(0, 10),
            seg(20, 30),
            seg(25, 35),
            seg(30, 40),
            seg(40, 55),
        ]
        .into_iter()
        .map(|t| (t.base, t))
        .collect();
        let (run, left) = contiguous_run(all);
        assert_eq!(run, vec![seg(20, 30), seg(30, 40), seg(40, 55)]);
        assert_eq!(left, vec![seg(0, 10), seg(25, 35)]);
        let (run, left) = contiguous_run(BTreeMap::new());
        assert!(run.is_empty() && left.is_empty());
    }

    #[test]
    fn segment_objects_are_named_by_base_and_epoch() {
        assert_eq!(
            segment_of_object("p/g/segments/00000000000000001024-e0000000003.log"),
            Some((1024, 3))
        );
        assert_eq!(
            segment_of_object("p/g/segments/00000000000000001024-e0000000003.index"),
            None
        );
        assert_eq!(segment_of_object("p/g/segments/1024-e3.log"), None);
    }
}
