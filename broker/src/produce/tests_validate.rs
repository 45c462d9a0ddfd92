//! The send validation table: every way a request or a message on its own is refused, with
//! the protocol code it gets and a fragment of the reason, checked against the limits of a
//! default broker config; and the messages that pass, with what they pass as.

use super::validate::{self, SendLimits, Valid};
use super::Outgoing;
use crate::config::BrokerConfig;
use apogee_proto::time::timestamp;
use apogee_proto::v2::{Code, Encoding, MessageType};
use apogee_proto::{limits, message_id, names};
use bytes::Bytes;

const NOW: i64 = 1_795_612_000_000;

fn limits() -> SendLimits {
    SendLimits::of(&BrokerConfig::default())
}

/// A valid NORMAL message of topic `orders`.
fn message() -> Outgoing {
    Outgoing {
        topic: "orders".into(),
        has_system_properties: true,
        message_id: "01A2B3C4D5E6F7".into(),
        tag: Some("paid".into()),
        keys: vec!["order-1".into()],
        message_type: MessageType::Normal as i32,
        body_encoding: Encoding::Identity as i32,
        properties: vec![("amount".into(), "42".into())],
        body: Bytes::from_static(b"order 1 paid"),
        ..Outgoing::default()
    }
}

fn with(change: impl FnOnce(&mut Outgoing)) -> Outgoing {
    let mut m = message();
    change(&mut m);
    m
}

fn in_a_minute() -> Option<prost_types::Timestamp> {
    Some(timestamp(NOW + 60_000))
}

/// What a refused case expects.
struct Refused {
    case: &'static str,
    message: Outgoing,
    code: Code,
    /// A fragment of the error's text.
    says: &'static str,
}

fn refused(case: &'static str, message: Outgoing, code: Code, says: &'static str) -> Refused {
    Refused {
        case,
        message,
        code,
        says,
    }
}

