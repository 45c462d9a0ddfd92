//! Unit tests of the store's replication primitives: a slave's log built from its master's
//! records is byte-identical and serves the same; bad chunks are refused whole; truncation
//! rebuilds the index; SYNC_MASTER appends wait for, or give up on, a slave.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use apogee_tests::wait_until;

use super::tests::{config, msg};
use super::*;

fn open(dir: &Path, f: impl FnOnce(&mut StoreConfig)) -> Arc<MessageStore> {
    let mut cfg = StoreConfig {
        segment_size: 32 * 1024,
        max_record_size: 16 * 1024,
        ..config(dir)
    };
    f(&mut cfg);
    MessageStore::open_with_kv(cfg, Arc::new(MemKv::new())).expect("open")
}

async fn fill(store: &MessageStore, from: usize, n: usize) {
    for i in from..from + n {
        store
            .append(vec![msg("T", (i % 3) as u32, i)])
            .await
            .expect("append");
    }
}

/// Streams everything the master has past the replica's end, as a master session does.
async fn replicate(master: &MessageStore, replica: &MessageStore) {
    let mut at = replica.log_end_offset();
    while let Some(slice) = master.read_records(at, 4096).expect("read") {
        let len = slice.bytes.len() as u64;
        let done = replica
            .append_replicated(slice.offset, slice.segment_base, slice.bytes)
            .await
            .expect("replicated append");
        at += len;
        assert_eq!(done.written, at);
    }
}

fn segment_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir.join("commitlog"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn a_replica_is_byte_identical_and_serves_the_same_messages() {
    let (md, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(md.path(), |_| {});
    let replica = open(rd.path(), |c| c.replica = true);
    fill(&master, 0, 300).await;
    assert!(
        master.segment_bases().len() > 2,
        "the test crosses segment rolls"
    );
    replicate(&master, &replica).await;

    assert_eq!(segment_files(md.path()), segment_files(rd.path()));
    assert_eq!(replica.last_record(), master.last_record());
    for q in 0..3 {
        let a = master.read_queue("T", q, 0, 1000, usize::MAX).unwrap();
        let b = replica.read_queue("T", q, 0, 1000, usize::MAX).unwrap();
        assert_eq!(a.len(), b.len());
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| x.msg == y.msg && x.queue_offset == y.queue_offset));
    }
    let id = &master.read_queue("T", 1, 5, 1, usize::MAX).unwrap()[0]
        .msg
        .message_id;
    assert!(replica.lookup_by_id(id).unwrap().is_some());

    // The replica's own appends are refused; it keeps following the master.
    let refused = replica.append(vec![msg("T", 0, 1)]).await;
    assert!(
        matches!(refused, Err(StoreError::Replica(_))),
        "{refused:?}"
    );
    fill(&master, 300, 20).await;
    replicate(&master, &replica).await;
    assert_eq!(segment_files(md.path()), segment_files(rd.path()));
}

#[tokio::test]
async fn bad_chunks_are_refused_whole() {
    let (md, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(md.path(), |_| {});
    let replica = open(rd.path(), |c| c.replica = true);
    fill(&master, 0, 10).await;
    let slice = master.read_records(0, 1 << 20).unwrap().unwrap();

    // Not at the replica's end.
    let wrong = replica.append_replicated(100, 0, slice.bytes.clone()).await;
    assert!(matches!(wrong, Err(StoreError::Replica(_))), "{wrong:?}");
    // One flipped byte in the last record: nothing of the chunk is written.
    let mut bad = slice.bytes.clone();
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    assert!(replica.append_replicated(0, 0, bad).await.is_err());
    assert_eq!(replica.log_end_offset(), 0);
    // A cut record.
    let cut = slice.bytes[..slice.bytes.len() - 3].to_vec();
    assert!(replica.append_replicated(0, 0, cut).await.is_err());
    assert_eq!(replica.log_end_offset(), 0);
    // The whole chunk is fine.
    replica.append_replicated(0, 0, slice.bytes).await.unwrap();
    assert_eq!(replica.log_end_offset(), master.log_end_offset());
}

#[tokio::test]
async fn record_marks_match_only_whole_records_of_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), |_| {});
    fill(&store, 0, 5).await;
    let marks = store.segment_records(0).unwrap();
    assert_eq!(marks.len(), 5);
    for m in &marks {
        assert_eq!(store.record_mark_at(m.offset).unwrap(), Some(*m));
    }
    assert_eq!(store.record_mark_at(marks[1].offset + 1).unwrap(), None);
    assert_eq!(store.record_mark_at(store.log_end_offset()).unwrap(), None);
    assert_eq!(store.last_record(), marks.last().copied());
}

