//! END_TRANSACTION and the check-back to a remoting producer over the in-memory broker.

use super::*;
use crate::remoting::send::tests::{send_v2, test_remote, test_remote_with, TestRemote, TOPIC};
use apogee_proto::remoting::message::{parse_offset_message_id, MessageExt};
use apogee_proto::txn_id;

/// Sends a half message of group `producers`; returns the send's answer.
async fn send_half(t: &TestRemote, uniq: &str) -> RemotingCommand {
    let answer = t
        .call(send_v2(
            &[
                ("UNIQ_KEY", uniq),
                ("TRAN_MSG", "true"),
                ("PGROUP", "producers"),
                ("TAGS", "T"),
            ],
            1,
            "half",
        ))
        .await;
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    answer
}

fn end(answer: &RemotingCommand, value: i32, with_id: bool) -> RemotingCommand {
    let (_, offset) = parse_offset_message_id(answer.ext("msgId").unwrap()).unwrap();
    let mut r = RemotingCommand::request(req::END_TRANSACTION)
        .with_ext("producerGroup", "producers")
        .with_ext("tranStateTableOffset", answer.ext("queueOffset").unwrap())
        .with_ext("commitLogOffset", offset)
        .with_ext("commitOrRollback", value)
        .with_ext("fromTransactionCheck", false)
        .with_ext("msgId", "whatever-the-client-keeps");
    if with_id {
        r = r.with_ext("transactionId", answer.ext("transactionId").unwrap());
    }
    r
}

#[tokio::test]
async fn a_commit_by_transaction_id_publishes_the_half_message() {
    let t = test_remote();
    let answer = send_half(&t, "TXN1").await;
    let id = answer
        .ext("transactionId")
        .expect("a transaction id")
        .to_string();
    assert_eq!(txn_id::broker_of(&id), Some("broker-a"));
    assert_eq!(t.broker.store().queue_bounds(TOPIC, 1).unwrap(), (0, 0));

    let done = end_transaction(&t.broker, &Caller::default(), &end(&answer, COMMIT, true)).await;
    assert_eq!(done.code, response::SUCCESS, "{:?}", done.remark);
    let published = t.broker.store().lookup_by_id("TXN1").unwrap().unwrap();
    assert_eq!(published.msg.topic, TOPIC);
    assert_eq!(published.msg.queue_id, 1);
    assert_eq!(published.msg.tag.as_deref(), Some("T"));
    assert_eq!(t.broker.store().queue_bounds(TOPIC, 1).unwrap(), (0, 1));
}

#[tokio::test]
async fn an_ending_without_transaction_id_is_found_by_its_commit_log_offset() {
    let t = test_remote();
    let answer = send_half(&t, "TXN2").await;
    let caller = Caller::default();
    let rolled = end_transaction(&t.broker, &caller, &end(&answer, ROLLBACK, false)).await;
    assert_eq!(rolled.code, response::SUCCESS, "{:?}", rolled.remark);
    // Unknown changes nothing; the opposite outcome is refused.
    let unknown = end_transaction(&t.broker, &caller, &end(&answer, UNKNOWN, false)).await;
    assert_eq!(unknown.code, response::SUCCESS);
    let commit = end_transaction(&t.broker, &caller, &end(&answer, COMMIT, true)).await;
    assert_eq!(commit.code, response::INVALID_PARAMETER);
    assert_eq!(t.broker.store().queue_bounds(TOPIC, 1).unwrap(), (0, 0));

    // An offset that names no half message, a value that is no resolution.
    let lost = end(&answer, COMMIT, false).with_ext("commitLogOffset", 1);
    assert_eq!(
        end_transaction(&t.broker, &caller, &lost).await.code,
        response::INVALID_PARAMETER
    );
    let odd = end(&answer, 5, true);
    assert_eq!(
        end_transaction(&t.broker, &caller, &odd).await.code,
        response::INVALID_PARAMETER
    );
}