fn refused_messages() -> Vec<Refused> {
    let max_body = limits().max_body_bytes;
    vec![
        refused(
            "topic with bad characters",
            with(|m| m.topic = "bad topic!".into()),
            Code::IllegalTopic,
            "may only contain",
        ),
        refused(
            "topic of 128 characters",
            with(|m| m.topic = "t".repeat(128)),
            Code::IllegalTopic,
            "128 characters, the limit is 127",
        ),
        refused(
            "no topic",
            with(|m| m.topic.clear()),
            Code::IllegalTopic,
            "empty",
        ),
        refused(
            "retry topic",
            with(|m| m.topic = "%RETRY%some-group".into()),
            Code::Forbidden,
            "is a system topic",
        ),
        refused(
            "half-message topic",
            with(|m| m.topic = "RMQ_SYS_TRANS_HALF_TOPIC".into()),
            Code::Forbidden,
            "is a system topic",
        ),
        refused(
            "no system properties",
            with(|m| m.has_system_properties = false),
            Code::BadRequest,
            "no system properties",
        ),
        refused(
            "no message id",
            with(|m| m.message_id.clear()),
            Code::IllegalMessageId,
            "letters, digits",
        ),
        refused(
            "message id with a space",
            with(|m| m.message_id = "order 1".into()),
            Code::IllegalMessageId,
            "\"order 1\"",
        ),
        refused(
            "message id over 128 characters",
            with(|m| m.message_id = "A".repeat(message_id::MAX_MESSAGE_ID_LEN + 1)),
            Code::IllegalMessageId,
            "1 to 128",
        ),
        refused(
            "empty body",
            with(|m| m.body = Bytes::new()),
            Code::MessageBodyEmpty,
            "empty",
        ),
        refused(
            "body one byte over max_body_bytes (4 MiB)",
            with(|m| m.body = Bytes::from(vec![b'x'; max_body + 1])),
            Code::MessageBodyTooLarge,
            "4194305 bytes exceeds the limit of 4194304",
        ),
        refused(
            "blank tag",
            with(|m| m.tag = Some("  ".into())),
            Code::IllegalMessageTag,
            "blank",
        ),
        refused(
            "empty tag",
            with(|m| m.tag = Some(String::new())),
            Code::IllegalMessageTag,
            "blank",
        ),
        refused(
            "tag with the filter separator",
            with(|m| m.tag = Some("a|b".into())),
            Code::IllegalMessageTag,
            "'|'",
        ),
        refused(
            "tag of 256 characters",
            with(|m| m.tag = Some("t".repeat(limits::MAX_TAG_LEN + 1))),
            Code::IllegalMessageTag,
            "256 characters, the limit is 255",
        ),
        refused(
            "blank key",
            with(|m| m.keys.push(" ".into())),
            Code::IllegalMessageKey,
            "non-blank",
        ),
        refused(
            "key with a control character",
            with(|m| m.keys.push("order\n2".into())),
            Code::IllegalMessageKey,
            "control characters",
        ),
        refused(
            "key of 256 characters",
            with(|m| m.keys.push("k".repeat(limits::MAX_KEY_LEN + 1))),
            Code::IllegalMessageKey,
            "at most 255",
        ),
        refused(
            "129 user properties",
            with(|m| {
                m.properties = (0..=limits::MAX_PROPERTY_COUNT)
                    .map(|i| (format!("p{i:03}"), "v".into()))
                    .collect()
            }),
            Code::MessagePropertiesTooLarge,
            "129 user properties, the limit is 128",
        ),
        refused(
            "properties, keys and tag over 16 KiB",
            with(|m| m.properties = vec![("big".into(), "v".repeat(limits::MAX_PROPERTIES_BYTES))]),
            Code::MessagePropertiesTooLarge,
            "bytes of properties, keys, tag and trace context; the limit is 16384",
        ),
        refused(
            "a trace context that takes properties over 16 KiB",
            with(|m| m.trace_context = Some("0".repeat(limits::MAX_PROPERTIES_BYTES))),
            Code::MessagePropertiesTooLarge,
            "bytes of properties, keys, tag and trace context; the limit is 16384",
        ),
        refused(
            "empty property key",
            with(|m| m.properties.insert(0, (String::new(), "v".into()))),
            Code::IllegalMessagePropertyKey,
            "property key \"\"",
        ),
        refused(
            "property key with a control character",
            with(|m| m.properties.push(("a\u{7}b".into(), "v".into()))),
            Code::IllegalMessagePropertyKey,
            "control characters",
        ),
        refused(
            "unknown message type",
            with(|m| m.message_type = 99),
            Code::BadRequest,
            "unknown message type 99",
        ),
        refused(
            "unknown body encoding",
            with(|m| m.body_encoding = 7),
            Code::BadRequest,
            "unknown body encoding 7",
        ),
        refused(
            "DELAY message without a delivery timestamp",
            with(|m| m.message_type = MessageType::Delay as i32),
            Code::IllegalDeliveryTime,
            "needs a delivery timestamp",
        ),
        refused(
            "NORMAL message with a delivery timestamp",
            with(|m| m.delivery_timestamp = in_a_minute()),
            Code::MessagePropertyConflictWithType,
            "a NORMAL message cannot have a delivery timestamp",
        ),
        refused(
            "FIFO message with a delivery timestamp",
            with(|m| {
                m.message_type = MessageType::Fifo as i32;
                m.message_group = Some("order-1".into());
                m.delivery_timestamp = in_a_minute();
            }),
            Code::MessagePropertyConflictWithType,
            "a FIFO message cannot have",
        ),
        refused(
            "TRANSACTION message with a delivery timestamp",
            with(|m| {
                m.message_type = MessageType::Transaction as i32;
                m.delivery_timestamp = in_a_minute();
            }),
            Code::MessagePropertyConflictWithType,
            "a TRANSACTION message cannot have",
        ),
    ]
}

#[test]
fn every_invalid_message_is_refused_with_its_code_and_reason() {
    let limits = limits();
    let cases = refused_messages();
    for c in &cases {
        let got = validate::message(&limits, &c.message, NOW)
            .expect_err(&format!("{}: accepted", c.case));
        assert_eq!(got.code(), c.code, "{}: {got}", c.case);
        assert!(
            got.to_string().contains(c.says),
            "{}: {got:?} does not say {:?}",
            c.case,
            c.says
        );
    }
    assert!(cases.len() >= 28, "the table lost rows");
}

