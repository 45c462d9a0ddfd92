//! Consume engine tests of group policies: backoff, delivery attempts and
//! dead letters, FIFO message groups, repeated attempt ids, auto-renewal.

use super::dead_letter::dead_letter;
use super::*;
use crate::store::record::internal;
use crate::store::{MessageStore, NewMessage, StoreConfig};
use crate::topics::TopicTable;
use apogee_proto::group::{GroupConfig, RetryPolicy};
use std::sync::Arc;

fn message(queue_id: u32, group: Option<&str>, body: &str) -> NewMessage {
    NewMessage {
        topic: "t".into(),
        queue_id,
        message_id: apogee_proto::message_id::new_message_id(),
        tag: Some("tag".into()),
        keys: vec!["k".into()],
        message_group: group.map(str::to_string),
        message_type: 1,
        born_timestamp_ms: 0,
        born_host: "127.0.0.1".into(),
        delivery_timestamp_ms: None,
        reconsume_times: 0,
        properties: vec![("p".into(), "v".into())],
        internal: vec![],
        body: body.as_bytes().to_vec().into(),
    }
}

async fn engine_with(
    dir: &std::path::Path,
    msgs: Vec<NewMessage>,
) -> (Arc<MessageStore>, ConsumeEngine) {
    let store = MessageStore::open(StoreConfig::for_tests(dir)).unwrap();
    store.append(msgs).await.unwrap();
    let engine = ConsumeEngine::open(store.clone()).unwrap();
    (store, engine)
}

fn pop(
    engine: &ConsumeEngine,
    group: &GroupConfig,
    max: usize,
    invisible_ms: i64,
    now_ms: i64,
) -> Vec<Delivery> {
    let all = MessageFilter::from_expression(None).unwrap();
    engine
        .pop(
            &PopRequest {
                group,
                topic: "t",
                queue_ids: &[0],
                filter: &all,
                max,
                invisible_ms,
                renew_until_ms: None,
                attempt_id: None,
                client_id: "test-client",
                start_after_ms: None,
            },
            now_ms,
        )
        .unwrap()
}

/// An auto-renew receive of one message of queue 0 by `client`, renewed until `renew_until_ms`.
fn auto_renew_pop(
    engine: &ConsumeEngine,
    group: &GroupConfig,
    client: &str,
    renew_until_ms: i64,
    now_ms: i64,
) -> Vec<Delivery> {
    let all = MessageFilter::from_expression(None).unwrap();
    let req = PopRequest {
        group,
        topic: "t",
        queue_ids: &[0],
        filter: &all,
        max: 1,
        invisible_ms: 1_000,
        renew_until_ms: Some(renew_until_ms),
        attempt_id: None,
        client_id: client,
        start_after_ms: None,
    };
    engine.pop(&req, now_ms).unwrap()
}

fn bodies(d: &[Delivery]) -> Vec<String> {
    d.iter()
        .map(|d| String::from_utf8(d.message.msg.body.to_vec()).unwrap())
        .collect()
}

