//! The lag computation ([`super::lag`]), where a group starts in a queue it never
//! consumed from, and which sources [`LagSources`] counts (pop progress, committed offsets,
//! remoting members' subscriptions), over a real store in a temporary directory.

use super::lag::{CommittedOffsets, ConsumedTopics, LagSources};
use super::*;
use crate::config::AutoCreateStart;
use crate::groups::GroupTable;
use crate::store::{MessageStore, NewMessage, StoreConfig};
use crate::topics::TopicTable;
use apogee_proto::group::GroupConfig;
use apogee_server::telemetry::Sessions;
use std::collections::{BTreeMap, BTreeSet};
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

fn none_committed() -> CommittedOffsets {
    CommittedOffsets::new()
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
    let lags = engine
        .lag_of(vec![], &none_committed(), &topics(), None)
        .unwrap();
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
    let lags = engine
        .lag_of(progress, &none_committed(), &topics(), None)
        .unwrap();
    assert_eq!(lags.len(), QUEUES as usize);
    assert_eq!(total(&lags), 100, "in flight is not acknowledged");
    assert_eq!(lags.iter().map(|q| q.inflight).sum::<usize>(), 1);
    let touched = lags.iter().find(|q| q.inflight == 1).unwrap();
    assert_eq!((touched.consumer_offset, touched.pop_offset), (0, 1));

    // A topic the group does not consume adds nothing; no topics, only the progress.
    let only_progress = engine
        .lag_of(
            engine.group_progress("g"),
            &none_committed(),
            &ConsumedTopics::new(),
            None,
        )
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
        .lag_of(
            engine.group_progress("g"),
            &none_committed(),
            &topics(),
            None,
        )
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
    let lags = engine
        .lag_of(vec![], &none_committed(), &topics(), Some(created))
        .unwrap();
    assert_eq!(total(&lags), 0, "{lags:?}");
    let group = GroupConfig::with_defaults("late");
    assert_eq!(pop_one(&engine, &group, Some(created)), 0, "nothing old");

    // Messages stored after it was created are its lag, also in queues it looked at.
    store.append(spread(9)).await.unwrap();
    let lags = engine
        .lag_of(
            engine.group_progress("late"),
            &none_committed(),
            &topics(),
            Some(created),
        )
        .unwrap();
    assert_eq!(total(&lags), 9, "{lags:?}");
    let mut received = 0;
    while pop_one(&engine, &group, Some(created)) == 1 {
        received += 1;
    }
    assert_eq!(received, 9, "exactly the new ones");

    // The same store, a group starting at the earliest: everything.
    let lags = engine
        .lag_of(vec![], &none_committed(), &topics(), None)
        .unwrap();
    assert_eq!(total(&lags), 59);
}

/// A store with messages on topic "t", the engine over it, and the tables and sessions
/// [`LagSources`] reads (unknown groups are created on first use, at the earliest).
struct Broker {
    _dir: tempfile::TempDir,
    store: Arc<MessageStore>,
    engine: ConsumeEngine,
    topics: TopicTable,
    groups: GroupTable,
    sessions: Arc<Sessions>,
}

async fn broker_with(n: usize) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let (store, engine) = engine_with(dir.path(), n).await;
    let topics = TopicTable::load(store.kv()).unwrap();
    topics
        .create(crate::topics::TopicConfig::new("t", QUEUES))
        .unwrap();
    let groups = GroupTable::load(store.kv(), true).unwrap();
    Broker {
        _dir: dir,
        store,
        engine,
        topics,
        groups,
        sessions: Sessions::new(),
    }
}

impl Broker {
    /// The lag's sources, with live remoting members subscribing (group, topic) `members`.
    fn sources(&self, members: &[(&str, &str)]) -> LagSources<'_> {
        let mut remoting_subscriptions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (group, topic) in members {
            remoting_subscriptions
                .entry(group.to_string())
                .or_default()
                .insert(topic.to_string());
        }
        LagSources {
            consume: &self.engine,
            topics: &self.topics,
            groups: &self.groups,
            sessions: &self.sessions,
            remoting_subscriptions,
        }
    }
}

