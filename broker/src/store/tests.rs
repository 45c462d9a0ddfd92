//! Unit tests of the store: format, appends, reads, roll, reopen, lookups and the KV contract.
//! Recovery tests live in `tests_recovery.rs`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use apogee_tests::wait_until;

use super::*;

pub(super) fn msg(topic: &str, queue_id: u32, n: usize) -> NewMessage {
    NewMessage {
        topic: topic.to_string(),
        queue_id,
        message_id: format!("ID-{topic}-{queue_id}-{n:06}"),
        tag: (!n.is_multiple_of(3)).then(|| format!("tag{}", n % 5)),
        keys: vec![format!("key-{n}"), "shared".to_string()],
        message_group: n.is_multiple_of(4).then(|| "group-a".to_string()),
        message_type: (n % 5) as u8,
        born_timestamp_ms: 1_700_000_000_000 + n as i64,
        born_host: "10.0.0.1:1234".to_string(),
        delivery_timestamp_ms: n.is_multiple_of(7).then_some(1_800_000_000_000),
        reconsume_times: (n % 2) as u32,
        properties: vec![("b".into(), format!("v{n}")), ("a".into(), String::new())],
        internal: if n.is_multiple_of(6) {
            vec![("txn.id".into(), format!("T{n}"))]
        } else {
            vec![]
        },
        body: format!("body-{n}-").repeat(1 + n % 40).into_bytes().into(),
    }
}

pub(super) fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        segment_size: 64 * 1024,
        max_record_size: 32 * 1024,
        ..StoreConfig::for_tests(dir)
    }
}

pub(super) async fn append_one(store: &MessageStore, m: NewMessage) -> AppendResult {
    store.append(vec![m]).await.expect("append")[0]
}

#[test]
fn record_encode_decode_round_trip() {
    for n in 0..30 {
        let m = msg("T", 3, n);
        let mut buf = vec![0xAA; 5];
        let size = record::encode_into(&mut buf, &m, 42 + n as u64, 99, usize::MAX).unwrap();
        assert_eq!(size as usize, buf.len() - 5);
        assert_eq!(size as usize, record::encoded_len(&m).unwrap());
        let back = record::decode(&buf[5..], 1000).unwrap();
        assert_eq!(back.msg, m);
        assert_eq!(
            (back.queue_offset, back.log_offset, back.store_timestamp_ms),
            (42 + n as u64, 1000, 99)
        );
        assert_eq!(back.body_crc32, crc32fast::hash(&m.body));
        // Every single-byte change is detected.
        let mut bad = buf[5..].to_vec();
        let i = (n * 7) % bad.len();
        bad[i] ^= 0x40;
        assert!(
            record::decode(&bad, 1000).is_err(),
            "flip at {i} undetected"
        );
    }
    let empty = NewMessage {
        keys: vec![],
        properties: vec![],
        internal: vec![],
        body: vec![].into(),
        ..msg("", 0, 0)
    };
    let empty = NewMessage {
        message_id: String::new(),
        born_host: String::new(),
        tag: None,
        message_group: None,
        ..empty
    };
    // Version 2 adds the internal-property count to the smallest version 1 record.
    assert_eq!(
        record::encoded_len(&empty).unwrap(),
        record::MIN_RECORD_LEN + 2
    );
}

#[test]
fn version_1_records_still_decode_with_no_internal_properties() {
    let m = NewMessage {
        internal: vec![],
        ..msg("Old", 2, 5)
    };
    let mut v2 = Vec::new();
    let len = record::encode_into(&mut v2, &m, 9, 1234, usize::MAX).unwrap() as usize;
    // A version 1 record is the same without the internal-property count (the two bytes
    // before the body's length), with magic APG1.
    let body_at = len - 4 - m.body.len();
    let mut v1 = [&v2[..body_at - 2], &v2[body_at..]].concat();
    v1[..4].copy_from_slice(&((len - 2) as u32).to_be_bytes());
    v1[4..8].copy_from_slice(&record::MAGIC_V1.to_be_bytes());
    let crc = crc32fast::hash(&v1[12..]);
    v1[8..12].copy_from_slice(&crc.to_be_bytes());
    let back = record::decode(&v1, 77).unwrap();
    assert_eq!(back.msg, m);
    assert_eq!((back.queue_offset, back.store_timestamp_ms), (9, 1234));
    // A record from before flags were kept reads as a message whose flag is 0.
    assert_eq!(back.msg.flag(), 0);
}

