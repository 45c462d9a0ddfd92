//! CONSUMER_SEND_MSG_BACK, and a send to a group's retry topic, over a broker built on the
//! in-memory index: the retry copy waits in the schedule for its level's delay, the
//! dead-letter copy is stored at once.

use super::*;
use crate::actions::retry::{
    next_step, origin_topic, retry_copy, Next, DEFAULT_MAX_RECONSUME_TIMES,
};
use crate::remoting::send::send_message;
use crate::remoting::send::tests::{send_v2, test_remote, TestRemote, TOPIC};
use crate::store::record::internal as prop;
use crate::store::{NewMessage, StoredMessage};
use apogee_proto::auth::acl::AclSet;
use apogee_proto::auth::{Identity, Role};
use apogee_proto::cluster::{AclEntry, AclResourceKind};
use apogee_proto::names;
use apogee_proto::remoting::codes::request::{CONSUMER_SEND_MSG_BACK, SEND_BATCH_MESSAGE};
use apogee_proto::remoting::codes::response;
use apogee_proto::remoting::message::parse_offset_message_id;
use apogee_proto::remoting::message::property;
use apogee_server::remoting::Caller;
use std::sync::Arc;

const ID: &str = "0A0000070000AAAA0000000000000009";

/// Sends one message; returns its commit-log offset.
async fn sent(t: &TestRemote) -> u64 {
    let answer = t
        .call(send_v2(&[("UNIQ_KEY", ID), ("TAGS", "TagA")], 0, "work"))
        .await;
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    parse_offset_message_id(answer.ext("msgId").unwrap())
        .unwrap()
        .1 as u64
}

fn back_request(offset: u64, level: i32, max: i32) -> RemotingCommand {
    RemotingCommand::request(CONSUMER_SEND_MSG_BACK)
        .with_ext("offset", offset)
        .with_ext("group", "readers")
        .with_ext("delayLevel", level)
        .with_ext("originMsgId", "ORIGIN")
        .with_ext("originTopic", TOPIC)
        .with_ext("maxReconsumeTimes", max)
}

/// `w` waits in the schedule for `%RETRY%readers`, due at delay level 3 (10 s) from now.
fn assert_waits_for_the_retry_topic_at_level_3(w: &crate::store::NewMessage) {
    assert_eq!(w.internal(prop::SCHED_TOPIC), Some("%RETRY%readers"));
    let due: i64 = w.internal(prop::SCHED_DUE).unwrap().parse().unwrap();
    let delay = due - apogee_proto::time::now_ms();
    assert!(
        (5_000..=10_000).contains(&delay),
        "level 3 is 10 s: {delay} ms"
    );
}

/// Every record stored with the test message's id, by topic.
fn copies(t: &TestRemote) -> Vec<StoredMessage> {
    t.broker.store().lookup_all_by_id(ID, 16).unwrap()
}

#[test]
fn the_next_step_follows_rocketmq() {
    assert_eq!(next_step(0, 0, 16), Next::Retry { level: 3 });
    assert_eq!(next_step(4, 0, 16), Next::Retry { level: 7 });
    assert_eq!(next_step(15, 0, 16), Next::Retry { level: 18 });
    assert_eq!(next_step(2, 5, 16), Next::Retry { level: 5 });
    assert_eq!(next_step(0, 40, 16), Next::Retry { level: 18 });
    assert_eq!(next_step(16, 0, 16), Next::DeadLetter);
    assert_eq!(next_step(0, -1, 16), Next::DeadLetter);
    assert_eq!(next_step(0, 1, 0), Next::DeadLetter);
}

