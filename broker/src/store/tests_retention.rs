//! Retention: deletion by age and by disk ratio with an injected clock and disk figures, the
//! refusal of sends above the refuse ratio, the flushed offset across the cut-back that
//! follows a write which met a full disk, and the cost of a pass over many queues (a stop
//! between pages, no queue read when nothing is due, one read for a queue with nothing to cut).

use std::sync::{mpsc, Arc, Once};
use std::time::{Duration, SystemTime};

use super::retention::{prune_below, Prune, PAGE};
use super::tests::{append_one, config, msg};
use super::tests_fail_stop::HookedKv;
use super::writer::Command;
use super::*;

const HOUR: Duration = Duration::from_secs(3600);

/// Fills two queues until the log has at least `segments` segments; returns every result.
async fn fill(store: &MessageStore, segments: usize) -> Vec<(u32, AppendResult, String)> {
    let mut out = Vec::new();
    let mut n = 0;
    while store.shared.log.segments().len() < segments {
        let m = msg("R", (n % 2) as u32, n);
        let id = m.message_id.clone();
        out.push(((n % 2) as u32, append_one(store, m).await, id));
        n += 1;
    }
    out
}

fn set_segment_ages(store: &MessageStore, now: SystemTime, ages: &[Duration]) {
    for (seg, age) in store.shared.log.segments().iter().zip(ages) {
        let f = std::fs::File::options()
            .write(true)
            .open(seg.path())
            .unwrap();
        f.set_modified(now - *age).unwrap();
    }
}

const ROOMY: DiskSpace = DiskSpace {
    used: 10,
    available: 90,
};

/// The default disk ratios (75% clean, 90% refuse), judged only on the figures a test
/// injects: the background pass, which measures the machine's disk, never runs during a test.
fn default_ratios(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        retention: RetentionPolicy {
            check_interval: 24 * HOUR,
            ..RetentionPolicy::default()
        },
        ..config(dir)
    }
}

#[tokio::test]
async fn expired_segments_go_with_their_index_entries_and_nothing_newer() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    let written = fill(&store, 5).await;
    let now = SystemTime::now();
    // Two segments older than 72 h, then younger ones (the last is never deleted anyway).
    set_segment_ages(&store, now, &[100 * HOUR, 73 * HOUR, 71 * HOUR, HOUR, HOUR]);
    let bases = store.segment_bases();

    let pass = store.enforce_retention(now, ROOMY).unwrap();
    assert_eq!(
        pass.deleted.iter().map(|d| d.0).collect::<Vec<_>>(),
        bases[..2]
    );
    assert_eq!(pass.log_start, bases[2]);
    assert!(!pass.refusing);
    assert!(!dir
        .path()
        .join("commitlog")
        .join(segment_file_name(bases[0]))
        .exists());

    for q in 0..2u32 {
        let kept: Vec<_> = written
            .iter()
            .filter(|(qid, r, _)| *qid == q && r.log_offset >= bases[2])
            .collect();
        let (min, next) = store.queue_bounds("R", q).unwrap();
        assert_eq!(
            min, kept[0].1.queue_offset,
            "queue {q} starts at its first kept message"
        );
        assert_eq!(next, kept.last().unwrap().1.queue_offset + 1);
        // A read from offset 0 answers from the first message still stored.
        let read = store.read_queue("R", q, 0, usize::MAX, usize::MAX).unwrap();
        assert_eq!(read.len(), kept.len());
        for (m, (_, r, id)) in read.iter().zip(&kept) {
            assert_eq!((m.queue_offset, &m.msg.message_id), (r.queue_offset, id));
        }
    }
    let (_, _, gone) = &written[0];
    assert!(store.lookup_by_id(gone).unwrap().is_none());
    assert!(store.queue_entries("R", 0, 0, 1).unwrap()[0].log_offset >= bases[2]);
    let (_, _, last) = written.last().unwrap();
    assert!(store.lookup_by_id(last).unwrap().is_some());

    // Nothing more is due; a reopen keeps the same bounds and log start.
    assert!(store
        .enforce_retention(now, ROOMY)
        .unwrap()
        .deleted
        .is_empty());
    let bounds = store.queue_bounds("R", 1).unwrap();
    store.shutdown();
    drop(store);
    let store = MessageStore::open(config(dir.path())).unwrap();
    assert_eq!(store.queue_bounds("R", 1).unwrap(), bounds);
    assert_eq!(store.segment_bases()[0], bases[2]);
}

