//! Lite registry tests over a real store in a temporary directory: partial and complete
//! syncs, the quota, exclusive eviction, clients gone or idle, ready sets marked by appends,
//! expiry, start offsets, and the engine handing a lite queue out one message at a time.

use super::*;
use crate::consume::tests::message;
use crate::consume::{ConsumeEngine, MessageFilter, PopRequest};
use crate::store::{MessageStore, StoreConfig};
use apogee_proto::group::GroupConfig;
use apogee_proto::names::lite_queue_topic;
use apogee_proto::ApogeeError;
use parking_lot::Mutex;
use std::sync::Arc;

const PARENT: &str = "chats";
const GROUP: &str = "agents";
const IDLE_MS: i64 = 120_000;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<MessageStore>,
    engine: Arc<ConsumeEngine>,
    registry: LiteRegistry,
    told: Arc<Mutex<Vec<(String, String)>>>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(StoreConfig::for_tests(dir.path())).unwrap();
    let engine = Arc::new(ConsumeEngine::open(store.clone()).unwrap());
    let registry = LiteRegistry::new(store.clone(), engine.clone(), IDLE_MS);
    let told = Arc::new(Mutex::new(Vec::new()));
    let t = told.clone();
    registry.set_notifier(Arc::new(move |client, lite| {
        t.lock().push((client.to_string(), lite.to_string()));
        true
    }));
    Fixture {
        _dir: dir,
        store,
        engine,
        registry,
        told,
    }
}

fn q(lite: &str) -> String {
    lite_queue_topic(PARENT, lite)
}

impl Fixture {
    fn sync_with(
        &self,
        client: &str,
        action: SyncAction,
        lites: &[&str],
        exclusive: bool,
        quota: usize,
        start: Option<StartOffset>,
    ) -> Result<(), ApogeeError> {
        let names: Vec<String> = lites.iter().map(|s| s.to_string()).collect();
        self.registry.sync(&SyncRequest {
            client_id: client,
            group: GROUP,
            parent: PARENT,
            exclusive,
            action,
            lite_topics: &names,
            start,
            quota,
            now_ms: 1_000,
        })
    }

    fn sync(&self, client: &str, action: SyncAction, lites: &[&str]) {
        self.sync_with(client, action, lites, false, 100, None)
            .unwrap()
    }

