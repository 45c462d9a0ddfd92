//! The contract suite's transactions: the same endings through both transports (gRPC
//! EndTransaction, remoting END_TRANSACTION) come to the same outcome, because each is a thin
//! decoding of one action ([`Broker::end_transaction`]): a commit publishes the half message,
//! a rollback drops it, a repeat is answered OK, the opposite ending and an unknown
//! transaction are refused, "unknown" leaves it pending, and the caller needs permission to
//! publish to the transaction's own topic.

use super::tests::{read, resource, send_one, v2_message, Outcome, Path};
use crate::grpc::MessagingServer;
use crate::remoting::clients::tests::{remote, Remote, GROUP, TOPIC};
use crate::remoting::txn::{COMMIT, ROLLBACK, UNKNOWN};
use crate::topics::MessageKind;
use crate::txn::Resolution;
use apogee_proto::auth::acl::AclSet;
use apogee_proto::auth::{Identity, Role};
use apogee_proto::cluster::{AclEntry, AclResourceKind};
use apogee_proto::group::GroupConfig;
use apogee_proto::remoting::codes::{request as code, response};
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::v2::{self, messaging_service_server::MessagingService, Code, MessageType};
use apogee_proto::v2::{TransactionResolution, TransactionSource};
use apogee_server::remoting::Caller;
use std::sync::Arc;
use tonic::Request;

/// A transport that ends transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Transport {
    Grpc,
    Remoting,
}

pub(super) const TRANSPORTS: [Transport; 2] = [Transport::Grpc, Transport::Remoting];

/// What an ending came to, whatever the transport.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ended {
    Done,
    /// Refused: not permitted (FORBIDDEN, NO_PERMISSION).
    Forbidden,
    /// Refused as the wrong ending of this transaction or of none (gRPC
    /// PRECONDITION_FAILED or INVALID_TRANSACTION_ID, remoting INVALID_PARAMETER).
    Refused,
    /// Any other answer, as the transport put it.
    Other(String),
}

/// A half message: its body (also its message id) and its transaction id.
struct Half {
    body: String,
    transaction_id: String,
}

/// What an ending names: the transaction, its message and (over gRPC) a topic.
#[derive(Clone, Copy, Debug)]
pub(super) struct Named<'a> {
    pub transaction_id: &'a str,
    pub body: &'a str,
    /// The topic a gRPC request names ("": none); a remoting request names none.
    pub topic: &'a str,
}

impl Half {
    /// The half message named as clients name it (gRPC with its topic).
    fn named(&self) -> Named<'_> {
        Named {
            transaction_id: &self.transaction_id,
            body: &self.body,
            topic: TOPIC,
        }
    }
}

/// A broker whose [`TOPIC`] (one queue) takes TRANSACTION messages (the one place this file
/// makes a topic).
fn transactional_broker() -> (Remote, MessagingServer) {
    let r = remote(1);
    let config = r.broker.topics().get(TOPIC).expect("the topic");
    let config = config.with_kinds(&[MessageKind::Transaction]);
    r.broker.topics().update(config).expect("types changed");
    let grpc = MessagingServer::new(r.broker.clone());
    (r, grpc)
}

/// Sends the half message `body` over gRPC.
async fn send_half(grpc: &MessagingServer, body: &str) -> Half {
    let answer = send_one(grpc, v2_message(body, MessageType::Transaction, None)).await;
    assert_eq!(
        answer.status.map(|s| s.code),
        Some(Code::Ok as i32),
        "{body}"
    );
    Half {
        body: body.into(),
        transaction_id: answer.entries[0].transaction_id.clone(),
    }
}

