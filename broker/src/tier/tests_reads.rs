//! Reads of tiered segments whose local copies retention evicted: every message at its old
//! offsets, by queue, by id and as raw log bytes (what a slave catching up reads), from the
//! tier through the read cache; and a tier that cannot answer.

use std::sync::Arc;
use std::time::SystemTime;

use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};

use super::tests::{config, no_hold, store_with};
use super::*;
use crate::store::{DiskSpace, StoredMessage};

/// A disk with room to spare: only the local retention evicts.
fn roomy() -> DiskSpace {
    DiskSpace {
        used: 1 << 20,
        available: 1 << 40,
    }
}

fn everything(store: &MessageStore) -> Vec<StoredMessage> {
    let mut all = Vec::new();
    for queue in 0..2 {
        all.extend(
            store
                .read_queue("T", queue, 0, 100_000, usize::MAX)
                .unwrap(),
        );
    }
    all
}

fn tier_keeping_no_local_copy(objects: Arc<InMemory>, store: Arc<MessageStore>) -> Arc<Tier> {
    let config = TierSection {
        local_retention_bytes: Some(0),
        ..config()
    };
    let bucket = Bucket::over(objects, "memory", "b", "prod");
    Tier::with_bucket(bucket, &config, "c1", "broker-a", store).unwrap()
}

#[tokio::test]
async fn evicted_segments_stay_readable_at_their_offsets_from_the_tier() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), 4).await;
    let before = everything(&store);
    let sealed = store.sealed_segments();
    let tier = tier_keeping_no_local_copy(Arc::new(InMemory::new()), store.clone());
    tier.bucket().claim("c1").await.unwrap();

    // Only what the manifest records loses its local copy.
    assert!(tier.offload_next(1, &no_hold()).await.unwrap());
    let pass = store.enforce_retention(SystemTime::now(), roomy()).unwrap();
    assert_eq!(pass.evicted, vec![(sealed[0].base(), sealed[0].len())]);
    assert!(pass.deleted.is_empty());
    while tier.offload_next(1, &no_hold()).await.unwrap() {}
    let pass = store.enforce_retention(SystemTime::now(), roomy()).unwrap();
    assert_eq!(pass.evicted.len(), sealed.len() - 1);
    let last = sealed.last().unwrap();
    assert_eq!(
        store.local_start_offset(),
        last.end(),
        "only the open segment is local"
    );
    assert_eq!(
        store.log_start_offset(),
        0,
        "the log starts where the tier's run does"
    );

    // Every message at its offsets, by queue and by id.
    assert_eq!(everything(&store), before);
    let first = store
        .lookup_by_id("ID-000000")
        .unwrap()
        .expect("found in the tier");
    assert_eq!(first, before[0]);
    // Raw bytes for a slave: from the tier's copy, within its segment.
    let raw = store.read_log_bytes(0, 1 << 30).unwrap();
    assert_eq!(raw.len() as u64, sealed[0].len());
    assert_eq!(
        crate::store::record::decode(&raw[..before[0].record_size as usize], 0).unwrap(),
        before[0]
    );
    let slice = store
        .read_records(sealed[1].base(), 1 << 10)
        .unwrap()
        .unwrap();
    assert_eq!(slice.segment_base, sealed[1].base());
    assert!(tier.reader.cached_bytes() > 0, "the pieces read are cached");
    let pieces = std::fs::read_dir(dir.path().join(cache::CACHE_DIR))
        .unwrap()
        .count();
    assert!(pieces > 0);
}

#[tokio::test]
async fn a_tiered_read_the_object_store_cannot_answer_is_refused_as_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), 3).await;
    let before = everything(&store);
    let objects = Arc::new(InMemory::new());
    let tier = tier_keeping_no_local_copy(objects.clone(), store.clone());
    tier.bucket().claim("c1").await.unwrap();
    while tier.offload_next(1, &no_hold()).await.unwrap() {}
    store.enforce_retention(SystemTime::now(), roomy()).unwrap();
    let first = tier.manifest().segments().unwrap().remove(0);
    let path = object_store::path::Path::from(first.object.as_str());
    let held = objects.get(&path).await.unwrap().bytes().await.unwrap();
    objects.delete(&path).await.unwrap();

    let e = store.read_queue("T", 0, 0, 10, usize::MAX).unwrap_err();
    assert!(matches!(e, crate::store::StoreError::Cold(_)), "{e}");
    let status = apogee_proto::ApogeeError::from(e);
    assert!(
        matches!(status, apogee_proto::ApogeeError::Unavailable(_)),
        "{status}"
    );
    // The object back: the same read answers, nothing lost.
    objects.put(&path, held.into()).await.unwrap();
    assert_eq!(everything(&store), before);
}

