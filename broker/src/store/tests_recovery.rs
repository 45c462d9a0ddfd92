//! Recovery tests: torn tails, corruption, an index ahead of or missing from the log.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::tests::{append_one, config, msg};
use super::*;

/// What was appended: message, where it landed, its record size.
struct Written {
    msg: NewMessage,
    at: AppendResult,
    size: u64,
}

/// Appends `n` messages over 3 queues of topic "X"; returns them after a clean shutdown.
async fn build_log(dir: &Path, n: usize, segment_size: u64) -> Vec<Written> {
    let store = MessageStore::open(StoreConfig {
        segment_size,
        ..config(dir)
    })
    .unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let m = NewMessage {
            body: vec![(i % 256) as u8; 100 + (i * 131) % 2500].into(),
            ..msg("X", (i % 3) as u32, i)
        };
        let at = append_one(&store, m.clone()).await;
        let size = record::encoded_len(&m).unwrap() as u64;
        out.push(Written { msg: m, at, size });
    }
    store.shutdown();
    out
}

pub(super) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("commitlog"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn base_of(path: &Path) -> u64 {
    path.file_name().unwrap().to_str().unwrap().parse().unwrap()
}

fn flip_byte(path: &Path, pos: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, pos).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], pos).unwrap();
}

/// Checks that the reopened store holds exactly the records ending at or before `end`.
fn check_holds_exactly(store: &MessageStore, written: &[Written], end: u64) {
    assert_eq!(store.log_end_offset(), end);
    for q in 0..3u32 {
        let expect: Vec<&Written> = written
            .iter()
            .filter(|w| w.msg.queue_id == q && w.at.log_offset + w.size <= end)
            .collect();
        assert_eq!(
            store.queue_bounds("X", q).unwrap(),
            (0, expect.len() as u64),
            "queue {q}"
        );
        let got = store.read_queue("X", q, 0, 10_000, usize::MAX).unwrap();
        assert_eq!(got.len(), expect.len(), "queue {q}");
        for (g, w) in got.iter().zip(&expect) {
            assert_eq!((&g.msg, g.log_offset), (&w.msg, w.at.log_offset));
        }
    }
    for w in written {
        let kept = w.at.log_offset + w.size <= end;
        assert_eq!(
            store.lookup_by_id(&w.msg.message_id).unwrap().is_some(),
            kept
        );
        assert_eq!(
            store.lookup_by_key("X", &w.msg.keys[0], 5).unwrap().len(),
            usize::from(kept)
        );
    }
    let kv = store.kv();
    for cf in [Cf::ConsumeQueue, Cf::MessageId, Cf::MessageKey] {
        for (k, v) in kv.scan(cf, b"", &[], usize::MAX).unwrap() {
            let off = if cf == Cf::ConsumeQueue {
                QueueEntry::decode(&k, &v).unwrap().log_offset
            } else {
                index::trailing_u64(&k).unwrap()
            };
            assert!(off < end, "{cf:?} entry points past the log end");
        }
    }
}