#[tokio::test]
async fn a_due_check_back_is_pushed_to_a_remoting_producer_of_the_group() {
    let mut t = test_remote();
    // The remoting clients' table: `conn` is the one producer of group "producers".
    let conn = t.conn.clone();
    let producers = move || {
        let conn = conn.clone();
        RemotingCheckBacks::new(move |group| {
            if group == "producers" {
                vec![conn.clone()]
            } else {
                Vec::new()
            }
        })
    };
    let answer = send_half(&t, "TXN3").await;
    let id = answer.ext("transactionId").unwrap().to_string();
    let (_, half_offset) = parse_offset_message_id(answer.ext("msgId").unwrap()).unwrap();

    // The check the checker makes: the half message as it would be published.
    let half = t.broker.message_at(half_offset as u64).unwrap().unwrap();
    let mut published = half.clone();
    published.msg.topic = TOPIC.into();
    published.msg.queue_id = 1;
    let check = CheckBack {
        transaction_id: &id,
        message: &published,
        producer_group: "producers",
        preferred_producer: "",
    };
    let reached = producers().check_back(&check);
    assert_eq!(reached.as_deref(), Some("producers@10.0.0.7:50000"));
    let pushed = t.pushed.recv().await.expect("a check-back frame");
    assert_eq!(pushed.code, req::CHECK_TRANSACTION_STATE);
    assert!(pushed.is_oneway());
    assert_eq!(pushed.ext("transactionId"), Some(id.as_str()));
    assert_eq!(pushed.ext("msgId"), Some("TXN3"));
    assert_eq!(
        pushed.ext("commitLogOffset"),
        Some(half_offset.to_string().as_str())
    );
    assert_eq!(pushed.ext("offsetMsgId"), answer.ext("msgId"));
    let body = MessageExt::decode_all(pushed.body.clone()).unwrap();
    assert_eq!(body.len(), 1);
    assert_eq!(body[0].topic, TOPIC);
    assert_eq!(body[0].queue_id, 1);
    assert_eq!(body[0].properties["UNIQ_KEY"], "TXN3");
    assert_eq!(body[0].properties["PGROUP"], "producers");
    assert_eq!(body[0].properties["TRAN_MSG"], "true");
    assert_eq!(
        body[0].sys_flag & sys_flag::TRANSACTION_MASK,
        sys_flag::TRANSACTION_PREPARED
    );

    // The producer answers as RocketMQ clients do after a check: the check's transaction id.
    let answer_of_check = RemotingCommand::request(req::END_TRANSACTION)
        .with_ext("producerGroup", "producers")
        .with_ext(
            "tranStateTableOffset",
            pushed.ext("tranStateTableOffset").unwrap(),
        )
        .with_ext("commitLogOffset", pushed.ext("commitLogOffset").unwrap())
        .with_ext("commitOrRollback", COMMIT)
        .with_ext("fromTransactionCheck", true)
        .with_ext("msgId", "TXN3")
        .with_ext("transactionId", pushed.ext("transactionId").unwrap());
    let done = end_transaction(&t.broker, &Caller::default(), &answer_of_check).await;
    assert_eq!(done.code, response::SUCCESS, "{:?}", done.remark);
    assert_eq!(t.broker.store().queue_bounds(TOPIC, 1).unwrap(), (0, 1));

    // No producer of another group: nobody is asked.
    let other = CheckBack {
        producer_group: "others",
        ..check
    };
    assert_eq!(producers().check_back(&other), None);
}

#[tokio::test]
async fn the_checker_asks_a_remoting_producer_of_the_half_messages_group() {
    let mut t = test_remote_with(|c| c.transaction.check_delay_ms = 0);
    let conn = t.conn.clone();
    t.broker
        .txns()
        .set_producer_check_back(Arc::new(RemotingCheckBacks::new(move |group| {
            if group == "producers" {
                vec![conn.clone()]
            } else {
                Vec::new()
            }
        })));
    let answer = send_half(&t, "TXN4").await;
    let checked = t.broker.txns().check_due("10.0.0.1:10911").await.unwrap();
    assert_eq!(checked, 1);
    let pushed = t.pushed.recv().await.expect("a check-back frame");
    assert_eq!(pushed.code, req::CHECK_TRANSACTION_STATE);
    assert_eq!(pushed.ext("transactionId"), answer.ext("transactionId"));
    assert_eq!(pushed.ext("offsetMsgId"), answer.ext("msgId"));
    let body = MessageExt::decode_all(pushed.body.clone()).unwrap();
    assert_eq!(body[0].topic, TOPIC);
    assert_eq!(body[0].properties["UNIQ_KEY"], "TXN4");

    // A half message without a producer group (a gRPC producer's) is not pushed here.
    let no_group = t
        .call(send_v2(
            &[("UNIQ_KEY", "TXN5"), ("TRAN_MSG", "true")],
            0,
            "h",
        ))
        .await;
    assert_eq!(no_group.code, response::SUCCESS);
    assert_eq!(
        t.broker.txns().check_due("10.0.0.1:10911").await.unwrap(),
        1
    );
    assert!(t.pushed.try_recv().is_err());
}