#[test]
fn arguments_are_read_with_their_defaults() {
    let back = SendBack::read(
        &RemotingCommand::request(CONSUMER_SEND_MSG_BACK)
            .with_ext("offset", 42)
            .with_ext("group", "g"),
    )
    .unwrap();
    assert_eq!(
        back,
        SendBack {
            log_offset: 42,
            group: "g".into(),
            delay_level: 0,
            origin_message_id: None,
            max_reconsume_times: None,
        }
    );
    let negative = RemotingCommand::request(CONSUMER_SEND_MSG_BACK)
        .with_ext("offset", -1)
        .with_ext("group", "g");
    assert!(SendBack::read(&negative).unwrap_err().0.contains("offset"));
    let no_group = RemotingCommand::request(CONSUMER_SEND_MSG_BACK).with_ext("offset", 1);
    assert!(SendBack::read(&no_group).unwrap_err().0.contains("group"));
}

#[tokio::test]
async fn reconsume_times_are_the_requests_else_the_groups_else_sixteen() {
    let t = test_remote();
    t.broker
        .groups()
        .create(apogee_proto::group::GroupConfig {
            max_delivery_attempts: 4,
            ..apogee_proto::group::GroupConfig::with_defaults("strict")
        })
        .unwrap();
    assert_eq!(t.broker.reconsume_limit("strict", Some(9)), 9);
    assert_eq!(t.broker.reconsume_limit("strict", None), 3);
    assert_eq!(
        t.broker.reconsume_limit("unknown", None),
        DEFAULT_MAX_RECONSUME_TIMES
    );
}

#[tokio::test]
async fn a_failed_message_waits_in_the_schedule_for_the_retry_topic() {
    let t = test_remote();
    let offset = sent(&t).await;
    let answer =
        consumer_send_back(&t.broker, &Caller::default(), &back_request(offset, 0, 16)).await;
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);

    // The retry topic exists with one queue; the copy waits in the schedule for level 3.
    let retry = t
        .broker
        .topics()
        .get("%RETRY%readers")
        .expect("retry topic");
    assert_eq!(retry.queues, 1);
    let waiting: Vec<_> = copies(&t)
        .into_iter()
        .filter(|m| m.msg.topic == names::SCHEDULE_TOPIC)
        .collect();
    assert_eq!(waiting.len(), 1);
    let w = &waiting[0].msg;
    assert_waits_for_the_retry_topic_at_level_3(w);
    assert_eq!(w.reconsume_times, 1);
    assert_eq!(&w.body[..], b"work");
    assert_eq!(w.tag.as_deref(), Some("TagA"));
    let property = |name: &str| {
        w.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(property(property::RETRY_TOPIC), Some(TOPIC));
    assert_eq!(property(property::ORIGIN_MESSAGE_ID), Some("ORIGIN"));
}

#[tokio::test]
async fn a_retry_of_a_retry_keeps_its_first_topic_and_id() {
    // Its flag is the message's; its schedule marker was its wait's.
    let mut first = NewMessage::op_record(
        "%RETRY%readers",
        vec![
            (prop::FLAG.into(), "3".into()),
            (prop::SCHED_ID.into(), "an earlier wait".into()),
        ],
    );
    first.message_id = ID.into();
    first.reconsume_times = 2;
    first.properties = vec![
        (property::RETRY_TOPIC.into(), TOPIC.into()),
        (property::ORIGIN_MESSAGE_ID.into(), "FIRST".into()),
    ];
    let stored = StoredMessage {
        msg: first,
        queue_offset: 5,
        log_offset: 0,
        record_size: 0,
        store_timestamp_ms: 0,
        body_crc32: 0,
    };
    let back = SendBack {
        log_offset: 0,
        group: "readers".into(),
        delay_level: 0,
        origin_message_id: Some("LATER".into()),
        max_reconsume_times: Some(16),
    };
    // Its dead letter would name the first topic, not the retry topic.
    assert_eq!(origin_topic(&stored), TOPIC);
    let t = test_remote();
    let decision = back.decide(&t.broker, &stored);
    assert_eq!(decision.next, Next::Retry { level: 5 });
    let copy = retry_copy(&stored, &decision, 1);
    assert_eq!(copy.reconsume_times, 3);
    assert_eq!(copy.flag(), 3);
    assert_eq!(copy.internal(prop::SCHED_ID), None);
    assert_eq!(
        copy.properties,
        vec![
            (property::RETRY_TOPIC.into(), TOPIC.into()),
            (property::ORIGIN_MESSAGE_ID.into(), "FIRST".into()),
        ]
    );
}