#[tokio::test]
async fn torn_tail_is_truncated_at_the_last_whole_record() {
    let base = tempfile::tempdir().unwrap();
    let written = build_log(base.path(), 120, 64 * 1024).await;
    let segs = segment_files(base.path());
    assert!(segs.len() >= 2, "the test wants a sealed segment too");
    let last = segs.last().unwrap();
    let last_base = base_of(last);
    // The file is preallocated: zeros follow the last record.
    let last_len = std::fs::metadata(last).unwrap().len();
    let mut rng = StdRng::seed_from_u64(0xA90_6EE);
    let boundaries: Vec<u64> = written
        .iter()
        .map(|w| w.at.log_offset + w.size)
        .filter(|&e| e > last_base)
        .collect();
    let records_end = boundaries.last().unwrap() - last_base;
    let original = std::fs::read(last).unwrap();
    assert!(last_len > records_end, "zeros follow the records");
    for round in 0..60 {
        let cut = match round {
            0 => 0,
            1 => records_end - 1,
            2 => boundaries[boundaries.len() / 2] - last_base,
            3 => boundaries[0] - last_base + 1,
            4 => last_len,
            5 => records_end + 1,
            _ => rng.gen_range(0..=last_len),
        };
        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        let seg = segment_files(work.path()).pop().unwrap();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let expected_end = written
            .iter()
            .map(|w| w.at.log_offset + w.size)
            .filter(|&e| e <= last_base + cut)
            .max()
            .unwrap_or(0)
            .max(last_base);
        let store = MessageStore::open(config(work.path()))
            .unwrap_or_else(|e| panic!("round {round}, cut {cut}: open failed: {e}"));
        check_holds_exactly(&store, &written, expected_end);
        // A torn record is cut off; a tail of zeros after the last whole record (the
        // preallocation, or a torn record's first bytes that happen to be zero) is kept.
        let tail = (expected_end - last_base) as usize..cut as usize;
        let file_len = if original[tail].iter().all(|&b| b == 0) {
            cut
        } else {
            expected_end - last_base
        };
        assert_eq!(
            std::fs::metadata(&seg).unwrap().len(),
            file_len,
            "round {round}, cut {cut}: file length"
        );
        let next = store.queue_bounds("X", 1).unwrap().1;
        let r = append_one(&store, msg("X", 1, 10_000)).await;
        assert_eq!(
            (r.log_offset, r.queue_offset),
            (expected_end, next),
            "round {round}"
        );
        drop(store); // shuts down and closes RocksDB
                     // And it stays that way.
        let store = MessageStore::open(config(work.path())).unwrap();
        assert_eq!(
            store.read_queue("X", 1, next, 10, usize::MAX).unwrap()[0].msg,
            msg("X", 1, 10_000)
        );
    }
}

#[tokio::test]
async fn a_zero_filled_tail_ends_the_log_and_appends_continue_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let written = build_log(dir.path(), 10, 1 << 20).await;
    let records_end = written.iter().map(|w| w.at.log_offset + w.size).max();
    let records_end = records_end.unwrap();
    let seg = segment_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    assert!(len > records_end, "preallocated: {len} <= {records_end}");
    // More zeros than the store itself wrote: still the end, not damage.
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len + 5000)
        .unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    check_holds_exactly(&store, &written, records_end);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len + 5000, "kept");
    let next = store.queue_bounds("X", 1).unwrap().1;
    let r = append_one(&store, msg("X", 1, 10_000)).await;
    assert_eq!((r.log_offset, r.queue_offset), (records_end, next));
    drop(store);
    let store = MessageStore::open(config(dir.path())).unwrap();
    assert_eq!(
        store.read_queue("X", 1, next, 10, usize::MAX).unwrap()[0].msg,
        msg("X", 1, 10_000)
    );
    assert!(store.log_end_offset() > records_end);
}

#[tokio::test]
async fn without_preallocation_segment_files_hold_exactly_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(StoreConfig {
        preallocate_bytes: 0,
        ..config(dir.path())
    })
    .unwrap();
    for i in 0..50 {
        append_one(&store, msg("X", 0, i)).await;
    }
    let end = store.log_end_offset();
    let on_disk: u64 = segment_files(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(on_disk, end);
}

#[tokio::test]
async fn damage_in_the_middle_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let written = build_log(base.path(), 30, 1 << 20).await;
    let victim = &written[3];
    // length, magic, CRC, fixed fields, topic, body, last byte of the record
    for delta in [1, 5, 9, 20, 60, victim.size / 2, victim.size - 1] {
        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        let seg = segment_files(work.path()).pop().unwrap();
        flip_byte(&seg, victim.at.log_offset + delta);
        match MessageStore::open(config(work.path())) {
            Err(StoreError::Corrupt { offset, reason }) => {
                assert_eq!(offset, victim.at.log_offset, "delta {delta}: {reason}");
                assert!(reason.contains("valid record follows"), "{reason}");
            }
            Err(e) => panic!("delta {delta}: expected Corrupt, got {e}"),
            Ok(_) => panic!("delta {delta}: a damaged log was opened"),
        }
    }
}