#[tokio::test]
async fn truncating_a_replica_rebuilds_its_index_and_it_catches_up_again() {
    let (md, rd, od) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let master = open(md.path(), |_| {});
    let replica = open(rd.path(), |c| c.replica = true);
    fill(&master, 0, 100).await;
    replicate(&master, &replica).await;
    // The replica then takes records of another log the master never wrote.
    let other = open(od.path(), |_| {});
    fill(&other, 0, 100).await;
    fill(&other, 500, 150).await;
    let common = replica.log_end_offset();
    let mut at = common;
    while let Some(s) = other.read_records(at, 4096).unwrap() {
        at += s.bytes.len() as u64;
        replica
            .append_replicated(s.offset, s.segment_base, s.bytes)
            .await
            .unwrap();
    }
    assert!(replica.log_end_offset() > common);

    assert_eq!(replica.truncate_replica(common).await.unwrap(), common);
    assert_eq!(replica.log_end_offset(), common);
    // No index entry past the cut: queue heads are back where the master's were.
    for q in 0..3 {
        assert_eq!(
            replica.queue_bounds("T", q).unwrap(),
            master.queue_bounds("T", q).unwrap()
        );
    }
    assert!(replica.lookup_by_id("ID-T-1-000502").unwrap().is_none());
    fill(&master, 100, 50).await;
    replicate(&master, &replica).await;
    assert_eq!(segment_files(md.path()), segment_files(rd.path()));

    // Cut to nothing: the log restarts empty and re-fills from the master.
    replica.truncate_replica(0).await.unwrap();
    assert_eq!((replica.log_end_offset(), replica.last_record()), (0, None));
    assert_eq!(replica.queue_bounds("T", 0).unwrap(), (0, 0));
    replicate(&master, &replica).await;
    assert_eq!(segment_files(md.path()), segment_files(rd.path()));
}

#[tokio::test]
async fn an_empty_replica_starts_at_the_masters_first_segment() {
    let (md, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(md.path(), |_| {});
    fill(&master, 0, 200).await;
    let bases = master.segment_bases();
    let second = bases[1];
    let replica = open(rd.path(), |c| c.replica = true);
    // As if the master had deleted its first segment: the replica starts at the second.
    let mut at = second;
    while let Some(s) = master.read_records(at, 4096).unwrap() {
        at += s.bytes.len() as u64;
        replica
            .append_replicated(s.offset, s.segment_base, s.bytes)
            .await
            .unwrap();
    }
    assert_eq!(replica.log_start_offset(), second);
    assert_eq!(replica.log_end_offset(), master.log_end_offset());
    assert_eq!(replica.segment_bases(), bases[1..].to_vec());
}

#[tokio::test]
async fn sync_master_appends_wait_for_a_slave_or_say_not_replicated() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), |c| {
        c.sync_replicas = true;
        c.replica_timeout = Duration::from_secs(1);
    });
    // No slave in sync: answered at once, stored anyway.
    let r = store.append(vec![msg("T", 0, 0)]).await;
    let Err(StoreError::NotReplicated {
        results, timed_out, ..
    }) = r
    else {
        panic!("{r:?}");
    };
    assert!(!timed_out);
    assert_eq!(results.len(), 1);
    assert_eq!(store.queue_bounds("T", 0).unwrap(), (0, 1));

    // In sync but silent: the timeout.
    store.set_replica_in_sync(true);
    let r = store.append(vec![msg("T", 0, 1)]).await;
    assert!(
        matches!(
            r,
            Err(StoreError::NotReplicated {
                timed_out: true,
                ..
            })
        ),
        "{r:?}"
    );

    // In sync and confirming: OK once the slave has the bytes.
    let before = store.log_end_offset();
    let s2 = store.clone();
    let pending = tokio::spawn(async move { s2.append(vec![msg("T", 0, 2)]).await });
    wait_until(Duration::from_secs(5), "the send to be written", || async {
        match store.log_end_offset() {
            end if end > before => Ok(()),
            end => Err(format!("log end {end}")),
        }
    })
    .await;
    store.set_replicated(store.log_end_offset());
    let r = pending.await.unwrap();
    assert!(r.is_ok(), "{r:?}");
    // Internal writers count "stored here" as stored.
    store.set_replica_in_sync(false);
    assert!(store.append_internal(vec![msg("T", 0, 3)]).await.is_ok());
}