#[tokio::test]
async fn the_tiers_retention_ends_messages_and_the_master_deletes_their_objects() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), 4).await;
    let sealed = store.sealed_segments();
    let objects = Arc::new(InMemory::new());
    let config = TierSection {
        retention_ms: Some(60_000),
        ..config()
    };
    let bucket = Bucket::over(objects.clone(), "memory", "b", "prod");
    let tier = Tier::with_bucket(bucket, &config, "c1", "broker-a", store.clone()).unwrap();
    tier.bucket().claim("c1").await.unwrap();
    let later = |secs| SystemTime::now() + std::time::Duration::from_secs(secs);

    // Nothing uploaded: however old, no segment goes for its age (the disk has room).
    let pass = store
        .enforce_retention(later(100 * 86_400), roomy())
        .unwrap();
    assert!(
        pass.deleted.is_empty() && pass.evicted.is_empty(),
        "{pass:?}"
    );
    while tier.offload_next(1, &no_hold()).await.unwrap() {}
    // Uploaded a minute ago at most: kept.
    let pass = store.enforce_retention(SystemTime::now(), roomy()).unwrap();
    assert!(pass.deleted.is_empty(), "{pass:?}");
    assert_eq!(store.log_start_offset(), 0);

    // Past the tier's retention: pruned from the index, the local copies deleted.
    let end = sealed.last().unwrap().end();
    let pass = store.enforce_retention(later(120), roomy()).unwrap();
    assert_eq!(pass.deleted.len(), sealed.len(), "{pass:?}");
    assert_eq!(store.cold_floor(), end);
    assert_eq!(store.log_start_offset(), end);
    for queue in 0..2 {
        let (first, next) = store.queue_bounds("T", queue).unwrap();
        assert!(first > 0, "queue {queue} starts after the ended messages");
        let left = store
            .read_queue("T", queue, 0, 100_000, usize::MAX)
            .unwrap();
        assert!(left.iter().all(|m| m.log_offset >= end), "queue {queue}");
        assert_eq!(left.first().map_or(next, |m| m.queue_offset), first);
    }
    // The master's next step deletes the objects, then the manifest's rows.
    assert!(!tier.offload_next(1, &no_hold()).await.unwrap());
    assert!(tier.manifest().segments().unwrap().is_empty());
    let segments = object_store::path::Path::from("prod/broker-a/segments");
    let left: Vec<_> = futures::StreamExt::collect::<Vec<_>>(objects.list(Some(&segments))).await;
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn an_index_rebuilt_from_the_local_log_gets_the_tiered_records_back() {
    let dir = tempfile::tempdir().unwrap();
    let objects = Arc::new(InMemory::new());
    let (before, config) = {
        let store = store_with(dir.path(), 4).await;
        let before = everything(&store);
        let tier = tier_keeping_no_local_copy(objects.clone(), store.clone());
        tier.bucket().claim("c1").await.unwrap();
        while tier.offload_next(1, &no_hold()).await.unwrap() {}
        let pass = store.enforce_retention(SystemTime::now(), roomy()).unwrap();
        assert_eq!(pass.evicted.len(), 3);
        store.shutdown();
        (
            before,
            crate::store::StoreConfig {
                segment_size: 64 * 1024,
                max_record_size: 32 * 1024,
                ..crate::store::StoreConfig::for_tests(dir.path())
            },
        )
    };
    // One segment's index object lost: that segment is read itself.
    let first = Bucket::over(objects.clone(), "memory", "b", "prod").index_object("broker-a", 0, 1);
    objects.delete(&first).await.unwrap();

    let rebuild = crate::store::OpenOptions {
        rebuild_index: true,
        ..Default::default()
    };
    let store = MessageStore::open_with(config, rebuild).unwrap();
    assert!(store.cold_unindexed().unwrap());
    let local_only = everything(&store);
    assert!(
        local_only.len() < before.len(),
        "the rebuild indexed the local log only"
    );
    let _tier = tier_keeping_no_local_copy(objects.clone(), store.clone());
    assert!(!store.cold_unindexed().unwrap());
    assert_eq!(everything(&store), before);
    assert_eq!(
        store.lookup_by_id("ID-000000").unwrap().as_ref(),
        Some(&before[0])
    );
}