#[test]
fn every_oversized_request_is_refused_as_a_whole() {
    let max_body = limits().max_body_bytes;
    let cases = [
        (
            "no messages",
            Vec::new(),
            Code::BadRequest,
            "no messages in the request",
        ),
        (
            "1025 messages",
            vec![message(); limits::MAX_BATCH_MESSAGES + 1],
            Code::PayloadTooLarge,
            "1025 messages in one request, the limit is 1024",
        ),
        (
            "bodies over 16 MiB together",
            // Each body within max_body_bytes; five of them over the request limit.
            vec![with(|m| m.body = Bytes::from(vec![b'x'; max_body])); 5],
            Code::PayloadTooLarge,
            "bytes of bodies in one request, the limit is 16777216",
        ),
    ];
    for (case, messages, code, says) in cases {
        let got = validate::request(&messages).expect_err(case);
        assert_eq!(got.code(), code, "{case}: {got}");
        assert!(got.to_string().contains(says), "{case}: {got}");
    }
    let at_the_limits = vec![message(); limits::MAX_BATCH_MESSAGES];
    validate::request(&at_the_limits).expect("1024 messages");
    let four_bodies = vec![with(|m| m.body = Bytes::from(vec![b'x'; max_body])); 4];
    validate::request(&four_bodies).expect("16 MiB of bodies");
}

#[test]
fn valid_messages_pass_with_the_type_they_are_treated_as() {
    let limits = limits();
    let max_body = limits.max_body_bytes;
    let delay_until = |ms: i64| Some(timestamp(ms));
    let cases: Vec<(&str, Outgoing, Valid)> = vec![
        (
            "NORMAL",
            message(),
            Valid {
                message_type: MessageType::Normal,
                delivery_ms: None,
            },
        ),
        (
            "no type, no delivery time (NORMAL once admitted)",
            with(|m| m.message_type = MessageType::Unspecified as i32),
            Valid {
                message_type: MessageType::Unspecified,
                delivery_ms: None,
            },
        ),
        (
            "no type with a delivery time is DELAY",
            with(|m| {
                m.message_type = MessageType::Unspecified as i32;
                m.delivery_timestamp = delay_until(NOW + 60_000);
            }),
            Valid {
                message_type: MessageType::Delay,
                delivery_ms: Some(NOW + 60_000),
            },
        ),
        (
            "DELAY with milliseconds in the seconds field (the official Python client)",
            with(|m| {
                m.message_type = MessageType::Delay as i32;
                m.delivery_timestamp = Some(prost_types::Timestamp {
                    seconds: NOW + 60_000,
                    nanos: 0,
                });
            }),
            Valid {
                message_type: MessageType::Delay,
                delivery_ms: Some(NOW + 60_000),
            },
        ),
        (
            "body of exactly max_body_bytes, gzip, no tag, no keys",
            with(|m| {
                m.body = Bytes::from(vec![b'x'; max_body]);
                m.body_encoding = Encoding::Gzip as i32;
                m.tag = None;
                m.keys.clear();
            }),
            Valid {
                message_type: MessageType::Normal,
                delivery_ms: None,
            },
        ),
        (
            "128 user properties",
            with(|m| {
                m.properties = (0..limits::MAX_PROPERTY_COUNT)
                    .map(|i| (format!("p{i:03}"), "v".into()))
                    .collect()
            }),
            Valid {
                message_type: MessageType::Normal,
                delivery_ms: None,
            },
        ),
    ];
    for (case, m, want) in cases {
        let got = validate::message(&limits, &m, NOW).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(got, want, "{case}");
    }
}

#[test]
fn the_trace_topic_is_the_one_system_topic_clients_write_and_only_with_trace_on() {
    let trace = with(|m| m.topic = names::TRACE_TOPIC.into());
    let on = limits();
    assert!(on.trace_enabled, "trace is on by default");
    validate::message(&on, &trace, NOW).expect("a trace record where trace is on");
    let off = SendLimits {
        trace_enabled: false,
        ..on
    };
    let got = validate::message(&off, &trace, NOW).expect_err("a trace record where trace is off");
    assert_eq!(got.code(), Code::Forbidden, "{got}");
    assert!(
        got.to_string()
            .contains("message trace is off on this broker (trace.enabled = false)"),
        "{got}"
    );
    // Trace on opens that topic only.
    for other in [
        "RMQ_SYS_TRANS_HALF_TOPIC",
        "RMQ_SYS_TRACE_TOPIC2",
        "%RETRY%g",
    ] {
        let got = validate::message(&on, &with(|m| m.topic = other.into()), NOW).expect_err(other);
        assert!(
            got.to_string().contains("is a system topic"),
            "{other}: {got}"
        );
    }
}