#[tokio::test]
async fn a_message_out_of_reconsume_times_goes_to_the_dead_letter_topic_once() {
    let t = test_remote();
    let offset = sent(&t).await;
    for _ in 0..2 {
        let answer =
            consumer_send_back(&t.broker, &Caller::default(), &back_request(offset, 0, 0)).await;
        assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    }
    let dead: Vec<_> = copies(&t)
        .into_iter()
        .filter(|m| m.msg.topic == "%DLQ%readers")
        .collect();
    assert_eq!(dead.len(), 1, "stored once");
    assert_eq!(dead[0].msg.internal(prop::DLQ_GROUP), Some("readers"));
    assert_eq!(dead[0].msg.internal(prop::DLQ_TOPIC), Some(TOPIC));
    assert!(t.broker.topics().get("%RETRY%readers").is_none());
}

#[tokio::test]
async fn an_offset_of_no_message_is_refused() {
    let t = test_remote();
    let offset = sent(&t).await;
    let answer = consumer_send_back(
        &t.broker,
        &Caller::default(),
        &back_request(offset + 3, 0, 16),
    )
    .await;
    assert_eq!(answer.code, response::SYSTEM_ERROR);
    assert!(answer.remark.unwrap().contains("offset"));
}

/// A push consumer's fallback for a failed message: a send of it to `%RETRY%readers`
/// (SEND_MESSAGE_V2), consumed `reconsume_times` times before, allowed `max`.
fn retry_send(reconsume_times: i32, max: i32) -> RemotingCommand {
    let delay_level = (3 + reconsume_times).to_string();
    send_v2(
        &[
            ("UNIQ_KEY", ID),
            ("TAGS", "TagA"),
            ("color", "blue"),
            ("RETRY_TOPIC", TOPIC),
            ("ORIGIN_MESSAGE_ID", "ORIGIN"),
            ("DELAY", delay_level.as_str()),
        ],
        0,
        "work",
    )
    .with_ext("b", "%RETRY%readers")
    .with_ext("h", 11)
    .with_ext("j", reconsume_times)
    .with_ext("l", max)
}

/// The record an answer's offset message id names.
fn answered_record(t: &TestRemote, answer: &RemotingCommand) -> StoredMessage {
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    let (_, offset) = parse_offset_message_id(answer.ext("msgId").unwrap()).unwrap();
    t.broker
        .message_at(offset as u64)
        .unwrap()
        .expect("the answer names a record")
}

#[tokio::test]
async fn a_send_to_the_retry_topic_waits_in_the_schedule_like_a_send_back() {
    let t = test_remote();
    let answer = t.call(retry_send(0, 16)).await;
    let w = answered_record(&t, &answer).msg;
    assert_eq!(w.topic, names::SCHEDULE_TOPIC);
    assert_waits_for_the_retry_topic_at_level_3(&w);
    assert_eq!(t.broker.topics().get("%RETRY%readers").unwrap().queues, 1);
    assert_eq!(w.message_id, ID);
    assert_eq!(w.flag(), 11, "the producer's flag is the message's");
    assert_eq!(&w.body[..], b"work");
    assert_eq!(w.tag.as_deref(), Some("TagA"));
    assert_eq!(w.reconsume_times, 0);
    let mut properties = w.properties.clone();
    properties.sort();
    assert_eq!(
        properties,
        vec![
            (property::ORIGIN_MESSAGE_ID.into(), "ORIGIN".into()),
            (property::RETRY_TOPIC.into(), TOPIC.into()),
            ("color".into(), "blue".into()),
        ]
    );
}

