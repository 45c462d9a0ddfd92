//! The tier over object_store's in-memory store and a real store on a temporary directory:
//! which segments go and when, what an object holds, the manifest, the claim on the prefix,
//! and the hold on age retention. The S3 client itself is tested against a real
//! S3-compatible server (`tests/tests/tier.rs`).

use std::sync::Arc;

use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

use super::*;
use crate::store::{NewMessage, StoreConfig};

pub(super) fn config() -> TierSection {
    TierSection {
        endpoint: "memory".into(),
        bucket: "b".into(),
        prefix: "prod".into(),
        // Parts of the smallest size S3 takes would make every test segment one put; these
        // tests call the multipart path through segments larger than one part below.
        ..TierSection::default()
    }
}

pub(super) fn message(n: usize) -> NewMessage {
    NewMessage {
        topic: "T".into(),
        queue_id: (n % 2) as u32,
        message_id: format!("ID-{n:06}"),
        born_timestamp_ms: 1_700_000_000_000,
        tag: None,
        keys: Vec::new(),
        message_group: None,
        message_type: 0,
        born_host: "10.0.0.1:1".into(),
        delivery_timestamp_ms: None,
        reconsume_times: 0,
        properties: Vec::new(),
        internal: Vec::new(),
        body: vec![b'x'; 1000].into(),
    }
}

/// A store of 64 KiB segments holding at least `segments` of them, all flushed.
pub(super) async fn store_with(dir: &std::path::Path, segments: usize) -> Arc<MessageStore> {
    let store = MessageStore::open(StoreConfig {
        segment_size: 64 * 1024,
        max_record_size: 32 * 1024,
        ..StoreConfig::for_tests(dir)
    })
    .unwrap();
    let mut n = 0;
    while store.sealed_segments().len() < segments - 1 {
        store.append(vec![message(n)]).await.unwrap();
        n += 1;
    }
    store.sync_log().await.unwrap();
    store
}

pub(super) fn tier_over(
    objects: Arc<InMemory>,
    store: Arc<MessageStore>,
    cluster: &str,
) -> Arc<Tier> {
    let bucket = Bucket::over(objects, "memory", "b", "prod");
    Tier::with_bucket(bucket, &config(), cluster, "broker-a", store).unwrap()
}

pub(super) fn no_hold() -> InSyncHold {
    Arc::new(|| u64::MAX)
}

#[tokio::test]
async fn every_sealed_flushed_segment_goes_once_oldest_first_and_is_recorded_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), 4).await;
    let objects = Arc::new(InMemory::new());
    let tier = tier_over(objects.clone(), store.clone(), "c1");
    tier.bucket().claim("c1").await.unwrap();
    let sealed = store.sealed_segments();
    assert_eq!(tier.status().local_segments, sealed.len() as u64);
    while tier.offload_next(5, &no_hold()).await.unwrap() {}
    let tiered = tier.manifest().segments().unwrap();
    let bases: Vec<u64> = sealed.iter().map(|s| s.base()).collect();
    assert_eq!(tiered.iter().map(|t| t.base).collect::<Vec<_>>(), bases);
    for (t, s) in tiered.iter().zip(&sealed) {
        let local = std::fs::read(s.path()).unwrap();
        assert_eq!(t.end - t.base, local.len() as u64);
        assert_eq!(t.epoch, 5);
        let held = tier.bucket().read(&t.object.as_str().into()).await.unwrap();
        assert_eq!(held.as_ref(), local.as_slice(), "{}", t.object);
        assert_eq!(t.sha256, <[u8; 32]>::from(Sha256::digest(&local)));
        assert!(t.object.contains("broker-a/segments/") && t.object.ends_with("-e0000000005.log"));
    }
    // The last segment is still written to: it stays.
    let st = tier.status();
    assert_eq!(
        (st.local_segments, st.tiered_segments),
        (0, sealed.len() as u64)
    );
    assert_eq!(st.lag_bytes, 0);
    assert!(!tier.offload_next(5, &no_hold()).await.unwrap());
}

