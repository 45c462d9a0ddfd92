//! Lite messages through the producer service (`lite.rs`): stored under their lite queue and
//! delivered back as LITE messages of the parent, the refusals with their statuses, and the
//! lite-topic quota (refused at the limit, nothing stored).

use super::*;
use crate::config::{LiteSection, ScheduleSection, TransactionSection};
use crate::quotas::LimitsSection;
use crate::store::{MemKv, StoreConfig};
use crate::topics::{MessageKind, TopicConfig};
use apogee_proto::names::lite_queue_topic;
use apogee_proto::v2::{Code, Encoding};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<MessageStore>,
    producer: Producer,
}

fn topic(name: &str, kind: MessageKind) -> TopicConfig {
    TopicConfig::new(name, 1).with_kinds(&[kind])
}

/// A producer over topics `agents` (LITE) and `orders` (NORMAL), at most `max_lite_topics`.
fn fixture(max_lite_topics: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        segment_size: 1 << 20,
        max_record_size: 64 * 1024,
        ..StoreConfig::for_tests(dir.path())
    };
    let store = MessageStore::open_with_kv(cfg, Arc::new(MemKv::new())).expect("store");
    let topics = Arc::new(TopicTable::load(store.kv()).expect("topics"));
    topics.create(topic("agents", MessageKind::Lite)).unwrap();
    topics.create(topic("orders", MessageKind::Normal)).unwrap();
    let sessions = apogee_server::telemetry::Sessions::with_cap(0);
    let txns = Transactions::new(
        store.clone(),
        topics.clone(),
        sessions.clone(),
        None,
        TransactionSection::default(),
        "broker-a".into(),
    );
    let schedule = Schedule::new(
        store.clone(),
        topics.clone(),
        ScheduleSection::default(),
        "broker-a".into(),
        Arc::new(apogee_proto::time::now_ms),
    );
    let config = BrokerConfig {
        broker_name: "broker-a".into(),
        lite: LiteSection {
            max_lite_topics,
            max_topic_len: 16,
            ..LiteSection::default()
        },
        ..BrokerConfig::default()
    };
    let producer = Producer::new(
        ProducerConfig::of(&config),
        ProducerParts {
            store: store.clone(),
            topics,
            txns,
            schedule,
            quotas: Arc::new(Quotas::new(&LimitsSection::default())),
            sessions,
            membership: Membership::fixed(Role::AsyncMaster, 0, store.clone()),
        },
    );
    Fixture {
        _dir: dir,
        store,
        producer,
    }
}

fn lite(id: &str, lite_topic: &str) -> Outgoing {
    Outgoing {
        topic: "agents".into(),
        has_system_properties: true,
        message_id: id.into(),
        message_type: MessageType::Lite as i32,
        lite_topic: Some(lite_topic.into()),
        body_encoding: Encoding::Identity as i32,
        body: bytes::Bytes::from(format!("body of {id}")),
        ..Outgoing::default()
    }
}

impl Fixture {
    async fn send(&self, messages: Vec<Outgoing>) -> Result<Sent, ApogeeError> {
        let sender = Sender::new("producer-1", "10.0.0.7");
        self.producer.send(messages, &sender).await
    }
}

fn refused(result: Result<Sent, ApogeeError>, code: Code) {
    match result {
        Ok(sent) => panic!("accepted, expected {}: {sent:?}", code.as_str_name()),
        Err(e) => assert_eq!(e.code(), code, "{e}"),
    }
}

#[tokio::test]
async fn a_lite_message_is_stored_in_its_lite_queue_and_delivered_as_lite_of_the_parent() {
    let f = fixture(10);
    let sent = f
        .send(vec![lite("A", "session-1"), lite("B", "session-1")])
        .await
        .unwrap();
    let offsets: Vec<u64> = sent.receipts.iter().map(|r| r.queue_offset).collect();
    assert_eq!(offsets, vec![0, 1]);
    // An UNSPECIFIED type that names a lite topic is LITE.
    let mut untyped = lite("C", "session-2");
    untyped.message_type = MessageType::Unspecified as i32;
    f.send(vec![untyped]).await.unwrap();

    let queue = lite_queue_topic("agents", "session-1");
    let stored = f.store.read_queue(&queue, 0, 0, 10, usize::MAX).unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].msg.message_type, MessageType::Lite as u8);
    assert!(f
        .store
        .read_queue("agents", 0, 0, 10, usize::MAX)
        .unwrap()
        .is_empty());
    assert_eq!(f.store.lite_queue_counts(), vec![("agents".into(), 2)]);

    let m = crate::grpc::convert::to_v2_message(&stored[1], "", "host:1");
    assert_eq!(m.topic.unwrap().name, "agents");
    let sp = m.system_properties.unwrap();
    assert_eq!(sp.lite_topic.as_deref(), Some("session-1"));
    assert_eq!(sp.message_type, MessageType::Lite as i32);
    assert_eq!(sp.message_id, "B");
    assert_eq!((sp.queue_id, sp.queue_offset), (0, Some(1)));
}

