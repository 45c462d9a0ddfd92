//! CONSUMER_SEND_MSG_BACK over a broker built on the in-memory index: the retry copy waits
//! in the schedule for its level's delay, the dead-letter copy is stored at once.

use super::*;
use crate::remoting::send::tests::{send_v2, test_remote, TestRemote, TOPIC};
use apogee_proto::remoting::codes::request::CONSUMER_SEND_MSG_BACK;
use apogee_proto::remoting::message::parse_offset_message_id;
use apogee_server::remoting::Caller;

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
            max_reconsume_times: DEFAULT_MAX_RECONSUME_TIMES,
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
    assert_eq!(retry.queue_count, 1);
    let waiting: Vec<_> = copies(&t)
        .into_iter()
        .filter(|m| m.msg.topic == names::SCHEDULE_TOPIC)
        .collect();
    assert_eq!(waiting.len(), 1);
    let w = &waiting[0].msg;
    assert_eq!(w.internal(prop::SCHED_TOPIC), Some("%RETRY%readers"));
    let due: i64 = w.internal(prop::SCHED_DUE).unwrap().parse().unwrap();
    let delay = due - apogee_proto::time::now_ms();
    assert!(
        (5_000..=10_000).contains(&delay),
        "level 3 is 10 s: {delay} ms"
    );
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

#[test]
fn a_retry_of_a_retry_keeps_its_first_topic_and_id() {
    let mut first = NewMessage::op_record("%RETRY%readers", vec![]);
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
        max_reconsume_times: 16,
    };
    // Its dead letter would name the first topic, not the retry topic.
    assert_eq!(origin_topic(&stored), TOPIC);
    let copy = retry_copy(&stored, &back, 1);
    assert_eq!(copy.reconsume_times, 3);
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
