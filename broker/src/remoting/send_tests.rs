//! SEND_MESSAGE, SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE over a broker built on the in-memory
//! index; [`TestRemote`] is shared with the transaction and query tests.

use super::*;
use crate::config::BrokerConfig;
use crate::remoting::convert::to_message_ext;
use crate::services::Foundation;
use crate::store::record::internal;
use crate::topics::{MessageKind, TopicConfig};
use apogee_proto::remoting::message::{
    deflate, encode_batch_entry, parse_offset_message_id, properties_to_string, BatchEntry,
};
use bytes::BytesMut;
use std::sync::Arc;
use tokio::sync::mpsc;

pub(crate) const TOPIC: &str = "orders";

/// A broker `broker-a` holding [`TOPIC`] (2 queues; NORMAL, DELAY and TRANSACTION messages)
/// and a producer's connection to it.
pub(crate) struct TestRemote {
    _dir: tempfile::TempDir,
    pub broker: Arc<Broker>,
    pub conn: Arc<RemotingConnection>,
    /// What the broker pushes to the client of `conn`.
    pub pushed: mpsc::Receiver<RemotingCommand>,
}

pub(crate) fn test_remote() -> TestRemote {
    test_remote_with(|_| {})
}

/// [`test_remote`] with its config adjusted by `adjust`.
pub(crate) fn test_remote_with(adjust: impl FnOnce(&mut BrokerConfig)) -> TestRemote {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig {
        broker_name: "broker-a".into(),
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    };
    config.store.segment_bytes = 1 << 20;
    config.store.preallocate_bytes = 0;
    config.max_body_bytes = 64 * 1024;
    adjust(&mut config);
    let base = Foundation::in_memory(&config).expect("store");
    let broker = Broker::build(config, base).expect("services");
    broker
        .topics()
        .create(TopicConfig::new(TOPIC, 2).with_kinds(&[
            MessageKind::Normal,
            MessageKind::Delay,
            MessageKind::Transaction,
        ]))
        .expect("topic created");
    let (tx, pushed) = mpsc::channel(16);
    let conn = Arc::new(RemotingConnection::new(
        1,
        "10.0.0.7:50000".parse().unwrap(),
        "10.0.0.1:10911".parse().unwrap(),
        tx,
    ));
    TestRemote {
        _dir: dir,
        broker,
        conn,
        pushed,
    }
}

/// A SEND_MESSAGE_V2 of one message to queue `queue` of [`TOPIC`].
pub(crate) fn send_v2(properties: &[(&str, &str)], queue: i32, body: &str) -> RemotingCommand {
    let properties: Properties = properties
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    RemotingCommand::request(req::SEND_MESSAGE_V2)
        .with_ext("a", "producers")
        .with_ext("b", TOPIC)
        .with_ext("c", "TBW102")
        .with_ext("d", 4)
        .with_ext("e", queue)
        .with_ext("f", 0)
        .with_ext("g", 1_700_000_000_000i64)
        .with_ext("h", 0)
        .with_ext("i", properties_to_string(&properties))
        .with_ext("j", 0)
        .with_ext("k", false)
        .with_body(body.as_bytes().to_vec())
}

impl TestRemote {
    pub(crate) async fn call(&self, request: RemotingCommand) -> RemotingCommand {
        send_message(&self.broker, &self.conn, &Caller::default(), request).await
    }
}