#[test]
fn a_remoting_flag_is_an_internal_property_every_copy_keeps() {
    assert_eq!(record::internal::flag_property(0), None);
    let m = NewMessage {
        internal: [
            record::internal::flag_property(i32::MIN),
            Some((record::internal::TXN_ID.into(), "T1".into())),
        ]
        .into_iter()
        .flatten()
        .collect(),
        ..msg("Flagged", 1, 1)
    };
    let mut buf = Vec::new();
    record::encode_into(&mut buf, &m, 0, 1, usize::MAX).unwrap();
    let back = record::decode(&buf, 0).unwrap().msg;
    assert_eq!(back.flag(), i32::MIN);
    // The flag is the message's, the transaction marker is not.
    assert_eq!(
        back.carried_internal().collect::<Vec<_>>(),
        vec![(record::internal::FLAG.to_string(), i32::MIN.to_string())]
    );
}

#[test]
fn oversized_fields_are_rejected() {
    let m = NewMessage {
        body: vec![0; 2000].into(),
        ..msg("T", 0, 1)
    };
    let err = record::encode_into(&mut Vec::new(), &m, 0, 0, 1000).unwrap_err();
    assert!(matches!(err, StoreError::MessageTooLarge { max: 1000, .. }));
    let m = NewMessage {
        topic: "x".repeat(70_000),
        ..msg("T", 0, 1)
    };
    assert!(matches!(
        record::encoded_len(&m),
        Err(StoreError::InvalidMessage(_))
    ));
}