#[tokio::test]
async fn a_queue_whose_every_entry_expires_keeps_its_next_offset() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    for n in 0..3 {
        append_one(&store, msg("E", 0, n)).await;
    }
    fill(&store, 4).await;
    let now = SystemTime::now();
    set_segment_ages(&store, now, &[100 * HOUR, HOUR, HOUR, HOUR]);
    let pass = store.enforce_retention(now, ROOMY).unwrap();
    assert_eq!(pass.deleted.len(), 1);
    assert_eq!(store.queue_bounds("E", 0).unwrap(), (3, 3));
    assert!(store
        .read_queue("E", 0, 0, 10, usize::MAX)
        .unwrap()
        .is_empty());
    store.shutdown();
    drop(store);
    let store = MessageStore::open(config(dir.path())).unwrap();
    assert_eq!(store.queue_bounds("E", 0).unwrap(), (3, 3));
    assert_eq!(append_one(&store, msg("E", 0, 9)).await.queue_offset, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_purged_and_refilled_while_retention_prunes_it_keeps_its_new_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MessageStore::open(config(dir.path())).unwrap());
    for n in 0..3 {
        append_one(&store, msg("P", 0, n)).await;
    }
    fill(&store, 3).await;
    // Pruning below the second segment removes all of P's entries, 0..3, in its first write.
    let upto = store.segment_bases()[1];
    let (reached, at_write) = mpsc::sync_channel(0);
    let (resume, resumed) = mpsc::sync_channel(0);
    // The store's index, holding its first write until the test lets it go.
    let (once, resumed) = (Once::new(), parking_lot::Mutex::new(resumed));
    let kv = HookedKv {
        inner: store.shared.kv.clone(),
        before_write: move || {
            once.call_once(|| {
                reached.send(()).unwrap();
                resumed.lock().recv().unwrap();
            });
            Ok(())
        },
    };
    let shared = store.shared.clone();
    let pruner =
        std::thread::spawn(move || prune_below(&kv, upto, &shared.index_epoch, 0, PAGE, &|| false));
    at_write.recv().unwrap();

    // The topic is deleted and re-created, and two messages sent to it, while P's step waits.
    let refill = {
        let store = store.clone();
        tokio::spawn(async move {
            tokio::task::block_in_place(|| store.purge_topic("P")).unwrap();
            let a = append_one(&store, msg("P", 0, 10)).await;
            let b = append_one(&store, msg("P", 0, 11)).await;
            (a.queue_offset, b.queue_offset)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !refill.is_finished(),
        "the purge waits for the queue step under way"
    );
    resume.send(()).unwrap();
    assert!(matches!(pruner.join().unwrap().unwrap(), Prune::Done(_)));
    assert_eq!(refill.await.unwrap(), (0, 1));

    let ids = |store: &MessageStore| -> Vec<String> {
        let read = store.read_queue("P", 0, 0, 10, usize::MAX).unwrap();
        read.into_iter().map(|m| m.msg.message_id).collect()
    };
    let new_ids = vec!["ID-P-0-000010".to_string(), "ID-P-0-000011".to_string()];
    assert_eq!(store.queue_bounds("P", 0).unwrap(), (0, 2));
    assert_eq!(ids(&store), new_ids);
    store.shutdown();
    drop(store);
    let store = MessageStore::open(config(dir.path())).unwrap();
    assert_eq!(store.queue_bounds("P", 0).unwrap(), (0, 2));
    assert_eq!(ids(&store), new_ids);
}

#[tokio::test]
async fn a_pass_overtaken_by_an_index_rebuild_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    fill(&store, 3).await;
    let now = SystemTime::now();
    set_segment_ages(&store, now, &[100 * HOUR, HOUR, HOUR]);
    let bases = store.segment_bases();
    // A cut-back moved the epoch past the one this pass read.
    *store.shared.index_epoch.lock() += 1;
    let kv = store.shared.kv.as_ref();
    assert_eq!(
        prune_below(kv, bases[1], &store.shared.index_epoch, 0, PAGE, &|| false).unwrap(),
        Prune::Rebuilt
    );
    let (reply, rx) = mpsc::sync_channel(1);
    store
        .writes
        .submit(Command::DeleteSegments {
            upto: bases[1],
            epoch: 0,
            reply,
        })
        .unwrap();
    assert!(rx.recv().unwrap().unwrap().is_empty());
    assert_eq!(store.segment_bases(), bases);
    // The next pass reads the new epoch and deletes the expired segment.
    let pass = store.enforce_retention(now, ROOMY).unwrap();
    assert_eq!(pass.deleted.len(), 1);
    assert_eq!(store.segment_bases(), bases[1..]);
}