#[tokio::test]
async fn damage_in_a_sealed_segment_is_found_by_reads_and_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let written = build_log(dir.path(), 60, 64 * 1024).await;
    let first = &segment_files(dir.path())[0];
    let victim = &written[2];
    flip_byte(first, victim.at.log_offset + victim.size - 3);
    {
        // The index covers the sealed segment: open succeeds, the read detects the damage.
        let store = MessageStore::open(config(dir.path())).unwrap();
        let err = store
            .read_queue(
                "X",
                victim.msg.queue_id,
                victim.at.queue_offset,
                1,
                usize::MAX,
            )
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { offset, .. } if offset == victim.at.log_offset),
            "{err}"
        );
    }
    // Rebuilding the index scans the whole log and refuses the damage.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    match MessageStore::open(config(dir.path())) {
        Err(StoreError::Corrupt { offset, reason }) => {
            assert_eq!(offset, victim.at.log_offset);
            assert!(reason.contains("sealed segment"), "{reason}");
        }
        other => panic!("expected Corrupt, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn damage_past_the_flushed_mark_counts_as_torn() {
    let base = tempfile::tempdir().unwrap();
    let written = build_log(base.path(), 30, 1 << 20).await;
    // Pretend only the first 10 records were known durable (async flush, then power loss
    // with out-of-order writeback): damage after that point is a lost unsynced write.
    let mark = written[10].at.log_offset;
    {
        let kv = RocksKv::open(base.path().join("index")).unwrap();
        let mut b = KvBatch::new();
        index::put_flushed(&mut b, mark);
        kv.write(b).unwrap();
    }
    let victim = &written[20];
    let work = tempfile::tempdir().unwrap();
    copy_dir(base.path(), work.path());
    flip_byte(
        &segment_files(work.path()).pop().unwrap(),
        victim.at.log_offset + 30,
    );
    let store = MessageStore::open(config(work.path())).unwrap();
    check_holds_exactly(&store, &written, victim.at.log_offset);
    drop(store);
    // The same damage below the mark is refused.
    let victim = &written[5];
    let work = tempfile::tempdir().unwrap();
    copy_dir(base.path(), work.path());
    flip_byte(
        &segment_files(work.path()).pop().unwrap(),
        victim.at.log_offset + 30,
    );
    assert!(matches!(
        MessageStore::open(config(work.path())),
        Err(StoreError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn index_ahead_of_the_log_is_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let written = build_log(dir.path(), 120, 64 * 1024).await;
    // Lose the last segment entirely and the last 5 records of the one before, on a record
    // boundary, after the index recorded them.
    let segs = segment_files(dir.path());
    let last = segs.last().unwrap();
    let prev = &segs[segs.len() - 2];
    std::fs::remove_file(last).unwrap();
    let in_prev: Vec<&Written> = written
        .iter()
        .filter(|w| w.at.log_offset >= base_of(prev) && w.at.log_offset < base_of(last))
        .collect();
    let end = in_prev[in_prev.len() - 5].at.log_offset;
    OpenOptions::new()
        .write(true)
        .open(prev)
        .unwrap()
        .set_len(end - base_of(prev))
        .unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    check_holds_exactly(&store, &written, end);
    let next = store.queue_bounds("X", 2).unwrap().1;
    let r = append_one(&store, msg("X", 2, 5000)).await;
    assert_eq!((r.log_offset, r.queue_offset), (end, next));
}

#[tokio::test]
async fn missing_index_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let written = build_log(dir.path(), 90, 64 * 1024).await;
    let end = written.last().map(|w| w.at.log_offset + w.size).unwrap();
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    check_holds_exactly(&store, &written, end);
    let r = append_one(&store, msg("X", 0, 777)).await;
    assert_eq!((r.log_offset, r.queue_offset), (end, 30));
    assert!(r.store_timestamp_ms >= written.last().unwrap().at.store_timestamp_ms);
}

#[tokio::test]
async fn index_behind_the_log_is_completed() {
    let dir = tempfile::tempdir().unwrap();
    let written = build_log(dir.path(), 40, 1 << 20).await;
    let end = written.last().map(|w| w.at.log_offset + w.size).unwrap();
    // Roll the index back: forget the last 15 records (as if RocksDB lost its WAL tail).
    {
        let kv = RocksKv::open(dir.path().join("index")).unwrap();
        let cut = written[25].at.log_offset;
        let mut b = KvBatch::new();
        for w in &written[25..] {
            b.delete(
                Cf::ConsumeQueue,
                crate::store::keys::cq_key("X", w.msg.queue_id, w.at.queue_offset),
            );
        }
        for q in 0..3u32 {
            let n = written[..25].iter().filter(|w| w.msg.queue_id == q).count() as u64;
            index::put_head(&mut b, "X", q, n);
        }
        index::put_checkpoint(&mut b, cut);
        kv.write(b).unwrap();
    }
    let store = MessageStore::open(config(dir.path())).unwrap();
    check_holds_exactly(&store, &written, end);
}

#[tokio::test]
async fn a_queue_row_is_written_once_and_next_offsets_come_from_the_consume_queue() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    for i in 0..40 {
        append_one(&store, msg("H", (i % 2) as u32, i)).await;
    }
    for q in 0..2u32 {
        // The row still holds what the queue's first record wrote.
        let row = store
            .shared
            .kv
            .get(Cf::QueueHead, &index::queue_key("H", q))
            .unwrap()
            .unwrap();
        assert_eq!(index::u64_value(&row).unwrap(), 1);
        assert_eq!(store.queue_bounds("H", q).unwrap(), (0, 20));
    }
    store.shutdown();
    drop(store);
    let store = MessageStore::open(config(dir.path())).unwrap();
    assert_eq!(store.queue_bounds("H", 1).unwrap(), (0, 20));
    assert_eq!(append_one(&store, msg("H", 1, 99)).await.queue_offset, 20);
    assert_eq!(append_one(&store, msg("H", 0, 100)).await.queue_offset, 20);
}

/// Opens the store at `dir` expecting a refusal; returns its message.
fn refused(dir: &Path) -> StoreError {
    match MessageStore::open(config(dir)) {
        Err(e) => e,
        Ok(_) => panic!("the store opened {}", dir.display()),
    }
}

#[tokio::test]
async fn a_foreign_first_segment_is_refused_and_left_unchanged() {
    use apogee_tests::rocketmq_store::{snapshot, write_store};
    // A whole RocketMQ store: named as one, nothing created or changed (no index/ either).
    let dir = tempfile::tempdir().unwrap();
    let file = write_store(dir.path(), "TopicTest", 5, 64 * 1024);
    let before = snapshot(dir.path());
    let text = refused(dir.path()).to_string();
    for part in [
        "this is a RocketMQ store; use `apogee config import`",
        file.display().to_string().as_str(),
        "0xdaa320a7",
        "consumequeue/",
        "checkpoint",
        "abort",
        "nothing was changed",
    ] {
        assert!(text.contains(part), "{part:?} missing: {text}");
    }
    assert_eq!(snapshot(dir.path()), before, "the store changed something");

    // Its commit log alone: still RocketMQ's, by its magic; also where the log itself is
    // opened (over another index).
    for entry in ["consumequeue", "checkpoint", "abort"] {
        let path = dir.path().join(entry);
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
    let before = snapshot(dir.path());
    let text = refused(dir.path()).to_string();
    assert!(
        text.contains("RocketMQ") && text.contains("0xdaa320a7"),
        "{text}"
    );
    assert!(text.contains(&file.display().to_string()), "{text}");
    let text = match MessageStore::open_with_kv(config(dir.path()), Arc::new(MemKv::new())) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("opened a RocketMQ commit log"),
    };
    assert!(text.contains("this is a RocketMQ commit log"), "{text}");
    assert_eq!(snapshot(dir.path()), before, "the store changed something");

    // Another format: the magic it read is named.
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("commitlog");
    std::fs::create_dir_all(&log_dir).unwrap();
    let mut bytes = b"\x7fELF\x7f\x2a\xad\x81".to_vec();
    bytes.resize(300_000, 0x5a);
    std::fs::write(log_dir.join(segment_file_name(0)), &bytes).unwrap();
    let before = snapshot(dir.path());
    let text = refused(dir.path()).to_string();
    assert!(text.contains("magic 0x7f2aad81"), "{text}");
    assert!(text.contains(&segment_file_name(0)), "{text}");
    assert_eq!(snapshot(dir.path()), before, "the store changed something");

    // Zeros where the first record's length and magic go, then data: no Apogee record.
    bytes[..8].fill(0);
    std::fs::write(log_dir.join(segment_file_name(0)), &bytes).unwrap();
    let before = snapshot(dir.path());
    match MessageStore::open_with_kv(config(dir.path()), Arc::new(MemKv::new())) {
        Err(StoreError::Corrupt { offset: 0, reason }) => {
            assert!(reason.contains("holds no Apogee record"), "{reason}");
            assert!(reason.contains("truncate -s 0"), "{reason}");
        }
        Err(e) => panic!("expected Corrupt at 0, got {e}"),
        Ok(_) => panic!("opened a segment holding no Apogee record"),
    }
    assert_eq!(snapshot(dir.path()), before, "the store changed something");
}

#[tokio::test]
async fn entries_apogee_did_not_write_are_refused_by_name() {
    use apogee_tests::rocketmq_store::snapshot;
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 10, 64 * 1024).await;
    // A file system's root has a lost+found: not refused, there or in commitlog/. Other
    // files in commitlog/ (something else on the same file system) are left alone.
    std::fs::create_dir(dir.path().join("lost+found")).unwrap();
    std::fs::create_dir(dir.path().join("commitlog").join("lost+found")).unwrap();
    let filler = dir.path().join("commitlog").join("filler");
    std::fs::write(&filler, [7u8; 4096]).unwrap();
    drop(MessageStore::open(config(dir.path())).unwrap());
    assert_eq!(std::fs::read(&filler).unwrap(), [7u8; 4096]);
    for (name, shown) in [
        ("notes.txt", "notes.txt"),
        ("config", "config/"),
        // RocketMQ's message index where RocksDB's files go.
        (
            "index-rocketmq/20240101120000000",
            "index/ (holds 20240101120000000",
        ),
    ] {
        let work = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), work.path());
        match name.split_once('/') {
            Some(("index-rocketmq", file)) => {
                std::fs::remove_dir_all(work.path().join("index")).unwrap();
                std::fs::create_dir(work.path().join("index")).unwrap();
                std::fs::write(work.path().join("index").join(file), [1u8; 64]).unwrap();
            }
            _ if shown.ends_with('/') => std::fs::create_dir(work.path().join(name)).unwrap(),
            _ => std::fs::write(work.path().join(name), b"x").unwrap(),
        }
        let before = snapshot(work.path());
        let text = refused(work.path()).to_string();
        assert!(text.contains(shown), "{shown:?} missing: {text}");
        assert!(
            text.contains("nothing of them is changed") || text.contains("nothing was changed")
        );
        assert_eq!(snapshot(work.path()), before, "{name}: something changed");
    }
}