#[test]
fn tag_hash_is_fnv1a_64() {
    assert_eq!(tag_hash(""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(tag_hash("a"), 0xaf63_dc4c_8601_ec8c);
    assert_ne!(tag_hash("TagA"), tag_hash("TagB"));
}

#[tokio::test]
async fn append_read_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    assert_eq!(store.queue_bounds("T", 0).unwrap(), (0, 0));
    let batch: Vec<_> = (0..5).map(|n| msg("T", 0, n)).collect();
    let res = store.append(batch.clone()).await.unwrap();
    assert_eq!(
        res.iter().map(|r| r.queue_offset).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(res[0].log_offset, 0);
    let other = append_one(&store, msg("U", 7, 9)).await;
    assert_eq!(other.queue_offset, 0);
    assert_eq!(store.queue_bounds("T", 0).unwrap(), (0, 5));
    assert_eq!(store.queue_bounds("U", 7).unwrap(), (0, 1));
    assert_eq!(store.flushed_offset(), store.log_end_offset());

    let read = store.read_queue("T", 0, 0, 100, usize::MAX).unwrap();
    assert_eq!(read.len(), 5);
    for (i, (m, r)) in read.iter().zip(&res).enumerate() {
        assert_eq!(m.msg, batch[i]);
        assert_eq!(
            (m.queue_offset, m.log_offset, m.store_timestamp_ms),
            (r.queue_offset, r.log_offset, r.store_timestamp_ms)
        );
        // Records of one call are contiguous.
        if i > 0 {
            assert_eq!(
                m.log_offset,
                read[i - 1].log_offset + u64::from(read[i - 1].record_size)
            );
        }
    }
    assert_eq!(
        read[4].log_offset + u64::from(read[4].record_size),
        other.log_offset
    );
    assert_eq!(
        store.read_queue("T", 0, 3, 100, usize::MAX).unwrap().len(),
        2
    );
    assert_eq!(store.read_queue("T", 0, 1, 2, usize::MAX).unwrap().len(), 2);
    assert_eq!(
        store.read_queue("T", 0, 5, 100, usize::MAX).unwrap().len(),
        0
    );
    // max_bytes: at least one, then stop before exceeding.
    assert_eq!(store.read_queue("T", 0, 0, 100, 1).unwrap().len(), 1);
    let two = read[0].msg.body.len() + read[1].msg.body.len();
    assert_eq!(store.read_queue("T", 0, 0, 100, two).unwrap().len(), 2);

    let entries = store.queue_entries("T", 0, 1, 3).unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].queue_offset, 1);
    assert_eq!(entries[0].log_offset, res[1].log_offset);
    assert_eq!(
        entries[0].tag_hash,
        batch[1].tag.as_deref().map_or(0, tag_hash)
    );
    assert_eq!(entries[0].size, read[1].record_size);
    assert_eq!(
        store
            .read_at(entries[2].log_offset, entries[2].size)
            .unwrap()
            .msg,
        batch[3]
    );
    assert!(matches!(
        store.read_at(store.log_end_offset(), 100),
        Err(StoreError::OffsetOutOfRange { .. })
    ));
    store.shutdown();
    assert!(matches!(
        store.append(vec![msg("T", 0, 1)]).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(store.purge_topic("T"), Err(StoreError::Closed)));
    assert_eq!(
        store.read_queue("T", 0, 0, 100, usize::MAX).unwrap().len(),
        5,
        "reads still work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_distinct_contiguous_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    let mut tasks = Vec::new();
    for t in 0..16usize {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..20usize {
                let n = 1 + (t + i) % 3;
                let batch: Vec<_> = (0..n)
                    .map(|k| msg("C", (t % 2) as u32, t * 1000 + i * 10 + k))
                    .collect();
                out.push((batch.clone(), store.append(batch).await.unwrap()));
            }
            out
        }));
    }
    let mut per_queue: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    for task in tasks {
        for (batch, res) in task.await.unwrap() {
            assert_eq!(batch.len(), res.len());
            for (k, r) in res.iter().enumerate() {
                per_queue[batch[k].queue_id as usize].push(r.queue_offset);
                if k > 0 {
                    assert_eq!(
                        r.queue_offset,
                        res[k - 1].queue_offset + 1,
                        "a batch's queue offsets are consecutive"
                    );
                    assert!(r.log_offset > res[k - 1].log_offset);
                }
                let m = store
                    .read_queue("C", batch[k].queue_id, r.queue_offset, 1, usize::MAX)
                    .unwrap();
                assert_eq!(m[0].msg, batch[k]);
                assert_eq!(m[0].log_offset, r.log_offset);
                if k > 0 {
                    let p = store
                        .read_queue("C", batch[k].queue_id, r.queue_offset - 1, 1, usize::MAX)
                        .unwrap();
                    assert_eq!(
                        p[0].log_offset + u64::from(p[0].record_size),
                        r.log_offset,
                        "contiguous in the log"
                    );
                }
            }
        }
    }
    for (q, offsets) in per_queue.iter_mut().enumerate() {
        offsets.sort_unstable();
        let n = offsets.len() as u64;
        assert_eq!(
            *offsets,
            (0..n).collect::<Vec<_>>(),
            "queue {q} offsets distinct and gap-free"
        );
        assert_eq!(store.queue_bounds("C", q as u32).unwrap(), (0, n));
    }
}