#[tokio::test]
async fn redeliveries_follow_the_backoff_then_the_message_expires_at_max_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let (store, engine) = engine_with(dir.path(), vec![message(0, None, "a")]).await;
    let g = GroupConfig {
        max_delivery_attempts: 3,
        retry: RetryPolicy::Exponential {
            initial_ms: 100,
            max_ms: 10_000,
            multiplier: 10.0,
        },
        ..GroupConfig::with_defaults("g")
    };
    // Attempt 1 at 0, invisible 1 s, backoff 100 ms: due at 1_100.
    assert_eq!(pop(&engine, &g, 1, 1_000, 0)[0].attempt, 1);
    assert!(pop(&engine, &g, 1, 1_000, 1_099).is_empty());
    assert_eq!(engine.next_redelivery_ms(&g, "t"), Some(1_100));
    assert_eq!(pop(&engine, &g, 1, 1_000, 1_100)[0].attempt, 2);
    // Attempt 2: backoff 1 s: due at 1_100 + 1_000 + 1_000.
    assert!(pop(&engine, &g, 1, 1_000, 3_099).is_empty());
    let third = pop(&engine, &g, 1, 1_000, 3_100);
    assert_eq!(third[0].attempt, 3);
    // Attempt 3 was the last: once its invisible time ends (no backoff: no
    // retry follows) it is not handed out again but listed for the dead-letter
    // task, and long polling does not wait for it.
    let later = 3_100 + 1_000;
    assert!(engine.expired_deliveries(later - 1, |_| 3).is_empty());
    assert!(pop(&engine, &g, 1, 1_000, later).is_empty());
    assert_eq!(engine.next_redelivery_ms(&g, "t"), None);
    let expired = engine.expired_deliveries(later, |_| 3);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].attempt, 3);

    let topics = TopicTable::load(store.kv()).unwrap();
    assert!(dead_letter(&store, &topics, &engine, &expired[0])
        .await
        .unwrap());
    // Once only, even if asked again (a crash between the two steps).
    assert!(!dead_letter(&store, &topics, &engine, &expired[0])
        .await
        .unwrap());
    assert!(engine.expired_deliveries(later, |_| 3).is_empty());
    assert!(topics.get("%DLQ%g").is_some(), "the DLQ topic is created");
    let dl = store.read_queue("%DLQ%g", 0, 0, 10, usize::MAX).unwrap();
    assert_eq!(dl.len(), 1);
    let original = store
        .read_queue("t", 0, 0, 1, usize::MAX)
        .unwrap()
        .remove(0);
    let copy = &dl[0].msg;
    assert_eq!(copy.message_id, original.msg.message_id);
    assert_eq!(
        (&copy.tag, &copy.keys, &copy.properties),
        (
            &original.msg.tag,
            &original.msg.keys,
            &original.msg.properties
        )
    );
    assert_eq!(&copy.body[..], b"a");
    let origin = |k: &str| {
        copy.internal
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(origin(internal::DLQ_TOPIC), Some("t"));
    assert_eq!(origin(internal::DLQ_GROUP), Some("g"));
    assert_eq!(origin(internal::DLQ_ATTEMPTS), Some("3"));
    let progress = engine.group_progress("g");
    assert_eq!(
        (progress[0].consumer_offset, progress[0].inflight),
        (1, 0),
        "no longer in flight"
    );
}

#[tokio::test]
async fn fifo_group_hands_out_one_message_per_message_group_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = vec![
        message(0, Some("A"), "a1"),
        message(0, Some("B"), "b1"),
        message(0, Some("A"), "a2"),
        message(0, Some("B"), "b2"),
        message(0, Some("A"), "a3"),
        message(0, None, "free"),
    ];
    let (_store, engine) = engine_with(dir.path(), msgs).await;
    let g = GroupConfig {
        fifo: true,
        retry: RetryPolicy::Custom(vec![0]),
        ..GroupConfig::with_defaults("g")
    };
    let first = pop(&engine, &g, 32, 10_000, 0);
    assert_eq!(bodies(&first), ["a1", "b1", "free"]);
    assert!(
        pop(&engine, &g, 32, 10_000, 1).is_empty(),
        "heads still in flight"
    );
    // A's head acked: a2 follows; B's head nacked: b1 again, before b2.
    engine.ack("g", "t", &first[0].receipt_handle).unwrap();
    let b1 = engine
        .change_invisible("g", "t", &first[1].receipt_handle, 0, 2)
        .unwrap();
    let next = pop(&engine, &g, 32, 10_000, 3);
    assert_eq!(bodies(&next), ["b1", "a2"]);
    assert_eq!(next[0].attempt, 2);
    assert!(
        engine.ack("g", "t", &b1).is_err(),
        "the nacked handle is stale"
    );
    // Progress survives a restart, waiting messages included.
    let progress = engine.group_progress("g");
    assert_eq!(progress[0].inflight, 3, "b1, a2 and `free`; b2 and a3 wait");
    for d in &next {
        engine.ack("g", "t", &d.receipt_handle).unwrap();
    }
    let rest = pop(&engine, &g, 32, 10_000, 4);
    assert_eq!(bodies(&rest), ["b2", "a3"]);
}

