use super::*;
use apogee_proto::remoting::codes::response;
use apogee_proto::remoting::message::{decode_batch, properties_from_str};
use apogee_proto::remoting::route::{BrokerData, QueueData};
use std::time::Duration;

fn group(name: &str, perm: i32, queues: i32) -> QueueData {
    QueueData {
        broker_name: name.into(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm,
        topic_sys_flag: 0,
    }
}

fn members(name: &str, addrs: &[(i64, &str)]) -> BrokerData {
    BrokerData {
        cluster: "c".into(),
        broker_name: name.into(),
        addrs: addrs.iter().map(|(id, a)| (*id, a.to_string())).collect(),
    }
}

#[test]
fn only_writable_queues_of_groups_with_a_master_are_sent_to() {
    let route = TopicRouteData {
        queue_datas: vec![
            group("a", perm::READ | perm::WRITE, 2),
            group("read-only", perm::READ, 4),
            group("no-master", perm::READ | perm::WRITE, 4),
        ],
        broker_datas: vec![
            members("a", &[(0, "10.0.0.1:1"), (1, "10.0.0.2:1")]),
            members("read-only", &[(0, "10.0.0.3:1")]),
            members("no-master", &[(1, "10.0.0.4:1")]),
        ],
        order_topic_conf: None,
    };
    let queues = writable_queues(&route);
    let seen: Vec<(&str, i32, &str)> = queues
        .iter()
        .map(|q| (q.broker_name.as_str(), q.queue_id, q.addr.as_str()))
        .collect();
    assert_eq!(seen, [("a", 0, "10.0.0.1:1"), ("a", 1, "10.0.0.1:1")]);
}

#[test]
fn a_resend_avoids_the_broker_groups_that_failed_while_others_are_left() {
    let q = |b: &str, id| SendQueue {
        broker_name: b.into(),
        queue_id: id,
        addr: format!("{b}:1"),
    };
    let queues = [q("a", 0), q("a", 1), q("b", 0)];
    assert_eq!(pick(&queues, 1, &[]).unwrap().queue_id, 1);
    assert_eq!(pick(&queues, 7, &["a".into()]).unwrap().broker_name, "b");
    // Every group failed: round-robin over all of them again.
    assert!(pick(&queues, 4, &["a".into(), "b".into()]).is_some());
    assert!(pick(&[], 0, &[]).is_none());
}

#[test]
fn a_message_is_written_with_rocketmqs_properties() {
    let at = UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
    let m = Message::builder("t", "body")
        .tag("TagA")
        .keys(["k1", "k2"])
        .property("color", "blue")
        .deliver_at(at)
        .build();
    let props = properties_of(&m, "ID1").unwrap();
    assert_eq!(props[property::UNIQ_KEY], "ID1");
    assert_eq!(props[property::TAGS], "TagA");
    assert_eq!(props[property::KEYS], "k1 k2");
    assert_eq!(props[property::START_DELIVER_TIME], "1800000000123");
    assert_eq!(props["color"], "blue");
}

#[test]
fn a_property_remoting_reserves_or_cannot_spell_is_refused() {
    for (name, value) in [
        (property::TAGS, "x"),
        (property::DELAY, "3"),
        ("ok", "a\u{1}b"),
        ("ok", "a\u{2}b"),
    ] {
        let m = Message::builder("t", "b").property(name, value).build();
        let e = properties_of(&m, "id").unwrap_err();
        assert!(
            matches!(e, ClientError::Server(ApogeeError::IllegalProperty(_))),
            "{name}={value:?}: {e}"
        );
    }
}

#[test]
fn one_message_is_send_message_v2_and_several_a_batch() {
    let one = [Message::builder("t", "hello").tag("x").build()];
    let request = send_request("t", 3, &one, &["ID".into()]).unwrap();
    assert_eq!(request.code, code::SEND_MESSAGE_V2);
    assert_eq!(request.serialization, Serialization::Binary);
    assert_eq!(request.ext("b"), Some("t"));
    assert_eq!(request.ext("e"), Some("3"));
    assert_eq!(request.ext("m"), Some("false"));
    assert_eq!(&request.body[..], b"hello");
    let props = properties_from_str(request.ext("i").unwrap());
    assert_eq!(props[property::UNIQ_KEY], "ID");
    assert_eq!(props[property::TAGS], "x");

    let two = [Message::new("t", "a"), Message::new("t", "bb")];
    let ids = ["I1".to_string(), "I2".to_string()];
    let batch = send_request("t", 0, &two, &ids).unwrap();
    assert_eq!(batch.code, code::SEND_BATCH_MESSAGE);
    assert_eq!(batch.ext("m"), Some("true"));
    let entries = decode_batch(batch.body.clone()).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(&entries[1].body[..], b"bb");
    assert_eq!(entries[1].properties[property::UNIQ_KEY], "I2");
}

fn queue() -> SendQueue {
    SendQueue {
        broker_name: "a".into(),
        queue_id: 2,
        addr: "10.0.0.1:1".into(),
    }
}

fn answer(code: i32, fields: &[(&str, &str)], remark: Option<&str>) -> RemotingCommand {
    RemotingCommand {
        code,
        remark: remark.map(str::to_string),
        ext_fields: fields.iter().copied().collect(),
        ..RemotingCommand::default()
    }
}

#[test]
fn a_stored_batch_has_consecutive_offsets_and_the_clients_ids() {
    let ok = answer(
        response::SUCCESS,
        &[("queueId", "2"), ("queueOffset", "40"), ("msgId", "X,Y")],
        None,
    );
    let ids = ["I1".to_string(), "I2".to_string()];
    let got = receipts(&ok, &queue(), &ids).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].message_id.as_str(), got[0].offset), ("I1", 40));
    assert_eq!((got[1].message_id.as_str(), got[1].offset), ("I2", 41));
    assert_eq!(got[1].broker_name, "a");
    assert_eq!(got[1].queue_id, 2);

    let scheduled = answer(
        response::SUCCESS,
        &[
            ("queueId", "2"),
            ("queueOffset", "7"),
            ("recallHandle", "H"),
        ],
        None,
    );
    let got = receipts(&scheduled, &queue(), &ids[..1]).unwrap();
    assert_eq!(got[0].recall_handle, "H");
}