#[tokio::test]
async fn segments_roll_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    let mut all = Vec::new();
    for n in 0..300 {
        let m = NewMessage {
            body: vec![(n % 251) as u8; 500 + (n * 37) % 3000].into(),
            ..msg("R", (n % 3) as u32, n)
        };
        all.push((m.clone(), append_one(&store, m).await));
    }
    let segs = store.shared.log.segments();
    assert!(
        segs.len() > 3,
        "expected several segments, got {}",
        segs.len()
    );
    for w in segs.windows(2) {
        assert_eq!(
            w[0].base() + w[0].len(),
            w[1].base(),
            "not padded, contiguous"
        );
        assert!(w[0].len() <= 64 * 1024);
        // Sealed: the preallocated zeros are cut off.
        let on_disk = std::fs::metadata(w[0].path()).unwrap().len();
        assert_eq!(on_disk, w[0].len(), "sealed segment file length");
        let name = w[1]
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(name, format!("{:020}", w[1].base()));
    }
    for (m, r) in &all {
        let got = store
            .read_queue("R", m.queue_id, r.queue_offset, 1, usize::MAX)
            .unwrap();
        assert_eq!(got[0].msg, *m);
        assert_eq!(got[0].log_offset, r.log_offset);
    }
    let last = segs.last().unwrap();
    let on_disk = std::fs::metadata(last.path()).unwrap().len();
    assert!(on_disk > last.len(), "the last segment is preallocated");
    let q0 = store.read_queue("R", 0, 0, 1000, usize::MAX).unwrap();
    assert_eq!(q0.len(), 100);
    // Raw bytes never cross a segment end.
    let bytes = store.read_log_bytes(segs[1].base() - 10, 1 << 20).unwrap();
    assert_eq!(bytes.len(), 10);
    assert!(store
        .read_log_bytes(store.log_end_offset(), 10)
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn reopen_after_clean_shutdown_keeps_everything_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    {
        let store = MessageStore::open(config(dir.path())).unwrap();
        for n in 0..120 {
            let m = msg("P", (n % 2) as u32, n);
            expected.push((m.clone(), append_one(&store, m).await));
        }
        store.shutdown();
    }
    let store = MessageStore::open(config(dir.path())).unwrap();
    for (m, r) in &expected {
        let got = store
            .read_queue("P", m.queue_id, r.queue_offset, 1, usize::MAX)
            .unwrap();
        assert_eq!(got[0].msg, *m);
        assert_eq!(
            store
                .lookup_by_id(&m.message_id)
                .unwrap()
                .unwrap()
                .log_offset,
            r.log_offset
        );
    }
    assert_eq!(store.queue_bounds("P", 0).unwrap(), (0, 60));
    let end = store.log_end_offset();
    assert_eq!(store.flushed_offset(), end);
    let r = append_one(&store, msg("P", 0, 999)).await;
    assert_eq!((r.queue_offset, r.log_offset), (60, end));
    assert!(r.store_timestamp_ms >= expected.last().unwrap().1.store_timestamp_ms);
}

#[tokio::test]
async fn lookups_by_id_key_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    let a = append_one(&store, msg("L", 0, 1)).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b = append_one(&store, msg("L", 0, 2)).await;
    let resent = append_one(
        &store,
        NewMessage {
            queue_id: 1,
            ..msg("L", 0, 1)
        },
    )
    .await;
    assert_eq!(
        store
            .lookup_by_id("ID-L-0-000001")
            .unwrap()
            .unwrap()
            .log_offset,
        resent.log_offset
    );
    assert_eq!(
        store.lookup_all_by_id("ID-L-0-000001", 10).unwrap().len(),
        2
    );
    assert!(store.lookup_by_id("nope").unwrap().is_none());
    let hits = store.lookup_by_key("L", "shared", 10).unwrap();
    assert_eq!(
        hits.iter().map(|m| m.log_offset).collect::<Vec<_>>(),
        vec![a.log_offset, b.log_offset, resent.log_offset]
    );
    assert_eq!(store.lookup_by_key("L", "shared", 2).unwrap().len(), 2);
    assert_eq!(
        store.lookup_by_key("L", "key-2", 10).unwrap()[0].log_offset,
        b.log_offset
    );
    assert!(store
        .lookup_by_key("Other", "shared", 10)
        .unwrap()
        .is_empty());
    assert_eq!(store.queue_offset_for_time("L", 0, 0).unwrap(), 0);
    assert_eq!(
        store
            .queue_offset_for_time("L", 0, a.store_timestamp_ms + 1)
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .queue_offset_for_time("L", 0, b.store_timestamp_ms)
            .unwrap(),
        1
    );
    assert_eq!(store.queue_offset_for_time("L", 0, i64::MAX).unwrap(), 2);
    assert_eq!(store.queue_offset_for_time("nope", 0, 0).unwrap(), 0);
}

