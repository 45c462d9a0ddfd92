//! The derived column families written without RocksDB's WAL (`kv.rs`): what a kill -9
//! leaves of them, and recovery re-dispatching the log into the index a fresh rebuild makes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::kv::UNLOGGED_FLUSH_BYTES;
use super::tests::{config, msg};
use super::tests_rebuild::rows;
use super::tests_recovery::copy_dir;
use super::*;

fn keys_of(kv: &dyn KvStore, cf: Cf) -> Vec<String> {
    rows(kv, cf)
        .into_iter()
        .map(|(k, _)| String::from_utf8(k).unwrap())
        .collect()
}

fn put(kv: &dyn KvStore, cf: Cf, key: &str, unlogged: bool) {
    let mut batch = KvBatch::new();
    batch.put(cf, key, "v");
    kv.write(if unlogged { batch.unlogged() } else { batch })
        .unwrap();
}

/// What a kill -9 of `kv` leaves, for both engines: the unlogged writes up to the last
/// flush, and every logged one. `kill` makes the database a kill would leave now.
fn kill_contract(kv: &dyn KvStore, kill: &dyn Fn() -> Box<dyn KvStore>) {
    put(kv, Cf::ConsumeQueue, "a", true);
    put(kv, Cf::TopicConfig, "t1", false);
    kv.flush().unwrap();
    put(kv, Cf::ConsumeQueue, "b", true);
    put(kv, Cf::TopicConfig, "t2", false);
    // A logged write of a derived family (a topic's purge) is replayed like primary state.
    put(kv, Cf::MessageKey, "k", false);
    let killed = kill();
    assert_eq!(keys_of(killed.as_ref(), Cf::ConsumeQueue), ["a"]);
    assert_eq!(keys_of(killed.as_ref(), Cf::TopicConfig), ["t1", "t2"]);
    assert_eq!(keys_of(killed.as_ref(), Cf::MessageKey), ["k"]);
    // The live database lost nothing.
    assert_eq!(keys_of(kv, Cf::ConsumeQueue), ["a", "b"]);
}

/// The files of a live RocksDB copied as they are: what a kill -9 would leave of them.
fn killed_copy(live: &Path, to: &Path) -> Box<dyn KvStore> {
    let _ = std::fs::remove_dir_all(to);
    copy_dir(live, to);
    Box::new(RocksKv::open(to).unwrap())
}

#[test]
fn a_kill_drops_the_unlogged_writes_since_the_last_flush_and_keeps_the_logged_ones() {
    let mem = MemKv::new();
    kill_contract(&mem, &|| Box::new(mem.after_kill()));
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let rocks = RocksKv::open(&live).unwrap();
    kill_contract(&rocks, &|| killed_copy(&live, &dir.path().join("killed")));
}

#[test]
fn rocksdb_flushes_unlogged_writes_past_their_bound_without_being_asked() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let kv = RocksKv::open(&live).unwrap();
    // 1 MiB batches, each with its checkpoint, a little past the bound.
    let batches = (UNLOGGED_FLUSH_BYTES >> 20) + 2;
    let value = vec![7u8; 64 << 10];
    for i in 0..batches {
        let mut batch = KvBatch::new().unlogged();
        for j in 0..16u64 {
            batch.put(Cf::ConsumeQueue, (i * 16 + j).to_be_bytes(), &value);
        }
        index::put_checkpoint(&mut batch, i + 1);
        kv.write(batch).unwrap();
    }
    // The flush runs in the background: a kill now keeps the batches it took.
    let killed = dir.path().join("killed");
    let kept = std::time::Instant::now();
    loop {
        let copy = killed_copy(&live, &killed);
        let at = copy.get(Cf::Checkpoint, keys::CK_DISPATCHED).unwrap();
        let at = at.map_or(0, |v| index::u64_value(&v).unwrap());
        if at >= UNLOGGED_FLUSH_BYTES >> 20 {
            assert_eq!(rows(copy.as_ref(), Cf::ConsumeQueue).len() as u64, at * 16);
            break;
        }
        assert!(
            kept.elapsed() < std::time::Duration::from_secs(20),
            "no flush after {batches} MiB unlogged: a kill keeps {at} batches"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn an_unlogged_batch_touching_primary_state_is_refused_by_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    let rocks = RocksKv::open(dir.path().join("index")).unwrap();
    let mem = MemKv::new();
    for kv in [&rocks as &dyn KvStore, &mem] {
        let mut batch = KvBatch::new().unlogged();
        batch.put(Cf::ConsumeQueue, "q", "v");
        batch.put(Cf::ConsumerOffset, "o", "1");
        match kv.write(batch) {
            Err(StoreError::Index(m)) => assert!(m.contains("consumer_offset"), "{m}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(kv.get(Cf::ConsumeQueue, b"q").unwrap(), None);
    }
}

#[test]
fn rocksdb_keeps_unlogged_writes_across_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    {
        let kv = RocksKv::open(dir.path().join("index")).unwrap();
        put(&kv, Cf::ConsumeQueue, "flushed", true);
        kv.flush().unwrap();
        // Not flushed by us: the close writes the memtables out.
        put(&kv, Cf::QueueHead, "closed", true);
    }
    let kv = RocksKv::open(dir.path().join("index")).unwrap();
    assert_eq!(keys_of(&kv, Cf::ConsumeQueue), ["flushed"]);
    assert_eq!(keys_of(&kv, Cf::QueueHead), ["closed"]);
}

/// Every derived column family's rows.
fn derived_rows(kv: &dyn KvStore) -> BTreeMap<&'static str, Vec<KvPair>> {
    Cf::DERIVED
        .into_iter()
        .map(|cf| (cf.name(), rows(kv, cf)))
        .collect()
}

/// The derived rows a store opened over an empty index makes of the log in `dir`.
fn fresh_rebuild(dir: &Path) -> BTreeMap<&'static str, Vec<KvPair>> {
    let kv = Arc::new(MemKv::new());
    let store = MessageStore::open_with_kv(config(dir), kv.clone()).unwrap();
    assert!(store.index_rebuild().is_some(), "no rebuild ran");
    drop(store);
    derived_rows(kv.as_ref())
}

