//! Consume engine tests over a real store in a temporary directory.

use super::*;
use crate::store::{MessageStore, NewMessage, StoreConfig};
use apogee_proto::group::{GroupConfig, RetryPolicy};
use apogee_proto::v2::{FilterExpression, FilterType};
use apogee_proto::ApogeeError;
use std::sync::Arc;

/// A normal message (shared with the other consume test modules).
pub(super) fn message(topic: &str, queue_id: u32, tag: Option<&str>, body: &str) -> NewMessage {
    NewMessage {
        topic: topic.into(),
        queue_id,
        message_id: apogee_proto::message_id::new_message_id(),
        tag: tag.map(str::to_string),
        keys: vec![],
        message_group: None,
        message_type: 1,
        born_timestamp_ms: 0,
        born_host: "127.0.0.1".into(),
        delivery_timestamp_ms: None,
        reconsume_times: 0,
        properties: vec![],
        internal: vec![],
        body: body.as_bytes().to_vec().into(),
    }
}

async fn store_with(dir: &std::path::Path, msgs: Vec<NewMessage>) -> Arc<MessageStore> {
    let store = MessageStore::open(StoreConfig::for_tests(dir)).unwrap();
    store.append(msgs).await.unwrap();
    store
}

/// A group with a 1 s backoff for every attempt, `max` attempts, FIFO or not.
fn group(name: &str, max: u32, fifo: bool) -> &'static GroupConfig {
    Box::leak(Box::new(GroupConfig {
        max_delivery_attempts: max,
        retry: RetryPolicy::Custom(vec![1_000]),
        fifo,
        ..GroupConfig::with_defaults(name)
    }))
}

fn all() -> MessageFilter {
    MessageFilter::from_expression(None).unwrap()
}

fn tags(expression: &str) -> MessageFilter {
    MessageFilter::from_expression(Some(&FilterExpression {
        r#type: FilterType::Tag as i32,
        expression: expression.into(),
    }))
    .unwrap()
}

fn pr<'a>(
    group_name: &'a str,
    topic: &'a str,
    queue_ids: &'a [u32],
    filter: &'a MessageFilter,
    max: usize,
    invisible_ms: i64,
) -> PopRequest<'a> {
    PopRequest {
        group: group(group_name, 16, false),
        topic,
        queue_ids,
        filter,
        max,
        invisible_ms,
        renew_until_ms: None,
        attempt_id: None,
        client_id: "test-client",
        start_after_ms: None,
    }
}

fn bodies(d: &[Delivery]) -> Vec<String> {
    d.iter()
        .map(|d| String::from_utf8(d.message.msg.body.to_vec()).unwrap())
        .collect()
}

#[tokio::test]
async fn each_message_goes_to_one_receiver_of_a_group_and_to_every_group() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = (0..10)
        .map(|i| message("t", i % 2, None, &format!("m{i}")))
        .collect();
    let store = store_with(dir.path(), msgs).await;
    let engine = ConsumeEngine::open(store).unwrap();
    let all = all();
    let first = engine
        .pop(&pr("g", "t", &[0, 1], &all, 6, 30_000), 1_000)
        .unwrap();
    let second = engine
        .pop(&pr("g", "t", &[1, 0], &all, 6, 30_000), 1_000)
        .unwrap();
    assert_eq!(first.len() + second.len(), 10);
    let mut seen: Vec<String> = bodies(&first).into_iter().chain(bodies(&second)).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 10, "no message twice within the group");
    let other = engine
        .pop(&pr("other", "t", &[0, 1], &all, 32, 30_000), 1_000)
        .unwrap();
    assert_eq!(other.len(), 10, "another group sees everything");
}

#[tokio::test]
async fn unacked_delivery_comes_back_after_invisible_time_and_backoff_with_attempt_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), vec![message("t", 0, None, "a")]).await;
    let engine = ConsumeEngine::open(store).unwrap();
    let d = engine
        .pop(&pr("g", "t", &[0], &all(), 1, 5_000), 10_000)
        .unwrap();
    assert_eq!(d[0].attempt, 1);
    assert!(
        engine
            .pop(&pr("g", "t", &[0], &all(), 1, 5_000), 15_999)
            .unwrap()
            .is_empty(),
        "invisible for 5 s, then the group's 1 s backoff"
    );
    let again = engine
        .pop(&pr("g", "t", &[0], &all(), 1, 5_000), 16_000)
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    // The first handle is stale now; the new one acks.
    let stale = engine.ack("g", "t", &d[0].receipt_handle).unwrap_err();
    assert!(matches!(stale, ApogeeError::InvalidReceiptHandle(_)));
    engine.ack("g", "t", &again[0].receipt_handle).unwrap();
    assert!(
        engine.ack("g", "t", &again[0].receipt_handle).is_err(),
        "double ack is refused"
    );
    assert!(engine
        .pop(&pr("g", "t", &[0], &all(), 1, 5_000), 100_000)
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn acked_progress_and_inflight_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = (0..3)
        .map(|i| message("t", 0, None, &format!("m{i}")))
        .collect();
    let store = store_with(dir.path(), msgs).await;
    let engine = ConsumeEngine::open(store.clone()).unwrap();
    let d = engine
        .pop(&pr("g", "t", &[0], &all(), 2, 5_000), 0)
        .unwrap();
    engine.ack("g", "t", &d[0].receipt_handle).unwrap();
    let handle = d[1].receipt_handle.clone();
    drop(engine);
    store.shutdown();
    drop(store);

    let store = MessageStore::open(StoreConfig::for_tests(dir.path())).unwrap();
    let engine = ConsumeEngine::open(store).unwrap();
    // The in-flight delivery's handle still works after the restart.
    engine.ack("g", "t", &handle).unwrap();
    let rest = engine
        .pop(&pr("g", "t", &[0], &all(), 10, 5_000), 1)
        .unwrap();
    assert_eq!(bodies(&rest), vec!["m2"]);
}

#[tokio::test]
async fn handles_of_another_group_or_topic_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), vec![message("t", 0, None, "a")]).await;
    let engine = ConsumeEngine::open(store).unwrap();
    let d = engine
        .pop(&pr("g", "t", &[0], &all(), 1, 5_000), 0)
        .unwrap();
    assert!(engine.ack("g2", "t", &d[0].receipt_handle).is_err());
    assert!(engine.ack("g", "t2", &d[0].receipt_handle).is_err());
    assert!(engine
        .change_invisible("g2", "t", &d[0].receipt_handle, 5_000, 0)
        .is_err());
    let fresh = engine
        .change_invisible("g", "t", &d[0].receipt_handle, 5_000, 0)
        .unwrap();
    assert!(
        engine.ack("g", "t", &d[0].receipt_handle).is_err(),
        "old handle is stale after a change"
    );
    engine.ack("g", "t", &fresh).unwrap();
}

#[tokio::test]
async fn tag_filter_skips_other_tags_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = vec![
        message("t", 0, Some("A"), "a1"),
        message("t", 0, Some("B"), "b1"),
        message("t", 0, None, "none"),
        message("t", 0, Some("A"), "a2"),
    ];
    let store = store_with(dir.path(), msgs).await;
    let engine = ConsumeEngine::open(store).unwrap();
    let only_a = tags("A");
    let d = engine
        .pop(&pr("g", "t", &[0], &only_a, 10, 5_000), 0)
        .unwrap();
    assert_eq!(bodies(&d), vec!["a1", "a2"]);
    assert!(engine
        .pop(&pr("g", "t", &[0], &all(), 10, 5_000), 0)
        .unwrap()
        .is_empty());
}
