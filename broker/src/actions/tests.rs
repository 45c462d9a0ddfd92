//! The contract suite: each scenario runs through every read path of both transports (gRPC
//! ReceiveMessage and PullMessage, remoting POP_MESSAGE and PULL_MESSAGE) over one broker on
//! the in-memory index, and every path must come to the same outcome, because each is a thin
//! decoding of one action ([`Broker::pop`], [`Broker::pull`]).

use crate::grpc::MessagingServer;
use crate::remoting::clients::tests::{remote, Remote, GROUP, TOPIC};
use crate::topics::{TopicConfig, TopicPermission};
use apogee_proto::group::GroupConfig;
use apogee_proto::remoting::codes::{request as code, response};
use apogee_proto::remoting::message::MessageExt;
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::v2::{self, messaging_service_server::MessagingService, Code};
use apogee_server::remoting::Caller;
use futures::StreamExt;
use tonic::Request;

/// A read path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Path {
    GrpcReceive,
    GrpcPull,
    RemotingPop,
    RemotingPull,
}

pub(super) const PATHS: [Path; 4] = [
    Path::GrpcReceive,
    Path::GrpcPull,
    Path::RemotingPop,
    Path::RemotingPull,
];

/// What a read came to, whatever the transport.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The bodies of the messages handed out.
    Read(Vec<String>),
    /// Nothing to hand out.
    Nothing,
    /// Refused: not permitted (FORBIDDEN, NO_PERMISSION).
    Forbidden,
    /// Refused: no such topic (TOPIC_NOT_FOUND, TOPIC_NOT_EXIST).
    NoTopic,
    /// Any other answer, as the transport put it.
    Other(String),
}

pub(super) fn resource(name: &str) -> Option<v2::Resource> {
    Some(v2::Resource {
        name: name.into(),
        ..Default::default()
    })
}

pub(super) fn queue(topic: &str) -> Option<v2::MessageQueue> {
    Some(v2::MessageQueue {
        topic: resource(topic),
        id: 0,
        ..Default::default()
    })
}