#[tokio::test]
async fn nothing_goes_past_what_the_in_sync_members_hold() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), 4).await;
    let tier = tier_over(Arc::new(InMemory::new()), store.clone(), "c1");
    let sealed = store.sealed_segments();
    // The slaves hold only up to the middle of the second segment.
    let held_to = sealed[1].base() + 10;
    let hold: InSyncHold = Arc::new(move || held_to);
    while tier.offload_next(1, &hold).await.unwrap() {}
    let tiered = tier.manifest().segments().unwrap();
    assert_eq!(tiered.len(), 1);
    assert_eq!(tiered[0].base, sealed[0].base());
    let st = tier.status();
    assert_eq!(st.local_segments, sealed.len() as u64 - 1);
    assert_eq!(
        st.lag_bytes,
        sealed[1..].iter().map(|s| s.len()).sum::<u64>()
    );
}

#[tokio::test]
async fn a_segment_larger_than_a_part_goes_in_parts_and_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), 2).await;
    let objects = Arc::new(InMemory::new());
    let bucket = Bucket::over(objects, "memory", "b", "prod");
    let segment = store.sealed_segments().remove(0);
    let local = std::fs::read(segment.path()).unwrap();
    let sha = hex::encode(Sha256::digest(&local));
    let path = bucket.segment_object("g", 0, 1);
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    for chunk in local.chunks(10_000) {
        tx.send(Ok(bytes::Bytes::copy_from_slice(chunk)))
            .await
            .unwrap();
    }
    drop(tx);
    bucket
        .upload(&path, local.len() as u64, &sha, rx, 2)
        .await
        .unwrap();
    assert_eq!(bucket.read(&path).await.unwrap().as_ref(), local.as_slice());
    // A different checksum than the one recorded is a mismatch.
    let e = bucket
        .verify(&path, local.len() as u64, &"0".repeat(64))
        .await
        .unwrap_err();
    assert!(matches!(e, TierError::Mismatch { .. }), "{e}");
    let e = bucket.verify(&path, 1, &sha).await.unwrap_err();
    assert!(e.to_string().contains("bytes, not 1"), "{e}");
}

#[tokio::test]
async fn a_prefix_with_objects_apogee_did_not_write_is_refused_and_left_alone() {
    let objects = Arc::new(InMemory::new());
    let theirs = object_store::path::Path::from("prod/reports/2026.csv");
    objects
        .put(&theirs, PutPayload::from_static(b"a,b"))
        .await
        .unwrap();
    let bucket = Bucket::over(objects.clone(), "memory", "b", "prod");
    let e = bucket.claim("c1").await.unwrap_err();
    assert!(matches!(e, TierError::Foreign(_)), "{e}");
    assert!(e.to_string().contains("prod/reports/2026.csv"), "{e}");
    let all: Vec<_> = objects
        .list(None)
        .map(|m| m.unwrap().location.to_string())
        .collect()
        .await;
    assert_eq!(all, vec!["prod/reports/2026.csv".to_string()]);
    // Another prefix of the same bucket is free.
    let other = Bucket::over(objects, "memory", "b", "apogee");
    assert_eq!(other.inspect("c1").await.unwrap(), PrefixState::Empty);
    other.claim("c1").await.unwrap();
    assert_eq!(other.inspect("c1").await.unwrap(), PrefixState::Claimed);
}

#[tokio::test]
async fn a_prefix_claimed_by_another_cluster_is_refused() {
    let objects = Arc::new(InMemory::new());
    let ours = Bucket::over(objects.clone(), "memory", "b", "prod");
    ours.claim("east").await.unwrap();
    let e = ours.claim("west").await.unwrap_err();
    assert!(e.to_string().contains("claimed by cluster \"east\""), "{e}");
    // The uploads of the refused cluster's tier never start.
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), 3).await;
    let tier = tier_over(objects.clone(), store, "west");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tier.spawn_offload(1, no_hold(), stop);
    let (_, why) = apogee_tests::wait_until(
        std::time::Duration::from_secs(10),
        "the refusal recorded",
        || async {
            tier.status()
                .last_error
                .ok_or_else(|| "no error yet".to_string())
        },
    )
    .await;
    assert!(why.contains("claimed by cluster"), "{why}");
    assert!(tier.manifest().segments().unwrap().is_empty());
    stop_tx.send_replace(true);
    task.await.unwrap();
}
