//! VIEW_MESSAGE_BY_ID and QUERY_MESSAGE over the in-memory broker.

use super::*;
use crate::remoting::send::tests::{send_v2, test_remote, TOPIC};
use apogee_proto::remoting::codes::request as req;
use apogee_proto::remoting::message::{parse_offset_message_id, MessageExt};

fn query(key: &str, by_id: bool) -> RemotingCommand {
    RemotingCommand::request(req::QUERY_MESSAGE)
        .with_ext("topic", TOPIC)
        .with_ext("key", key)
        .with_ext("maxNum", 32)
        .with_ext("beginTimestamp", 0)
        .with_ext("endTimestamp", i64::MAX)
        .with_ext("_UNIQUE_KEY_QUERY", by_id)
}

#[tokio::test]
async fn a_message_is_viewed_by_its_offset_and_found_by_key_and_by_id() {
    let t = test_remote();
    let caller = Caller::default();
    let mut ids = Vec::new();
    for i in 0..3 {
        let uniq = format!("Q{i}");
        let answer = t
            .call(send_v2(&[("UNIQ_KEY", &uniq), ("KEYS", "shared")], 0, "q"))
            .await;
        assert_eq!(answer.code, response::SUCCESS);
        ids.push(answer.ext("msgId").unwrap().to_string());
    }
    let (_, offset) = parse_offset_message_id(&ids[1]).unwrap();
    let view = RemotingCommand::request(req::VIEW_MESSAGE_BY_ID).with_ext("offset", offset);
    let answer = view_message_by_id(&t.broker, &t.conn, &caller, &view);
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    let found = MessageExt::decode_all(answer.body.clone()).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].properties["UNIQ_KEY"], "Q1");
    assert_eq!(found[0].offset_message_id(), ids[1]);

    let by_key = query_message(&t.broker, &t.conn, &caller, &query("shared", false));
    assert_eq!(by_key.code, response::SUCCESS);
    let found = MessageExt::decode_all(by_key.body.clone()).unwrap();
    let uniq: Vec<&str> = found
        .iter()
        .map(|m| m.properties["UNIQ_KEY"].as_str())
        .collect();
    assert_eq!(uniq, ["Q0", "Q1", "Q2"]);
    assert!(by_key.ext("indexLastUpdatePhyoffset").is_some());
    let limited = query_message(
        &t.broker,
        &t.conn,
        &caller,
        &query("shared", false).with_ext("maxNum", 2),
    );
    assert_eq!(MessageExt::decode_all(limited.body).unwrap().len(), 2);

    // By id, whatever begin time the client derived from it.
    let by_id = query_message(
        &t.broker,
        &t.conn,
        &caller,
        &query("Q2", true).with_ext("beginTimestamp", i64::MAX - 1),
    );
    assert_eq!(by_id.code, response::SUCCESS);
    let found = MessageExt::decode_all(by_id.body).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].properties["UNIQ_KEY"], "Q2");

    // A key's time window outside the messages' store times.
    let late = query("shared", false).with_ext("beginTimestamp", i64::MAX - 1);
    assert_eq!(
        query_message(&t.broker, &t.conn, &caller, &late).code,
        response::QUERY_NOT_FOUND
    );
    assert_eq!(
        query_message(&t.broker, &t.conn, &caller, &query("absent", false)).code,
        response::QUERY_NOT_FOUND
    );
    let nowhere = RemotingCommand::request(req::VIEW_MESSAGE_BY_ID).with_ext("offset", offset + 1);
    assert_eq!(
        view_message_by_id(&t.broker, &t.conn, &caller, &nowhere).code,
        response::QUERY_NOT_FOUND
    );
}

#[tokio::test]
async fn a_half_message_is_not_shown_by_its_offset() {
    let t = test_remote();
    let answer = t
        .call(send_v2(&[("UNIQ_KEY", "H1"), ("TRAN_MSG", "true")], 0, "h"))
        .await;
    assert_eq!(answer.code, response::SUCCESS);
    let (_, offset) = parse_offset_message_id(answer.ext("msgId").unwrap()).unwrap();
    let view = RemotingCommand::request(req::VIEW_MESSAGE_BY_ID).with_ext("offset", offset);
    assert_eq!(
        view_message_by_id(&t.broker, &t.conn, &Caller::default(), &view).code,
        response::QUERY_NOT_FOUND
    );
}
