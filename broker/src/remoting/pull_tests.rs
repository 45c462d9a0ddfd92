//! Unit tests of PULL_MESSAGE over a broker on the in-memory index.

use super::*;
use crate::consume::offsets;
use crate::remoting::clients::tests::{remote, remote_with, Remote, GROUP, TOPIC};
use apogee_proto::remoting::codes::request as code;
use apogee_proto::remoting::message::MessageExt;

/// A pull of `queue` of `topic` from `offset` by [`GROUP`], filtering with `expression`
/// (a tag expression) in the request.
fn pull_request(topic: &str, queue: i64, offset: i64, sys_flag: i32) -> RemotingCommand {
    RemotingCommand::request(code::PULL_MESSAGE)
        .with_ext("consumerGroup", GROUP)
        .with_ext("topic", topic)
        .with_ext("queueId", queue)
        .with_ext("queueOffset", offset)
        .with_ext("maxMsgNums", 32)
        .with_ext("sysFlag", sys_flag)
        .with_ext("commitOffset", 0)
        .with_ext("suspendTimeoutMillis", 20_000)
        .with_ext("subscription", "*")
        .with_ext("subVersion", 1)
        .with_ext("expressionType", "TAG")
}

async fn pull(r: &Remote, request: RemotingCommand) -> RemotingCommand {
    let c = r.connect();
    pull_message(&r.broker, &c.conn, &Caller::default(), &request).await
}

fn ext(answer: &RemotingCommand, name: &str) -> i64 {
    answer
        .ext(name)
        .unwrap_or_else(|| panic!("{name} in {answer:?}"))
        .parse()
        .unwrap()
}

fn messages(answer: &RemotingCommand) -> Vec<MessageExt> {
    MessageExt::decode_all(answer.body.clone()).expect("stored-message layout")
}

const SUB: i32 = sys_flag::SUBSCRIPTION;

#[tokio::test]
async fn a_pull_answers_the_messages_from_its_offset_with_the_queue_bounds() {
    let r = remote(2);
    r.store(1, "a", 5).await;
    let answer = pull(&r, pull_request(TOPIC, 1, 2, SUB).with_ext("maxMsgNums", 2)).await;
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    let found = messages(&answer);
    let offsets: Vec<i64> = found.iter().map(|m| m.queue_offset).collect();
    assert_eq!(offsets, vec![2, 3]);
    assert_eq!(found[0].topic, TOPIC);
    assert_eq!(found[0].queue_id, 1);
    assert_eq!(&found[0].body[..], b"body 2");
    assert_eq!(ext(&answer, "nextBeginOffset"), 4);
    assert_eq!(ext(&answer, "minOffset"), 0);
    assert_eq!(ext(&answer, "maxOffset"), 5);
    assert_eq!(ext(&answer, "suggestWhichBrokerId"), 0);
}

#[tokio::test]
async fn lite_pull_message_is_served_as_a_pull() {
    let r = remote(2);
    r.store(0, "a", 3).await;
    let mut request = pull_request(TOPIC, 0, 1, SUB);
    request.code = code::LITE_PULL_MESSAGE;
    let c = r.connect();
    let answer = crate::remoting::dispatch(&r.broker, &c.conn, &Caller::default(), request).await;
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    let offsets: Vec<i64> = messages(&answer).iter().map(|m| m.queue_offset).collect();
    assert_eq!(offsets, vec![1, 2]);
    assert_eq!(ext(&answer, "nextBeginOffset"), 3);
}

#[tokio::test]
async fn nothing_new_is_pull_not_found_at_once_or_after_the_suspend_time() {
    let r = remote(1);
    r.store(0, "a", 2).await;
    let at_end = pull(&r, pull_request(TOPIC, 0, 2, SUB)).await;
    assert_eq!(at_end.code, response::PULL_NOT_FOUND);
    assert_eq!(ext(&at_end, "nextBeginOffset"), 2);
    let suspended = pull(
        &r,
        pull_request(TOPIC, 0, 2, SUB | sys_flag::SUSPEND).with_ext("suspendTimeoutMillis", 30),
    )
    .await;
    assert_eq!(suspended.code, response::PULL_NOT_FOUND);
    assert_eq!(ext(&suspended, "maxOffset"), 2);
}