#[tokio::test]
async fn a_v2_send_is_stored_with_its_properties_and_answered_with_its_offset_id() {
    let t = test_remote();
    let answer = t
        .call(send_v2(
            &[
                ("UNIQ_KEY", "0A0000070000AAAA0000000000000001"),
                ("TAGS", "TagA"),
                ("KEYS", "order-1 order-2"),
                ("WAIT", "true"),
                ("color", "blue"),
            ],
            1,
            "hello",
        ))
        .await;
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    assert!(answer.is_response());
    assert_eq!(answer.ext("queueId"), Some("1"));
    assert_eq!(answer.ext("queueOffset"), Some("0"));
    assert_eq!(answer.ext("MSG_REGION"), Some(REGION));
    assert_eq!(answer.ext("TRACE_ON"), Some("true"));
    // As RocketMQ's broker: a single message's transaction id is its message id.
    assert_eq!(
        answer.ext("transactionId"),
        Some("0A0000070000AAAA0000000000000001")
    );
    let (host, offset) = parse_offset_message_id(answer.ext("msgId").unwrap()).unwrap();
    assert_eq!(host, t.conn.local());

    let stored = t
        .broker
        .message_at(offset as u64)
        .unwrap()
        .expect("the offset id names the stored message");
    assert_eq!(stored.msg.message_id, "0A0000070000AAAA0000000000000001");
    assert_eq!(stored.msg.topic, TOPIC);
    assert_eq!(stored.msg.queue_id, 1);
    assert_eq!(stored.msg.tag.as_deref(), Some("TagA"));
    assert_eq!(stored.msg.keys, vec!["order-1", "order-2"]);
    // WAIT is the producer's instruction, not a property; "color" is the user's.
    assert_eq!(stored.msg.properties, vec![("color".into(), "blue".into())]);
    assert_eq!(stored.msg.born_host, "10.0.0.7:50000");
    assert_eq!(stored.msg.born_timestamp_ms, 1_700_000_000_000);
    assert_eq!(&stored.msg.body[..], b"hello");

    // Read back by a remoting consumer: the same id, tag, keys and properties.
    let ext = to_message_ext(&stored, t.conn.local());
    assert_eq!(
        ext.properties["UNIQ_KEY"],
        "0A0000070000AAAA0000000000000001"
    );
    assert_eq!(ext.properties["TAGS"], "TagA");
    assert_eq!(ext.properties["KEYS"], "order-1 order-2");
    assert_eq!(ext.properties["color"], "blue");
    assert!(!ext.properties.contains_key("WAIT"));
}

#[tokio::test]
async fn a_send_without_uniq_key_gets_an_id_and_a_zlib_body_is_stored_inflated() {
    let t = test_remote();
    let body = "z".repeat(10_000);
    let request = RemotingCommand::request(req::SEND_MESSAGE)
        .with_ext("producerGroup", "producers")
        .with_ext("topic", TOPIC)
        .with_ext("queueId", 0)
        .with_ext("sysFlag", sys_flag::COMPRESSED)
        .with_ext("bornTimestamp", 1)
        .with_ext("flag", 0)
        .with_body(deflate(body.as_bytes()));
    let answer = t.call(request).await;
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    let (_, offset) = parse_offset_message_id(answer.ext("msgId").unwrap()).unwrap();
    let stored = t.broker.message_at(offset as u64).unwrap().unwrap();
    assert!(message_id::is_acceptable_message_id(&stored.msg.message_id));
    assert_eq!(stored.msg.body.len(), 10_000);
    assert_eq!(&stored.msg.body[..], body.as_bytes());

    // A body inflating beyond the broker's limit is refused as too large, a body that is
    // not zlib as a bad request.
    let big = RemotingCommand::request(req::SEND_MESSAGE)
        .with_ext("producerGroup", "producers")
        .with_ext("topic", TOPIC)
        .with_ext("queueId", 0)
        .with_ext("sysFlag", sys_flag::COMPRESSED)
        .with_body(deflate(&vec![0u8; 64 * 1024 + 1]));
    assert_eq!(t.call(big).await.code, response::MESSAGE_ILLEGAL);
    let garbage = RemotingCommand::request(req::SEND_MESSAGE)
        .with_ext("producerGroup", "producers")
        .with_ext("topic", TOPIC)
        .with_ext("queueId", 0)
        .with_ext("sysFlag", sys_flag::COMPRESSED)
        .with_body(b"not zlib".to_vec());
    assert_eq!(t.call(garbage).await.code, response::INVALID_PARAMETER);
}

