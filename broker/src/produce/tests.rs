//! Unit tests of the producer service over a store on the in-memory index (the commit log
//! in a temp dir): admission (the slave refusal, quotas, the topic's existence, permission,
//! accepted types, queues) and routing (a TRANSACTION message to the half topic, a DELAY
//! message to the schedule, a NORMAL one to its queue at once). Nothing refused is stored.

use super::*;
use crate::config::{ScheduleSection, TransactionSection};
use crate::quotas::LimitsSection;
use crate::store::{MemKv, StoreConfig};
use crate::topics::{MessageKind, TopicConfig, TopicPermission};
use crate::txn::{EndRequest, Resolution, ResolvedBy};
use apogee_proto::cluster::TransactionState;
use apogee_proto::time::timestamp;
use apogee_proto::v2::{Code, Encoding};
use std::sync::atomic::{AtomicI64, Ordering};

const CLIENT: &str = "producer-1";

struct Fixture {
    _dir: tempfile::TempDir,
    membership: Arc<Membership>,
    store: Arc<MessageStore>,
    topics: Arc<TopicTable>,
    txns: Arc<Transactions>,
    schedule: Arc<Schedule>,
    /// The schedule's clock (ms), moved by hand.
    now: Arc<AtomicI64>,
    producer: Producer,
}

fn topic(
    name: &str,
    queues: u32,
    permission: TopicPermission,
    kinds: &[MessageKind],
) -> TopicConfig {
    TopicConfig::new(name, queues)
        .with_permission(permission)
        .with_kinds(kinds)
}

/// A producer of broker `broker-a` (of `role`, with send quotas `limits`) over a store
/// holding topics `orders` (NORMAL, 2 queues), `payments` (TRANSACTION), `reminders`
/// (DELAY), `sequenced` (FIFO) and `archive` (read-only).
fn fixture_with(role: Role, limits: LimitsSection) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        segment_size: 1 << 20,
        max_record_size: 64 * 1024,
        ..StoreConfig::for_tests(dir.path())
    };
    let store = MessageStore::open_with_kv(cfg, Arc::new(MemKv::new())).expect("store");
    let topics = Arc::new(TopicTable::load(store.kv()).expect("topics"));
    for t in [
        topic(
            "orders",
            2,
            TopicPermission::ReadWrite,
            &[MessageKind::Normal],
        ),
        topic(
            "payments",
            1,
            TopicPermission::ReadWrite,
            &[MessageKind::Transaction],
        ),
        topic(
            "reminders",
            1,
            TopicPermission::ReadWrite,
            &[MessageKind::Delay],
        ),
        topic(
            "sequenced",
            1,
            TopicPermission::ReadWrite,
            &[MessageKind::Fifo],
        ),
        topic("archive", 1, TopicPermission::Read, &[MessageKind::Normal]),
    ] {
        topics.create(t).expect("topic created");
    }
    let sessions = apogee_server::telemetry::Sessions::with_cap(0);
    let txns = Transactions::new(
        store.clone(),
        topics.clone(),
        sessions.clone(),
        None,
        TransactionSection::default(),
        "broker-a".into(),
    );
    let now = Arc::new(AtomicI64::new(apogee_proto::time::now_ms()));
    let clock = now.clone();
    let schedule = Schedule::new(
        store.clone(),
        topics.clone(),
        ScheduleSection::default(),
        "broker-a".into(),
        Arc::new(move || clock.load(Ordering::SeqCst)),
    );
    let config = BrokerConfig {
        broker_name: "broker-a".into(),
        role,
        ..BrokerConfig::default()
    };
    let membership = Membership::fixed(role, 0, store.clone());
    let producer = Producer::new(
        ProducerConfig::of(&config),
        ProducerParts {
            store: store.clone(),
            topics: topics.clone(),
            txns: txns.clone(),
            schedule: schedule.clone(),
            quotas: Arc::new(Quotas::new(&limits)),
            sessions,
            membership: membership.clone(),
        },
    );
    Fixture {
        _dir: dir,
        membership,
        store,
        topics,
        txns,
        schedule,
        now,
        producer,
    }
}

fn fixture() -> Fixture {
    fixture_with(Role::AsyncMaster, LimitsSection::default())
}

/// A valid message of `topic` (queue 0) with id `id`, of `message_type`.
fn message(topic: &str, id: &str, message_type: MessageType) -> Outgoing {
    Outgoing {
        topic: topic.into(),
        has_system_properties: true,
        message_id: id.into(),
        message_type: message_type as i32,
        body_encoding: Encoding::Identity as i32,
        body: Bytes::from(format!("body of {id}")),
        ..Outgoing::default()
    }
}

