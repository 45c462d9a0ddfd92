//! A restore from the tier (object_store's in-memory store, real stores on temporary
//! directories): the tiered messages at their old offsets, the snapshot's state, progress
//! moved back to what was restored, what the report says, and what is refused.

use std::sync::Arc;

use object_store::memory::InMemory;

use super::*;
use crate::config::BrokerConfig;
use crate::store::keys::consumer_offset_key;
use crate::store::{values, Cf, KvBatch, MessageStore, StoreConfig, StoredMessage};
use crate::tier::tests::{config as tier_config, no_hold, store_with, tier_over};

fn broker_config(data_dir: &std::path::Path) -> BrokerConfig {
    BrokerConfig {
        data_dir: data_dir.to_path_buf(),
        cluster_name: "c1".into(),
        broker_name: "broker-a".into(),
        tier: tier_config(),
        ..BrokerConfig::default()
    }
}

/// The store of `config`'s data dir, in 64 KiB segments.
fn store_config(config: &BrokerConfig) -> StoreConfig {
    StoreConfig {
        segment_size: 64 * 1024,
        max_record_size: 32 * 1024,
        ..StoreConfig::for_tests(&config.data_dir)
    }
}

fn bucket(objects: &Arc<InMemory>) -> Bucket {
    Bucket::over(objects.clone(), "memory", "b", "prod")
}

fn queue(store: &MessageStore, q: u32) -> Vec<StoredMessage> {
    store.read_queue("T", q, 0, 100_000, usize::MAX).unwrap()
}

fn offset_of(store: &MessageStore, q: u32) -> Option<u64> {
    store
        .kv()
        .get(Cf::ConsumerOffset, &consumer_offset_key("g", "T", q))
        .unwrap()
        .and_then(|v| values::decode_offset(&v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_store_serves_the_tiered_messages_at_their_offsets_with_the_snapshots_state() {
    let dir = tempfile::tempdir().unwrap();
    let old = store_with(&dir.path().join("old"), 4).await;
    let objects = Arc::new(InMemory::new());
    let tier = tier_over(objects.clone(), old.clone(), "c1");
    tier.bucket().claim("c1").await.unwrap();
    while tier.offload_next(1, &no_hold()).await.unwrap() {}
    let tiered_end = tier.manifest().segments().unwrap().last().unwrap().end;
    // Group g: queue 0 consumed past what will be restored, queue 1 at 2.
    let mut batch = KvBatch::new();
    batch.put(
        Cf::ConsumerOffset,
        consumer_offset_key("g", "T", 0),
        values::encode_offset(1_000_000),
    );
    batch.put(
        Cf::ConsumerOffset,
        consumer_offset_key("g", "T", 1),
        values::encode_offset(2),
    );
    old.kv().write(batch).unwrap();
    tier.snapshot_state_if_due(1).await.unwrap();
    let expected: Vec<Vec<(String, u64)>> = (0..2)
        .map(|q| {
            queue(&old, q)
                .into_iter()
                .filter(|m| m.log_offset < tiered_end)
                .map(|m| (m.msg.message_id.clone(), m.queue_offset))
                .collect()
        })
        .collect();
    assert!(expected.iter().all(|q| !q.is_empty()));

    let config = broker_config(&dir.path().join("new"));
    let report = restore::restore_from(&config, store_config(&config), bucket(&objects))
        .await
        .unwrap();
    assert_eq!(
        (report.segments, report.from, report.to),
        (3, 0, tiered_end)
    );
    assert!(
        report.snapshot.as_ref().is_some_and(|s| s.rows > 0),
        "{report:?}"
    );
    assert_eq!(
        report.moved_back.len(),
        1,
        "only queue 0's offset moves: {report:?}"
    );
    let lines = report.lines().join("\n");
    assert!(
        lines.contains("lost: every message stored after"),
        "{lines}"
    );
    assert!(lines.contains("offset 1000000 ->"), "{lines}");

    // The restored store, opened as the broker opens it.
    let store = MessageStore::open(store_config(&config)).unwrap();
    let tier = Tier::with_bucket(
        bucket(&objects),
        &config.tier,
        "c1",
        "broker-a",
        store.clone(),
    )
    .unwrap();
    for q in 0..2u32 {
        let got: Vec<(String, u64)> = queue(&store, q)
            .into_iter()
            .map(|m| (m.msg.message_id.clone(), m.queue_offset))
            .collect();
        assert_eq!(got, expected[q as usize], "queue {q}");
        assert_eq!(
            store.queue_bounds("T", q).unwrap().1,
            expected[q as usize].len() as u64
        );
    }
    let first = &expected[0][0].0;
    assert!(store.lookup_by_id(first).unwrap().is_some(), "found by id");
    assert_eq!(offset_of(&store, 0), Some(expected[0].len() as u64));
    assert_eq!(offset_of(&store, 1), Some(2));
    assert_eq!(tier.manifest().segments().unwrap().len(), 3);
    // The next message continues queue 0.
    let next = store
        .append(vec![crate::tier::tests::message(0)])
        .await
        .unwrap();
    assert_eq!(next[0].queue_offset, expected[0].len() as u64);
    assert_eq!(next[0].log_offset, tiered_end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_is_refused_onto_a_used_data_dir_or_an_empty_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let objects = Arc::new(InMemory::new());
    let used = dir.path().join("used");
    std::fs::create_dir_all(&used).unwrap();
    std::fs::write(used.join("notes.txt"), b"mine").unwrap();
    let used_config = broker_config(&used);
    let e = restore::restore_from(&used_config, store_config(&used_config), bucket(&objects))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not empty") && e.contains("notes.txt"), "{e}");
    assert_eq!(std::fs::read(used.join("notes.txt")).unwrap(), b"mine");

    let new_config = broker_config(&dir.path().join("new"));
    let e = restore::restore_from(&new_config, store_config(&new_config), bucket(&objects))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("nothing to restore"), "{e}");
    assert!(!dir.path().join("new").exists(), "nothing created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_newest_snapshots_are_kept_and_the_newest_readable_one_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), 2).await;
    let objects = Arc::new(InMemory::new());
    let config = TierSection {
        state_snapshot_interval_ms: 1000,
        ..tier_config()
    };
    let tier = Tier::with_bucket(bucket(&objects), &config, "c1", "broker-a", store).unwrap();
    for _ in 0..5 {
        *tier.last_state_snapshot.lock() = None;
        tier.snapshot_state_if_due(4).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    // Not due again so soon.
    tier.snapshot_state_if_due(4).await.unwrap();
    let b = bucket(&objects);
    let mut names = b.list("broker-a/state").await.unwrap();
    names.sort();
    assert_eq!(names.len(), state::SNAPSHOTS_KEPT, "{names:?}");
    // A damaged newest one is skipped for the one before it.
    b.put_whole(
        &object_store::path::Path::from(format!(
            "prod/broker-a/state/{:020}-e0000000004.state",
            i64::MAX
        )),
        bytes::Bytes::from_static(b"damaged"),
    )
    .await
    .unwrap();
    let (name, s) = state::newest_snapshot(&b, "c1", "broker-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&name, names.last().unwrap());
    assert_eq!((s.epoch, s.format), (4, state::STATE_SNAPSHOT_FORMAT));
    assert!(state::newest_snapshot(&b, "c2", "broker-a")
        .await
        .unwrap()
        .is_none());
}