#[tokio::test]
async fn a_send_to_the_retry_topic_out_of_reconsume_times_is_a_dead_letter_of_its_first_topic() {
    let t = test_remote();
    let answer = t.call(retry_send(3, 3)).await;
    let dead = answered_record(&t, &answer).msg;
    assert_eq!(dead.topic, "%DLQ%readers");
    assert_eq!(dead.internal(prop::DLQ_GROUP), Some("readers"));
    assert_eq!(dead.internal(prop::DLQ_TOPIC), Some(TOPIC));
    assert_eq!(dead.internal(prop::DLQ_ATTEMPTS), Some("3"));
    assert_eq!(dead.message_id, ID);
    assert_eq!(dead.flag(), 11);
    assert_eq!(&dead.body[..], b"work");
    assert!(t.broker.topics().get("%RETRY%readers").is_none());
    // The group's own limit (16 for a group not created) when the header names none.
    let mut no_max = retry_send(3, 0);
    no_max.ext_fields.remove("l");
    let again = t.call(no_max).await;
    assert_eq!(
        answered_record(&t, &again).msg.internal(prop::SCHED_TOPIC),
        Some("%RETRY%readers")
    );
}

#[tokio::test]
async fn batches_to_a_retry_topic_and_sends_to_other_system_topics_are_refused() {
    let t = test_remote();
    let mut batch = retry_send(0, 16);
    batch.code = SEND_BATCH_MESSAGE;
    let answer = t.call(batch).await;
    assert_ne!(answer.code, response::SUCCESS);
    assert!(answer.remark.unwrap().contains("batch"));
    let mut no_first_topic = retry_send(0, 16);
    no_first_topic.ext_fields.insert("i", "UNIQ_KEY\u{1}X");
    let answer = t.call(no_first_topic).await;
    assert_ne!(answer.code, response::SUCCESS);
    assert!(answer.remark.unwrap().contains("RETRY_TOPIC"));
    let dead_letter = retry_send(0, 16).with_ext("b", "%DLQ%readers");
    assert_ne!(t.call(dead_letter).await.code, response::SUCCESS);
    assert!(copies(&t).is_empty(), "nothing stored");
    assert!(t.broker.topics().get("%RETRY%readers").is_none());
}

/// A caller signed as user `reader`, allowed to consume what `entries` name.
fn reader(entries: &[(AclResourceKind, &str)]) -> Caller {
    let entries: Vec<AclEntry> = entries
        .iter()
        .map(|&(kind, pattern)| AclEntry {
            access_key: "reader".into(),
            kind: kind as i32,
            pattern: pattern.into(),
            subscribe: true,
            ..AclEntry::default()
        })
        .collect();
    Caller {
        identity: Some(Identity::User {
            access_key: "reader".into(),
            role: Role::User,
        }),
        acls: Some(Arc::new(AclSet::of(&entries))),
    }
}

#[tokio::test]
async fn a_send_to_the_retry_topic_needs_to_consume_the_group_on_the_first_topic() {
    let t = test_remote();
    let topic_only = reader(&[(AclResourceKind::Topic, TOPIC)]);
    let answer = send_message(&t.broker, &t.conn, &topic_only, retry_send(0, 16)).await;
    assert_eq!(answer.code, response::NO_PERMISSION, "{:?}", answer.remark);
    let group_only = reader(&[(AclResourceKind::Group, "readers")]);
    let answer = send_message(&t.broker, &t.conn, &group_only, retry_send(0, 16)).await;
    assert_eq!(answer.code, response::NO_PERMISSION, "{:?}", answer.remark);
    assert!(copies(&t).is_empty(), "nothing stored");
    let both = reader(&[
        (AclResourceKind::Topic, TOPIC),
        (AclResourceKind::Group, "readers"),
    ]);
    let answer = send_message(&t.broker, &t.conn, &both, retry_send(0, 16)).await;
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
}