#[tokio::test]
async fn lite_sends_are_refused_with_their_statuses_and_store_nothing() {
    let f = fixture(10);
    // A name outside the rule, or over lite.max_topic_len (16 here).
    refused(
        f.send(vec![lite("A", "no spaces")]).await,
        Code::IllegalLiteTopic,
    );
    refused(
        f.send(vec![lite("A", &"x".repeat(17))]).await,
        Code::IllegalLiteTopic,
    );
    // A LITE message that names no lite topic.
    let mut unnamed = lite("A", "s");
    unnamed.lite_topic = None;
    refused(f.send(vec![unnamed]).await, Code::IllegalLiteTopic);
    // A LITE message to a topic that is not LITE; a NORMAL one to a LITE topic.
    let mut to_normal = lite("A", "s");
    to_normal.topic = "orders".into();
    refused(
        f.send(vec![to_normal]).await,
        Code::MessagePropertyConflictWithType,
    );
    let mut normal = lite("A", "s");
    normal.message_type = MessageType::Normal as i32;
    normal.lite_topic = None;
    refused(
        f.send(vec![normal]).await,
        Code::MessagePropertyConflictWithType,
    );
    // A NORMAL message naming a lite topic.
    let mut typed = lite("A", "s");
    typed.message_type = MessageType::Normal as i32;
    refused(
        f.send(vec![typed]).await,
        Code::MessagePropertyConflictWithType,
    );
    // Lite with a message group; lite with a delivery time.
    let mut grouped = lite("A", "s");
    grouped.message_group = Some("g".into());
    refused(
        f.send(vec![grouped]).await,
        Code::MessagePropertyConflictWithType,
    );
    let mut timed = lite("A", "s");
    timed.delivery_timestamp = Some(apogee_proto::time::timestamp(
        apogee_proto::time::now_ms() + 60_000,
    ));
    refused(
        f.send(vec![timed]).await,
        Code::MessagePropertyConflictWithType,
    );
    // One bad message refuses the whole batch.
    refused(
        f.send(vec![lite("A", "fine"), lite("B", "not%fine")]).await,
        Code::IllegalLiteTopic,
    );
    assert_eq!(f.store.log_end_offset(), f.store.log_start_offset());
    assert_eq!(f.store.lite_queue_count(), 0);
}

#[tokio::test]
async fn the_lite_topic_quota_refuses_new_lite_topics_at_the_limit_and_stores_nothing() {
    let f = fixture(3);
    f.send(vec![lite("A", "one"), lite("B", "two")])
        .await
        .unwrap();
    // A batch that would create two more is refused whole, before anything is stored.
    let end = f.store.log_end_offset();
    refused(
        f.send(vec![lite("C", "three"), lite("D", "four")]).await,
        Code::LiteTopicQuotaExceeded,
    );
    assert_eq!(f.store.log_end_offset(), end);
    assert_eq!(f.store.lite_queue_count(), 2);
    // One more fits; existing lite topics take messages at the limit; a fourth does not.
    f.send(vec![lite("C", "three")]).await.unwrap();
    f.send(vec![lite("E", "one"), lite("F", "three")])
        .await
        .unwrap();
    refused(
        f.send(vec![lite("G", "four")]).await,
        Code::LiteTopicQuotaExceeded,
    );
    assert!(!f.store.lite_queue_exists("agents", "four").unwrap());
    assert_eq!(f.store.lite_queue_count(), 3);
    // Concurrent sends of new lite topics never take the broker past the limit.
    let g = fixture(5);
    let sends = (0..20).map(|i| g.send(vec![lite(&format!("M{i}"), &format!("lite-{i}"))]));
    let results = futures::future::join_all(sends).await;
    assert!(results.iter().filter(|r| r.is_ok()).count() <= 5);
    assert!(g.store.lite_queue_count() <= 5);
}