/// An index counting the reads of queue heads and consume-queue entries.
struct CountingKv {
    inner: Arc<dyn KvStore>,
    head_gets: std::sync::atomic::AtomicU64,
    entry_reads: std::sync::atomic::AtomicU64,
}

impl CountingKv {
    fn new() -> Arc<CountingKv> {
        Arc::new(CountingKv {
            inner: Arc::new(MemKv::default()),
            head_gets: Default::default(),
            entry_reads: Default::default(),
        })
    }
    fn count(&self, cf: Cf, get: bool) {
        use std::sync::atomic::Ordering::SeqCst;
        match cf {
            Cf::QueueHead if get => self.head_gets.fetch_add(1, SeqCst),
            Cf::ConsumeQueue => self.entry_reads.fetch_add(1, SeqCst),
            _ => 0,
        };
    }
    /// (queue-head gets, consume-queue reads) since the last call.
    fn take(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::SeqCst;
        (
            self.head_gets.swap(0, SeqCst),
            self.entry_reads.swap(0, SeqCst),
        )
    }
}

impl KvStore for CountingKv {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.count(cf, true);
        self.inner.get(cf, key)
    }
    fn write(&self, batch: KvBatch) -> Result<(), StoreError> {
        self.inner.write(batch)
    }
    fn scan(
        &self,
        cf: Cf,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        self.count(cf, false);
        self.inner.scan(cf, from, to, limit)
    }
    fn last_in(&self, cf: Cf, from: &[u8], to: &[u8]) -> Result<Option<KvPair>, StoreError> {
        self.count(cf, false);
        self.inner.last_in(cf, from, to)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
}

#[tokio::test]
async fn a_pass_over_many_queues_stops_between_pages_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(default_ratios(dir.path())).unwrap();
    for n in 0..50 {
        append_one(&store, msg(&format!("L{n:02}"), 0, n)).await;
    }
    // Every entry lies below the cut; pages of 5 queues; the stop says stop at its third ask.
    let upto = store.shared.log.end_offset();
    let asked = std::sync::atomic::AtomicU32::new(0);
    let stop = || asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 >= 3;
    let kv = store.shared.kv.as_ref();
    let outcome = prune_below(kv, upto, &store.shared.index_epoch, 0, 5, &stop).unwrap();
    assert_eq!(outcome, Prune::Stopped);
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 3);
    // Two pages were pruned (each queue keeps its next offset), the other 40 queues untouched.
    let bounds: Vec<_> = (0..50)
        .map(|n| store.queue_bounds(&format!("L{n:02}"), 0).unwrap())
        .collect();
    assert_eq!(bounds.iter().filter(|b| **b == (1, 1)).count(), 10);
    assert_eq!(bounds.iter().filter(|b| **b == (0, 1)).count(), 40);
}