#[tokio::test]
async fn the_role_flags_change_at_runtime_with_the_timer_started_when_needed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), |c| {
        c.replica_timeout = Duration::from_millis(200)
    });
    assert!(!store.is_replica() && !store.sync_replicas());
    store.append(vec![msg("T", 0, 0)]).await.unwrap();

    // A slave's copy from now on: appends refused, nothing stored.
    store.set_replica(true);
    let end = store.log_end_offset();
    let r = store.append(vec![msg("T", 0, 1)]).await;
    assert!(matches!(r, Err(StoreError::Replica(_))), "{r:?}");
    assert_eq!(store.log_end_offset(), end);

    // A SYNC master again: a wait for a silent slave times out on the timer started now.
    store.set_replica(false);
    store.set_sync_replicas(true).unwrap();
    store.set_replica_in_sync(true);
    let r = store.append(vec![msg("T", 0, 2)]).await;
    assert!(
        matches!(
            r,
            Err(StoreError::NotReplicated {
                timed_out: true,
                ..
            })
        ),
        "{r:?}"
    );

    // The exact replicated offset may move back; a demotion refuses what waits.
    store.set_replicated_exact(u64::MAX);
    store.append(vec![msg("T", 0, 3)]).await.unwrap();
    store.set_replicated_exact(store.log_end_offset());
    let before = store.log_end_offset();
    let s2 = store.clone();
    let pending = tokio::spawn(async move { s2.append(vec![msg("T", 0, 4)]).await });
    wait_until(Duration::from_secs(5), "the send to be written", || async {
        match store.log_end_offset() {
            end if end > before => Ok(()),
            end => Err(format!("log end {end}")),
        }
    })
    .await;
    store.set_replica(true);
    let r = pending.await.unwrap();
    assert!(
        matches!(r, Err(StoreError::NotReplicated { timed_out: false, ref reason, .. }) if reason.contains("stopped being the master")),
        "{r:?}"
    );

    // No slave needed any more: what waits is answered OK.
    store.set_replica(false);
    store.set_replicated_exact(store.log_end_offset());
    let s3 = store.clone();
    let before = store.log_end_offset();
    let pending = tokio::spawn(async move { s3.append(vec![msg("T", 0, 5)]).await });
    wait_until(Duration::from_secs(5), "the send to be written", || async {
        match store.log_end_offset() {
            end if end > before => Ok(()),
            end => Err(format!("log end {end}")),
        }
    })
    .await;
    store.set_sync_replicas(false).unwrap();
    assert!(pending.await.unwrap().is_ok());
    assert_eq!(store.sync_log().await.unwrap(), store.log_end_offset());
}

#[tokio::test]
async fn a_truncation_drops_exactly_the_records_and_the_epochs_beyond_the_point() {
    let (md, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let master = open(md.path(), |_| {});
    let replica = open(rd.path(), |c| c.replica = true);
    fill(&master, 0, 120).await;
    replicate(&master, &replica).await;
    let point = replica.log_end_offset();
    // What the replica holds beyond the point (spanning a segment roll), with epochs of it.
    let od = tempfile::tempdir().unwrap();
    let other = open(od.path(), |_| {});
    fill(&other, 0, 120).await;
    fill(&other, 900, 200).await;
    let mut at = point;
    while let Some(s) = other.read_records(at, 4096).unwrap() {
        at += s.bytes.len() as u64;
        replica
            .append_replicated(s.offset, s.segment_base, s.bytes)
            .await
            .unwrap();
    }
    assert!(replica.segment_bases().len() > master.segment_bases().len());
    let epochs = replica.epochs();
    epochs.append(1, 0).unwrap();
    epochs.append(2, point).unwrap();
    epochs.append(3, point + 1).unwrap();

    let dropped = replica.records_beyond(point, 150).unwrap();
    let expected: Vec<String> = (900..1050)
        .map(|i| msg("T", (i % 3) as u32, i).message_id)
        .collect();
    assert_eq!(dropped.records, 200);
    assert_eq!(dropped.bytes, replica.log_end_offset() - point);
    assert_eq!(dropped.message_ids, expected);
    assert!(
        dropped.ids_text().ends_with("ID-T-2-001049 and 50 more"),
        "{}",
        dropped.ids_text()
    );
    assert_eq!(
        replica
            .records_beyond(replica.log_end_offset(), 10)
            .unwrap(),
        DroppedRecords::default()
    );

    assert_eq!(replica.truncate_replica(point).await.unwrap(), point);
    assert_eq!(replica.log_end_offset(), point);
    assert_eq!(replica.segment_bases(), master.segment_bases());
    assert_eq!(replica.last_record(), master.last_record());
    assert!(replica.lookup_by_id("ID-T-0-000900").unwrap().is_none());
    assert!(replica.lookup_by_id("ID-T-2-000119").unwrap().is_some());
    let kept: Vec<(u64, u64)> = epochs
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect();
    assert_eq!(
        kept,
        vec![(1, 0), (2, point)],
        "the epoch that started beyond the cut is gone"
    );
    assert_eq!(
        EpochFile::open(rd.path()).unwrap().entries(),
        epochs.entries(),
        "on disk too"
    );
}
