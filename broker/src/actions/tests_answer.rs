//! The contract suite's consumer side: committed offsets and dead letters through both
//! transports (gRPC UpdateOffset, GetOffset and ForwardMessageToDeadLetterQueue; remoting
//! UPDATE_CONSUMER_OFFSET, QUERY_CONSUMER_OFFSET and CONSUMER_SEND_MSG_BACK), each coming to
//! the same outcome as the other ([`Broker::commit_offset`], [`Broker::committed_offset`],
//! [`Broker::dead_letter`], [`Broker::send_back`]).

use super::tests::{queue, receive, resource, send};
use crate::grpc::MessagingServer;
use crate::remoting::clients::tests::{remote, Remote, GROUP, TOPIC};
use apogee_proto::group::GroupConfig;
use apogee_proto::remoting::codes::{request as code, response};
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::v2::{self, messaging_service_server::MessagingService, Code};
use apogee_server::remoting::Caller;
use tonic::Request;

/// What an offset request came to, whatever the transport.
#[derive(Debug, PartialEq, Eq)]
enum Offset {
    At(i64),
    /// The group has no offset for the queue (OFFSET_NOT_FOUND, QUERY_NOT_FOUND).
    None,
    /// Refused as a bad argument (ILLEGAL_OFFSET, ILLEGAL_CONSUMER_GROUP; INVALID_PARAMETER).
    Illegal,
    Other(String),
}

fn of_code(code: i32) -> Offset {
    match Code::try_from(code) {
        Ok(Code::OffsetNotFound) => Offset::None,
        Ok(Code::IllegalOffset | Code::IllegalConsumerGroup) => Offset::Illegal,
        other => Offset::Other(format!("{other:?}")),
    }
}

fn of_remoting(answer: &RemotingCommand) -> Offset {
    match answer.code {
        response::SUCCESS => Offset::At(answer.ext("offset").map_or(-1, |o| o.parse().unwrap())),
        response::QUERY_NOT_FOUND => Offset::None,
        response::INVALID_PARAMETER => Offset::Illegal,
        other => Offset::Other(format!("{other}: {:?}", answer.remark)),
    }
}

async fn grpc_commit(grpc: &MessagingServer, group: &str, offset: i64) -> Offset {
    let answer = grpc
        .update_offset(Request::new(v2::UpdateOffsetRequest {
            group: resource(group),
            message_queue: queue(TOPIC),
            offset,
        }))
        .await
        .expect("a v2 answer")
        .into_inner();
    match answer.status.map_or(0, |s| s.code) {
        c if c == Code::Ok as i32 => Offset::At(offset),
        c => of_code(c),
    }
}

async fn grpc_committed(grpc: &MessagingServer, group: &str) -> Offset {
    let answer = grpc
        .get_offset(Request::new(v2::GetOffsetRequest {
            group: resource(group),
            message_queue: queue(TOPIC),
        }))
        .await
        .expect("a v2 answer")
        .into_inner();
    match answer.status.map_or(0, |s| s.code) {
        c if c == Code::Ok as i32 => Offset::At(answer.offset),
        c => of_code(c),
    }
}

fn remoting_commit(r: &Remote, group: &str, offset: i64) -> Offset {
    let request = RemotingCommand::request(code::UPDATE_CONSUMER_OFFSET)
        .with_ext("consumerGroup", group)
        .with_ext("topic", TOPIC)
        .with_ext("queueId", 0)
        .with_ext("commitOffset", offset);
    let answer =
        crate::remoting::offsets::update_consumer_offset(&r.broker, &Caller::default(), &request);
    match of_remoting(&answer) {
        Offset::At(_) => Offset::At(offset),
        other => other,
    }
}

fn remoting_committed(r: &Remote, group: &str) -> Offset {
    let request = RemotingCommand::request(code::QUERY_CONSUMER_OFFSET)
        .with_ext("consumerGroup", group)
        .with_ext("topic", TOPIC)
        .with_ext("queueId", 0);
    of_remoting(&crate::remoting::offsets::query_consumer_offset(
        &r.broker,
        &Caller::default(),
        &request,
    ))
}