#[tokio::test]
async fn a_pass_with_no_segment_due_reads_no_queue() {
    let dir = tempfile::tempdir().unwrap();
    let kv = CountingKv::new();
    let store = MessageStore::open_with_kv(default_ratios(dir.path()), kv.clone()).unwrap();
    for n in 0..20 {
        append_one(&store, msg(&format!("L{n:02}"), 0, n)).await;
    }
    fill(&store, 3).await;
    let now = SystemTime::now();
    set_segment_ages(&store, now, &[HOUR, HOUR, HOUR]);
    kv.take();
    let pass = store.enforce_retention(now, ROOMY).unwrap();
    assert!(pass.deleted.is_empty());
    assert_eq!(kv.take(), (0, 0), "no queue head or entry was read");
}

#[tokio::test]
async fn a_queue_with_nothing_below_the_cut_costs_one_read() {
    let dir = tempfile::tempdir().unwrap();
    let kv = CountingKv::new();
    let store = MessageStore::open_with_kv(default_ratios(dir.path()), kv.clone()).unwrap();
    append_one(&store, msg("Old", 0, 0)).await;
    fill(&store, 3).await; // R queues 0 and 1, from the first segment on
    for n in 0..20 {
        append_one(&store, msg(&format!("New{n:02}"), 0, n)).await;
    }
    let upto = store.segment_bases()[1];
    kv.take();
    let kv_ref: &dyn KvStore = kv.as_ref();
    let outcome = prune_below(kv_ref, upto, &store.shared.index_epoch, 0, PAGE, &|| false);
    let Prune::Done(pruned) = outcome.unwrap() else {
        panic!("the prune did not complete");
    };
    // Old/0, R/0 and R/1 have entries below the cut; the 20 new queues none.
    assert_eq!(pruned.queues, 3);
    let (head_gets, entry_reads) = kv.take();
    assert_eq!(
        head_gets, 3,
        "only queues with something to cut read their head"
    );
    // One first-entry read per queue (23), and for each of the 3 cut queues its end, its
    // first kept entry and the start of the range deleted.
    assert_eq!(entry_reads, 23 + 3 * 3);
    assert_eq!(store.queue_bounds("New07", 0).unwrap(), (0, 1));
    assert_eq!(store.queue_bounds("Old", 0).unwrap(), (1, 1));
    assert!(store.queue_entries("R", 0, 0, 1).unwrap()[0].log_offset >= upto);
}

#[tokio::test]
async fn a_full_disk_deletes_the_oldest_segments_until_below_the_clean_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(default_ratios(dir.path())).unwrap();
    fill(&store, 5).await;
    let now = SystemTime::now();
    let segs = store.shared.log.segments();
    let (s0, s1) = (segs[0].len(), segs[1].len());
    // All young. Deleting the first segment leaves the disk above 75%, the second below.
    let total = 100 * (s0 + s1);
    let used = total * 3 / 4 + s0 + s1 / 2;
    let disk = DiskSpace {
        used,
        available: total - used,
    };
    let pass = store.enforce_retention(now, disk).unwrap();
    assert_eq!(
        pass.deleted,
        vec![(segs[0].base(), s0), (segs[1].base(), s1)]
    );
    assert!(!pass.refusing);

    // However full the disk, the segment being written stays.
    let full = DiskSpace {
        used: 99 << 30,
        available: 1 << 30,
    };
    let pass = store.enforce_retention(now, full).unwrap();
    assert_eq!(store.segment_bases(), vec![segs[4].base()]);
    assert_eq!(pass.deleted.len(), 2);
}