#[tokio::test]
async fn a_segment_still_all_zeros_after_a_roll_starts() {
    let base = tempfile::tempdir().unwrap();
    let written = build_log(base.path(), 60, 64 * 1024).await;
    let end = written
        .iter()
        .map(|w| w.at.log_offset + w.size)
        .max()
        .unwrap();
    for (zeros, lose_index) in [(0, false), (16 * 1024, false), (64 * 1024, true)] {
        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        // The roll sealed the last segment (its zeros cut off) and created the next one;
        // nothing of the first write into it reached the disk but zeros.
        let last = segment_files(work.path()).pop().unwrap();
        OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .set_len(end - base_of(&last))
            .unwrap();
        let new = work.path().join("commitlog").join(segment_file_name(end));
        std::fs::write(&new, vec![0u8; zeros]).unwrap();
        if lose_index {
            std::fs::remove_dir_all(work.path().join("index")).unwrap();
        }
        let store = MessageStore::open(config(work.path()))
            .unwrap_or_else(|e| panic!("{zeros} zeros: open failed: {e}"));
        check_holds_exactly(&store, &written, end);
        assert_eq!(std::fs::metadata(&new).unwrap().len(), zeros as u64, "kept");
        let next = store.queue_bounds("X", 0).unwrap().1;
        let r = append_one(&store, msg("X", 0, 10_000)).await;
        assert_eq!((r.log_offset, r.queue_offset), (end, next));
    }
}