#[test]
fn an_error_answer_is_the_servers_error_and_a_slaves_timeout_says_stored() {
    let missing = answer(response::TOPIC_NOT_EXIST, &[], Some("topic t"));
    let e = receipts(&missing, &queue(), &["I".into()]).unwrap_err();
    assert!(
        matches!(e, ClientError::Server(ApogeeError::TopicNotFound(_))),
        "{e}"
    );
    assert!(!may_resend(&e));

    let busy = answer(response::SYSTEM_BUSY, &[], Some("busy"));
    let e = receipts(&busy, &queue(), &["I".into()]).unwrap_err();
    assert!(
        matches!(e, ClientError::Server(ApogeeError::TooManyRequests(_))),
        "{e}"
    );

    let unreplicated = answer(
        response::FLUSH_SLAVE_TIMEOUT,
        &[("queueId", "2"), ("queueOffset", "1")],
        Some("no slave"),
    );
    let e = receipts(&unreplicated, &queue(), &["I".into()]).unwrap_err();
    assert!(e.is_stored_not_replicated(), "{e}");
    assert!(!may_resend(&e), "a stored message is never resent");

    let garbled = answer(
        response::SUCCESS,
        &[("queueId", "x"), ("queueOffset", "1")],
        None,
    );
    assert!(matches!(
        receipts(&garbled, &queue(), &["I".into()]),
        Err(ClientError::Transport(_))
    ));
}

#[test]
fn fifo_lite_and_priority_messages_stay_on_grpc() {
    assert!(carries(&Message::new("t", "b")));
    assert!(!carries(
        &Message::builder("t", "b").message_group("g").build()
    ));
    assert!(!carries(&Message::builder("t", "b").priority(1).build()));
    assert!(!carries(
        &Message::builder("t", "b").lite_topic("l").build()
    ));
}