#[tokio::test]
async fn a_repeated_attempt_id_gets_the_same_deliveries_without_a_new_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, engine) = engine_with(
        dir.path(),
        vec![message(0, None, "a"), message(0, None, "b")],
    )
    .await;
    let g = GroupConfig::with_defaults("g");
    let all = MessageFilter::from_expression(None).unwrap();
    let req = |id| PopRequest {
        group: &g,
        topic: "t",
        queue_ids: &[0],
        filter: &all,
        max: 1,
        invisible_ms: 10_000,
        renew_until_ms: None,
        attempt_id: Some(id),
        client_id: "test-client",
        start_after_ms: None,
    };
    let first = engine.pop(&req("x"), 0).unwrap();
    let again = engine.pop(&req("x"), 5).unwrap();
    assert_eq!(bodies(&again), ["a"]);
    assert_eq!(again[0].receipt_handle, first[0].receipt_handle);
    assert_eq!(again[0].attempt, 1);
    let other = engine.pop(&req("y"), 6).unwrap();
    assert_eq!(bodies(&other), ["b"], "a new attempt id is a new receive");
    engine.ack("g", "t", &first[0].receipt_handle).unwrap();
    assert!(
        engine.pop(&req("x"), 7).unwrap().is_empty(),
        "acked deliveries are not repeated, and nothing else is left"
    );
}

#[tokio::test]
async fn auto_renew_keeps_a_delivery_invisible_until_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, engine) = engine_with(dir.path(), vec![message(0, None, "a")]).await;
    let g = GroupConfig::with_defaults("g");
    let d = auto_renew_pop(&engine, &g, "test-client", 5_000, 0);
    assert_eq!(d.len(), 1);
    // Renewed while it runs: never visible before the limit.
    for now in (400..5_000).step_by(400) {
        engine.renew(now, 1_000).unwrap();
        assert!(
            pop(&engine, &g, 1, 1_000, now).is_empty(),
            "visible at {now}"
        );
    }
    engine.renew(5_000, 1_000).unwrap();
    let again = pop(&engine, &g, 1, 1_000, 5_000);
    assert_eq!(again.len(), 1, "back after the renewal limit");
    assert_eq!(again[0].attempt, 2);
}

#[tokio::test]
async fn fifo_waiting_messages_and_progress_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = (0..4)
        .map(|i| message(0, Some("A"), &format!("a{i}")))
        .collect();
    let (store, engine) = engine_with(dir.path(), msgs).await;
    let g = GroupConfig {
        fifo: true,
        ..GroupConfig::with_defaults("g")
    };
    let first = pop(&engine, &g, 32, 10_000, 0);
    assert_eq!(bodies(&first), ["a0"]);
    assert_eq!(engine.group_progress("g")[0].consumer_offset, 0);
    drop(engine);
    store.shutdown();
    drop(store);

    let store = MessageStore::open(StoreConfig::for_tests(dir.path())).unwrap();
    let engine = ConsumeEngine::open(store).unwrap();
    assert!(
        pop(&engine, &g, 32, 10_000, 1).is_empty(),
        "a0 is still in flight"
    );
    engine.ack("g", "t", &first[0].receipt_handle).unwrap();
    let mut order = Vec::new();
    for now in 2..10 {
        for d in pop(&engine, &g, 32, 10_000, now) {
            order.push(bodies(std::slice::from_ref(&d)).remove(0));
            engine.ack("g", "t", &d.receipt_handle).unwrap();
        }
    }
    assert_eq!(order, ["a1", "a2", "a3"]);
    assert_eq!(engine.group_progress("g")[0].consumer_offset, 4);
}

#[tokio::test]
async fn auto_renew_stops_when_the_receiving_client_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, engine) = engine_with(dir.path(), vec![message(0, None, "a")]).await;
    let g = GroupConfig::with_defaults("g");
    engine.clients().seen("leaver", 0);
    assert_eq!(auto_renew_pop(&engine, &g, "leaver", 600_000, 0).len(), 1);
    engine.renew(600, 1_000).unwrap();
    assert!(
        pop(&engine, &g, 1, 1_000, 1_500).is_empty(),
        "renewed while alive"
    );
    // The client says goodbye: no more renewals; back after the current period.
    engine.clients().gone("leaver", 1_550);
    engine.renew(1_600, 1_000).unwrap();
    engine.renew(2_000, 1_000).unwrap();
    let back = pop(&engine, &g, 1, 1_000, 1_600 + 1_000);
    assert_eq!(back.len(), 1, "back one period after its client left");
    assert_eq!(back[0].attempt, 2);
}