/// Every acknowledged message is served where its send was told, and found by its id.
fn check_serves(store: &MessageStore, acked: &[(NewMessage, AppendResult)]) {
    for (m, at) in acked {
        let got = store
            .read_queue(&m.topic, m.queue_id, at.queue_offset, 1, usize::MAX)
            .unwrap();
        assert_eq!(got.len(), 1, "{} at {at:?} is not served", m.message_id);
        assert_eq!((&got[0].msg, got[0].log_offset), (m, at.log_offset));
        let by_id = store.lookup_by_id(&m.message_id).unwrap();
        assert_eq!(by_id.map(|s| s.log_offset), Some(at.log_offset));
    }
}

/// Rounds of appends in groups over two topics and three queues each (ids, keys and
/// transaction facts), the index flushed at a different moment of each round (RocksDB's own
/// flushes come at any time), then a kill -9: the restart serves every acknowledged message
/// and holds the index a rebuild of the whole log makes, and the next round goes on from it.
#[tokio::test]
async fn after_a_kill_at_any_moment_the_restart_holds_the_index_a_fresh_rebuild_makes() {
    const GROUPS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let mut kv = Arc::new(MemKv::new());
    let mut acked: Vec<(NewMessage, AppendResult)> = Vec::new();
    let mut lost_something = false;
    for round in 0..=GROUPS {
        let store = MessageStore::open_with_kv(config(dir.path()), kv.clone()).unwrap();
        for group in 0..GROUPS {
            if group == round {
                kv.flush().unwrap();
            }
            let msgs: Vec<NewMessage> = (0..8)
                .map(|i| {
                    let n = acked.len() + i;
                    msg(["A", "B"][n % 2], (n % 3) as u32, n)
                })
                .collect();
            let at = store.append(msgs.clone()).await.unwrap();
            acked.extend(msgs.into_iter().zip(at));
        }
        let killed = Arc::new(kv.after_kill());
        lost_something |= rows(killed.as_ref(), Cf::ConsumeQueue).len() < acked.len();
        // Its close flushes `kv`, which the kill was taken from before.
        drop(store);
        let store = MessageStore::open_with_kv(config(dir.path()), killed.clone()).unwrap();
        check_serves(&store, &acked);
        drop(store);
        assert_eq!(
            derived_rows(killed.as_ref()),
            fresh_rebuild(dir.path()),
            "round {round}"
        );
        kv = killed;
    }
    assert!(lost_something, "no kill lost an unflushed index entry");
}

/// The flushed mark after three SYNC-flushed sends and a kill, for a store over `kv` (None:
/// RocksDB in `dir`); `kill` makes what a kill -9 now would leave of the index.
async fn flushed_mark_after_a_kill(
    dir: &Path,
    kv: Option<Arc<dyn KvStore>>,
    kill: &dyn Fn() -> Box<dyn KvStore>,
) -> (u64, Vec<AppendResult>) {
    let cfg = StoreConfig {
        flush_mode: FlushMode::Sync,
        ..config(dir)
    };
    let store = match kv {
        Some(kv) => MessageStore::open_with_kv(cfg, kv).unwrap(),
        None => MessageStore::open(cfg).unwrap(),
    };
    let mut at = Vec::new();
    for n in 0..3 {
        at.push(super::tests::append_one(&store, msg("S", 0, n)).await);
    }
    let killed = kill();
    let mark = killed.get(Cf::Checkpoint, keys::CK_FLUSHED).unwrap();
    (mark.map_or(0, |v| index::u64_value(&v).unwrap()), at)
}

/// The flushed mark is not derived from the log: a kill must not take it back to the last
/// flush of the index, or damage below it would pass for a torn tail (`recovery.rs`).
#[tokio::test]
async fn a_kill_keeps_the_flushed_mark_a_sync_flushed_send_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Arc::new(MemKv::new());
    let twin = flushed_mark_after_a_kill(dir.path(), Some(mem.clone()), &|| {
        Box::new(mem.after_kill())
    })
    .await;
    let rocks_dir = tempfile::tempdir().unwrap();
    let index = rocks_dir.path().join("index");
    let killed = rocks_dir.path().join("killed");
    let rocks =
        flushed_mark_after_a_kill(rocks_dir.path(), None, &|| killed_copy(&index, &killed)).await;
    for (engine, (mark, at)) in [("twin", twin), ("rocksdb", rocks)] {
        // The third send's group recorded the sync the second send was answered after.
        assert!(
            mark >= at[2].log_offset,
            "{engine}: flushed mark {mark} after a kill, sends at {at:?}"
        );
    }
}