#[tokio::test]
async fn purge_topic_resets_its_queues_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    for n in 0..5 {
        append_one(&store, msg("Gone", 0, n)).await;
        append_one(&store, msg("Gone2", 0, n)).await;
    }
    store.purge_topic("Gone").unwrap();
    assert_eq!(store.queue_bounds("Gone", 0).unwrap(), (0, 0));
    assert!(store
        .read_queue("Gone", 0, 0, 10, usize::MAX)
        .unwrap()
        .is_empty());
    assert!(store
        .lookup_by_key("Gone", "shared", 10)
        .unwrap()
        .is_empty());
    assert_eq!(store.queue_bounds("Gone2", 0).unwrap(), (0, 5));
    assert_eq!(append_one(&store, msg("Gone", 0, 9)).await.queue_offset, 0);
}

#[tokio::test]
async fn invalid_request_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    let big = NewMessage {
        body: vec![1; 40 * 1024].into(),
        ..msg("B", 0, 1)
    };
    let (bad, good) = tokio::join!(
        store.append(vec![msg("B", 0, 0), big]),
        store.append(vec![msg("B", 0, 2)])
    );
    assert!(matches!(bad, Err(StoreError::MessageTooLarge { .. })));
    assert_eq!(good.unwrap()[0].queue_offset, 0);
    assert_eq!(store.queue_bounds("B", 0).unwrap(), (0, 1));
    assert!(store.append(vec![]).await.unwrap().is_empty());
}

#[tokio::test]
async fn appends_wake_only_watchers_of_their_queue() {
    use futures::FutureExt;
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    let watch = store.watch_queues("N", &[0]);
    append_one(&store, msg("N", 1, 0)).await;
    append_one(&store, msg("M", 0, 0)).await;
    assert!(watch.appended().now_or_never().is_none());
    append_one(&store, msg("N", 0, 1)).await;
    // The append returns after the wake-up: the permit is there already.
    assert!(watch.appended().now_or_never().is_some());
}

#[tokio::test]
async fn async_flush_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        flush_mode: FlushMode::Async,
        async_flush_interval: Duration::from_millis(20),
        ..config(dir.path())
    };
    let store = MessageStore::open(cfg).unwrap();
    append_one(&store, msg("A", 0, 0)).await;
    let end = store.log_end_offset();
    wait_until(
        Duration::from_secs(5),
        "the flusher to reach the log end",
        || async {
            match store.flushed_offset() {
                f if f == end => Ok(()),
                f => Err(format!("flushed {f} of {end}")),
            }
        },
    )
    .await;
}

#[test]
fn bad_config_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        segment_size: 1024,
        ..config(dir.path())
    };
    assert!(matches!(
        MessageStore::open(cfg),
        Err(StoreError::Config(_))
    ));
}

/// A batch gives back each operation's own key and value, in order, wherever it sits in the
/// shared buffer (empty values, keys written in place, range ends).
#[test]
fn kv_batch_keeps_each_operation_apart() {
    let mut b = KvBatch::with_capacity(1, 4);
    b.put(Cf::Meta, b"k1", b"");
    b.put_built(Cf::QueueHead, |k| k.extend_from_slice(b"built"), b"v2");
    b.delete(Cf::ConsumeQueue, b"gone");
    b.delete_range(Cf::MessageId, b"from", b"to");
    b.put(Cf::Meta, b"", b"empty key");
    assert_eq!(b.len(), 5);
    let ops: Vec<String> = b.ops().map(|o| format!("{o:?}")).collect();
    let expect: Vec<String> = [
        KvOp::Put(Cf::Meta, b"k1", b""),
        KvOp::Put(Cf::QueueHead, b"built", b"v2"),
        KvOp::Delete(Cf::ConsumeQueue, b"gone"),
        KvOp::DeleteRange(Cf::MessageId, b"from", b"to"),
        KvOp::Put(Cf::Meta, b"", b"empty key"),
    ]
    .iter()
    .map(|o| format!("{o:?}"))
    .collect();
    assert_eq!(ops, expect);
}

