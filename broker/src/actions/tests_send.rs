//! The contract suite's send side: each scenario sends through both transports (gRPC
//! SendMessage, remoting SEND_MESSAGE_V2) and ends transactions through both (EndTransaction,
//! END_TRANSACTION), then reads through every read path of both; each transport's message
//! must come to the same outcome, because each is a thin decoding of one action
//! ([`Broker::send`], [`Broker::end_transaction`], [`Broker::pop`], [`Broker::pull`]).

use super::tests::{read, send_one, set_permission, v2_message, Outcome, Path, PATHS};
use super::tests_txn::{end, Ended, Named, Transport};
use crate::grpc::MessagingServer;
use crate::remoting::clients::tests::{remote, Remote, GROUP, TOPIC};
use crate::topics::{MessageKind, TopicPermission};
use crate::txn::Resolution;
use apogee_proto::group::GroupConfig;
use apogee_proto::remoting::codes::{request as code, response};
use apogee_proto::remoting::message::{properties_to_string, Properties};
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::time::{now_ms, timestamp};
use apogee_proto::v2::{Code, MessageType};
use apogee_server::remoting::Caller;

/// A send path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sender {
    Grpc,
    Remoting,
}

const SENDERS: [Sender; 2] = [Sender::Grpc, Sender::Remoting];

/// What a send came to, whatever the transport.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    /// Stored; a transaction's id when it is a half message.
    Stored { transaction_id: Option<String> },
    /// Refused: not permitted (FORBIDDEN, NO_PERMISSION).
    Forbidden,
    /// Any other answer, as the transport put it.
    Other(String),
}

/// What a message is, beyond its body (the message id too).
#[derive(Clone, Copy, Debug)]
enum Kind {
    Normal,
    /// Due this many ms from now.
    Delayed(i64),
    /// A transaction's half message.
    Half,
    /// A NORMAL message carrying [`TRACE_CONTEXT`].
    Traced,
}