#[tokio::test]
async fn a_batch_is_stored_in_one_send_and_answered_with_every_offset_id() {
    let t = test_remote();
    let mut body = BytesMut::new();
    for (i, tag) in ["A", "B"].iter().enumerate() {
        let entry = BatchEntry {
            flag: i as i32 * 5,
            body: format!("m{i}").into_bytes().into(),
            properties: [
                ("UNIQ_KEY".to_string(), format!("BATCH{i}")),
                ("TAGS".to_string(), tag.to_string()),
            ]
            .into(),
        };
        encode_batch_entry(&entry, &mut body).unwrap();
    }
    let request = RemotingCommand::request(req::SEND_BATCH_MESSAGE)
        .with_ext("producerGroup", "producers")
        .with_ext("topic", TOPIC)
        .with_ext("queueId", 0)
        .with_ext("batch", true)
        .with_body(body.freeze());
    let answer = t.call(request).await;
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    assert_eq!(answer.ext("queueOffset"), Some("0"));
    // A batch's answer names no transaction id (RocketMQ's batch has no UNIQ_KEY of its own).
    assert_eq!(answer.ext("transactionId"), None);
    let ids: Vec<&str> = answer.ext("msgId").unwrap().split(',').collect();
    assert_eq!(ids.len(), 2);
    for (i, id) in ids.iter().enumerate() {
        let (_, offset) = parse_offset_message_id(id).unwrap();
        let stored = t.broker.message_at(offset as u64).unwrap().unwrap();
        assert_eq!(stored.msg.message_id, format!("BATCH{i}"));
        assert_eq!(stored.queue_offset, i as u64);
        // Each entry's own flag, as a remoting consumer reads it.
        assert_eq!(to_message_ext(&stored, t.conn.local()).flag, i as i32 * 5);
    }
    // RocketMQ's clients send a batch with the V2 header (fields a..n).
    let mut entry_body = BytesMut::new();
    let entry = BatchEntry {
        flag: 0,
        body: b"m2".to_vec().into(),
        properties: [("UNIQ_KEY".to_string(), "BATCH2".to_string())].into(),
    };
    encode_batch_entry(&entry, &mut entry_body).unwrap();
    let mut v2 = send_v2(&[], 0, "").with_body(entry_body.freeze());
    v2.code = req::SEND_BATCH_MESSAGE;
    let answer = t.call(v2.with_ext("m", true)).await;
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    assert_eq!(answer.ext("queueOffset"), Some("2"));
    // A batch body that is cut short stores nothing.
    let cut = RemotingCommand::request(req::SEND_BATCH_MESSAGE)
        .with_ext("producerGroup", "producers")
        .with_ext("topic", TOPIC)
        .with_ext("queueId", 0)
        .with_body(vec![0, 0, 0, 40, 1]);
    assert_eq!(t.call(cut).await.code, response::INVALID_PARAMETER);
    assert_eq!(t.broker.store().queue_bounds(TOPIC, 0).unwrap(), (0, 3));
}

#[tokio::test]
async fn a_delay_level_makes_a_delay_message_and_refusals_carry_their_codes() {
    let t = test_remote();
    let answer = t.call(send_v2(&[("DELAY", "3")], 0, "later")).await;
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    assert!(
        answer.ext("recallHandle").is_some(),
        "a DELAY message waits"
    );
    assert_eq!(t.broker.store().queue_bounds(TOPIC, 0).unwrap(), (0, 0));

    let unknown = send_v2(&[], 0, "x").with_ext("b", "no-such-topic");
    assert_eq!(t.call(unknown).await.code, response::TOPIC_NOT_EXIST);
    let no_queue = send_v2(&[], 5, "x");
    assert_eq!(t.call(no_queue).await.code, response::INVALID_PARAMETER);
    let mut no_topic = send_v2(&[], 0, "x");
    no_topic.ext_fields.remove("b");
    let answer = t.call(no_topic).await;
    assert_eq!(answer.code, response::INVALID_PARAMETER);
    assert!(answer.remark.unwrap().contains('b'));
    let empty = send_v2(&[], 0, "");
    assert_eq!(t.call(empty).await.code, response::MESSAGE_ILLEGAL);
}

