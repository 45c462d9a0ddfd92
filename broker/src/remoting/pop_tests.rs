//! Unit tests of POP_MESSAGE, ACK_MESSAGE and CHANGE_MESSAGE_INVISIBLETIME over a broker on
//! the in-memory index.

use super::*;
use crate::remoting::clients::tests::{remote, Remote, GROUP, TOPIC};
use apogee_proto::limits;
use apogee_proto::remoting::codes::request as code;
use apogee_proto::remoting::message::MessageExt;

/// A pop of `queue` (-1: any) of [`TOPIC`] by [`GROUP`].
fn pop_request(queue: i64, max: i64, invisible_ms: i64) -> RemotingCommand {
    RemotingCommand::request(code::POP_MESSAGE)
        .with_ext("consumerGroup", GROUP)
        .with_ext("topic", TOPIC)
        .with_ext("queueId", queue)
        .with_ext("maxMsgNums", max)
        .with_ext("invisibleTime", invisible_ms)
        .with_ext("pollTime", 0)
        .with_ext("bornTime", now_ms())
        .with_ext("initMode", 0)
        .with_ext("expType", "TAG")
        .with_ext("exp", "*")
        .with_ext("order", false)
}

async fn pop(r: &Remote, request: RemotingCommand) -> RemotingCommand {
    let c = r.connect();
    pop_message(&r.broker, &c.conn, &Caller::default(), &request).await
}

fn messages(answer: &RemotingCommand) -> Vec<MessageExt> {
    MessageExt::decode_all(answer.body.clone()).expect("stored-message layout")
}

fn ack_request(m: &MessageExt) -> RemotingCommand {
    RemotingCommand::request(code::ACK_MESSAGE)
        .with_ext("consumerGroup", GROUP)
        .with_ext("topic", TOPIC)
        .with_ext("queueId", m.queue_id)
        .with_ext("extraInfo", m.properties[POP_CK].clone())
        .with_ext("offset", m.queue_offset)
}

fn change_request(extra: &str, m: &MessageExt, invisible_ms: i64) -> RemotingCommand {
    RemotingCommand::request(code::CHANGE_MESSAGE_INVISIBLETIME)
        .with_ext("consumerGroup", GROUP)
        .with_ext("topic", TOPIC)
        .with_ext("queueId", m.queue_id)
        .with_ext("extraInfo", extra)
        .with_ext("offset", m.queue_offset)
        .with_ext("invisibleTime", invisible_ms)
}

fn ext(answer: &RemotingCommand, name: &str) -> String {
    answer
        .ext(name)
        .unwrap_or_else(|| panic!("{name} in {answer:?}"))
        .to_string()
}