#[tokio::test]
async fn sends_are_refused_above_the_refuse_ratio_and_taken_again_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(default_ratios(dir.path())).unwrap();
    let first = append_one(&store, msg("F", 0, 1)).await;
    let now = SystemTime::now();
    let pass = store
        .enforce_retention(
            now,
            DiskSpace {
                used: 91,
                available: 9,
            },
        )
        .unwrap();
    assert!(pass.refusing);
    let refused = store.append(vec![msg("F", 0, 2)]).await.unwrap_err();
    assert!(matches!(refused, StoreError::StorageFull(_)), "{refused}");
    assert_eq!(
        apogee_proto::ApogeeError::from(refused).code(),
        apogee_proto::v2::Code::InternalServerError
    );
    // Reads keep working, and nothing of the refused send is stored.
    assert_eq!(store.queue_bounds("F", 0).unwrap(), (0, 1));
    assert_eq!(
        store.read_queue("F", 0, 0, 10, usize::MAX).unwrap()[0].log_offset,
        first.log_offset
    );
    assert!(!store.enforce_retention(now, ROOMY).unwrap().refusing);
    assert_eq!(append_one(&store, msg("F", 0, 3)).await.queue_offset, 1);
}

#[test]
fn disk_ratio_is_used_over_used_plus_available() {
    let d = DiskSpace {
        used: 30,
        available: 10,
    };
    assert!((d.used_ratio() - 0.75).abs() < 1e-9);
    let empty = DiskSpace {
        used: 0,
        available: 0,
    };
    assert_eq!(empty.used_ratio(), 0.0);
    let here = DiskSpace::of(std::path::Path::new(".")).unwrap();
    assert!(here.used + here.available > 0);
}

/// Holds a sync of the log's first 4,096 bytes between its fdatasync and its mark while `cut`
/// cuts the log back to 0 on another thread, and checks that the cut waited for the sync and
/// that nothing stays marked flushed on the empty log.
fn assert_a_cut_waits_for_a_sync_under_way(cut: fn(&CommitLog)) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Barrier;

    let dir = tempfile::tempdir().unwrap();
    let no_zeros = commitlog::Preallocation { ahead: 0, limit: 0 };
    let log = Arc::new(CommitLog::open(&dir.path().join("commitlog"), no_zeros, 0).unwrap());
    log.last_segment().unwrap().append(&[7u8; 4096]).unwrap();
    log.set_end(4096);

    let (synced, go) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let hook = {
        let (synced, go) = (synced.clone(), go.clone());
        move || {
            synced.wait();
            go.wait();
        }
    };
    *log.before_mark.lock() = Some(Arc::new(hook));
    let syncing = {
        let log = log.clone();
        std::thread::spawn(move || log.sync_to_end().unwrap())
    };
    synced.wait(); // the fdatasync of 0..4096 is done, its mark not yet made
    *log.before_mark.lock() = None;
    let done = Arc::new(AtomicBool::new(false));
    let cutting = {
        let (log, done) = (log.clone(), done.clone());
        std::thread::spawn(move || {
            cut(&log);
            done.store(true, Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let cut_while_syncing = done.load(Ordering::SeqCst);
    go.wait();
    assert_eq!(syncing.join().unwrap(), Some(4096));
    cutting.join().unwrap();
    assert!(!cut_while_syncing, "the cut ran while a sync was under way");
    assert_eq!(
        (log.end_offset(), log.flushed_offset()),
        (0, 0),
        "a sync marked flushed what the cut removed"
    );
}

/// A write that meets a full disk is cut back (`CommitLog::discard_from`) while the sync thread
/// or the flusher may be syncing the end that write had reached. The sync must not mark that
/// end flushed after the cut: the next records, written over it, would then count as flushed
/// without an fdatasync, and a SYNC_FLUSH send would be answered before they are durable.
#[test]
fn a_sync_under_way_never_marks_flushed_what_a_cut_back_removed() {
    assert_a_cut_waits_for_a_sync_under_way(|log| log.discard_from(0).unwrap());
}

/// The same for a slave cutting its log back to what its master has (`CommitLog::cut_back`),
/// beside its flusher.
#[test]
fn a_sync_under_way_never_marks_flushed_what_a_slave_cut_back() {
    assert_a_cut_waits_for_a_sync_under_way(|log| log.cut_back(0).unwrap());
}