/// Ends the transaction `named` names with `resolution` through `transport` as `caller`, as
/// a producer does, or as the answer to a check-back when `from_check`.
pub(super) async fn end(
    r: &Remote,
    grpc: &MessagingServer,
    transport: Transport,
    caller: &Caller,
    named: Named<'_>,
    resolution: Resolution,
    from_check: bool,
) -> Ended {
    match transport {
        Transport::Grpc => {
            let request = v2::EndTransactionRequest {
                topic: Some(named.topic)
                    .filter(|t| !t.is_empty())
                    .and_then(resource),
                message_id: named.body.into(),
                transaction_id: named.transaction_id.into(),
                resolution: match resolution {
                    Resolution::Commit => TransactionResolution::Commit,
                    Resolution::Rollback => TransactionResolution::Rollback,
                    Resolution::Unknown => TransactionResolution::Unspecified,
                } as i32,
                source: if from_check {
                    TransactionSource::SourceServerCheck
                } else {
                    TransactionSource::SourceClient
                } as i32,
                ..Default::default()
            };
            let mut request = Request::new(request);
            if let (Some(identity), Some(acls)) = (&caller.identity, &caller.acls) {
                request.extensions_mut().insert(identity.clone());
                request.extensions_mut().insert(acls.clone());
            }
            let answer = grpc
                .end_transaction(request)
                .await
                .expect("a v2 answer")
                .into_inner();
            match answer.status.map(|s| Code::try_from(s.code)) {
                Some(Ok(Code::Ok)) => Ended::Done,
                Some(Ok(Code::Forbidden)) => Ended::Forbidden,
                Some(Ok(Code::PreconditionFailed | Code::InvalidTransactionId)) => Ended::Refused,
                other => Ended::Other(format!("{other:?}")),
            }
        }
        Transport::Remoting => {
            let value = match resolution {
                Resolution::Commit => COMMIT,
                Resolution::Rollback => ROLLBACK,
                Resolution::Unknown => UNKNOWN,
            };
            let request = RemotingCommand::request(code::END_TRANSACTION)
                .with_ext("producerGroup", "producers")
                .with_ext("tranStateTableOffset", 0)
                .with_ext("commitLogOffset", -1)
                .with_ext("commitOrRollback", value)
                .with_ext("fromTransactionCheck", from_check)
                .with_ext("msgId", named.body)
                .with_ext("transactionId", named.transaction_id);
            let answer = crate::remoting::txn::end_transaction(&r.broker, caller, &request).await;
            match answer.code {
                response::SUCCESS => Ended::Done,
                response::NO_PERMISSION => Ended::Forbidden,
                response::INVALID_PARAMETER => Ended::Refused,
                other => Ended::Other(format!("{other}: {:?}", answer.remark)),
            }
        }
    }
}

/// What a pop of [`TOPIC`] hands out to a fresh group named after `scene`, through the pop
/// path of `transport`.
async fn popped(r: &Remote, grpc: &MessagingServer, transport: Transport, scene: &str) -> Outcome {
    let group = format!("{GROUP}-{scene}");
    r.broker
        .groups()
        .create(GroupConfig::with_defaults(&group))
        .expect("group created");
    let path = match transport {
        Transport::Grpc => Path::GrpcReceive,
        Transport::Remoting => Path::RemotingPop,
    };
    read(r, grpc, path, &group).await
}

/// What ending a fresh half message came to: the ending, its repeat, the opposite ending,
/// and what a pop hands out afterwards.
#[derive(Debug, PartialEq, Eq)]
struct Story {
    ended: Ended,
    repeated: Ended,
    opposite: Ended,
    read: Outcome,
}

/// A commit and a rollback, each by the producer and as a check-back's answer, come to the
/// same story over both transports: a commit publishes the message (read once), a rollback
/// drops it; a repeat is answered OK and publishes nothing more (the pop reads the message
/// once); the opposite is refused.
#[tokio::test]
async fn a_commit_and_a_rollback_end_alike_over_both_transports() {
    let table = [
        (Resolution::Commit, Resolution::Rollback),
        (Resolution::Rollback, Resolution::Commit),
    ];
    for (resolution, opposite) in table {
        for from_check in [false, true] {
            for transport in TRANSPORTS {
                // A broker of its own: the pop reads its queue from the start.
                let (r, grpc) = transactional_broker();
                let scene = format!("{transport:?}-{resolution:?}-{from_check}");
                let half = send_half(&grpc, &scene).await;
                let named = half.named();
                let anyone = &Caller::default();
                let end =
                    |resolution| end(&r, &grpc, transport, anyone, named, resolution, from_check);
                let ended = end(resolution).await;
                let repeated = end(resolution).await;
                let refused = end(opposite).await;
                let story = Story {
                    ended,
                    repeated,
                    opposite: refused,
                    read: popped(&r, &grpc, transport, &scene).await,
                };
                let expected = Story {
                    ended: Ended::Done,
                    repeated: Ended::Done,
                    opposite: Ended::Refused,
                    read: match resolution {
                        Resolution::Commit => Outcome::Read(vec![half.body.clone()]),
                        _ => Outcome::Nothing,
                    },
                };
                assert_eq!(story, expected, "{scene}");
            }
        }
    }
}