/// A v2 message to [`TOPIC`] whose body and message id are `id`, of `message_type`, due at
/// `delivery` when it is a DELAY message.
pub(super) fn v2_message(
    id: &str,
    message_type: v2::MessageType,
    delivery: Option<prost_types::Timestamp>,
) -> v2::Message {
    v2::Message {
        topic: resource(TOPIC),
        system_properties: Some(v2::SystemProperties {
            message_id: id.into(),
            message_type: message_type as i32,
            body_encoding: v2::Encoding::Identity as i32,
            delivery_timestamp: delivery,
            ..Default::default()
        }),
        body: id.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

/// SendMessage of one message: the answer.
pub(super) async fn send_one(
    grpc: &MessagingServer,
    message: v2::Message,
) -> v2::SendMessageResponse {
    grpc.send_message(Request::new(v2::SendMessageRequest {
        messages: vec![message],
    }))
    .await
    .expect("a v2 answer")
    .into_inner()
}

/// Sends a NORMAL message `id` to [`TOPIC`] over gRPC; it must be stored.
pub(super) async fn send(grpc: &MessagingServer, id: &str) {
    let answer = send_one(grpc, v2_message(id, v2::MessageType::Normal, None)).await;
    assert_eq!(
        answer.status.as_ref().map(|s| s.code),
        Some(Code::Ok as i32)
    );
}

/// ReceiveMessage of up to `batch` messages of [`TOPIC`]'s queue 0 as `group` (30 s
/// invisible): what the answer's stream carried.
pub(super) async fn receive(
    grpc: &MessagingServer,
    group: &str,
    batch: i32,
) -> Vec<v2::receive_message_response::Content> {
    let request = v2::ReceiveMessageRequest {
        group: resource(group),
        message_queue: queue(TOPIC),
        batch_size: batch,
        invisible_duration: Some(apogee_proto::time::duration(
            std::time::Duration::from_secs(30),
        )),
        ..Default::default()
    };
    grpc.receive_message(Request::new(request))
        .await
        .expect("a v2 answer")
        .into_inner()
        .map(|e| e.expect("a stream entry").content.expect("content"))
        .collect()
        .await
}

pub(super) fn of_code(code: Code, bodies: Vec<String>) -> Outcome {
    match code {
        Code::Ok => Outcome::Read(bodies),
        Code::MessageNotFound => Outcome::Nothing,
        Code::Forbidden => Outcome::Forbidden,
        Code::TopicNotFound => Outcome::NoTopic,
        other => Outcome::Other(format!("{other:?}")),
    }
}

pub(super) fn of_remoting(answer: &RemotingCommand) -> Outcome {
    match answer.code {
        response::SUCCESS => Outcome::Read(
            MessageExt::decode_all(answer.body.clone())
                .expect("stored-message layout")
                .into_iter()
                .map(|m| String::from_utf8_lossy(&m.body).into_owned())
                .collect(),
        ),
        response::PULL_NOT_FOUND => Outcome::Nothing,
        response::NO_PERMISSION => Outcome::Forbidden,
        response::TOPIC_NOT_EXIST => Outcome::NoTopic,
        other => Outcome::Other(format!("{other}: {:?}", answer.remark)),
    }
}

/// Reads [`TOPIC`]'s queue 0 from offset 0 as `group` through `path`, without waiting.
pub(super) async fn read(r: &Remote, grpc: &MessagingServer, path: Path, group: &str) -> Outcome {
    let status_code = |s: &v2::Status| Code::try_from(s.code).expect("a known code");
    match path {
        Path::GrpcReceive => {
            use v2::receive_message_response::Content;
            let (mut bodies, mut code) = (Vec::new(), None);
            for content in receive(grpc, group, 16).await {
                match content {
                    Content::Message(m) => {
                        bodies.push(String::from_utf8_lossy(&m.body).into_owned())
                    }
                    Content::Status(s) => code = Some(status_code(&s)),
                    _ => {}
                }
            }
            of_code(code.expect("one status"), bodies)
        }
        Path::GrpcPull => {
            use v2::pull_message_response::Content;
            let request = v2::PullMessageRequest {
                group: resource(group),
                message_queue: queue(TOPIC),
                offset: 0,
                batch_size: 16,
                ..Default::default()
            };
            let entries: Vec<_> = grpc
                .pull_message(Request::new(request))
                .await
                .expect("a v2 answer")
                .into_inner()
                .collect()
                .await;
            let (mut bodies, mut code) = (Vec::new(), None);
            for e in entries {
                match e.expect("a stream entry").content {
                    Some(Content::Message(m)) => {
                        bodies.push(String::from_utf8_lossy(&m.body).into_owned())
                    }
                    Some(Content::Status(s)) => code = Some(status_code(&s)),
                    _ => {}
                }
            }
            of_code(code.expect("one status"), bodies)
        }
        Path::RemotingPop => {
            let request = RemotingCommand::request(code::POP_MESSAGE)
                .with_ext("consumerGroup", group)
                .with_ext("topic", TOPIC)
                .with_ext("queueId", 0)
                .with_ext("maxMsgNums", 16)
                .with_ext("invisibleTime", 30_000)
                .with_ext("pollTime", 0);
            let c = r.connect();
            let answer =
                crate::remoting::pop::pop_message(&r.broker, &c.conn, &Caller::default(), &request)
                    .await;
            of_remoting(&answer)
        }
        Path::RemotingPull => of_remoting(&remoting_pull(r, group).await),
    }
}

/// PULL_MESSAGE of up to 16 messages of [`TOPIC`]'s queue 0 from offset 0 as `group`: the
/// answer.
pub(super) async fn remoting_pull(r: &Remote, group: &str) -> RemotingCommand {
    let request = RemotingCommand::request(code::PULL_MESSAGE)
        .with_ext("consumerGroup", group)
        .with_ext("topic", TOPIC)
        .with_ext("queueId", 0)
        .with_ext("queueOffset", 0)
        .with_ext("maxMsgNums", 16)
        .with_ext("sysFlag", crate::remoting::pull::sys_flag::SUBSCRIPTION)
        .with_ext("subscription", "*")
        .with_ext("expressionType", "TAG");
    let c = r.connect();
    crate::remoting::pull::pull_message(&r.broker, &c.conn, &Caller::default(), &request).await
}

pub(super) fn set_permission(r: &Remote, permission: TopicPermission) {
    let mut config = r.broker.topics().get(TOPIC).expect("the topic");
    config.permission = permission;
    r.broker
        .topics()
        .update(config)
        .expect("permission changed");
}

/// A topic's permission decides every read path alike: a write-only topic, or one with no
/// permission, is refused on all four (RocketMQ refuses a read of a topic without the read
/// bit), and a readable one hands out what it holds on all four. Each path reads with a
/// fresh group, so that a pop's invisible time does not hide the message from the next path.
#[tokio::test]
async fn a_topics_permission_decides_every_read_path_alike() {
    let r = remote(1);
    let grpc = MessagingServer::new(r.broker.clone());
    send(&grpc, "m1").await;
    let table = [
        (TopicPermission::Write, Outcome::Forbidden),
        (TopicPermission::None, Outcome::Forbidden),
        (TopicPermission::Read, Outcome::Read(vec!["m1".into()])),
        (TopicPermission::ReadWrite, Outcome::Read(vec!["m1".into()])),
    ];
    for (permission, expected) in table {
        set_permission(&r, permission);
        for path in PATHS {
            // A fresh group per path and permission: each starts at the queue's beginning.
            let group = format!("{GROUP}-{path:?}-{permission:?}");
            r.broker
                .groups()
                .create(GroupConfig::with_defaults(&group))
                .expect("group created");
            let got = read(&r, &grpc, path, &group).await;
            assert_eq!(
                got, expected,
                "{path:?} of a topic whose permission is {permission:?}"
            );
        }
    }
}

/// A deletion that stopped after its config was gone (a crash before the consume state and
/// the index were dropped) is finished at the next start: the mark is found, the topic's
/// queues are emptied, and a topic made again under the name holds none of the old messages.
#[tokio::test]
async fn a_topic_deletion_interrupted_after_its_config_is_finished_at_start() {
    let r = remote(1);
    let grpc = MessagingServer::new(r.broker.clone());
    send(&grpc, "old").await;
    let broker = &r.broker;
    assert_eq!(broker.queue_bounds(TOPIC, 0).unwrap(), (0, 1));
    // The deletion's first write only: the config goes, the mark is written with it.
    broker.topics().delete(TOPIC).unwrap();
    assert_eq!(broker.topics().unfinished_deletes().unwrap(), vec![TOPIC]);

    assert_eq!(broker.finish_interrupted_topic_deletes().await.unwrap(), 1);
    assert!(broker.topics().unfinished_deletes().unwrap().is_empty());
    assert_eq!(broker.finish_interrupted_topic_deletes().await.unwrap(), 0);
    broker.topics().create(TopicConfig::new(TOPIC, 1)).unwrap();
    let group = format!("{GROUP}-after");
    broker
        .groups()
        .create(GroupConfig::with_defaults(&group))
        .unwrap();
    for path in PATHS {
        assert_eq!(
            read(&r, &grpc, path, &group).await,
            Outcome::Nothing,
            "{path:?} of the topic made again"
        );
    }
}

/// The whole deletion through the action: the topic is gone, no mark is left, and a system
/// topic is refused.
#[tokio::test]
async fn deleting_a_topic_leaves_no_mark_and_refuses_system_topics() {
    let r = remote(1);
    let grpc = MessagingServer::new(r.broker.clone());
    send(&grpc, "m").await;
    r.broker.delete_topic(TOPIC).await.unwrap();
    assert!(r.broker.topics().get(TOPIC).is_none());
    assert!(r.broker.topics().unfinished_deletes().unwrap().is_empty());
    assert!(matches!(
        r.broker.delete_topic(TOPIC).await,
        Err(apogee_proto::ApogeeError::TopicNotFound(_))
    ));
    let dlq = apogee_proto::names::dlq_topic(GROUP);
    assert!(matches!(
        r.broker.delete_topic(&dlq).await,
        Err(apogee_proto::ApogeeError::Forbidden(_))
    ));
}