#[tokio::test]
async fn a_suspended_pull_is_answered_when_a_message_is_appended() {
    let r = std::sync::Arc::new(remote_with(1, |c| c.limits.max_long_polls = 1));
    let waiting = {
        let r = r.clone();
        tokio::spawn(
            async move { pull(&r, pull_request(TOPIC, 0, 0, SUB | sys_flag::SUSPEND)).await },
        )
    };
    // The pull holds the broker's only long-poll place while it waits; on this one-thread
    // runtime it runs until it waits, so holding the place means waiting.
    while r.broker.quotas().long_poll().is_ok() {
        tokio::task::yield_now().await;
    }
    r.store(0, "a", 1).await;
    let answer = waiting.await.unwrap();
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    assert_eq!(messages(&answer).len(), 1);
    assert_eq!(ext(&answer, "nextBeginOffset"), 1);
}

#[tokio::test]
async fn an_offset_outside_the_queue_is_moved_to_where_it_can_continue() {
    let r = remote(2);
    r.store(0, "a", 3).await;
    let beyond = pull(&r, pull_request(TOPIC, 0, 9, SUB)).await;
    assert_eq!(beyond.code, response::PULL_OFFSET_MOVED);
    assert_eq!(ext(&beyond, "nextBeginOffset"), 3);
    let empty_queue = pull(&r, pull_request(TOPIC, 1, 5, SUB)).await;
    assert_eq!(empty_queue.code, response::PULL_OFFSET_MOVED);
    assert_eq!(ext(&empty_queue, "nextBeginOffset"), 0);
}

#[tokio::test]
async fn tag_and_sql_filters_select_and_a_batch_without_a_match_retries_immediately() {
    let r = remote(1);
    r.store(0, "a", 2).await;
    r.store(0, "b", 2).await;
    let tags = pull(
        &r,
        pull_request(TOPIC, 0, 0, SUB).with_ext("subscription", "b || c"),
    )
    .await;
    assert_eq!(tags.code, response::SUCCESS);
    let offsets: Vec<i64> = messages(&tags).iter().map(|m| m.queue_offset).collect();
    assert_eq!(offsets, vec![2, 3]);
    assert_eq!(ext(&tags, "nextBeginOffset"), 4);
    let sql = pull(
        &r,
        pull_request(TOPIC, 0, 0, SUB)
            .with_ext("subscription", "TAGS = 'a'")
            .with_ext("expressionType", "SQL92"),
    )
    .await;
    assert_eq!(sql.code, response::SUCCESS);
    assert_eq!(messages(&sql).len(), 2);
    assert_eq!(ext(&sql, "nextBeginOffset"), 4);
    let none = pull(
        &r,
        pull_request(TOPIC, 0, 0, SUB)
            .with_ext("subscription", "c")
            .with_ext("maxMsgNums", 3),
    )
    .await;
    assert_eq!(none.code, response::PULL_RETRY_IMMEDIATELY);
    assert_eq!(ext(&none, "nextBeginOffset"), 3, "past the batch read");
    let bad = pull(
        &r,
        pull_request(TOPIC, 0, 0, SUB)
            .with_ext("subscription", "a >")
            .with_ext("expressionType", "SQL92"),
    )
    .await;
    assert_eq!(bad.code, response::SUBSCRIPTION_PARSE_FAILED);
}

#[tokio::test]
async fn without_the_subscription_bit_the_heartbeat_subscription_filters() {
    let r = remote(1);
    r.store(0, "a", 1).await;
    r.store(0, "b", 1).await;
    let request = || pull_request(TOPIC, 0, 0, 0).with_ext("subscription", "a");
    let unknown = pull(&r, request()).await;
    assert_eq!(unknown.code, response::SUBSCRIPTION_NOT_EXIST);
    let member = r.connect();
    r.beat(&member, "m", &[GROUP], "b");
    let answer = pull(&r, request()).await;
    assert_eq!(answer.code, response::SUCCESS);
    let found = messages(&answer);
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].queue_offset, 1,
        "the heartbeat's tag b, not the request's a"
    );
}

