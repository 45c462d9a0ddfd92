//! The lag computation ([`super::lag`]) and where a group starts in a queue it never
//! consumed from, over a real store in a temporary directory.

use super::lag::ConsumedTopics;
use super::*;
use crate::store::{MessageStore, NewMessage, StoreConfig};
use apogee_proto::group::GroupConfig;
use std::sync::Arc;

const QUEUES: u32 = 8;

fn message(queue_id: u32, body: &str) -> NewMessage {
    super::tests::message("t", queue_id, None, body)
}

/// `n` messages spread over the 8 queues unevenly (queue i gets i + 1 of every 36).
fn spread(n: usize) -> Vec<NewMessage> {
    let weights: Vec<u32> = (0..QUEUES).flat_map(|q| vec![q; q as usize + 1]).collect();
    (0..n)
        .map(|i| message(weights[i % weights.len()], &format!("m{i}")))
        .collect()
}

fn topics() -> ConsumedTopics {
    ConsumedTopics::from([("t".to_string(), QUEUES)])
}

fn total(lags: &[QueueLag]) -> u64 {
    lags.iter().map(QueueLag::lag).sum()
}

fn pop_one(engine: &ConsumeEngine, group: &GroupConfig, start_after_ms: Option<i64>) -> usize {
    let filter = MessageFilter::from_expression(None).unwrap();
    let queue_ids: Vec<u32> = (0..QUEUES).collect();
    let req = PopRequest {
        group,
        topic: "t",
        queue_ids: &queue_ids,
        filter: &filter,
        max: 1,
        invisible_ms: 60_000,
        renew_until_ms: None,
        attempt_id: None,
        client_id: "c",
        start_after_ms,
    };
    engine
        .pop(&req, apogee_proto::time::now_ms())
        .unwrap()
        .len()
}

async fn engine_with(dir: &std::path::Path, n: usize) -> (Arc<MessageStore>, ConsumeEngine) {
    let store = MessageStore::open(StoreConfig::for_tests(dir)).unwrap();
    store.append(spread(n)).await.unwrap();
    let engine = ConsumeEngine::open(store.clone()).unwrap();
    (store, engine)
}

#[tokio::test]
async fn a_new_group_lags_by_every_message_of_every_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (_, engine) = engine_with(dir.path(), 100).await;
    let lags = engine.lag_of(vec![], &topics(), None).unwrap();
    assert_eq!(
        lags.len(),
        QUEUES as usize,
        "every queue, none received from"
    );
    assert_eq!(total(&lags), 100);
    assert!(lags.iter().all(|q| q.consumer_offset == 0));

    // One message received (in flight): the queues it never touched still count.
    let group = GroupConfig::with_defaults("g");
    assert_eq!(pop_one(&engine, &group, None), 1);
    let progress = engine.group_progress("g");
    assert_eq!(progress.len(), 1, "one queue touched: {progress:?}");
    let lags = engine.lag_of(progress, &topics(), None).unwrap();
    assert_eq!(lags.len(), QUEUES as usize);
    assert_eq!(total(&lags), 100, "in flight is not acknowledged");
    assert_eq!(lags.iter().map(|q| q.inflight).sum::<usize>(), 1);
    let touched = lags.iter().find(|q| q.inflight == 1).unwrap();
    assert_eq!((touched.consumer_offset, touched.pop_offset), (0, 1));

    // A topic the group does not consume adds nothing; no topics, only the progress.
    let only_progress = engine
        .lag_of(engine.group_progress("g"), &ConsumedTopics::new(), None)
        .unwrap();
    assert_eq!(only_progress.len(), 1);
}

#[tokio::test]
async fn acknowledged_messages_leave_the_lag() {
    let dir = tempfile::tempdir().unwrap();
    let (_, engine) = engine_with(dir.path(), 40).await;
    let group = GroupConfig::with_defaults("g");
    let filter = MessageFilter::from_expression(None).unwrap();
    let queue_ids: Vec<u32> = (0..QUEUES).collect();
    let req = PopRequest {
        group: &group,
        topic: "t",
        queue_ids: &queue_ids,
        filter: &filter,
        max: 10,
        invisible_ms: 60_000,
        renew_until_ms: None,
        attempt_id: None,
        client_id: "c",
        start_after_ms: None,
    };
    let got = engine.pop(&req, apogee_proto::time::now_ms()).unwrap();
    assert_eq!(got.len(), 10);
    for d in &got {
        engine.ack("g", "t", &d.receipt_handle).unwrap();
    }
    let lags = engine
        .lag_of(engine.group_progress("g"), &topics(), None)
        .unwrap();
    assert_eq!(total(&lags), 30);
}

#[tokio::test]
async fn a_group_that_starts_at_the_latest_skips_what_was_stored_before() {
    let dir = tempfile::tempdir().unwrap();
    let (store, engine) = engine_with(dir.path(), 50).await;
    // Store times are in ms: the group is created strictly after the old messages.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let created = apogee_proto::time::now_ms();
    let lags = engine.lag_of(vec![], &topics(), Some(created)).unwrap();
    assert_eq!(total(&lags), 0, "{lags:?}");
    let group = GroupConfig::with_defaults("late");
    assert_eq!(pop_one(&engine, &group, Some(created)), 0, "nothing old");

    // Messages stored after it was created are its lag, also in queues it looked at.
    store.append(spread(9)).await.unwrap();
    let lags = engine
        .lag_of(engine.group_progress("late"), &topics(), Some(created))
        .unwrap();
    assert_eq!(total(&lags), 9, "{lags:?}");
    let mut received = 0;
    while pop_one(&engine, &group, Some(created)) == 1 {
        received += 1;
    }
    assert_eq!(received, 9, "exactly the new ones");

    // The same store, a group starting at the earliest: everything.
    let lags = engine.lag_of(vec![], &topics(), None).unwrap();
    assert_eq!(total(&lags), 59);
}