#[tokio::test]
async fn a_pop_answers_messages_with_their_extra_info_in_rocketmq_positions() {
    let r = remote(2);
    r.store(1, "a", 3).await;
    let answer = pop(&r, pop_request(1, 2, 30_000)).await;
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    let found = messages(&answer);
    assert_eq!(
        found.iter().map(|m| m.queue_offset).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(&found[0].body[..], b"body 0");
    assert_eq!(found[0].reconsume_times, 0);
    let pop_time = ext(&answer, "popTime");
    assert_eq!(ext(&answer, "invisibleTime"), "30000");
    assert_eq!(ext(&answer, "reviveQid"), "0");
    assert_eq!(ext(&answer, "restNum"), "1");
    assert_eq!(ext(&answer, "startOffsetInfo"), "0 1 0");
    assert_eq!(ext(&answer, "msgOffsetInfo"), "0 1 0,1");
    let fields: Vec<&str> = found[1].properties[POP_CK].split(' ').collect();
    assert_eq!(fields.len(), HANDLE_POSITION + 1, "{fields:?}");
    assert_eq!(fields[0], "1", "checkpoint offset");
    assert_eq!(fields[1], pop_time);
    assert_eq!(fields[2], "30000");
    assert_eq!(fields[3], "0", "revive queue");
    assert_eq!(fields[4], "0", "a normal topic");
    assert_eq!(fields[5], "broker-a");
    assert_eq!(fields[6], "1", "queue id");
    assert_eq!(fields[7], "1", "queue offset");
    assert_eq!(fields[8], "0", "retry generation");
    assert!(!fields[HANDLE_POSITION].is_empty());
}

#[tokio::test]
async fn a_pop_of_any_queue_reads_every_queue_and_an_empty_one_is_pull_not_found() {
    let r = remote(3);
    r.store(0, "a", 1).await;
    r.store(2, "b", 1).await;
    let answer = pop(&r, pop_request(-1, 8, 30_000)).await;
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    let mut queues: Vec<i32> = messages(&answer).iter().map(|m| m.queue_id).collect();
    queues.sort();
    assert_eq!(queues, vec![0, 2]);
    // Both in flight: nothing more to pop.
    let empty = pop(&r, pop_request(-1, 8, 30_000).with_ext("pollTime", 20)).await;
    assert_eq!(empty.code, response::PULL_NOT_FOUND, "{empty:?}");
    assert!(empty.body.is_empty());
    for header in ["popTime", "invisibleTime", "reviveQid", "restNum"] {
        assert!(empty.ext(header).is_some(), "{header} in {empty:?}");
    }
}

#[tokio::test]
async fn an_acked_message_is_not_popped_again_and_a_second_ack_is_no_message() {
    let r = remote(1);
    r.store(0, "a", 1).await;
    let first = messages(&pop(&r, pop_request(0, 1, 1_000)).await);
    let acked = ack_message(&r.broker, &Caller::default(), &ack_request(&first[0]));
    assert_eq!(acked.code, response::SUCCESS, "{acked:?}");
    let again = ack_message(&r.broker, &Caller::default(), &ack_request(&first[0]));
    assert_eq!(again.code, response::NO_MESSAGE, "{again:?}");
    // Past its invisible time and the first backoff (1 s) it is still not handed out.
    let later = pop(&r, pop_request(0, 1, 1_000).with_ext("pollTime", 2_500)).await;
    assert_eq!(later.code, response::PULL_NOT_FOUND, "{later:?}");
}

#[tokio::test]
async fn an_unacked_message_is_popped_again_after_its_invisible_time_as_a_reconsume() {
    let r = remote(1);
    r.store(0, "a", 1).await;
    let first = messages(&pop(&r, pop_request(0, 1, 1_000)).await);
    // Long-polls until it comes back (its invisible time, then the group's first backoff).
    let again = pop(&r, pop_request(0, 1, 30_000).with_ext("pollTime", 25_000)).await;
    assert_eq!(again.code, response::SUCCESS, "{again:?}");
    let second = messages(&again);
    assert_eq!(second[0].queue_offset, first[0].queue_offset);
    assert_eq!(second[0].reconsume_times, 1);
    // The first pop's extra info is stale now.
    let stale = ack_message(&r.broker, &Caller::default(), &ack_request(&first[0]));
    assert_eq!(stale.code, response::NO_MESSAGE);
    let acked = ack_message(&r.broker, &Caller::default(), &ack_request(&second[0]));
    assert_eq!(acked.code, response::SUCCESS, "{acked:?}");
}

#[tokio::test]
async fn a_change_of_invisible_time_answers_a_new_extra_info_and_stales_the_old() {
    let r = remote(1);
    r.store(0, "a", 1).await;
    let m = messages(&pop(&r, pop_request(0, 1, 30_000)).await).remove(0);
    let old = m.properties[POP_CK].clone();
    let changed = change_invisible_time(
        &r.broker,
        &Caller::default(),
        &change_request(&old, &m, 60_000),
    );
    assert_eq!(changed.code, response::SUCCESS, "{changed:?}");
    assert_eq!(ext(&changed, "invisibleTime"), "60000");
    assert_eq!(ext(&changed, "reviveQid"), "0");
    let new = ext(&changed, "extraInfo");
    assert_ne!(handle_of(&new).unwrap(), handle_of(&old).unwrap());
    assert_eq!(new.split(' ').nth(1).unwrap(), ext(&changed, "popTime"));
    let stale = ack_message(
        &r.broker,
        &Caller::default(),
        &ack_request(&m).with_ext("extraInfo", old),
    );
    assert_eq!(stale.code, response::NO_MESSAGE);
    let acked = ack_message(
        &r.broker,
        &Caller::default(),
        &ack_request(&m).with_ext("extraInfo", new),
    );
    assert_eq!(acked.code, response::SUCCESS, "{acked:?}");
}

#[tokio::test]
async fn pops_outside_the_limits_are_refused_naming_the_limit() {
    let r = remote(1);
    for (field, value, named) in [
        // The limits are the pop action's, worded alike for both transports.
        ("maxMsgNums", 0i64, "batch size 0 is outside 1..=64"),
        (
            "maxMsgNums",
            limits::MAX_RECEIVE_BATCH as i64 + 1,
            "batch size 65",
        ),
        (
            "invisibleTime",
            limits::MIN_INVISIBLE_MS - 1,
            "invisible time 999 ms",
        ),
        (
            "invisibleTime",
            limits::MAX_INVISIBLE_MS + 1,
            "invisible time 43200001 ms",
        ),
        ("pollTime", -1, "pollTime -1"),
        ("queueId", 1, "queue 1 does not exist"),
    ] {
        let answer = pop(&r, pop_request(0, 1, 30_000).with_ext(field, value)).await;
        assert_eq!(
            answer.code,
            response::INVALID_PARAMETER,
            "{field} = {value}"
        );
        assert!(
            answer.remark.as_deref().unwrap_or("").contains(named),
            "{field} = {value}: {answer:?}"
        );
    }
    let answer = pop(&r, pop_request(0, 1, 30_000).with_ext("topic", "nowhere")).await;
    assert_eq!(answer.code, response::TOPIC_NOT_EXIST, "{answer:?}");
    let answer = pop(
        &r,
        pop_request(0, 1, 30_000)
            .with_ext("expType", "SQL92")
            .with_ext("exp", "a >"),
    )
    .await;
    assert_eq!(
        answer.code,
        response::SUBSCRIPTION_PARSE_FAILED,
        "{answer:?}"
    );
}

#[tokio::test]
async fn an_extra_info_without_the_handle_is_no_message() {
    let r = remote(1);
    r.store(0, "a", 1).await;
    let m = messages(&pop(&r, pop_request(0, 1, 30_000)).await).remove(0);
    // What a client rebuilds from RocketMQ's positions alone.
    let rebuilt = m.properties[POP_CK]
        .split(' ')
        .take(8)
        .collect::<Vec<_>>()
        .join(" ");
    let answer = ack_message(
        &r.broker,
        &Caller::default(),
        &ack_request(&m).with_ext("extraInfo", rebuilt),
    );
    assert_eq!(answer.code, response::NO_MESSAGE, "{answer:?}");
    assert!(answer.remark.unwrap().contains("receipt handle"));
    let mut missing = ack_request(&m);
    missing.ext_fields.remove("extraInfo");
    let answer = ack_message(&r.broker, &Caller::default(), &missing);
    assert_eq!(answer.code, response::INVALID_PARAMETER, "{answer:?}");
}