#[tokio::test]
async fn committed_offsets_alone_count_from_the_committed_offset() {
    // 100 messages: queue 0 holds 3, queue 7 holds 16.
    let b = broker_with(100).await;
    offsets::commit_offset(&b.store, "pull", "t", 7, 10).unwrap();
    let lags = b.sources(&[]).group_lag("pull", &[]).unwrap();
    assert_eq!(lags.len(), QUEUES as usize, "every queue of the topic");
    let q7 = &lags[7];
    assert_eq!((q7.queue_id, q7.next_offset), (7, 16));
    assert_eq!((q7.consumer_offset, q7.pop_offset), (10, 10));
    assert_eq!(q7.lag(), 6);
    assert_eq!(total(&lags), 90, "the other queues from the first message");
    // The metrics see the group too, with the same lag.
    let all = b.sources(&[]).all_lags().unwrap();
    assert_eq!(all, vec![("pull".to_string(), lags)]);

    // A committed offset past the queue's end (the queue was emptied) counts from its end.
    let mut batch = crate::store::KvBatch::new();
    batch.put(
        crate::store::Cf::ConsumerOffset,
        crate::store::keys::consumer_offset_key("pull", "t", 0),
        crate::store::values::encode_offset(50),
    );
    b.store.kv().write(batch).unwrap();
    let lags = b.sources(&[]).group_lag("pull", &[]).unwrap();
    assert_eq!((lags[0].next_offset, lags[0].consumer_offset), (3, 3));
    assert_eq!(total(&lags), 87);
}

#[tokio::test]
async fn pop_progress_wins_over_a_commit_in_the_same_queue() {
    let b = broker_with(100).await;
    let group = GroupConfig::with_defaults("g");
    assert_eq!(pop_one(&b.engine, &group, None), 1);
    let popped = b.engine.group_progress("g").remove(0).queue_id;
    let other = (popped + 1) % QUEUES;
    offsets::commit_offset(&b.store, "g", "t", popped, 1).unwrap();
    offsets::commit_offset(&b.store, "g", "t", other, 2).unwrap();
    let lags = b.sources(&[]).group_lag("g", &[]).unwrap();
    let queue = |id: u32| lags.iter().find(|q| q.queue_id == id).unwrap();
    let p = queue(popped);
    assert_eq!(
        (p.consumer_offset, p.pop_offset, p.inflight),
        (0, 1, 1),
        "the engine's progress: the message in flight is not acknowledged"
    );
    assert_eq!(
        queue(other).consumer_offset,
        2,
        "no progress there: the commit"
    );
    assert_eq!(total(&lags), 98);
    let all = b.sources(&[]).all_lags().unwrap();
    assert_eq!(all, vec![("g".to_string(), lags)]);
}

#[tokio::test]
async fn a_group_with_only_remoting_members_counts_their_topics_from_where_it_would_start() {
    let b = broker_with(50).await;
    assert!(
        b.sources(&[]).all_lags().unwrap().is_empty(),
        "nobody consumes"
    );
    let members = [("pushers", "t"), ("pushers", "not-held")];
    let lags = b.sources(&members).group_lag("pushers", &[]).unwrap();
    assert_eq!(lags.len(), QUEUES as usize, "the topic held here only");
    assert!(lags
        .iter()
        .all(|q| q.topic == "t" && q.consumer_offset == 0));
    assert_eq!(total(&lags), 50, "a group starting at the earliest");
    let all = b.sources(&members).all_lags().unwrap();
    assert_eq!(all, vec![("pushers".to_string(), lags)]);
    assert!(
        b.sources(&members)
            .group_lag("others", &[])
            .unwrap()
            .is_empty(),
        "another group's members do not count"
    );

    // Created on first use at the latest, it would skip what is stored (store times are in
    // ms: they are strictly before now).
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    b.groups.set_auto_create_start(AutoCreateStart::Latest);
    let lags = b.sources(&members).group_lag("pushers", &[]).unwrap();
    assert_eq!(lags.len(), QUEUES as usize);
    assert_eq!(total(&lags), 0, "{lags:?}");
}

#[tokio::test]
async fn forgetting_a_group_drops_the_offsets_it_committed_in_queues_never_loaded() {
    let b = broker_with(100).await;
    offsets::commit_offset(&b.store, "pull", "t", 7, 10).unwrap();
    offsets::commit_offset(&b.store, "pull", "t", 2, 4).unwrap();
    offsets::commit_offset(&b.store, "pull-2", "t", 7, 5).unwrap();
    b.engine.forget_group("pull").unwrap();
    assert!(offsets::committed_offsets(&b.store, Some("pull"))
        .unwrap()
        .is_empty());
    // A group whose name starts with the other's keeps its own.
    let kept = offsets::committed_offsets(&b.store, Some("pull-2")).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].1, 5);
}