/// A W3C `traceparent`, as the official clients write a producer's trace context.
const TRACE_CONTEXT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Sends `body` (also its message id) of `kind` to [`TOPIC`]'s queue 0 through `sender`.
async fn send(r: &Remote, grpc: &MessagingServer, sender: Sender, kind: Kind, body: &str) -> Sent {
    match sender {
        Sender::Grpc => {
            let (message_type, delivery_timestamp) = match kind {
                Kind::Normal | Kind::Traced => (MessageType::Normal, None),
                Kind::Delayed(ms) => (MessageType::Delay, Some(timestamp(now_ms() + ms))),
                Kind::Half => (MessageType::Transaction, None),
            };
            let mut message = v2_message(body, message_type, delivery_timestamp);
            if let (Kind::Traced, Some(system)) = (kind, message.system_properties.as_mut()) {
                system.trace_context = Some(TRACE_CONTEXT.into());
            }
            let answer = send_one(grpc, message).await;
            let code = answer.status.as_ref().map_or(0, |s| s.code);
            match Code::try_from(code) {
                Ok(Code::Ok) => Sent::Stored {
                    transaction_id: matches!(kind, Kind::Half)
                        .then(|| answer.entries[0].transaction_id.clone()),
                },
                Ok(Code::Forbidden) => Sent::Forbidden,
                other => Sent::Other(format!("{other:?}")),
            }
        }
        Sender::Remoting => {
            let mut properties: Properties = [("UNIQ_KEY", body), ("PGROUP", "producers")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            match kind {
                Kind::Normal => {}
                Kind::Delayed(ms) => {
                    let due = (now_ms() + ms).to_string();
                    properties.insert("__STARTDELIVERTIME".into(), due);
                }
                Kind::Half => {
                    properties.insert("TRAN_MSG".into(), "true".into());
                }
                Kind::Traced => {
                    properties.insert("TRACE_CONTEXT".into(), TRACE_CONTEXT.into());
                }
            }
            let request = RemotingCommand::request(code::SEND_MESSAGE_V2)
                .with_ext("a", "producers")
                .with_ext("b", TOPIC)
                .with_ext("c", "TBW102")
                .with_ext("d", 4)
                .with_ext("e", 0)
                .with_ext("f", 0)
                .with_ext("g", now_ms())
                .with_ext("h", 0)
                .with_ext("i", properties_to_string(&properties))
                .with_ext("j", 0)
                .with_ext("k", false)
                .with_body(body.as_bytes().to_vec());
            let c = r.connect();
            let answer = crate::remoting::send::send_message(
                &r.broker,
                &c.conn,
                &Caller::default(),
                request,
            )
            .await;
            match answer.code {
                response::SUCCESS => Sent::Stored {
                    transaction_id: matches!(kind, Kind::Half)
                        .then(|| answer.ext("transactionId").unwrap_or("").to_string()),
                },
                response::NO_PERMISSION => Sent::Forbidden,
                other => Sent::Other(format!("{other}: {:?}", answer.remark)),
            }
        }
    }
}

/// Commits the half message `body` (its transaction `id`) through `sender`.
async fn commit(r: &Remote, grpc: &MessagingServer, sender: Sender, body: &str, id: &str) {
    let transport = match sender {
        Sender::Grpc => Transport::Grpc,
        Sender::Remoting => Transport::Remoting,
    };
    let named = Named {
        transaction_id: id,
        body,
        topic: TOPIC,
    };
    let anyone = &Caller::default();
    let ended = end(r, grpc, transport, anyone, named, Resolution::Commit, false).await;
    assert_eq!(ended, Ended::Done, "{sender:?}");
}

/// A broker whose [`TOPIC`] (one queue) takes NORMAL, DELAY and TRANSACTION messages.
fn broker() -> (Remote, MessagingServer) {
    let r = remote(1);
    let mut config = r.broker.topics().get(TOPIC).expect("the topic");
    config = config.with_kinds(&[
        MessageKind::Normal,
        MessageKind::Delay,
        MessageKind::Transaction,
    ]);
    r.broker.topics().update(config).expect("types changed");
    let grpc = MessagingServer::new(r.broker.clone());
    (r, grpc)
}

/// What every read path of both transports reads of [`TOPIC`], each as a group of its own
/// (named after `scene`), so that one path's pop does not hide a message from the next.
async fn read_everywhere(r: &Remote, grpc: &MessagingServer, scene: &str) -> Vec<(Path, Outcome)> {
    let mut outcomes = Vec::new();
    for path in PATHS {
        let group = format!("{GROUP}-{scene}-{path:?}");
        r.broker
            .groups()
            .create(GroupConfig::with_defaults(&group))
            .expect("group created");
        outcomes.push((path, read(r, grpc, path, &group).await));
    }
    outcomes
}

fn everywhere(outcome: impl Fn() -> Outcome) -> Vec<(Path, Outcome)> {
    PATHS.into_iter().map(|p| (p, outcome())).collect()
}

/// A message sent over either transport is stored alike: every read path reads both, in
/// the order sent, and the broker's metrics count both (a remoting send once went
/// uncounted).
#[tokio::test]
async fn a_send_is_stored_and_counted_alike_over_both_transports() {
    let (r, grpc) = broker();
    for (sender, body) in SENDERS.into_iter().zip(["by-grpc", "by-remoting"]) {
        let sent = send(&r, &grpc, sender, Kind::Normal, body).await;
        assert_eq!(
            sent,
            Sent::Stored {
                transaction_id: None
            },
            "{sender:?}"
        );
    }
    assert_eq!(r.broker.metrics().stored_count(TOPIC), 2);
    let read = || Outcome::Read(vec!["by-grpc".into(), "by-remoting".into()]);
    assert_eq!(read_everywhere(&r, &grpc, "sent").await, everywhere(read));
}

/// A producer's trace context reaches the consumers of both transports whichever sent it:
/// a v2 consumer reads it as `system_properties.trace_context`, a remoting consumer as the
/// property `TRACE_CONTEXT` (as RocketMQ's proxy keeps it), never as a user property.
#[tokio::test]
async fn a_trace_context_reaches_the_consumers_of_both_transports() {
    use apogee_proto::remoting::message::MessageExt;
    use apogee_proto::v2::receive_message_response::Content;
    let (r, grpc) = broker();
    for (sender, body) in SENDERS.into_iter().zip(["by-grpc", "by-remoting"]) {
        let sent = send(&r, &grpc, sender, Kind::Traced, body).await;
        assert!(matches!(sent, Sent::Stored { .. }), "{sender:?}: {sent:?}");
    }
    send(&r, &grpc, Sender::Grpc, Kind::Normal, "untraced").await;
    let received: Vec<(String, Option<String>, bool)> = super::tests::receive(&grpc, GROUP, 16)
        .await
        .into_iter()
        .filter_map(|c| match c {
            Content::Message(m) => Some((
                String::from_utf8_lossy(&m.body).into_owned(),
                m.system_properties.and_then(|p| p.trace_context),
                m.user_properties.contains_key("TRACE_CONTEXT"),
            )),
            _ => None,
        })
        .collect();
    let traced = Some(TRACE_CONTEXT.to_string());
    assert_eq!(
        received,
        [
            ("by-grpc".into(), traced.clone(), false),
            ("by-remoting".into(), traced.clone(), false),
            ("untraced".into(), None, false),
        ]
    );
    let answer = super::tests::remoting_pull(&r, GROUP).await;
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    let pulled: Vec<(String, Option<String>)> = MessageExt::decode_all(answer.body.clone())
        .expect("stored-message layout")
        .into_iter()
        .map(|m| {
            let body = String::from_utf8_lossy(&m.body).into_owned();
            (body, m.properties.get("TRACE_CONTEXT").cloned())
        })
        .collect();
    assert_eq!(
        pulled,
        [
            ("by-grpc".into(), traced.clone()),
            ("by-remoting".into(), traced),
            ("untraced".into(), None),
        ]
    );
}

/// A topic's permission decides every send alike: a read-only topic, or one with no
/// permission, refuses both transports' sends; a writable one stores both.
#[tokio::test]
async fn a_topics_permission_decides_every_send_alike() {
    let (r, grpc) = broker();
    let table = [
        (TopicPermission::Read, false),
        (TopicPermission::None, false),
        (TopicPermission::Write, true),
        (TopicPermission::ReadWrite, true),
    ];
    for (permission, stores) in table {
        set_permission(&r, permission);
        for sender in SENDERS {
            let body = format!("{sender:?}-{permission:?}");
            let expected = if stores {
                Sent::Stored {
                    transaction_id: None,
                }
            } else {
                Sent::Forbidden
            };
            let sent = send(&r, &grpc, sender, Kind::Normal, &body).await;
            assert_eq!(sent, expected, "{sender:?} to a {permission:?} topic");
        }
    }
    assert_eq!(r.broker.queue_bounds(TOPIC, 0).unwrap(), (0, 4));
}

/// A delayed message, over either transport, waits in the schedule: no read path of either
/// transport hands it out before it is due.
#[tokio::test]
async fn a_delayed_message_is_hidden_on_every_read_path_until_due() {
    let (r, grpc) = broker();
    for (sender, body) in SENDERS.into_iter().zip(["later-grpc", "later-remoting"]) {
        let sent = send(&r, &grpc, sender, Kind::Delayed(3_600_000), body).await;
        assert_eq!(
            sent,
            Sent::Stored {
                transaction_id: None
            },
            "{sender:?}"
        );
    }
    assert_eq!(
        read_everywhere(&r, &grpc, "delayed").await,
        everywhere(|| Outcome::Nothing)
    );
    // A message due now is read at once alongside: the wait is the delay's, not the path's.
    send(&r, &grpc, Sender::Grpc, Kind::Normal, "now").await;
    assert_eq!(
        read_everywhere(&r, &grpc, "after").await,
        everywhere(|| Outcome::Read(vec!["now".into()]))
    );
}

/// A half message, sent over either transport, is hidden from every read path until it is
/// committed, and either transport commits either transport's half: its transaction id is
/// the broker's, not the transport's.
#[tokio::test]
async fn a_half_message_is_hidden_until_either_transport_commits_it() {
    let (r, grpc) = broker();
    let mut halves = Vec::new();
    for (sender, body) in SENDERS.into_iter().zip(["half-grpc", "half-remoting"]) {
        let Sent::Stored {
            transaction_id: Some(id),
        } = send(&r, &grpc, sender, Kind::Half, body).await
        else {
            panic!("{sender:?}: a half message is stored with its transaction id");
        };
        assert!(!id.is_empty(), "{sender:?}");
        halves.push((sender, body, id));
    }
    assert_eq!(
        read_everywhere(&r, &grpc, "halves").await,
        everywhere(|| Outcome::Nothing)
    );
    // Each half is committed through the other transport.
    for (sender, body, id) in &halves {
        let other = if *sender == Sender::Grpc {
            Sender::Remoting
        } else {
            Sender::Grpc
        };
        commit(&r, &grpc, other, body, id).await;
    }
    let committed = || Outcome::Read(vec!["half-grpc".into(), "half-remoting".into()]);
    assert_eq!(
        read_everywhere(&r, &grpc, "committed").await,
        everywhere(committed)
    );
}