#[tokio::test]
async fn the_commit_bit_stores_the_groups_offset() {
    let r = remote(1);
    r.store(0, "a", 4).await;
    let answer = pull(
        &r,
        pull_request(TOPIC, 0, 3, SUB | sys_flag::COMMIT_OFFSET).with_ext("commitOffset", 3),
    )
    .await;
    assert_eq!(answer.code, response::SUCCESS);
    assert_eq!(
        offsets::committed_offset(r.broker.store(), GROUP, TOPIC, 0).unwrap(),
        Some(3)
    );
    let without_bit = pull(
        &r,
        pull_request(TOPIC, 0, 0, SUB).with_ext("commitOffset", 1),
    )
    .await;
    assert_eq!(without_bit.code, response::SUCCESS);
    assert_eq!(
        offsets::committed_offset(r.broker.store(), GROUP, TOPIC, 0).unwrap(),
        Some(3)
    );
}

#[tokio::test]
async fn a_groups_retry_topic_is_pulled_like_any_topic() {
    let r = remote(1);
    let member = r.connect();
    r.beat(&member, "m", &[GROUP], "*");
    let retry = apogee_proto::names::retry_topic(GROUP);
    let msg = crate::store::NewMessage {
        topic: retry.clone(),
        message_id: "again".into(),
        body: "retried".into(),
        ..crate::store::NewMessage::op_record(&retry, Vec::new())
    };
    r.broker.store().append(vec![msg]).await.unwrap();
    let answer = pull(&r, pull_request(&retry, 0, 0, SUB)).await;
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    assert_eq!(&messages(&answer)[0].body[..], b"retried");
}

#[tokio::test]
async fn bad_pulls_are_refused_with_their_codes() {
    let r = remote_with(1, |c| c.consume.auto_create_groups = false);
    let unknown_group = pull(&r, pull_request(TOPIC, 0, 0, SUB)).await;
    assert_eq!(unknown_group.code, response::SUBSCRIPTION_GROUP_NOT_EXIST);
    let no_topic = pull(&r, pull_request("nowhere", 0, 0, SUB)).await;
    assert_eq!(no_topic.code, response::TOPIC_NOT_EXIST);
    let no_queue = pull(&r, pull_request(TOPIC, 1, 0, SUB)).await;
    assert_eq!(no_queue.code, response::INVALID_PARAMETER);
    let class = pull(&r, pull_request(TOPIC, 0, 0, SUB | sys_flag::CLASS_FILTER)).await;
    assert_eq!(class.code, response::SUBSCRIPTION_PARSE_FAILED);
    let negative = pull(&r, pull_request(TOPIC, 0, -1, SUB)).await;
    assert_eq!(negative.code, response::INVALID_PARAMETER);
    let mut missing = pull_request(TOPIC, 0, 0, SUB);
    missing.ext_fields.remove("queueOffset");
    let answer = pull(&r, missing).await;
    assert_eq!(answer.code, response::INVALID_PARAMETER);
    assert!(answer.remark.unwrap().contains("queueOffset"));
}

#[test]
fn the_suspend_time_is_capped_and_needs_the_suspend_bit() {
    assert_eq!(suspend_of(0, 15_000), Duration::ZERO);
    assert_eq!(
        suspend_of(sys_flag::SUSPEND, 15_000),
        Duration::from_millis(15_000)
    );
    assert_eq!(
        suspend_of(sys_flag::SUSPEND, 10 * MAX_SUSPEND_MS as i64),
        Duration::from_millis(MAX_SUSPEND_MS)
    );
    assert_eq!(suspend_of(sys_flag::SUSPEND, -5), Duration::ZERO);
}