fn normal(id: &str) -> Outgoing {
    message("orders", id, MessageType::Normal)
}

impl Fixture {
    async fn send(&self, messages: Vec<Outgoing>) -> Result<Sent, ApogeeError> {
        let sender = Sender::new(CLIENT, "10.0.0.7");
        self.producer.send(messages, &sender).await
    }

    /// The ids of the messages readable in a queue.
    fn readable(&self, topic: &str, queue: u32) -> Vec<String> {
        self.store
            .read_queue(topic, queue, 0, 100, usize::MAX)
            .expect("read")
            .into_iter()
            .map(|m| m.msg.message_id)
            .collect()
    }

    /// Whether the commit log holds nothing.
    fn log_is_empty(&self) -> bool {
        self.store.log_end_offset() == self.store.log_start_offset()
    }
}

/// `result` is a refusal with `code` whose reason says `says`.
fn assert_refused(result: Result<Sent, ApogeeError>, code: Code, says: &str) {
    match result {
        Ok(sent) => panic!("accepted, expected {}: {sent:?}", code.as_str_name()),
        Err(e) => {
            assert_eq!(e.code(), code, "{e}");
            assert!(e.to_string().contains(says), "{e:?} does not say {says:?}");
        }
    }
}

#[tokio::test]
async fn a_normal_message_is_readable_in_its_queue_at_once() {
    let f = fixture();
    let mut second = normal("B");
    second.queue_id = 1;
    let sent = f
        .send(vec![normal("A"), second, normal("C")])
        .await
        .unwrap();
    assert_eq!(
        sent.receipts,
        vec![
            Receipt {
                queue_offset: 0,
                recall_handle: None
            },
            Receipt {
                queue_offset: 0,
                recall_handle: None
            },
            Receipt {
                queue_offset: 1,
                recall_handle: None
            },
        ]
    );
    assert_eq!(sent.transaction_id, None);
    assert!(sent.not_replicated.is_none());
    assert_eq!(f.readable("orders", 0), ["A", "C"]);
    assert_eq!(f.readable("orders", 1), ["B"]);
    let stored = &f.store.read_queue("orders", 1, 0, 1, usize::MAX).unwrap()[0];
    assert_eq!(
        stored.msg.born_host, "10.0.0.7",
        "the peer is the born host"
    );
    assert_eq!(stored.msg.message_type, MessageType::Normal as u8);
}

#[tokio::test]
async fn a_transactional_message_waits_in_the_half_topic_until_committed() {
    let f = fixture();
    let sent = f
        .send(vec![message("payments", "T1", MessageType::Transaction)])
        .await
        .unwrap();
    let id = sent.transaction_id.expect("a transaction id");
    assert!(
        f.readable("payments", 0).is_empty(),
        "a half message is not in its topic's queue"
    );
    let pending = f.txns.list(true, "payments", 0).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].transaction_id, id);
    assert_eq!(pending[0].producer, CLIENT);
    assert_eq!(pending[0].state, TransactionState::Pending as i32);

    f.txns
        .end(EndRequest {
            transaction_id: &id,
            topic: "payments",
            message_id: "T1",
            resolution: Resolution::Commit,
            by: ResolvedBy::Producer,
        })
        .await
        .unwrap();
    assert_eq!(f.readable("payments", 0), ["T1"], "published on commit");
}

#[tokio::test]
async fn a_delayed_message_waits_in_the_schedule_until_its_time() {
    let f = fixture();
    let due = f.now.load(Ordering::SeqCst) + 60_000;
    let mut m = message("reminders", "D1", MessageType::Delay);
    m.delivery_timestamp = Some(timestamp(due));
    let sent = f.send(vec![m]).await.unwrap();
    let handle = sent.receipts[0]
        .recall_handle
        .clone()
        .expect("a recall handle");
    assert!(!handle.is_empty());
    assert_eq!(f.schedule.stats().waiting, 1);

    f.schedule.deliver_due().await.unwrap();
    assert!(
        f.readable("reminders", 0).is_empty(),
        "not delivered before its time"
    );
    f.now.store(due, Ordering::SeqCst);
    f.schedule.deliver_due().await.unwrap();
    assert_eq!(f.readable("reminders", 0), ["D1"], "delivered at its time");
}