/// "Unknown" (a check-back's answer while the producer does not know yet) leaves the
/// transaction pending over both transports, so it can still be committed; an ending of a
/// transaction the broker does not hold is refused alike.
#[tokio::test]
async fn unknown_leaves_a_transaction_pending_and_an_unknown_one_is_refused_alike() {
    for transport in TRANSPORTS {
        let (r, grpc) = transactional_broker();
        let anyone = &Caller::default();
        let scene = format!("{transport:?}-unknown");
        let half = send_half(&grpc, &scene).await;
        let named = half.named();
        let end = |named, resolution| end(&r, &grpc, transport, anyone, named, resolution, true);
        assert_eq!(
            end(named, Resolution::Unknown).await,
            Ended::Done,
            "{scene}"
        );
        let pending = popped(&r, &grpc, transport, &format!("{scene}-pending")).await;
        assert_eq!(pending, Outcome::Nothing, "{scene}");
        assert_eq!(end(named, Resolution::Commit).await, Ended::Done, "{scene}");
        let committed = popped(&r, &grpc, transport, &format!("{scene}-committed")).await;
        assert_eq!(committed, Outcome::Read(vec![scene.clone()]), "{scene}");

        for transaction_id in ["T1-0000-another-broker", ""] {
            let lost = Named {
                transaction_id,
                ..named
            };
            let refused = end(lost, Resolution::Commit).await;
            assert_eq!(refused, Ended::Refused, "{scene}: {lost:?}");
        }
    }
}

/// The caller of `access` with the ACL `entries` (topic patterns, whether they allow or
/// deny publishing).
fn user(entries: &[(&str, bool)]) -> Caller {
    let entries: Vec<AclEntry> = entries
        .iter()
        .map(|&(pattern, allow)| AclEntry {
            access_key: "app".into(),
            kind: AclResourceKind::Topic as i32,
            pattern: pattern.into(),
            publish: true,
            deny: !allow,
            ..Default::default()
        })
        .collect();
    Caller {
        identity: Some(Identity::User {
            access_key: "app".into(),
            role: Role::User,
        }),
        acls: Some(Arc::new(AclSet::of(&entries))),
    }
}

/// An ending needs permission to publish to the transaction's own topic, over both
/// transports alike; a refused ending leaves the transaction pending. A gRPC request that
/// names no topic is no way around it (gRPC once asked the permission only of the topic its
/// request named; remoting always asked it of the transaction's).
#[tokio::test]
async fn an_ending_needs_permission_on_the_transactions_topic_alike() {
    let denied_here = vec![("*", true), (TOPIC, false)];
    let table = [
        (vec![("*", true)], TOPIC, Ended::Done),
        (vec![(TOPIC, true)], TOPIC, Ended::Done),
        (denied_here.clone(), TOPIC, Ended::Forbidden),
        (denied_here, "", Ended::Forbidden),
        (vec![("other", true)], TOPIC, Ended::Forbidden),
    ];
    for (entries, topic, expected) in table {
        for transport in TRANSPORTS {
            let (r, grpc) = transactional_broker();
            let scene = format!("{transport:?} naming {topic:?} as {entries:?}");
            let half = send_half(&grpc, "acl").await;
            let named = Named {
                topic,
                ..half.named()
            };
            let who = user(&entries);
            let ended = end(&r, &grpc, transport, &who, named, Resolution::Commit, false).await;
            assert_eq!(ended, expected, "{scene}");
            let bounds = r.broker.queue_bounds(TOPIC, 0).unwrap();
            let published = u64::from(expected == Ended::Done);
            assert_eq!(bounds, (0, published), "{scene}");
        }
    }
}