    fn set_of(&self, client: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .registry
            .client(client)
            .map(|c| c.subscribed().iter().map(|q| q.to_string()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    async fn send(&self, lite: &str, body: &str) {
        self.store
            .append(vec![message(&q(lite), 0, None, body)])
            .await
            .unwrap();
    }

    fn drain_ready(&self, client: &str) -> Vec<String> {
        let c = self.registry.client(client).unwrap();
        std::iter::from_fn(|| c.take_ready(1_000).map(|q| q.to_string())).collect()
    }
}

#[test]
fn partial_and_complete_syncs_change_the_set() {
    let f = fixture();
    f.sync("c1", SyncAction::PartialAdd, &["a", "b"]);
    assert_eq!(f.set_of("c1"), vec![q("a"), q("b")]);
    f.sync("c1", SyncAction::PartialRemove, &["a"]);
    assert_eq!(f.set_of("c1"), vec![q("b")]);
    f.sync("c1", SyncAction::CompleteAdd, &["c", "d"]);
    assert_eq!(f.set_of("c1"), vec![q("c"), q("d")]);
    assert!(f.registry.subscribers(GROUP, &q("b")).is_empty());
    assert_eq!(f.registry.subscribers(GROUP, &q("c")), vec!["c1"]);
    assert_eq!(f.registry.subscriptions_by_group()[GROUP], 2);
    f.sync("c1", SyncAction::CompleteRemove, &[]);
    assert!(f.registry.client("c1").is_none());
    assert!(f.registry.subscribers(GROUP, &q("c")).is_empty());
    assert_eq!(f.store.wakeups().watched_queues(), 0, "no listener left");
}

#[test]
fn over_the_quota_nothing_changes() {
    let f = fixture();
    f.sync_with("c1", SyncAction::PartialAdd, &["a", "b"], false, 2, None)
        .unwrap();
    let e = f
        .sync_with("c1", SyncAction::PartialAdd, &["c"], false, 2, None)
        .unwrap_err();
    assert!(
        matches!(e, ApogeeError::LiteSubscriptionQuotaExceeded(_)),
        "{e}"
    );
    let e = f
        .sync_with(
            "c1",
            SyncAction::CompleteAdd,
            &["x", "y", "z"],
            false,
            2,
            None,
        )
        .unwrap_err();
    assert!(
        matches!(e, ApogeeError::LiteSubscriptionQuotaExceeded(_)),
        "{e}"
    );
    assert_eq!(f.set_of("c1"), vec![q("a"), q("b")]);
    // Replacing within the quota is fine; re-adding what it holds counts once.
    f.sync_with("c1", SyncAction::PartialAdd, &["a"], false, 2, None)
        .unwrap();
    f.sync_with("c1", SyncAction::CompleteAdd, &["x", "y"], false, 2, None)
        .unwrap();
    assert_eq!(f.set_of("c1"), vec![q("x"), q("y")]);
}

#[test]
fn exclusive_mode_evicts_and_tells_the_old_subscriber() {
    let f = fixture();
    f.sync_with("c1", SyncAction::PartialAdd, &["a", "b"], true, 100, None)
        .unwrap();
    f.sync_with("c2", SyncAction::PartialAdd, &["a"], true, 100, None)
        .unwrap();
    assert_eq!(f.set_of("c1"), vec![q("b")]);
    assert_eq!(f.registry.subscribers(GROUP, &q("a")), vec!["c2"]);
    assert_eq!(*f.told.lock(), vec![("c1".to_string(), "a".to_string())]);
    assert_eq!(
        f.registry.counters(),
        LiteCounters {
            evictions: 1,
            notifications: 1
        }
    );
    // Shared mode: both keep it, nobody is told.
    f.sync("c3", SyncAction::PartialAdd, &["b"]);
    assert_eq!(f.registry.subscribers(GROUP, &q("b")), vec!["c1", "c3"]);
    assert_eq!(f.told.lock().len(), 1);
}

#[test]
fn a_client_gone_idle_or_disconnected_loses_its_subscriptions() {
    let f = fixture();
    f.sync("c1", SyncAction::PartialAdd, &["a"]);
    f.registry.client_gone("c1");
    assert!(f.registry.client("c1").is_none());
    assert!(f.registry.subscribers(GROUP, &q("a")).is_empty());

    f.sync("c2", SyncAction::PartialAdd, &["a"]);
    f.registry.sweep_now(1_000 + IDLE_MS);
    assert!(f.registry.client("c2").is_some(), "not idle yet");
    f.registry.sweep_now(1_001 + IDLE_MS);
    assert!(f.registry.client("c2").is_none(), "idle too long");

    let live = Arc::new(Mutex::new(true));
    let l = live.clone();
    f.registry.set_session_check(Arc::new(move |_| *l.lock()));
    f.sync("c3", SyncAction::PartialAdd, &["a"]);
    f.registry.sweep_now(2_000);
    assert!(f.registry.client("c3").is_some(), "its stream is open");
    *live.lock() = false;
    f.registry.sweep_now(3_000);
    assert!(f.registry.client("c3").is_none(), "its stream closed");
    assert_eq!(f.store.wakeups().watched_queues(), 0);
}

#[tokio::test]
async fn appends_mark_the_lite_queue_ready_for_its_subscribers_only() {
    let f = fixture();
    f.sync("c1", SyncAction::PartialAdd, &["a", "b"]);
    f.sync("c2", SyncAction::PartialAdd, &["b"]);
    // A new subscription is looked at once.
    assert_eq!(f.drain_ready("c1").len(), 2);
    assert_eq!(f.drain_ready("c2"), vec![q("b")]);
    f.send("b", "1").await;
    f.send("b", "2").await;
    f.send("z", "unsubscribed").await;
    assert_eq!(
        f.drain_ready("c1"),
        vec![q("b")],
        "once, however many appends"
    );
    assert_eq!(f.drain_ready("c2"), vec![q("b")]);
    f.send("a", "3").await;
    f.send("b", "4").await;
    assert_eq!(
        f.drain_ready("c1"),
        vec![q("a"), q("b")],
        "in the order they got ready"
    );
    // The wake-up: a waiter registered before the append is woken.
    let c1 = f.registry.client("c1").unwrap();
    let notified = c1.notify().notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    f.send("a", "5").await;
    notified.await;
}

#[tokio::test]
async fn an_expired_lite_topic_leaves_every_set_and_its_subscribers_are_told() {
    let f = fixture();
    f.sync("c1", SyncAction::PartialAdd, &["a", "b"]);
    f.sync("c2", SyncAction::PartialAdd, &["a"]);
    f.registry.lite_topic_expired(&q("a"));
    assert_eq!(f.set_of("c1"), vec![q("b")]);
    assert_eq!(f.set_of("c2"), Vec::<String>::new());
    let mut told = f.told.lock().clone();
    told.sort();
    assert_eq!(
        told,
        vec![("c1".into(), "a".into()), ("c2".into(), "a".into())]
    );
}

fn lite_group() -> GroupConfig {
    GroupConfig {
        lite: Some(apogee_proto::group::LiteBinding {
            bind_topic: PARENT.into(),
            exclusive: false,
            subscription_quota: 0,
        }),
        ..GroupConfig::with_defaults(GROUP)
    }
}

fn pop(f: &Fixture, lite: &str, now_ms: i64) -> Vec<crate::consume::Delivery> {
    let group = lite_group();
    let filter = MessageFilter::from_expression(None).unwrap();
    let topic = q(lite);
    f.engine
        .pop(
            &PopRequest {
                group: &group,
                topic: &topic,
                queue_ids: &[0],
                filter: &filter,
                max: 16,
                invisible_ms: 10_000,
                renew_until_ms: None,
                attempt_id: None,
                client_id: "c1",
                start_after_ms: None,
            },
            now_ms,
        )
        .unwrap()
}

fn body(d: &crate::consume::Delivery) -> String {
    String::from_utf8_lossy(&d.message.msg.body).into_owned()
}

fn pop_bodies(f: &Fixture, lite: &str, now_ms: i64) -> Vec<String> {
    pop(f, lite, now_ms).iter().map(body).collect()
}

#[tokio::test]
async fn where_a_new_subscription_starts() {
    let f = fixture();
    f.send("early", "before").await;
    f.send("late", "before").await;
    // Default (LAST with no position): only what comes after the subscription.
    f.sync("c1", SyncAction::PartialAdd, &["late"]);
    f.send("late", "after").await;
    assert_eq!(pop_bodies(&f, "late", 1_000), vec!["after"]);
    // MIN: what was sent before anyone subscribed.
    f.sync_with(
        "c1",
        SyncAction::PartialAdd,
        &["early"],
        false,
        100,
        Some(StartOffset::Min),
    )
    .unwrap();
    assert_eq!(pop_bodies(&f, "early", 1_000), vec!["before"]);
    // A lite topic with no message yet: its first message is delivered.
    f.sync("c1", SyncAction::PartialAdd, &["new"]);
    f.send("new", "first").await;
    assert_eq!(pop_bodies(&f, "new", 1_000), vec!["first"]);
    // MAX moves a position it has to the end.
    f.send("new", "skipped").await;
    f.sync_with(
        "c1",
        SyncAction::PartialAdd,
        &["new"],
        false,
        100,
        Some(StartOffset::Max),
    )
    .unwrap();
    assert!(pop_bodies(&f, "new", 1_000_000).is_empty());
}

#[tokio::test]
async fn a_lite_queue_is_handed_out_one_message_at_a_time_in_order() {
    let f = fixture();
    for body in ["m1", "m2", "m3"] {
        f.send("a", body).await;
    }
    let first = pop(&f, "a", 0);
    assert_eq!(
        first.iter().map(body).collect::<Vec<_>>(),
        vec!["m1"],
        "one in flight"
    );
    assert_eq!(first[0].attempt, 1);
    assert!(pop(&f, "a", 1).is_empty(), "held until acked");
    assert_eq!(
        f.engine.lite_next_due(GROUP, &q("a"), 16),
        Some(10_000 + 1_000)
    );
    // Suspended: it comes back without an attempt counted.
    let handle = f
        .engine
        .change_invisible_with(GROUP, &q("a"), &first[0].receipt_handle, 5_000, 2, true)
        .unwrap();
    assert!(pop(&f, "a", 5_001).is_empty());
    let again = pop(&f, "a", 5_002);
    assert_eq!(again.iter().map(body).collect::<Vec<_>>(), vec!["m1"]);
    assert_eq!(
        again[0].attempt, 1,
        "a suspended delivery counts no attempt"
    );
    assert!(
        f.engine.ack(GROUP, &q("a"), &handle).is_err(),
        "stale handle"
    );
    // A plain nack counts one.
    let h = f
        .engine
        .change_invisible(GROUP, &q("a"), &again[0].receipt_handle, 0, 5_003)
        .unwrap();
    let third = pop(&f, "a", 5_003);
    assert_eq!(third[0].attempt, 2);
    assert!(f.engine.ack(GROUP, &q("a"), &h).is_err());
    f.engine
        .ack(GROUP, &q("a"), &third[0].receipt_handle)
        .unwrap();
    assert_eq!(
        pop_bodies(&f, "a", 5_004),
        vec!["m2"],
        "the next one after the ack"
    );
    assert_eq!(f.engine.lite_position(GROUP, &q("a")), Some((1, 1)));
}