#[tokio::test]
async fn a_delivery_time_beyond_the_schedule_limit_is_refused() {
    let f = fixture();
    let max_delay = ScheduleSection::default().max_delay_ms as i64;
    let mut m = message("reminders", "D1", MessageType::Delay);
    m.delivery_timestamp = Some(timestamp(f.now.load(Ordering::SeqCst) + max_delay + 60_000));
    assert_refused(
        f.send(vec![m]).await,
        Code::IllegalDeliveryTime,
        "schedule.max_delay_ms",
    );
    assert!(f.log_is_empty());
}

#[tokio::test]
async fn a_send_over_the_client_quota_is_refused_and_not_stored() {
    let f = fixture_with(
        Role::AsyncMaster,
        LimitsSection {
            send_rate_per_client: 2,
            ..LimitsSection::default()
        },
    );
    f.send(vec![normal("A"), normal("B")]).await.unwrap();
    assert_refused(
        f.send(vec![normal("C")]).await,
        Code::TooManyRequests,
        "client producer-1 sends more than 2 messages a second",
    );
    assert_eq!(f.readable("orders", 0), ["A", "B"]);
}

#[tokio::test]
async fn a_slave_takes_no_sends_and_says_so_with_a_retriable_code() {
    let f = fixture_with(Role::Slave, LimitsSection::default());
    assert_refused(
        f.send(vec![normal("A")]).await,
        Code::HaNotAvailable,
        "broker broker-a id 0 is a slave and its master is not reachable",
    );
}

#[tokio::test(start_paused = true)]
async fn a_send_during_a_promotion_waits_for_the_store_to_take_it() {
    let f = fixture();
    // Named master, its store not yet taking appends (the promotion under way).
    f.store.set_replica(true);
    let store = f.store.clone();
    let promotion = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        store.set_replica(false);
    });
    let sent = f.send(vec![normal("A")]).await.unwrap();
    assert_eq!(sent.receipts.len(), 1);
    assert_eq!(f.readable("orders", 0), ["A"]);
    promotion.await.unwrap();
    // A promotion that does not finish: refused as unavailable, nothing stored.
    f.store.set_replica(true);
    let refused = f.send(vec![normal("B")]).await.unwrap_err();
    assert!(matches!(refused, ApogeeError::Unavailable(_)), "{refused}");
    assert!(
        refused.to_string().contains("becoming the master"),
        "{refused}"
    );
    assert_eq!(f.readable("orders", 0), ["A"]);
}

#[tokio::test]
async fn a_send_admitted_by_its_transport_is_stored_while_a_handover_holds_new_ones() {
    use futures::FutureExt as _;
    let f = fixture();
    // Admitted where gRPC decided to answer it here, then a handover begins.
    let admitted = f.membership.try_admit_send().expect("no handover yet");
    f.membership.set_handing_over(true);
    assert!(f.membership.try_admit_send().is_none());
    let sender = Sender {
        admitted: Some(&admitted),
        ..Sender::new(CLIENT, "10.0.0.7")
    };
    let sent = f.producer.send(vec![normal("A")], &sender).await.unwrap();
    assert_eq!(sent.receipts.len(), 1);
    // One the transport did not admit waits for the handover.
    let mut held = Box::pin(f.send(vec![normal("B")]));
    assert!((&mut held).now_or_never().is_none(), "held by the handover");
    assert_eq!(f.membership.sends_in_flight(), 1, "only the admitted send");
    drop(admitted);
    f.membership.set_handing_over(false);
    held.await.unwrap();
    assert_eq!(f.readable("orders", 0), ["A", "B"]);
    assert_eq!(f.membership.sends_in_flight(), 0);
}

#[tokio::test]
async fn an_unknown_topic_is_refused_unless_topics_are_auto_created() {
    let f = fixture();
    assert_refused(
        f.send(vec![message("invoices", "A", MessageType::Normal)])
            .await,
        Code::TopicNotFound,
        "invoices",
    );
    assert!(f.topics.get("invoices").is_none(), "nothing created");
    assert!(f.log_is_empty());

    f.topics.set_auto_create(true);
    f.send(vec![message("invoices", "A", MessageType::Normal)])
        .await
        .unwrap();
    let created = f.topics.get("invoices").expect("created by the send");
    assert_eq!(created.queues, BrokerConfig::default().default_queue_count);
    assert_eq!(f.readable("invoices", 0), ["A"]);
}

#[tokio::test]
async fn a_topic_without_write_permission_is_refused() {
    let f = fixture();
    assert_refused(
        f.send(vec![message("archive", "A", MessageType::Normal)])
            .await,
        Code::Forbidden,
        "topic archive is not writable on this broker",
    );
    assert!(f.log_is_empty());
}

