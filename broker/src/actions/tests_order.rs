//! The contract suite's ordering rules: the same scenario through gRPC ReceiveMessage and
//! remoting POP_MESSAGE comes to the same outcome, because both are a thin decoding of the
//! pop action ([`Broker::pop`]), which holds the rules:
//!
//! - FIFO: a message group's next message is not handed out while the one before it is in
//!   flight, and is once that one is acked;
//! - priority: a PRIORITY topic's higher priorities are handed out first, FIFO within one
//!   (`consume::priority`);
//! - the handback gate: a restarted master that has had slaves serves no receive until its
//!   slave has handed back the consume state it served meanwhile (or the wait ran out).
//!
//! A remoting pop names no queue (queueId -1, what RocketMQ's pop consumers send); a gRPC
//! receive names the queue of its assignment, from which the pop looks at every queue.

use super::tests::{of_code, of_remoting, receive, send_one, v2_message, Outcome};
use super::tests_txn::{Transport, TRANSPORTS};
use crate::grpc::MessagingServer;
use crate::remoting::clients::tests::{remote, Remote, GROUP, TOPIC};
use crate::remoting::pop::POP_CK;
use crate::services::{Broker, Foundation};
use crate::topics::MessageKind;
use apogee_proto::group::GroupConfig;
use apogee_proto::remoting::codes::{request as code, response};
use apogee_proto::remoting::message::MessageExt;
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::v2::{self, messaging_service_server::MessagingService, Code, MessageType};
use apogee_server::remoting::Caller;
use std::collections::HashMap;
use tonic::Request;

/// A broker whose [`TOPIC`] has `queues` queues and takes `kinds` (the one place this file
/// makes a topic).
fn broker_with_topic(queues: u32, kinds: &[MessageKind]) -> (Remote, MessagingServer) {
    let r = remote(queues);
    let config = r
        .broker
        .topics()
        .get(TOPIC)
        .expect("the topic")
        .with_kinds(kinds);
    r.broker.topics().update(config).expect("types changed");
    let grpc = MessagingServer::new(r.broker.clone());
    (r, grpc)
}

/// Creates consumer group `group` (FIFO when `fifo`).
fn create_group(r: &Remote, group: &str, fifo: bool) {
    let config = GroupConfig {
        fifo,
        ..GroupConfig::with_defaults(group)
    };
    r.broker.groups().create(config).expect("group created");
}

/// Sends `message` over gRPC; it must be stored.
async fn send(grpc: &MessagingServer, message: v2::Message) {
    let answer = send_one(grpc, message).await;
    assert_eq!(answer.status.map(|s| s.code), Some(Code::Ok as i32));
}

/// What a pop came to, with the token that answers each message it handed out (gRPC's
/// receipt handle, remoting's extra info), by body.
struct Popped {
    outcome: Outcome,
    tokens: HashMap<String, String>,
}

/// Pops up to `batch` messages of [`TOPIC`] for `group` through `transport`, without
/// waiting (30 s invisible).
async fn pop(
    r: &Remote,
    grpc: &MessagingServer,
    transport: Transport,
    group: &str,
    batch: i32,
) -> Popped {
    let mut tokens = HashMap::new();
    let outcome = match transport {
        Transport::Grpc => {
            use v2::receive_message_response::Content;
            let (mut bodies, mut code) = (Vec::new(), None);
            for content in receive(grpc, group, batch).await {
                match content {
                    Content::Message(m) => {
                        let body = String::from_utf8_lossy(&m.body).into_owned();
                        let properties = m.system_properties.expect("system properties");
                        let handle = properties.receipt_handle.expect("a receipt handle");
                        tokens.insert(body.clone(), handle);
                        bodies.push(body);
                    }
                    Content::Status(s) => code = Some(Code::try_from(s.code).expect("a code")),
                    _ => {}
                }
            }
            of_code(code.expect("one status"), bodies)
        }
        Transport::Remoting => {
            let request = RemotingCommand::request(code::POP_MESSAGE)
                .with_ext("consumerGroup", group)
                .with_ext("topic", TOPIC)
                .with_ext("queueId", -1)
                .with_ext("maxMsgNums", batch)
                .with_ext("invisibleTime", 30_000)
                .with_ext("pollTime", 0);
            let c = r.connect();
            let caller = Caller::default();
            let answer =
                crate::remoting::pop::pop_message(&r.broker, &c.conn, &caller, &request).await;
            if answer.code == response::SUCCESS {
                for m in MessageExt::decode_all(answer.body.clone()).expect("messages") {
                    let body = String::from_utf8_lossy(&m.body).into_owned();
                    tokens.insert(body, m.properties[POP_CK].clone());
                }
            }
            of_remoting(&answer)
        }
    };
    Popped { outcome, tokens }
}

/// Acks the message a pop handed out with `token` through `transport`; it must be done.
async fn ack(r: &Remote, grpc: &MessagingServer, transport: Transport, group: &str, token: &str) {
    match transport {
        Transport::Grpc => {
            let request = v2::AckMessageRequest {
                group: super::tests::resource(group),
                topic: super::tests::resource(TOPIC),
                entries: vec![v2::AckMessageEntry {
                    receipt_handle: token.into(),
                    ..Default::default()
                }],
            };
            let answer = grpc
                .ack_message(Request::new(request))
                .await
                .expect("a v2 answer")
                .into_inner();
            assert_eq!(answer.status.map(|s| s.code), Some(Code::Ok as i32));
        }
        Transport::Remoting => {
            let request = RemotingCommand::request(code::ACK_MESSAGE)
                .with_ext("consumerGroup", group)
                .with_ext("topic", TOPIC)
                .with_ext("queueId", 0)
                .with_ext("offset", 0)
                .with_ext("extraInfo", token);
            let answer = crate::remoting::pop::ack_message(&r.broker, &Caller::default(), &request);
            assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
        }
    }
}