#[test]
fn delivery_times_are_read_from_every_rocketmq_property() {
    let p = |k: &str, v: &str| -> Properties { [(k.to_string(), v.to_string())].into() };
    let now = 1_000_000;
    assert_eq!(delivery_time_ms(&Properties::new(), now), Ok(None));
    assert_eq!(
        delivery_time_ms(&p("DELAY", "1"), now),
        Ok(Some(now + 1_000))
    );
    assert_eq!(
        delivery_time_ms(&p("DELAY", "18"), now),
        Ok(Some(now + 7_200_000))
    );
    // Above the last level: the last; 0: none.
    assert_eq!(
        delivery_time_ms(&p("DELAY", "40"), now),
        Ok(Some(now + 7_200_000))
    );
    assert_eq!(delivery_time_ms(&p("DELAY", "0"), now), Ok(None));
    assert_eq!(
        delivery_time_ms(&p("__STARTDELIVERTIME", "5000000"), now),
        Ok(Some(5_000_000))
    );
    assert_eq!(
        delivery_time_ms(&p("TIMER_DELIVER_MS", "6000000"), now),
        Ok(Some(6_000_000))
    );
    assert_eq!(
        delivery_time_ms(&p("TIMER_DELAY_SEC", "10"), now),
        Ok(Some(now + 10_000))
    );
    assert_eq!(
        delivery_time_ms(&p("TIMER_DELAY_MS", "250"), now),
        Ok(Some(now + 250))
    );
    assert!(delivery_time_ms(&p("TIMER_DELAY_MS", "soon"), now).is_err());
}

#[test]
fn both_header_spellings_read_the_same() {
    let v2 = send_v2(&[("TAGS", "T")], 1, "b");
    let long = RemotingCommand::request(req::SEND_MESSAGE)
        .with_ext("producerGroup", "producers")
        .with_ext("topic", TOPIC)
        .with_ext("defaultTopic", "TBW102")
        .with_ext("defaultTopicQueueNums", 4)
        .with_ext("queueId", 1)
        .with_ext("sysFlag", 0)
        .with_ext("bornTimestamp", 1_700_000_000_000i64)
        .with_ext("flag", 0)
        .with_ext("properties", "TAGS\u{1}T\u{2}")
        .with_ext("reconsumeTimes", 0)
        .with_ext("unitMode", false);
    let header = SendHeader::read(&v2).unwrap();
    assert_eq!(header, SendHeader::read(&long).unwrap());
    assert_eq!(header.topic, TOPIC);
    assert_eq!(header.queue_id, 1);
    assert_eq!(header.properties["TAGS"], "T");
    assert!(!header.batch);
}

#[tokio::test]
async fn a_producers_flag_is_kept_and_read_back_by_remoting_consumers() {
    let t = test_remote();
    let flagged = |flag: i32, properties: &[(&str, &str)]| {
        send_v2(properties, 0, "flagged").with_ext("h", flag)
    };
    let answer = t.call(flagged(-42, &[("UNIQ_KEY", "FLAGGED")])).await;
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    let (_, offset) = parse_offset_message_id(answer.ext("msgId").unwrap()).unwrap();
    let stored = t.broker.message_at(offset as u64).unwrap().unwrap();
    assert_eq!(stored.msg.flag(), -42);
    assert_eq!(to_message_ext(&stored, t.conn.local()).flag, -42);
    // Not a property either protocol's consumer sees.
    assert!(
        stored.msg.properties.is_empty(),
        "{:?}",
        stored.msg.properties
    );
    // A flag of 0 stores nothing; a transaction's half message keeps its flag.
    let answer = t.call(send_v2(&[("UNIQ_KEY", "PLAIN")], 0, "plain")).await;
    let (_, offset) = parse_offset_message_id(answer.ext("msgId").unwrap()).unwrap();
    let plain = t.broker.message_at(offset as u64).unwrap().unwrap();
    assert!(plain.msg.internal.is_empty(), "{:?}", plain.msg.internal);
    assert_eq!(to_message_ext(&plain, t.conn.local()).flag, 0);
    let answer = t
        .call(flagged(9, &[("UNIQ_KEY", "HALF"), ("TRAN_MSG", "true")]))
        .await;
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    let (_, offset) = parse_offset_message_id(answer.ext("msgId").unwrap()).unwrap();
    let half = t.broker.message_at(offset as u64).unwrap().unwrap();
    assert_eq!(half.msg.flag(), 9);
    // A transaction's answer names its own transaction id (what END_TRANSACTION names).
    assert_eq!(
        answer.ext("transactionId"),
        half.msg.internal(internal::TXN_ID)
    );
}