#[tokio::test]
async fn a_torn_first_record_of_a_new_segment_is_cut() {
    let base = tempfile::tempdir().unwrap();
    let written = build_log(base.path(), 60, 64 * 1024).await;
    let end = written
        .iter()
        .map(|w| w.at.log_offset + w.size)
        .max()
        .unwrap();
    let mut record = Vec::new();
    record::encode_into(&mut record, &msg("X", 1, 20_000), 99, 1, usize::MAX).unwrap();
    for lose_index in [false, true] {
        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        let last = segment_files(work.path()).pop().unwrap();
        OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .set_len(end - base_of(&last))
            .unwrap();
        // The new segment's first write stopped part way: a whole header, then zeros.
        let mut torn = record[..record.len() / 2].to_vec();
        torn.resize(8192, 0);
        let new = work.path().join("commitlog").join(segment_file_name(end));
        std::fs::write(&new, &torn).unwrap();
        if lose_index {
            std::fs::remove_dir_all(work.path().join("index")).unwrap();
        }
        let store = MessageStore::open(config(work.path())).unwrap();
        check_holds_exactly(&store, &written, end);
        assert_eq!(std::fs::metadata(&new).unwrap().len(), 0, "cut");
        assert_eq!(
            append_one(&store, msg("X", 1, 10_000)).await.log_offset,
            end
        );
    }
}