#[tokio::test]
async fn a_message_type_the_topic_does_not_accept_is_refused() {
    let f = fixture();
    let cases = [
        (
            "orders",
            MessageType::Transaction,
            "does not accept TRANSACTION",
        ),
        ("orders", MessageType::Fifo, "does not accept FIFO"),
        ("payments", MessageType::Normal, "does not accept NORMAL"),
        // No type is NORMAL.
        (
            "reminders",
            MessageType::Unspecified,
            "does not accept NORMAL",
        ),
    ];
    for (topic, message_type, says) in cases {
        let mut m = message(topic, "A", message_type);
        m.message_group = Some("g".into());
        assert_refused(
            f.send(vec![m]).await,
            Code::MessagePropertyConflictWithType,
            says,
        );
    }
    let mut delay = message("orders", "A", MessageType::Delay);
    delay.delivery_timestamp = Some(timestamp(f.now.load(Ordering::SeqCst) + 60_000));
    assert_refused(
        f.send(vec![delay]).await,
        Code::MessagePropertyConflictWithType,
        "topic orders does not accept DELAY",
    );
    assert!(f.log_is_empty());
}

#[tokio::test]
async fn a_fifo_message_needs_a_group_and_a_queue_must_exist() {
    let f = fixture();
    assert_refused(
        f.send(vec![message("sequenced", "A", MessageType::Fifo)])
            .await,
        Code::IllegalMessageGroup,
        "FIFO messages need a message group",
    );
    let mut m = normal("A");
    m.queue_id = 2;
    assert_refused(
        f.send(vec![m]).await,
        Code::BadRequest,
        "queue 2 does not exist; topic orders has 2 queues",
    );
    let mut grouped = message("sequenced", "B", MessageType::Fifo);
    grouped.message_group = Some("order-1".into());
    f.send(vec![grouped]).await.unwrap();
    assert_eq!(f.readable("sequenced", 0), ["B"]);
}

#[tokio::test]
async fn one_bad_message_refuses_the_whole_request() {
    let f = fixture();
    let mut bad = normal("B");
    bad.tag = Some("a|b".into());
    assert_refused(
        f.send(vec![normal("A"), bad, normal("C")]).await,
        Code::IllegalMessageTag,
        "'|'",
    );
    let txn = message("payments", "T", MessageType::Transaction);
    assert_refused(
        f.send(vec![txn.clone(), txn]).await,
        Code::BadRequest,
        "a transactional message must be sent alone",
    );
    assert!(f.log_is_empty(), "nothing of a refused request is stored");
}

#[tokio::test]
async fn a_priority_message_goes_to_its_priority_queue_and_bad_ones_are_refused() {
    let f = fixture();
    f.topics
        .create(topic(
            "urgent",
            4,
            TopicPermission::ReadWrite,
            &[MessageKind::Priority],
        ))
        .expect("topic created");
    let prio = |id: &str, p: Option<i32>| Outgoing {
        priority: p,
        queue_id: 0,
        ..message("urgent", id, MessageType::Priority)
    };
    // Priority p to queue min(p, 3), whatever queue the message names.
    let mut named = prio("P9", Some(9));
    named.queue_id = 1;
    f.send(vec![prio("P0", Some(0)), prio("P2", Some(2)), named])
        .await
        .unwrap();
    assert_eq!(f.readable("urgent", 0), vec!["P0"]);
    assert_eq!(f.readable("urgent", 2), vec!["P2"]);
    assert_eq!(f.readable("urgent", 3), vec!["P9"]);
    assert!(f.readable("urgent", 1).is_empty());
    let stored = f.store.read_queue("urgent", 3, 0, 1, usize::MAX).unwrap();
    assert_eq!(stored[0].msg.priority(), Some(9));

    let end = f.store.log_end_offset();
    assert_refused(
        f.send(vec![prio("N", Some(-1))]).await,
        Code::IllegalMessagePropertyKey,
        "negative",
    );
    assert_refused(
        f.send(vec![prio("U", None)]).await,
        Code::MessagePropertyConflictWithType,
        "needs system_properties.priority",
    );
    let mut on_normal = normal("O");
    on_normal.priority = Some(1);
    assert_refused(
        f.send(vec![on_normal]).await,
        Code::MessagePropertyConflictWithType,
        "only PRIORITY messages",
    );
    assert_refused(
        f.send(vec![Outgoing {
            priority: Some(1),
            ..message("orders", "T", MessageType::Priority)
        }])
        .await,
        Code::MessagePropertyConflictWithType,
        "does not accept PRIORITY",
    );
    assert_eq!(f.store.log_end_offset(), end, "nothing refused is stored");
}