/// The KvStore contract, run against both engines.
fn kv_contract(kv: &dyn KvStore) {
    let mut b = KvBatch::new();
    assert!(b.is_empty());
    for i in 0u32..10 {
        b.put(
            Cf::ConsumeQueue,
            [b"q".as_slice(), &i.to_be_bytes()].concat(),
            i.to_be_bytes(),
        );
    }
    b.put(Cf::ConsumeQueue, b"p", b"before");
    b.put(Cf::ConsumeQueue, b"r", b"after");
    b.put(Cf::Meta, b"q\0\0\0\x01", b"other cf");
    b.delete(
        Cf::ConsumeQueue,
        [b"q".as_slice(), &3u32.to_be_bytes()].concat(),
    );
    assert!(!b.is_empty());
    kv.write(b).unwrap();

    let k = |i: u32| [b"q".as_slice(), &i.to_be_bytes()].concat();
    assert_eq!(
        kv.get(Cf::ConsumeQueue, &k(2)).unwrap(),
        Some(2u32.to_be_bytes().to_vec())
    );
    assert_eq!(kv.get(Cf::ConsumeQueue, &k(3)).unwrap(), None);
    assert_eq!(kv.get(Cf::Meta, &k(2)).unwrap(), None);
    let end = prefix_end(b"q");
    assert_eq!(end, b"r");
    let all = kv.scan(Cf::ConsumeQueue, b"q", &end, 100).unwrap();
    assert_eq!(
        all.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        [0, 1, 2, 4, 5, 6, 7, 8, 9].map(k).to_vec()
    );
    assert_eq!(kv.scan(Cf::ConsumeQueue, &k(5), &end, 2).unwrap().len(), 2);
    assert_eq!(
        kv.scan(Cf::ConsumeQueue, &k(5), &k(5), 10).unwrap().len(),
        0
    );
    assert_eq!(kv.scan(Cf::ConsumeQueue, b"", &[], 100).unwrap().len(), 11);
    assert_eq!(kv.scan(Cf::ConsumeQueue, b"q", &[], 100).unwrap().len(), 10);
    assert_eq!(kv.scan(Cf::Schedule, b"", &[], 100).unwrap().len(), 0);
    assert_eq!(
        kv.last_in(Cf::ConsumeQueue, b"q", &end).unwrap().unwrap().0,
        k(9)
    );
    assert_eq!(
        kv.last_in(Cf::ConsumeQueue, b"q", &k(4))
            .unwrap()
            .unwrap()
            .0,
        k(2)
    );
    assert_eq!(
        kv.last_in(Cf::ConsumeQueue, b"q", &[]).unwrap().unwrap().0,
        b"r"
    );
    assert_eq!(kv.last_in(Cf::ConsumeQueue, &k(4), &k(4)).unwrap(), None);
    assert_eq!(kv.last_in(Cf::ConsumeQueue, b"s", &[]).unwrap(), None);
    assert_eq!(kv.last_in(Cf::ConsumeQueue, b"a", b"b").unwrap(), None);

    let mut b = KvBatch::new();
    b.delete_range(Cf::ConsumeQueue, k(2), k(7));
    b.put(Cf::ConsumeQueue, k(5), b"re-put after the range delete");
    kv.write(b).unwrap();
    let left = kv.scan(Cf::ConsumeQueue, b"q", &end, 100).unwrap();
    assert_eq!(
        left.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        [0, 1, 5, 7, 8, 9].map(k).to_vec()
    );
    let mut b = KvBatch::new();
    b.delete_range(Cf::ConsumeQueue, k(8), Vec::new());
    kv.write(b).unwrap();
    assert_eq!(
        kv.scan(Cf::ConsumeQueue, b"", &[], 100).unwrap().len(),
        5,
        "p, q0, q1, q5, q7"
    );
    assert_eq!(kv.get(Cf::Meta, &k(1)).unwrap(), Some(b"other cf".to_vec()));
    kv.flush().unwrap();
}

#[test]
fn kv_contract_mem() {
    kv_contract(&MemKv::new());
}

#[test]
fn kv_contract_rocks_and_persistence() {
    let dir = tempfile::tempdir().unwrap();
    kv_contract(&RocksKv::open(dir.path()).unwrap());
    let kv: Arc<dyn KvStore> = Arc::new(RocksKv::open(dir.path()).unwrap());
    assert_eq!(
        kv.get(Cf::Meta, b"q\0\0\0\x01").unwrap(),
        Some(b"other cf".to_vec())
    );
}