fn read(bodies: &[&str]) -> Outcome {
    Outcome::Read(bodies.iter().map(|b| b.to_string()).collect())
}

/// A step of a FIFO scenario.
enum Step {
    /// A pop of up to 16 hands out this.
    Pop(Outcome),
    /// The message with this body is acked.
    Ack(&'static str),
}

/// A FIFO group gets one message of each message group at a time, over both transports
/// alike: the next one of a group only once the one before it is acked.
#[tokio::test]
async fn a_message_groups_next_message_waits_for_the_ack_of_the_one_before_alike() {
    let sent = [
        ("a1", "A"),
        ("b1", "B"),
        ("a2", "A"),
        ("b2", "B"),
        ("a3", "A"),
    ];
    let steps = [
        Step::Pop(read(&["a1", "b1"])),
        Step::Pop(Outcome::Nothing),
        Step::Ack("a1"),
        Step::Pop(read(&["a2"])),
        Step::Pop(Outcome::Nothing),
        Step::Ack("b1"),
        Step::Ack("a2"),
        Step::Pop(read(&["b2", "a3"])),
    ];
    for transport in TRANSPORTS {
        let (r, grpc) = broker_with_topic(1, &[MessageKind::Fifo]);
        let group = format!("{GROUP}-fifo");
        create_group(&r, &group, true);
        for (body, message_group) in sent {
            let mut message = v2_message(body, MessageType::Fifo, None);
            let properties = message.system_properties.as_mut().expect("properties");
            properties.message_group = Some(message_group.into());
            send(&grpc, message).await;
        }
        let mut tokens = HashMap::new();
        for (n, step) in steps.iter().enumerate() {
            match step {
                Step::Pop(expected) => {
                    let popped = pop(&r, &grpc, transport, &group, 16).await;
                    assert_eq!(&popped.outcome, expected, "{transport:?}, step {n}");
                    tokens.extend(popped.tokens);
                }
                Step::Ack(body) => ack(&r, &grpc, transport, &group, &tokens[*body]).await,
            }
        }
    }
}

/// On a PRIORITY topic the highest priority is handed out first, then the next, each level
/// in the order sent, over both transports alike, whether one pop takes the backlog or pops
/// take one message each; a priority past the top queue counts as the top one.
#[tokio::test]
async fn a_priority_topic_hands_out_its_highest_priority_first_alike() {
    let sent = [
        ("p0-a", 0),
        ("p1-a", 1),
        ("p2-a", 2),
        ("p0-b", 0),
        ("p9", 9),
        ("p2-b", 2),
    ];
    let expected = ["p2-a", "p9", "p2-b", "p1-a", "p0-a", "p0-b"];
    for batch in [16, 1] {
        for transport in TRANSPORTS {
            let (r, grpc) = broker_with_topic(3, &[MessageKind::Priority]);
            let group = format!("{GROUP}-priority");
            create_group(&r, &group, false);
            for (body, priority) in sent {
                let mut message = v2_message(body, MessageType::Priority, None);
                let properties = message.system_properties.as_mut().expect("properties");
                properties.priority = Some(priority);
                send(&grpc, message).await;
            }
            let mut handed_out = Vec::new();
            loop {
                match pop(&r, &grpc, transport, &group, batch).await.outcome {
                    Outcome::Read(bodies) => handed_out.extend(bodies),
                    Outcome::Nothing => break,
                    other => panic!("{transport:?}, batch {batch}: {other:?}"),
                }
            }
            assert_eq!(handed_out, expected, "{transport:?}, batch {batch}");
        }
    }
}

/// A broker of one queue holding "m1", restarted as a master that has had slaves: its
/// handback gate is closed (and stays closed for the default `handback_wait_ms`).
async fn restarted_master_that_had_slaves() -> (Remote, MessagingServer) {
    let (mut r, grpc) = broker_with_topic(1, &[MessageKind::Normal]);
    send(&grpc, v2_message("m1", MessageType::Normal, None)).await;
    r.broker.replication().slave_connected(1, "10.0.0.2:10912");
    let context = r.broker.replication_context();
    let restarted = Foundation {
        store: context.store.clone(),
        journal: context.targets.journal.clone(),
        cluster_secret: None,
        directory: None,
    };
    r.broker = Broker::build((*context.config).clone(), restarted).expect("restarted");
    assert!(r.broker.replication().handback_pending());
    let grpc = MessagingServer::new(r.broker.clone());
    (r, grpc)
}

/// A restarted master that has had slaves serves no receive over either transport until its
/// handback gate opens (a slave handed back its consume state, or the wait ran out), and then
/// serves both alike; the message held back is not lost.
#[tokio::test]
async fn the_handback_gate_holds_back_receives_until_it_opens_alike() {
    for transport in TRANSPORTS {
        let (r, grpc) = restarted_master_that_had_slaves().await;
        let group = format!("{GROUP}-handback");
        create_group(&r, &group, false);
        let table = [(false, Outcome::Nothing), (true, read(&["m1"]))];
        for (open, expected) in table {
            if open {
                // What the gate's opening does, whichever way it opens.
                r.broker.replication().became_master();
            }
            let popped = pop(&r, &grpc, transport, &group, 16).await;
            assert_eq!(popped.outcome, expected, "{transport:?}, gate open: {open}");
        }
    }
}