#[tokio::test]
async fn a_cut_beyond_what_could_have_been_in_flight_is_refused() {
    // 12 records of 4 MiB in one segment: the log reaches past one write group (32 MiB).
    let base = tempfile::tempdir().unwrap();
    let cfg = |dir: &Path| StoreConfig {
        segment_size: 64 << 20,
        max_record_size: 5 << 20,
        ..config(dir)
    };
    let store = MessageStore::open(cfg(base.path())).unwrap();
    let mut at = Vec::new();
    for i in 0..12u8 {
        let m = NewMessage {
            body: vec![i; 4 << 20].into(),
            ..msg("X", 0, usize::from(i))
        };
        at.push(append_one(&store, m).await.log_offset);
    }
    let end = store.log_end_offset();
    store.shutdown();
    drop(store);
    let bound = recovery::max_cut(None, 0, 5 << 20);
    assert!(
        end - at[1] > bound,
        "the test wants more than one group past record 1"
    );
    // Every record from the second on overwritten: nothing valid follows the damage. Below
    // the flushed mark (a clean shutdown recorded it at the end) by more than a group, and
    // with the index lost (no mark) more than a group in all.
    for lose_index in [false, true] {
        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        let seg = segment_files(work.path()).pop().unwrap();
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&vec![0xa5; (end - at[1]) as usize], at[1])
            .unwrap();
        drop(f);
        if lose_index {
            std::fs::remove_dir_all(work.path().join("index")).unwrap();
        }
        let before = std::fs::read(&seg).unwrap();
        match MessageStore::open(cfg(work.path())) {
            Err(StoreError::Corrupt { offset, reason }) => {
                assert_eq!(offset, at[1], "{reason}");
                assert!(
                    reason.contains("more than could have been in flight"),
                    "{reason}"
                );
                assert!(
                    reason.contains(&format!("truncate -s {}", at[1])),
                    "{reason}"
                );
            }
            Err(e) => panic!("expected Corrupt, got {e}"),
            Ok(_) => panic!("lose_index {lose_index}: cut {} bytes", end - at[1]),
        }
        assert!(
            std::fs::read(&seg).unwrap() == before,
            "the segment was changed"
        );
        // The same damage over the last record alone is a torn tail: cut.
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        let whole = std::fs::read(base.path().join("commitlog").join(segment_file_name(0)));
        f.write_all_at(&whole.unwrap()[..at[11] as usize], 0)
            .unwrap();
        drop(f);
        let store = MessageStore::open(cfg(work.path())).unwrap();
        assert_eq!(store.log_end_offset(), at[11]);
    }
}