/// A group's committed offset is one value whichever transport wrote or reads it, and both
/// refuse alike an offset past the queue's end and a group name that is not one.
#[tokio::test]
async fn a_committed_offset_is_the_same_over_both_transports() {
    let r = remote(1);
    let grpc = MessagingServer::new(r.broker.clone());
    for id in ["m1", "m2"] {
        send(&grpc, id).await;
    }
    assert_eq!(grpc_committed(&grpc, GROUP).await, Offset::None);
    assert_eq!(remoting_committed(&r, GROUP), Offset::None);

    assert_eq!(grpc_commit(&grpc, GROUP, 1).await, Offset::At(1));
    assert_eq!(remoting_committed(&r, GROUP), Offset::At(1));
    assert_eq!(remoting_commit(&r, GROUP, 2), Offset::At(2));
    assert_eq!(grpc_committed(&grpc, GROUP).await, Offset::At(2));

    // Past the queue's end (2), negative, or a group name that is not one: refused alike,
    // and nothing changes.
    for offset in [3, -1] {
        assert_eq!(grpc_commit(&grpc, GROUP, offset).await, Offset::Illegal);
        assert_eq!(remoting_commit(&r, GROUP, offset), Offset::Illegal);
    }
    let bad_group = "no spaces allowed";
    assert_eq!(grpc_commit(&grpc, bad_group, 1).await, Offset::Illegal);
    assert_eq!(remoting_commit(&r, bad_group, 1), Offset::Illegal);
    assert_eq!(grpc_committed(&grpc, bad_group).await, Offset::Illegal);
    assert_eq!(remoting_committed(&r, bad_group), Offset::Illegal);
    assert_eq!(grpc_committed(&grpc, GROUP).await, Offset::At(2));
}

/// The receipt handle of the next message a gRPC receive of [`GROUP`] hands out.
async fn received_handle(grpc: &MessagingServer) -> (String, String) {
    use v2::receive_message_response::Content;
    receive(grpc, GROUP, 1)
        .await
        .into_iter()
        .find_map(|content| match content {
            Content::Message(m) => {
                let sp = m.system_properties.expect("system properties");
                Some((sp.message_id, sp.receipt_handle.expect("a receipt handle")))
            }
            _ => None,
        })
        .expect("a message")
}

/// A message a consumer gives up on lands in its group's dead-letter topic alike, whether a
/// gRPC consumer forwards it or a remoting consumer sends it back with a negative delay
/// level (RocketMQ's "dead-letter it now"): one copy each, under the original message id.
#[tokio::test]
async fn a_failed_message_is_dead_lettered_alike_over_both_transports() {
    let r = remote(1);
    let grpc = MessagingServer::new(r.broker.clone());
    r.broker
        .groups()
        .create(GroupConfig::with_defaults(GROUP))
        .expect("group created");
    for id in ["by-grpc", "by-remoting"] {
        send(&grpc, id).await;
    }
    let (id, handle) = received_handle(&grpc).await;
    assert_eq!(id, "by-grpc");
    let forwarded = grpc
        .forward_message_to_dead_letter_queue(Request::new(
            v2::ForwardMessageToDeadLetterQueueRequest {
                group: resource(GROUP),
                topic: resource(TOPIC),
                receipt_handle: handle,
                message_id: id,
                delivery_attempt: 1,
                max_delivery_attempts: 16,
                lite_topic: None,
            },
        ))
        .await
        .expect("a v2 answer")
        .into_inner();
    assert_eq!(forwarded.status.map(|s| s.code), Some(Code::Ok as i32));

    let second = r
        .broker
        .store()
        .lookup_by_id("by-remoting")
        .unwrap()
        .expect("stored");
    let back = RemotingCommand::request(code::CONSUMER_SEND_MSG_BACK)
        .with_ext("offset", second.log_offset)
        .with_ext("group", GROUP)
        .with_ext("delayLevel", -1)
        .with_ext("originMsgId", "by-remoting")
        .with_ext("originTopic", TOPIC)
        .with_ext("maxReconsumeTimes", 16);
    let answer =
        crate::remoting::send_back::consumer_send_back(&r.broker, &Caller::default(), &back).await;
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);

    let dlq = apogee_proto::names::dlq_topic(GROUP);
    assert_eq!(r.broker.queue_bounds(&dlq, 0).unwrap(), (0, 2));
    for id in ["by-grpc", "by-remoting"] {
        let copies: Vec<_> = r
            .broker
            .store()
            .lookup_all_by_id(id, 8)
            .unwrap()
            .into_iter()
            .filter(|m| m.msg.topic == dlq)
            .collect();
        assert_eq!(copies.len(), 1, "{id} has one dead-letter copy");
    }
}
