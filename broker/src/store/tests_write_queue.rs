//! Unit tests of the write queue (`write_queue.rs`): who writes a group, hand-offs between
//! senders and the writer thread, and shutdown.

use std::collections::HashSet;

use futures::FutureExt;

use super::tests::{config, msg};
use super::*;

fn async_config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        flush_mode: FlushMode::Async,
        ..config(dir)
    }
}

#[test]
fn a_lone_append_on_an_idle_store_is_written_before_its_first_await() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(async_config(dir.path())).unwrap();
    for n in 0..50 {
        let end = store.log_end_offset();
        // Polled once, with no runtime to run anything else: the answer is already there,
        // so the sender wrote the record itself.
        let result = store
            .append(vec![msg("L", 0, n)])
            .now_or_never()
            .expect("answered on the first poll")
            .expect("append");
        assert_eq!(result[0].queue_offset, n as u64);
        assert_eq!(result[0].log_offset, end);
        assert!(store.log_end_offset() > end);
    }
}

#[test]
fn a_send_that_would_start_a_new_segment_is_left_to_the_writer_thread() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(async_config(dir.path())).unwrap();
    let first = store.shared.log.segments().len();
    for n in 0..1000 {
        // Each send starts with no one leading (the writer thread gives the lead back once
        // its queue is empty), so it either writes inline or counts a hand-off.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !store.writes.is_idle() {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer thread kept the lead"
            );
            std::thread::yield_now();
        }
        let (segments, handoffs) = (
            store.shared.log.segments().len(),
            store.writes.roll_handoffs(),
        );
        let mut append = Box::pin(store.append(vec![msg("R", 0, n)]));
        let result = match (&mut append).now_or_never() {
            Some(r) => r,
            None => futures::executor::block_on(append),
        };
        result.expect("append");
        if store.shared.log.segments().len() > segments {
            // The hand-off goes by an estimate of the group's size, so a send just before a
            // roll may be handed off too; a send never rolls on its own task.
            assert!(
                store.writes.roll_handoffs() > handoffs,
                "send {n} rolled inline"
            );
        }
    }
    let rolls = store.shared.log.segments().len() - first;
    assert!(rolls >= 3, "the 64 KiB segments rolled {rolls} times");
    assert!(store.writes.roll_handoffs() >= rolls as u64);
}

#[test]
fn appends_from_many_threads_interleaved_with_writer_commands_are_all_answered() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(async_config(dir.path())).unwrap();
    const THREADS: usize = 8;
    const EACH: usize = 300;
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut offsets = Vec::new();
                for i in 0..EACH {
                    let m = msg("H", (t % 2) as u32, t * EACH + i);
                    let r = futures::executor::block_on(store.append(vec![m])).unwrap();
                    offsets.push(((t % 2) as u32, r[0].queue_offset));
                    // Commands that only the writer thread runs, between the sends.
                    if i % 50 == 0 {
                        store.purge_topic(&format!("other-{t}")).unwrap();
                    }
                }
                offsets
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in threads {
        for o in t.join().unwrap() {
            assert!(seen.insert(o), "queue offset {o:?} given twice");
        }
    }
    for q in 0..2u32 {
        let n = (THREADS / 2 * EACH) as u64;
        assert_eq!(store.queue_bounds("H", q).unwrap(), (0, n));
        let all = store.read_queue("H", q, 0, n as usize, usize::MAX).unwrap();
        assert_eq!(all.len() as u64, n, "every answered append is readable");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_what_was_queued_and_refuses_what_comes_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(async_config(dir.path())).unwrap();
    let senders: Vec<_> = (0..32)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut stored = 0u64;
                for i in 0..100 {
                    match store.append(vec![msg("S", 0, t * 100 + i)]).await {
                        Ok(_) => stored += 1,
                        Err(StoreError::Closed) => break,
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
                stored
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let closer = store.clone();
    tokio::task::spawn_blocking(move || closer.shutdown())
        .await
        .unwrap();
    let mut answered_ok = 0;
    for s in senders {
        answered_ok += s.await.unwrap();
    }
    // Every send answered OK is in the log, and nothing else is.
    let (_, next) = store.queue_bounds("S", 0).unwrap();
    assert_eq!(next, answered_ok);
    assert!(matches!(
        store.append(vec![msg("S", 0, 0)]).await,
        Err(StoreError::Closed)
    ));
    drop(store);
    let reopened = MessageStore::open(async_config(dir.path())).unwrap();
    assert_eq!(reopened.queue_bounds("S", 0).unwrap(), (0, answered_ok));
}

#[tokio::test(flavor = "current_thread")]
async fn sends_arriving_while_others_wait_for_a_sync_share_one_write() {
    let dir = tempfile::tempdir().unwrap();
    // `config` keeps the default SYNC flush: every send waits for an fdatasync.
    let store = MessageStore::open(config(dir.path())).unwrap();
    assert_eq!(store.shared.config.flush_mode, FlushMode::Sync);
    let before = store.writes.groups_written();
    // All 32 are runnable at once on the one worker. The first writes alone and waits for
    // its fdatasync; the next finds it under way, yields, and writes the rest in its group.
    let tasks: Vec<_> = (0..32)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.append(vec![msg("Y", 0, n)]).await })
        })
        .collect();
    let mut offsets = HashSet::new();
    for t in tasks {
        let r = t.await.unwrap().expect("append");
        assert!(offsets.insert(r[0].queue_offset));
    }
    assert_eq!(offsets.len(), 32);
    let groups = store.writes.groups_written() - before;
    assert!(
        groups <= 4,
        "32 sends runnable together were written in {groups} groups"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_leader_dropped_while_it_yields_leaves_its_append_to_the_writer_thread() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(async_config(dir.path())).unwrap();
    // Another send under way: the next leader yields before it writes.
    let other = store.writes.enter();
    let mut append = Box::pin(store.append(vec![msg("D", 0, 0)]));
    assert!(
        (&mut append).now_or_never().is_none(),
        "the leader yields before writing"
    );
    drop(append);
    drop(other);
    // Dropping the future did not cancel the append, and the queue has a leader again: the
    // next send is stored after it.
    let next = match tokio::time::timeout(
        std::time::Duration::from_secs(10),
        store.append(vec![msg("D", 0, 1)]),
    )
    .await
    {
        Ok(answer) => answer.expect("append"),
        Err(_) => {
            // Keep the store open: closing it would wait on the stranded queue as well.
            std::mem::forget(store.clone());
            panic!("the queue was left without a leader");
        }
    };
    assert_eq!(next[0].queue_offset, 1);
    assert_eq!(store.queue_bounds("D", 0).unwrap(), (0, 2));
}