/// Bytes of the write-ahead log files in a RocksDB directory.
fn wal_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

/// Writes about 16 MiB of consume-queue entries, each batch with a checkpoint (a column
/// family written often but little), then, unless `settle` is zero, waits up to `settle` for
/// the write-ahead log to be at most 2 MiB; returns its size. RocksDB checks the bound on a
/// write and deletes old log files once their flushes end in the background, so a checkpoint
/// keeps being written meanwhile, as the broker's writes do.
async fn wal_left_after_16_mib(max_wal_bytes: u64, settle: Duration) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let kv = RocksKv::open_with_wal_bound(dir.path(), max_wal_bytes).unwrap();
    let value = vec![7u8; 1024];
    for i in 0..4096u64 {
        let mut batch = KvBatch::new();
        for j in 0..4u64 {
            batch.put(Cf::ConsumeQueue, (i * 4 + j).to_be_bytes(), &value);
        }
        index::put_checkpoint(&mut batch, i);
        kv.write(batch).unwrap();
    }
    if !settle.is_zero() {
        wait_until(settle, "the index WAL to shrink to 2 MiB", || async {
            let mut batch = KvBatch::new();
            index::put_checkpoint(&mut batch, 4096);
            kv.write(batch).unwrap();
            match wal_bytes(dir.path()) {
                b if b <= 2 << 20 => Ok(()),
                b => Err(format!("{b} bytes of WAL")),
            }
        })
        .await;
    }
    wal_bytes(dir.path())
}

#[tokio::test]
async fn the_index_write_ahead_log_stays_within_its_bound() {
    // Bounded at 1 MiB: flushes let the old logs go (the file being written may pass it).
    let bounded = wal_left_after_16_mib(1 << 20, Duration::from_secs(10)).await;
    assert!(
        bounded <= 2 << 20,
        "{bounded} bytes of WAL over a 1 MiB bound"
    );
    // RocksDB's own default keeps all of it (no memtable filled up).
    let unbounded = wal_left_after_16_mib(0, Duration::ZERO).await;
    assert!(
        unbounded > 16 << 20,
        "{unbounded} bytes of WAL without a bound"
    );
}

#[tokio::test]
async fn store_over_mem_kv() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open_with_kv(config(dir.path()), Arc::new(MemKv::new())).unwrap();
    let mut seen = HashSet::new();
    for n in 0..10 {
        assert!(seen.insert(append_one(&store, msg("M", 0, n)).await.queue_offset));
    }
    assert_eq!(store.queue_bounds("M", 0).unwrap(), (0, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_flush_group_commit_takes_far_fewer_fdatasyncs_than_sends() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(StoreConfig {
        flush_mode: FlushMode::Sync,
        ..config(dir.path())
    })
    .unwrap();
    let before = store.sync_count();
    // 64 concurrent senders, 10 sends each: every send waits for an fdatasync covering it.
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    append_one(&store, msg("G", t % 4, t as usize * 10 + i)).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let syncs = store.sync_count() - before;
    assert!(syncs > 0);
    assert!(
        syncs * 4 <= 640,
        "{syncs} fdatasyncs for 640 sends: group commit is not grouping"
    );
    assert_eq!(store.flushed_offset(), store.log_end_offset());
}

/// A store failure a client sees as an internal error keeps the store's error as its cause,
/// for the log, with the same text the client is answered.
#[test]
fn an_internal_store_error_keeps_its_cause() {
    let e = apogee_proto::ApogeeError::from(StoreError::Index("a torn row".into()));
    let apogee_proto::ApogeeError::InternalCause(cause) = &e else {
        panic!("{e:?} keeps no cause");
    };
    assert!(
        cause.get().downcast_ref::<StoreError>().is_some(),
        "{cause:?}"
    );
    assert!(std::error::Error::source(&e).is_some());
    assert_eq!(e.code(), apogee_proto::v2::Code::InternalError);
    assert!(e.to_string().contains("a torn row"), "{e}");
}
